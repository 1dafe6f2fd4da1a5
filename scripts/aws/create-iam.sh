#!/usr/bin/env bash
# Creates or updates the IAM roles and managed policies of the video-encoding workload (IRSA on EKS),
# least privilege: see scripts/aws/README.md for what each grants and why.
#
#   keda-operator                  the KEDA operator's own role (web identity of keda:keda-operator);
#                                  may only assume the reader role below
#   video-encoding-keda-reader     assumed by the KEDA operator; may only read the queue's attributes
#   video-encoding-encoder         web identity of video-encoding:encoder (the ScaledJob's pods)
#   video-encoding-producer        web identity of video-encoding:producer
#
# stdout: NAME=arn lines (KEDA_OPERATOR_ROLE_ARN, KEDA_READER_ROLE_ARN, ENCODER_ROLE_ARN,
# PRODUCER_ROLE_ARN), ready for `eval`. Safe to re-run: trust policies are set again, a managed
# policy gets a new default version only when its document changed (old versions are pruned to
# stay under IAM's limit of 5), attaching is idempotent.
set -euo pipefail
# shellcheck source=scripts/aws/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

: "${K8S_NAMESPACE:=video-encoding}"
: "${ENCODER_SERVICE_ACCOUNT:=encoder}"
: "${PRODUCER_SERVICE_ACCOUNT:=producer}"
: "${KEDA_NAMESPACE:=keda}"
: "${KEDA_SERVICE_ACCOUNT:=keda-operator}"
# Non-default versions kept per managed policy before a new one is added (IAM allows 5 in all).
POLICY_VERSIONS_KEPT=3

usage() {
    local account=${ACCOUNT_ID:-"(default: from aws sts get-caller-identity)"}
    local oidc=${OIDC_PROVIDER:-"(required on AWS: the EKS cluster's OIDC issuer, without https://)"}
    cat >&2 <<EOF
usage: $0 [--render DIR]

Creates or updates the IAM roles and policies, prints NAME=arn lines.

  --render DIR   only write the rendered trust and permission documents to DIR (one file per
                 document) and change nothing; needs ACCOUNT_ID and OIDC_PROVIDER, calls no AWS API

  ACCOUNT_ID                ${account}
  OIDC_PROVIDER             ${oidc}
  AWS_REGION                ${AWS_REGION}
  QUEUE_NAME / DLQ_NAME     ${QUEUE_NAME} / ${DLQ_NAME}
  INPUT_BUCKET/INPUT_PREFIX   ${INPUT_BUCKET}/${INPUT_PREFIX}
  OUTPUT_BUCKET/OUTPUT_PREFIX ${OUTPUT_BUCKET}/${OUTPUT_PREFIX}
  NAME_PREFIX               ${NAME_PREFIX}  (roles ${NAME_PREFIX}-keda-reader, -encoder, -producer)
  K8S_NAMESPACE             ${K8S_NAMESPACE}  (service accounts ${ENCODER_SERVICE_ACCOUNT}, ${PRODUCER_SERVICE_ACCOUNT}:
                            ENCODER_SERVICE_ACCOUNT, PRODUCER_SERVICE_ACCOUNT)
  KEDA_OPERATOR_ROLE        ${KEDA_OPERATOR_ROLE}  (service account ${KEDA_NAMESPACE}:${KEDA_SERVICE_ACCOUNT}:
                            KEDA_NAMESPACE, KEDA_SERVICE_ACCOUNT)
  MANAGE_KEDA_OPERATOR_ROLE ${MANAGE_KEDA_OPERATOR_ROLE}  (false: the role exists and is someone else's;
                            only our assume-role policy gets attached to it)
  AWS_ENDPOINT_URL          ${AWS_ENDPOINT_URL:-(unset: real AWS)}
EOF
}

render_dir=""
while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --render)
            (($# >= 2)) || die "--render needs a directory"
            render_dir=$2
            shift 2
            ;;
        *) usage; die "unknown argument: $1" ;;
    esac
done

# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

validate_queue_name QUEUE_NAME
validate_queue_name DLQ_NAME
validate_bucket_name INPUT_BUCKET
validate_bucket_name OUTPUT_BUCKET
normalize_prefix INPUT_PREFIX
normalize_prefix OUTPUT_PREFIX
validate_iam_name NAME_PREFIX
validate_iam_name KEDA_OPERATOR_ROLE
validate_k8s_name K8S_NAMESPACE
validate_k8s_name ENCODER_SERVICE_ACCOUNT
validate_k8s_name PRODUCER_SERVICE_ACCOUNT
validate_k8s_name KEDA_NAMESPACE
validate_k8s_name KEDA_SERVICE_ACCOUNT
[[ "$MANAGE_KEDA_OPERATOR_ROLE" == true || "$MANAGE_KEDA_OPERATOR_ROLE" == false ]] ||
    die "MANAGE_KEDA_OPERATOR_ROLE must be true or false, not '$MANAGE_KEDA_OPERATOR_ROLE'"

# `aws eks describe-cluster --query cluster.identity.oidc.issuer` answers with https:// in front.
OIDC_PROVIDER=${OIDC_PROVIDER:-}
OIDC_PROVIDER=${OIDC_PROVIDER#https://}
if [[ -z "$OIDC_PROVIDER" ]]; then
    if [[ -n "${AWS_ENDPOINT_URL:-}${AWS_ENDPOINT_URL_IAM:-}" && -z "$render_dir" ]]; then
        OIDC_PROVIDER="oidc.eks.${AWS_REGION}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
        log "OIDC_PROVIDER unset, using the placeholder $OIDC_PROVIDER (an emulator is in use)"
    else
        die "OIDC_PROVIDER is required: your EKS cluster's OIDC issuer without https://, e.g." \
            "oidc.eks.${AWS_REGION}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE; get it with" \
            "aws eks describe-cluster --name CLUSTER --query cluster.identity.oidc.issuer --output text"
    fi
fi
[[ "$OIDC_PROVIDER" =~ ^[A-Za-z0-9.-]+(/[A-Za-z0-9._-]+)*$ ]] ||
    die "invalid OIDC_PROVIDER '$OIDC_PROVIDER': a host name and path, like oidc.eks.REGION.amazonaws.com/id/ID"

if [[ -n "$render_dir" ]]; then
    [[ -n "${ACCOUNT_ID:-}" ]] || die "--render needs ACCOUNT_ID (no AWS call is made to look it up)"
else
    check_aws_access
fi
[[ "$ACCOUNT_ID" =~ ^[0-9]{12}$ ]] || die "invalid ACCOUNT_ID '$ACCOUNT_ID': 12 digits"

QUEUE_ARN="arn:${AWS_PARTITION}:sqs:${AWS_REGION}:${ACCOUNT_ID}:${QUEUE_NAME}"
DLQ_ARN="arn:${AWS_PARTITION}:sqs:${AWS_REGION}:${ACCOUNT_ID}:${DLQ_NAME}"
role_arn() { printf 'arn:%s:iam::%s:role/%s' "$AWS_PARTITION" "$ACCOUNT_ID" "$1"; }
policy_arn() { printf 'arn:%s:iam::%s:policy/%s' "$AWS_PARTITION" "$ACCOUNT_ID" "$1"; }

# ---------------------------------------------------------------------------------------------
# The documents, rendered from scripts/aws/policies/*.json
# ---------------------------------------------------------------------------------------------

# irsa_trust NAMESPACE SERVICE_ACCOUNT: only that service account's web identity may assume the role.
irsa_trust() {
    render_template "$POLICY_DIR/irsa-trust.json" \
        PARTITION="$AWS_PARTITION" ACCOUNT_ID="$ACCOUNT_ID" OIDC_PROVIDER="$OIDC_PROVIDER" \
        SERVICE_ACCOUNT_NAMESPACE="$1" SERVICE_ACCOUNT_NAME="$2"
}
keda_operator_trust() { irsa_trust "$KEDA_NAMESPACE" "$KEDA_SERVICE_ACCOUNT"; }
keda_operator_policy() { render_template "$POLICY_DIR/keda-operator-policy.json" KEDA_READER_ROLE_ARN="$1"; }
keda_reader_trust() { render_template "$POLICY_DIR/keda-reader-trust.json" KEDA_OPERATOR_ROLE_ARN="$1"; }
keda_reader_policy() { render_template "$POLICY_DIR/keda-reader-policy.json" QUEUE_ARN="$QUEUE_ARN"; }
encoder_trust() { irsa_trust "$K8S_NAMESPACE" "$ENCODER_SERVICE_ACCOUNT"; }
encoder_policy() {
    render_template "$POLICY_DIR/encoder-policy.json" \
        PARTITION="$AWS_PARTITION" QUEUE_ARN="$QUEUE_ARN" DLQ_ARN="$DLQ_ARN" \
        INPUT_BUCKET="$INPUT_BUCKET" INPUT_PREFIX="$INPUT_PREFIX" \
        OUTPUT_BUCKET="$OUTPUT_BUCKET" OUTPUT_PREFIX="$OUTPUT_PREFIX"
}
producer_trust() { irsa_trust "$K8S_NAMESPACE" "$PRODUCER_SERVICE_ACCOUNT"; }
producer_policy() {
    render_template "$POLICY_DIR/producer-policy.json" \
        PARTITION="$AWS_PARTITION" QUEUE_ARN="$QUEUE_ARN" \
        INPUT_BUCKET="$INPUT_BUCKET" INPUT_PREFIX="$INPUT_PREFIX"
}

if [[ -n "$render_dir" ]]; then
    mkdir -p "$render_dir"
    keda_operator_trust >"$render_dir/$KEDA_OPERATOR_ROLE.trust.json"
    keda_operator_policy "$(role_arn "$KEDA_READER_ROLE")" >"$render_dir/$KEDA_OPERATOR_POLICY.policy.json"
    keda_reader_trust "$(role_arn "$KEDA_OPERATOR_ROLE")" >"$render_dir/$KEDA_READER_ROLE.trust.json"
    keda_reader_policy >"$render_dir/$KEDA_READER_POLICY.policy.json"
    encoder_trust >"$render_dir/$ENCODER_ROLE.trust.json"
    encoder_policy >"$render_dir/$ENCODER_POLICY.policy.json"
    producer_trust >"$render_dir/$PRODUCER_ROLE.trust.json"
    producer_policy >"$render_dir/$PRODUCER_POLICY.policy.json"
    log "documents written to $render_dir; nothing changed in AWS"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Applying them
# ---------------------------------------------------------------------------------------------

# ensure_role NAME TRUST_FILE DESCRIPTION creates the role or resets its trust policy; prints its ARN.
ensure_role() {
    local name=$1 trust=$2 description=$3 arn
    if arn=$(aws_cli iam get-role --role-name "$name" --query Role.Arn --output text 2>"$AWS_ERR"); then
        aws_cli iam update-assume-role-policy --role-name "$name" --policy-document "file://$trust" \
            2>"$AWS_ERR" || aws_fail "cannot update the trust policy of role $name"
        log "role $name exists, trust policy set"
    elif aws_error_is NoSuchEntity; then
        arn=$(aws_cli iam create-role --role-name "$name" --assume-role-policy-document "file://$trust" \
            --description "$description" --query Role.Arn --output text 2>"$AWS_ERR") ||
            aws_fail "cannot create role $name"
        log "role $name created"
    else
        aws_fail "cannot look up role $name"
    fi
    printf '%s\n' "$arn"
}

# prune_policy_versions ARN deletes the oldest non-default versions of a managed policy, keeping
# $POLICY_VERSIONS_KEPT, so that one more version fits under IAM's limit of 5.
prune_policy_versions() {
    local arn=$1 versions
    # shellcheck disable=SC2016  # backquotes are a JMESPath literal
    versions=$(aws_cli iam list-policy-versions --policy-arn "$arn" --output text \
        --query 'sort_by(Versions[?IsDefaultVersion==`false`], &CreateDate)[].VersionId' 2>"$AWS_ERR") ||
        aws_fail "cannot list the versions of $arn"
    local -a old
    read -r -a old <<<"$versions"
    local excess=$((${#old[@]} - POLICY_VERSIONS_KEPT)) i
    for ((i = 0; i < excess; i++)); do
        aws_cli iam delete-policy-version --policy-arn "$arn" --version-id "${old[i]}" 2>"$AWS_ERR" ||
            aws_fail "cannot delete version ${old[i]} of $arn"
        log "deleted old version ${old[i]} of $arn"
    done
}

# ensure_policy NAME DOCUMENT_FILE DESCRIPTION creates the managed policy or, when its default
# version differs from the document, adds a new default version; prints the policy's ARN.
ensure_policy() {
    local name=$1 document=$2 description=$3
    local arn default current="$TMP_DIR/current.json"
    arn=$(policy_arn "$name")
    if default=$(aws_cli iam get-policy --policy-arn "$arn" --query Policy.DefaultVersionId --output text 2>"$AWS_ERR"); then
        aws_cli iam get-policy-version --policy-arn "$arn" --version-id "$default" \
            --query PolicyVersion.Document --output json >"$current" 2>"$AWS_ERR" ||
            aws_fail "cannot read version $default of $arn"
        if [[ "$(squash "$current")" == "$(squash "$document")" ]]; then
            log "policy $name is up to date ($default)"
        else
            prune_policy_versions "$arn"
            default=$(aws_cli iam create-policy-version --policy-arn "$arn" --policy-document "file://$document" \
                --set-as-default --query PolicyVersion.VersionId --output text 2>"$AWS_ERR") ||
                aws_fail "cannot add a version to $arn"
            log "policy $name updated: $default is now the default version"
        fi
    elif aws_error_is NoSuchEntity; then
        aws_cli iam create-policy --policy-name "$name" --policy-document "file://$document" \
            --description "$description" >/dev/null 2>"$AWS_ERR" || aws_fail "cannot create policy $name"
        log "policy $name created"
    else
        aws_fail "cannot look up policy $arn"
    fi
    printf '%s\n' "$arn"
}

attach() {
    local role=$1 arn=$2
    aws_cli iam attach-role-policy --role-name "$role" --policy-arn "$arn" 2>"$AWS_ERR" ||
        aws_fail "cannot attach $arn to role $role"
    log "policy $arn attached to role $role"
}

doc="$TMP_DIR/document.json"

# Without the cluster's OIDC provider registered in IAM, no web identity can assume these roles.
if ! aws_cli iam get-open-id-connect-provider \
    --open-id-connect-provider-arn "arn:${AWS_PARTITION}:iam::${ACCOUNT_ID}:oidc-provider/${OIDC_PROVIDER}" \
    >/dev/null 2>"$AWS_ERR"; then
    log "warning: OIDC provider $OIDC_PROVIDER not found in IAM; the roles are created, but pods can" \
        "assume them only once it is registered (eksctl utils associate-iam-oidc-provider --cluster CLUSTER --approve)"
fi

# 1. The KEDA operator's role: first, because the reader role's trust policy names it, and IAM
#    refuses a trust policy whose principal does not exist.
if [[ "$MANAGE_KEDA_OPERATOR_ROLE" == true ]]; then
    keda_operator_trust >"$doc"
    keda_operator_role_arn=$(ensure_role "$KEDA_OPERATOR_ROLE" "$doc" \
        "KEDA operator (IRSA ${KEDA_NAMESPACE}:${KEDA_SERVICE_ACCOUNT}); assumes per-workload reader roles")
else
    keda_operator_role_arn=$(aws_cli iam get-role --role-name "$KEDA_OPERATOR_ROLE" --query Role.Arn --output text 2>"$AWS_ERR") ||
        aws_fail "MANAGE_KEDA_OPERATOR_ROLE=false, but role $KEDA_OPERATOR_ROLE cannot be read:" \
            "create it first (or set KEDA_OPERATOR_ROLE to the role your KEDA operator's service account uses)"
    log "role $KEDA_OPERATOR_ROLE is managed elsewhere: its trust policy is left alone"
fi

# 2. The reader role KEDA assumes to read the queue length, and the operator's right to assume it.
keda_reader_trust "$keda_operator_role_arn" >"$doc"
keda_reader_role_arn=$(ensure_role "$KEDA_READER_ROLE" "$doc" \
    "${NAME_PREFIX}: KEDA reads the length of queue ${QUEUE_NAME} (assumed by ${KEDA_OPERATOR_ROLE})")
keda_reader_policy >"$doc"
arn=$(ensure_policy "$KEDA_READER_POLICY" "$doc" "${NAME_PREFIX}: sqs:GetQueueAttributes on ${QUEUE_NAME}")
attach "$KEDA_READER_ROLE" "$arn"

keda_operator_policy "$keda_reader_role_arn" >"$doc"
arn=$(ensure_policy "$KEDA_OPERATOR_POLICY" "$doc" "${NAME_PREFIX}: the KEDA operator may assume ${KEDA_READER_ROLE}")
attach "$KEDA_OPERATOR_ROLE" "$arn"

# 3. The encoder (ScaledJob pods) and the producer.
encoder_trust >"$doc"
encoder_role_arn=$(ensure_role "$ENCODER_ROLE" "$doc" \
    "${NAME_PREFIX}: encoder pods (IRSA ${K8S_NAMESPACE}:${ENCODER_SERVICE_ACCOUNT})")
encoder_policy >"$doc"
arn=$(ensure_policy "$ENCODER_POLICY" "$doc" \
    "${NAME_PREFIX}: consume ${QUEUE_NAME}, dead-letter to ${DLQ_NAME}, read s3://${INPUT_BUCKET}/${INPUT_PREFIX}, write s3://${OUTPUT_BUCKET}/${OUTPUT_PREFIX}")
attach "$ENCODER_ROLE" "$arn"

producer_trust >"$doc"
producer_role_arn=$(ensure_role "$PRODUCER_ROLE" "$doc" \
    "${NAME_PREFIX}: producer (IRSA ${K8S_NAMESPACE}:${PRODUCER_SERVICE_ACCOUNT})")
producer_policy >"$doc"
arn=$(ensure_policy "$PRODUCER_POLICY" "$doc" "${NAME_PREFIX}: send to ${QUEUE_NAME}, upload to s3://${INPUT_BUCKET}/${INPUT_PREFIX}")
attach "$PRODUCER_ROLE" "$arn"

printf 'KEDA_OPERATOR_ROLE_ARN=%s\n' "$keda_operator_role_arn"
printf 'KEDA_READER_ROLE_ARN=%s\n' "$keda_reader_role_arn"
printf 'ENCODER_ROLE_ARN=%s\n' "$encoder_role_arn"
printf 'PRODUCER_ROLE_ARN=%s\n' "$producer_role_arn"
