"""Static review of the IAM documents in scripts/aws/policies/, rendered by create-iam.sh --render
with sample values (no AWS call): what a security review checks, written down."""

from __future__ import annotations

import json
import re

import pytest

from aws_helpers import POLICY_TEMPLATES, render_policies, run_script, script_env

ACCOUNT = "111122223333"
REGION = "eu-west-1"
OIDC = "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:video-encode-requests"
DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:video-encode-requests-dlq"
RESULTS_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:video-encode-results"

# Every permission each role gets, on what: any change to a role's rights changes this table, so it
# shows up in review. (action, resource)
EXPECTED_PERMISSIONS = {
    "video-encoding-keda-reader.policy.json": {
        ("sqs:GetQueueAttributes", QUEUE_ARN),
    },
    "video-encoding-keda-operator-assume-reader.policy.json": {
        ("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/video-encoding-keda-reader"),
    },
    "video-encoding-encoder.policy.json": {
        ("sqs:ReceiveMessage", QUEUE_ARN),
        ("sqs:DeleteMessage", QUEUE_ARN),
        ("sqs:ChangeMessageVisibility", QUEUE_ARN),
        ("sqs:GetQueueAttributes", QUEUE_ARN),
        # A split request's chunk and stitch messages go to the queue they came from.
        ("sqs:SendMessage", QUEUE_ARN),
        ("sqs:GetQueueUrl", DLQ_ARN),
        ("sqs:SendMessage", DLQ_ARN),
        # One completion notice per request; nothing else on the results queue.
        ("sqs:SendMessage", RESULTS_ARN),
        ("s3:GetObject", "arn:aws:s3:::media-in/uploads/*"),
        ("s3:ListBucket", "arn:aws:s3:::media-in"),  # within uploads/ only: EXPECTED_CONDITIONS
        ("s3:PutObject", "arn:aws:s3:::media-out/renditions/*"),
        ("s3:GetObject", "arn:aws:s3:::media-out/renditions/*"),
        ("s3:AbortMultipartUpload", "arn:aws:s3:::media-out/renditions/*"),
        # The chunks of a split request, removed once stitched (DeleteObjects asks for this).
        ("s3:DeleteObject", "arn:aws:s3:::media-out/renditions/*"),
        # Its plan and chunks are stored tagged video-encoding=split (the lifecycle rule expires
        # them if the split never completes): a PutObject with tags needs this too.
        ("s3:PutObjectTagging", "arn:aws:s3:::media-out/renditions/*"),
        ("s3:ListBucket", "arn:aws:s3:::media-out"),
    },
    "video-encoding-producer.policy.json": {
        ("sqs:SendMessage", QUEUE_ARN),
        # producer --wait: read the notices, delete its own, give the others back. No
        # sqs:GetQueueAttributes: waiting needs none.
        ("sqs:ReceiveMessage", RESULTS_ARN),
        ("sqs:DeleteMessage", RESULTS_ARN),
        ("sqs:ChangeMessageVisibility", RESULTS_ARN),
        ("s3:PutObject", "arn:aws:s3:::media-in/uploads/*"),
        # The upload reads back what it stored: HeadObject (checksum mode) needs s3:GetObject.
        ("s3:GetObject", "arn:aws:s3:::media-in/uploads/*"),
        ("s3:AbortMultipartUpload", "arn:aws:s3:::media-in/uploads/*"),
    },
}
# (document, Sid) -> its Condition; every other permission statement has none.
EXPECTED_CONDITIONS = {
    # S3 answers HeadObject on a missing key with 404 only to a caller that may list the bucket;
    # the grant is limited to listing the input prefix.
    ("video-encoding-encoder.policy.json", "SeeMissingSourcesAsNotFound"):
        {"StringLike": {"s3:prefix": "uploads/*"}},
}
# Trust document -> (namespace, service account) it admits.
SERVICE_ACCOUNTS = {
    "keda-operator.trust.json": ("keda", "keda-operator"),
    "video-encoding-encoder.trust.json": ("video-encoding", "encoder"),
    "video-encoding-producer.trust.json": ("video-encoding", "producer"),
}
IDENTITIES = ["irsa", "pod-identity"]


def render(tmp_path_factory, identity: str, **overrides) -> dict[str, dict]:
    settings = {"IDENTITY": identity, **overrides}
    if identity == "pod-identity":
        settings["OIDC_PROVIDER"] = None  # not needed, and not asked for
    return render_policies(tmp_path_factory.mktemp(f"rendered-{identity}"), **settings)


@pytest.fixture(scope="module", params=IDENTITIES)
def documents(request, tmp_path_factory):
    """Every document, rendered for each way pods get their roles (IRSA, EKS Pod Identity)."""
    return render(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def irsa(tmp_path_factory):
    return render(tmp_path_factory, "irsa")


@pytest.fixture(scope="module")
def pod_identity(tmp_path_factory):
    return render(tmp_path_factory, "pod-identity")


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def statements(documents):
    for name, document in documents.items():
        for statement in document["Statement"]:
            yield name, statement


def test_every_document_is_rendered(documents):
    assert set(documents) == set(EXPECTED_PERMISSIONS) | set(SERVICE_ACCOUNTS) | {
        "video-encoding-keda-reader.trust.json"}
    # Every template is used by at least one document (none is left behind, unreviewed).
    used = {"irsa-trust.json", "pod-identity-trust.json", "keda-reader-trust.json",
            "keda-reader-trust-pod-identity.json", "keda-reader-policy.json",
            "keda-operator-policy.json", "encoder-policy.json", "producer-policy.json"}
    assert {p.name for p in POLICY_TEMPLATES.glob("*.json")} == used


def test_permissions_do_not_depend_on_the_identity(irsa, pod_identity):
    """IRSA or Pod Identity changes who may assume a role, never what the role may do."""
    for name in EXPECTED_PERMISSIONS:
        assert irsa[name] == pod_identity[name], name


def test_templates_are_valid_json_with_only_placeholders_to_fill():
    for template in POLICY_TEMPLATES.glob("*.json"):
        text = template.read_text()
        json.loads(text)  # placeholders sit inside strings, so a template is JSON already
        for placeholder in re.findall(r"\$\{([^}]*)\}", text):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", placeholder), (template.name, placeholder)


def test_every_statement_allows_and_has_a_sid(documents):
    for name, document in documents.items():
        assert document["Version"] == "2012-10-17", name
        assert isinstance(document["Statement"], list) and document["Statement"], name
        sids = [s.get("Sid") for s in document["Statement"]]
        assert all(sid and re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids), (name, sids)
        assert len(set(sids)) == len(sids), (name, sids)
    for name, statement in statements(documents):
        assert statement["Effect"] == "Allow", (name, statement)
        # Negations grant everything *but* something: never.
        assert not {"NotAction", "NotResource", "NotPrincipal"} & set(statement), (name, statement)


def test_no_wildcard_actions(documents):
    for name, statement in statements(documents):
        for action in as_list(statement["Action"]):
            assert "*" not in action and "?" not in action, (name, action)
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), (name, action)


def test_no_wildcard_resources_where_the_name_is_known(documents):
    for name, statement in statements(documents):
        if name.endswith(".trust.json"):
            assert "Resource" not in statement, name
            continue
        for resource in as_list(statement["Resource"]):
            assert resource != "*", (name, statement["Sid"])
            assert resource.startswith("arn:aws:"), (name, resource)
            # The only wildcard: the objects under a known bucket/prefix.
            if "*" in resource or "?" in resource:
                assert re.fullmatch(r"arn:aws:s3:::[a-z0-9.-]+/([A-Za-z0-9._-]+/)*\*", resource), \
                    (name, resource)
            if resource.startswith("arn:aws:s3:::"):
                assert not resource.startswith("arn:aws:s3:::*"), (name, resource)


def test_permissions_are_exactly_the_expected_ones(documents):
    for name, expected in EXPECTED_PERMISSIONS.items():
        granted = {(action, resource)
                   for statement in documents[name]["Statement"]
                   for action in as_list(statement["Action"])
                   for resource in as_list(statement["Resource"])}
        assert granted == expected, name
        # No conditions loosen (or silently tighten) what the tables say.
        conditions = {(name, s["Sid"]): s["Condition"]
                      for s in documents[name]["Statement"] if "Condition" in s}
        assert conditions == {key: value for key, value in EXPECTED_CONDITIONS.items()
                              if key[0] == name}, name


def test_the_input_bucket_may_be_listed_within_the_input_prefix_only(documents):
    (statement,) = [s for s in documents["video-encoding-encoder.policy.json"]["Statement"]
                    if "s3:ListBucket" in as_list(s["Action"]) and s["Resource"] == "arn:aws:s3:::media-in"]
    # StringLike on the prefix of the listing: a ListObjects without Prefix, or with another one,
    # is refused; "uploads/*" cannot match "uploads-private/" (prefixes end in "/").
    assert statement["Condition"] == {"StringLike": {"s3:prefix": "uploads/*"}}
    assert as_list(statement["Action"]) == ["s3:ListBucket"]


def test_irsa_trust_names_one_service_account_of_one_cluster(irsa):
    for name, (namespace, account) in SERVICE_ACCOUNTS.items():
        (statement,) = irsa[name]["Statement"]
        assert statement["Principal"] == {
            "Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC}"}, name
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity", name
        # StringEquals (not StringLike): exactly this service account, for the STS audience.
        assert statement["Condition"] == {"StringEquals": {
            f"{OIDC}:sub": f"system:serviceaccount:{namespace}:{account}",
            f"{OIDC}:aud": "sts.amazonaws.com"}}, name


def test_pod_identity_trust_names_one_service_account(pod_identity):
    for name, (namespace, account) in SERVICE_ACCOUNTS.items():
        (statement,) = pod_identity[name]["Statement"]
        # EKS's Pod Identity service assumes the role for the pod, tagging the session with the
        # pod's cluster, namespace and service account (hence sts:TagSession)...
        assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}, name
        assert sorted(as_list(statement["Action"])) == ["sts:AssumeRole", "sts:TagSession"], name
        # ...and those tags say which association asks: only this service account's.
        assert statement["Condition"] == {"StringEquals": {
            "aws:RequestTag/kubernetes-namespace": namespace,
            "aws:RequestTag/kubernetes-service-account": account}}, name


def test_keda_reader_is_assumable_by_the_keda_operator_role_only(irsa, pod_identity):
    for documents in (irsa, pod_identity):
        (statement,) = documents["video-encoding-keda-reader.trust.json"]["Statement"]
        assert statement["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:role/keda-operator"}
        assert "Condition" not in statement
    assert irsa["video-encoding-keda-reader.trust.json"]["Statement"][0]["Action"] == "sts:AssumeRole"
    # A Pod Identity session's tags are transitive: the operator's AssumeRole into the reader role
    # carries them, which needs sts:TagSession on the reader role's trust.
    (statement,) = pod_identity["video-encoding-keda-reader.trust.json"]["Statement"]
    assert sorted(as_list(statement["Action"])) == ["sts:AssumeRole", "sts:TagSession"]


def test_settings_flow_into_the_documents(tmp_path):
    documents = render_policies(
        tmp_path, QUEUE_NAME="jobs.fifo", RESULT_QUEUE_NAME="done.fifo", INPUT_BUCKET="in-b", INPUT_PREFIX="incoming", OUTPUT_BUCKET="out-b",
        OUTPUT_PREFIX="/a/b/", NAME_PREFIX="staging", KEDA_OPERATOR_ROLE="keda", K8S_NAMESPACE="media",
        AWS_REGION="cn-north-1", OIDC_PROVIDER=f"https://{OIDC}")
    encoder = {s["Sid"]: s for s in documents["staging-encoder.policy.json"]["Statement"]}
    assert encoder["ConsumeEncodeRequests"]["Resource"] == f"arn:aws-cn:sqs:cn-north-1:{ACCOUNT}:jobs.fifo"
    assert (encoder["MoveInvalidRequestsToDeadLetterQueue"]["Resource"]
            == f"arn:aws-cn:sqs:cn-north-1:{ACCOUNT}:jobs-dlq.fifo")
    assert encoder["SendCompletionNotices"]["Resource"] == f"arn:aws-cn:sqs:cn-north-1:{ACCOUNT}:done.fifo"
    producer = {s["Sid"]: s for s in documents["staging-producer.policy.json"]["Statement"]}
    assert producer["WaitForCompletionNotices"]["Resource"] == f"arn:aws-cn:sqs:cn-north-1:{ACCOUNT}:done.fifo"
    # A prefix always ends with "/": "incoming" must not also match "incoming-private/...".
    assert encoder["ReadSourceVideos"]["Resource"] == "arn:aws-cn:s3:::in-b/incoming/*"
    assert encoder["SeeMissingSourcesAsNotFound"]["Resource"] == "arn:aws-cn:s3:::in-b"
    assert encoder["SeeMissingSourcesAsNotFound"]["Condition"] == {
        "StringLike": {"s3:prefix": "incoming/*"}}
    assert encoder["WriteAndCheckRenditions"]["Resource"] == "arn:aws-cn:s3:::out-b/a/b/*"
    trust = documents["staging-encoder.trust.json"]["Statement"][0]
    assert trust["Condition"]["StringEquals"][f"{OIDC}:sub"] == "system:serviceaccount:media:encoder"
    reader_trust = documents["staging-keda-reader.trust.json"]["Statement"][0]
    assert reader_trust["Principal"] == {"AWS": f"arn:aws-cn:iam::{ACCOUNT}:role/keda"}


def test_settings_flow_into_the_pod_identity_trust(tmp_path):
    documents = render_policies(tmp_path, IDENTITY="pod-identity", OIDC_PROVIDER=None,
                                K8S_NAMESPACE="media", ENCODER_SERVICE_ACCOUNT="transcoder",
                                KEDA_NAMESPACE="autoscaling", KEDA_SERVICE_ACCOUNT="keda")
    encoder = documents["video-encoding-encoder.trust.json"]["Statement"][0]["Condition"]["StringEquals"]
    assert encoder == {"aws:RequestTag/kubernetes-namespace": "media",
                       "aws:RequestTag/kubernetes-service-account": "transcoder"}
    operator = documents["keda-operator.trust.json"]["Statement"][0]["Condition"]["StringEquals"]
    assert operator == {"aws:RequestTag/kubernetes-namespace": "autoscaling",
                        "aws:RequestTag/kubernetes-service-account": "keda"}


@pytest.mark.parametrize("setting", [
    {"RESULT_QUEUE_NAME": "video-encode-requests"},
    {"RESULT_QUEUE_NAME": "video-encode-requests-dlq"},
    {"QUEUE_NAME": "jobs.fifo", "RESULT_QUEUE_NAME": "jobs-dlq.fifo"},
])
def test_the_results_queue_cannot_be_the_request_queue_or_its_dlq(tmp_path, setting):
    """The encoder may send to the results queue: naming the request queue (or the DLQ) there
    would let it send itself requests."""
    env = script_env(ACCOUNT_ID=ACCOUNT, OIDC_PROVIDER=OIDC, **setting)
    result = run_script("create-iam.sh", env, "--render", str(tmp_path), check=False)
    assert result.returncode != 0
    assert "RESULT_QUEUE_NAME" in result.stderr and "must differ from QUEUE_NAME and DLQ_NAME" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_identity_is_refused(tmp_path):
    env = script_env(ACCOUNT_ID=ACCOUNT, OIDC_PROVIDER=OIDC, IDENTITY="kiam")
    result = run_script("create-iam.sh", env, "--render", str(tmp_path), check=False)
    assert result.returncode != 0
    assert "IDENTITY must be irsa or pod-identity" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("setting", [
    {"INPUT_PREFIX": "*"},
    {"INPUT_PREFIX": "/"},
    {"INPUT_PREFIX": "uploads//"},
    {"OUTPUT_PREFIX": "renditions/*/"},
    {"OUTPUT_PREFIX": 'renditions/"x"/'},
    {"OUTPUT_BUCKET": "media-*"},
    {"QUEUE_NAME": "video-*"},
    {"RESULT_QUEUE_NAME": "video-*"},
    {"OIDC_PROVIDER": 'oidc.example.com/id/"x"'},
    {"K8S_NAMESPACE": "*"},
    {"ACCOUNT_ID": "*"},
])
def test_wildcards_and_odd_values_cannot_widen_a_policy(tmp_path, setting):
    env = script_env(**{"ACCOUNT_ID": ACCOUNT, "OIDC_PROVIDER": OIDC, **setting})
    result = run_script("create-iam.sh", env, "--render", str(tmp_path), check=False)
    assert result.returncode != 0
    assert "invalid" in result.stderr
    assert list(tmp_path.iterdir()) == []
