# shellcheck shell=bash
# Helpers shared by scripts/demo.sh, scripts/test.sh and scripts/bench.sh. Sourced, never run.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Processes started by start_bg, stopped by stop_all (install it with `trap stop_all EXIT`).
BG_PIDS=()
start_bg() { # LOG CMD...: start CMD in the background, output to LOG
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  BG_PIDS+=("$!")
}
stop_all() {
  local pid
  for pid in "${BG_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BG_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  BG_PIDS=()
}

wait_http() { # URL WHAT [SECONDS]: wait until URL answers
  local url=$1 what=$2 limit=${3:-30} i
  for ((i = 0; i < limit * 10; i++)); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$what did not answer at $url within ${limit}s"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_emulator KIND DIR: starts the local AWS emulator KIND (moto or localstack) on a free
# loopback port, logging to DIR/KIND.log (LocalStack's files in DIR/localstack), exports the
# standard AWS variables pointing at it, and waits until it answers.
start_emulator() {
  local kind=$1 dir=$2 port
  port=$(free_port)
  case $kind in
    moto)
      start_bg "$dir/moto.log" moto_server -H 127.0.0.1 -p "$port"
      ;;
    localstack)
      start_bg "$dir/localstack.log" "$REPO_ROOT/scripts/localstack.sh" "$port" "$dir/localstack"
      ;;
    *) die "EMULATOR must be moto or localstack, not '$kind'" ;;
  esac
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
  case $kind in
    moto) wait_http "$AWS_ENDPOINT_URL/moto-api/" "moto" ;;
    localstack) wait_localstack "$AWS_ENDPOINT_URL" 90 || die "LocalStack did not start: see $dir/localstack.log" ;;
  esac
}

wait_localstack() { # URL SECONDS: wait until LocalStack reports sqs and s3 ready
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    curl -fsS "$1/_localstack/health" 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)["services"]
sys.exit(0 if all(s.get(n) in ("available", "running") for n in ("sqs", "s3")) else 1)' 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# The aws CLI v1 ignores AWS_ENDPOINT_URL: pass it explicitly.
awsx() { aws ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} --region "${AWS_REGION:-us-east-1}" "$@"; }

queue_depth() { # QUEUE_URL: prints visible+in-flight messages
  awsx sqs get-queue-attributes --queue-url "$1" \
    --attribute-names ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible \
    --query 'to_string(sum([to_number(Attributes.ApproximateNumberOfMessages), to_number(Attributes.ApproximateNumberOfMessagesNotVisible)]))' \
    --output text
}
