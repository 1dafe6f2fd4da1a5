"""Keeps the emulator's queue, dead-letter queue, results queue and buckets in existence.

Runs beside moto in the aws-emulator pod, with the boto3 that the moto image already ships.
Creates what is missing, then checks again every 30 s, because moto keeps its state in memory
and loses it when it restarts. /tmp/seeded marks the container ready. (EMULATOR_URL,
SEED_MARKER and SEED_INTERVAL_SECONDS exist for tests/infra, which runs it against moto_server.)
"""

import json
import os
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

ENDPOINT = os.environ.get("EMULATOR_URL", "http://127.0.0.1:5000")
REGION = os.environ["AWS_REGION"]
QUEUE = os.environ["QUEUE_NAME"]
DLQ = os.environ["DLQ_NAME"]
RESULT_QUEUE = os.environ["RESULT_QUEUE_NAME"]
VISIBILITY = os.environ["VISIBILITY_TIMEOUT_SECONDS"]
MAX_RECEIVE = os.environ["MAX_RECEIVE_COUNT"]
BUCKETS = os.environ["BUCKETS"].split()
MARKER = os.environ.get("SEED_MARKER", "/tmp/seeded")
INTERVAL = float(os.environ.get("SEED_INTERVAL_SECONDS", "30"))

session = boto3.session.Session(
    aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
)
config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1})
sqs = session.client("sqs", endpoint_url=ENDPOINT, config=config)
s3 = session.client("s3", endpoint_url=ENDPOINT, config=config)


def queue_url(name):
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as err:
        if "NonExistentQueue" in str(err) or "QueueDoesNotExist" in str(err):
            return None
        raise


def ensure_queues():
    dlq_url = queue_url(DLQ)
    if dlq_url is None:
        dlq_url = sqs.create_queue(QueueName=DLQ)["QueueUrl"]
        print(f"created queue {DLQ}", flush=True)
    if queue_url(QUEUE) is None:
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE}
        sqs.create_queue(
            QueueName=QUEUE,
            Attributes={"VisibilityTimeout": VISIBILITY, "RedrivePolicy": json.dumps(redrive)},
        )
        print(f"created queue {QUEUE}", flush=True)
    # No dead-letter queue: a waiting producer gives back the notices of others' requests, and
    # each give-back counts as a receive (as scripts/aws/create-results-queue.sh explains).
    if queue_url(RESULT_QUEUE) is None:
        attributes = {"FifoQueue": "true"} if RESULT_QUEUE.endswith(".fifo") else {}
        sqs.create_queue(QueueName=RESULT_QUEUE, Attributes=attributes)
        print(f"created queue {RESULT_QUEUE}", flush=True)


def ensure_buckets():
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in BUCKETS:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
            print(f"created bucket {bucket}", flush=True)


while True:
    try:
        ensure_queues()
        ensure_buckets()
        open(MARKER, "w").close()
    except (BotoCoreError, ClientError) as err:
        # Usually moto still starting up; not ready until the next round succeeds.
        print(f"emulator not seeded yet: {err}", flush=True)
        if os.path.exists(MARKER):
            os.remove(MARKER)
        time.sleep(2)
        continue
    time.sleep(INTERVAL)
