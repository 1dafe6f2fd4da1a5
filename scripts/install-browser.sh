#!/usr/bin/env bash
# Installs Debian's `chromium` package when /usr/bin/chromium is missing (safe to run every time).
# The result analyzer's dashboard test renders GET / in headless Chromium; scripts/test.sh calls this.
set -eo pipefail

log() { echo "install-browser: $*" >&2; }

: "${CHROMIUM:=/usr/bin/chromium}"
if [[ -x $CHROMIUM ]]; then
  exit 0
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log "run as root or install sudo"; exit 1; }
  SUDO=(sudo)
fi

log "apt-get install chromium"
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
[[ -x $CHROMIUM ]] || { log "$CHROMIUM is still missing after installing the chromium package"; exit 1; }
log "$("$CHROMIUM" --version 2>/dev/null || echo chromium installed)"
