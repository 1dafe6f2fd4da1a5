#!/usr/bin/env bash
# Deletes what create-queue.sh, create-results-queue.sh, create-buckets.sh and create-iam.sh created,
# for the same settings: the request queue, its DLQ and the results queue, both buckets with every object, version, delete marker and unfinished upload in them,
# the roles and the managed policies.
#
# Destructive, so it refuses to run without --yes (or CONFIRM=yes). Safe to re-run: what is
# already gone is skipped.
set -euo pipefail
# shellcheck source=scripts/aws/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

: "${CONFIRM:=no}"

roles=("$ENCODER_ROLE" "$PRODUCER_ROLE" "$KEDA_READER_ROLE")
policies=("$ENCODER_POLICY" "$PRODUCER_POLICY" "$KEDA_READER_POLICY" "$KEDA_OPERATOR_POLICY")
buckets=("$INPUT_BUCKET")
[[ "$OUTPUT_BUCKET" != "$INPUT_BUCKET" ]] && buckets+=("$OUTPUT_BUCKET")

usage() {
    local operator_role="$KEDA_OPERATOR_ROLE (only if nothing else is attached to it)"
    [[ "$MANAGE_KEDA_OPERATOR_ROLE" == true ]] ||
        operator_role="none: MANAGE_KEDA_OPERATOR_ROLE=false, only our policy is detached from $KEDA_OPERATOR_ROLE"
    cat >&2 <<EOF
usage: $0 --yes        (or CONFIRM=yes $0)

Deletes, in region ${AWS_REGION}${AWS_ENDPOINT_URL:+ at ${AWS_ENDPOINT_URL}}:
  queues:        ${QUEUE_NAME} ${DLQ_NAME} ${RESULT_QUEUE_NAME}
  buckets:       ${buckets[*]}  (with all their objects and versions)
  roles:         ${roles[*]}
  KEDA's role:   ${operator_role}
  policies:      ${policies[*]}
Names come from the same variables as the create scripts (QUEUE_NAME, RESULT_QUEUE_NAME,
INPUT_BUCKET, OUTPUT_BUCKET, NAME_PREFIX, KEDA_OPERATOR_ROLE, MANAGE_KEDA_OPERATOR_ROLE, AWS_REGION, AWS_ENDPOINT_URL).
EOF
}

while (($# > 0)); do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        -y | --yes) CONFIRM=yes; shift ;;
        *) usage; die "unknown argument: $1" ;;
    esac
done

validate_queue_name QUEUE_NAME
validate_queue_name DLQ_NAME
validate_result_queue_name
validate_bucket_name INPUT_BUCKET
validate_bucket_name OUTPUT_BUCKET
validate_iam_name NAME_PREFIX
validate_iam_name KEDA_OPERATOR_ROLE

if [[ "$CONFIRM" != yes ]]; then
    usage
    die "refusing to delete anything without --yes (or CONFIRM=yes)"
fi

check_aws_access

# ---------------------------------------------------------------------------------------------
# SQS
# ---------------------------------------------------------------------------------------------

delete_queue() {
    local name=$1 url
    if url=$(aws_cli sqs get-queue-url --queue-name "$name" --query QueueUrl --output text 2>"$AWS_ERR"); then
        aws_cli sqs delete-queue --queue-url "$url" 2>"$AWS_ERR" || aws_fail "cannot delete queue $name"
        log "queue $name deleted (SQS keeps the name reserved for 60 seconds)"
    elif aws_error_is NonExistentQueue QueueDoesNotExist; then
        log "queue $name: already gone"
    else
        aws_fail "cannot look up queue $name"
    fi
}

# ---------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------

# delete_batches BUCKET KIND deletes the bucket's Versions or DeleteMarkers, 1000 per request.
delete_batches() {
    local bucket=$1 kind=$2 batch="$TMP_DIR/delete.json" result
    while :; do
        # The CLI writes the JSON delete-objects expects: {"Objects": [{"Key", "VersionId"}...]}.
        aws_cli s3api list-object-versions --bucket "$bucket" --max-items 1000 --output json \
            --query "{Objects: ${kind}[].{Key: Key, VersionId: VersionId}, Quiet: \`true\`}" \
            >"$batch" 2>"$AWS_ERR" || aws_fail "cannot list the object versions of $bucket"
        grep -q '"Key"' "$batch" || return 0
        result=$(aws_cli s3api delete-objects --bucket "$bucket" --delete "file://$batch" --output json 2>"$AWS_ERR") ||
            aws_fail "cannot delete objects from $bucket"
        # Quiet mode reports only the failures; stop rather than loop over them forever.
        [[ "$result" != *'"Errors"'* ]] || die "some objects of $bucket could not be deleted: $result"
    done
}

abort_uploads() {
    local bucket=$1 key upload_id uploads
    # shellcheck disable=SC2016  # backquotes are a JMESPath literal
    uploads=$(aws_cli s3api list-multipart-uploads --bucket "$bucket" --output text \
        --query 'Uploads[].[Key, UploadId] || `[]`' 2>"$AWS_ERR") ||
        aws_fail "cannot list the unfinished uploads of $bucket"
    while IFS=$'\t' read -r key upload_id; do
        [[ -n "$upload_id" ]] || continue
        aws_cli s3api abort-multipart-upload --bucket "$bucket" --key "$key" --upload-id "$upload_id" \
            2>"$AWS_ERR" || aws_fail "cannot abort the upload of $key in $bucket"
    done <<<"$uploads"
}

delete_bucket() {
    local bucket=$1
    if ! aws_cli s3api head-bucket --bucket "$bucket" >/dev/null 2>"$AWS_ERR"; then
        if aws_error_is '(404)' NoSuchBucket 'Not Found'; then
            log "bucket $bucket: already gone"
            return 0
        fi
        aws_fail "cannot reach bucket $bucket (a 403 means it is not ours to delete)"
    fi
    abort_uploads "$bucket"
    delete_batches "$bucket" Versions
    delete_batches "$bucket" DeleteMarkers
    aws_cli s3api delete-bucket --bucket "$bucket" 2>"$AWS_ERR" || aws_fail "cannot delete bucket $bucket"
    log "bucket $bucket emptied and deleted"
}

# ---------------------------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------------------------

policy_arn() { printf 'arn:%s:iam::%s:policy/%s' "$AWS_PARTITION" "$ACCOUNT_ID" "$1"; }

# role_exists NAME is true when the role exists, false when it does not, and fails otherwise.
role_exists() {
    aws_cli iam get-role --role-name "$1" >/dev/null 2>"$AWS_ERR" && return 0
    aws_error_is NoSuchEntity && return 1
    aws_fail "cannot look up role $1"
}

attached_policies() {
    aws_cli iam list-attached-role-policies --role-name "$1" --query 'AttachedPolicies[].PolicyArn' \
        --output text 2>"$AWS_ERR" || aws_fail "cannot list the policies attached to role $1"
}

inline_policies() {
    aws_cli iam list-role-policies --role-name "$1" --query 'PolicyNames' --output text 2>"$AWS_ERR" ||
        aws_fail "cannot list the inline policies of role $1"
}

delete_role() {
    local name=$1 attached inline arn policy
    if ! role_exists "$name"; then
        log "role $name: already gone"
        return 0
    fi
    attached=$(attached_policies "$name")
    inline=$(inline_policies "$name")
    for arn in $attached; do
        aws_cli iam detach-role-policy --role-name "$name" --policy-arn "$arn" 2>"$AWS_ERR" ||
            aws_fail "cannot detach $arn from role $name"
    done
    for policy in $inline; do
        aws_cli iam delete-role-policy --role-name "$name" --policy-name "$policy" 2>"$AWS_ERR" ||
            aws_fail "cannot delete inline policy $policy of role $name"
    done
    aws_cli iam delete-role --role-name "$name" 2>"$AWS_ERR" || aws_fail "cannot delete role $name"
    log "role $name deleted"
}

# The KEDA operator's role may serve other workloads too: it is deleted only when we manage it and
# nothing but our policy is attached to it; otherwise only our policy is detached from it.
delete_keda_operator_role() {
    local name=$KEDA_OPERATOR_ROLE ours attached inline arn policy
    local -a others=()
    ours=$(policy_arn "$KEDA_OPERATOR_POLICY")
    if ! role_exists "$name"; then
        log "role $name: already gone"
        return 0
    fi
    attached=$(attached_policies "$name")
    inline=$(inline_policies "$name")
    for arn in $attached; do
        [[ "$arn" == "$ours" ]] || others+=("$arn")
    done
    for policy in $inline; do
        others+=("inline:$policy")
    done
    if [[ "$MANAGE_KEDA_OPERATOR_ROLE" == true && ${#others[@]} -eq 0 ]]; then
        delete_role "$name"
        return 0
    fi
    for arn in $attached; do
        [[ "$arn" == "$ours" ]] || continue
        aws_cli iam detach-role-policy --role-name "$name" --policy-arn "$ours" 2>"$AWS_ERR" ||
            aws_fail "cannot detach $ours from role $name"
        log "policy $ours detached from role $name"
    done
    if ((${#others[@]} > 0)); then
        log "role $name kept: other policies are attached to it: ${others[*]}"
    else
        log "role $name kept: MANAGE_KEDA_OPERATOR_ROLE=false"
    fi
}

# list_for_policy ARN QUERY lists who the policy is attached to (roles, users or groups).
list_for_policy() {
    aws_cli iam list-entities-for-policy --policy-arn "$1" --query "$2" --output text 2>"$AWS_ERR" ||
        aws_fail "cannot list the entities $1 is attached to"
}

delete_policy() {
    local arn entity version
    arn=$(policy_arn "$1")
    if ! aws_cli iam get-policy --policy-arn "$arn" >/dev/null 2>"$AWS_ERR"; then
        aws_error_is NoSuchEntity || aws_fail "cannot look up policy $arn"
        log "policy $1: already gone"
        return 0
    fi
    # IAM deletes a policy only once it is attached nowhere and has no version but the default.
    local roles_attached users_attached groups_attached old_versions
    roles_attached=$(list_for_policy "$arn" 'PolicyRoles[].RoleName')
    users_attached=$(list_for_policy "$arn" 'PolicyUsers[].UserName')
    groups_attached=$(list_for_policy "$arn" 'PolicyGroups[].GroupName')
    for entity in $roles_attached; do
        aws_cli iam detach-role-policy --role-name "$entity" --policy-arn "$arn" 2>"$AWS_ERR" ||
            aws_fail "cannot detach $arn from role $entity"
    done
    for entity in $users_attached; do
        aws_cli iam detach-user-policy --user-name "$entity" --policy-arn "$arn" 2>"$AWS_ERR" ||
            aws_fail "cannot detach $arn from user $entity"
    done
    for entity in $groups_attached; do
        aws_cli iam detach-group-policy --group-name "$entity" --policy-arn "$arn" 2>"$AWS_ERR" ||
            aws_fail "cannot detach $arn from group $entity"
    done
    # shellcheck disable=SC2016  # backquotes are a JMESPath literal
    old_versions=$(aws_cli iam list-policy-versions --policy-arn "$arn" --output text \
        --query 'Versions[?IsDefaultVersion==`false`].VersionId' 2>"$AWS_ERR") ||
        aws_fail "cannot list the versions of $arn"
    for version in $old_versions; do
        aws_cli iam delete-policy-version --policy-arn "$arn" --version-id "$version" 2>"$AWS_ERR" ||
            aws_fail "cannot delete version $version of $arn"
    done
    aws_cli iam delete-policy --policy-arn "$arn" 2>"$AWS_ERR" || aws_fail "cannot delete policy $arn"
    log "policy $1 deleted"
}

# ---------------------------------------------------------------------------------------------

delete_queue "$QUEUE_NAME"
delete_queue "$DLQ_NAME"
delete_queue "$RESULT_QUEUE_NAME"
for bucket in "${buckets[@]}"; do
    delete_bucket "$bucket"
done
for role in "${roles[@]}"; do
    delete_role "$role"
done
delete_keda_operator_role
for policy in "${policies[@]}"; do
    delete_policy "$policy"
done
log "teardown complete"
