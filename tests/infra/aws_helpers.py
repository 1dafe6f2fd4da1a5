"""Helpers and fixtures for the tests of scripts/aws/ (tests/infra/test_aws_*.py).

The scripts run for real, with the `aws` CLI, against a `moto_server` started on 127.0.0.1 on a
free port; what they made is read back with boto3. Test modules import the fixtures they use:

    from aws_helpers import moto  # noqa: F401  (a pytest fixture)

The queue scripts (create-queue.sh, create-results-queue.sh) and the bucket script also run
against LocalStack (the `emulator` fixture runs a test once on each), because two independent
emulators disagreeing is how an emulator's quirk gets told from a script's bug. Our LocalStack
runs SQS and S3 only (scripts/localstack.sh: SERVICES=sqs,s3; its IAM and STS are not enabled), so
the IAM scripts stay on moto, whose IAM enforcement the permission tests rely on, and the scripts'
STS and IAM calls (the caller-identity check, teardown's IAM part) go to moto through
AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL_IAM even when SQS and S3 are LocalStack's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "aws"
POLICY_TEMPLATES = SCRIPTS / "policies"

REGION = "us-east-1"
# moto's fixed account (what sts get-caller-identity answers there).
MOTO_ACCOUNT = "123456789012"
# Dummy credentials: moto accepts any, the real AWS none of these.
DUMMY_KEY_ID = "test"
DUMMY_SECRET = "test"

SCRIPT_TIMEOUT_SECONDS = 300


# -------------------------------------------------------------------------------------------------
# moto_server
# -------------------------------------------------------------------------------------------------


@dataclass
class MotoServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def check_alive(self) -> None:
        """Fails the test, plainly, when the server is gone (a test can then only see "connection
        refused" from the aws CLI)."""
        code = self.process.poll()
        if code is not None:
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            pytest.fail(f"moto_server on {self.url} is no longer running ({how}; was it killed from "
                        f"outside, e.g. by a pkill?): see {self.log_path}", pytrace=False)

    def reset(self) -> None:
        """Forgets every resource (POST /moto-api/reset)."""
        _post(f"{self.url}/moto-api/reset", b"")

    def enforce_iam(self, enabled: bool) -> None:
        """Turns moto's IAM authorization on (every request must be signed by a moto IAM user and
        be allowed by its policies) or off (any credentials do anything)."""
        _post(f"{self.url}/moto-api/reset-auth", b"0" if enabled else b"inf")

    def client(self, service: str, key_id: str = DUMMY_KEY_ID, secret: str = DUMMY_SECRET,
               region: str = REGION):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def env(self, **overrides: str) -> dict[str, str]:
        """An environment for the scripts: nothing from the caller's AWS set-up, dummy credentials,
        this server as the endpoint. Overrides set (or, when None, remove) variables."""
        return script_env(AWS_ENDPOINT_URL=self.url, **overrides)


def _post(url: str, data: bytes) -> None:
    # Not form-encoded (urllib's default), or the server would find no body to read.
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto_server(log_dir: Path) -> MotoServer:
    """Starts moto_server on a free port of 127.0.0.1 and waits until it answers."""
    binary = shutil.which("moto_server")
    if binary is None:
        pytest.fail("moto_server not found: pip install 'moto[server]'", pytrace=False)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = log_dir / f"moto-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so that stopping it stops it all
        )
    server = MotoServer(url=url, process=process, log_path=log_path)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode}:\n{log_path.read_text()}",
                        pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2):
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                stop_moto_server(server)
                pytest.fail(f"moto_server did not answer on {url} within 60 s:\n"
                            f"{log_path.read_text()}", pytrace=False)
            time.sleep(0.2)


def stop_process_group(process: subprocess.Popen, grace_seconds: float) -> None:
    """SIGTERM to the process's group, SIGKILL after `grace_seconds`."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def stop_moto_server(server: MotoServer) -> None:
    stop_process_group(server.process, 10)


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    """A moto_server for the whole session (plain: any credentials may do anything)."""
    require_aws_cli()
    server = start_moto_server(tmp_path_factory.mktemp("moto"))
    yield server
    stop_moto_server(server)


@pytest.fixture()
def fresh_moto(moto):
    """The session's moto_server, emptied before the test (and still alive after it)."""
    moto.check_alive()
    moto.reset()
    yield moto
    moto.check_alive()


# -------------------------------------------------------------------------------------------------
# LocalStack (SQS and S3 only)
# -------------------------------------------------------------------------------------------------

# LocalStack's default account, for any access key that is not 12 digits.
LOCALSTACK_ACCOUNT = "000000000000"
LOCALSTACK_INSTALL_HINT = "scripts/install-localstack.sh installs it"
LOCALSTACK_START_TIMEOUT_SECONDS = 120


@dataclass
class LocalStackServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            pytest.fail(f"LocalStack on {self.url} is no longer running (exit code {code}): see "
                        f"{self.log_path}", pytrace=False)


def _localstack_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_localstack/health", timeout=2) as response:
            services = json.load(response).get("services", {})
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return False
    return all(services.get(name) in ("running", "available") for name in ("sqs", "s3"))


def start_localstack(log_dir: Path) -> LocalStackServer:
    """Starts scripts/localstack.sh on a free port and waits until SQS and S3 are up; fails (never
    skips) when it cannot."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = log_dir / f"localstack-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "localstack.sh"), str(port), str(log_dir / "state")],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = LocalStackServer(url=url, process=process, log_path=log_path)
    deadline = time.monotonic() + LOCALSTACK_START_TIMEOUT_SECONDS
    while not _localstack_ready(url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_localstack(server)
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            pytest.fail(f"LocalStack did not start on {url} within {LOCALSTACK_START_TIMEOUT_SECONDS} s "
                        f"({LOCALSTACK_INSTALL_HINT}); the end of {log_path}:\n{tail}", pytrace=False)
        time.sleep(0.3)
    return server


def stop_localstack(server: LocalStackServer) -> None:
    # scripts/localstack.sh execs Python, so the group is LocalStack itself; it exits in ~3 s.
    stop_process_group(server.process, 30)


@pytest.fixture(scope="session")
def localstack(tmp_path_factory):
    """One LocalStack for the session; tests share it, each with names of its own."""
    require_aws_cli()
    server = start_localstack(tmp_path_factory.mktemp("localstack"))
    yield server
    stop_localstack(server)


# -------------------------------------------------------------------------------------------------
# Either emulator, for the queue and bucket scripts
# -------------------------------------------------------------------------------------------------


@dataclass
class Emulator:
    """SQS and S3 of one emulator, as a test of create-queue.sh, create-results-queue.sh,
    create-buckets.sh or teardown.sh sees them. STS and IAM are always moto's (see the module's docstring)."""

    name: str
    url: str
    account: str
    moto: MotoServer
    # Prepended to every queue and bucket name: "" on moto (emptied before each test, so the
    # scripts' defaults are used as they are), unique per test on the shared LocalStack.
    prefix: str = ""

    def named(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def queue_url(self, name: str, region: str = REGION) -> str:
        if self.name == "localstack":  # SQS_ENDPOINT_STRATEGY=path (scripts/localstack.sh)
            return f"{self.url}/queue/{region}/{self.account}/{name}"
        return f"{self.url}/{self.account}/{name}"

    def client(self, service: str, region: str = REGION, key_id: str = DUMMY_KEY_ID):
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=key_id,
            aws_secret_access_key=DUMMY_SECRET,
            config=Config(s3={"addressing_style": "path"}),
        )

    def env(self, **overrides: str | None) -> dict[str, str]:
        names = {}
        if self.prefix:
            names = {"QUEUE_NAME": self.named("video-encode-requests"),
                     "RESULT_QUEUE_NAME": self.named("video-encode-results"),
                     "INPUT_BUCKET": self.named("media-in"), "OUTPUT_BUCKET": self.named("media-out")}
        return script_env(AWS_ENDPOINT_URL=self.url, AWS_ENDPOINT_URL_STS=self.moto.url,
                          AWS_ENDPOINT_URL_IAM=self.moto.url, **{**names, **overrides})

    def queue_attributes(self, name: str, region: str = REGION) -> dict[str, str]:
        sqs = self.client("sqs", region=region)
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    def our_queue_urls(self) -> list[str]:
        sqs = self.client("sqs")
        found = sqs.list_queues(QueueNamePrefix=self.prefix) if self.prefix else sqs.list_queues()
        return sorted(found.get("QueueUrls", []))

    def our_buckets(self) -> list[str]:
        buckets = self.client("s3").list_buckets().get("Buckets", [])
        return sorted(b["Name"] for b in buckets if b["Name"].startswith(self.prefix))


_test_numbers = iter(range(1, 1_000_000))


@pytest.fixture(params=["moto", "localstack"])
def emulator(request, fresh_moto):
    """Runs the test once against moto and once against LocalStack (test ids [moto] and
    [localstack]), each time with nothing of ours in it yet."""
    if request.param == "moto":
        yield Emulator(name="moto", url=fresh_moto.url, account=MOTO_ACCOUNT, moto=fresh_moto)
        return
    server = request.getfixturevalue("localstack")
    server.check_alive()
    # Bucket names are global in LocalStack as in S3, and it cannot be emptied between tests.
    yield Emulator(name="localstack", url=server.url, account=LOCALSTACK_ACCOUNT, moto=fresh_moto,
                   prefix=f"t{next(_test_numbers)}-{os.getpid()}-")
    server.check_alive()


# -------------------------------------------------------------------------------------------------
# Running the scripts
# -------------------------------------------------------------------------------------------------


def require_aws_cli() -> None:
    if shutil.which("aws") is None:
        pytest.fail("aws CLI not found: pip install awscli", pytrace=False)


def script_env(**overrides: str | None) -> dict[str, str]:
    """The caller's environment without any AWS setting, plus dummy credentials and AWS_REGION."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=DUMMY_KEY_ID,
        AWS_SECRET_ACCESS_KEY=DUMMY_SECRET,
        AWS_REGION=REGION,
        # No profile, no ~/.aws, no instance metadata: nothing but what the test sets.
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_script(name: str, env: dict[str, str], *args: str, check: bool = True
               ) -> subprocess.CompletedProcess:
    """Runs scripts/aws/NAME with bash; with check, fails the test (showing its stderr) unless it
    exits 0."""
    result = subprocess.run(
        ["bash", str(SCRIPTS / name), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{name} {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}",
            pytrace=False,
        )
    return result


def key_values(stdout: str) -> dict[str, str]:
    """Parses NAME=value lines (and insists every line is one)."""
    pairs = {}
    for line in stdout.splitlines():
        name, sep, value = line.partition("=")
        assert sep and name.isidentifier(), f"not a NAME=value line: {line!r}"
        pairs[name] = value
    return pairs


# -------------------------------------------------------------------------------------------------
# Reading back
# -------------------------------------------------------------------------------------------------


def queue_attributes(server: MotoServer, name: str, region: str = REGION) -> dict[str, str]:
    sqs = server.client("sqs", region=region)
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def policy_document(iam, policy_arn: str) -> dict:
    version = iam.get_policy(PolicyArn=policy_arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=policy_arn, VersionId=version)["PolicyVersion"]["Document"]
    return json.loads(document) if isinstance(document, str) else document


def render_policies(out_dir: Path, **overrides: str | None) -> dict[str, dict]:
    """Renders every trust and permission document with create-iam.sh --render (no AWS call) and
    returns them by file name."""
    settings = {
        "ACCOUNT_ID": "111122223333",
        "OIDC_PROVIDER": "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF",
        "AWS_REGION": "eu-west-1",
        **overrides,
    }
    env = script_env(**settings)
    run_script("create-iam.sh", env, "--render", str(out_dir))
    return {path.name: json.loads(path.read_text()) for path in sorted(out_dir.glob("*.json"))}
