#!/usr/bin/env bash
# Writes values.env, the only account-specific file of the EKS overlay, from a few inputs.
# Running it again with the same inputs rewrites the same file; nothing else is touched, and no
# AWS API is called.
#
#   ACCOUNT_ID=123456789012 AWS_REGION=eu-west-1 OUTPUT_BUCKET=acme-renditions \
#     k8s/overlays/eks/configure.sh
#
# The inputs are the variables scripts/aws/*.sh use, with the same defaults, so one set of
# exports serves both:
#   ACCOUNT_ID      required  12-digit AWS account id (aws sts get-caller-identity --query Account)
#   AWS_REGION      required  region of the cluster, the queue and the buckets
#   OUTPUT_BUCKET   media-out             bucket for the renditions
#   OUTPUT_PREFIX   renditions/           key prefix inside OUTPUT_BUCKET
#   QUEUE_NAME      video-encode-requests
#   RESULT_QUEUE_NAME  video-encode-results   the results queue (scripts/aws/create-results-queue.sh);
#                   set it to "" (RESULT_QUEUE_NAME=) for no completion notices: the encoder then
#                   sends none and `producer --wait` polls the analyzer instead
#   NAME_PREFIX     video-encoding        IAM roles <prefix>-encoder, -producer, -keda-reader
#   REGISTRY        <account>.dkr.ecr.<region>.amazonaws.com   where video-encoding:0.1.0 is pushed
#   STORAGE_CLASS   gp3                   StorageClass for the analyzer's volume
set -eo pipefail

die() { echo "configure.sh: $*" >&2; exit 1; }

: "${ACCOUNT_ID:?configure.sh: set ACCOUNT_ID (12-digit AWS account id)}"
: "${AWS_REGION:?configure.sh: set AWS_REGION (e.g. eu-west-1)}"
: "${OUTPUT_BUCKET:=media-out}"
: "${OUTPUT_PREFIX:=renditions/}"
: "${QUEUE_NAME:=video-encode-requests}"
# Unset: the default; set but empty: no results queue (RESULT_QUEUE_URL= in values.env).
: "${RESULT_QUEUE_NAME=video-encode-results}"
: "${NAME_PREFIX:=video-encoding}"
: "${REGISTRY:=${ACCOUNT_ID}.dkr.ecr.${AWS_REGION}.amazonaws.com}"
: "${STORAGE_CLASS:=gp3}"

# Catch typos here rather than as AccessDenied in a pod log an hour later.
[[ $ACCOUNT_ID =~ ^[0-9]{12}$ ]] || die "ACCOUNT_ID must be 12 digits, got '$ACCOUNT_ID'"
[[ $AWS_REGION =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || die "AWS_REGION looks wrong: '$AWS_REGION'"
[[ $OUTPUT_BUCKET =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "OUTPUT_BUCKET is not a valid bucket name: '$OUTPUT_BUCKET'"
[[ $QUEUE_NAME =~ ^[A-Za-z0-9_-]{1,80}$ ]] || die "QUEUE_NAME is not a valid standard queue name: '$QUEUE_NAME'"
[[ -z $RESULT_QUEUE_NAME || $RESULT_QUEUE_NAME =~ ^[A-Za-z0-9_-]{1,80}$ || $RESULT_QUEUE_NAME =~ ^[A-Za-z0-9_-]{1,75}\.fifo$ ]] ||
  die "RESULT_QUEUE_NAME is not a valid queue name: '$RESULT_QUEUE_NAME'"
[[ $RESULT_QUEUE_NAME != "$QUEUE_NAME" ]] || die "RESULT_QUEUE_NAME must differ from QUEUE_NAME: '$QUEUE_NAME'"
[[ $NAME_PREFIX =~ ^[A-Za-z0-9+=,.@_-]{1,50}$ ]] || die "NAME_PREFIX is not a valid IAM name: '$NAME_PREFIX'"
[[ -n $REGISTRY && $REGISTRY != */ && $REGISTRY != */video-encoding && $REGISTRY != */video-encoding:* ]] ||
  die "REGISTRY is the registry host[/path] only, without the image name or a trailing slash: '$REGISTRY'"
OUTPUT_PREFIX=${OUTPUT_PREFIX#/}
OUTPUT_PREFIX=${OUTPUT_PREFIX%/}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target="$here/values.env"
tmp=$(mktemp "$here/.values.env.XXXXXX")
trap 'rm -f "$tmp"' EXIT

role() { echo "arn:aws:iam::${ACCOUNT_ID}:role/${NAME_PREFIX}-$1"; }

cat >"$tmp" <<EOF
# Everything account-specific in the EKS overlay, in one place. kustomization.yaml copies each
# value into the manifests (replacements), so nothing else needs editing.
#
# Written by configure.sh; edit by hand or run it again.
AWS_REGION=${AWS_REGION}
QUEUE_URL=https://sqs.${AWS_REGION}.amazonaws.com/${ACCOUNT_ID}/${QUEUE_NAME}
RESULT_QUEUE_URL=${RESULT_QUEUE_NAME:+https://sqs.${AWS_REGION}.amazonaws.com/${ACCOUNT_ID}/${RESULT_QUEUE_NAME}}
OUTPUT_URI=s3://${OUTPUT_BUCKET}${OUTPUT_PREFIX:+/${OUTPUT_PREFIX}}
REGISTRY=${REGISTRY}
ENCODER_ROLE_ARN=$(role encoder)
PRODUCER_ROLE_ARN=$(role producer)
KEDA_ROLE_ARN=$(role keda-reader)
STORAGE_CLASS=${STORAGE_CLASS}
EOF

chmod 0644 "$tmp"
if cmp -s "$tmp" "$target"; then
  echo "values.env already up to date ($target)"
else
  mv "$tmp" "$target"
  echo "wrote $target"
fi
grep -v '^#' "$target"
