"""scripts/aws/*.sh against an emulator: each script runs twice (it must converge, not fail), and
what it made is read back with boto3.

create-queue.sh, create-results-queue.sh, create-buckets.sh and the SQS/S3 part of teardown.sh run
on both moto and
LocalStack (the `emulator` fixture: test ids [moto] and [localstack]); create-iam.sh and
teardown's IAM part on moto only, as LocalStack's IAM is not enabled here (aws_helpers.py)."""

from __future__ import annotations

import json
import warnings

import botocore.exceptions
import pytest

from aws_helpers import (  # noqa: F401  (moto, fresh_moto, localstack, emulator are pytest fixtures)
    MOTO_ACCOUNT,
    REGION,
    emulator,
    fresh_moto,
    key_values,
    localstack,
    moto,
    policy_document,
    queue_attributes,
    run_script,
    script_env,
)

OIDC = f"oidc.eks.{REGION}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
ROLES = {
    "KEDA_OPERATOR_ROLE_ARN": "keda-operator",
    "KEDA_READER_ROLE_ARN": "video-encoding-keda-reader",
    "ENCODER_ROLE_ARN": "video-encoding-encoder",
    "PRODUCER_ROLE_ARN": "video-encoding-producer",
}
# Role -> the one managed policy attached to it.
ROLE_POLICIES = {
    "keda-operator": "video-encoding-keda-operator-assume-reader",
    "video-encoding-keda-reader": "video-encoding-keda-reader",
    "video-encoding-encoder": "video-encoding-encoder",
    "video-encoding-producer": "video-encoding-producer",
}
# What create-iam.sh puts on everything it creates; the first tag makes it "ours" on a re-run.
OUR_TAGS = [{"Key": "managed-by", "Value": "video-encoding-create-iam"},
            {"Key": "name-prefix", "Value": "video-encoding"}]


# Every aws CLI call costs about half a second, so LocalStack runs the tests where a second
# emulator adds most (queue attributes it keeps and moto drops, S3 answers as S3 gives them,
# teardown of versioned buckets); these run on moto only.
MOTO_ONLY = pytest.mark.parametrize("emulator", ["moto"], indirect=True)


def arn(kind: str, name: str) -> str:
    return f"arn:aws:iam::{MOTO_ACCOUNT}:{kind}/{name}"


# -------------------------------------------------------------------------------------------------
# create-queue.sh
# -------------------------------------------------------------------------------------------------


def test_create_queue_twice_prints_only_the_url_and_configures_both_queues(emulator):
    env = emulator.env()
    first = run_script("create-queue.sh", env)
    second = run_script("create-queue.sh", env)

    name = emulator.named("video-encode-requests")
    url = emulator.queue_url(name)
    # stdout is exactly the URL, so that QUEUE_URL=$(scripts/aws/create-queue.sh) works.
    assert first.stdout == f"{url}\n"
    assert second.stdout == f"{url}\n"
    assert "[create-queue]" in first.stderr

    assert emulator.our_queue_urls() == [url, emulator.queue_url(f"{name}-dlq")]

    queue = emulator.queue_attributes(name)
    dlq = emulator.queue_attributes(f"{name}-dlq")
    assert queue["VisibilityTimeout"] == "120"
    assert queue["ReceiveMessageWaitTimeSeconds"] == "20"
    assert queue["MessageRetentionPeriod"] == "345600"
    assert queue["SqsManagedSseEnabled"] == "true"
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 5

    assert dlq["MessageRetentionPeriod"] == "1209600"  # 14 days
    assert dlq["SqsManagedSseEnabled"] == "true"
    assert "RedrivePolicy" not in dlq
    check_redrive_allow_policy(emulator, emulator.queue_url(f"{name}-dlq"), queue["QueueArn"])


def check_redrive_allow_policy(emulator, dlq_url: str, source_arn: str) -> None:
    """The DLQ accepts dead letters from our queue only. moto 5.x does not keep this attribute
    (LocalStack does, so the [localstack] run checks it)."""
    sqs = emulator.client("sqs")
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["RedriveAllowPolicy"])
    except botocore.exceptions.ClientError as error:
        assert emulator.name == "moto" and "RedriveAllowPolicy" in str(error), error
        warnings.warn("moto does not support the SQS attribute RedriveAllowPolicy: "
                      "the DLQ's allow-list is verified by the [localstack] run only", stacklevel=2)
        return
    allow = json.loads(attributes["Attributes"]["RedriveAllowPolicy"])
    assert allow == {"redrivePermission": "byQueue", "sourceQueueArns": [source_arn]}


@MOTO_ONLY
def test_create_queue_converges_changed_settings(emulator):
    run_script("create-queue.sh", emulator.env())
    run_script("create-queue.sh", emulator.env(
        VISIBILITY_TIMEOUT_SECONDS="600", MAX_RECEIVE_COUNT="3", RECEIVE_WAIT_SECONDS="10"))

    queue = emulator.queue_attributes(emulator.named("video-encode-requests"))
    assert queue["VisibilityTimeout"] == "600"
    assert queue["ReceiveMessageWaitTimeSeconds"] == "10"
    assert int(json.loads(queue["RedrivePolicy"])["maxReceiveCount"]) == 3


@MOTO_ONLY
def test_create_queue_fifo_makes_a_fifo_dead_letter_queue(emulator):
    env = emulator.env(QUEUE_NAME=emulator.named("encode-jobs.fifo"))
    for _ in range(2):
        result = run_script("create-queue.sh", env)
        assert result.stdout == f"{emulator.queue_url(emulator.named('encode-jobs.fifo'))}\n"

    queue = emulator.queue_attributes(emulator.named("encode-jobs.fifo"))
    dlq = emulator.queue_attributes(emulator.named("encode-jobs-dlq.fifo"))
    for attributes in (queue, dlq):
        assert attributes["FifoQueue"] == "true"
        assert attributes["ContentBasedDeduplication"] == "false"
        assert attributes["SqsManagedSseEnabled"] == "true"
    assert queue["VisibilityTimeout"] == "120"
    assert queue["ReceiveMessageWaitTimeSeconds"] == "20"
    assert json.loads(queue["RedrivePolicy"])["deadLetterTargetArn"] == dlq["QueueArn"]
    assert dlq["MessageRetentionPeriod"] == "1209600"


# The settings are refused before any AWS call, so one emulator is enough.
@pytest.mark.parametrize("script, setting, message", [
    ("create-queue.sh", {"QUEUE_NAME": "no spaces"}, "invalid QUEUE_NAME"),
    ("create-queue.sh", {"QUEUE_NAME": "x" * 81}, "invalid QUEUE_NAME"),
    ("create-queue.sh", {"MAX_RECEIVE_COUNT": "0"}, "invalid MAX_RECEIVE_COUNT"),
    ("create-queue.sh", {"VISIBILITY_TIMEOUT_SECONDS": "2m"}, "invalid VISIBILITY_TIMEOUT_SECONDS"),
    ("create-queue.sh", {"RECEIVE_WAIT_SECONDS": "21"}, "invalid RECEIVE_WAIT_SECONDS"),
    ("create-queue.sh", {"QUEUE_NAME": "jobs.fifo", "DLQ_NAME": "jobs-dlq"}, "SQS needs both of one type"),
    # The encoder may send to the results queue: it must never be the request queue or its DLQ.
    ("create-results-queue.sh", {"RESULT_QUEUE_NAME": "video-encode-requests"},
     "must differ from QUEUE_NAME and DLQ_NAME"),
    ("create-results-queue.sh", {"RESULT_QUEUE_NAME": "video-encode-requests-dlq"},
     "must differ from QUEUE_NAME and DLQ_NAME"),
    ("create-results-queue.sh", {"QUEUE_NAME": "jobs", "RESULT_QUEUE_NAME": "jobs"},
     "must differ from QUEUE_NAME and DLQ_NAME"),
    ("create-results-queue.sh", {"RESULT_QUEUE_NAME": "results*"}, "invalid RESULT_QUEUE_NAME"),
    ("create-results-queue.sh", {"RESULT_RETENTION_SECONDS": "30"}, "invalid RESULT_RETENTION_SECONDS"),
    ("create-results-queue.sh", {"RECEIVE_WAIT_SECONDS": "21"}, "invalid RECEIVE_WAIT_SECONDS"),
    ("create-results-queue.sh", {"RESULT_VISIBILITY_TIMEOUT_SECONDS": "43201"},
     "invalid RESULT_VISIBILITY_TIMEOUT_SECONDS"),
    ("create-results-queue.sh", {"QUEUE_NAME": "jobs*"}, "invalid QUEUE_NAME"),
])
def test_queue_scripts_refuse_bad_settings_before_creating_anything(fresh_moto, script, setting, message):
    result = run_script(script, fresh_moto.env(**setting), check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout == ""
    assert fresh_moto.client("sqs").list_queues().get("QueueUrls", []) == []


# -------------------------------------------------------------------------------------------------
# create-results-queue.sh
# -------------------------------------------------------------------------------------------------


def test_create_results_queue_twice_prints_only_the_url_and_configures_it(emulator):
    env = emulator.env()
    name = emulator.named("video-encode-results")
    url = emulator.queue_url(name)
    for _ in range(2):
        result = run_script("create-results-queue.sh", env)
        # stdout is exactly the URL: RESULT_QUEUE_URL=$(scripts/aws/create-results-queue.sh).
        assert result.stdout == f"{url}\n"
        assert "[create-results-queue]" in result.stderr

    # One queue, no dead-letter queue: a producer's give-backs count as receives.
    assert emulator.our_queue_urls() == [url]
    queue = emulator.queue_attributes(name)
    assert queue["SqsManagedSseEnabled"] == "true"
    assert queue["ReceiveMessageWaitTimeSeconds"] == "20"  # long polling for the waiting producer
    assert queue["MessageRetentionPeriod"] == "345600"  # 4 days
    assert queue["VisibilityTimeout"] == "30"
    assert "RedrivePolicy" not in queue
    assert queue.get("FifoQueue", "false") == "false"


def test_create_results_queue_fifo_and_converging_changed_settings(emulator):
    name = emulator.named("encode-results.fifo")
    url = emulator.queue_url(name)
    env = emulator.env(RESULT_QUEUE_NAME=name)
    for _ in range(2):
        assert run_script("create-results-queue.sh", env).stdout == f"{url}\n"
    queue = emulator.queue_attributes(name)
    assert queue["FifoQueue"] == "true"
    # The encoder sends a MessageDeduplicationId; bodies of one outcome sent twice differ.
    assert queue["ContentBasedDeduplication"] == "false"
    assert queue["SqsManagedSseEnabled"] == "true"
    assert queue["ReceiveMessageWaitTimeSeconds"] == "20"

    changed = emulator.env(RESULT_QUEUE_NAME=name, RESULT_RETENTION_SECONDS="86400",
                           RECEIVE_WAIT_SECONDS="10", RESULT_VISIBILITY_TIMEOUT_SECONDS="60")
    assert run_script("create-results-queue.sh", changed).stdout == f"{url}\n"
    queue = emulator.queue_attributes(name)
    assert (queue["MessageRetentionPeriod"], queue["ReceiveMessageWaitTimeSeconds"],
            queue["VisibilityTimeout"]) == ("86400", "10", "60")
    assert emulator.our_queue_urls() == [url]


def test_create_results_queue_takes_away_a_redrive_policy_it_finds(emulator):
    """Someone gave the results queue a dead-letter queue: every give-back of a waiting producer
    counts as a receive, so notices would be moved away unread. Converging removes it."""
    env = emulator.env()
    name = emulator.named("video-encode-results")
    sqs = emulator.client("sqs")
    dlq = sqs.create_queue(QueueName=emulator.named("results-dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = run_script("create-results-queue.sh", env).stdout.strip()
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})})
    assert "RedrivePolicy" in emulator.queue_attributes(name)

    result = run_script("create-results-queue.sh", env)
    assert result.stdout == f"{url}\n"
    assert f"removed the redrive policy of {name}" in result.stderr
    assert "RedrivePolicy" not in emulator.queue_attributes(name)
    # Once gone, a run has nothing to remove.
    assert "removed the redrive policy" not in run_script("create-results-queue.sh", env).stderr


def test_create_results_queue_usage(fresh_moto):
    helped = run_script("create-results-queue.sh", fresh_moto.env(), "--help")
    assert "usage:" in helped.stderr and "RESULT_QUEUE_NAME" in helped.stderr
    assert helped.stdout == ""
    wrong = run_script("create-results-queue.sh", fresh_moto.env(), "--fifo", check=False)
    assert wrong.returncode != 0
    assert "unknown argument: --fifo" in wrong.stderr and "usage:" in wrong.stderr
    assert wrong.stdout == ""
    assert fresh_moto.client("sqs").list_queues().get("QueueUrls", []) == []


# -------------------------------------------------------------------------------------------------
# create-buckets.sh
# -------------------------------------------------------------------------------------------------


def check_bucket(s3, bucket: str) -> None:
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                     "BlockPublicPolicy": True, "RestrictPublicBuckets": True}

    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] == ["AES256"]

    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]

    rule, split = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["ID"] == "abort-incomplete-multipart-uploads"
    assert rule["Status"] == "Enabled"
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rule.get("Filter", {}).get("Prefix", "") == ""  # the whole bucket
    # What a split that never completed leaves (the encoder tags it video-encoding=split).
    assert split["ID"] == "expire-split-chunks"
    assert split["Status"] == "Enabled"
    assert split["Filter"] == {"Tag": {"Key": "video-encoding", "Value": "split"}}
    assert split["Expiration"] == {"Days": 7}


def test_create_buckets_twice_secures_both_buckets(emulator):
    env = emulator.env()
    media_in, media_out = emulator.named("media-in"), emulator.named("media-out")
    for _ in range(2):
        result = run_script("create-buckets.sh", env)
        assert key_values(result.stdout) == {
            "INPUT_URI": f"s3://{media_in}/uploads",
            "OUTPUT_URI": f"s3://{media_out}/renditions",
        }

    assert emulator.our_buckets() == [media_in, media_out]
    s3 = emulator.client("s3")
    for bucket in (media_in, media_out):
        check_bucket(s3, bucket)


@MOTO_ONLY
def test_create_buckets_outside_us_east_1_sets_the_location(emulator):
    region = "eu-west-1"
    buckets = (emulator.named("eu-media-in"), emulator.named("eu-media-out"))
    env = emulator.env(AWS_REGION=region, INPUT_BUCKET=buckets[0], OUTPUT_BUCKET=buckets[1])
    run_script("create-buckets.sh", env)
    run_script("create-buckets.sh", env)  # BucketAlreadyOwnedByYou outside us-east-1: fine

    s3 = emulator.client("s3", region=region)
    for bucket in buckets:
        assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == region
        check_bucket(s3, bucket)


# moto only: LocalStack answers with a BucketAlreadyExists that has no Message, on which aws-cli 1.x
# crashes ("argument of type 'NoneType' is not iterable") before it prints the error code. S3
# itself always sends a message.
def test_create_buckets_fails_clearly_when_the_name_belongs_to_another_account(fresh_moto):
    # moto keeps buckets per account: one made under another account's id is "someone else's".
    other = fresh_moto.client("s3", key_id="test", secret="test")
    other.meta.events.register(
        "before-sign.s3.*",
        lambda request, **_: request.headers.__setitem__("x-moto-account-id", "210987654321"))
    other.create_bucket(Bucket="media-in")

    result = run_script("create-buckets.sh", fresh_moto.env(), check=False)
    assert result.returncode != 0
    assert "taken by another AWS account" in result.stderr


@pytest.mark.parametrize("setting, message", [
    ({"SPLIT_EXPIRY_DAYS": "0"}, "invalid SPLIT_EXPIRY_DAYS"),
    ({"SPLIT_EXPIRY_DAYS": "a week"}, "invalid SPLIT_EXPIRY_DAYS"),
    ({"ABORT_INCOMPLETE_UPLOADS_DAYS": "366"}, "invalid ABORT_INCOMPLETE_UPLOADS_DAYS"),
])
def test_create_buckets_refuses_bad_settings_before_creating_anything(fresh_moto, setting, message):
    result = run_script("create-buckets.sh", fresh_moto.env(**setting), check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert fresh_moto.client("s3").list_buckets()["Buckets"] == []


# -------------------------------------------------------------------------------------------------
# create-iam.sh
# -------------------------------------------------------------------------------------------------


def irsa_condition(subject: str) -> dict:
    return {"StringEquals": {f"{OIDC}:sub": subject, f"{OIDC}:aud": "sts.amazonaws.com"}}


def test_create_iam_twice_makes_least_privilege_roles(fresh_moto, tmp_path):
    run_script("create-queue.sh", fresh_moto.env())
    run_script("create-results-queue.sh", fresh_moto.env())
    env = fresh_moto.env(OIDC_PROVIDER=OIDC)
    first = run_script("create-iam.sh", env)
    second = run_script("create-iam.sh", env)

    expected_arns = {key: arn("role", name) for key, name in ROLES.items()}
    assert key_values(first.stdout) == expected_arns
    assert key_values(second.stdout) == expected_arns

    iam = fresh_moto.client("iam")
    trusts = {name: iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
              for name in ROLE_POLICIES}
    federated = arn("oidc-provider", OIDC)
    for role, subject in [
        ("keda-operator", "system:serviceaccount:keda:keda-operator"),
        ("video-encoding-encoder", "system:serviceaccount:video-encoding:encoder"),
        ("video-encoding-producer", "system:serviceaccount:video-encoding:producer"),
    ]:
        (statement,) = trusts[role]["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Federated": federated}
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Condition"] == irsa_condition(subject)
    (statement,) = trusts["video-encoding-keda-reader"]["Statement"]
    assert statement["Principal"] == {"AWS": arn("role", "keda-operator")}
    assert statement["Action"] == "sts:AssumeRole"

    for role, policy in ROLE_POLICIES.items():
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        assert attached == [{"PolicyName": policy, "PolicyArn": arn("policy", policy)}]
        assert iam.list_role_policies(RoleName=role)["PolicyNames"] == []
        # The second run found nothing to change: no new policy version.
        versions = iam.list_policy_versions(PolicyArn=arn("policy", policy))["Versions"]
        assert [v["VersionId"] for v in versions] == ["v1"], policy
    assert "is up to date" in second.stderr

    queue_arn = queue_attributes(fresh_moto, "video-encode-requests")["QueueArn"]
    dlq_arn = queue_attributes(fresh_moto, "video-encode-requests-dlq")["QueueArn"]
    results_arn = queue_attributes(fresh_moto, "video-encode-results")["QueueArn"]
    permissions = {policy: {s["Sid"]: s for s in policy_document(iam, arn("policy", policy))["Statement"]}
                   for policy in ROLE_POLICIES.values()}

    assert permissions["video-encoding-keda-reader"] == {"ReadQueueLength": {
        "Sid": "ReadQueueLength", "Effect": "Allow",
        "Action": "sqs:GetQueueAttributes", "Resource": queue_arn}}
    assert permissions["video-encoding-keda-operator-assume-reader"] == {"AssumeKedaReaderRole": {
        "Sid": "AssumeKedaReaderRole", "Effect": "Allow",
        "Action": "sts:AssumeRole", "Resource": arn("role", "video-encoding-keda-reader")}}

    encoder = permissions["video-encoding-encoder"]
    assert encoder["ConsumeEncodeRequests"]["Resource"] == queue_arn
    assert encoder["SendChunkAndStitchMessages"] == {
        "Sid": "SendChunkAndStitchMessages", "Effect": "Allow", "Action": "sqs:SendMessage",
        "Resource": queue_arn}
    assert encoder["RemoveStitchedChunks"]["Resource"] == "arn:aws:s3:::media-out/renditions/*"
    assert encoder["TagSplitObjectsForExpiry"]["Resource"] == "arn:aws:s3:::media-out/renditions/*"
    assert encoder["MoveInvalidRequestsToDeadLetterQueue"]["Resource"] == dlq_arn
    assert encoder["SendCompletionNotices"] == {
        "Sid": "SendCompletionNotices", "Effect": "Allow", "Action": "sqs:SendMessage",
        "Resource": results_arn}
    assert encoder["ReadSourceVideos"]["Resource"] == "arn:aws:s3:::media-in/uploads/*"
    assert encoder["SeeMissingSourcesAsNotFound"]["Resource"] == "arn:aws:s3:::media-in"
    assert encoder["SeeMissingSourcesAsNotFound"]["Condition"] == {
        "StringLike": {"s3:prefix": "uploads/*"}}
    assert encoder["WriteAndCheckRenditions"]["Resource"] == "arn:aws:s3:::media-out/renditions/*"
    assert encoder["SeeMissingRenditionsAsNotFound"]["Resource"] == "arn:aws:s3:::media-out"

    producer = permissions["video-encoding-producer"]
    assert producer["SendEncodeRequests"] == {
        "Sid": "SendEncodeRequests", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arn}
    assert producer["WaitForCompletionNotices"]["Resource"] == results_arn
    assert sorted(producer["WaitForCompletionNotices"]["Action"]) == [
        "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"]
    assert producer["UploadAndCheckSourceVideos"]["Resource"] == "arn:aws:s3:::media-in/uploads/*"
    assert sorted(producer["UploadAndCheckSourceVideos"]["Action"]) == [
        "s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]

    # Everything it made carries our tags, which is what lets the next run change it.
    for role, policy in ROLE_POLICIES.items():
        assert iam.list_role_tags(RoleName=role)["Tags"] == OUR_TAGS, role
        assert iam.list_policy_tags(PolicyArn=arn("policy", policy))["Tags"] == OUR_TAGS, policy

    # What is in IAM is exactly what --render shows a reviewer.
    rendered = tmp_path / "rendered"
    run_script("create-iam.sh", script_env(ACCOUNT_ID=MOTO_ACCOUNT, OIDC_PROVIDER=OIDC),
               "--render", str(rendered))
    for role, policy in ROLE_POLICIES.items():
        assert json.loads((rendered / f"{role}.trust.json").read_text()) == trusts[role]
        assert (json.loads((rendered / f"{policy}.policy.json").read_text())
                == policy_document(iam, arn("policy", policy)))


def test_create_iam_adds_a_version_on_change_and_prunes_old_ones(fresh_moto):
    iam = fresh_moto.client("iam")
    encoder = arn("policy", "video-encoding-encoder")
    run_script("create-iam.sh", fresh_moto.env())
    # Fill the policy up to IAM's limit of 5 versions (v1 stays the default).
    for n in range(2, 6):
        iam.create_policy_version(PolicyArn=encoder, PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Sid": f"Old{n}", "Effect": "Allow", "Action": "sqs:GetQueueUrl",
                "Resource": "arn:aws:sqs:us-east-1:123456789012:old"}]}))

    changed = fresh_moto.env(INPUT_PREFIX="batch-7/")
    result = run_script("create-iam.sh", changed)
    assert "deleted old version" in result.stderr
    versions = iam.list_policy_versions(PolicyArn=encoder)["Versions"]
    assert len(versions) == 5
    assert [v["VersionId"] for v in versions if v["IsDefaultVersion"]] == ["v6"]
    # The oldest non-default versions went first: v1 (the previous default) is kept.
    assert sorted(v["VersionId"] for v in versions) == ["v1", "v3", "v4", "v5", "v6"]
    statements = {s["Sid"]: s for s in policy_document(iam, encoder)["Statement"]}
    assert statements["ReadSourceVideos"]["Resource"] == "arn:aws:s3:::media-in/batch-7/*"

    again = run_script("create-iam.sh", changed)
    assert "policy video-encoding-encoder is up to date (v6)" in again.stderr
    assert len(iam.list_policy_versions(PolicyArn=encoder)["Versions"]) == 5


def test_create_iam_leaves_a_foreign_keda_operator_role_alone(fresh_moto):
    iam = fresh_moto.client("iam")
    env = fresh_moto.env(MANAGE_KEDA_OPERATOR_ROLE="false", KEDA_OPERATOR_ROLE="shared-keda")

    missing = run_script("create-iam.sh", env, check=False)
    assert missing.returncode != 0
    assert "role shared-keda cannot be read" in missing.stderr

    trust = {"Version": "2012-10-17", "Statement": [{
        "Sid": "Theirs", "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{MOTO_ACCOUNT}:root"}}]}
    iam.create_role(RoleName="shared-keda", AssumeRolePolicyDocument=json.dumps(trust))
    iam.put_role_policy(RoleName="shared-keda", PolicyName="theirs", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Sid": "Theirs", "Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}]}))

    for _ in range(2):
        result = run_script("create-iam.sh", env)
        assert key_values(result.stdout)["KEDA_OPERATOR_ROLE_ARN"] == arn("role", "shared-keda")
    assert iam.get_role(RoleName="shared-keda")["Role"]["AssumeRolePolicyDocument"] == trust
    reader_trust = iam.get_role(RoleName="video-encoding-keda-reader")["Role"]["AssumeRolePolicyDocument"]
    assert reader_trust["Statement"][0]["Principal"] == {"AWS": arn("role", "shared-keda")}
    attached = iam.list_attached_role_policies(RoleName="shared-keda")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["video-encoding-keda-operator-assume-reader"]

    # Teardown detaches our policy and keeps their role.
    run_script("teardown.sh", env, "--yes")
    assert iam.get_role(RoleName="shared-keda")["Role"]["AssumeRolePolicyDocument"] == trust
    assert iam.list_attached_role_policies(RoleName="shared-keda")["AttachedPolicies"] == []
    assert iam.list_role_policies(RoleName="shared-keda")["PolicyNames"] == ["theirs"]


def test_create_iam_with_pod_identity_trusts_eks_and_says_how_to_associate(fresh_moto):
    iam = fresh_moto.client("iam")
    result = run_script("create-iam.sh", fresh_moto.env(IDENTITY="pod-identity", CLUSTER_NAME="media-cluster"))
    assert key_values(result.stdout) == {key: arn("role", name) for key, name in ROLES.items()}

    for role, (namespace, account) in [
        ("keda-operator", ("keda", "keda-operator")),
        ("video-encoding-encoder", ("video-encoding", "encoder")),
        ("video-encoding-producer", ("video-encoding", "producer")),
    ]:
        (statement,) = iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "pods.eks.amazonaws.com"}, role
        assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"], role
        assert statement["Condition"] == {"StringEquals": {
            "aws:RequestTag/kubernetes-namespace": namespace,
            "aws:RequestTag/kubernetes-service-account": account}}, role
        assert f"--namespace {namespace} --service-account {account} --role-arn {arn('role', role)}" \
            in result.stderr
    (statement,) = iam.get_role(RoleName="video-encoding-keda-reader")["Role"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"AWS": arn("role", "keda-operator")}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert "aws eks create-pod-identity-association --cluster-name media-cluster" in result.stderr
    assert "OIDC provider" not in result.stderr  # no OIDC provider is involved
    # The reader role is assumed by the operator's role, never associated with a service account.
    assert "--role-arn " + arn("role", "video-encoding-keda-reader") not in result.stderr


def test_create_iam_refuses_to_touch_roles_and_policies_it_did_not_create(fresh_moto):
    iam = fresh_moto.client("iam")
    theirs = {"Version": "2012-10-17", "Statement": [{
        "Sid": "Theirs", "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{MOTO_ACCOUNT}:root"}}]}
    their_policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "Theirs", "Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}]}
    for role in ("video-encoding-encoder", "keda-operator"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(theirs))
    iam.create_policy(PolicyName="video-encoding-producer", PolicyDocument=json.dumps(their_policy))

    refused = run_script("create-iam.sh", fresh_moto.env(), check=False)
    assert refused.returncode != 0
    assert refused.stdout == ""
    # Every one of them, each with which, why, and what to do.
    assert "role video-encoding-encoder exists but was not created by this script" in refused.stderr
    assert "managed-by=video-encoding-create-iam" in refused.stderr
    assert "pick another NAME_PREFIX" in refused.stderr
    assert "aws iam tag-role --role-name video-encoding-encoder" in refused.stderr
    assert "role keda-operator exists but was not created by this script" in refused.stderr
    assert "set MANAGE_KEDA_OPERATOR_ROLE=false" in refused.stderr
    assert "policy video-encoding-producer exists but was not created by this script" in refused.stderr
    assert "aws iam tag-policy --policy-arn " + arn("policy", "video-encoding-producer") in refused.stderr
    assert "nothing was changed" in refused.stderr
    # And nothing was: their roles and policy as they were, nothing of ours created.
    for role in ("video-encoding-encoder", "keda-operator"):
        assert iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"] == theirs, role
        assert iam.list_role_tags(RoleName=role)["Tags"] == [], role
        assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == [], role
    assert sorted(r["RoleName"] for r in iam.list_roles()["Roles"]) == ["keda-operator", "video-encoding-encoder"]
    assert [p["PolicyName"] for p in iam.list_policies(Scope="Local")["Policies"]] == ["video-encoding-producer"]
    assert policy_document(iam, arn("policy", "video-encoding-producer")) == their_policy
    # (Tagged as ours, a role is taken over; MANAGE_KEDA_OPERATOR_ROLE=false without a tag is
    # test_create_iam_leaves_a_foreign_keda_operator_role_alone.)


def test_create_iam_without_an_emulator_needs_the_oidc_provider():
    # No endpoint: this would be real AWS, so there is no placeholder; it fails before any call.
    result = run_script("create-iam.sh", script_env(), check=False)
    assert result.returncode != 0
    assert "OIDC_PROVIDER is required" in result.stderr
    assert "aws eks describe-cluster" in result.stderr
    assert result.stdout == ""


def test_create_iam_refuses_an_account_id_other_than_the_credentials_one(fresh_moto):
    result = run_script("create-iam.sh", fresh_moto.env(ACCOUNT_ID="999999999999"), check=False)
    assert result.returncode != 0
    assert f"these credentials belong to account {MOTO_ACCOUNT}" in result.stderr
    assert fresh_moto.client("iam").list_roles()["Roles"] == []


# -------------------------------------------------------------------------------------------------
# teardown.sh
# -------------------------------------------------------------------------------------------------


def test_teardown_needs_confirmation_then_twice_leaves_nothing_behind(emulator):
    """On LocalStack without the IAM part: its IAM is not enabled (teardown's IAM calls go to an
    empty moto and find everything already gone)."""
    env = emulator.env()
    with_iam = emulator.name == "moto"
    run_script("create-queue.sh", env)
    run_script("create-results-queue.sh", env)
    run_script("create-buckets.sh", env)
    if with_iam:
        run_script("create-iam.sh", env)
    media_in, media_out = emulator.named("media-in"), emulator.named("media-out")
    iam = emulator.moto.client("iam")

    refused = run_script("teardown.sh", env, check=False)
    assert refused.returncode != 0
    assert "refusing to delete anything without --yes" in refused.stderr
    assert len(emulator.our_queue_urls()) == 3
    assert emulator.our_buckets() == [media_in, media_out]
    assert len(iam.list_roles()["Roles"]) == (4 if with_iam else 0)

    s3 = emulator.client("s3")
    # Objects, old versions, a delete marker and an unfinished multipart upload.
    s3.put_object(Bucket=media_in, Key="uploads/clip.mov", Body=b"source")
    s3.put_bucket_versioning(Bucket=media_out, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"first", b"second"):
        s3.put_object(Bucket=media_out, Key="renditions/clip/720p.mp4", Body=body)
    s3.put_object(Bucket=media_out, Key='renditions/odd "name" with spaces.mp4', Body=b"x")
    s3.delete_object(Bucket=media_out, Key='renditions/odd "name" with spaces.mp4')
    s3.create_multipart_upload(Bucket=media_in, Key="uploads/big.mov")
    if with_iam:
        # A policy version besides the default one.
        run_script("create-iam.sh", emulator.env(INPUT_PREFIX="other/"))

    run_script("teardown.sh", env, "--yes")
    again = run_script("teardown.sh", emulator.env(CONFIRM="yes"))
    assert f"queue {emulator.named('video-encode-requests')}: already gone" in again.stderr
    assert f"queue {emulator.named('video-encode-results')}: already gone" in again.stderr
    assert f"bucket {media_in}: already gone" in again.stderr

    assert emulator.our_queue_urls() == []
    assert emulator.our_buckets() == []
    assert iam.list_roles()["Roles"] == []
    assert iam.list_policies(Scope="Local")["Policies"] == []
