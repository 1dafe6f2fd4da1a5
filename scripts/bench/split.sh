#!/usr/bin/env bash
# Split and stitch (the encoder's SPLIT_SECONDS) beside the same request encoded whole
# (SPLIT_SECONDS=0), on moto with the release encoder, one `encoder` run per message as a Job runs
# it. The source is made here with the ffmpeg tool: SPLIT_BENCH_SECONDS (default 600) of 1080p30
# H.264 High (testsrc2 under Conway's life, with moving grain; ~12 Mb/s, a 2 s GOP) and an AAC
# tone. Its content is a SPLIT_BENCH_LOOP_SECONDS (default 20) clip, generated once (the grain and
# the blend are the slow part) and repeated, encoded again as one stream of exactly 30 frames a
# second. (A source repeated with stream copy, 1802 frames for 60 s, B-frames past the end, makes
# the encoder's stitch fail its duration check: "the stitched video lasts 60.067 s where its
# chunks last 60.167 s".) Each request asks for 1080p, 720p and 480p, and
# goes to an output prefix of its own (a request for stored renditions would be skipped).
#
#   unsplit  SPLIT_SECONDS=0: one run encodes the whole source (the reference)
#   split    SPLIT_SECONDS (default 120): the split run, the chunk runs and the stitch run, one
#            after another; each run's wall time and CPU (user+sys, GNU time) are kept
#   two      the same split with two encoder runs at once (two loops of runs), the wall time
#   resume   the same split, one run at a time, with SPLIT_BENCH_KILL_SHARE (default 0.3) of the
#            chunk runs stopped mid-chunk by SIGTERM or SIGKILL (which runs, which signal and when
#            are drawn from SPLIT_BENCH_SEED)
#
# What is compared, per rendition (stitched against unsplit): frame count, video duration (within
# one frame), keyframe times (ffprobe -skip_frame nokey: the same list), SSIM against the source
# (the rendition scaled back to 1920x1080 with bicubic, the ssim filter's "All" mean over every
# frame; split and unsplit each against the source, the difference at most 0.001), file size
# (within 2%) and audio duration (within 25 ms). Cost: the CPU of the split, chunk and stitch
# runs against the unsplit run (goal at most 5% more). Speed: the critical path (the split run
# until its chunk messages are sent + slowest chunk run + stitch run; the split run then encodes
# the audio for the stitch beside the chunks) against the unsplit run, the two-at-once wall
# time, and a model
# of a one-hour source on 8, 32 and 128 pods (goal: 32 pods at least 20x faster than one), fitted
# from the measured runs (a pod is this machine):
#
#   chunk run(c) = a + r*c + b*c   a: a chunk run's time outside its download and its encode
#                                   (start, receive, plan, upload, claim, delete; the median);
#                                   r*c: the download of the chunk's bytes of the source (the
#                                   split run told them; r per chunk second, as measured; the
#                                   source's index, a few hundred kB, is taken as part of it);
#                                   r*L instead when the chunk runs fetch the whole source (a
#                                   source other than MP4); b: encode seconds per chunk second
#   stitch(L), unsplit(L) = a + (measured - a) * L / L_measured
#   sent(L) = measured - its download + r_split * L + t * (L - L_measured)
#                                   sent: the split run until its chunk messages are sent (it
#                                   downloads the whole source: r_split per source second, the
#                                   median of the whole downloads measured, as moto stalls one
#                                   now and then; and reads its packets to tell each chunk's
#                                   bytes: t per source second)
#   split(L) = sent(L) + audio * L / L_measured
#                                   the split run's whole wall time: its pod is busy until then
#   wall(P pods, chunk c) = max(the last chunk's end, split) + stitch, the ceil(L/c) chunk runs
#                           each started on the first free pod (P-1 free at sent, the split
#                           run's at split); c the multiple of 2 s (one GOP) with the shortest wall
#
# Resume: the extra CPU of the chunk runs (every chunk run of the resume pass, killed ones
# included, less the chunk runs of the split pass) against the killed chunks' share (the CPU the
# split pass spent on the chunks whose runs were killed): the goal is no more.
#
#   scripts/bench/split.sh WORKDIR
#
# Knobs: SPLIT_BENCH_SECONDS (600), SPLIT_SECONDS (120), SPLIT_BENCH_LOOP_SECONDS (20),
# SPLIT_BENCH_SEED (20261201), SPLIT_BENCH_KILL_SHARE (0.3), SPLIT_BENCH_LEASE (20: the encoder's
# VISIBILITY_TIMEOUT_SECONDS, how soon a SIGKILLed chunk comes back), SPLIT_BENCH_PASSES
# ("unsplit split two resume": unsplit and split always run; without two or resume, their rows
# say so), SPLIT_BENCH_ANALYZE_ONLY (1: no runs, the figures of those already in WORKDIR, with
# the SPLIT_BENCH_* they were run with), BIN_DIR (target/release;
# built with cargo build --release when the encoder is missing). Needs moto_server, the aws tool,
# ffmpeg, ffprobe and GNU time (scripts/install-deps.sh; Debian package `time`). Prints markdown
# table rows on stdout; everything else goes to stderr. Exits non-zero only when a run breaks
# (an encoder fails, a rendition is missing, a request is not split); a missed goal is a row.
set -eo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

[[ $# -eq 1 ]] || die "usage: $0 WORKDIR"
WORKDIR=$1
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)

: "${SPLIT_BENCH_SECONDS:=600}"
: "${SPLIT_SECONDS:=120}"
: "${SPLIT_BENCH_LOOP_SECONDS:=20}"
: "${SPLIT_BENCH_SEED:=20261201}"
: "${SPLIT_BENCH_KILL_SHARE:=0.3}"
: "${SPLIT_BENCH_LEASE:=20}"
: "${SPLIT_BENCH_PASSES:=unsplit split two resume}"
: "${SPLIT_BENCH_ANALYZE_ONLY:=}"
: "${BIN_DIR:=$REPO_ROOT/target/release}"
QUALITIES=(1080p 720p 480p)

for tool in moto_server aws ffmpeg ffprobe python3; do
  command -v "$tool" >/dev/null || die "$tool is missing: scripts/install-deps.sh installs it"
done
[[ -x /usr/bin/time ]] || die "GNU time is missing: apt-get install time (scripts/bench.sh installs it)"
(( $(awk -v l="$SPLIT_BENCH_SECONDS" -v s="$SPLIT_SECONDS" 'BEGIN {print (s > 0 && l >= 2 * s)}') )) ||
  die "SPLIT_BENCH_SECONDS ($SPLIT_BENCH_SECONDS) must be at least twice SPLIT_SECONDS ($SPLIT_SECONDS), or nothing is split"
if [[ ! -x $BIN_DIR/encoder ]]; then
  say "building the encoder (release)"
  (cd "$REPO_ROOT" && cargo build --release -p encoder --bin encoder) >&2
fi

trap 'stop_all' EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }

# --- the emulator, the queue, the buckets, the source -------------------------------------------

SOURCE=$WORKDIR/source.mp4

# The passes: the emulator, the source, the encoder runs; the figures come after.
run_passes() {
say "starting moto"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
start_emulator moto "$WORKDIR"
export QUEUE_NAME=split-bench INPUT_BUCKET=split-in OUTPUT_BUCKET=split-out MAX_RECEIVE_COUNT=10
QUEUE_URL=$(VISIBILITY_TIMEOUT_SECONDS=$SPLIT_BENCH_LEASE "$REPO_ROOT/scripts/aws/create-queue.sh")
DLQ_URL=$(awsx sqs get-queue-url --queue-name "$QUEUE_NAME-dlq" --query QueueUrl --output text)
"$REPO_ROOT/scripts/aws/create-buckets.sh" >/dev/null

if [[ ! -s $SOURCE || $(cat "$WORKDIR/source.id" 2>/dev/null) != "$SPLIT_BENCH_SECONDS/$SPLIT_BENCH_LOOP_SECONDS/2" ]]; then
  loop=$((SPLIT_BENCH_LOOP_SECONDS < SPLIT_BENCH_SECONDS ? SPLIT_BENCH_LOOP_SECONDS : SPLIT_BENCH_SECONDS))
  say "making the source: ${loop}s of 1080p30 content, repeated to ${SPLIT_BENCH_SECONDS}s, with an AAC tone"
  # testsrc2 (moving patterns, a running counter) averaged with life (cells born and dying all
  # over the frame), with grain that changes every frame: every frame differs from the one before.
  ffmpeg -v error -y -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=$loop" \
    -f lavfi -i "life=size=480x270:rate=30:mold=10:ratio=0.2:life_color=#6090c0:death_color=#302010" \
    -filter_complex "[1:v]scale=1920:1080:flags=neighbor,format=yuv420p[l];[0:v]format=yuv420p[t];[t][l]blend=all_mode=average,noise=alls=6:allf=t,format=yuv420p[v]" \
    -map "[v]" -t "$loop" -c:v libx264 -preset veryfast -crf 20 -maxrate 12M -bufsize 24M -g 60 \
    -profile:v high -an "$WORKDIR/loop.mp4"
  # Encoded again as one stream, as a camera writes it: exactly 30 frames a second of source.
  ffmpeg -v error -y -stream_loop -1 -i "$WORKDIR/loop.mp4" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$SPLIT_BENCH_SECONDS" \
    -map 0:v -map 1:a -frames:v $((SPLIT_BENCH_SECONDS * 30)) -t "$SPLIT_BENCH_SECONDS" \
    -c:v libx264 -preset veryfast -crf 20 -maxrate 12M -bufsize 24M -g 60 -profile:v high \
    -c:a aac -b:a 128k -ac 2 -movflags +faststart "$SOURCE"
  echo "$SPLIT_BENCH_SECONDS/$SPLIT_BENCH_LOOP_SECONDS/2" >"$WORKDIR/source.id"
fi
awsx s3 cp --only-show-errors "$SOURCE" "s3://$INPUT_BUCKET/source.mp4"

# --- encoder runs -------------------------------------------------------------------------------

RUNS=$WORKDIR/runs.tsv # phase, run, exit code, wall, user, sys, start, end, log
: >"$RUNS"
rm -rf "$WORKDIR/logs" && mkdir -p "$WORKDIR/logs"

# start_run PHASE RUN SPLIT_SECONDS: one encoder run in the background under GNU time; sets
# RUN_PID (time's), RUN_LOG and RUN_START.
start_run() {
  RUN_LOG=$WORKDIR/logs/$1-$2.log
  RUN_START=$(now)
  mkdir -p "$WORKDIR/scratch/$1-$2"
  /usr/bin/time -f '%e %U %S' -o "$RUN_LOG.time" \
    env -u ANALYZER_URL -u RESULT_QUEUE_URL QUEUE_URL="$QUEUE_URL" RECEIVE_WAIT_SECONDS=1 \
    VISIBILITY_TIMEOUT_SECONDS="$SPLIT_BENCH_LEASE" SPLIT_SECONDS="$3" WORK_DIR="$WORKDIR/scratch/$1-$2" \
    LOG_FORMAT=json RUST_LOG=info "$BIN_DIR/encoder" >"$RUN_LOG" 2>&1 &
  RUN_PID=$!
}

# end_run PHASE RUN: waits for the run started last, records it, removes its scratch; sets
# RUN_RC to its exit code.
end_run() {
  local times
  RUN_RC=0
  wait "$RUN_PID" || RUN_RC=$?
  times=$(tail -n 1 "$RUN_LOG.time")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$RUN_RC" "${times// /$'\t'}" "$RUN_START" "$(now)" "$RUN_LOG" >>"$RUNS"
  rm -rf "$WORKDIR/scratch/$1-$2"
}

body() { # PHASE
  printf '{"video_id":"bench","source":"s3://%s/source.mp4","qualities":["1080p","720p","480p"],"output":"s3://%s/%s","request_id":"split-bench-%s"}' \
    "$INPUT_BUCKET" "$OUTPUT_BUCKET" "$1" "$1"
}
send() { awsx sqs send-message --queue-url "$QUEUE_URL" --message-body "$(body "$1")" >/dev/null; }

# drain PHASE WORKER SPLIT_SECONDS: runs the encoder again and again until a run finds the queue
# empty with nothing in flight. A run that fails (not killed by us) breaks the benchmark.
drain() {
  local phase=$1 worker=$2 split=$3 n=0
  while :; do
    n=$((n + 1))
    ((n < 1000)) || die "$phase: more than 1000 encoder runs"
    start_run "$phase" "$worker.$n" "$split"
    end_run "$phase" "$worker.$n"
    [[ $RUN_RC -eq 0 ]] || die "$phase: an encoder run exited $RUN_RC: see $RUN_LOG"
    if grep -q '"the queue is empty"' "$RUN_LOG"; then
      [[ $(queue_depth "$QUEUE_URL") -eq 0 ]] && return 0
    fi
  done
}

check_outputs() { # PHASE: every rendition stored, the dead-letter queue empty
  local q
  for q in "${QUALITIES[@]}"; do
    awsx s3 cp --only-show-errors "s3://$OUTPUT_BUCKET/$1/bench/$q.mp4" "$WORKDIR/out/$1/$q.mp4" ||
      die "$1: the $q rendition is not stored"
  done
  [[ $(queue_depth "$DLQ_URL") -eq 0 ]] || die "$1: a message went to the dead-letter queue"
}
mkdir -p "$WORKDIR/out"

say "unsplit: one run, SPLIT_SECONDS=0"
send unsplit
drain unsplit w 0
check_outputs unsplit

say "split: SPLIT_SECONDS=$SPLIT_SECONDS, one run at a time"
send split
drain split w "$SPLIT_SECONDS"
check_outputs split
grep -l '"split the request"' "$WORKDIR"/logs/split-*.log >/dev/null || die "split: the request was not split"
awsx s3 ls --recursive "s3://$OUTPUT_BUCKET/split/bench/chunks/" >"$WORKDIR/chunks-left.txt" || true

has_pass() { [[ " $SPLIT_BENCH_PASSES " == *" $1 "* ]]; }

if has_pass two; then
say "two: the same split, two encoder runs at once"
TWO_START=$(now)
echo "$TWO_START" >"$WORKDIR/two.start"
send two
drain two a "$SPLIT_SECONDS" &
pid_a=$!
sleep 0.5
drain two b "$SPLIT_SECONDS" &
pid_b=$!
wait "$pid_a" || die "two: a loop of runs broke"
wait "$pid_b" || die "two: a loop of runs broke"
check_outputs two
fi

if has_pass resume; then
# The kills: which chunk runs (in the order they start), which signal, and when (a share of a
# chunk run's median wall time in the split pass, counted from the receive), drawn from the seed.
# A chunk run that stores its chunk before its kill passes the kill on to the next one.
chunks=$(grep -h '"split the request"' "$WORKDIR"/logs/split-*.log | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["chunks"])')
chunk_wall=$(python3 - "$RUNS" <<'EOF'
import statistics, sys
walls = []
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if f[0] == "split" and '"encoded the chunk"' in open(f[8]).read():
        walls.append(float(f[3]))
print(statistics.median(walls))
EOF
)
python3 - "$SPLIT_BENCH_SEED" "$chunks" "$SPLIT_BENCH_KILL_SHARE" "$chunk_wall" >"$WORKDIR/kills.txt" <<'EOF'
import math, random, sys
seed, n, share, wall = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
r = random.Random(seed)
for ordinal in sorted(r.sample(range(n), max(1, math.ceil(share * n)))):
    print(ordinal, r.choice(["TERM", "KILL"]), round(r.uniform(0.25, 0.85) * wall, 2))
EOF

say "resume: the same split, one run at a time, $(wc -l <"$WORKDIR/kills.txt") of $chunks chunk runs killed (seed $SPLIT_BENCH_SEED)"
send resume
n=0 split_done="" stitch_sent="" chunk_runs=0
# Kills drawn for this chunk run or missed by the ones before (the run ended before its delay: the
# kill goes on to the next chunk run, with half the delay), as "SIGNAL DELAY".
pending=()
: >"$WORKDIR/killed.txt"
while :; do
  n=$((n + 1))
  ((n < 1000)) || die "resume: more than 1000 encoder runs"
  start_run resume "w.$n" "$SPLIT_SECONDS"
  kill_now=""
  if [[ -n $split_done && -z $stitch_sent ]]; then
    # Wait for the receive: a run that finds nothing (a SIGKILLed chunk still leased) is no chunk run.
    while kill -0 "$RUN_PID" 2>/dev/null && ! grep -qs '"received a message"' "$RUN_LOG"; do sleep 0.05; done
    if grep -qs '"received a message"' "$RUN_LOG"; then
      drawn=$(awk -v o="$chunk_runs" '$1 == o {print $2, $3}' "$WORKDIR/kills.txt")
      [[ -z $drawn ]] || pending+=("$drawn")
      chunk_runs=$((chunk_runs + 1))
      if ((${#pending[@]})); then
        kill_now=${pending[0]}
        pending=("${pending[@]:1}")
      fi
    fi
  fi
  killed=""
  if [[ -n $kill_now ]]; then
    read -r sig delay <<<"$kill_now"
    deadline=$(awk -v t="$(now)" -v d="$delay" 'BEGIN {printf "%.2f", t + d}')
    while kill -0 "$RUN_PID" 2>/dev/null && awk -v t="$(now)" -v d="$deadline" 'BEGIN {exit !(t < d)}'; do sleep 0.1; done
    encoder_pid=$(pgrep -P "$RUN_PID" -x encoder || true)
    if [[ -n $encoder_pid ]] && ! grep -q '"stored the chunk"' "$RUN_LOG"; then
      kill -"$sig" "$encoder_pid"
      echo "w.$n $sig $delay" >>"$WORKDIR/killed.txt"
      killed=1
    else
      pending=("$sig $(awk -v d="$delay" 'BEGIN {printf "%.2f", d / 2}')" "${pending[@]}")
    fi
  fi
  end_run resume "w.$n"
  if [[ -n $killed ]]; then
    [[ $RUN_RC -eq 143 || $RUN_RC -eq 137 ]] || die "resume: a killed run exited $RUN_RC (not 143 or 137): see $RUN_LOG"
  else
    [[ $RUN_RC -eq 0 ]] || die "resume: an encoder run exited $RUN_RC: see $RUN_LOG"
  fi
  grep -q '"split the request"' "$RUN_LOG" && split_done=1
  grep -q '"every chunk is stored: sending the stitch message"' "$RUN_LOG" && stitch_sent=1
  if grep -q '"the queue is empty"' "$RUN_LOG"; then
    [[ $(queue_depth "$QUEUE_URL") -eq 0 ]] && break
  fi
done
((${#pending[@]} == 0)) || say "resume: ${#pending[@]} kill(s) found no chunk run left to stop"
check_outputs resume
fi

}
if [[ $SPLIT_BENCH_ANALYZE_ONLY == 1 ]]; then
  [[ -s $WORKDIR/runs.tsv ]] || die "SPLIT_BENCH_ANALYZE_ONLY=1: no runs in $WORKDIR to analyze"
  say "the figures of the runs in $WORKDIR (SPLIT_BENCH_ANALYZE_ONLY=1: nothing is run)"
else
  run_passes
fi

# --- the figures --------------------------------------------------------------------------------

say "comparing the renditions (ffprobe, and SSIM against the source: every frame, one pass each)"
SPLIT_BENCH_SECONDS=$SPLIT_BENCH_SECONDS SPLIT_SECONDS=$SPLIT_SECONDS SPLIT_BENCH_SEED=$SPLIT_BENCH_SEED \
  SPLIT_BENCH_PASSES=$SPLIT_BENCH_PASSES python3 - "$WORKDIR" "$SOURCE" "${QUALITIES[@]}" <<'EOF'
"""Reads WORKDIR/runs.tsv, the runs' JSON logs and the renditions; prints the table rows."""
import heapq, json, math, os, re, statistics, subprocess, sys

work, source, qualities = sys.argv[1], sys.argv[2], sys.argv[3:]
L = float(os.environ["SPLIT_BENCH_SECONDS"])
S = float(os.environ["SPLIT_SECONDS"])
seed = os.environ["SPLIT_BENCH_SEED"]
passes = os.environ["SPLIT_BENCH_PASSES"].split()
FPS = 30.0


def row(*cells):
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def goal(text, ok):
    return f"{text}: {'met' if ok else '**missed**'}"


# --- the runs -----------------------------------------------------------------------------------
class Run:
    def __init__(self, f):
        self.phase, self.name, self.rc = f[0], f[1], int(f[2])
        self.wall, self.cpu = float(f[3]), float(f[4]) + float(f[5])
        self.start, self.end = float(f[6]), float(f[7])
        self.lines = []
        for line in open(f[8]):
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass
        self.message_id = next((m for m in map(span_field, self.lines) if m), None)
        msg = {l.get("message"): l for l in self.lines}
        # A chunk run fetches its bytes of the source (the split run told them), or the whole.
        got = msg.get("downloaded the chunk's bytes of the source") or msg.get("downloaded the source", {})
        self.download = got.get("seconds", 0.0)
        self.fetched = got.get("bytes", 0)
        self.chunk = None
        self.encode = 0.0
        if "the queue is empty" in msg:
            self.kind = "empty"
        elif "split the request" in msg:
            self.kind, self.chunks = "split", msg["split the request"]["chunks"]
            # The request is deleted (its chunk messages sent) at "done"; the audio for the
            # stitch is encoded after that, while the chunks encode.
            self.sent = msg.get("done", {}).get("seconds", self.wall)
            self.audio = msg.get("encoded the audio for the stitch", {}).get("encode_seconds", 0.0)
            # Telling each chunk's bytes reads the source's packets: it grows with the source.
            self.ranges = msg.get("told the source's bytes each chunk reads", {}).get("seconds", 0.0)
        elif "encoded the chunk" in msg:
            self.kind, self.chunk = "chunk", msg["encoded the chunk"]["chunk"]
            self.encode = msg["encoded the chunk"]["encode_seconds"]
            self.frames = msg["encoded the chunk"]["frames"]
        elif "the chunk is already stored" in msg:
            self.kind, self.chunk = "chunk", msg["the chunk is already stored"]["chunk"]
        elif "stitched" in msg:
            self.kind, self.encode = "stitch", msg["stitched"]["encode_seconds"]
        elif "transcoded" in msg:
            self.kind, self.encode = "whole", msg["transcoded"]["encode_seconds"]
        else:
            self.kind = "killed" if self.rc in (137, 143) else "other"


def span_field(line, name="message_id"):
    for s in [line.get("span", {})] + line.get("spans", []):
        if isinstance(s, dict) and s.get(name):
            return s[name]
    return line.get(name)


runs = [Run(l.rstrip("\n").split("\t")) for l in open(os.path.join(work, "runs.tsv"))]
by_phase = {}
for r in runs:
    by_phase.setdefault(r.phase, []).append(r)
work_runs = {p: [r for r in rs if r.kind != "empty"] for p, rs in by_phase.items()}

unsplit = [r for r in work_runs["unsplit"] if r.kind == "whole"]
assert len(unsplit) == 1, f"the unsplit pass made {len(unsplit)} whole encodes"
u = unsplit[0]
sp = work_runs["split"]
s_split = [r for r in sp if r.kind == "split"][0]
s_chunks = [r for r in sp if r.kind == "chunk"]
s_stitch = [r for r in sp if r.kind == "stitch"][0]
n = s_split.chunks
assert len({r.chunk for r in s_chunks}) == n, "the split pass did not encode every chunk"

# --- correctness ----------------------------------------------------------------------------------
def probe(path, *args):
    return subprocess.run(["ffprobe", "-v", "error", *args, "-of", "json", path],
                          check=True, capture_output=True, text=True).stdout


def facts(path):
    v = json.loads(probe(path, "-select_streams", "v:0", "-count_packets",
                         "-show_entries", "stream=nb_read_packets,duration"))["streams"][0]
    a = json.loads(probe(path, "-select_streams", "a:0", "-show_entries", "stream=duration"))["streams"]
    keys = json.loads(probe(path, "-select_streams", "v:0", "-skip_frame", "nokey",
                            "-show_entries", "frame=pts_time"))["frames"]
    return {
        "frames": int(v["nb_read_packets"]),
        "duration": float(v["duration"]),
        "audio": float(a[0]["duration"]) if a else float("nan"),
        "keys": [round(float(k["pts_time"]), 3) for k in keys],
        "bytes": os.path.getsize(path),
    }


def ssim(path):
    out = subprocess.run(
        ["ffmpeg", "-nostats", "-i", path, "-i", source, "-lavfi",
         "[0:v]scale=1920:1080:flags=bicubic,format=yuv420p[a];[1:v]format=yuv420p[b];[a][b]ssim",
         "-f", "null", "-"], check=True, capture_output=True, text=True).stderr
    return float(re.findall(r"All:([0-9.]+)", out)[-1])


def grid(keys):
    steps = sorted({round(b - a, 3) for a, b in zip(keys, keys[1:])})
    return f"{steps[0]:.3f} s" if len(steps) == 1 else f"{steps[0]:.3f} to {steps[-1]:.3f} s"


frame = 1 / FPS
for q in qualities:
    a, b = facts(f"{work}/out/split/{q}.mp4"), facts(f"{work}/out/unsplit/{q}.mp4")
    dd, da = abs(a["duration"] - b["duration"]), abs(a["audio"] - b["audio"])
    same_keys = len(a["keys"]) == len(b["keys"]) and all(abs(x - y) < 0.001 for x, y in zip(a["keys"], b["keys"]))
    ok = a["frames"] == b["frames"] and dd <= frame + 1e-6 and same_keys and da <= 0.025
    row(f"split {q}: frames · video s · keyframes (grid) · audio s",
        f"{a['frames']} · {a['duration']:.3f} · {len(a['keys'])} ({grid(a['keys'])}) · {a['audio']:.3f}",
        f"{b['frames']} · {b['duration']:.3f} · {len(b['keys'])} ({grid(b['keys'])}) · {b['audio']:.3f} (unsplit)",
        f"Δ {a['frames'] - b['frames']} frames · {dd * 1000:.1f} ms · keyframes {'at the same times' if same_keys else 'differ'} · audio {da * 1000:.1f} ms",
        goal("same frames and keyframes, video within one frame, audio within 25 ms", ok))
    sa, sb = ssim(f"{work}/out/split/{q}.mp4"), ssim(f"{work}/out/unsplit/{q}.mp4")
    size = a["bytes"] / b["bytes"] - 1
    row(f"split {q}: SSIM vs the source (scaled back to 1080p) · MB",
        f"{sa:.5f} · {a['bytes'] / 1e6:.2f}", f"{sb:.5f} · {b['bytes'] / 1e6:.2f} (unsplit)",
        f"Δ SSIM {sa - sb:+.5f} · size {size * 100:+.2f}%",
        goal("SSIM within 0.001, size within 2%", abs(sa - sb) <= 0.001 and abs(size) <= 0.02))
left = open(f"{work}/chunks-left.txt").read().split()
row("split: the chunk folder after the stitch", f"{len(left) // 4} objects left" if left else "removed",
    "—", "—", goal("removed", not left))

# --- cost -----------------------------------------------------------------------------------------
chunk_cpu = sum(r.cpu for r in s_chunks)
total = s_split.cpu + chunk_cpu + s_stitch.cpu
extra = total / u.cpu - 1
row(f"split: CPU s (user+sys) of the split run + {len(s_chunks)} chunk runs + the stitch run ({L:.0f} s source, {S:.0f} s chunks)",
    f"{total:.1f} ({s_split.cpu:.1f} + {chunk_cpu:.1f} + {s_stitch.cpu:.1f})", f"{u.cpu:.1f} (one unsplit run)",
    f"{extra * 100:+.1f}%", goal("≤ 5% more", extra <= 0.05))

# --- speed ----------------------------------------------------------------------------------------
slowest = max(s_chunks, key=lambda r: r.wall)
# The chunks start once the split run has sent them; the stitch once they are stored and the
# split run has stored the audio (it encodes it meanwhile).
critical = max(s_split.sent + slowest.wall, s_split.wall) + s_stitch.wall
row("split: critical path, s (split run to its chunk messages + slowest chunk run + stitch run)",
    f"{critical:.1f} ({s_split.sent:.1f} + {slowest.wall:.1f} + {s_stitch.wall:.1f}; the split run's audio, {s_split.wall - s_split.sent:.1f} s, beside the chunks)",
    f"{u.wall:.1f} (one unsplit run)", f"{u.wall / critical:.2f}× faster", "—")
if "two" in passes:
    two = [r for r in work_runs["two"]]
    two_start = float(open(f"{work}/two.start").read())
    two_wall = max(r.end for r in two) - two_start
    row("split: wall s with 2 encoder runs at once on this 2-core machine (send to last run's end)",
        f"{two_wall:.1f} ({len(two)} runs)", f"{u.wall:.1f} (one unsplit run)", f"{u.wall / two_wall:.2f}× faster", "—")
else:
    row("split: wall s with 2 encoder runs at once on this 2-core machine", "not run (SPLIT_BENCH_PASSES)", "—", "—", "—")

# What a chunk run fetches of the source: its bytes (the split run told them), or the whole.
size = os.path.getsize(source)
ranged = all(any(l.get("message") == "downloaded the chunk's bytes of the source" for l in r.lines) for r in s_chunks)
shares = [r.fetched / size for r in s_chunks]
row("split: the source's bytes a chunk run fetches (mean · least · most)",
    f"{statistics.mean(shares) * 100:.1f}% · {min(shares) * 100:.1f}% · {max(shares) * 100:.1f}% of {size / 1e6:.1f} MB"
    + ("" if ranged else " (the whole source: no ranges)"),
    "100% (the whole source)", f"{statistics.mean(shares):.2f} of it", "—")

# The model's parts (see the script's header).
fixed = statistics.median(r.wall - r.download - r.encode for r in s_chunks)
chunk_seconds = sum(r.frames for r in s_chunks) / FPS
# Download seconds per chunk second when the chunks fetch their bytes, per source second when
# they fetch the whole source; the split run downloads the whole source either way.
r_dl = sum(r.download for r in s_chunks) / (chunk_seconds if ranged else L * len(s_chunks))
# The whole source's download, per source second: the median of every whole download measured
# (the unsplit run's, the split runs'), one moto stall aside.
wholes = [r.download for r in runs if r.kind in ("whole", "split") and r.download > 0]
r_split = statistics.median(wholes) / L
b_enc = sum(r.encode for r in s_chunks) / chunk_seconds
scale = lambda measured, length: fixed + (measured - fixed) * length / L
per = "chunk" if ranged else "source"
row(f"split model: a chunk run's fixed cost a, download r per {per} s, encode b per chunk s; split, stitch, unsplit per source s",
    f"a {fixed:.2f} s, r {r_dl * 1000:.2f} ms, b {b_enc:.3f} s; split {s_split.sent - s_split.download - s_split.ranges:.2f} s + the download {r_split * 1000:.2f} ms (median of {len(wholes)}: {' · '.join(f'{w:.1f}' for w in wholes)} s) and the chunks' ranges {s_split.ranges / L * 1000:.2f} ms per s (+ audio {(s_split.wall - s_split.sent) / L * 1000:.1f} ms per s beside the chunks), stitch {(s_stitch.wall - fixed) / L * 1000:.1f} ms",
    f"unsplit {(u.wall - fixed) / L:.3f} s", "—", f"fitted from the {L:.0f} s runs")
H = 3600.0
one_pod = scale(u.wall, H)
# The split run downloads the whole source and reads its packets for the chunks' ranges; the rest
# of its time until it has sent the chunk messages is taken as fixed.
sent_h = s_split.sent - s_split.download + r_split * H + s_split.ranges / L * (H - L)
split_h = sent_h + (s_split.wall - s_split.sent) * H / L


def chunks_done(pods, count, run):
    """When the last of `count` chunk runs of `run` s ends: each goes to the first free pod; the
    split run's pod is free once it has stored the audio, the others once it sent the chunks."""
    free = [split_h] + [sent_h] * (pods - 1)
    heapq.heapify(free)
    end = 0.0
    for _ in range(count):
        start = heapq.heappop(free)
        end = max(end, start + run)
        heapq.heappush(free, start + run)
    return end


for pods in (8, 32, 128):
    best = None
    for c in range(2, int(H) + 1, 2):
        count = math.ceil(H / c)
        if count < 2:
            break
        run = fixed + r_dl * (c if ranged else H) + b_enc * c
        wall = max(chunks_done(pods, count, run), split_h) + scale(s_stitch.wall, H)
        if best is None or wall < best[0]:
            best = (wall, c, count)
    wall, c, count = best
    speedup = one_pod / wall
    row(f"split model: a 1-hour source on {pods} pods", f"{wall / 60:.1f} min ({count} chunks of {c} s)",
        f"{one_pod / 60:.1f} min (one pod, unsplit)", f"{speedup:.1f}× faster",
        goal("≥ 20× at 32 pods", speedup >= 20) if pods == 32 else "—")

# --- resume ---------------------------------------------------------------------------------------
if "resume" not in passes:
    row("resume: chunk runs killed mid-chunk, extra chunk CPU s", "not run (SPLIT_BENCH_PASSES)", "—", "—", "—")
    sys.exit(0)
rs = by_phase["resume"]
killed_names = {l.split()[0]: l.split()[1] for l in open(f"{work}/killed.txt")}
index_of = {r.message_id: r.chunk for r in rs if r.kind == "chunk"}
killed = [r for r in rs if r.name in killed_names]
killed_chunks = [index_of.get(r.message_id) for r in killed]
assert None not in killed_chunks, "a killed run's message was never finished"
r_chunk_runs = [r for r in rs if r.kind == "chunk" or r.name in killed_names]
cpu_of = {r.chunk: r.cpu for r in s_chunks}
extra_cpu = sum(r.cpu for r in r_chunk_runs) - chunk_cpu
share = sum(cpu_of[i] for i in killed_chunks)
sigs = list(killed_names.values())
row(f"resume: {len(killed)} of {len(r_chunk_runs)} chunk runs ({n} chunks) killed mid-chunk (seed {seed}: {sigs.count('TERM')} SIGTERM, {sigs.count('KILL')} SIGKILL), extra chunk CPU s",
    f"{extra_cpu:.1f} (chunks {', '.join(map(str, sorted(killed_chunks)))} killed)",
    f"{share:.1f} (those chunks' CPU in the split pass)", f"{extra_cpu / share:.2f} of the share" if share else "n/a",
    goal("≤ the killed chunks' share", extra_cpu <= share))
EOF
