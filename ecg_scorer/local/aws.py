"""moto's server for S3, SQS and DynamoDB, the template's resources inside it, and the
environment variables that point an AWS SDK at it (and never at AWS).

moto's server delivers S3 event notifications to SQS by itself (``moto/s3/notifications.py``
sends an ``ObjectCreated`` message to the configured queue on every put, in the same
process), so the bucket is configured exactly as in AWS and nothing emulates that hop. moto
leaves ``sequencer`` and ``versionId`` out of ``s3.object``; `behave_as_aws` puts them in as
S3 does: the object's version (the bucket is versioned, as in the template) and a sequencer
that grows with every event, so a re-upload of a key is newer than the upload before it and
is scored again (the function's conditional write compares sequencers). It also sends one
event per multipart upload (moto sends two) and applies UpdateItem under a lock (moto's
threads do not), as AWS does.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import boto3

from ecg_scorer.local import HOST
from ecg_scorer.local.sam_template import (
    REGION,
    LocalNames,
    Resources,
    queue_notifications,
    queue_settings,
    resolve,
    resource_properties,
    table_definition,
)

INGEST_PREFIX = "incoming/"

# The environment that points every AWS SDK in a process at the local stack. The key pair is
# a placeholder (moto accepts any signature); it is set only in the local stack's processes
# and the shell lines it prints, never used against AWS.
_PLACEHOLDER_KEY = "local"
DROP_FROM_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_KEEP_ENV = ("PATH", "HOME", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV", "SYSTEMROOT")


def local_env(moto_url: str | None = None, sagemaker_url: str | None = None) -> dict[str, str]:
    """Environment variables that point boto3 (and the aws CLI) at the local stack."""
    env = {
        "AWS_ACCESS_KEY_ID": _PLACEHOLDER_KEY,
        "AWS_SECRET_ACCESS_KEY": _PLACEHOLDER_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if moto_url:
        env["AWS_ENDPOINT_URL"] = moto_url
    if sagemaker_url:
        env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = sagemaker_url
    return env


def client_env(state: Mapping[str, str]) -> dict[str, str]:
    """Variables for tools talking to a running stack (boto3, the aws CLI, ecg-scorer), from
    the stack's description (`LocalStack.describe`)."""
    env = local_env(state["moto_url"], state["endpoint_url"])
    env["ECG_SCORER_TABLE"] = state["table"]
    env["ECG_SCORER_BUCKET"] = state["bucket"]
    env["ECG_SCORER_QUEUE_URL"] = state["queue_url"]
    env["ECG_SCORER_DLQ_URL"] = state["dead_letter_queue_url"]
    return env


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A clean environment for a child, as a Lambda or a model container starts with: the
    basics of this one (PATH, locale, ...) and ``extra``. Nothing else leaks in, so a user's
    AWS profile, keys or endpoint variables can never reach the local stack's code."""
    env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV or k.startswith("LC_")}
    env.update(extra)
    return env


_sequencer_lock = threading.Lock()
_last_sequencer = 0


def next_sequencer() -> str:
    """A sequencer larger than every one before it (hex, fixed width, like S3's)."""
    global _last_sequencer
    with _sequencer_lock:
        _last_sequencer = max(_last_sequencer + 1, time.time_ns())
        return f"{_last_sequencer:018X}"


def behave_as_aws() -> None:
    """Make moto behave as AWS does where the pipeline depends on it (once per process): S3
    events carry ``versionId`` and ``sequencer``, one event per upload, atomic UpdateItem."""
    from moto.s3 import notifications

    make_event = notifications._get_s3_event
    if getattr(make_event, "behaves_as_aws", False):
        return

    def with_sequencer(event_name: str, bucket: Any, key: Any, notification_id: str) -> Any:
        event = make_event(event_name, bucket, key, notification_id)
        for record in event["Records"]:
            obj = record["s3"]["object"]
            version = getattr(key, "version_id", None)
            if version and version != "null":  # only a versioned bucket's objects have one
                obj.setdefault("versionId", version)
            obj.setdefault("sequencer", next_sequencer())
        return event

    with_sequencer.behaves_as_aws = True  # type: ignore[attr-defined]
    notifications._get_s3_event = with_sequencer

    # moto announces a completed multipart upload twice (ObjectCreated:Put, then
    # CompleteMultipartUpload) where S3 sends one event: keep the second.
    send_event = notifications.send_event

    def once_per_upload(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        put = notifications.S3NotificationEvent.OBJECT_CREATED_PUT_EVENT
        if event_name == put and getattr(key, "multipart", None) is not None:
            return
        send_event(account_id, event_name, bucket, key)

    notifications.send_event = once_per_upload

    atomic_item_updates()


def atomic_item_updates() -> None:
    """DynamoDB applies an UpdateItem atomically; moto does not (its server handles requests
    on threads, and so may a test's handler), so two chunks adding to one job's done set at
    once could lose an addition and the file never get its item. Serialise them, as DynamoDB
    does (once per process)."""
    from moto.dynamodb.models import DynamoDBBackend

    update_item = DynamoDBBackend.update_item
    if getattr(update_item, "atomic", False):
        return
    lock = threading.Lock()

    def atomic_update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return update_item(self, *args, **kwargs)

    atomic_update_item.atomic = True  # type: ignore[attr-defined]
    DynamoDBBackend.update_item = atomic_update_item  # type: ignore[method-assign]


def start_moto() -> tuple[Any, str]:
    """moto's server on a free loopback port, in a thread of this process."""
    from moto.moto_api._internal.models import moto_api_backend
    from moto.server import ThreadedMotoServer

    behave_as_aws()
    # werkzeug would log every request to stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto's state is per process, not per server: start empty even when an earlier stack of
    # this process (a test's, stopped after a failure) left its resources behind.
    moto_api_backend.reset()
    return server, url


def create_resources(
    moto_url: str,
    template: Mapping[str, Any],
    names: LocalNames,
    visibility_timeout_s: int | None = None,
) -> Resources:
    """The bucket with its S3 -> SQS notification, the queues with redrive, the table."""
    env = local_env(moto_url)
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    s3 = session.client("s3", endpoint_url=moto_url)
    sqs = session.client("sqs", endpoint_url=moto_url)
    ddb = session.client("dynamodb", endpoint_url=moto_url)

    settings = queue_settings(template)
    dlq_attrs: dict[str, str] = {}
    dlq_retention = resource_properties(template, "DeadLetterQueue").get("MessageRetentionPeriod")
    if dlq_retention is not None:
        dlq_attrs["MessageRetentionPeriod"] = resolve(dlq_retention, template, {})
    dlq_url = sqs.create_queue(QueueName=names.dead_letter_queue, Attributes=dlq_attrs)["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    attrs = {
        "VisibilityTimeout": str(visibility_timeout_s or settings.visibility_timeout_s),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count}
        ),
    }
    if settings.retention_s is not None:
        attrs["MessageRetentionPeriod"] = str(settings.retention_s)
    queue_url = sqs.create_queue(QueueName=names.queue, Attributes=attrs)["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)

    s3.create_bucket(Bucket=names.bucket)
    versioning = resource_properties(template, "IngestBucket").get("VersioningConfiguration")
    if isinstance(versioning, dict) and versioning.get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=names.bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(
        Bucket=names.bucket,
        NotificationConfiguration={"QueueConfigurations": queue_notifications(template, queue_arn)},
    )
    ddb.create_table(**table_definition(template, names.table))
    ddb.get_waiter("table_exists").wait(TableName=names.table)
    return Resources(
        moto_url=moto_url,
        bucket=names.bucket,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dead_letter_queue_url=dlq_url,
        dead_letter_queue_arn=dlq_arn,
        table=names.table,
    )


def _queue_arn(sqs: Any, url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


def moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


def isolate_from_aws() -> None:
    """Make sure nothing this process does can reach AWS: no profile, no per-service
    endpoint, only the local stack's placeholder keys and region."""
    for name in list(os.environ):
        if name in DROP_FROM_ENV or name.startswith("AWS_ENDPOINT_URL"):
            os.environ.pop(name)
    os.environ.update(local_env())
