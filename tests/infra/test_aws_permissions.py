"""The policies made by create-iam.sh, enforced: a moto_server with IAM authorization turned on.

Each managed policy is attached to a probe IAM user; the calls each program makes must be allowed,
and neighbouring calls (another queue, another prefix, deleting what is not theirs, forging
notices) denied. This checks actions and resource ARNs against what the API calls actually need,
which a static reading of the documents cannot.

moto cannot play the role-assumption chain itself (web identity, or the KEDA operator's session
assuming the reader role), so the policies are tested on users; the trust policies are checked in
test_aws_provisioning.py and test_aws_policies.py.
"""

from __future__ import annotations

import json

import botocore.exceptions
import pytest

from aws_helpers import MOTO_ACCOUNT, run_script, start_moto_server, stop_moto_server

QUEUE = "video-encode-requests"
DLQ = "video-encode-requests-dlq"
RESULTS = "video-encode-results"
# A queue in the same account that none of our policies names.
OTHER = "someone-elses-queue"
IN = "media-in"
OUT = "media-out"


class Probe:
    """Clients acting as an IAM user that carries exactly one of our managed policies."""

    def __init__(self, server, key_id: str, secret: str):
        self.server = server
        self.key_id = key_id
        self.secret = secret
        self.sqs = server.client("sqs", key_id=key_id, secret=secret)
        self.s3 = server.client("s3", key_id=key_id, secret=secret)
        self.sts = server.client("sts", key_id=key_id, secret=secret)
        self.queue_url = f"{server.url}/{MOTO_ACCOUNT}/{QUEUE}"
        self.dlq_url = f"{server.url}/{MOTO_ACCOUNT}/{DLQ}"
        self.results_url = f"{server.url}/{MOTO_ACCOUNT}/{RESULTS}"
        self.other_url = f"{server.url}/{MOTO_ACCOUNT}/{OTHER}"


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    server = start_moto_server(tmp_path_factory.mktemp("moto-iam"))
    try:
        env = server.env()
        run_script("create-queue.sh", env)
        run_script("create-results-queue.sh", env)
        run_script("create-buckets.sh", env)
        run_script("create-iam.sh", env)

        # Set-up as an administrator, while moto still lets any credentials do anything.
        iam = server.client("iam")
        s3 = server.client("s3")
        server.client("sqs").create_queue(QueueName=OTHER)
        s3.put_object(Bucket=IN, Key="uploads/clip.mov", Body=b"source")
        s3.put_object(Bucket=IN, Key="private/secret.mov", Body=b"not for the encoder")
        s3.put_object(Bucket=OUT, Key="elsewhere/report.txt", Body=b"not a rendition")
        found = {}
        for policy in ["video-encoding-encoder", "video-encoding-producer",
                       "video-encoding-keda-reader", "video-encoding-keda-operator-assume-reader"]:
            user = f"probe-{policy}"
            iam.create_user(UserName=user)
            iam.attach_user_policy(UserName=user,
                                   PolicyArn=f"arn:aws:iam::{MOTO_ACCOUNT}:policy/{policy}")
            key = iam.create_access_key(UserName=user)["AccessKey"]
            found[policy] = Probe(server, key["AccessKeyId"], key["SecretAccessKey"])

        # Operators allowed only part of what create-results-queue.sh needs (see
        # test_create_results_queue_names_the_step_it_was_refused).
        for name, actions in PARTIAL_OPERATORS.items():
            document = {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["sts:GetCallerIdentity", *actions], "Resource": "*"}]}
            policy = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))
            iam.create_user(UserName=name)
            iam.attach_user_policy(UserName=name, PolicyArn=policy["Policy"]["Arn"])
            key = iam.create_access_key(UserName=name)["AccessKey"]
            found[name] = Probe(server, key["AccessKeyId"], key["SecretAccessKey"])

        server.enforce_iam(True)
        yield found
        server.enforce_iam(False)
    finally:
        stop_moto_server(server)


def denied(call, *args, **kwargs) -> bool:
    try:
        call(*args, **kwargs)
    except botocore.exceptions.ClientError as error:
        code = error.response["Error"]["Code"]
        assert code in {"AccessDenied", "AccessDeniedException", "403"}, error
        return True
    return False


def multipart_upload(s3, bucket: str, key: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 16)
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    aborted = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=aborted)


def test_producer_may_upload_and_check_sources_and_send_requests_only(probes):
    producer = probes["video-encoding-producer"]
    producer.sqs.send_message(QueueUrl=producer.queue_url, MessageBody='{"video_id": "clip"}')
    # The producer sends with SendMessageBatch, which SQS authorizes as sqs:SendMessage (IAM has
    # no sqs:SendMessageBatch action); moto 5.2 asks for "sqs:SendMessageBatch" instead, so the
    # batch call itself cannot be checked here.
    producer.s3.put_object(Bucket=IN, Key="uploads/new.mov", Body=b"new source")
    multipart_upload(producer.s3, IN, "uploads/big.mov")
    # The upload reads back what it stored (size and full-object CRC32): HeadObject with checksum
    # mode, which S3 authorizes as s3:GetObject.
    stored = producer.s3.head_object(Bucket=IN, Key="uploads/new.mov", ChecksumMode="ENABLED")
    assert stored["ContentLength"] == len(b"new source")

    assert denied(producer.sqs.get_queue_url, QueueName=QUEUE)  # it is given the URL, never a name
    assert denied(producer.sqs.receive_message, QueueUrl=producer.queue_url)
    assert denied(producer.sqs.purge_queue, QueueUrl=producer.queue_url)
    assert denied(producer.sqs.send_message, QueueUrl=producer.dlq_url, MessageBody="x")
    assert denied(producer.s3.head_object, Bucket=IN, Key="private/secret.mov", ChecksumMode="ENABLED")
    assert denied(producer.s3.get_object, Bucket=IN, Key="private/secret.mov")
    assert denied(producer.s3.head_object, Bucket=OUT, Key="elsewhere/report.txt")
    assert denied(producer.s3.put_object, Bucket=IN, Key="private/x.mov", Body=b"x")
    assert denied(producer.s3.put_object, Bucket=OUT, Key="renditions/x/720p.mp4", Body=b"x")
    assert denied(producer.s3.delete_object, Bucket=IN, Key="uploads/clip.mov")
    assert denied(producer.s3.list_objects_v2, Bucket=IN)


def test_encoder_may_consume_read_sources_and_write_renditions_only(probes):
    encoder = probes["video-encoding-encoder"]
    admin_send = probes["video-encoding-producer"].sqs.send_message
    admin_send(QueueUrl=encoder.queue_url, MessageBody='{"video_id": "clip"}')

    encoder.sqs.get_queue_attributes(QueueUrl=encoder.queue_url, AttributeNames=["RedrivePolicy"])
    (message,) = encoder.sqs.receive_message(QueueUrl=encoder.queue_url, WaitTimeSeconds=1)["Messages"]
    encoder.sqs.change_message_visibility(QueueUrl=encoder.queue_url,
                                          ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=300)
    encoder.sqs.send_message(QueueUrl=encoder.dlq_url, MessageBody=message["Body"])
    encoder.sqs.delete_message(QueueUrl=encoder.queue_url, ReceiptHandle=message["ReceiptHandle"])

    assert encoder.s3.head_object(Bucket=IN, Key="uploads/clip.mov")["ContentLength"] == len(b"source")
    assert encoder.s3.get_object(Bucket=IN, Key="uploads/clip.mov")["Body"].read() == b"source"
    encoder.s3.put_object(Bucket=OUT, Key="renditions/clip/720p.mp4", Body=b"rendition")
    encoder.s3.head_object(Bucket=OUT, Key="renditions/clip/720p.mp4")  # the duplicate check
    # s3:ListBucket (what makes a missing rendition a 404). No Prefix with a "/": moto 5.2 then
    # miscalculates the signature of the request (SignatureDoesNotMatch), a moto bug.
    encoder.s3.list_objects_v2(Bucket=OUT, MaxKeys=1)
    multipart_upload(encoder.s3, OUT, "renditions/clip/1080p.mp4")
    # A split (SPLIT_SECONDS): the plan stored tagged (the chunks' lifecycle rule), its chunk
    # messages sent to its own queue, and the chunk folder removed once it is stitched.
    chunk_key = "renditions/clip/chunks/p-0123456789abcdef/plan.json"
    encoder.s3.put_object(Bucket=OUT, Key=chunk_key, Body=b"{}", Tagging="video-encoding=split")
    chunk = json.loads(message["Body"]) | {"chunk": {"plan": "p-0123456789abcdef", "index": 0, "count": 2}}
    encoder.sqs.send_message(QueueUrl=encoder.queue_url, MessageBody=json.dumps(chunk))
    encoder.s3.delete_object(Bucket=OUT, Key=chunk_key)

    # It cannot read the dead letters, or touch anything beyond its prefixes.
    assert denied(encoder.sqs.receive_message, QueueUrl=encoder.dlq_url)
    assert denied(encoder.sqs.purge_queue, QueueUrl=encoder.queue_url)
    assert denied(encoder.sqs.set_queue_attributes, QueueUrl=encoder.queue_url,
                  Attributes={"VisibilityTimeout": "0"})
    assert denied(encoder.s3.get_object, Bucket=IN, Key="private/secret.mov")
    assert denied(encoder.s3.put_object, Bucket=IN, Key="uploads/clip.mov", Body=b"overwrite")
    assert denied(encoder.s3.get_object, Bucket=OUT, Key="elsewhere/report.txt")
    assert denied(encoder.s3.put_object, Bucket=OUT, Key="elsewhere/x", Body=b"x")
    assert denied(encoder.s3.delete_object, Bucket=OUT, Key="elsewhere/report.txt")
    assert denied(encoder.s3.delete_object, Bucket=IN, Key="uploads/clip.mov")
    assert denied(encoder.s3.head_object, Bucket=IN, Key="private/secret.mov")


def notice(request_id: str, outcome: str = "processed") -> str:
    return json.dumps({"request_id": request_id, "video_id": "clip", "outcome": outcome})


def test_encoder_may_send_completion_notices_but_not_read_them(probes):
    encoder = probes["video-encoding-encoder"]
    encoder.sqs.send_message(QueueUrl=encoder.results_url, MessageBody=notice("enc-1"))

    # Sending is all: it reads no notices, and sends nowhere but the results queue, the DLQ and
    # its own queue (a split's chunk and stitch messages).
    assert denied(encoder.sqs.receive_message, QueueUrl=encoder.results_url, WaitTimeSeconds=1)
    assert denied(encoder.sqs.get_queue_attributes, QueueUrl=encoder.results_url, AttributeNames=["All"])
    assert denied(encoder.sqs.purge_queue, QueueUrl=encoder.results_url)
    assert denied(encoder.sqs.send_message, QueueUrl=encoder.other_url, MessageBody=notice("enc-2"))
    # The producer, which may read the queue, sees the notice: it did arrive.
    producer = probes["video-encoding-producer"]
    bodies = drain_notices(producer)
    assert notice("enc-1") in bodies


def drain_notices(probe) -> list[str]:
    """Receives and deletes every notice on the results queue, as the producer; returns the bodies."""
    bodies = []
    while True:
        messages = probe.sqs.receive_message(QueueUrl=probe.results_url, MaxNumberOfMessages=10,
                                             WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            probe.sqs.delete_message(QueueUrl=probe.results_url, ReceiptHandle=message["ReceiptHandle"])
            bodies.append(message["Body"])


def test_producer_may_wait_for_notices_but_not_send_them(probes):
    producer = probes["video-encoding-producer"]
    encoder = probes["video-encoding-encoder"]
    drain_notices(producer)
    encoder.sqs.send_message(QueueUrl=encoder.results_url, MessageBody=notice("theirs"))

    # producer --wait: long-poll, give back a notice of someone else's request (the producer
    # leaves it hidden 5 s; 0 here, so that the test need not wait)...
    (message,) = producer.sqs.receive_message(QueueUrl=producer.results_url, WaitTimeSeconds=1)["Messages"]
    assert message["Body"] == notice("theirs")
    producer.sqs.change_message_visibility(QueueUrl=producer.results_url,
                                           ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    # ...which is visible again for the producer it belongs to, who deletes it.
    (again,) = producer.sqs.receive_message(QueueUrl=producer.results_url, WaitTimeSeconds=1)["Messages"]
    assert again["Body"] == notice("theirs")
    producer.sqs.delete_message(QueueUrl=producer.results_url, ReceiptHandle=again["ReceiptHandle"])

    # It cannot forge a notice, read the queue's attributes (not needed to wait), or take requests.
    assert denied(producer.sqs.send_message, QueueUrl=producer.results_url, MessageBody=notice("forged"))
    assert denied(producer.sqs.get_queue_attributes, QueueUrl=producer.results_url, AttributeNames=["All"])
    assert denied(producer.sqs.purge_queue, QueueUrl=producer.results_url)
    assert denied(producer.sqs.receive_message, QueueUrl=producer.queue_url, WaitTimeSeconds=1)
    assert denied(producer.sqs.receive_message, QueueUrl=producer.other_url, WaitTimeSeconds=1)
    encoder.sqs.send_message(QueueUrl=encoder.results_url, MessageBody=notice("kept"))
    (kept,) = producer.sqs.receive_message(QueueUrl=producer.results_url, WaitTimeSeconds=1)["Messages"]
    assert denied(producer.sqs.delete_message, QueueUrl=producer.queue_url, ReceiptHandle=kept["ReceiptHandle"])
    producer.sqs.delete_message(QueueUrl=producer.results_url, ReceiptHandle=kept["ReceiptHandle"])

    # Nobody else reads the notices.
    reader = probes["video-encoding-keda-reader"]
    assert denied(reader.sqs.receive_message, QueueUrl=reader.results_url, WaitTimeSeconds=1)


# Operators that may do only the first steps of create-results-queue.sh: name -> SQS actions.
PARTIAL_OPERATORS = {
    "operator-no-sqs": [],
    "operator-lookup-only": ["sqs:GetQueueUrl"],
    "operator-no-attributes": ["sqs:GetQueueUrl", "sqs:CreateQueue"],
    "operator-read-only": ["sqs:GetQueueUrl", "sqs:CreateQueue", "sqs:GetQueueAttributes"],
}


@pytest.mark.parametrize("operator, queue, message", [
    ("operator-no-sqs", RESULTS, f"cannot look up queue {RESULTS}"),
    ("operator-lookup-only", "results-not-there-yet", "cannot create queue results-not-there-yet"),
    ("operator-no-attributes", RESULTS, "cannot read the attributes of"),
    ("operator-read-only", RESULTS, "cannot set the attributes of"),
])
def test_create_results_queue_names_the_step_it_was_refused(probes, operator, queue, message):
    """Run by someone allowed less than it needs, the script stops at the first refused call,
    shows AWS's error and says what it could not do; stdout (the URL) stays empty."""
    probe = probes[operator]
    env = probe.server.env(AWS_ACCESS_KEY_ID=probe.key_id, AWS_SECRET_ACCESS_KEY=probe.secret,
                           RESULT_QUEUE_NAME=queue)
    result = run_script("create-results-queue.sh", env, check=False)
    assert result.returncode != 0, result.stderr
    assert message in result.stderr
    assert "AccessDenied" in result.stderr, "AWS's own error is shown"
    assert result.stdout == ""


def test_encoder_may_list_the_input_bucket_within_its_prefix(probes):
    """s3:ListBucket on the input bucket is what makes S3 answer HeadObject on a missing source
    with 404 (the encoder rejects the request at once) rather than 403 (retried until the DLQ).

    moto checks the action and the bucket ARN but ignores the StringLike condition that limits
    the grant to the input prefix (moto 5.2 evaluates StringEquals only), and answers a missing
    key with 404 whatever the caller may list; test_aws_policies.py checks the condition itself.
    What moto can show: the grant names the input bucket, and no other."""
    encoder = probes["video-encoding-encoder"]
    encoder.s3.list_objects_v2(Bucket=IN, MaxKeys=1)
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        encoder.s3.head_object(Bucket=IN, Key="uploads/never-uploaded.mov")
    assert missing.value.response["Error"]["Code"] in {"404", "NoSuchKey", "NotFound"}
    assert denied(probes["video-encoding-producer"].s3.list_objects_v2, Bucket=IN)
    assert denied(probes["video-encoding-keda-reader"].s3.list_objects_v2, Bucket=IN)


def test_keda_reader_may_only_read_the_queue_length(probes):
    reader = probes["video-encoding-keda-reader"]
    attributes = reader.sqs.get_queue_attributes(
        QueueUrl=reader.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert set(attributes) == {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}

    assert denied(reader.sqs.receive_message, QueueUrl=reader.queue_url)
    assert denied(reader.sqs.send_message, QueueUrl=reader.queue_url, MessageBody="x")
    assert denied(reader.sqs.get_queue_attributes, QueueUrl=reader.dlq_url, AttributeNames=["All"])
    assert denied(reader.s3.list_objects_v2, Bucket=OUT)


def test_only_the_keda_operator_role_may_assume_the_reader_role(probes):
    # The operator's policy alone is not enough: the reader role's trust policy names the
    # keda-operator role, so any other principal carrying that policy is still refused.
    operator_policy_holder = probes["video-encoding-keda-operator-assume-reader"]
    assert denied(operator_policy_holder.sts.assume_role,
                  RoleArn=f"arn:aws:iam::{MOTO_ACCOUNT}:role/video-encoding-keda-reader",
                  RoleSessionName="probe")
    assert denied(operator_policy_holder.sqs.get_queue_attributes,
                  QueueUrl=operator_policy_holder.queue_url, AttributeNames=["All"])
