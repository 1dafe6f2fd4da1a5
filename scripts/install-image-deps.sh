#!/usr/bin/env bash
# Installs what scripts/image.sh and tests/infra/test_image_run.py need to build and run the
# container image on a Debian 12 (bookworm) machine without a Docker engine, and nothing that is
# already there: safe to run on every CI run. scripts/test.sh and scripts/image.sh call it.
#
#   podman, buildah   build (docker/Dockerfile) and run OCI images, rootful, without a daemon
#   runc              the OCI runtime podman is told to use (crun fails on cgroup v1 hosts)
#   mmdebstrap        makes the stand-in base images from Debian's archive when no registry is
#                     reachable (scripts/image.sh)
#   uidmap, fuse-overlayfs, slirp4netns, containernetworking-plugins
#                     what podman needs beside it (user namespaces, rootless storage, networks)
#   binutils          `strip`, for the image assembled from prebuilt programs
#   ffmpeg            `ffprobe`, with which the image tests check the encoder's output
#
# A machine whose Docker daemon answers (`docker info`) needs none of this for scripts/image.sh;
# the image tests use podman. Knobs: none.
set -eo pipefail

log() { echo "install-image-deps: $*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log "run as root or install sudo"; exit 1; }
  SUDO=(sudo)
fi

# package:command pairs; a package is installed when its command is missing.
wanted=(podman:podman buildah:buildah runc:runc mmdebstrap:mmdebstrap uidmap:newuidmap
  fuse-overlayfs:fuse-overlayfs slirp4netns:slirp4netns binutils:strip ffmpeg:ffprobe)
missing=()
for pair in "${wanted[@]}"; do
  command -v "${pair#*:}" >/dev/null || missing+=("${pair%%:*}")
done
# No command to look for: its plugins live in /usr/lib/cni.
dpkg-query -W -f='${Status}' containernetworking-plugins 2>/dev/null | grep -q "install ok installed" ||
  missing+=(containernetworking-plugins)

if ((${#missing[@]})); then
  command -v apt-get >/dev/null || { log "no apt-get: install ${missing[*]} by hand (Debian 12 is what this script knows)"; exit 1; }
  log "apt-get install ${missing[*]}"
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

log "ready: $(podman --version), $(runc --version | head -n 1), mmdebstrap $(mmdebstrap --version | awk '{print $2}')"
