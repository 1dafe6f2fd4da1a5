"""The kustomizations render, and each overlay says what it is meant to say."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import (
    K8S,
    NAMESPACE,
    OVERLAYS,
    PRODUCER_JOB,
    REPO,
    describe,
    find,
    find_all,
    kustomize,
    pod_specs,
    run,
)

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "ClusterTriggerAuthentication"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_into_the_video_encoding_namespace(rendered, overlay):
    docs = rendered[overlay]
    assert docs, f"{overlay} rendered nothing"
    for doc in docs:
        if doc["kind"] in CLUSTER_SCOPED:
            continue
        assert doc["metadata"].get("namespace") == NAMESPACE, describe(doc)
    namespace = find(docs, "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_has_the_workload(rendered, overlay):
    docs = rendered[overlay]
    for name in ("encoder", "producer", "result-analyzer"):
        find(docs, "ServiceAccount", name)
    find(docs, "ScaledJob", "video-encoder")
    find(docs, "Deployment", "result-analyzer")
    find(docs, "Service", "result-analyzer-service")
    find(docs, "PersistentVolumeClaim", "result-analyzer-data")
    find(docs, "ConfigMap", "video-encoding-config")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_trigger_authentication_reference_resolves(rendered, overlay):
    docs = rendered[overlay]
    scaled_job = find(docs, "ScaledJob", "video-encoder")
    for trigger in scaled_job["spec"]["triggers"]:
        ref = trigger["authenticationRef"]
        find(docs, ref.get("kind", "TriggerAuthentication"), ref["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secret_references_resolve(rendered, producer_job, overlay):
    """A missing non-optional ConfigMap key leaves the pod in CreateContainerConfigError."""
    docs = rendered[overlay]
    objects = list(docs)
    if overlay != "base":
        objects.append(producer_job)  # created next to each overlay, with its ConfigMap
    config_maps = {c["metadata"]["name"]: c.get("data", {}) for c in find_all(docs, "ConfigMap")}
    secrets = {
        s["metadata"]["name"]: {**s.get("data", {}), **s.get("stringData", {})}
        for s in find_all(docs, "Secret")
    }
    problems = []
    for doc in objects:
        for where, _, spec in pod_specs(doc):
            for container in spec.get("containers", []):
                for env in container.get("env", []) or []:
                    source = env.get("valueFrom", {})
                    for ref_kind, store in (("configMapKeyRef", config_maps), ("secretKeyRef", secrets)):
                        ref = source.get(ref_kind)
                        if ref and not ref.get("optional") and ref["key"] not in store.get(ref["name"], {}):
                            problems.append(f"{where} {container['name']} {env['name']}: {ref_kind} {ref}")
                for env_from in container.get("envFrom", []) or []:
                    for ref_kind, store in (("configMapRef", config_maps), ("secretRef", secrets)):
                        ref = env_from.get(ref_kind)
                        if ref and not ref.get("optional") and ref["name"] not in store:
                            problems.append(f"{where} {container['name']}: envFrom {ref_kind} {ref}")
            for volume in spec.get("volumes", []) or []:
                if "configMap" in volume and volume["configMap"]["name"] not in config_maps:
                    problems.append(f"{where}: volume {volume['name']} -> {volume['configMap']}")
                claim = volume.get("persistentVolumeClaim")
                if claim:
                    find(docs, "PersistentVolumeClaim", claim["claimName"])
    assert not problems, "dangling references:\n" + "\n".join(problems)


def test_kustomizations_use_labels_not_common_labels(yaml):
    """commonLabels is deprecated and also rewrites selectors, which are immutable."""
    for path in K8S.rglob("kustomization.yaml"):
        kustomization = yaml.safe_load(path.read_text())
        assert "commonLabels" not in kustomization, path


# --- EKS -------------------------------------------------------------------------------------

ROLE_ARN = re.compile(r"^arn:aws:iam::(?P<account>\d{12}):role/(?P<name>[\w+=,.@-]+)$")
QUEUE_URL = re.compile(r"^https://sqs\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<account>\d{12})/(?P<name>[\w-]+)$")
# The results queue may be FIFO (the encoder then sends a group and a deduplication id).
RESULT_QUEUE_URL = re.compile(
    r"^https://sqs\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<account>\d{12})/(?P<name>[\w-]+(\.fifo)?)$")


def eks_facts(docs):
    """The account/region/role values scattered over the EKS rendering, for consistency checks."""
    config = find(docs, "ConfigMap", "video-encoding-config")["data"]
    roles = {}
    for sa in ("encoder", "producer"):
        annotations = find(docs, "ServiceAccount", sa)["metadata"].get("annotations", {})
        assert "eks.amazonaws.com/role-arn" in annotations, f"ServiceAccount {sa} has no IRSA role"
        roles[sa] = annotations["eks.amazonaws.com/role-arn"]
    pod_identity = find(docs, "TriggerAuthentication", "keda-aws")["spec"]["podIdentity"]
    roles["keda"] = pod_identity["roleArn"]
    trigger = find(docs, "ScaledJob", "video-encoder")["spec"]["triggers"][0]
    return config, roles, pod_identity, trigger


def test_eks_binds_each_service_account_to_its_own_role(rendered):
    docs = rendered["eks"]
    config, roles, pod_identity, _ = eks_facts(docs)
    expected = {
        "encoder": "video-encoding-encoder",
        "producer": "video-encoding-producer",
        "keda": "video-encoding-keda-reader",
    }
    for who, role_name in expected.items():
        match = ROLE_ARN.match(roles[who])
        assert match, f"{who}: not an IAM role ARN: {roles[who]}"
        assert match["name"] == role_name, f"{who} should use role {role_name}, not {roles[who]}"
    assert pod_identity["provider"] == "aws"
    # roleArn alone: the KEDA operator's own identity assumes the reader role (identityOwner would
    # be keda, its default; KEDA's docs call the two mutually exclusive).
    assert "identityOwner" not in pod_identity
    analyzer_sa = find(docs, "ServiceAccount", "result-analyzer")
    assert "eks.amazonaws.com/role-arn" not in analyzer_sa["metadata"].get("annotations", {}), (
        "the analyzer needs no AWS access"
    )


def test_eks_values_agree_with_each_other(rendered):
    """One account and one region everywhere: a mismatch only shows up as AccessDenied later."""
    docs = rendered["eks"]
    config, roles, _, trigger = eks_facts(docs)
    queue = QUEUE_URL.match(config["QUEUE_URL"])
    assert queue, f"not an SQS queue URL: {config['QUEUE_URL']}"
    assert queue["name"] == "video-encode-requests"
    results = RESULT_QUEUE_URL.match(config["RESULT_QUEUE_URL"])
    assert results, f"not an SQS queue URL: {config['RESULT_QUEUE_URL']}"
    assert results["name"] == "video-encode-results"
    accounts = {queue["account"], results["account"]} | {ROLE_ARN.match(arn)["account"] for arn in roles.values()}
    assert len(accounts) == 1, f"several account ids: {accounts}"
    regions = {queue["region"], results["region"], config["AWS_REGION"], trigger["metadata"]["awsRegion"]}
    assert len(regions) == 1, f"several regions: {regions}"
    assert config["OUTPUT_URI"].startswith("s3://")
    assert "AWS_ENDPOINT_URL" not in config, "EKS talks to the real AWS endpoints"
    assert "awsEndpoint" not in trigger["metadata"]


def test_eks_pulls_the_image_from_a_registry(rendered):
    for doc in rendered["eks"]:
        for where, _, spec in pod_specs(doc):
            for container in spec["containers"]:
                registry, _, rest = container["image"].partition("/")
                assert rest == "video-encoding:0.1.0" and "." in registry, (
                    f"{where}: {container['image']} should be <registry>/video-encoding:0.1.0"
                )


def test_eks_values_carrier_is_not_applied(rendered):
    for overlay in ("eks", "eks-pod-identity"):
        names = {describe(doc) for doc in rendered[overlay]}
        assert "ConfigMap/eks-values" not in names, overlay


# --- EKS Pod Identity ------------------------------------------------------------------------

IRSA_ANNOTATIONS = {"eks.amazonaws.com/role-arn", "eks.amazonaws.com/sts-regional-endpoints"}


def without_irsa_annotations(doc: dict) -> dict:
    if doc["kind"] != "ServiceAccount":
        return doc
    doc = {**doc, "metadata": dict(doc["metadata"])}
    annotations = {k: v for k, v in doc["metadata"].pop("annotations", {}).items()
                   if k not in IRSA_ANNOTATIONS}
    if annotations:
        doc["metadata"]["annotations"] = annotations
    return doc


def test_eks_pod_identity_is_the_eks_overlay_without_irsa(rendered):
    """Same objects, values and KEDA authentication as the IRSA overlay; only the service-account
    annotations IRSA needs are gone (Pod Identity binds roles through EKS associations)."""
    irsa = [without_irsa_annotations(doc) for doc in rendered["eks"]]
    pod_identity = rendered["eks-pod-identity"]
    assert sorted(map(describe, pod_identity)) == sorted(map(describe, irsa))
    for doc in pod_identity:
        assert doc == find(irsa, doc["kind"], doc["metadata"]["name"]), describe(doc)

    for account in find_all(pod_identity, "ServiceAccount"):
        annotations = account["metadata"].get("annotations", {})
        assert not IRSA_ANNOTATIONS & set(annotations), account["metadata"]["name"]
    # The IRSA overlay really had them, so the comparison above did remove something.
    for name in ("encoder", "producer"):
        annotations = find(rendered["eks"], "ServiceAccount", name)["metadata"]["annotations"]
        assert IRSA_ANNOTATIONS <= set(annotations), name

    pod_identity_auth = find(pod_identity, "TriggerAuthentication", "keda-aws")["spec"]["podIdentity"]
    assert pod_identity_auth["provider"] == "aws"
    assert ROLE_ARN.match(pod_identity_auth["roleArn"])["name"] == "video-encoding-keda-reader"


@pytest.fixture()
def k8s_copy(tmp_path) -> Path:
    """A scratch copy of k8s/, so configure.sh can be exercised without touching the repo."""
    shutil.copytree(K8S, tmp_path / "k8s")
    return tmp_path / "k8s"


def configure(k8s_copy: Path, **env) -> subprocess.CompletedProcess:
    script = k8s_copy / "overlays" / "eks" / "configure.sh"
    clean = {k: v for k, v in os.environ.items() if k not in {"ACCOUNT_ID", "AWS_REGION", "OUTPUT_BUCKET",
                                                             "OUTPUT_PREFIX", "QUEUE_NAME", "REGISTRY",
                                                             "STORAGE_CLASS", "RESULT_QUEUE_NAME"}}
    return run(["bash", str(script)], env={**clean, **env})


def test_configure_sh_fills_the_eks_overlay_and_is_idempotent(kubectl, yaml, k8s_copy):
    env = dict(ACCOUNT_ID="123456789012", AWS_REGION="eu-west-1", OUTPUT_BUCKET="acme-renditions")
    first = configure(k8s_copy, **env)
    assert first.returncode == 0, first.stderr
    values = (k8s_copy / "overlays" / "eks" / "values.env").read_text()
    second = configure(k8s_copy, **env)
    assert second.returncode == 0, second.stderr
    assert "already up to date" in second.stdout
    assert (k8s_copy / "overlays" / "eks" / "values.env").read_text() == values

    docs = kustomize(kubectl, yaml, k8s_copy / "overlays" / "eks")
    config, roles, _, trigger = eks_facts(docs)
    assert config["QUEUE_URL"] == "https://sqs.eu-west-1.amazonaws.com/123456789012/video-encode-requests"
    assert config["RESULT_QUEUE_URL"] == "https://sqs.eu-west-1.amazonaws.com/123456789012/video-encode-results"
    assert config["OUTPUT_URI"] == "s3://acme-renditions/renditions"
    assert trigger["metadata"]["awsRegion"] == "eu-west-1"
    assert roles["keda"] == "arn:aws:iam::123456789012:role/video-encoding-keda-reader"
    image = find(docs, "Deployment", "result-analyzer")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/video-encoding:0.1.0"


@pytest.mark.parametrize("name, url", [
    ("done.fifo", "https://sqs.eu-west-1.amazonaws.com/123456789012/done.fifo"),
    # Set but empty: no results queue, so no notices (a waiting producer polls the analyzer).
    ("", ""),
])
def test_configure_sh_writes_the_results_queue_url(kubectl, yaml, k8s_copy, name, url):
    result = configure(k8s_copy, ACCOUNT_ID="123456789012", AWS_REGION="eu-west-1", RESULT_QUEUE_NAME=name)
    assert result.returncode == 0, result.stderr
    docs = kustomize(kubectl, yaml, k8s_copy / "overlays" / "eks")
    assert find(docs, "ConfigMap", "video-encoding-config")["data"]["RESULT_QUEUE_URL"] == url


@pytest.mark.parametrize(
    "env",
    [
        dict(AWS_REGION="eu-west-1", OUTPUT_BUCKET="acme"),
        dict(ACCOUNT_ID="1234", AWS_REGION="eu-west-1", OUTPUT_BUCKET="acme"),
        dict(ACCOUNT_ID="123456789012", AWS_REGION="Europe", OUTPUT_BUCKET="acme"),
        dict(ACCOUNT_ID="123456789012", AWS_REGION="eu-west-1", OUTPUT_BUCKET="Acme_Bucket"),
        dict(ACCOUNT_ID="123456789012", AWS_REGION="eu-west-1", RESULT_QUEUE_NAME="results*"),
        dict(ACCOUNT_ID="123456789012", AWS_REGION="eu-west-1", RESULT_QUEUE_NAME="video-encode-requests"),
    ],
    ids=["no-account", "short-account", "bad-region", "bad-bucket", "bad-results-queue",
         "results-queue-is-the-request-queue"],
)
def test_configure_sh_rejects_bad_input_without_writing(k8s_copy, env):
    values = k8s_copy / "overlays" / "eks" / "values.env"
    before = values.read_text()
    result = configure(k8s_copy, **env)
    assert result.returncode != 0
    assert values.read_text() == before


# --- local -----------------------------------------------------------------------------------

def test_local_points_every_aws_client_at_the_emulator(rendered):
    docs = rendered["local"]
    config = find(docs, "ConfigMap", "video-encoding-config")["data"]
    assert config["AWS_ENDPOINT_URL"] == "http://aws-emulator:5000"
    emulator = find(docs, "Service", "aws-emulator")
    assert [p["port"] for p in emulator["spec"]["ports"]] == [5000]

    scaled_job = find(docs, "ScaledJob", "video-encoder")
    encoder = scaled_job["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]
    endpoint = next(e for e in encoder["env"] if e["name"] == "AWS_ENDPOINT_URL")
    assert endpoint["valueFrom"]["configMapKeyRef"]["key"] == "AWS_ENDPOINT_URL"
    assert {"secretRef": {"name": "aws-emulator-credentials"}} in encoder["envFrom"]

    # KEDA's operator lives in another namespace: it needs the Service's full DNS name.
    keda_endpoint = urlparse(scaled_job["spec"]["triggers"][0]["metadata"]["awsEndpoint"])
    assert keda_endpoint.hostname == f"aws-emulator.{NAMESPACE}.svc.cluster.local"
    assert keda_endpoint.port == 5000

    # KEDA parses the queue name out of a /<account>/<name> path.
    path = urlparse(config["QUEUE_URL"]).path.split("/")
    assert len(path) == 3 and path[2] == "video-encode-requests", config["QUEUE_URL"]

    # The results queue is the emulator's too, and the one its seed container creates
    # (test_local_emulator.py checks that it exists).
    results = urlparse(config["RESULT_QUEUE_URL"])
    assert (results.hostname, results.port) == ("aws-emulator", 5000), config["RESULT_QUEUE_URL"]
    seed = next(c for c in find(docs, "Deployment", "aws-emulator")["spec"]["template"]["spec"]["containers"]
                if c["name"] == "seed")
    seed_env = {e["name"]: e.get("value") for e in seed["env"]}
    assert results.path.split("/")[1:] == ["123456789012", seed_env["RESULT_QUEUE_NAME"]]


def test_local_authenticates_keda_with_the_emulator_secret(rendered):
    docs = rendered["local"]
    names = {describe(doc) for doc in docs}
    assert "TriggerAuthentication/keda-aws" not in names, "the IRSA TriggerAuthentication is useless here"
    auth = find(docs, "TriggerAuthentication", "keda-aws-emulator")["spec"]
    secret = find(docs, "Secret", "aws-emulator-credentials")
    keys = {**secret.get("data", {}), **secret.get("stringData", {})}
    params = {ref["parameter"]: ref for ref in auth["secretTargetRef"]}
    assert set(params) == {"awsAccessKeyID", "awsSecretAccessKey"}
    for ref in params.values():
        assert ref["name"] == "aws-emulator-credentials" and ref["key"] in keys


def test_local_emulator_image_is_pinned(rendered):
    deployment = find(rendered["local"], "Deployment", "aws-emulator")
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        assert re.fullmatch(r"motoserver/moto:\d+\.\d+\.\d+", container["image"]), container["image"]


# --- producer Job ----------------------------------------------------------------------------

def test_producer_job_can_be_created_again_and_again(producer_job):
    meta = producer_job["metadata"]
    assert meta.get("generateName") == "video-producer-" and "name" not in meta
    assert meta["namespace"] == NAMESPACE
    spec = producer_job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "producer"
    assert spec["restartPolicy"] == "Never"
    container = spec["containers"][0]
    assert container["command"] == ["producer"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("QUEUE_URL", "RESULT_QUEUE_URL", "ANALYZER_URL"):
        assert env[name]["valueFrom"]["configMapKeyRef"] == {"name": "video-encoding-config", "key": name}
    assert env["SOURCE"]["value"].startswith("s3://")
    assert env["QUALITIES"]["value"]


def test_documented_producer_overrides_work_offline(kubectl, yaml):
    """docs/deploy-eks.md sets the image and the source per run with `kubectl set --local`."""
    set_env = run([kubectl, "set", "env", "--local", "-o", "yaml", "-f", str(PRODUCER_JOB),
                   "SOURCE=s3://uploads/talk.mov", "VIDEO_ID=talk"])
    assert set_env.returncode == 0, set_env.stderr
    set_image = run([kubectl, "set", "image", "--local", "-o", "yaml", "-f", "-",
                     "producer=111122223333.dkr.ecr.us-east-1.amazonaws.com/video-encoding:0.1.0"],
                    input=set_env.stdout)
    assert set_image.returncode == 0, set_image.stderr
    job = yaml.safe_load(set_image.stdout)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith("/video-encoding:0.1.0")
    assert {"name": "SOURCE", "value": "s3://uploads/talk.mov"} in container["env"]
    assert job["metadata"]["generateName"] == "video-producer-"


# --- docs ------------------------------------------------------------------------------------

def test_docs_name_only_files_that_exist():
    pattern = re.compile(r"(?<![\w./-])((?:k8s|docker|docs|scripts|tests)/[\w./-]*[\w-])")
    missing = []
    for doc in (REPO / "docs").glob("*.md"):
        for path in set(pattern.findall(doc.read_text())):
            if not (REPO / path).exists():
                missing.append(f"{doc.relative_to(REPO)}: {path}")
    assert not missing, "docs reference missing files:\n" + "\n".join(sorted(missing))


# What `eval "$(scripts/aws/create-iam.sh)"` defines (its stdout, checked in test_aws_provisioning.py).
CREATE_IAM_OUTPUTS = {"KEDA_OPERATOR_ROLE_ARN", "KEDA_READER_ROLE_ARN", "ENCODER_ROLE_ARN", "PRODUCER_ROLE_ARN"}


def test_deploy_walkthrough_sets_every_variable_before_using_it():
    """Copying docs/deploy-eks.md's commands top to bottom never expands an unset variable."""
    text = (REPO / "docs" / "deploy-eks.md").read_text()
    defined: set[str] = set()
    problems = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            for name in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", code):
                if name not in defined:
                    problems.append(f"${name} used before it is set: {line.strip()}")
            defined.update(re.findall(r"(?:^|export\s+|\s)([A-Z_][A-Z0-9_]*)=", code))
            if "scripts/aws/create-iam.sh" in code and code.lstrip().startswith("eval"):
                defined |= CREATE_IAM_OUTPUTS
    assert not problems, "\n".join(problems)
