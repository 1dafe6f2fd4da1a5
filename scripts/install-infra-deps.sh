#!/usr/bin/env bash
# Installs what tests/infra needs on a fresh Debian 12 (bookworm) machine, and nothing that is
# already there: safe to run on every CI run. scripts/test.sh calls it.
#
#   kubectl (with kustomize v5)  renders k8s/overlays/* (`kubectl kustomize`)
#   kubernetes-validate          Kubernetes API schemas, offline
#   jsonschema, pyyaml, pytest   KEDA CRD schemas, YAML, the test runner
#   moto[server], boto3          the SQS/S3 emulator the local overlay's seeding is tested against
#   apt package lists            the image test asks apt what the runtime stage would install
#
# Knobs: PYTHON (default python3), KUBECTL_MINOR (default v1.32, the pkgs.k8s.io channel).
set -eo pipefail

: "${PYTHON:=python3}"
: "${KUBECTL_MINOR:=v1.32}"

log() { echo "install-infra-deps: $*" >&2; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log "run as root or install sudo"; exit 1; }
  SUDO=(sudo)
fi

apt_updated=
apt_update() {
  [[ -n $apt_updated ]] && return
  "${SUDO[@]}" apt-get update -q
  apt_updated=1
}
apt_install() {
  apt_update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# Package lists: a fresh container image ships without them, and the image test resolves the
# Dockerfile's runtime packages with `apt-get -s`.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  log "no apt package lists yet: apt-get update"
  apt_update
fi

# kubectl. Debian's own package (kubernetes-client) is 1.20 with kustomize v2, which knows
# neither `labels:` nor `replacements:`, and PyPI has no kubectl; use the Kubernetes project's
# apt repository, as https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/ describes.
kubectl_ok() {
  command -v kubectl >/dev/null && kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5'
}
if ! kubectl_ok; then
  log "installing kubectl ${KUBECTL_MINOR} from pkgs.k8s.io"
  apt_install ca-certificates curl gnupg
  "${SUDO[@]}" install -d -m 0755 /etc/apt/keyrings
  curl -fsSL "https://pkgs.k8s.io/core:/stable:/${KUBECTL_MINOR}/deb/Release.key" \
    | "${SUDO[@]}" gpg --dearmor --yes -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
  echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/${KUBECTL_MINOR}/deb/ /" \
    | "${SUDO[@]}" tee /etc/apt/sources.list.d/kubernetes.list >/dev/null
  apt_updated=
  apt_install kubectl
  kubectl_ok || { log "kubectl installed but its kustomize is not v5"; exit 1; }
fi

# Python packages.
if ! command -v "$PYTHON" >/dev/null; then
  apt_install python3 python3-pip
fi
if ! "$PYTHON" -c 'import kubernetes_validate, jsonschema, yaml, pytest, moto.server, boto3' 2>/dev/null; then
  if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  pip_args=(install --quiet --no-warn-script-location)
  # Debian's system Python refuses pip installs (PEP 668). Install for this user only
  # (~/.local), which leaves the apt-managed packages alone; a virtualenv would work too but
  # would make scripts/test.sh run a different interpreter.
  if "$PYTHON" - <<'EOF'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
EOF
  then
    pip_args+=(--user --break-system-packages)
  fi
  log "pip ${pip_args[*]} kubernetes-validate jsonschema pyyaml pytest moto[server] boto3"
  # kubernetes-validate >= 1.35 ships the schemas of every version tests/infra validates against;
  # moto as scripts/install-deps.sh installs it (the seed test needs nothing newer).
  "$PYTHON" -m pip "${pip_args[@]}" 'kubernetes-validate>=1.35' 'jsonschema>=4.18' 'pyyaml>=6' \
    'pytest>=7' 'moto[server]>=5' 'boto3'
fi

log "ready: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
