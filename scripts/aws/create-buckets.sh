#!/usr/bin/env bash
# Creates the input and output buckets, or brings existing ones up to date: public access blocked,
# ACLs disabled (bucket owner enforced), default encryption SSE-S3, incomplete multipart uploads
# aborted after a day, and what a split request leaves behind (objects tagged video-encoding=split:
# its plan and chunks, removed by the encoder once stitched) expired after SPLIT_EXPIRY_DAYS.
#
# stdout: INPUT_URI=s3://... and OUTPUT_URI=s3://... lines (OUTPUT_URI is the encoder's variable).
# Safe to re-run: a bucket we already own is kept, every setting is applied again.
# Note: the lifecycle configuration is replaced as a whole; other rules on the bucket are dropped.
set -euo pipefail
# shellcheck source=scripts/aws/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

: "${ABORT_INCOMPLETE_UPLOADS_DAYS:=1}"
: "${SPLIT_EXPIRY_DAYS:=7}"

usage() {
    cat >&2 <<EOF
usage: $0

Creates or updates the S3 buckets \$INPUT_BUCKET and \$OUTPUT_BUCKET (one bucket if they are equal).

  INPUT_BUCKET                   ${INPUT_BUCKET}
  OUTPUT_BUCKET                  ${OUTPUT_BUCKET}
  INPUT_PREFIX                   ${INPUT_PREFIX}  (only for the INPUT_URI line)
  OUTPUT_PREFIX                  ${OUTPUT_PREFIX}  (only for the OUTPUT_URI line)
  ABORT_INCOMPLETE_UPLOADS_DAYS  ${ABORT_INCOMPLETE_UPLOADS_DAYS}
  SPLIT_EXPIRY_DAYS              ${SPLIT_EXPIRY_DAYS}  (chunks of a split that never completed)
  AWS_REGION                     ${AWS_REGION}
  AWS_ENDPOINT_URL               ${AWS_ENDPOINT_URL:-(unset: real AWS)}
EOF
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) usage; die "unknown argument: $1" ;;
esac

validate_bucket_name INPUT_BUCKET
validate_bucket_name OUTPUT_BUCKET
normalize_prefix INPUT_PREFIX
normalize_prefix OUTPUT_PREFIX
validate_uint ABORT_INCOMPLETE_UPLOADS_DAYS 1 365
validate_uint SPLIT_EXPIRY_DAYS 1 3650

check_aws_access

ensure_bucket() {
    local bucket=$1
    local create_args=(--bucket "$bucket")
    # us-east-1 is the one region that refuses an explicit LocationConstraint.
    [[ "$AWS_REGION" != us-east-1 ]] &&
        create_args+=(--create-bucket-configuration "LocationConstraint=$AWS_REGION")
    if aws_cli s3api create-bucket "${create_args[@]}" >/dev/null 2>"$AWS_ERR"; then
        # In us-east-1 S3 also answers 200 when we already own the bucket.
        log "bucket $bucket created (or already ours)"
    elif aws_error_is BucketAlreadyOwnedByYou; then
        log "bucket $bucket exists"
    elif aws_error_is BucketAlreadyExists; then
        aws_fail "bucket name $bucket is taken by another AWS account: bucket names are global, choose another"
    else
        aws_fail "cannot create bucket $bucket"
    fi
}

configure_bucket() {
    local bucket=$1
    aws_cli s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
        BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true \
        >/dev/null 2>"$AWS_ERR" || aws_fail "cannot block public access on $bucket"

    aws_cli s3api put-bucket-ownership-controls --bucket "$bucket" \
        --ownership-controls 'Rules=[{ObjectOwnership=BucketOwnerEnforced}]' \
        >/dev/null 2>"$AWS_ERR" || aws_fail "cannot disable ACLs on $bucket"

    local encryption="$TMP_DIR/encryption.json"
    cat >"$encryption" <<'EOF'
{
  "Rules": [
    { "ApplyServerSideEncryptionByDefault": { "SSEAlgorithm": "AES256" } }
  ]
}
EOF
    aws_cli s3api put-bucket-encryption --bucket "$bucket" \
        --server-side-encryption-configuration "file://$encryption" \
        >/dev/null 2>"$AWS_ERR" || aws_fail "cannot set default encryption on $bucket"

    local lifecycle="$TMP_DIR/lifecycle.json"
    cat >"$lifecycle" <<EOF
{
  "Rules": [
    {
      "ID": "abort-incomplete-multipart-uploads",
      "Status": "Enabled",
      "Filter": { "Prefix": "" },
      "AbortIncompleteMultipartUpload": { "DaysAfterInitiation": ${ABORT_INCOMPLETE_UPLOADS_DAYS} }
    },
    {
      "ID": "expire-split-chunks",
      "Status": "Enabled",
      "Filter": { "Tag": { "Key": "video-encoding", "Value": "split" } },
      "Expiration": { "Days": ${SPLIT_EXPIRY_DAYS} }
    }
  ]
}
EOF
    # S3 answers with TransitionDefaultMinimumObjectSize, which the CLI prints: stdout is for the
    # URI lines only (seen on LocalStack, which answers as S3 does since 2024; moto is silent).
    aws_cli s3api put-bucket-lifecycle-configuration --bucket "$bucket" \
        --lifecycle-configuration "file://$lifecycle" \
        >/dev/null 2>"$AWS_ERR" || aws_fail "cannot set the lifecycle rules of $bucket"

    log "bucket $bucket: public access blocked, ACLs disabled, SSE-S3 by default," \
        "incomplete multipart uploads aborted after ${ABORT_INCOMPLETE_UPLOADS_DAYS} day(s)," \
        "split chunks left behind expired after ${SPLIT_EXPIRY_DAYS} day(s)"
}

buckets=("$INPUT_BUCKET")
[[ "$OUTPUT_BUCKET" != "$INPUT_BUCKET" ]] && buckets+=("$OUTPUT_BUCKET")

for bucket in "${buckets[@]}"; do
    ensure_bucket "$bucket"
    configure_bucket "$bucket"
done

printf 'INPUT_URI=s3://%s/%s\n' "$INPUT_BUCKET" "${INPUT_PREFIX%/}"
printf 'OUTPUT_URI=s3://%s/%s\n' "$OUTPUT_BUCKET" "${OUTPUT_PREFIX%/}"
