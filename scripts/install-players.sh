#!/usr/bin/env bash
# Installs the real-player test harness of tests/players (test_support::players), skipping what is
# already there (safe to run every time). scripts/test.sh calls it.
#
#   Chromium: Debian's chromium package, which decodes H.264 and AAC (scripts/install-browser.sh)
#   node, npm: Debian's nodejs and npm when node is missing or older than 18
#   hls.js, dashjs, puppeteer-core: exactly as pinned in tests/players/package-lock.json, with
#            `npm ci` from the npm registry; no install script runs and no browser is downloaded.
#            The tests load the players from tests/players/node_modules, never from the internet.
#
# To move a pin: edit tests/players/package.json, run `npm install` there, commit both files.
set -eo pipefail

log() { echo "install-players: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${PLAYERS_DIR:=$ROOT/tests/players}"
: "${CHROMIUM:=/usr/bin/chromium}"
export CHROMIUM

"$ROOT/scripts/install-browser.sh"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  SUDO=(sudo)
fi
apt_install() {
  [[ ${#SUDO[@]} -eq 0 ]] || command -v sudo >/dev/null || { log "run as root or install sudo"; exit 1; }
  log "apt-get install $*"
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if ! command -v node >/dev/null || (($(node_major) < 18)); then
  apt_install nodejs npm
  hash -r
elif ! command -v npm >/dev/null; then
  apt_install npm
  hash -r
fi
command -v node >/dev/null && (($(node_major) >= 18)) || {
  log "node 18 or later is needed; found: $(node --version 2>/dev/null || echo none)"
  exit 1
}
command -v npm >/dev/null || { log "npm is still missing after installing it"; exit 1; }

lock=$PLAYERS_DIR/package-lock.json
[[ -f $lock ]] || { log "$lock is missing"; exit 1; }
stamp=$PLAYERS_DIR/node_modules/.installed-lock.sha256
want=$(sha256sum "$lock" | cut -d' ' -f1)
packages=(hls.js dashjs puppeteer-core)
installed() {
  [[ -f $stamp && $(cat "$stamp") == "$want" ]] || return 1
  local p
  for p in "${packages[@]}"; do
    [[ -f $PLAYERS_DIR/node_modules/$p/package.json ]] || return 1
  done
}
if ! installed; then
  log "npm ci in $PLAYERS_DIR (hls.js, dashjs, puppeteer-core as locked)"
  (
    cd "$PLAYERS_DIR"
    PUPPETEER_SKIP_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  )
  echo "$want" >"$stamp"
fi

# Each package at the version package.json pins, or the harness would test something else.
(
  cd "$PLAYERS_DIR"
  node -e '
    const fs = require("fs");
    const pins = JSON.parse(fs.readFileSync("package.json")).dependencies;
    const bad = [];
    for (const [name, pin] of Object.entries(pins)) {
      const got = JSON.parse(fs.readFileSync(`node_modules/${name}/package.json`)).version;
      if (got !== pin) bad.push(`${name} ${got} (pinned ${pin})`);
    }
    if (bad.length) { console.error(`install-players: not as pinned: ${bad.join(", ")}; delete node_modules and run again`); process.exit(1); }
  '
)
[[ -z $VERBOSE ]] || log "node $(node --version), $("$CHROMIUM" --version 2>/dev/null), players in $PLAYERS_DIR/node_modules"
