"""House rules over the rendered manifests: what a reviewer would otherwise check by eye."""

from __future__ import annotations

import copy
import re
from urllib.parse import urlparse

import pytest

from conftest import (
    IMAGE_NAME,
    IMAGE_TAG,
    OVERLAYS,
    PRODUCER_JOB,
    containers,
    describe,
    env_value_source,
    find,
    find_all,
    pod_specs,
)

SOURCES = [*OVERLAYS, "jobs/producer.yaml"]


def all_containers(docs):
    for doc in docs:
        for where, _, pod in pod_specs(doc):
            for container in containers(pod):
                yield where, pod, container


# --- every container, everywhere -------------------------------------------------------------

@pytest.mark.parametrize("source", SOURCES)
def test_every_container_meets_the_restricted_profile(manifests, source):
    problems = []
    seen = 0
    for where, pod, container in all_containers(manifests[source]):
        seen += 1
        name = f"{where} container {container['name']}"
        pod_sc = pod.get("securityContext", {})
        sc = container.get("securityContext", {})

        def effective(key):
            return sc.get(key, pod_sc.get(key))

        if effective("runAsNonRoot") is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if effective("runAsUser") in (None, 0):
            # Without a numeric uid the kubelet can only trust the image's USER line.
            problems.append(f"{name}: no non-zero runAsUser")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = sc.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or capabilities.get("add"):
            problems.append(f"{name}: capabilities are not drop: [ALL]")
        if (effective("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: no RuntimeDefault seccomp profile")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        resources = container.get("resources", {})
        for section in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(section, {}))
            if missing:
                problems.append(f"{name}: no {section} for {sorted(missing)}")
    for doc in manifests[source]:
        for where, _, pod in pod_specs(doc):
            for flag in ("hostNetwork", "hostPID", "hostIPC"):
                if pod.get(flag):
                    problems.append(f"{where}: {flag}")
            for volume in pod.get("volumes", []) or []:
                if "hostPath" in volume:
                    problems.append(f"{where}: hostPath volume {volume['name']}")
    assert seen, f"no containers found in {source}"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", SOURCES)
def test_every_image_has_a_fixed_tag(manifests, source):
    problems = []
    for where, _, container in all_containers(manifests[source]):
        image = container["image"]
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        if not name or "/" in tag or tag in ("", "latest"):
            problems.append(f"{where} {container['name']}: {image} (no tag, or latest)")
        last_segment = name.rsplit("/", 1)[-1]
        if last_segment == IMAGE_NAME and tag != IMAGE_TAG:
            problems.append(f"{where} {container['name']}: {image}, expected tag {IMAGE_TAG}")
    assert not problems, "\n".join(problems)


# --- the ScaledJob ---------------------------------------------------------------------------

# The pairings under which KEDA's job arithmetic starts one Job per waiting message; see the
# comment on scalingStrategy in k8s/base/encoder-scaledjob.yaml.
SOUND_PAIRINGS = {("default", True), ("accurate", False)}

# Every metadata key KEDA 2.20's aws-sqs-queue scaler reads (pkg/scalers/aws_sqs_queue_scaler.go,
# pkg/scalers/aws/aws_common.go). The metadata map takes any string, so a typo would be ignored.
SQS_TRIGGER_KEYS = {
    "queueURL", "queueURLFromEnv", "queueLength", "activationQueueLength", "awsRegion",
    "awsEndpoint", "scaleOnInFlight", "scaleOnDelayed", "identityOwner",
}
# Also read from the metadata, but credentials belong in a TriggerAuthentication.
SQS_CREDENTIAL_KEYS = {"awsAccessKeyID", "awsAccessKeyIDFromEnv", "awsSecretAccessKeyFromEnv"}


def scaled_job(rendered, overlay):
    return find(rendered[overlay], "ScaledJob", "video-encoder")


def sqs_trigger(job):
    triggers = [t for t in job["spec"]["triggers"] if t["type"] == "aws-sqs-queue"]
    assert len(triggers) == 1, "expected one aws-sqs-queue trigger"
    return triggers[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaling_strategy_is_paired_with_in_flight_counting(rendered, overlay):
    job = scaled_job(rendered, overlay)
    strategy = job["spec"].get("scalingStrategy", {}).get("strategy", "default")
    # KEDA's default for scaleOnInFlight is true.
    in_flight = sqs_trigger(job)["metadata"].get("scaleOnInFlight", "true").lower() == "true"
    assert (strategy, in_flight) in SOUND_PAIRINGS, (
        f"strategy {strategy!r} with scaleOnInFlight={in_flight} over- or under-creates Jobs"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_trigger_reads_the_queue_url_from_the_encoder_environment(rendered, overlay):
    job = scaled_job(rendered, overlay)
    metadata = sqs_trigger(job)["metadata"]
    credentials = set(metadata) & SQS_CREDENTIAL_KEYS
    assert not credentials, f"credentials in trigger metadata: {sorted(credentials)}"
    unknown = set(metadata) - SQS_TRIGGER_KEYS - SQS_CREDENTIAL_KEYS
    assert not unknown, f"aws-sqs-queue ignores {sorted(unknown)}"
    assert metadata["queueURLFromEnv"] == "QUEUE_URL"
    assert "queueURL" not in metadata, "one source of truth: the container's QUEUE_URL"
    assert metadata["queueLength"] == "1", "one message per Job"
    assert metadata["awsRegion"]

    pod = job["spec"]["jobTargetRef"]["template"]["spec"]
    source_name = job["spec"].get("envSourceContainerName", pod["containers"][0]["name"])
    source = next((c for c in pod["containers"] if c["name"] == source_name), None)
    assert source is not None, f"envSourceContainerName {source_name} names no container"
    env = env_value_source(source, "QUEUE_URL")
    assert env is not None, f"container {source_name} has no QUEUE_URL for KEDA to read"
    ref = env.get("valueFrom", {}).get("configMapKeyRef")
    if ref:
        config_map = find(rendered[overlay], "ConfigMap", ref["name"])
        assert config_map["data"].get(ref["key"]), "QUEUE_URL resolves to nothing"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaled_job_bounds_and_history(rendered, overlay):
    spec = scaled_job(rendered, overlay)["spec"]
    assert spec["rollout"]["strategy"] == "gradual", "an update must not kill running encodes"
    assert spec["minReplicaCount"] == 0
    assert 1 <= spec["maxReplicaCount"] <= 100
    assert 1 <= spec["pollingInterval"] <= 60
    # KEDA's default is 100 of each; the analyzer keeps the results, Jobs are just for logs.
    assert 1 <= spec["successfulJobsHistoryLimit"] <= 10
    assert 1 <= spec["failedJobsHistoryLimit"] <= 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_encoder_job_template(rendered, overlay):
    job_spec = scaled_job(rendered, overlay)["spec"]["jobTargetRef"]
    pod = job_spec["template"]["spec"]

    assert pod["restartPolicy"] == "Never", "podFailurePolicy requires restartPolicy: Never"
    assert 0 <= job_spec["backoffLimit"] <= 2, "SQS redelivery does the retrying"
    assert job_spec["activeDeadlineSeconds"] >= 3 * 3600, "4K encodes take hours"

    rules = job_spec["podFailurePolicy"]["rules"]
    fail_on_config_error = [
        r for r in rules
        if r["action"] == "FailJob" and r.get("onExitCodes", {}).get("operator") == "In"
        and 2 in r["onExitCodes"]["values"]
    ]
    assert fail_on_config_error, "exit code 2 (configuration error) must fail the Job at once"
    ignore_disruption = [
        r for r in rules
        if r["action"] == "Ignore"
        and any(c["type"] == "DisruptionTarget" for c in r.get("onPodConditions", []))
    ]
    assert ignore_disruption, "evictions and preemptions must not use up backoffLimit"

    # The encoder needs a few seconds to release its message and report; well above that.
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["serviceAccountName"] == "encoder"

    (container,) = pod["containers"]
    assert container["command"] == ["encoder"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("QUEUE_URL", "OUTPUT_URI", "ANALYZER_URL", "RESULT_QUEUE_URL", "VISIBILITY_TIMEOUT_SECONDS",
                 "RECEIVE_WAIT_SECONDS", "AWS_REGION", "LOG_FORMAT", "WORK_DIR"):
        assert name in env, f"encoder has no {name}"
    assert env["WORK_DIR"]["value"] == "/scratch"
    token = env["ANALYZER_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["optional"] is True, "the analyzer token is optional"

    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/scratch", "/tmp"):
        assert path in mounts, f"nothing mounted at {path} on a read-only root filesystem"
        empty_dir = volumes[mounts[path]].get("emptyDir")
        assert empty_dir is not None and empty_dir.get("sizeLimit"), f"{path}: emptyDir with a sizeLimit"


# --- the producer Job, which waits for the encodes ------------------------------------------

def duration_seconds(text: str) -> int:
    """A kubectl --timeout value: 90s, 30m, 5h, 1h30m."""
    parts = re.findall(r"(\d+)([hms])", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text}"
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def test_producer_job_waits_for_its_videos(rendered, producer_job):
    """`kubectl wait --for=condition=complete` on the producer Job means the videos are ready:
    the producer waits (--wait) for every request's outcome, long enough, and is not retried."""
    spec = producer_job["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["producer"]
    assert "--wait" in container.get("args", []), "without --wait the Job completes once the requests are sent"
    env = {e["name"]: e for e in container["env"]}
    for name in ("RESULT_QUEUE_URL", "ANALYZER_URL"):
        assert env[name]["valueFrom"]["configMapKeyRef"]["name"] == "video-encoding-config", name

    # A second pod would send every request again.
    assert spec["backoffLimit"] == 0
    # The wait covers at least one encode, which may run up to the encoder Job's own deadline.
    encoder_deadline = scaled_job(rendered, "base")["spec"]["jobTargetRef"]["activeDeadlineSeconds"]
    assert spec["activeDeadlineSeconds"] > encoder_deadline
    # The documented `kubectl wait` gives up no sooner than the Job itself.
    text = PRODUCER_JOB.read_text()
    waits = re.findall(r"kubectl -n video-encoding wait --for=condition=complete \"\$JOB\" --timeout=(\S+)", text)
    assert waits, "k8s/jobs/producer.yaml should show how to wait for the Job"
    for timeout in waits:
        assert duration_seconds(timeout) >= spec["activeDeadlineSeconds"], timeout
    # A waiting producer runs as long as the encodes: consolidation must not evict it.
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["karpenter.sh/do-not-disrupt"] == "true"
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "base"])
def test_encoder_and_producer_agree_on_the_results_queue(rendered, producer_job, overlay):
    """Both read RESULT_QUEUE_URL from the same ConfigMap key, which names no queue of requests."""
    config = find(rendered[overlay], "ConfigMap", "video-encoding-config")["data"]
    job = scaled_job(rendered, overlay)
    encoder = job["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]
    (producer,) = producer_job["spec"]["template"]["spec"]["containers"]
    refs = [env_value_source(c, "RESULT_QUEUE_URL")["valueFrom"]["configMapKeyRef"] for c in (encoder, producer)]
    assert refs[0] == refs[1] == {"name": "video-encoding-config", "key": "RESULT_QUEUE_URL"}
    # The encoder may send there: it must never be its own queue.
    assert config["RESULT_QUEUE_URL"] != config["QUEUE_URL"]
    assert config["RESULT_QUEUE_URL"], f"{overlay}: no results queue (empty means no notices)"


# --- the analyzer and how the encoders reach it ----------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_analyzer_deployment(rendered, overlay):
    docs = rendered[overlay]
    deployment = find(docs, "Deployment", "result-analyzer")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate", "one SQLite writer"
    template = spec["template"]
    assert template["metadata"]["labels"]["app"] == "result-analyzer", (
        "the walkthrough's `kubectl get pods -l app=result-analyzer`"
    )
    pod = template["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["result-analyzer"]
    ports = {p.get("name"): p["containerPort"] for p in container["ports"]}
    assert 8080 in ports.values()
    env = {e["name"]: e for e in container["env"]}
    assert env["LISTEN_ADDR"]["value"] == "0.0.0.0:8080"
    assert env["DATABASE_PATH"]["value"] == "/data/analyzer.db"
    assert env["ANALYZER_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True

    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        port = ports.get(get["port"], get["port"])
        assert (get["path"], port) == ("/healthz", 8080), probe

    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts["/data"]], "the database must survive restarts"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_encoders_reach_the_analyzer_service(rendered, overlay):
    docs = rendered[overlay]
    service = find(docs, "Service", "result-analyzer-service")
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]
    pod_labels = find(docs, "Deployment", "result-analyzer")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items(), "Service selects no analyzer pod"

    config = find(docs, "ConfigMap", "video-encoding-config")["data"]
    url = urlparse(config["ANALYZER_URL"])
    assert (url.hostname, url.port) == ("result-analyzer-service", 8080)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_queue_timing_settings(rendered, overlay):
    config = find(rendered[overlay], "ConfigMap", "video-encoding-config")["data"]
    wait = int(config["RECEIVE_WAIT_SECONDS"])
    visibility = int(config["VISIBILITY_TIMEOUT_SECONDS"])
    assert 0 <= wait <= 20, "SQS long polls last at most 20 s"
    assert visibility > wait


# --- KEDA authentication --------------------------------------------------------------------

TRIGGER_AUTHENTICATION_KINDS = {"TriggerAuthentication", "ClusterTriggerAuthentication"}


def aws_pod_identity_problems(doc: dict) -> list[str]:
    """KEDA 2.20's docs: podIdentity.roleArn and podIdentity.identityOwner are mutually exclusive
    ("setting both is not supported"); its webhook rejects roleArn with identityOwner: workload."""
    pod_identity = doc.get("spec", {}).get("podIdentity") or {}
    if pod_identity.get("provider") != "aws":
        return []
    if "roleArn" in pod_identity and "identityOwner" in pod_identity:
        return [f"{describe(doc)}: podIdentity sets both roleArn and identityOwner"]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_aws_pod_identity_sets_role_arn_or_identity_owner_never_both(rendered, overlay):
    problems = [problem for doc in rendered[overlay] if doc["kind"] in TRIGGER_AUTHENTICATION_KINDS
                for problem in aws_pod_identity_problems(doc)]
    assert not problems, "\n".join(problems)


def test_the_role_arn_or_identity_owner_check_catches_both(rendered):
    """The check above is only worth something if it rejects the pair."""
    auth = copy.deepcopy(find(rendered["eks"], "TriggerAuthentication", "keda-aws"))
    assert aws_pod_identity_problems(auth) == []
    auth["spec"]["podIdentity"]["identityOwner"] = "keda"
    assert aws_pod_identity_problems(auth)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_accounts_mount_no_api_token(rendered, overlay):
    for account in find_all(rendered[overlay], "ServiceAccount"):
        assert account.get("automountServiceAccountToken") is False, account["metadata"]["name"]
