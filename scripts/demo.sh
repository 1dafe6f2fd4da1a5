#!/usr/bin/env bash
# The whole pipeline on one machine, on real parts: a local AWS emulator (SQS and S3: moto, or
# LocalStack with EMULATOR=localstack) on 127.0.0.1, the result
# analyzer, sample clips made here, the producer, and the encoder run once per message until the
# queue is empty. Prints /get/count and where the renditions are. Exits 0 only if every request
# was processed. Stops everything it started, also on Ctrl-C.
#
# Knobs: EMULATOR (moto|localstack, default moto: it starts in about a second and takes about
# 60 MB, where LocalStack needs 4 to 10 s and 500 MB; both are tested by scripts/test.sh),
# PROFILE (debug|release, default debug), ANALYZER_PORT (default: a free port),
# DEMO_DIR (default .demo), SKIP_INSTALL=1, KEEP=1 (keep the emulator and the analyzer, with its
# dashboard, running until Ctrl-C).
set -eo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

: "${PROFILE:=debug}"
: "${DEMO_DIR:=$REPO_ROOT/.demo}"
: "${EMULATOR:=moto}"
: "${ANALYZER_PORT:=$(free_port)}"

trap 'stop_all' EXIT
trap 'echo; say "interrupted"; exit 130' INT TERM

[[ -n $SKIP_INSTALL ]] || { say "installing what is missing"; scripts/install-deps.sh; }

say "building ($PROFILE)"
build_args=(--workspace --bins)
[[ $PROFILE == release ]] && build_args+=(--release)
cargo build "${build_args[@]}"
BIN="$REPO_ROOT/target/$PROFILE"

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR/outputs"

say "starting $EMULATOR (SQS and S3 emulator) on 127.0.0.1"
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
start_emulator "$EMULATOR" "$DEMO_DIR"
echo "  $EMULATOR at $AWS_ENDPOINT_URL"

say "starting the result analyzer on 127.0.0.1:$ANALYZER_PORT"
ANALYZER_URL="http://127.0.0.1:$ANALYZER_PORT"
start_bg "$DEMO_DIR/analyzer.log" env LISTEN_ADDR="127.0.0.1:$ANALYZER_PORT" DATABASE_PATH="$DEMO_DIR/analyzer.db" \
  "$BIN/result-analyzer"
wait_http "$ANALYZER_URL/healthz" "the result analyzer"

say "creating the queue, its dead-letter queue and the buckets"
export QUEUE_NAME=video-encode-requests INPUT_BUCKET=media-in OUTPUT_BUCKET=media-out
QUEUE_URL=$(scripts/aws/create-queue.sh)
scripts/aws/create-buckets.sh >/dev/null
export QUEUE_URL

say "making three sample clips with the ffmpeg tool"
ffmpeg -v error -y -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=10" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=10" \
  -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -b:a 128k -shortest "$DEMO_DIR/sample-1080p.mp4"
ffmpeg -v error -y -f lavfi -i "testsrc2=size=1080x1920:rate=30:duration=6" \
  -f lavfi -i "sine=frequency=660:sample_rate=44100:duration=6" \
  -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -shortest "$DEMO_DIR/sample-portrait.mp4"
# Long enough to be split with the demo's SPLIT_SECONDS=6 (a cluster's default is 120): 3 chunks.
ffmpeg -v error -y -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=16" \
  -f lavfi -i "sine=frequency=550:sample_rate=48000:duration=16" \
  -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -shortest "$DEMO_DIR/sample-split.mp4"
say "uploading them and producing requests: three qualities of one video, one of another, two of a third in one request that the encoder splits into chunks"
"$BIN/producer" --upload "$DEMO_DIR/sample-1080p.mp4" --input-uri s3://media-in/uploads --video-id sample-1080p \
  --quality 480p --quality 720p --quality 1080p --output s3://media-out/renditions
"$BIN/producer" --upload "$DEMO_DIR/sample-portrait.mp4" --input-uri s3://media-in/uploads --video-id sample-portrait \
  --quality 720p --output s3://media-out/renditions
"$BIN/producer" --upload "$DEMO_DIR/sample-split.mp4" --input-uri s3://media-in/uploads --video-id sample-split \
  --quality 480p --quality 720p --one-message --output s3://media-out/renditions
expected=5

say "running the encoders as KEDA would: local-scaler with k8s/base/encoder-scaledjob.yaml"
# The manifest's own environment comes from a ConfigMap on a cluster; here it comes from ours.
export ANALYZER_URL OUTPUT_URI=s3://media-out/renditions RECEIVE_WAIT_SECONDS=2 VISIBILITY_TIMEOUT_SECONDS=60 SPLIT_SECONDS=6
export WORK_DIR="$DEMO_DIR" ENCODER_BIN="$BIN/encoder"
scaler_summary=$("$BIN/local-scaler" run --scaledjob k8s/base/encoder-scaledjob.yaml --until-empty \
  --job-logs "$DEMO_DIR/jobs" 2> >(tee "$DEMO_DIR/local-scaler.log" >&2)) || die "local-scaler failed: see $DEMO_DIR/local-scaler.log"
[[ $(queue_depth "$QUEUE_URL") -eq 0 ]] || die "the queue is not empty"

say "scaling decisions (KEDA 2.20 arithmetic, one encoder process per Job)"
grep -E "created|decision" "$DEMO_DIR/local-scaler.log" | grep -v "jobs_to_create=0" | sed 's/^/  /' | tail -n 12 || true
echo "  summary: $scaler_summary"
curl -fsS "$ANALYZER_URL/summary" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("  encoder runs at once, at most:", s["peak_concurrent_runs"]); print("  outcomes:", {k: v for k, v in s["counts"].items() if v})'

say "GET $ANALYZER_URL/get/count"
count=$(curl -fsS "$ANALYZER_URL/get/count")
echo "$count" | python3 -m json.tool
processed=$(echo "$count" | python3 -c 'import json,sys; print(sum(" - processed count " in s for s in json.load(sys.stdin)))')

say "the renditions (s3://media-out/renditions, copied to $DEMO_DIR/outputs)"
awsx s3 cp --only-show-errors --recursive s3://media-out/renditions "$DEMO_DIR/outputs"
for f in "$DEMO_DIR"/outputs/*/*.mp4; do
  printf '  %-60s %s\n' "${f#"$REPO_ROOT"/}" \
    "$(ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,width,height:format=duration -of csv=p=0 "$f" | paste -sd' ')"
done
echo "  dashboard: $ANALYZER_URL/ (KEEP=1 keeps it up after the run)"

if [[ $processed -ne $expected ]]; then
  die "$processed of $expected requests were processed"
fi
say "all $expected requests processed"
if [[ -n $KEEP ]]; then
  say "KEEP=1: the dashboard stays at $ANALYZER_URL/ until Ctrl-C"
  trap 'exit 0' INT TERM
  wait
fi
