#!/usr/bin/env bash
# Builds the container image from docker/Dockerfile and prints its reference on the last line.
#
#   scripts/image.sh                          the full build: the programs compiled inside the build
#                                             (cargo-chef, --release); the image to push
#   scripts/image.sh --binaries target/debug  the same runtime assembled from programs built already
#                                             (the Dockerfile's BINARIES=prebuilt): seconds, not
#                                             minutes; what tests/infra/test_image_run.py runs
#   scripts/image.sh --target debian-runtime  another stage of the Dockerfile (here: the Debian-based
#                                             image the final one is cut from, with a shell)
#
# The engine is podman when it is installed, else docker when its daemon answers (ENGINE=podman or
# ENGINE=docker to choose). The base images are the Dockerfile's build arguments RUST_IMAGE and
# RUNTIME_IMAGE, whose defaults are the public tags rust:<version>-bookworm and
# debian:bookworm-slim. This script pulls them (docker.io/library/...); when it cannot (no registry
# reachable, as on the development machine) it says so and uses local stand-ins instead, made once
# and then reused:
#
#   localhost/debian:bookworm-slim  a minimal bookworm root filesystem from Debian's archive
#                                   (mmdebstrap, variant minbase, merged /usr, the slim image's
#                                   dpkg excludes for docs, man pages and locales), imported
#   localhost/rust:<v>-bookworm     the same with build-essential, git, curl and pkg-config, plus
#                                   this machine's Rust toolchain (`rustc --print sysroot`, which
#                                   must be version <v>) in /usr/local/rustup with cargo and rustc
#                                   on PATH as in the official image
#
# This machine reaches crates.io only through a proxy whose CA is in this machine's bundle
# ($SSL_CERT_FILE). With podman, that bundle is mounted into every build step at
# /etc/ssl/build-ca.crt (read-only, build time only: no layer holds it), and the Rust stand-in
# points cargo at it (CARGO_HTTP_CAINFO). Not over /etc/ssl/certs/ca-certificates.crt: a bind
# mount there makes the ca-certificates package fail to install in the runtime stage (its postinst
# renames onto the mount point: EBUSY). The final image's bundle is always Debian's own, made
# again from the package's certificates in the Dockerfile.
#
# Knobs: IMAGE (default video-encoding:<workspace version>; podman stores it as localhost/...),
#   ENGINE, BASES (auto: pull, else stand-ins; pull: pull or fail; local: stand-ins only),
#   PULL_TIMEOUT (seconds, default 60), BUILD_CA (the bundle mounted for the build, default
#   $SSL_CERT_FILE, else /etc/ssl/certs/ca-certificates.crt), STANDIN_REFRESH=1 (make the stand-ins again),
#   PODMAN_RUNTIME (default runc when installed), CONTAINER_NPROC (default 16384),
#   DEBIAN_MIRROR (default http://deb.debian.org/debian), DEBIAN_SECURITY
#   (http://deb.debian.org/debian-security), SKIP_INSTALL=1 (do not run install-image-deps.sh),
#   STRIP=0 (--binaries: copy the programs with their debug sections).
#
# Sourced (`source scripts/image.sh`), it only defines its functions: scripts/bench/image.sh runs
# containers with the same engine flags.
set -eo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DOCKERFILE="$REPO_ROOT/docker/Dockerfile"
PROGRAMS=(producer encoder result-analyzer local-scaler)

# The engine: podman if installed, else docker if its daemon answers.
image_engine() {
  if [[ -n $ENGINE ]]; then
    command -v "$ENGINE" >/dev/null || die "ENGINE=$ENGINE is not installed (scripts/install-image-deps.sh installs podman)"
    echo "$ENGINE"
  elif command -v podman >/dev/null; then
    echo podman
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  else
    die "neither podman nor a running docker: scripts/install-image-deps.sh installs podman"
  fi
}

# engine_flags ENGINE: the flags `ENGINE run` and `ENGINE build` need on this machine, one per line.
# podman: runc (crun, its default, fails on cgroup v1 machines like this one; PODMAN_RUNTIME to
# choose), and explicit ulimits: podman's defaults are above this machine's limits, and then the
# container does not start. Open files: this shell's limit. Processes: this shell's limit, at most
# CONTAINER_NPROC (16384; this machine refuses a container more than 32768). docker: no flags,
# its daemon is configured already.
engine_flags() {
  [[ $1 == podman ]] || return 0
  local runtime=${PODMAN_RUNTIME:-$(command -v runc >/dev/null && echo runc)} nofile nproc
  [[ -z $runtime ]] || printf '%s\n' --runtime "$runtime"
  nofile=$(ulimit -n)
  nproc=$(ulimit -u)
  [[ $nproc == unlimited || $nproc -gt ${CONTAINER_NPROC:-16384} ]] && nproc=${CONTAINER_NPROC:-16384}
  [[ $nofile == unlimited ]] || printf '%s\n' --ulimit "nofile=$nofile:$nofile"
  printf '%s\n' --ulimit "nproc=$nproc:$nproc"
}

# The Dockerfile's default for ARG NAME.
dockerfile_arg() {
  sed -n "s/^ARG $1=\\(.*\\)\$/\\1/p" "$DOCKERFILE" | head -n 1
}

workspace_version() {
  sed -n '/^\[workspace.package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' "$REPO_ROOT/Cargo.toml" | head -n 1
}

# The stand-ins carry this label; one made by an older recipe of this script is made again.
STANDIN_RECIPE=2
STANDIN_LABEL=video-encoding.standin-recipe

standin_current() { # ENGINE REF
  [[ $("$1" image inspect --format "{{index .Config.Labels \"$STANDIN_LABEL\"}}" "$2" 2>/dev/null) == "$STANDIN_RECIPE" ]]
}

image_exists() { # ENGINE REF
  if [[ $1 == podman ]]; then podman image exists "$2"; else docker image inspect "$2" >/dev/null 2>&1; fi
}

# The dpkg excludes of Debian's slim images: no docs (but the copyright files), man pages,
# info pages or translations.
SLIM_DPKG_OPTS=(
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/groff/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  --dpkgopt='path-exclude=/usr/share/linda/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-include=/usr/share/locale/locale.alias'
)

# mmdebstrap_bookworm TARBALL [MMDEBSTRAP ARGS...]: a minbase bookworm root filesystem with the
# official images' apt sources (bookworm, bookworm-updates, bookworm-security).
mmdebstrap_bookworm() {
  local tarball=$1; shift
  local mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  local security=${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
  command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: scripts/install-image-deps.sh installs it"
  mmdebstrap --quiet --variant=minbase --mode=auto --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --customize-hook='rm -f "$1/etc/hostname" "$1/etc/resolv.conf"' \
    "$@" bookworm "$tarball" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" >&2
}

make_runtime_standin() { # ENGINE REF
  local engine=$1 ref=$2 work
  work=$(mktemp -d)
  say "making $ref: a minimal bookworm from Debian's archive (mmdebstrap, about a minute)"
  mmdebstrap_bookworm "$work/rootfs.tar" "${SLIM_DPKG_OPTS[@]}"
  "$engine" import --change 'CMD ["bash"]' \
    --change "LABEL org.opencontainers.image.description=\"Stand-in for debian:bookworm-slim, made by scripts/image.sh with mmdebstrap\"" \
    --change "LABEL $STANDIN_LABEL=$STANDIN_RECIPE" \
    "$work/rootfs.tar" "$ref" >/dev/null
  rm -rf "$work"
}

make_rust_standin() { # ENGINE REF RUST_VERSION
  local engine=$1 ref=$2 want=$3 work sysroot release host changes=()
  command -v rustc >/dev/null || die "no rustc on PATH: the Rust stand-in is made from this machine's toolchain"
  sysroot=$(rustc --print sysroot)
  release=$(rustc -vV | sed -n 's/^release: //p')
  host=$(rustc -vV | sed -n 's/^host: //p')
  [[ $release == "$want" || $release == "$want".* ]] ||
    die "this machine's rustc is $release, the Dockerfile's RUST_VERSION is $want: the stand-in for rust:$want-bookworm must be that toolchain"
  work=$(mktemp -d)
  say "making $ref: bookworm with build-essential and this machine's Rust $release ($sysroot) (a few minutes)"
  # The hook runs with this environment; $1 is the root filesystem being made.
  # shellcheck disable=SC2016
  STANDIN_SYSROOT=$sysroot STANDIN_TOOLCHAIN="$release-$host" mmdebstrap_bookworm "$work/rootfs.tar" \
    --include=build-essential,ca-certificates,curl,git,pkg-config,libssl-dev,zlib1g-dev \
    --customize-hook='set -e
      tc="$1/usr/local/rustup/toolchains/$STANDIN_TOOLCHAIN"
      mkdir -p "$tc" "$1/usr/local/cargo/bin"
      for part in bin lib libexec etc; do
        [ ! -e "$STANDIN_SYSROOT/$part" ] || cp -a "$STANDIN_SYSROOT/$part" "$tc/"
      done
      for tool in "$tc"/bin/*; do
        ln -s "../../rustup/toolchains/$STANDIN_TOOLCHAIN/bin/$(basename "$tool")" "$1/usr/local/cargo/bin/"
      done'
  # podman builds mount this machine's CA bundle there (build_ca_flags); docker cannot mount at
  # build time, so its stand-in trusts Debian's bundle only, as the official image does.
  [[ $engine != podman ]] || changes+=(--change "ENV CARGO_HTTP_CAINFO=$BUILD_CA_PATH")
  "$engine" import --change 'CMD ["bash"]' \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV RUST_VERSION=$release" "${changes[@]}" \
    --change "LABEL org.opencontainers.image.description=\"Stand-in for rust:$want-bookworm, made by scripts/image.sh from this machine's toolchain\"" \
    --change "LABEL $STANDIN_LABEL=$STANDIN_RECIPE" \
    "$work/rootfs.tar" "$ref" >/dev/null
  rm -rf "$work"
}

# Where podman builds see this machine's CA bundle (read-only, during the build only).
BUILD_CA_PATH=/etc/ssl/build-ca.crt

# build_ca_flags ENGINE: the mount of this machine's CA bundle for a podman build, one word per line.
build_ca_flags() {
  [[ $1 == podman ]] || return 0
  local ca=${BUILD_CA:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
  [[ -r $ca ]] || die "the CA bundle $ca (BUILD_CA, else SSL_CERT_FILE) is not readable: cargo in the build needs it"
  printf '%s\n' -v "$(readlink -f "$ca"):$BUILD_CA_PATH:ro"
}

# base_image ENGINE PUBLIC STANDIN MAKER [MAKER ARGS...]: prints the reference to build FROM:
# PUBLIC (docker.io/library/...) when it is here or can be pulled, else STANDIN, made when missing.
base_image() {
  local engine=$1 public=$2 standin=$3 maker=$4; shift 4
  local bases=${BASES:-auto}
  if [[ $bases != local ]]; then
    if image_exists "$engine" "$public"; then
      echo "$public"; return
    fi
    say "pulling $public"
    if timeout "${PULL_TIMEOUT:-60}" "$engine" pull -q "$public" >&2; then
      echo "$public"; return
    fi
    [[ $bases == auto ]] || die "cannot pull $public (BASES=pull)"
    say "cannot pull $public (no registry reachable?): using the local stand-in $standin"
  fi
  if [[ -n $STANDIN_REFRESH ]] || ! image_exists "$engine" "$standin"; then
    "$maker" "$engine" "$standin" "$@"
  elif ! standin_current "$engine" "$standin"; then
    say "$standin was made by an older recipe of this script: making it again"
    "$maker" "$engine" "$standin" "$@"
  else
    say "$standin exists (made earlier; STANDIN_REFRESH=1 makes it again)"
  fi
  echo "$standin"
}

image_main() {
  local binaries="" target="" arg
  while (($#)); do
    arg=$1; shift
    case $arg in
      --binaries) binaries=${1:?--binaries needs a directory}; shift ;;
      --binaries=*) binaries=${arg#*=} ;;
      --target) target=${1:?--target needs a stage}; shift ;;
      --target=*) target=${arg#*=} ;;
      -h | --help) sed -n '2,/^set -eo/ {/^set -eo/d; s/^# \{0,1\}//; p}' "${BASH_SOURCE[0]}"; return 0 ;;
      *) die "unknown argument $arg (see --help)" ;;
    esac
  done

  if [[ -z $SKIP_INSTALL ]] && ! command -v podman >/dev/null &&
    ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
    "$REPO_ROOT/scripts/install-image-deps.sh"
  fi
  local engine version rust_version image flags=() build_args=() context started
  engine=$(image_engine)
  mapfile -t flags < <(engine_flags "$engine")
  [[ $engine == podman ]] && flags+=(--network host)
  version=$(workspace_version)
  rust_version=$(dockerfile_arg RUST_VERSION)
  image=${IMAGE:-video-encoding:$version}
  # podman stores a reference without a registry under localhost/: print that name.
  local registry=${image%%/*}
  if [[ $engine == podman ]] && ! [[ $image == */* && ($registry == *.* || $registry == *:* || $registry == localhost) ]]; then
    image="localhost/$image"
  fi

  build_args+=(--build-arg "VERSION=$version")
  build_args+=(--build-arg "RUNTIME_IMAGE=$(base_image "$engine" docker.io/library/debian:bookworm-slim \
    localhost/debian:bookworm-slim make_runtime_standin)")
  if [[ -n $binaries ]]; then
    [[ -d $binaries ]] || die "--binaries $binaries: no such directory"
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    local program
    for program in "${PROGRAMS[@]}"; do
      [[ -x $binaries/$program ]] || die "$binaries/$program is missing: build the programs first (cargo build --workspace --bins)"
      # Debug sections off here already, as the builder stage does: a debug build's 220 MB per
      # program would otherwise be copied into a layer first. (STRIP=0: as they are.)
      if [[ ${STRIP:-1} != 0 ]] && command -v strip >/dev/null; then
        strip --strip-debug -o "$context/$program" "$binaries/$program"
      else
        cp "$binaries/$program" "$context/$program"
      fi
    done
    build_args+=(--build-arg BINARIES=prebuilt)
    say "assembling $image from the programs in $binaries ($engine)"
  else
    context=$REPO_ROOT
    build_args+=(--build-arg "RUST_IMAGE=$(base_image "$engine" "docker.io/library/rust:$rust_version-bookworm" \
      "localhost/rust:$rust_version-bookworm" make_rust_standin "$rust_version")")
    # Named explicitly: buildah 1.28 otherwise skips the stage BINARIES names by default.
    build_args+=(--build-arg BINARIES=built)
    mapfile -t -O "${#flags[@]}" flags < <(build_ca_flags "$engine")
    say "building $image: the programs compiled inside ($engine; 10 to 15 minutes on 2 cores from nothing)"
  fi
  started=$SECONDS
  local since
  since=$(date +%s)
  "$engine" build "${flags[@]}" -f "$DOCKERFILE" "${build_args[@]}" ${target:+--target "$target"} \
    -t "$image" "$context" >&2
  say "built $image in $((SECONDS - started)) s"
  if [[ -z $binaries ]]; then
    # The builder stage's last layer, tagged so that it stays as cache (fully cached: seconds);
    # then those of earlier builds can go.
    "$engine" build "${flags[@]}" -f "$DOCKERFILE" "${build_args[@]}" --target builder \
      -t "$BUILDER_CACHE" "$context" >/dev/null 2>&1 ||
      say "could not tag the builder stage as $BUILDER_CACHE: earlier builds' layers stay"
    "$engine" image prune --force --filter "label=$WORKSPACE_LAYER_LABEL" >/dev/null 2>&1 || true
  fi
  prune_earlier_builds "$engine" "$since"
  echo "$image"
}

# The full build's builder stage: its latest layer is kept under this tag as cache, and the
# earlier ones (each the whole workspace built, 3.6 GB) are removed by this label.
BUILDER_CACHE=localhost/video-encoding-cache:builder
WORKSPACE_LAYER_LABEL=video-encoding.layer=workspace-build

# prune_earlier_builds ENGINE EPOCH: removes the untagged images that builds of this Dockerfile
# made before EPOCH, those carrying its label (the stages holding programs, a few hundred MB per
# build, which a test run makes every time the programs change). The package layers carry no
# label and stay as build cache, and so do cargo's.
prune_earlier_builds() {
  local label=org.opencontainers.image.title=video-encoding
  "$1" image prune --force --filter "label=$label" --filter "until=$2" >/dev/null 2>&1 ||
    say "could not remove earlier builds' untagged images ($1 image prune --filter label=$label)"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  image_main "$@"
fi
