"""The image, run the way the manifests run it (podman, rootful, on this machine).

The image is assembled by `scripts/image.sh --binaries $BIN_DIR` (default target/debug) from the
programs the suite built: the runtime stages of docker/Dockerfile (BINARIES=prebuilt), the same
stages the full build (`scripts/image.sh`) ends with; IMAGE_UNDER_TEST=<reference> runs the tests
on an image built already instead (the full build, before it is pushed). Each container gets what
its manifest in the rendered k8s/overlays/local (or k8s/jobs/producer.yaml) says, read from the
YAML:

- the command (as the entrypoint, as the kubelet sets it) and its args (after the image), the
  environment (values, ConfigMap
  and Secret references, envFrom; optional references to missing objects left out);
- runAsUser:runAsGroup, fsGroup as a supplementary group, readOnlyRootFilesystem (podman's
  tmpfs on /tmp, /run and /var/tmp turned off: only the manifest's volumes are writable),
  capabilities dropped, allowPrivilegeEscalation: false (no-new-privileges), seccomp
  RuntimeDefault (podman's default profile, named explicitly), the memory and CPU limits;
- its volumes at their mount paths, made on the host as the kubelet makes them (HostVolumes): an
  emptyDir is a tmpfs of its sizeLimit, mode 0777, group fsGroup with setgid; the analyzer's
  PersistentVolumeClaim is a host directory owned by root:fsGroup, mode 2770, as a volume is
  after the kubelet applied fsGroup.

Networking is the host's (`--network host`): the Service names in the ConfigMap
(aws-emulator, result-analyzer-service) resolve to 127.0.0.1 (`--add-host`), and their ports are
replaced by the free ports the emulator (moto_server, seeded by the local overlay's own seed.py)
and the analyzer got; the analyzer listens on 127.0.0.1 (the network is the host's). Nothing else
is changed, except where a test says so (RECEIVE_WAIT_SECONDS=0 for an empty queue).

Needs podman, runc and ffprobe (scripts/install-image-deps.sh), moto and boto3
(scripts/install-infra-deps.sh), the programs (`cargo build --workspace --bins`) and the sample
media in $MEDIA_DIR (default ../shared/media).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO, find, require_module, require_tool

# Where `cargo build` puts the programs (CARGO_TARGET_DIR, relative to the repository, or target/).
DEBUG_DIR = REPO / os.environ.get("CARGO_TARGET_DIR", "target") / "debug"

IMAGE_SH = REPO / "scripts" / "image.sh"
INSTALL_HINT = "scripts/install-image-deps.sh installs it"
# IMAGE_UNDER_TEST names an image built already (the full build scripts/image.sh printed) to run
# these tests on instead of assembling one from the suite's programs.
IMAGE_UNDER_TEST = os.environ.get("IMAGE_UNDER_TEST", "")
TEST_IMAGE = IMAGE_UNDER_TEST or "localhost/video-encoding:test"
PROGRAMS = ("producer", "encoder", "result-analyzer", "local-scaler")
SERVICES = ("aws-emulator", "result-analyzer-service")
SAMPLE = "h264_aac_720p30_5s.mp4"
# What the producer Job's SOURCE gets: one second of H.264 and AAC, so that its 20 requests
# (COUNT x QUALITIES) are encoded in about a minute.
PRODUCER_SAMPLE = "h264_aac_1080x720_1s.mp4"
# Encoder Jobs at once in the producer's test: the ScaledJob's maxReplicaCount, at most this.
PARALLEL_JOBS = 2
REGION_FALLBACK = "us-east-1"


def run(args: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(args, capture_output=True, text=True, check=False, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{' '.join(args[:6])} ... did not finish within {timeout} s:\n"
                    f"{err.stdout or ''}{err.stderr or ''}", pytrace=False)


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what}", pytrace=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the engine and the image ---------------------------------------------------------------

@pytest.fixture(scope="session")
def podman() -> list[str]:
    """The flags `podman run` needs on this machine (scripts/image.sh's engine_flags: runc, ulimits)."""
    require_tool("podman", INSTALL_HINT)
    require_tool("runc", INSTALL_HINT)
    flags = run(["bash", "-c", f'source "{IMAGE_SH}" && engine_flags podman'])
    assert flags.returncode == 0, flags.stderr
    return flags.stdout.split()


@pytest.fixture(scope="session")
def image(podman) -> str:
    if IMAGE_UNDER_TEST:
        if run(["podman", "image", "exists", IMAGE_UNDER_TEST]).returncode != 0:
            pytest.fail(f"IMAGE_UNDER_TEST={IMAGE_UNDER_TEST} is not in podman's storage: build it "
                        "(scripts/image.sh) or unset IMAGE_UNDER_TEST", pytrace=False)
        return IMAGE_UNDER_TEST
    encoder = Path(os.environ.get("ENCODER_BIN", DEBUG_DIR / "encoder"))
    bin_dir = Path(os.environ.get("BIN_DIR", encoder.parent))
    missing = [p for p in PROGRAMS if not (bin_dir / p).is_file()]
    if missing:
        pytest.fail(f"{missing} not found in {bin_dir}: build them (`cargo build --workspace --bins`) "
                    "or set BIN_DIR to the directory holding the four programs", pytrace=False)
    env = {**os.environ, "IMAGE": TEST_IMAGE, "SKIP_INSTALL": "1"}
    result = run(["bash", str(IMAGE_SH), "--binaries", str(bin_dir)], timeout=1800, env=env)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-40:])
        pytest.fail(f"scripts/image.sh --binaries {bin_dir} exited {result.returncode}:\n{tail}", pytrace=False)
    reference = result.stdout.strip().splitlines()[-1]
    assert reference == TEST_IMAGE, f"scripts/image.sh printed {reference!r} last, not the image reference"
    return reference


@pytest.fixture(scope="session")
def image_config(image) -> dict:
    result = run(["podman", "image", "inspect", image])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)[0]["Config"]


@pytest.fixture(scope="session")
def image_root(image):
    """The image's file system, read-only, at a host path (`podman image mount`)."""
    result = run(["podman", "image", "mount", image])
    assert result.returncode == 0, result.stderr
    yield Path(result.stdout.strip())
    run(["podman", "image", "unmount", image])


@pytest.fixture(scope="session")
def seccomp_profile() -> str:
    """podman's default seccomp profile: what RuntimeDefault means for this runtime."""
    result = run(["podman", "info", "--format", "json"])
    assert result.returncode == 0, result.stderr
    security = json.loads(result.stdout)["host"]["security"]
    if not security.get("seccompEnabled") or not security.get("seccompProfilePath"):
        pytest.fail(f"podman has no default seccomp profile here ({security}): RuntimeDefault cannot "
                    "be reproduced", pytrace=False)
    return security["seccompProfilePath"]


# --- the manifests, as podman flags ---------------------------------------------------------

def quantity(text: str) -> int:
    """A Kubernetes quantity in bytes ("4Gi", "128Mi", "512M", "1000")."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([KMGT]i|[kMG])?", str(text))
    assert match, f"unsupported quantity {text!r}"
    return int(match[1]) * units.get(match[2] or "", 1)


def cpus(text: str) -> str:
    text = str(text)
    return str(int(text[:-1]) / 1000) if text.endswith("m") else text


def decoded(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def lookup(objects: list[dict], kind: str, name: str) -> dict | None:
    return next((o for o in objects if o.get("kind") == kind and o["metadata"]["name"] == name), None)


def resolve_env(container: dict, objects: list[dict]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom first, then env."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            if key in source:
                obj = lookup(objects, kind, source[key]["name"])
                if obj is None:
                    assert source[key].get("optional"), f"{kind} {source[key]['name']} is missing"
                    continue
                env.update(decoded(obj) if kind == "Secret" else obj.get("data") or {})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]
        key, kind = next((k, kind) for k, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret"))
                         if k in ref)
        obj = lookup(objects, kind, ref[key]["name"])
        data = {} if obj is None else decoded(obj) if kind == "Secret" else obj.get("data") or {}
        if ref[key]["key"] not in data:
            assert ref[key].get("optional"), f"{item['name']}: {kind} {ref[key]['name']} has no {ref[key]['key']}"
            continue
        env[item["name"]] = data[ref[key]["key"]]
    return env


@dataclass
class Workload:
    """One container of a manifest, with the pod around it and the objects its references name."""

    where: str
    pod: dict
    container: dict
    objects: list[dict]

    @property
    def grace_seconds(self) -> int:
        return int(self.pod.get("terminationGracePeriodSeconds", 30))

    def env(self) -> dict[str, str]:
        return resolve_env(self.container, self.objects)


def workloads(rendered, producer_job) -> dict[str, Workload]:
    local = rendered["local"]
    scaled = find(local, "ScaledJob", "video-encoder")["spec"]["jobTargetRef"]["template"]["spec"]
    analyzer = find(local, "Deployment", "result-analyzer")["spec"]["template"]["spec"]
    producer = producer_job["spec"]["template"]["spec"]

    def one(where: str, pod: dict, name: str) -> Workload:
        container = next(c for c in pod["containers"] if c["name"] == name)
        return Workload(where, pod, container, local)

    return {
        "encoder": one("ScaledJob/video-encoder", scaled, "encoder"),
        "result-analyzer": one("Deployment/result-analyzer", analyzer, "result-analyzer"),
        "producer": one("jobs/producer.yaml", producer, "producer"),
    }


@pytest.fixture(scope="session")
def manifests(rendered, producer_job) -> dict[str, Workload]:
    return workloads(rendered, producer_job)


@dataclass
class Endpoints:
    """Where the Services the manifests name are on this host: name -> port."""

    ports: dict[str, int] = field(default_factory=dict)

    def rewrite(self, value: str) -> str:
        def port(match: re.Match) -> str:
            name = match[1]
            return f"//{name}:{self.ports[name]}" if name in self.ports else match[0]
        return re.sub(r"//([a-z0-9-]+):(\d+)", port, value)


class HostVolumes:
    """Volumes made on the host as the kubelet makes them, bind-mounted into the containers.

    An emptyDir is a directory of its own, mode 0777 (the kubelet's), group fsGroup and setgid when
    the pod has one; with a sizeLimit it is a tmpfs of that size (what the kubelet mounts for
    `medium: Memory`), so that writing past the limit fails as the eviction would stop it. (Not
    podman's own tmpfs mounts: runc gives those the mode of the image's mount point, which a
    kubelet volume never has.) A PersistentVolumeClaim is a directory the test names.
    """

    def __init__(self, root: Path):
        self.root = root
        self.mounted: list[Path] = []

    def empty_dir(self, size_limit: str | None, fs_group: int | None) -> Path:
        path = self.root / f"empty-dir-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        if size_limit:
            result = run(["mount", "-t", "tmpfs", "-o", f"size={quantity(size_limit)},mode=0777", "tmpfs", str(path)])
            if result.returncode != 0:
                pytest.fail(f"cannot mount a tmpfs for an emptyDir (rootful podman runs as root): {result.stderr}",
                            pytrace=False)
            self.mounted.append(path)
        path.chmod(0o777)
        if fs_group is not None:
            os.chown(path, 0, fs_group)
            path.chmod(0o2777)
        return path

    def cleanup(self) -> None:
        for path in reversed(self.mounted):
            if run(["umount", str(path)]).returncode != 0:
                run(["umount", "--lazy", str(path)])
        self.mounted.clear()


@pytest.fixture(scope="session")
def host_volumes(tmp_path_factory):
    volumes = HostVolumes(tmp_path_factory.mktemp("volumes"))
    yield volumes
    volumes.cleanup()


def container_args(workload: Workload, image_config: dict, seccomp: str, endpoints: Endpoints, *,
                   name: str, volumes: HostVolumes | None = None, claims: dict[str, Path] | None = None,
                   env: dict[str, str] | None = None, image: str = TEST_IMAGE,
                   command: list[str] | None = None, options: list[str] | None = None) -> list[str]:
    """`podman run` arguments (after `run`) that run `workload` as its manifest says: the options,
    the image, and the manifest's `args` after it (as the kubelet passes command and args).

    volumes: where the emptyDirs are made; None leaves every volume out, and the container then
    has no writable path at all. claims: host directories for the PersistentVolumeClaims (by claim
    name). env: variables set on top of the manifest's (the tests' knobs: ports, waits).
    command: instead of the manifest's command and args (its first word is the entrypoint, the
    rest follows the image), for the tests of what no manifest runs (`--help`). options: more
    `podman run` options (a test's own mounts).
    """
    pod, container = workload.pod, workload.container
    pod_sc, sc = pod.get("securityContext") or {}, container.get("securityContext") or {}
    setting = lambda key: sc.get(key, pod_sc.get(key))  # noqa: E731 (container wins, as in k8s)
    uid, gid = setting("runAsUser"), setting("runAsGroup")
    assert uid is not None and gid is not None, f"{workload.where}: runAsUser/runAsGroup not set"
    if setting("runAsNonRoot"):
        assert int(uid) != 0, f"{workload.where}: runAsNonRoot with runAsUser 0"
    args = ["--name", name, "--pull", "never", "--log-driver", "k8s-file", "--network", "host",
            "--user", f"{uid}:{gid}"]
    if pod_sc.get("fsGroup") is not None:
        args += ["--group-add", str(pod_sc["fsGroup"])]
    for group in pod_sc.get("supplementalGroups") or []:
        args += ["--group-add", str(group)]
    if sc.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]
    for cap in (sc.get("capabilities") or {}).get("drop") or []:
        args.append(f"--cap-drop={cap}")
    for cap in (sc.get("capabilities") or {}).get("add") or []:
        args.append(f"--cap-add={cap}")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    profile = (setting("seccompProfile") or {}).get("type")
    assert profile == "RuntimeDefault", f"{workload.where}: seccompProfile {profile!r}: only RuntimeDefault is reproduced here"
    args += ["--security-opt", f"seccomp={seccomp}"]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        args += ["--memory", str(quantity(limits["memory"]))]
    if "cpu" in limits:
        args += ["--cpus", cpus(limits["cpu"])]
    for service in SERVICES:
        args += ["--add-host", f"{service}:127.0.0.1"]
    if volumes is not None:
        by_name = {v["name"]: v for v in pod.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            volume = by_name[mount["name"]]
            if "emptyDir" in volume:
                size = (volume["emptyDir"] or {}).get("sizeLimit")
                args += ["-v", f"{volumes.empty_dir(size, pod_sc.get('fsGroup'))}:{mount['mountPath']}"]
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claims and claim in claims, f"{workload.where}: no host directory for claim {claim}"
                args += ["-v", f"{claims[claim]}:{mount['mountPath']}"]
            else:
                pytest.fail(f"{workload.where}: volume {volume} is not reproduced by this test", pytrace=False)
    values = {k: endpoints.rewrite(v) for k, v in workload.env().items()}
    values.update(env or {})
    for key, value in values.items():
        args += ["--env", f"{key}={value}"]
    if command is None:
        entrypoint, arguments = container.get("command"), [str(a) for a in container.get("args") or []]
        assert entrypoint, f"{workload.where}: no command (the image has no entrypoint on purpose)"
    else:
        entrypoint, arguments = command[:1], command[1:]
    args += ["--entrypoint", json.dumps(entrypoint)]
    # The image runs as its USER unless told otherwise; the kubelet would refuse a root one.
    assert image_config.get("User", "").split(":")[0] not in ("", "0", "root")
    return [*args, *(options or []), image, *arguments]


def pvc_directory(path: Path, fs_group: int) -> Path:
    """A directory as a volume is after the kubelet applied fsGroup: root:fsGroup, setgid, 2770."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, fs_group)
    path.chmod(0o2770)
    return path


class Container:
    """A detached container, removed (by its name) when the test is done."""

    def __init__(self, podman: list[str], args: list[str]):
        self.podman = podman
        self.name = args[args.index("--name") + 1]
        result = run(["podman", "run", *podman, "--detach", *args])
        if result.returncode != 0:
            pytest.fail(f"podman run {self.name} failed:\n{result.stderr}", pytrace=False)

    def logs(self) -> str:
        result = run(["podman", "logs", self.name])
        return result.stdout + result.stderr

    def state(self) -> dict:
        result = run(["podman", "inspect", "--format", "json", self.name])
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)[0]["State"]

    def running(self) -> bool:
        return self.state()["Running"]

    def wait(self, timeout: float) -> int:
        wait_for(lambda: not self.running(), timeout, f"container {self.name} to exit\n{self.logs()}",
                 every=0.1)
        return int(self.state()["ExitCode"])

    def remove(self) -> None:
        run(["podman", "rm", "--force", "--time", "0", self.name])


@pytest.fixture()
def containers(podman, image):
    started: list[Container] = []

    def start(args: list[str]) -> Container:
        container = Container(podman, args)
        started.append(container)
        return container

    yield start
    for container in started:
        container.remove()


def log_records(text: str) -> list[dict]:
    """The JSON lines (LOG_FORMAT=json) of a container's output; other lines are ignored."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


# --- the emulator and the stack -------------------------------------------------------------

@dataclass
class Stack:
    moto_url: str
    endpoints: Endpoints
    workloads: dict[str, Workload]
    analyzer_url: str
    config: dict[str, str]
    volumes: HostVolumes
    rendered: list[dict]  # the objects of the rendered k8s/overlays/local

    def client(self, service: str):
        boto3 = require_module("boto3", "boto3")
        from botocore.config import Config
        return boto3.client(service, endpoint_url=self.moto_url, region_name=self.config["AWS_REGION"],
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(s3={"addressing_style": "path"}))

    @property
    def queue_url(self) -> str:
        """The ConfigMap's QUEUE_URL, pointed at this moto."""
        return self.endpoints.rewrite(self.config["QUEUE_URL"]).replace("//aws-emulator:", "//127.0.0.1:")

    def counts(self) -> list[str]:
        with urllib.request.urlopen(f"{self.analyzer_url}/get/count", timeout=10) as answer:
            return json.load(answer)

    def queue_depth(self) -> int:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(v) for v in attributes.values())


def start_moto(tmp: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    require_module("moto.server", "moto[server]")
    port = free_port()
    log = open(tmp / f"moto-{port}.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port), *extra],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def listening():
        if process.poll() is not None:
            pytest.fail(f"moto_server exited {process.returncode}: {(tmp / f'moto-{port}.log').read_text()}",
                        pytrace=False)
        with socket.socket() as client:
            return client.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, 30, "moto_server to listen")
    return process, port


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def stack(rendered, manifests, podman, image, image_config, seccomp_profile, host_volumes, tmp_path_factory):
    """moto seeded by the local overlay's seed.py, and the result-analyzer in a container."""
    tmp = tmp_path_factory.mktemp("stack")
    moto, moto_port = start_moto(tmp)
    processes = [moto]
    names: list[str] = []
    try:
        # The overlay's own seeding: the queue, its dead-letter queue and the buckets.
        emulator = find(rendered["local"], "Deployment", "aws-emulator")["spec"]["template"]["spec"]
        seed_container = next(c for c in emulator["containers"] if c["name"] == "seed")
        seed_map = next(v["configMap"]["name"] for v in emulator["volumes"] if v["name"] == "seed")
        seed_py = tmp / "seed.py"
        seed_py.write_text(find(rendered["local"], "ConfigMap", seed_map)["data"]["seed.py"])
        marker = tmp / "seeded"
        seed_env = {e["name"]: e["value"] for e in seed_container["env"]}
        seed_env.update(PATH=os.environ["PATH"], EMULATOR_URL=f"http://127.0.0.1:{moto_port}",
                        SEED_MARKER=str(marker), SEED_INTERVAL_SECONDS="5")
        seed = subprocess.Popen([sys.executable, str(seed_py)], env=seed_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        processes.append(seed)
        wait_for(lambda: marker.exists(), 60, "the overlay's seed.py to create the queue and buckets")

        analyzer_port = free_port()
        endpoints = Endpoints({"aws-emulator": moto_port, "result-analyzer-service": analyzer_port})
        analyzer = manifests["result-analyzer"]
        data = pvc_directory(tmp / "analyzer-data", int(analyzer.pod["securityContext"]["fsGroup"]))
        name = f"image-test-analyzer-{uuid.uuid4().hex[:8]}"
        args = container_args(analyzer, image_config, seccomp_profile, endpoints, name=name,
                              volumes=host_volumes, claims={"result-analyzer-data": data},
                              env={"LISTEN_ADDR": f"127.0.0.1:{analyzer_port}"}, image=image)
        result = run(["podman", "run", *podman, "--detach", *args])
        assert result.returncode == 0, result.stderr
        names.append(name)
        url = f"http://127.0.0.1:{analyzer_port}"
        wait_for(lambda: http_ok(f"{url}/healthz"), 30, f"the analyzer container to answer on {url}")
        config = find(rendered["local"], "ConfigMap", "video-encoding-config")["data"]
        yield Stack(f"http://127.0.0.1:{moto_port}", endpoints, manifests, url, config, host_volumes,
                    rendered["local"])
    finally:
        for name in names:
            run(["podman", "rm", "--force", "--time", "0", name])
        for process in reversed(processes):
            stop(process)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.fixture()
def queue(stack):
    """The ConfigMap's queue, empty before and after the test."""
    sqs = stack.client("sqs")
    sqs.purge_queue(QueueUrl=stack.queue_url)
    yield stack.queue_url
    sqs.purge_queue(QueueUrl=stack.queue_url)


def media_file(name: str) -> Path:
    """A real file of the sample media set; missing, the test fails (a skipped test proves nothing)."""
    path = Path(os.environ.get("MEDIA_DIR", REPO.parent / "shared" / "media")) / name
    if not path.is_file():
        pytest.fail(f"sample media {path} is missing: set MEDIA_DIR to the directory holding the "
                    "sample media set", pytrace=False)
    return path


def encoder_args(stack: Stack, image_config, seccomp, name: str, options: list[str] | None = None,
                 **env: str) -> list[str]:
    return container_args(stack.workloads["encoder"], image_config, seccomp, stack.endpoints, name=name,
                          volumes=stack.volumes, env=env, options=options)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("program", PROGRAMS)
def test_every_program_answers_help_without_any_writable_path(podman, image, image_config, manifests,
                                                             seccomp_profile, program):
    """Read-only root and not a single volume: --help must still work (and print usage)."""
    workload = manifests.get(program, manifests["encoder"])  # local-scaler has no manifest
    args = container_args(workload, image_config, seccomp_profile, Endpoints(), name=unique("image-test-help"),
                          image=image, command=[program, "--help"])
    result = run(["podman", "run", *podman, "--rm", *args], timeout=60)
    assert result.returncode == 0, f"{program} --help exited {result.returncode}:\n{result.stdout}{result.stderr}"
    assert "Usage:" in result.stdout, result.stdout


def test_local_scaler_plans_without_any_writable_path(podman, image, image_config, manifests, seccomp_profile):
    args = container_args(manifests["encoder"], image_config, seccomp_profile, Endpoints(),
                          name=unique("image-test-plan"), image=image,
                          command=["local-scaler", "plan", "--queue-length", "7", "--max-replicas", "4"])
    result = run(["podman", "run", *podman, "--rm", *args])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["jobs_to_create"] == 4, result.stdout


def test_image_is_the_programs_and_what_they_load_as_uid_10001(image_config, image_root):
    assert image_config.get("User") == "10001:10001", image_config.get("User")
    assert not image_config.get("Entrypoint"), "no entrypoint: each manifest names its program"
    assert image_config.get("WorkingDir") == "/scratch"
    for program in PROGRAMS:
        assert os.access(image_root / "usr" / "local" / "bin" / program, os.X_OK), program
    # Shrunk to what the programs need: no shell, no package manager, no package lists.
    for absent in ("bin/sh", "usr/bin/apt-get", "usr/bin/dpkg", "var/lib/apt/lists", "var/cache/apt"):
        assert not (image_root / absent).exists(), f"/{absent} is in the image"
    passwd = (image_root / "etc" / "passwd").read_text()
    assert re.search(r"^app:x:10001:10001:", passwd, re.M), passwd
    for mount_point in ("scratch", "data"):
        stat = (image_root / mount_point).stat()
        assert (stat.st_uid, stat.st_gid) == (10001, 10001), f"/{mount_point} owned by {stat.st_uid}:{stat.st_gid}"
    # Scanners (ECR, Trivy) read the versions from here.
    assert (image_root / "var" / "lib" / "dpkg" / "status.d" / "libavcodec59").is_file()


def pem_bodies(text: str) -> set[str]:
    return {"".join(block.split()) for block in
            re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", text, re.S)}


def test_ca_bundle_is_debians_with_the_amazon_roots(image_root):
    """Debian's bundle, with the roots AWS's endpoints chain to, and none of this machine's own CAs.

    (The build reaches crates.io through this machine's CA, which the build image trusts; the
    image must not.) "This machine's own" = in $SSL_CERT_FILE but not among Debian's Mozilla set.
    """
    bundle = image_root / "etc" / "ssl" / "certs" / "ca-certificates.crt"
    assert bundle.is_file(), "no CA bundle at /etc/ssl/certs/ca-certificates.crt: HTTPS to AWS would fail"
    ours = pem_bodies(bundle.read_text())
    assert len(ours) > 100, f"only {len(ours)} certificates in the bundle"
    mozilla = Path("/usr/share/ca-certificates/mozilla")
    if not mozilla.is_dir():
        pytest.fail("/usr/share/ca-certificates/mozilla is missing here: apt-get install ca-certificates",
                    pytrace=False)
    amazon = sorted(mozilla.glob("Amazon_Root_CA_*.crt"))
    assert amazon, "no Amazon roots among this machine's Mozilla certificates to compare with"
    for root in amazon:
        assert pem_bodies(root.read_text()) <= ours, f"{root.name} is not in the image's bundle"
    machine = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    if machine.is_file():
        debian = set().union(*(pem_bodies(p.read_text()) for p in mozilla.glob("*.crt")))
        own = pem_bodies(machine.read_text()) - debian
        assert not own & ours, f"{len(own & ours)} of this machine's own CAs ({machine}) are in the image's bundle"


def test_encoder_job_transcodes_a_message_from_the_emulator(podman, stack, queue, image_config,
                                                           seccomp_profile, tmp_path):
    """A real request through the container: receive, download, transcode, store, report, delete."""
    source = media_file(SAMPLE)
    ffprobe = require_tool("ffprobe", INSTALL_HINT)
    video_id = unique("image-test")
    key = f"uploads/{video_id}.mp4"
    stack.client("s3").upload_file(str(source), "media-in", key)
    processed_before = sum("processed count" in line for line in stack.counts())
    body = {"video_id": video_id, "source": f"s3://media-in/{key}", "quality": "360p", "request_id": str(uuid.uuid4())}
    stack.client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(body))

    name = unique("image-test-encoder")
    args = encoder_args(stack, image_config, seccomp_profile, name)
    started = time.monotonic()
    result = run(["podman", "run", *podman, "--rm", *args], timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the encoder exited {result.returncode} after {time.monotonic() - started:.1f} s:\n{output}"
    messages = [r.get("message") for r in log_records(output)]
    assert "received a message" in messages and "stored the rendition" in messages, output

    # The ConfigMap's OUTPUT_URI: s3://media-out/renditions.
    output_uri = stack.config["OUTPUT_URI"]
    bucket, _, prefix = output_uri.removeprefix("s3://").partition("/")
    rendition = tmp_path / "360p.mp4"
    stack.client("s3").download_file(bucket, f"{prefix}/{video_id}/360p.mp4", str(rendition))
    probe = run([ffprobe, "-v", "error", "-show_streams", "-of", "json", str(rendition)])
    assert probe.returncode == 0, probe.stderr
    streams = {s["codec_type"]: s for s in json.loads(probe.stdout)["streams"]}
    assert streams["video"]["codec_name"] == "h264", streams["video"]
    assert (streams["video"]["width"], streams["video"]["height"]) == (640, 360)
    assert streams["video"]["pix_fmt"] == "yuv420p"
    assert streams["audio"]["codec_name"] == "aac"
    assert float(streams["video"]["duration"]) == pytest.approx(5.0, abs=0.2)

    assert stack.queue_depth() == 0, "the message was not deleted"
    assert sum("processed count" in line for line in stack.counts()) == processed_before + 1, stack.counts()


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """A 1080p clip long enough (12 s) that a 1080p rendition of it takes several seconds."""
    ffmpeg = require_tool("ffmpeg", INSTALL_HINT)
    path = tmp_path_factory.mktemp("clip") / "long-1080p.mp4"
    result = run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30:duration=12",
                  "-f", "lavfi", "-i", "sine=duration=12", "-c:v", "libx264", "-preset", "ultrafast",
                  "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], timeout=120)
    assert result.returncode == 0, result.stderr
    return path


def test_sigterm_releases_the_message_and_exits_143_within_the_grace_period(
        podman, stack, queue, containers, image_config, seccomp_profile, long_clip):
    """`podman stop --time <terminationGracePeriodSeconds>` is what the kubelet does: SIGTERM, then
    SIGKILL when the grace period is over. The encoder must exit by itself (143), with the message
    visible again at once (not after its 120 s lease) and the kill reported."""
    video_id = unique("image-test-kill")
    key = f"uploads/{video_id}.mp4"
    stack.client("s3").upload_file(str(long_clip), "media-in", key)
    kills_before = sum("kill count" in line for line in stack.counts())
    body = {"video_id": video_id, "source": f"s3://media-in/{key}", "quality": "1080p"}
    stack.client("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(body))

    container = containers(encoder_args(stack, image_config, seccomp_profile, unique("image-test-kill")))
    # Stopped while it transcodes: the source is downloaded, the work under way.
    wait_for(lambda: "downloaded the source" in container.logs() or not container.running(), 120,
             "the encoder to download the source")
    assert container.running(), f"the encoder ended before it could be stopped:\n{container.logs()}"
    grace = stack.workloads["encoder"].grace_seconds
    started = time.monotonic()
    result = run(["podman", "stop", "--time", str(grace), container.name], timeout=grace + 30)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    code = int(container.state()["ExitCode"])
    assert code == 143, f"exit {code} after SIGTERM (137 = SIGKILLed at the end of the grace period):\n{container.logs()}"
    assert seconds < grace, f"took {seconds:.1f} s of the {grace} s grace period"

    received = stack.client("sqs").receive_message(QueueUrl=queue, WaitTimeSeconds=2,
                                                   AttributeNames=["ApproximateReceiveCount"])
    assert received.get("Messages"), "the message is not visible again: it was not released"
    assert json.loads(received["Messages"][0]["Body"])["video_id"] == video_id
    assert sum("kill count" in line for line in stack.counts()) == kills_before + 1, stack.counts()


def test_result_analyzer_keeps_its_counts_on_the_volume_across_a_restart(
        podman, stack, containers, image_config, seccomp_profile, tmp_path):
    workload = stack.workloads["result-analyzer"]
    fs_group = int(workload.pod["securityContext"]["fsGroup"])
    data = pvc_directory(tmp_path / "data", fs_group)
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def start() -> Container:
        args = container_args(workload, image_config, seccomp_profile, stack.endpoints,
                              name=unique("image-test-analyzer"), volumes=stack.volumes,
                              claims={"result-analyzer-data": data},
                              env={"LISTEN_ADDR": f"127.0.0.1:{port}"})
        container = containers(args)
        wait_for(lambda: http_ok(f"{url}/healthz") or not container.running(), 30, "the analyzer to answer")
        assert container.running(), f"the analyzer exited:\n{container.logs()}"
        return container

    first = start()
    # The process runs as the manifest says: uid/gid, no capabilities, no new privileges, seccomp.
    status = Path(f"/proc/{first.state()['Pid']}/status").read_text()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Uid"].split()[:2] == ["10001", "10001"] and fields["Gid"].split()[:2] == ["10001", "10001"]
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0, fields["CapEff"]
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2", "no seccomp filter"

    for route in ("/create/count", "/create/count", "/kill/count"):
        request = urllib.request.Request(url + route, data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    with urllib.request.urlopen(f"{url}/get/count", timeout=10) as answer:
        before = json.load(answer)
    assert [re.sub(r"^.* - ", "", line) for line in before] == ["processed count 1", "processed count 2", "kill count 1"]
    database = Path(workload.env()["DATABASE_PATH"])
    stored = data / database.relative_to(next(m["mountPath"] for m in workload.container["volumeMounts"]
                                               if m["name"] == "data"))
    assert stored.is_file(), f"no database at {stored} on the volume"
    assert stored.stat().st_uid == 10001

    result = run(["podman", "stop", "--time", str(workload.grace_seconds), first.name], timeout=workload.grace_seconds + 30)
    assert result.returncode == 0, result.stderr
    assert int(first.state()["ExitCode"]) == 0, f"the analyzer did not stop cleanly on SIGTERM:\n{first.logs()}"
    first.remove()

    start()
    with urllib.request.urlopen(f"{url}/get/count", timeout=10) as answer:
        assert json.load(answer) == before


def s3_location(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def test_producer_job_sends_its_requests_and_completes_once_the_encoder_jobs_processed_them(
        podman, stack, queue, containers, image_config, seccomp_profile):
    """The producer Job as k8s/jobs/producer.yaml runs it, command and args (`producer --wait`):
    it sends COUNT requests per quality of QUALITIES for SOURCE (a real file put there first),
    then waits for their completion notices on the ConfigMap's results queue, and exits 0 only
    when every one was processed. Meanwhile encoder Jobs run as KEDA starts them: one container
    per message waiting on the queue, at most PARALLEL_JOBS at once (the ScaledJob's
    maxReplicaCount, bounded by this 2-core machine)."""
    workload = stack.workloads["producer"]
    env = workload.env()
    assert workload.container.get("args"), f"{workload.where}: no args (the test expects `--wait`)"
    source_bucket, source_key = s3_location(env["SOURCE"])
    stack.client("s3").upload_file(str(media_file(PRODUCER_SAMPLE)), source_bucket, source_key)
    results_queue = stack.endpoints.rewrite(stack.config["RESULT_QUEUE_URL"]).replace("//aws-emulator:", "//127.0.0.1:")
    stack.client("sqs").purge_queue(QueueUrl=results_queue)
    processed_before = sum("processed count" in line for line in stack.counts())
    qualities = env["QUALITIES"].split(",")
    expected = sorted((f"{env['VIDEO_ID']}-{i}", q) for i in range(1, int(env["COUNT"]) + 1) for q in qualities)

    producer = containers(container_args(workload, image_config, seccomp_profile, stack.endpoints,
                                         name=unique("image-test-producer"), volumes=stack.volumes))
    scaled_job = find(stack.rendered, "ScaledJob", "video-encoder")["spec"]
    parallel = min(int(scaled_job["maxReplicaCount"]), PARALLEL_JOBS)
    sqs = stack.client("sqs")
    jobs: list[Container] = []
    finished: list[tuple[str, int]] = []
    deadline = time.monotonic() + 60 + 15 * len(expected)
    while producer.running():
        assert time.monotonic() < deadline, (
            f"the producer still waits after {len(finished)} encoder Jobs:\n{producer.logs()[-3000:]}")
        for job in [j for j in jobs if not j.running()]:
            jobs.remove(job)
            finished.append((job.name, int(job.state()["ExitCode"])))
            assert finished[-1][1] == 0, f"encoder Job {job.name} exited {finished[-1][1]}:\n{job.logs()}"
            job.remove()
        visible = int(sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
                      ["Attributes"]["ApproximateNumberOfMessages"])
        if visible and len(jobs) < parallel:
            jobs.append(containers(encoder_args(stack, image_config, seccomp_profile, unique("image-test-job"))))
        else:
            time.sleep(0.5)
    logs = producer.logs()
    code = int(producer.state()["ExitCode"])
    assert code == 0, f"the producer Job exited {code}:\n{logs}"

    outcomes = [r for r in log_records(logs) if r.get("message") == "outcome"]
    assert sorted((o["video_id"], o["outcome"]) for o in outcomes) == sorted(
        (v, "processed") for v in {video_id for video_id, _ in expected} for _ in qualities), logs
    output_bucket, prefix = s3_location(stack.config["OUTPUT_URI"])
    stored = {o["Key"] for o in stack.client("s3").list_objects_v2(Bucket=output_bucket, Prefix=f"{prefix}/")
              .get("Contents", [])}
    missing = [f"{prefix}/{v}/{q}.mp4" for v, q in expected if f"{prefix}/{v}/{q}.mp4" not in stored]
    assert not missing, f"renditions not stored: {missing}"
    # The notice goes out before the message is deleted: the last Job may still be deleting.
    wait_for(lambda: stack.queue_depth() == 0, 30, "the last encoder Job to delete its message")
    processed = sum("processed count" in line for line in stack.counts())
    assert processed == processed_before + len(expected), stack.counts()


# --- TLS with the image's CA bundle ---------------------------------------------------------

@pytest.fixture(scope="module")
def tls_moto(tmp_path_factory):
    """A second moto_server, on HTTPS with a certificate for aws-emulator from a CA of our own."""
    require_module("cryptography", "cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    tmp = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key, issuer_name, issuer_key, ca: bool):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("aws-emulator")]),
                                            critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "image test CA")])
    ca = certificate("image test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = certificate("aws-emulator", key, ca_name, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (tmp / "ca.crt").write_bytes(ca.public_bytes(pem))
    (tmp / "server.crt").write_bytes(leaf.public_bytes(pem))
    (tmp / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tmp / "ca.crt").chmod(0o644)
    process, port = start_moto(tmp, "--ssl-cert", str(tmp / "server.crt"), "--ssl-key", str(tmp / "server.key"))
    try:
        yield port, tmp / "ca.crt"
    finally:
        stop(process)


def test_encoder_verifies_https_with_the_bundle_at_debians_path(podman, stack, tls_moto, image_config,
                                                                seccomp_profile):
    """The programs trust exactly /etc/ssl/certs/ca-certificates.crt of the image.

    With a CA of our own mounted there, HTTPS to the emulator works; with the image's own
    (Debian's) bundle the same endpoint is refused. Together with the bundle holding the Amazon
    roots (test above), that is HTTPS to SQS and S3 working from the image.
    """
    port, ca = tls_moto
    boto3 = require_module("boto3", "boto3")
    queue_name = unique("tls")
    sqs = boto3.client("sqs", endpoint_url=f"https://127.0.0.1:{port}", region_name=REGION_FALLBACK,
                       aws_access_key_id="testing", aws_secret_access_key="testing", verify=False)
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    path = queue_url.split("//", 1)[1].split("/", 1)[1]
    env = {"AWS_ENDPOINT_URL": f"https://aws-emulator:{port}", "QUEUE_URL": f"https://aws-emulator:{port}/{path}",
           "RECEIVE_WAIT_SECONDS": "0", "AWS_MAX_ATTEMPTS": "1"}
    for trusted in (True, False):
        mount = ["-v", f"{ca}:/etc/ssl/certs/ca-certificates.crt:ro"] if trusted else []
        args = encoder_args(stack, image_config, seccomp_profile, unique("image-test-tls"), options=mount, **env)
        result = run(["podman", "run", *podman, "--rm", *args], timeout=120)
        output = result.stdout + result.stderr
        messages = [r.get("message") for r in log_records(output)]
        if trusted:
            assert result.returncode == 0 and "the queue is empty" in messages, \
                f"HTTPS with our CA as the bundle failed (exit {result.returncode}):\n{output}"
        else:
            assert result.returncode == 1 and "cannot receive from the queue" in messages, \
                f"HTTPS to a certificate the bundle does not vouch for was not refused (exit {result.returncode}):\n{output}"
