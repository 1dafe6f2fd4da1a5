#!/usr/bin/env bash
# Runs every test on a fresh Debian machine: installs what is missing, checks formatting and lints,
# builds the programs, runs the Rust tests (unit, and end-to-end against both AWS emulators, moto
# and LocalStack, with real media) and the infrastructure checks (Kubernetes manifests, Dockerfile,
# AWS provisioning scripts).
#
# The end-to-end tests start their own emulators (one moto and one LocalStack per test binary) and
# analyzers; every such test runs once per emulator, named `...::moto::...` / `...::localstack::...`. Sample media come from $MEDIA_DIR
# (default ../shared/media); without it those tests print one SKIPPED line, and fail under CI=true.
#
# The container image is checked in the infrastructure step: tests/infra/test_image_run.py assembles
# it from the programs built here (scripts/image.sh --binaries target/debug: the Dockerfile's runtime
# stages, in seconds once the Debian layer is cached) and runs each program in it as the rendered
# k8s/overlays/local manifests do, with podman. The full build from source (scripts/image.sh, the
# image to push) is not part of this script: 15 to 45 minutes on 2 cores.
set -eo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

: "${MEDIA_DIR:=$(cd "$REPO_ROOT/.." && pwd)/shared/media}"
export MEDIA_DIR

[[ -n $SKIP_INSTALL ]] || {
  say "installing what is missing"
  scripts/install-deps.sh
  scripts/install-infra-deps.sh
  scripts/install-image-deps.sh
  # Chromium (install-browser.sh), node and the locked players: the tests' only, not the demo's.
  scripts/install-players.sh
}

say "cargo fmt --check"
cargo fmt --all -- --check

# --locked everywhere: a Cargo.lock that no longer matches the manifests fails the suite instead of
# being rewritten silently (the image's build uses --locked too).
say "cargo clippy"
cargo clippy --locked --workspace --all-targets --quiet -- -D warnings

say "building the programs"
cargo build --locked --workspace --bins --quiet

say "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# A failing suite must not stop the script here (set -e): the infrastructure checks still run
# and the closing line counts both.
set +e
cargo test --locked --workspace --no-fail-fast 2>&1 | tee "$log"
rust_status=${PIPESTATUS[0]}
set -e
skipped=$(grep -c '^SKIPPED:' "$log" || true)

say "infrastructure checks (pytest tests/infra)"
pylog=$(mktemp)
trap 'rm -f "$log" "$pylog"' EXIT
set +e
python3 -m pytest tests/infra -q -p no:cacheprovider 2>&1 | tee "$pylog"
py_status=${PIPESTATUS[0]}
set -e
count_in() { # WORD LOG: the sum of "<n> WORD" in the log's last lines
  tail -n 3 "$2" | awk -v w="$1" '{for (i = 2; i <= NF; i++) if ($i ~ "^" w) s += $(i - 1)} END {print s + 0}'
}
py_passed=$(count_in passed "$pylog")
py_failed=$(count_in failed "$pylog")

passed=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($i ~ /^passed;?$/) s += $(i - 1)} END {print s + 0}' "$log")
failed=$(awk '/^test result:/ {for (i = 1; i <= NF; i++) if ($i ~ /^failed;?$/) s += $(i - 1)} END {print s + 0}' "$log")
if ((skipped > 0)); then
  say "$skipped Rust test(s) skipped for missing sample media (MEDIA_DIR=$MEDIA_DIR)"
fi
say "Rust: $passed passed, $failed failed, $skipped skipped; infrastructure: $py_passed passed, $py_failed failed"
if ((rust_status != 0 || py_status != 0)); then
  echo "FAILED: cargo test exit $rust_status, pytest exit $py_status" >&2
  echo "tests: $((passed + py_passed)) passed, $((failed + py_failed + (rust_status != 0 && failed == 0) + (py_status != 0 && py_failed == 0))) failed"
  exit 1
fi
echo "tests: $((passed + py_passed)) passed, 0 failed"
