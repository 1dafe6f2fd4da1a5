#!/usr/bin/env bash
# The container image's size and start-up, beside the image as it was before it was shrunk: the
# Dockerfile's runtime stage on debian:bookworm-slim, with the runtime packages from apt and the
# four programs as cargo builds them (the `debian-runtime` stage of docker/Dockerfile with the
# programs unstripped). Both are assembled in this run from the same programs (target/release),
# with scripts/image.sh --binaries:
#
#   size, uncompressed    what `podman image inspect` reports: the layers unpacked on a node
#   size, compressed      the layers gzip-compressed as `podman push` sends them (pushed to an OCI
#                         layout directory: there is no registry here): what a cold pull downloads
#   an update's pull      the compressed layer a new release of the programs changes (the rest keeps
#                         its digest, so a node that ran the previous release pulls only this)
#   start -> receive      from `podman run` to the encoder's log line for its first receive ("the
#                         queue is empty": an empty queue on a moto_server on this machine,
#                         RECEIVE_WAIT_SECONDS=0), with the manifests' read-only root, uid and
#                         dropped capabilities; the median of BENCH_RUNS, beside the old image and,
#                         for scale, the same program started without a container
#
#   scripts/bench/image.sh WORKDIR
#
# Knobs: BENCH_RUNS (5), BIN_DIR (target/release: build it with cargo build --release),
# BENCH_IMAGE (measure this image as "ours" instead of assembling one, e.g. the full build
# scripts/image.sh printed). Prints markdown table rows on stdout; everything else goes to stderr.
set -eo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=scripts/image.sh
source "$REPO_ROOT/scripts/image.sh"

[[ $# -eq 1 ]] || die "usage: $0 WORKDIR"
WORKDIR=$1
mkdir -p "$WORKDIR"
WORKDIR=$(cd "$WORKDIR" && pwd)

: "${BENCH_RUNS:=5}"
: "${BIN_DIR:=$REPO_ROOT/target/release}"
command -v podman >/dev/null || die "podman is missing: scripts/install-image-deps.sh installs it"
[[ -x $BIN_DIR/encoder ]] || die "$BIN_DIR/encoder is missing: cargo build --release --workspace --bins"

trap 'stop_all' EXIT
trap 'exit 130' INT TERM

mapfile -t FLAGS < <(engine_flags podman)

# --- the two images ---------------------------------------------------------------------------

if [[ -n $BENCH_IMAGE ]]; then
  OURS=$BENCH_IMAGE
else
  say "assembling the image from $BIN_DIR"
  OURS=$(IMAGE=localhost/video-encoding:bench SKIP_INSTALL=1 "$REPO_ROOT/scripts/image.sh" --binaries "$BIN_DIR" | tail -n 1)
fi
say "assembling the image as it was before: debian-runtime, the programs unstripped"
BEFORE=$(IMAGE=localhost/video-encoding:bench-before STRIP=0 SKIP_INSTALL=1 \
  "$REPO_ROOT/scripts/image.sh" --binaries "$BIN_DIR" --target debian-runtime | tail -n 1)

# sizes IMAGE: "uncompressed_bytes compressed_bytes last_layer_compressed_bytes layers"
sizes() {
  local dir="$WORKDIR/oci-$RANDOM"
  podman push -q --compression-format gzip "$1" "oci:$dir:bench" >&2
  python3 - "$dir" "$(podman image inspect --format '{{.Size}}' "$1")" <<'EOF'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
blob = lambda digest: root / "blobs" / digest.replace(":", "/")
manifest = json.loads(blob(json.loads((root / "index.json").read_text())["manifests"][0]["digest"]).read_text())
layers = [layer["size"] for layer in manifest["layers"]]
print(sys.argv[2], sum(layers), layers[-1], len(layers))
EOF
  rm -rf "$dir"
}

say "pushing both to OCI layout directories (gzip, as to a registry)"
read -r ours_raw ours_gz ours_last ours_layers < <(sizes "$OURS")
read -r before_raw before_gz before_last before_layers < <(sizes "$BEFORE")

# --- start-up ---------------------------------------------------------------------------------

start_emulator moto "$WORKDIR"
QUEUE_URL=$(awsx sqs create-queue --queue-name bench-image --query QueueUrl --output text)

ENCODER_ENV=(QUEUE_URL="$QUEUE_URL" AWS_ENDPOINT_URL="$AWS_ENDPOINT_URL" AWS_REGION="$AWS_REGION"
  AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
  RECEIVE_WAIT_SECONDS=0 LOG_FORMAT=json RUST_LOG=info)

# seconds_to_receive START_EPOCH LOG: from START to the timestamp of the log's first receive line.
seconds_to_receive() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
from datetime import datetime
start = float(sys.argv[1])
for line in open(sys.argv[2]):
    if not line.startswith("{"):
        continue
    record = json.loads(line)
    if record.get("message") in ("the queue is empty", "received a message"):
        stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
        print(f"{stamp - start:.3f}")
        break
else:
    sys.exit(f"no receive line in {sys.argv[2]}")
EOF
}

start_up() { # IMAGE|host: one run, prints seconds
  local log="$WORKDIR/start.log" t0 env_args=() kv
  for kv in "${ENCODER_ENV[@]}"; do env_args+=(--env "$kv"); done
  t0=$(date +%s.%N)
  if [[ $1 == host ]]; then
    env "${ENCODER_ENV[@]}" "$BIN_DIR/encoder" 2>"$log" >&2
  else
    podman run --rm "${FLAGS[@]}" --network host --read-only --read-only-tmpfs=false --cap-drop=ALL \
      --security-opt no-new-privileges --user 10001:10001 "${env_args[@]}" --entrypoint '["encoder"]' "$1" \
      2>"$log" >&2 || { cat "$log" >&2; die "the encoder in $1 failed"; }
  fi
  seconds_to_receive "$t0" "$log"
}

say "container start -> the encoder's first receive ($BENCH_RUNS runs each)"
start_up "$OURS" >/dev/null   # the first run after a build reads the layers from disk: not counted
start_up "$BEFORE" >/dev/null
ours_s=() before_s=() host_s=()
for ((i = 0; i < BENCH_RUNS; i++)); do
  ours_s+=("$(start_up "$OURS")")
  before_s+=("$(start_up "$BEFORE")")
  host_s+=("$(start_up host)")
done
median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
ours_m=$(printf '%s\n' "${ours_s[@]}" | median)
before_m=$(printf '%s\n' "${before_s[@]}" | median)
host_m=$(printf '%s\n' "${host_s[@]}" | median)

# --- rows -------------------------------------------------------------------------------------

mb() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1e6}'; }
times() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }
row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }

row "image size, uncompressed, MB ($OURS: scratch, $ours_layers layers)" "$(mb "$ours_raw")" \
  "$(mb "$before_raw") (before: Debian slim + runtime packages, programs unstripped)" \
  "$(times "$before_raw" "$ours_raw")× smaller" "smaller than before"
row "image size, compressed as pushed (gzip), MB: a cold pull" "$(mb "$ours_gz")" "$(mb "$before_gz") (before)" \
  "$(times "$before_gz" "$ours_gz")× smaller" "smaller than before"
row "an update's pull: the layer a new release changes (the programs), compressed MB" "$(mb "$ours_last")" \
  "$(mb "$before_last") (before)" "$(times "$before_last" "$ours_last")× smaller" "smaller than before"
row "container start → encoder's first receive, s (median of $BENCH_RUNS, empty queue)" "$ours_m" \
  "$before_m (before)" "$(times "$before_m" "$ours_m")×" "no slower than before"
row "same, beside the encoder started without a container" "$ours_m" "$host_m (no container)" \
  "+$(awk -v a="$ours_m" -v b="$host_m" 'BEGIN {printf "%.3f", a - b}') s" "(for scale)"
