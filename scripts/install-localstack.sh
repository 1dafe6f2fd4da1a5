#!/usr/bin/env bash
# Installs LocalStack (the AWS emulator that scripts/localstack.sh runs) from PyPI into its own venv,
# skipping the work when it is already there (safe to run every time; silent then).
#
#   venv:   $LOCALSTACK_VENV (default ~/.local/share/localstack-venv)
#   Python: $LOCALSTACK_PYTHON if set, else the newest suitable one found: 3.13, then 3.12, then a
#           newer 3.x (pyenv's ~/.pyenv/versions/* first, then python3.N / python3 on PATH), and
#           only when none of those exists 3.11 with an older LocalStack; with no Python at all,
#           Debian's python3 + python3-venv from apt.
#   pip:    localstack-core[runtime] pinned to the version checked here, plus the pins it needs to
#           start in a fresh venv (newer cbor2 / pyopenssl / cryptography break it).
set -eo pipefail

log() { echo "install-localstack: $*" >&2; }

: "${LOCALSTACK_VENV:=$HOME/.local/share/localstack-venv}"

# 2026.3.0 declares Requires-Python >=3.10 but uses 3.12-only syntax (PEP 695 generics, `type`
# statements, e.g. in localstack/services/sqs/queue.py): it needs 3.12+. 4.13.1 is the newest release
# whose code still compiles on 3.11 (4.14.0 does not).
LOCALSTACK_VERSION=2026.3.0
LOCALSTACK_VERSION_PY311=4.13.1
PINS=('cbor2<6' 'pyopenssl<25' 'cryptography<45' service_identity)

SUDO=()
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO=(sudo); fi

# Prints "EXECUTABLE X.Y" for the best interpreter found, or nothing.
pick_python() {
  local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv} cand exe ver minor rank best_rank=99 best=
  local -a cands=()
  if [[ -n $LOCALSTACK_PYTHON ]]; then
    cands=("$LOCALSTACK_PYTHON")
  else
    # pyenv's real interpreters (its shims answer only for the active version)
    while IFS= read -r cand; do cands+=("$cand"); done < <(
      ls -d "$pyenv_root"/versions/3.[0-9]*/bin/python3 2>/dev/null | sort -V -r)
    for minor in 13 12 14 15 16 11; do cands+=("python3.$minor"); done
    cands+=(python3)
  fi
  for cand in "${cands[@]}"; do
    # venv and ensurepip must be there (Debian splits them out into python3-venv)
    read -r exe ver < <("$cand" -c 'import sys, venv, ensurepip; print(sys.executable, "%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
    [[ -n $exe ]] || continue
    case $ver in
      3.13) rank=1 ;;
      3.12) rank=2 ;;
      3.1[4-9]) rank=3 ;;
      3.11) rank=4 ;;
      *) continue ;;
    esac
    if ((rank < best_rank)); then best_rank=$rank best="$exe $ver"; fi
    if [[ -n $LOCALSTACK_PYTHON ]] || ((best_rank == 1)); then break; fi
  done
  [[ -n $best ]] && echo "$best"
  return 0
}

chosen=$(pick_python)
if [[ -z $chosen && -z $LOCALSTACK_PYTHON ]]; then
  log "no Python 3.11+ with venv found: apt-get install python3 python3-venv"
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv
  chosen=$(pick_python)
fi
if [[ -z $chosen ]]; then
  log "no usable Python 3.11+ (with the venv module)${LOCALSTACK_PYTHON:+ at LOCALSTACK_PYTHON=$LOCALSTACK_PYTHON}"
  exit 1
fi
read -r python python_version <<<"$chosen"

version=$LOCALSTACK_VERSION
[[ $python_version == 3.11 ]] && version=$LOCALSTACK_VERSION_PY311
want="localstack-core[runtime]==$version ${PINS[*]} python$python_version"

stamp="$LOCALSTACK_VENV/.install-localstack"
if [[ -x $LOCALSTACK_VENV/bin/python && -f $stamp && $(<"$stamp") == "$want" ]] &&
  "$LOCALSTACK_VENV/bin/python" -c 'import sys, importlib.metadata as m; sys.exit(m.version("localstack-core") != sys.argv[1])' "$version" 2>/dev/null; then
  exit 0
fi

if [[ $python_version == 3.11 ]]; then
  log "no Python 3.12+ found: using $python (3.11) with the older localstack-core $version"
fi
if [[ -e $LOCALSTACK_VENV ]]; then
  log "replacing $LOCALSTACK_VENV (it does not hold $want)"
  rm -rf "$LOCALSTACK_VENV"
fi
log "creating $LOCALSTACK_VENV with $python ($python_version)"
mkdir -p "$(dirname "$LOCALSTACK_VENV")"
"$python" -m venv "$LOCALSTACK_VENV"
log "pip install localstack-core[runtime]==$version ${PINS[*]} (a few hundred MB, about a minute)"
"$LOCALSTACK_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  "localstack-core[runtime]==$version" "${PINS[@]}"
"$LOCALSTACK_VENV/bin/python" -c 'import localstack.runtime.main' ||
  { log "localstack does not import in $LOCALSTACK_VENV"; exit 1; }
echo "$want" >"$stamp"
log "LocalStack $version installed in $LOCALSTACK_VENV"
