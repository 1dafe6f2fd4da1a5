#!/usr/bin/env bash
# Creates the encode-request queue and its dead-letter queue, or brings existing ones up to date.
#
# stdout is exactly one line, the main queue's URL:   QUEUE_URL=$(scripts/aws/create-queue.sh)
# Safe to re-run: the queues are looked up first and every attribute is set again each time.
set -euo pipefail
# shellcheck source=scripts/aws/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

: "${VISIBILITY_TIMEOUT_SECONDS:=120}"     # the encoder's lease, renewed while it works
: "${RECEIVE_WAIT_SECONDS:=20}"            # long polling: receivers wait up to this long
: "${MAX_RECEIVE_COUNT:=5}"                # receives before a message goes to the DLQ
: "${MESSAGE_RETENTION_SECONDS:=345600}"   # 4 days, SQS's default
: "${DLQ_RETENTION_SECONDS:=1209600}"      # 14 days, SQS's maximum: time to look at failures

usage() {
    cat >&2 <<EOF
usage: $0

Creates or updates the SQS queue \$QUEUE_NAME and its dead-letter queue, prints the queue URL.

  QUEUE_NAME                  ${QUEUE_NAME}  (a name ending in .fifo makes both queues FIFO)
  DLQ_NAME                    ${DLQ_NAME}
  VISIBILITY_TIMEOUT_SECONDS  ${VISIBILITY_TIMEOUT_SECONDS}
  RECEIVE_WAIT_SECONDS        ${RECEIVE_WAIT_SECONDS}
  MAX_RECEIVE_COUNT           ${MAX_RECEIVE_COUNT}
  MESSAGE_RETENTION_SECONDS   ${MESSAGE_RETENTION_SECONDS}
  DLQ_RETENTION_SECONDS       ${DLQ_RETENTION_SECONDS}
  AWS_REGION                  ${AWS_REGION}
  AWS_ENDPOINT_URL            ${AWS_ENDPOINT_URL:-(unset: real AWS)}
EOF
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) usage; die "unknown argument: $1" ;;
esac

validate_queue_name QUEUE_NAME
validate_queue_name DLQ_NAME
queue_type=standard
[[ "$QUEUE_NAME" == *.fifo ]] && queue_type=FIFO
dlq_type=standard
[[ "$DLQ_NAME" == *.fifo ]] && dlq_type=FIFO
[[ "$queue_type" == "$dlq_type" ]] ||
    die "QUEUE_NAME '$QUEUE_NAME' is a $queue_type queue but DLQ_NAME '$DLQ_NAME' is a $dlq_type one: SQS needs both of one type"
validate_uint VISIBILITY_TIMEOUT_SECONDS 0 43200
validate_uint RECEIVE_WAIT_SECONDS 0 20
validate_uint MAX_RECEIVE_COUNT 1 1000
validate_uint MESSAGE_RETENTION_SECONDS 60 1209600
validate_uint DLQ_RETENTION_SECONDS 60 1209600

check_aws_access

dlq_url=$(ensure_queue "$DLQ_NAME")
queue_url=$(ensure_queue "$QUEUE_NAME")
dlq_arn=$(queue_arn "$dlq_url")
queue_arn=$(queue_arn "$queue_url")

fifo_attributes=""
[[ "$queue_type" == FIFO ]] && fifo_attributes='"ContentBasedDeduplication": "false",'

# The DLQ accepts dead letters from our queue only (RedriveAllowPolicy), keeps them 14 days, and is
# encrypted at rest with SQS-managed keys like the main queue.
set_attributes "$dlq_url" "{
  ${fifo_attributes}
  \"MessageRetentionPeriod\": \"${DLQ_RETENTION_SECONDS}\",
  \"SqsManagedSseEnabled\": \"true\",
  \"RedriveAllowPolicy\": \"{\\\"redrivePermission\\\":\\\"byQueue\\\",\\\"sourceQueueArns\\\":[\\\"${queue_arn}\\\"]}\"
}"
log "dead-letter queue $DLQ_NAME: retention ${DLQ_RETENTION_SECONDS}s, SSE-SQS, accepts dead letters from $QUEUE_NAME only"

set_attributes "$queue_url" "{
  ${fifo_attributes}
  \"VisibilityTimeout\": \"${VISIBILITY_TIMEOUT_SECONDS}\",
  \"ReceiveMessageWaitTimeSeconds\": \"${RECEIVE_WAIT_SECONDS}\",
  \"MessageRetentionPeriod\": \"${MESSAGE_RETENTION_SECONDS}\",
  \"SqsManagedSseEnabled\": \"true\",
  \"RedrivePolicy\": \"{\\\"deadLetterTargetArn\\\":\\\"${dlq_arn}\\\",\\\"maxReceiveCount\\\":${MAX_RECEIVE_COUNT}}\"
}"
log "queue $QUEUE_NAME: visibility ${VISIBILITY_TIMEOUT_SECONDS}s, long polling ${RECEIVE_WAIT_SECONDS}s," \
    "retention ${MESSAGE_RETENTION_SECONDS}s, SSE-SQS, dead letters after ${MAX_RECEIVE_COUNT} receives to $DLQ_NAME"

printf '%s\n' "$queue_url"
