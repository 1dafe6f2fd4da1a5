#!/usr/bin/env bash
# Benchmarks, each printed beside the reference it is compared to, measured in the same run:
#
#   encoder   time an encoder run spends outside the transcode, and an empty-queue run, beside the
#             same steps done with the aws command-line tool as the original example does them
#   transcode frames per second for one rendition, a 480p+720p+1080p ladder from one decode (beside
#             three ffmpeg runs and beside ONE ffmpeg command with a split filter), and
#             peak memory, beside the ffmpeg tool doing the same work with the same x264 settings
#   analyzer  durable events per second under wrk, beside a Python standard-library server that
#             behaves like the original analyzer and beside the previous version (before the
#             aggregates); every read route's latency and the start-up time at 10^4, 10^5 and 10^6
#             events, beside the previous version (scripts/bench/analyzer.sh; ANALYZER_BASELINE_REV,
#             default the last commit before the aggregates, is built into
#             target/analyzer-baseline; "none" skips it; BENCH_ANALYZER_DIR keeps the databases)
#   chaos     CHAOS_REQUESTS (default 100) requests on LocalStack, encoder runs killed at random
#             (SIGTERM and SIGKILL, seeded by CHAOS_SEED): the end-to-end chaos test at scale, its
#             figures printed (runs, kills, outputs, counts, time); it fails if any request does not
#             end with one valid output counted once
#   image     the container image: its size (uncompressed, and compressed as pushed) and the time
#             from container start to the encoder's first receive, beside the image as it was
#             before it was shrunk (scripts/bench/image.sh; needs podman: scripts/install-image-deps.sh)
#   split     a long request split into chunks and stitched (SPLIT_SECONDS, default 120) beside the
#             same request encoded whole: the renditions compared, the CPU, the critical path, two
#             runs at once, a model of a one-hour source on 8/32/128 pods, and chunk runs killed at
#             random (scripts/bench/split.sh; SPLIT_BENCH_SECONDS, default 600, and its other knobs;
#             SPLIT_BENCH_DIR keeps its files). Not in the default set: it runs for about an hour
#
# Times are medians over the runs; the transcode ratios are medians of the ratios of neighbouring
# runs (ours, then the reference), which cancels the machine's speed drifting between runs.
#
# Usage: scripts/bench.sh [encoder] [transcode] [analyzer] [chaos] [image] [split]
#        (default: all but split)
# Knobs: BENCH_RUNS (repetitions, default 5), BENCH_SECONDS (clip length, default 20),
# SKIP_INSTALL=1, SKIP_BUILD=1.
set -eo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

: "${BENCH_RUNS:=5}"
: "${BENCH_SECONDS:=20}"
sections=("$@")
((${#sections[@]})) || sections=(encoder transcode analyzer chaos image)

if [[ -z $SKIP_INSTALL ]]; then
  scripts/install-deps.sh
  for p in time wrk; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$p"; }
  done
fi
[[ -n $SKIP_BUILD ]] || { say "building (release)"; cargo build --release --workspace --bins; }
BIN="$REPO_ROOT/target/release"
WORK=$(mktemp -d)
trap 'stop_all; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

ROWS=()
row() { ROWS+=("$(printf '| %s | %s | %s | %s | %s |' "$@")"); }

median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.4f\n", b - a}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
# paired_ratio REF_FILE OURS_FILE: the median over runs of (reference seconds / our seconds), each
# run of ours paired with the reference run next to it, so that the machine's speed drifting
# between runs (a shared host) cancels out.
paired_ratio() {
  paste -d' ' <(awk '{print $1}' "$1") <(awk '{print $1}' "$2") |
    awk '{printf "%.4f\n", $1 / $2}' | median | awk '{printf "%.2f", $1}'
}

# The source, encoded as phones and cameras record: H.264 High profile with CABAC, B-frames and
# deblocking, about 10 Mb/s at 1080p30. (An `ultrafast` stream has none of these and decodes three
# times faster than any real upload, which would understate what one shared decode saves.)
make_clip() { # PATH SECONDS
  ffmpeg -v error -y -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=$2" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$2" \
    -c:v libx264 -preset fast -crf 18 -profile:v high -pix_fmt yuv420p -c:a aac -shortest "$1"
}

start_moto() {
  MOTO_PORT=$(free_port)
  start_bg "$WORK/moto.log" moto_server -H 127.0.0.1 -p "$MOTO_PORT"
  export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
  wait_http "$AWS_ENDPOINT_URL/moto-api/" moto
}

start_analyzer() { # PORT DB
  start_bg "$WORK/analyzer.log" env LISTEN_ADDR="127.0.0.1:$1" DATABASE_PATH="$2" RUST_LOG=warn "$BIN/result-analyzer"
  wait_http "http://127.0.0.1:$1/healthz" "the analyzer"
}

bench_encoder() {
  say "encoder: time outside the transcode, and an empty-queue run"
  start_moto
  local port; port=$(free_port)
  start_analyzer "$port" "$WORK/bench-encoder.db"
  export ANALYZER_URL="http://127.0.0.1:$port"
  QUEUE_URL=$(awsx sqs create-queue --queue-name bench --query QueueUrl --output text)
  awsx s3 mb s3://bench-in >/dev/null
  awsx s3 mb s3://bench-out >/dev/null
  # A small job: a one-second clip, one 360p rendition.
  ffmpeg -v error -y -f lavfi -i "testsrc2=size=640x360:rate=30:duration=1" -f lavfi -i "sine=duration=1" \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p -c:a aac -shortest "$WORK/small.mp4"
  awsx s3 cp --only-show-errors "$WORK/small.mp4" s3://bench-in/small.mp4
  local body
  local ours=() ref=() empty_ours=() empty_ref=() i t0 t1 total enc
  for ((i = 0; i < BENCH_RUNS; i++)); do
    # A request of its own each time: the analyzer counts a request_id as processed once.
    body='{"video_id":"small","source":"s3://bench-in/small.mp4","quality":"360p","output":"s3://bench-out/r","request_id":"bench-'$i'"}'
    awsx s3 rm --only-show-errors --recursive s3://bench-out/ || true
    awsx sqs send-message --queue-url "$QUEUE_URL" --message-body "$body" >/dev/null
    t0=$(now)
    QUEUE_URL=$QUEUE_URL RECEIVE_WAIT_SECONDS=1 RUST_LOG=warn "$BIN/encoder"
    t1=$(now)
    total=$(elapsed "$t0" "$t1")
    enc=$(curl -fsS "$ANALYZER_URL/events?kind=processed&limit=1000" |
      python3 -c 'import json,sys; print([e for e in json.load(sys.stdin)["events"] if "encode_seconds" in e][-1]["encode_seconds"])')
    ours+=("$(awk -v a="$total" -v b="$enc" 'BEGIN {printf "%.4f", a - b}')")

    # The original example's steps with the aws tool (its encoding is a sleep: left out here).
    awsx sqs send-message --queue-url "$QUEUE_URL" --message-body "$body" >/dev/null
    t0=$(now)
    local resp handle
    resp=$(awsx sqs receive-message --queue-url "$QUEUE_URL" --visibility-timeout 600 --wait-time-seconds 1)
    handle=$(echo "$resp" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Messages"][0]["ReceiptHandle"])')
    awsx s3 cp --only-show-errors s3://bench-in/small.mp4 "$WORK/dl.mp4"
    awsx s3 cp --only-show-errors "$WORK/dl.mp4" s3://bench-out/r/ref.mp4
    curl -fsS -X POST "$ANALYZER_URL/create/count" >/dev/null
    awsx sqs delete-message --queue-url "$QUEUE_URL" --receipt-handle "$handle"
    t1=$(now)
    ref+=("$(elapsed "$t0" "$t1")")

    t0=$(now)
    QUEUE_URL=$QUEUE_URL RECEIVE_WAIT_SECONDS=0 RUST_LOG=warn "$BIN/encoder"
    t1=$(now)
    empty_ours+=("$(elapsed "$t0" "$t1")")
    t0=$(now)
    awsx sqs receive-message --queue-url "$QUEUE_URL" --wait-time-seconds 0 >/dev/null
    t1=$(now)
    empty_ref+=("$(elapsed "$t0" "$t1")")
  done
  local a b
  a=$(printf '%s\n' "${ours[@]}" | median)
  b=$(printf '%s\n' "${ref[@]}" | median)
  row "small job, seconds outside the transcode (median of $BENCH_RUNS)" "$a" "$b (aws CLI: receive, 2× s3 cp, curl, delete)" "$(ratio "$b" "$a")× faster" "less than the reference"
  a=$(printf '%s\n' "${empty_ours[@]}" | median)
  b=$(printf '%s\n' "${empty_ref[@]}" | median)
  row "empty-queue run, seconds (wait 0)" "$a" "$b (aws sqs receive-message)" "$(ratio "$b" "$a")× faster" "less than the reference"
  stop_all
}

# The x264/AAC settings of the ladder (crates/transcode/src/ladder.rs), for the ffmpeg reference.
x264_args() { # SHORT_SIDE
  local maxrate
  case $1 in 360) maxrate=1000 ;; 480) maxrate=1800 ;; 720) maxrate=4000 ;; 1080) maxrate=7000 ;; esac
  echo "-c:v libx264 -preset veryfast -crf 23 -profile:v high -pix_fmt yuv420p -color_range tv" \
    "-x264-params keyint=60:min-keyint=60:scenecut=0:vbv-maxrate=$maxrate:vbv-bufsize=$((maxrate * 2))"
}
scale_to() { # W H
  echo "scale=w=$1:h=$2:out_range=tv:flags=bicubic,format=yuv420p,setsar=1"
}
audio_args() { echo "-c:a aac -b:a 128k -ac 2 -movflags +faststart"; }

timed() { # OUT_FILE CMD...: runs CMD, appends "seconds max_rss_kb" to OUT_FILE
  local out=$1; shift
  /usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/cmd.err" ||
    { cat "$WORK/cmd.err" >&2; die "benchmark command failed: $*"; }
  cat "$WORK/time.txt" >>"$out"
}

bench_transcode() {
  say "transcode: against the ffmpeg tool with the same settings (${BENCH_SECONDS}s 1080p30 High-profile clip, ~10 Mb/s)"
  local clip="$WORK/clip.mp4" long="$WORK/long.mp4" frames=$((BENCH_SECONDS * 30)) i
  make_clip "$clip" "$BENCH_SECONDS"
  make_clip "$long" $((BENCH_SECONDS * 3))
  rm -f "$WORK"/t_*
  for ((i = 0; i < BENCH_RUNS; i++)); do
    timed "$WORK/t_one_ours" "$BIN/encoder" transcode --input "$clip" --quality 720p --output-dir "$WORK/o1"
    # shellcheck disable=SC2046
    timed "$WORK/t_one_ref" ffmpeg -v error -y -threads 0 -i "$clip" -vf "$(scale_to 1280 720)" $(x264_args 720) $(audio_args) "$WORK/r720.mp4"
    timed "$WORK/t_ladder_ours" "$BIN/encoder" transcode --input "$clip" --quality 480p --quality 720p --quality 1080p --output-dir "$WORK/o2"
    local t0 t1
    t0=$(now)
    # shellcheck disable=SC2046
    {
      ffmpeg -v error -y -i "$clip" -vf "$(scale_to 854 480)" $(x264_args 480) $(audio_args) "$WORK/r480.mp4"
      ffmpeg -v error -y -i "$clip" -vf "$(scale_to 1280 720)" $(x264_args 720) $(audio_args) "$WORK/r720.mp4"
      ffmpeg -v error -y -i "$clip" -vf "$(scale_to 1920 1080)" $(x264_args 1080) $(audio_args) "$WORK/r1080.mp4"
    }
    t1=$(now)
    echo "$(elapsed "$t0" "$t1") 0" >>"$WORK/t_ladder_ref"
    # The expert's reference: ONE ffmpeg command, one decode, a split filter, one output per rung.
    # shellcheck disable=SC2046
    timed "$WORK/t_ladder_split" ffmpeg -v error -y -i "$clip" \
      -filter_complex "[0:v]split=3[a][b][c];[a]$(scale_to 854 480)[v480];[b]$(scale_to 1280 720)[v720];[c]$(scale_to 1920 1080)[v1080]" \
      -map "[v480]" -map 0:a $(x264_args 480) $(audio_args) "$WORK/s480.mp4" \
      -map "[v720]" -map 0:a $(x264_args 720) $(audio_args) "$WORK/s720.mp4" \
      -map "[v1080]" -map 0:a $(x264_args 1080) $(audio_args) "$WORK/s1080.mp4"
  done
  timed "$WORK/t_long_ours" "$BIN/encoder" transcode --input "$long" --quality 720p --output-dir "$WORK/o3"
  # shellcheck disable=SC2046
  timed "$WORK/t_long_ref" ffmpeg -v error -y -i "$long" -vf "$(scale_to 1280 720)" $(x264_args 720) $(audio_args) "$WORK/rl.mp4"

  local s_ours s_ref fps_ours fps_ref
  s_ours=$(awk '{print $1}' "$WORK/t_one_ours" | median)
  s_ref=$(awk '{print $1}' "$WORK/t_one_ref" | median)
  fps_ours=$(awk -v f=$frames -v s="$s_ours" 'BEGIN {printf "%.1f", f / s}')
  fps_ref=$(awk -v f=$frames -v s="$s_ref" 'BEGIN {printf "%.1f", f / s}')
  row "1080p → 720p, frames per second (median of $BENCH_RUNS)" "$fps_ours" "$fps_ref (ffmpeg)" "$(paired_ratio "$WORK/t_one_ref" "$WORK/t_one_ours")×" "≥ 1.0×"
  s_ours=$(awk '{print $1}' "$WORK/t_ladder_ours" | median)
  s_ref=$(awk '{print $1}' "$WORK/t_ladder_ref" | median | awk '{printf "%.2f", $1}')
  row "480p+720p+1080p ladder, seconds (median of $BENCH_RUNS)" "$s_ours (one decode)" "$s_ref (3 ffmpeg runs)" "$(paired_ratio "$WORK/t_ladder_ref" "$WORK/t_ladder_ours")× faster" "≥ 1.4× faster"
  s_ref=$(awk '{print $1}' "$WORK/t_ladder_split" | median | awk '{printf "%.2f", $1}')
  row "same ladder beside ONE ffmpeg command (split filter, one decode)" "$s_ours" "$s_ref (ffmpeg -filter_complex split=3)" "$(paired_ratio "$WORK/t_ladder_split" "$WORK/t_ladder_ours")×" "≥ 1.0×"
  local m_ours m_ref m_long_ours m_long_ref
  m_ours=$(awk '{print $2}' "$WORK/t_one_ours" | sort -n | tail -1)
  m_ref=$(awk '{print $2}' "$WORK/t_one_ref" | sort -n | tail -1)
  m_long_ours=$(awk '{print $2}' "$WORK/t_long_ours")
  m_long_ref=$(awk '{print $2}' "$WORK/t_long_ref")
  row "1080p → 720p peak memory, MB (${BENCH_SECONDS}s clip)" "$((m_ours / 1024))" "$((m_ref / 1024)) (ffmpeg)" "$(ratio "$m_ours" "$m_ref")×" "< 300 MB"
  row "same, clip 3× longer, MB" "$((m_long_ours / 1024))" "$((m_long_ref / 1024)) (ffmpeg)" "$(ratio "$m_long_ours" "$m_ours")× of the short clip" "not growing with length"
}

# The analyzer before its aggregates (every read scanned the events): the reference of its reads
# and of its write throughput.
ANALYZER_BASELINE_REV_DEFAULT=9f60f26
build_analyzer_baseline() { # REV: builds that revision's result-analyzer, prints its path
  local rev=$1 src="$WORK/analyzer-baseline" target=${ANALYZER_BASELINE_TARGET_DIR:-$REPO_ROOT/target/analyzer-baseline}
  mkdir -p "$src"
  git -C "$REPO_ROOT" archive "$rev" | tar -x -C "$src" || die "cannot read revision $rev of the repository"
  say "building the analyzer of $rev (the previous version) into $target"
  CARGO_TARGET_DIR=$target cargo build --release -q -p result-analyzer --manifest-path "$src/Cargo.toml" >&2 ||
    die "building the analyzer of $rev failed"
  echo "$target/release/result-analyzer"
}

bench_analyzer() {
  say "analyzer: durable events per second under wrk; reads and start-up at 10^4 to 10^6 events"
  local rev=${ANALYZER_BASELINE_REV:-$ANALYZER_BASELINE_REV_DEFAULT} baseline=""
  [[ $rev == none ]] || baseline=$(build_analyzer_baseline "$rev")
  ANALYZER_BIN="$BIN/result-analyzer" ANALYZER_BASELINE_BIN="$baseline" \
    scripts/bench/analyzer.sh "${BENCH_ANALYZER_DIR:-$WORK/analyzer}" >>"$WORK/analyzer_rows"
  while IFS= read -r line; do ROWS+=("$line"); done <"$WORK/analyzer_rows"
}

bench_chaos() {
  local requests=${CHAOS_REQUESTS:-100} seed=${CHAOS_SEED:-20261124} log="$WORK/chaos.log" figures
  say "chaos: $requests requests on LocalStack, encoder runs killed at random (seed $seed)"
  CHAOS_REQUESTS=$requests CHAOS_SEED=$seed cargo test --release -p pipeline-tests --test pipeline \
    chaos::localstack -- --nocapture >"$log" 2>&1 || { tail -n 60 "$log" >&2; die "the chaos run failed: see above"; }
  figures=$(grep -o 'chaos figures: .*' "$log" | tail -n 1)
  [[ -n $figures ]] || die "the chaos run printed no figures"
  echo "  $figures"
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$figures"; }
  row "chaos on LocalStack: $requests requests, seed $seed" "$(field runs) encoder runs, $(field killed) killed ($(field killed_share) of runs: $(field exited_143) exited 143 after SIGTERM, $(field sigkilled) SIGKILLed, $(field sigterm_before_main) SIGTERMed before main)" "every request: one valid output, processed once, kill count = runs that exited 143, dead-letter queue empty (checked)" "$(field seconds) s" "≥ 30% of runs killed"
}

bench_image() {
  say "image: size and start-up, beside the image before it was shrunk"
  [[ -n $SKIP_INSTALL ]] || scripts/install-image-deps.sh
  BIN_DIR=$BIN scripts/bench/image.sh "$WORK/image" >>"$WORK/image_rows"
  while IFS= read -r line; do ROWS+=("$line"); done <"$WORK/image_rows"
}

bench_split() {
  say "split: a ${SPLIT_BENCH_SECONDS:-600}s request split and stitched, beside it encoded whole"
  BIN_DIR=$BIN scripts/bench/split.sh "${SPLIT_BENCH_DIR:-$WORK/split}" >>"$WORK/split_rows"
  while IFS= read -r line; do ROWS+=("$line"); done <"$WORK/split_rows"
}

for s in "${sections[@]}"; do
  case $s in
    encoder) bench_encoder ;;
    transcode) bench_transcode ;;
    analyzer) [[ -x scripts/bench/analyzer.sh ]] && bench_analyzer || say "analyzer benchmark: not there yet" ;;
    chaos) bench_chaos ;;
    image) bench_image ;;
    split) bench_split ;;
    *) die "unknown benchmark $s (encoder, transcode, analyzer, chaos, image, split)" ;;
  esac
done

echo
echo "| benchmark | ours | reference | ratio | goal |"
echo "|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
