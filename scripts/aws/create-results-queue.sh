#!/usr/bin/env bash
# Creates the results queue, or brings an existing one up to date: the encoder sends one
# completion notice per request there (its RESULT_QUEUE_URL), and `producer --wait` reads the
# notices of the requests it sent.
#
# stdout is exactly one line, the results queue's URL:
#   RESULT_QUEUE_URL=$(scripts/aws/create-results-queue.sh)
# Safe to re-run: the queue is looked up first and every attribute is set again each time.
#
# No dead-letter queue, on purpose: a waiting producer gives back (ChangeMessageVisibility) the
# notices of requests that are not its own, and every give-back counts as a receive, so a
# redrive policy would move notices to a DLQ before their producer saw them. A notice nobody
# reads simply expires after RESULT_RETENTION_SECONDS.
set -euo pipefail
# shellcheck source=scripts/aws/_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

: "${RESULT_VISIBILITY_TIMEOUT_SECONDS:=30}"   # the default lease of a received notice (producer --wait asks for 30 s itself)
: "${RECEIVE_WAIT_SECONDS:=20}"                # long polling: a waiting producer's ReceiveMessage waits up to this long
: "${RESULT_RETENTION_SECONDS:=345600}"        # 4 days: a producer may start waiting long after the encodes ended

usage() {
    cat >&2 <<EOF
usage: $0

Creates or updates the SQS queue \$RESULT_QUEUE_NAME, which gets the encoder's completion notices;
prints its URL (the encoder's and the producer's RESULT_QUEUE_URL).

  RESULT_QUEUE_NAME                   ${RESULT_QUEUE_NAME}  (a name ending in .fifo makes it FIFO)
  RESULT_VISIBILITY_TIMEOUT_SECONDS   ${RESULT_VISIBILITY_TIMEOUT_SECONDS}
  RECEIVE_WAIT_SECONDS                ${RECEIVE_WAIT_SECONDS}
  RESULT_RETENTION_SECONDS            ${RESULT_RETENTION_SECONDS}
  QUEUE_NAME / DLQ_NAME               ${QUEUE_NAME} / ${DLQ_NAME}  (only checked to differ from RESULT_QUEUE_NAME)
  AWS_REGION                          ${AWS_REGION}
  AWS_ENDPOINT_URL                    ${AWS_ENDPOINT_URL:-(unset: real AWS)}
EOF
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) usage; die "unknown argument: $1" ;;
esac

validate_queue_name QUEUE_NAME
validate_queue_name DLQ_NAME
validate_result_queue_name
validate_uint RESULT_VISIBILITY_TIMEOUT_SECONDS 0 43200
validate_uint RECEIVE_WAIT_SECONDS 0 20
validate_uint RESULT_RETENTION_SECONDS 60 1209600

check_aws_access

url=$(ensure_queue "$RESULT_QUEUE_NAME")

# Converging means taking away a redrive policy someone added (see above): setting the attribute
# to "" removes it.
redrive=$(aws_cli sqs get-queue-attributes --queue-url "$url" --attribute-names RedrivePolicy \
    --query Attributes.RedrivePolicy --output text 2>"$AWS_ERR") || aws_fail "cannot read the attributes of $url"
if [[ -n "$redrive" && "$redrive" != None ]]; then
    set_attributes "$url" '{"RedrivePolicy": ""}'
    log "removed the redrive policy of $RESULT_QUEUE_NAME ($redrive): notices given back by one producer" \
        "for another would otherwise be moved away before their own producer saw them"
fi

# FIFO: the encoder sends a MessageDeduplicationId (from the request id and the outcome) and the
# video id as MessageGroupId; duplicates are never recognised by comparing bodies, which differ
# (finished_at, receive_count) between two sends of one outcome.
fifo_attributes=""
[[ "$RESULT_QUEUE_NAME" == *.fifo ]] && fifo_attributes='"ContentBasedDeduplication": "false",'

set_attributes "$url" "{
  ${fifo_attributes}
  \"VisibilityTimeout\": \"${RESULT_VISIBILITY_TIMEOUT_SECONDS}\",
  \"ReceiveMessageWaitTimeSeconds\": \"${RECEIVE_WAIT_SECONDS}\",
  \"MessageRetentionPeriod\": \"${RESULT_RETENTION_SECONDS}\",
  \"SqsManagedSseEnabled\": \"true\"
}"
log "results queue $RESULT_QUEUE_NAME: visibility ${RESULT_VISIBILITY_TIMEOUT_SECONDS}s, long polling ${RECEIVE_WAIT_SECONDS}s," \
    "retention ${RESULT_RETENTION_SECONDS}s, SSE-SQS, no dead-letter queue"

printf '%s\n' "$url"
