# shellcheck shell=bash disable=SC2034  # the names defined here are used by the sourcing scripts
# Helpers shared by scripts/aws/*.sh. Sourced by them, never run on its own.
#
# Everything a script prints for humans goes to stderr; stdout is reserved for the values a caller
# captures (a queue URL, NAME=arn lines).

SCRIPT_NAME=$(basename "$0" .sh)
AWS_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
POLICY_DIR="$AWS_SCRIPTS_DIR/policies"

# ---------------------------------------------------------------------------------------------
# Settings shared by every script (each may be overridden from the environment).
# ---------------------------------------------------------------------------------------------

# The AWS CLI v1 reads only AWS_DEFAULT_REGION, v2 reads both: we settle on one value and pass it
# explicitly with --region.
: "${AWS_REGION:=${AWS_DEFAULT_REGION:-us-east-1}}"
: "${QUEUE_NAME:=video-encode-requests}"
# Where the encoder sends one completion notice per request (RESULT_QUEUE_URL), and `producer
# --wait` reads them; a name ending in .fifo makes it FIFO (independent of QUEUE_NAME's type).
: "${RESULT_QUEUE_NAME:=video-encode-results}"
: "${INPUT_BUCKET:=media-in}"
: "${OUTPUT_BUCKET:=media-out}"
: "${INPUT_PREFIX:=uploads/}"
: "${OUTPUT_PREFIX:=renditions/}"
: "${NAME_PREFIX:=video-encoding}"
: "${KEDA_OPERATOR_ROLE:=keda-operator}"
# false: the KEDA operator's role belongs to someone else; we only attach our one policy to it.
: "${MANAGE_KEDA_OPERATOR_ROLE:=true}"
export AWS_REGION
# AWS CLI v2 would otherwise page long output through `less` and wait for a key press.
export AWS_PAGER=""

case "$AWS_REGION" in
    cn-*) : "${AWS_PARTITION:=aws-cn}" ;;
    us-gov-*) : "${AWS_PARTITION:=aws-us-gov}" ;;
    *) : "${AWS_PARTITION:=aws}" ;;
esac

# The dead-letter queue of a FIFO queue must be FIFO too, and ".fifo" must stay at the end.
if [[ "$QUEUE_NAME" == *.fifo ]]; then
    : "${DLQ_NAME:=${QUEUE_NAME%.fifo}-dlq.fifo}"
else
    : "${DLQ_NAME:=${QUEUE_NAME}-dlq}"
fi

# Role and managed-policy names (a role and a policy may share a name: separate namespaces).
KEDA_READER_ROLE="${NAME_PREFIX}-keda-reader"
ENCODER_ROLE="${NAME_PREFIX}-encoder"
PRODUCER_ROLE="${NAME_PREFIX}-producer"
KEDA_READER_POLICY="${NAME_PREFIX}-keda-reader"
ENCODER_POLICY="${NAME_PREFIX}-encoder"
PRODUCER_POLICY="${NAME_PREFIX}-producer"
KEDA_OPERATOR_POLICY="${NAME_PREFIX}-keda-operator-assume-reader"

# ---------------------------------------------------------------------------------------------
# Logging and failing
# ---------------------------------------------------------------------------------------------

log() { printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
    printf '[%s] error: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

# A scratch directory for rendered documents and captured CLI errors, removed on exit.
TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/aws-${SCRIPT_NAME}.XXXXXX")
trap 'rm -rf "$TMP_DIR"' EXIT
AWS_ERR="$TMP_DIR/aws.err"

# ---------------------------------------------------------------------------------------------
# The AWS CLI
# ---------------------------------------------------------------------------------------------

# aws_cli SERVICE ARGS... runs `aws` with our region and, when one is set, the emulator endpoint.
#
# We pass --endpoint-url ourselves: the AWS CLI v1 (pip `awscli` 1.45) does honour AWS_ENDPOINT_URL
# for S3, IAM and STS, but its SQS customisation replaces any endpoint not given on the command line
# with queue.amazonaws.com. The service-specific AWS_ENDPOINT_URL_<SERVICE> wins, as in the SDKs.
aws_cli() {
    local service=$1
    shift
    local service_var="AWS_ENDPOINT_URL_${service^^}"
    [[ "$service" == s3api ]] && service_var=AWS_ENDPOINT_URL_S3
    local endpoint=${!service_var:-${AWS_ENDPOINT_URL:-}}
    local args=(--region "$AWS_REGION")
    [[ -n "$endpoint" ]] && args+=(--endpoint-url "$endpoint")
    aws "${args[@]}" "$service" "$@"
}

# aws_error_is CODE... is true when the last CLI error captured in $AWS_ERR names one of CODEs.
aws_error_is() {
    local code
    for code in "$@"; do
        grep -q -- "$code" "$AWS_ERR" && return 0
    done
    return 1
}

# aws_fail MESSAGE shows the captured CLI error, then dies with MESSAGE.
aws_fail() {
    cat "$AWS_ERR" >&2
    die "$*"
}

require_aws_cli() {
    command -v aws >/dev/null 2>&1 ||
        die "the aws CLI is not installed: pip install awscli (or install AWS CLI v2)"
}

# Proves we can talk to AWS (or the emulator) before changing anything, and sets ACCOUNT_ID.
check_aws_access() {
    require_aws_cli
    local caller
    if ! caller=$(aws_cli sts get-caller-identity --query '[Account, Arn]' --output text 2>"$AWS_ERR"); then
        aws_fail "cannot call AWS as anyone (sts get-caller-identity failed): configure credentials" \
            "(AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an IAM role) and AWS_REGION"
    fi
    local caller_account=${caller%%$'\t'*}
    if [[ -n "${ACCOUNT_ID:-}" && "$ACCOUNT_ID" != "$caller_account" ]]; then
        die "ACCOUNT_ID is $ACCOUNT_ID, but these credentials belong to account $caller_account"
    fi
    ACCOUNT_ID=$caller_account
    log "account ${ACCOUNT_ID} as ${caller#*$'\t'}, region ${AWS_REGION}${AWS_ENDPOINT_URL:+, endpoint ${AWS_ENDPOINT_URL}}"
}

# ---------------------------------------------------------------------------------------------
# SQS queues (create-queue.sh, create-results-queue.sh)
# ---------------------------------------------------------------------------------------------

# ensure_queue NAME prints the URL of queue NAME, creating the queue when it does not exist.
ensure_queue() {
    local name=$1 url
    if url=$(aws_cli sqs get-queue-url --queue-name "$name" --query QueueUrl --output text 2>"$AWS_ERR"); then
        log "queue $name exists: $url"
    elif aws_error_is NonExistentQueue QueueDoesNotExist; then
        local create_args=(--queue-name "$name")
        # A queue's type is fixed at creation; the caller converges every other attribute with
        # set_attributes.
        [[ "$name" == *.fifo ]] && create_args+=(--attributes FifoQueue=true)
        if ! url=$(aws_cli sqs create-queue "${create_args[@]}" --query QueueUrl --output text 2>"$AWS_ERR"); then
            aws_error_is QueueDeletedRecently &&
                aws_fail "queue $name was deleted less than 60 seconds ago; SQS refuses the name until then, retry in a minute"
            aws_fail "cannot create queue $name"
        fi
        log "created queue $name: $url"
    else
        aws_fail "cannot look up queue $name"
    fi
    printf '%s\n' "$url"
}

queue_arn() {
    aws_cli sqs get-queue-attributes --queue-url "$1" --attribute-names QueueArn \
        --query Attributes.QueueArn --output text 2>"$AWS_ERR" || aws_fail "cannot read the ARN of $1"
}

# set_attributes URL JSON sets the attributes in the JSON map (attribute name -> string value).
set_attributes() {
    local url=$1 file="$TMP_DIR/attributes.json"
    printf '%s\n' "$2" >"$file"
    aws_cli sqs set-queue-attributes --queue-url "$url" --attributes "file://$file" 2>"$AWS_ERR" ||
        aws_fail "cannot set the attributes of $url"
}

# ---------------------------------------------------------------------------------------------
# Input validation: values end up inside JSON documents and ARNs, so only plain names get through.
# ---------------------------------------------------------------------------------------------

# SQS allows 80 characters of A-Z a-z 0-9 _ -, ".fifo" included for a FIFO queue.
validate_queue_name() {
    local var=$1 value=${!1}
    [[ "$value" =~ ^[A-Za-z0-9_-]{1,80}$ || "$value" =~ ^[A-Za-z0-9_-]{1,75}\.fifo$ ]] ||
        die "invalid $var '$value': up to 80 of A-Z a-z 0-9 _ - (a FIFO queue's name ends in .fifo)"
}

# validate_result_queue_name checks RESULT_QUEUE_NAME, and that it names neither the request queue
# nor its DLQ: the encoder may send to the results queue, and must never be able to send itself
# requests (or dead letters) under that name.
validate_result_queue_name() {
    validate_queue_name RESULT_QUEUE_NAME
    [[ "$RESULT_QUEUE_NAME" != "$QUEUE_NAME" && "$RESULT_QUEUE_NAME" != "$DLQ_NAME" ]] ||
        die "RESULT_QUEUE_NAME '$RESULT_QUEUE_NAME' must differ from QUEUE_NAME and DLQ_NAME: the encoder may send to the results queue"
}

validate_bucket_name() {
    local var=$1 value=${!1}
    [[ "$value" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ && "$value" != *..* ]] ||
        die "invalid $var '$value': 3-63 of a-z 0-9 . - starting and ending with a letter or digit"
}

# normalize_prefix VAR makes the S3 key prefix in VAR end with one "/" (uploads -> uploads/), so that
# "uploads/*" cannot also match "uploads-private/...", and refuses wildcards and anything else that
# would widen (or break) the IAM resources it ends up in.
normalize_prefix() {
    local var=$1 value=${!1}
    value=${value#/}
    [[ -z "$value" || "$value" == */ ]] || value+=/
    [[ "$value" =~ ^([A-Za-z0-9._-]+/)+$ ]] ||
        die "invalid $var '${!1}': path segments of A-Z a-z 0-9 . _ - separated by '/' (e.g. uploads/)"
    printf -v "$var" '%s' "$value"
}

validate_uint() {
    local var=$1 min=$2 max=$3 value=${!1}
    if [[ ! "$value" =~ ^[0-9]+$ ]] || ((10#$value < min || 10#$value > max)); then
        die "invalid $var '$value': a whole number from $min to $max"
    fi
}

validate_k8s_name() {
    local var=$1 value=${!1}
    [[ "$value" =~ ^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$ ]] ||
        die "invalid $var '$value': a Kubernetes name (lower-case letters, digits, '-' and '.')"
}

validate_iam_name() {
    local var=$1 value=${!1}
    [[ "$value" =~ ^[A-Za-z0-9+=,.@_-]{1,64}$ ]] ||
        die "invalid $var '$value': 1-64 of A-Z a-z 0-9 + = , . @ _ -"
}

# ---------------------------------------------------------------------------------------------
# Policy templates
# ---------------------------------------------------------------------------------------------

# render_template FILE NAME=VALUE... prints FILE with each ${NAME} replaced by VALUE. Pure bash, so
# nothing beyond bash is needed (envsubst would silently turn a forgotten variable into ""); any
# placeholder left over is an error.
render_template() {
    local file=$1
    shift
    [[ -r "$file" ]] || die "policy template not found: $file"
    local text pair name value
    text=$(<"$file")
    for pair in "$@"; do
        name=${pair%%=*}
        value=${pair#*=}
        text=${text//"\${${name}}"/"${value}"}
    done
    # shellcheck disable=SC2016  # a literal "${", not an expansion
    if [[ "$text" == *'${'* ]]; then
        die "$file: placeholders left unrendered: $(grep -o '\${[A-Za-z_]*}' <<<"$text" | sort -u | tr '\n' ' ')"
    fi
    printf '%s\n' "$text"
}

# squash FILE prints FILE without any whitespace: enough to compare two renderings of our
# documents (whose strings hold no spaces) with what IAM hands back.
squash() { tr -d ' \t\r\n' <"$1"; }
