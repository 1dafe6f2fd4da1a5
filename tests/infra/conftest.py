"""Shared helpers for the packaging checks: Kubernetes manifests, KEDA objects, the image.

    python3 -m pytest tests/infra -q

Everything runs offline. scripts/install-infra-deps.sh installs the tools. None of these checks
skips: a missing tool, schema or binary fails with a message saying what to install or build,
because a skipped check proves nothing.

Environment:
    SHARED_DIR    directory holding keda-crds/ (default: <repo>/../shared)
    ENCODER_BIN   encoder binary for the shared-library check (default: <repo>/target/debug/encoder)
    K8S_VERSIONS  comma-separated Kubernetes versions to validate against (default: 1.33.0,1.35.0,
                  the oldest and newest KEDA 2.20 supports)
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
INSTALL_HINT = "scripts/install-infra-deps.sh installs it"

# What `kubectl apply -k` is pointed at, plus the base they share.
OVERLAYS = {
    "base": K8S / "base",
    "eks": K8S / "overlays" / "eks",
    "eks-pod-identity": K8S / "overlays" / "eks-pod-identity",
    "local": K8S / "overlays" / "local",
}
PRODUCER_JOB = K8S / "jobs" / "producer.yaml"

NAMESPACE = "video-encoding"
IMAGE_NAME = "video-encoding"
IMAGE_TAG = "0.1.0"


def require_module(module: str, package: str):
    """Imports a Python module, or fails naming the PyPI package that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.fail(
            f"Python package '{package}' is missing: pip install {package} ({INSTALL_HINT})",
            pytrace=False,
        )


def require_tool(name: str, how: str) -> str:
    """Finds an executable on PATH, or fails saying how to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"'{name}' not found on PATH: {how}", pytrace=False)
    return path


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture(scope="session")
def yaml():
    return require_module("yaml", "pyyaml")


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = require_tool(
        "kubectl",
        "install kubectl >= 1.27 (kustomize v5) from pkgs.k8s.io; " + INSTALL_HINT,
    )
    version = run([path, "version", "--client"])
    if "Kustomize Version: v5" not in version.stdout:
        pytest.fail(
            f"{path} does not embed kustomize v5 (needed for `labels:` and `replacements:`):\n"
            f"{version.stdout}{version.stderr}\n{INSTALL_HINT}",
            pytrace=False,
        )
    return path


def kustomize(kubectl: str, yaml, directory: Path) -> list[dict]:
    result = run([kubectl, "kustomize", str(directory)])
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed:\n{result.stderr}", pytrace=False)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(kubectl, yaml) -> dict[str, list[dict]]:
    """The output of `kubectl kustomize` for the base and each overlay, by overlay name."""
    return {name: kustomize(kubectl, yaml, path) for name, path in OVERLAYS.items()}


@pytest.fixture(scope="session")
def producer_job(yaml) -> dict:
    docs = [doc for doc in yaml.safe_load_all(PRODUCER_JOB.read_text()) if doc]
    assert len(docs) == 1, f"{PRODUCER_JOB} should hold exactly one Job"
    return docs[0]


@pytest.fixture(scope="session")
def manifests(rendered, producer_job) -> dict[str, list[dict]]:
    """Every set of objects that reaches a cluster: each overlay, and the producer Job."""
    return {**rendered, "jobs/producer.yaml": [producer_job]}


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("SHARED_DIR", REPO.parent / "shared")).resolve()
    if not (path / "keda-crds").is_dir():
        pytest.fail(
            f"KEDA CRDs not found in {path / 'keda-crds'}: set SHARED_DIR to the directory "
            "holding keda-crds/ (the keda.sh_*.yaml files from KEDA's release)",
            pytrace=False,
        )
    return path


def find(docs: list[dict], kind: str, name: str) -> dict:
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"].get("name") == name:
            return doc
    raise AssertionError(f"no {kind}/{name} among {[describe(d) for d in docs]}")


def find_all(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc.get("kind") == kind]


def describe(doc: dict) -> str:
    meta = doc.get("metadata", {})
    return f"{doc.get('kind')}/{meta.get('name') or meta.get('generateName')}"


def pod_specs(doc: dict) -> Iterator[tuple[str, dict, dict]]:
    """(where, pod template metadata, pod spec) for every pod an object will create."""
    kind = doc.get("kind")
    spec = doc.get("spec", {})
    if kind == "Pod":
        yield describe(doc), doc.get("metadata", {}), spec
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        template = spec["template"]
        yield describe(doc), template.get("metadata", {}), template["spec"]
    elif kind == "CronJob":
        template = spec["jobTemplate"]["spec"]["template"]
        yield describe(doc), template.get("metadata", {}), template["spec"]
    elif kind == "ScaledJob":
        template = spec["jobTargetRef"]["template"]
        yield describe(doc), template.get("metadata", {}), template["spec"]


def containers(pod_spec: dict) -> Iterator[dict]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod_spec.get(key, []) or []


def env_value_source(container: dict, name: str) -> dict | None:
    for env in container.get("env", []) or []:
        if env["name"] == name:
            return env
    return None
