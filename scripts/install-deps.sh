#!/usr/bin/env bash
# Installs what building, the demo and the tests need on a fresh Debian 12 machine, skipping what is
# already there (safe to run every time). scripts/demo.sh and scripts/test.sh call it.
#
#   apt:  FFmpeg 5.1 development libraries, pkg-config, clang (bindgen), the ffmpeg/ffprobe tools
#         (the demo's sample clip, the tests' checks), curl
#   pip:  moto[server] (the lenient local SQS/S3 emulator), awscli (scripts/aws/*), boto3
#   LocalStack (the strict one) in a venv of its own: scripts/install-localstack.sh
#   Rust: cargo must already be there (rustup); this script says so if it is not.
set -eo pipefail

log() { echo "install-deps: $*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log "run as root or install sudo"; exit 1; }
  SUDO=(sudo)
fi

APT_PACKAGES=(
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev pkg-config clang libclang-dev ffmpeg curl ca-certificates
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

: "${PYTHON:=python3}"
if ! command -v "$PYTHON" >/dev/null; then
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-pip
fi
if ! command -v moto_server >/dev/null || ! command -v aws >/dev/null || ! "$PYTHON" -c 'import boto3' 2>/dev/null; then
  pip_args=(install --quiet)
  # Debian's own Python refuses system-wide pip installs (PEP 668): install for this user.
  if "$PYTHON" -c 'import os,sys,sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"),"EXTERNALLY-MANAGED")) and sys.prefix==sys.base_prefix else 1)'; then
    pip_args+=(--user --break-system-packages)
    export PATH="$HOME/.local/bin:$PATH"
  fi
  log "pip ${pip_args[*]} moto[server] awscli boto3"
  "$PYTHON" -m pip "${pip_args[@]}" 'moto[server]>=5' awscli boto3
  hash -r
fi
command -v moto_server >/dev/null || { log "moto_server is not on PATH after installing (add ~/.local/bin to PATH)"; exit 1; }

"$(dirname "${BASH_SOURCE[0]}")/install-localstack.sh"

if ! command -v cargo >/dev/null; then
  log "cargo is missing: install Rust with rustup (https://rustup.rs), then run this again"
  exit 1
fi
