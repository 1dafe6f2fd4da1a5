"""The local overlay's emulator seeding, run for real against moto_server.

The seed container's script and settings are taken from the rendered overlay, and the queue
URL the encoders get from the ConfigMap must reach the queue it creates.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import K8S, find, require_module

SEED = K8S / "overlays" / "local" / "seed.py"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}", pytrace=False)


@pytest.fixture()
def moto_endpoint():
    require_module("moto.server", 'moto[server]')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # `python -m moto.server` rather than the moto_server script: a `pip install --user` puts
    # that in ~/.local/bin, which need not be on PATH.
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening():
        with socket.socket() as client:
            return client.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, 30, "moto_server to listen")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture()
def seeded(rendered, moto_endpoint, tmp_path):
    """seed.py running with the seed container's environment, against moto_endpoint."""
    emulator = find(rendered["local"], "Deployment", "aws-emulator")
    seed = next(c for c in emulator["spec"]["template"]["spec"]["containers"] if c["name"] == "seed")
    marker = tmp_path / "seeded"
    env = {e["name"]: e["value"] for e in seed["env"]}
    env.update(PATH=os.environ["PATH"], EMULATOR_URL=moto_endpoint, SEED_MARKER=str(marker),
               SEED_INTERVAL_SECONDS="0.5")
    process = subprocess.Popen([sys.executable, str(SEED)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: marker.exists() or process.poll() is not None, 30, "the seed to finish")
        if process.poll() is not None:
            pytest.fail(f"seed.py exited {process.returncode}:\n{process.stdout.read()}", pytrace=False)
        yield env
    finally:
        process.terminate()
        process.wait(timeout=10)


def clients(endpoint: str, region: str):
    boto3 = require_module("boto3", "boto3")
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name=region)
    return session.client("sqs", endpoint_url=endpoint), session.client("s3", endpoint_url=endpoint)


def test_seed_creates_what_the_local_overlay_points_at(rendered, producer_job, moto_endpoint, seeded):
    config = find(rendered["local"], "ConfigMap", "video-encoding-config")["data"]
    sqs, s3 = clients(moto_endpoint, config["AWS_REGION"])

    # The encoders' QUEUE_URL (host aws-emulator:5000) reaches the seeded queue through the endpoint.
    attributes = sqs.get_queue_attributes(QueueUrl=config["QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == config["VISIBILITY_TIMEOUT_SECONDS"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":video-encode-requests-dlq")
    assert int(redrive["maxReceiveCount"]) >= 1
    # The encoders' and the waiting producer's RESULT_QUEUE_URL reaches the seeded results queue,
    # which has no dead-letter queue (give-backs count as receives).
    results = sqs.get_queue_attributes(QueueUrl=config["RESULT_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    assert "RedrivePolicy" not in results

    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    output_bucket = urlparse(config["OUTPUT_URI"]).netloc
    source = next(e["value"] for e in producer_job["spec"]["template"]["spec"]["containers"][0]["env"]
                  if e["name"] == "SOURCE")
    assert {output_bucket, urlparse(source).netloc} <= buckets


def test_seed_recreates_what_the_emulator_lost(rendered, moto_endpoint, seeded):
    config = find(rendered["local"], "ConfigMap", "video-encoding-config")["data"]
    sqs, s3 = clients(moto_endpoint, config["AWS_REGION"])
    sqs.delete_queue(QueueUrl=config["QUEUE_URL"])
    sqs.delete_queue(QueueUrl=config["RESULT_QUEUE_URL"])
    output_bucket = urlparse(config["OUTPUT_URI"]).netloc
    s3.delete_bucket(Bucket=output_bucket)

    def restored():
        names = {Path(url).name for url in sqs.list_queues().get("QueueUrls", [])}
        buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        return {"video-encode-requests", "video-encode-results"} <= names and output_bucket in buckets

    wait_for(restored, 15, "the queues and bucket to be recreated")
