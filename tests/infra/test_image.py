"""docker/Dockerfile and .dockerignore, checked without a Docker engine.

The important one is test_encoder_shared_libraries_come_from_runtime_packages: it proves, from
the real encoder binary, that the debian-runtime stage's `apt-get install` list provides every
shared library the encoder loads (the final image is cut from that stage: what it lacks, the
image lacks). Packages are resolved with this machine's apt, so these checks run on Debian 12
(bookworm), the release of the runtime image. test_image_run.py builds and runs the image.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from conftest import REPO, require_tool, run

# Where `cargo build` puts the programs (CARGO_TARGET_DIR, relative to the repository, or target/).
DEBUG_DIR = REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "debug"

DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROGRAMS = ("producer", "encoder", "result-analyzer", "local-scaler")
RUNTIME_RELEASE = "bookworm"
APT_HINT = "apt-get (Debian's apt) is needed; run scripts/install-infra-deps.sh on Debian 12"


# --- a small Dockerfile reader ---------------------------------------------------------------

def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comment lines dropped."""
    result, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction too
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    return result


def stages(text: str) -> list[dict]:
    """Each FROM starts a stage: its base image (ARG defaults substituted), name and body."""
    global_args: dict[str, str] = {}
    result: list[dict] = []
    expand = lambda text: re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], text)  # noqa: E731
    for keyword, args in instructions(text):
        if keyword == "ARG" and not result:
            name, _, default = args.partition("=")
            global_args[name] = expand(default)
        elif keyword == "FROM":
            words = args.split()
            image = expand(words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append({"image": image, "name": name, "body": []})
        elif result:
            result[-1]["body"].append((keyword, args))
    return result


def apt_installs(stage: dict) -> list[tuple[list[str], str]]:
    """(packages, whole RUN command) for every `apt-get install` in a stage."""
    found = []
    for keyword, args in stage["body"]:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = shlex.split(command)
            if words[:1] == ["apt-get"] and "install" in words:
                after = words[words.index("install") + 1:]
                found.append(([w for w in after if not w.startswith("-")], args))
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[dict]:
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    return stages(DOCKERFILE.read_text())


def stage(dockerfile: list[dict], name: str) -> dict:
    found = [s for s in dockerfile if s["name"] == name]
    assert found, f"no stage {name} in {DOCKERFILE} (stages: {[s['name'] for s in dockerfile]})"
    return found[0]


def base_of(dockerfile: list[dict], name: str) -> str:
    """The image a stage starts from, through the stages it is built on (FROM chef AS builder)."""
    names = {s["name"]: s for s in dockerfile if s["name"]}
    base = names[name]["image"]
    while base in names:
        base = names[base]["image"]
    return base


@pytest.fixture(scope="module")
def runtime(dockerfile) -> dict:
    """The final stage: the image that is pushed and run."""
    return dockerfile[-1]


@pytest.fixture(scope="module")
def debian_runtime(dockerfile) -> dict:
    """The Debian stage with the runtime packages, which the final image is cut from."""
    return stage(dockerfile, "debian-runtime")


@pytest.fixture(scope="module")
def runtime_packages(debian_runtime) -> list[str]:
    installs = apt_installs(debian_runtime)
    assert len(installs) == 1, "the debian-runtime stage should install its packages in one apt-get install"
    return installs[0][0]


# --- structure -------------------------------------------------------------------------------

def test_base_images_are_build_arguments_defaulting_to_the_public_tags(dockerfile):
    """scripts/image.sh passes local stand-ins when there is no registry; the file names the public ones."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG RUST_IMAGE=rust:\$\{RUST_VERSION\}-bookworm$", text, re.M)
    assert re.search(r"^ARG RUNTIME_IMAGE=debian:bookworm-slim$", text, re.M)
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert "${RUST_IMAGE}" in froms and "${RUNTIME_IMAGE}" in froms
    assert not [f for f in froms if "localhost" in f or "/" in f], f"a FROM names a registry: {froms}"


def test_build_stages_share_one_rust_bookworm_tag(dockerfile):
    rust_tags = {base_of(dockerfile, name) for name in ("chef", "planner", "builder")}
    assert len(rust_tags) == 1, f"build stages use different toolchains: {rust_tags}"
    (tag,) = rust_tags
    assert re.fullmatch(rf"rust:\d+\.\d+(\.\d+)?-{RUNTIME_RELEASE}", tag), (
        f"{tag}: pin a Rust version on {RUNTIME_RELEASE}, the runtime's Debian release"
    )
    for stage_ in dockerfile:
        if base_of(dockerfile, stage_["name"]).startswith("rust:"):
            assert stage_["name"] in ("chef", "planner", "builder"), f"{stage_['name']} is built on the toolchain"


def test_builder_installs_the_ffmpeg_development_packages(dockerfile):
    packages = {p for pkgs, _ in apt_installs(stage(dockerfile, "builder")) for p in pkgs}
    expected = {"libavcodec-dev", "libavformat-dev", "libavutil-dev", "libswscale-dev",
                "libswresample-dev", "libavfilter-dev", "pkg-config", "clang", "libclang-dev"}
    assert expected <= packages, f"missing: {sorted(expected - packages)}"


def test_dependencies_are_cooked_before_the_sources_are_copied(dockerfile):
    builder = stage(dockerfile, "builder")
    steps = [(k, a) for k, a in builder["body"] if k in ("RUN", "COPY")]
    cook = next(i for i, (k, a) in enumerate(steps) if "cargo chef cook" in a)
    copy_all = next(i for i, (k, a) in enumerate(steps) if k == "COPY" and a.split() == [".", "."])
    build = next(i for i, (k, a) in enumerate(steps) if "cargo build" in a)
    assert cook < copy_all < build


def test_builds_the_four_programs_locked_and_installs_them_on_path(dockerfile, debian_runtime, runtime):
    build = next(a for k, a in stage(dockerfile, "builder")["body"] if k == "RUN" and "cargo build" in a)
    words = build.split()
    assert "--release" in words and "--locked" in words
    assert {words[i + 1] for i, word in enumerate(words) if word == "--bin"} == set(PROGRAMS)
    assert "strip --strip-debug" in build, "the release build keeps line tables: strip them for the image"
    # Both sources of the programs hold the same four files at the root.
    assert stage(dockerfile, "built")["body"][-1] == ("COPY", "--from=builder /out/ /")
    assert ("COPY", " ".join(PROGRAMS) + " /") in stage(dockerfile, "prebuilt")["body"]
    assert stage(dockerfile, "binaries")["image"] == "built", "BINARIES must default to the full build"
    copies = " ".join(a for k, a in debian_runtime["body"] if k == "COPY" and a.startswith("--from=binaries"))
    for program in PROGRAMS:
        assert f"/{program}" in copies.split(), f"{program} is not copied"
    assert copies.split()[-1] == "/usr/local/bin/"
    assert ("ENV", "PATH=/usr/local/bin") in runtime["body"]


def test_final_image_is_scratch_with_only_the_collected_tree(dockerfile, runtime):
    assert runtime["image"] == "scratch" and runtime["name"] == "runtime"
    copies = [a for k, a in runtime["body"] if k in ("COPY", "ADD")]
    assert copies == ["--from=collect /rootfs/ /", "--from=collect /programs/ /"], copies
    assert not [k for k, _ in runtime["body"] if k == "RUN"], "the final stage has no shell to RUN with"
    collect = stage(dockerfile, "collect")
    assert collect["image"] == "debian-runtime"
    script = next(a for k, a in collect["body"] if k == "RUN")
    for needed in ("ldd ", "ldconfig -r", "update-ca-certificates", "chroot --userspec=10001:10001"):
        assert needed in script, f"the collect stage no longer runs {needed!r}"


def test_runtime_is_slim_and_installs_only_runtime_packages(debian_runtime, runtime_packages):
    assert debian_runtime["image"] == f"debian:{RUNTIME_RELEASE}-slim"
    ((_, command),) = apt_installs(debian_runtime)
    assert "--no-install-recommends" in command
    assert "rm -rf /var/lib/apt/lists/*" in command, "apt lists must not stay in the layer"
    required = {"ca-certificates", "libavcodec59", "libavformat59", "libavutil57", "libswscale6",
                "libswresample4", "libavfilter8"}
    assert required <= set(runtime_packages), f"missing: {sorted(required - set(runtime_packages))}"
    build_only = [p for p in runtime_packages if p.endswith("-dev") or p in {"clang", "gcc", "pkg-config"}]
    assert not build_only, f"build tools in the runtime image: {build_only}"


def test_runtime_runs_as_uid_10001(debian_runtime, runtime):
    for stage_ in (debian_runtime, runtime):
        users = [a for k, a in stage_["body"] if k == "USER"]
        assert users and users[-1] == "10001:10001", (
            f"{stage_['name']}: USER must be numeric 10001:10001, so runAsNonRoot can be verified "
            "and matches the manifests"
        )
    run_lines = " ".join(a for k, a in debian_runtime["body"] if k == "RUN")
    assert "--uid 10001" in run_lines


# --- against Debian's package metadata -------------------------------------------------------

@pytest.fixture(scope="module")
def apt() -> None:
    require_tool("apt-get", APT_HINT)
    require_tool("apt-cache", APT_HINT)
    require_tool("dpkg", APT_HINT)
    release = ""
    os_release = Path("/etc/os-release")
    if os_release.exists():
        match = re.search(r"^VERSION_CODENAME=(\S+)", os_release.read_text(), re.M)
        release = match[1] if match else ""
    if release != RUNTIME_RELEASE:
        pytest.fail(
            f"package checks resolve against this machine's apt, which is {release or 'not Debian'}; "
            f"run them on Debian 12 ({RUNTIME_RELEASE}), the runtime image's release",
            pytrace=False,
        )


def apt_closure(packages: list[str], tmp_path: Path) -> set[str]:
    """Every package `apt-get install --no-install-recommends <packages>` installs on an empty system.

    Simulated against an empty dpkg status, so the answer doesn't depend on what this machine
    happens to have installed. That is the runtime stage's own install plus the base image's
    packages that the list depends on (libc6, ...).
    """
    status = tmp_path / "empty-dpkg-status"
    status.write_text("")
    result = run(["apt-get", "install", "--simulate", "--no-install-recommends", "--quiet",
                  "-o", f"Dir::State::Status={status}", *packages])
    if result.returncode != 0:
        pytest.fail(
            f"apt-get cannot resolve the runtime packages {packages}:\n{result.stderr}\n"
            "(no package lists? run `apt-get update` or scripts/install-infra-deps.sh)",
            pytrace=False,
        )
    return set(re.findall(r"^Inst (\S+)", result.stdout, re.M))


@pytest.fixture(scope="module")
def runtime_closure(apt, runtime_packages, tmp_path_factory) -> set[str]:
    closure = apt_closure(runtime_packages, tmp_path_factory.mktemp("apt"))
    assert set(runtime_packages) <= closure
    return closure


def test_runtime_libraries_match_the_build_headers(apt, dockerfile, runtime_packages):
    """Each -dev package pins its library package (=version); the runtime must list that one.

    Catches a release bump of the build stage (libavcodec60 instead of 59) that the runtime
    list didn't follow: the binary would then look for a SONAME the image doesn't have.
    """
    dev = [p for stage in dockerfile[:-1] for pkgs, _ in apt_installs(stage) for p in pkgs
           if re.fullmatch(r"lib(av|sw)\w+-dev", p)]
    assert dev
    for package in dev:
        result = run(["apt-cache", "depends", "--no-recommends", "--no-suggests", package])
        assert result.returncode == 0, result.stderr
        libraries = set(re.findall(r"Depends: (lib(?:av|sw)\w*\d+)$", result.stdout, re.M))
        assert libraries, f"{package} depends on no library package?\n{result.stdout}"
        assert libraries & set(runtime_packages), (
            f"{package} builds against {sorted(libraries)}, none of which the runtime installs"
        )


def linked_libraries(binary: Path) -> dict[str, str]:
    """soname -> resolved path, for every shared object the dynamic loader maps for `binary`."""
    result = run(["ldd", str(binary)])
    if result.returncode != 0:
        pytest.fail(f"ldd {binary} failed (not a dynamically linked executable?):\n"
                    f"{result.stdout}{result.stderr}", pytrace=False)
    libraries, unresolved = {}, []
    for line in result.stdout.splitlines():
        line = line.strip()
        if "=> not found" in line:
            unresolved.append(line.split()[0])
        elif match := re.match(r"(\S+) => (/\S+) \(0x", line):
            libraries[match[1]] = match[2]
        elif match := re.match(r"(/\S+) \(0x", line):  # the dynamic loader itself
            libraries[Path(match[1]).name] = match[1]
    assert not unresolved, f"{binary} needs libraries this machine lacks: {unresolved}"
    return libraries


def owning_packages(paths: list[str]) -> dict[str, set[str]]:
    """path -> the Debian package(s) shipping it, trying both sides of the /usr merge.

    One `dpkg -S` call for all paths: it prints the paths it knows and complains about the rest.
    """
    candidates: dict[str, list[str]] = {}
    for path in paths:
        options = [path, os.path.realpath(path)]
        for option in list(options):
            options.append(option[len("/usr"):] if option.startswith("/usr/") else "/usr" + option)
        candidates[path] = options
    every = sorted({c for options in candidates.values() for c in options})
    result = run(["dpkg", "-S", *every])
    owners_of: dict[str, set[str]] = {}
    for line in result.stdout.splitlines():
        if line.startswith("diversion ") or ": " not in line:
            continue
        owners, owned = line.rsplit(": ", 1)
        owners_of[owned] = {owner.strip().split(":")[0] for owner in owners.split(",")}
    return {
        path: next((owners_of[c] for c in options if c in owners_of), set())
        for path, options in candidates.items()
    }


def test_encoder_shared_libraries_come_from_runtime_packages(runtime_closure, runtime_packages):
    """Every library `ldd encoder` lists is shipped by a package the runtime stage installs.

    "Installs" means directly or through Debian's dependencies: naming the ~150 codec
    libraries FFmpeg pulls in would be silly, and apt installs them anyway. What must not happen
    is a library that only this build machine has (another FFmpeg, a -dev only package, a
    /usr/local build): that is the "works here, `error while loading shared libraries` in the
    pod" failure.
    """
    require_tool("ldd", "ldd ships with Debian's libc-bin")
    binary = Path(os.environ.get("ENCODER_BIN", DEBUG_DIR / "encoder"))
    if not binary.is_file():
        pytest.fail(
            f"encoder binary not found at {binary}: build it first (`cargo build -p encoder`) "
            "or set ENCODER_BIN to an encoder build",
            pytrace=False,
        )
    closure = runtime_closure
    libraries = linked_libraries(binary)
    assert any(name.startswith("libavcodec.so") for name in libraries), (
        f"{binary} does not link libavcodec: is it really the encoder?"
    )
    owners_of = owning_packages(list(libraries.values()))
    problems = []
    for soname, path in sorted(libraries.items()):
        owners = owners_of[path]
        if not owners:
            problems.append(f"{soname} ({path}): not from any Debian package")
        elif not owners & closure:
            problems.append(f"{soname} ({path}): from {sorted(owners)}, which the runtime does not install")
    assert not problems, (
        f"libraries of {binary} the runtime image would lack "
        f"(runtime installs {runtime_packages}):\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("program", [p for p in PROGRAMS if p != "encoder"])
def test_other_programs_need_nothing_the_base_image_lacks(runtime_closure, program):
    """producer, result-analyzer and local-scaler: same check, same closure.

    Found in $BIN_DIR (default: the encoder's directory), where `cargo build --workspace --bins`
    puts them.
    """
    encoder = Path(os.environ.get("ENCODER_BIN", DEBUG_DIR / "encoder"))
    binary = Path(os.environ.get("BIN_DIR", encoder.parent)) / program
    if not binary.is_file():
        pytest.fail(f"{program} not found at {binary}: build it (`cargo build --workspace --bins`) "
                    "or set BIN_DIR to the directory holding the four programs", pytrace=False)
    libraries = linked_libraries(binary)
    owners_of = owning_packages(list(libraries.values()))
    problems = [f"{soname} ({path}): from {sorted(owners_of[path]) or 'no package'}"
                for soname, path in sorted(libraries.items()) if not owners_of[path] & runtime_closure]
    assert not problems, f"libraries of {binary} the runtime image would lack:\n" + "\n".join(problems)


# --- build context ---------------------------------------------------------------------------

# The sources are about 3 MB; anything near this limit is something the build does not need.
CONTEXT_LIMIT_BYTES = 20_000_000


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent excludes it."""
    def to_regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + "$")

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = to_regex(pattern.lstrip("!").strip("/"))
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_context_small_but_complete():
    assert DOCKERIGNORE.is_file(), f"{DOCKERIGNORE} is missing"
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    for path in ("target/debug/encoder", ".git/HEAD", "tests/infra/test_image.py",
                 "sample/clip.mp4", "k8s/base/kustomization.yaml", "tests/players/node_modules/x/index.js",
                 "crates/x/node_modules/y.js"):
        assert dockerignore_excludes(patterns, path), f"{path} would be sent to the build"
    # The workspace: cargo needs every member's manifest and sources (tests/ is a member).
    for path in ("Cargo.toml", "Cargo.lock", "crates/encoder/Cargo.toml", "crates/encoder/src/main.rs",
                 "tests/Cargo.toml", "tests/pipeline/main.rs", "tests/support/lib.rs"):
        assert not dockerignore_excludes(patterns, path), f"{path} is excluded, the build needs it"


def test_the_build_context_of_this_work_tree_is_small():
    """What `docker build .` would send from this very work tree, whatever lies around in it (a
    target/ of its own, node_modules, media): the sources, well under the limit."""
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    total, biggest = 0, []
    for directory, subdirs, files in os.walk(REPO):
        relative = os.path.relpath(directory, REPO)
        prefix = "" if relative == "." else relative + "/"
        subdirs[:] = [d for d in subdirs if not dockerignore_excludes(patterns, prefix + d)]
        for name in files:
            path = prefix + name
            if not dockerignore_excludes(patterns, path) and os.path.isfile(REPO / path):
                size = (REPO / path).stat().st_size
                total += size
                biggest.append((size, path))
    biggest = sorted(biggest, reverse=True)[:5]
    assert total < CONTEXT_LIMIT_BYTES, (
        f"the build context is {total / 1e6:.1f} MB (limit {CONTEXT_LIMIT_BYTES / 1e6:.0f} MB); "
        f"largest: {biggest}: add what the build does not need to {DOCKERIGNORE}")
