"""The Lambda SQS event source mapping, locally: long-poll the queue, call the handler.

``python -m ecg_scorer.local.poller --queue-url URL ...`` does what the Lambda service does
for an SQS event source, with the function's environment taken from this process's:

- receive up to ``--batch-size`` messages (waiting up to ``--batching-window`` seconds to
  fill a batch) and build the event exactly as Lambda does (``Records`` with ``messageId``,
  ``receiptHandle``, ``body``, ``attributes``, ``messageAttributes``, ``md5OfBody``,
  ``eventSource``, ``eventSourceARN``, ``awsRegion``);
- call the unchanged handler (``scorer.app.lambda_handler``) with a Lambda-like context;
- with ``ReportBatchItemFailures``, delete every message of the batch but those listed in
  ``batchItemFailures``; a handler exception or an invalid response fails the whole batch;
  without it, a batch that returns is deleted whole;
- failed messages are left alone: they come back after the visibility timeout, and SQS moves
  them to the DLQ after ``maxReceiveCount`` receives.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

log = logging.getLogger("ecg_scorer.local.poller")

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The attributes and method of the Lambda Python runtime's context object."""

    function_name: str
    memory_limit_in_mb: str  # the runtime passes it as the env string
    timeout_s: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    region: str = "us-east-1"
    account: str = "123456789012"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s
        self.invoked_function_arn = (
            f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name}"
        )
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/[{self.function_version}]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the Lambda SQS event, from a ReceiveMessage message."""
    attributes = {k: str(v) for k, v in (message.get("Attributes") or {}).items()}
    message_attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        message_attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType"),
        }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_ids(response: Any, batch_ids: set[str]) -> set[str]:
    """The message ids to keep, per Lambda's rules for ReportBatchItemFailures: an invalid
    response (unknown, empty or missing itemIdentifier) fails the whole batch."""
    if response is None:
        return set()
    if not isinstance(response, dict):
        return set(batch_ids)
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return set(batch_ids)
    ids: set[str] = set()
    for failure in failures:
        item = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(item, str) or item not in batch_ids:
            return set(batch_ids)
        ids.add(item)
    return ids


@dataclass
class BatchOutcome:
    received: int
    deleted: int
    failed: list[str]  # message ids left in the queue
    error: str | None = None


@dataclass
class Poller:
    sqs: Any
    queue_url: str
    handler: Handler
    function_name: str
    memory_mb: int
    timeout_s: float
    batch_size: int = 10
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = True
    wait_seconds: int = 1
    region: str = "us-east-1"
    queue_arn: str = ""
    # Asked between receives: on shutdown, stop filling the batch and hand over what is in.
    stop_requested: Callable[[], bool] = lambda: False

    def __post_init__(self) -> None:
        if not self.queue_arn:
            attrs = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["QueueArn"]
            )
            self.queue_arn = attrs["Attributes"]["QueueArn"]

    def receive(self) -> list[dict[str, Any]]:
        """Up to batch_size messages; keep polling until the batch is full or the batching
        window has passed (SQS returns at most 10 per call)."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.batching_window_s
        while len(messages) < self.batch_size:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                WaitTimeSeconds=self.wait_seconds if not messages else 0,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            # A message whose visibility timeout ran out while the batch was filling comes
            # back with a new receipt handle: keep one copy, with the newest handle.
            known = {m["MessageId"]: i for i, m in enumerate(messages)}
            for message in got:
                if message["MessageId"] in known:
                    messages[known[message["MessageId"]]] = message
                else:
                    messages.append(message)
            if not messages or time.monotonic() >= deadline or self.stop_requested():
                break
            if not got:
                time.sleep(0.05)
        return messages

    def process(self, messages: list[dict[str, Any]]) -> BatchOutcome:
        event = {"Records": [sqs_record(m, self.queue_arn, self.region) for m in messages]}
        ids = {m["MessageId"] for m in messages}
        context = LambdaContext(self.function_name, str(self.memory_mb), self.timeout_s)
        error = None
        started = time.monotonic()
        try:
            response = self.handler(event, context)
            keep = failed_ids(response, ids) if self.report_batch_item_failures else set()
        except Exception as e:  # an invocation error fails the whole batch, as in Lambda
            error = f"{type(e).__name__}: {e}"
            log.exception("handler raised; the whole batch returns to the queue")
            keep = set(ids)
        elapsed = time.monotonic() - started
        if elapsed > self.timeout_s:
            # Lambda would have stopped the function and retried the whole batch.
            log.warning("invocation took %.1f s, over the %s s timeout", elapsed, self.timeout_s)
        done = [m for m in messages if m["MessageId"] not in keep]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
        return BatchOutcome(len(messages), len(done), sorted(keep), error)

    def poll_once(self) -> BatchOutcome | None:
        messages = self.receive()
        if not messages:
            return None
        outcome = self.process(messages)
        log.info(
            "batch of %d: %d deleted, %d left for retry: [%s]%s",
            outcome.received,
            outcome.deleted,
            len(outcome.failed),
            ",".join(outcome.failed),
            f" ({outcome.error})" if outcome.error else "",
        )
        return outcome


def load_handler(dotted: str) -> Handler:
    module_name, _, attr = dotted.rpartition(".")
    handler: Handler = getattr(importlib.import_module(module_name), attr)
    return handler


def _log_to_stderr(logger: logging.Logger, name: str) -> None:
    """This tool's own lines, without configuring the root logger (which the code under test
    may configure as it does in its real runtime)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--handler", default="scorer.app.lambda_handler")
    parser.add_argument("--function-name", default="ecg-scorer-local-score")
    parser.add_argument("--timeout", type=float, default=60.0, help="function timeout, s")
    parser.add_argument("--memory", type=int, default=1024, help="function memory, MB")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--batching-window", type=float, default=0.0)
    parser.add_argument("--report-batch-item-failures", action="store_true")
    parser.add_argument("--wait-seconds", type=int, default=1, help="long-poll wait per call")
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    _log_to_stderr(log, "poller")

    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # Importing the handler reads the function's configuration, as a Lambda cold start does:
    # a missing variable fails here, before any message is taken.
    handler = load_handler(args.handler)
    region = os.environ.get("AWS_REGION", "us-east-1")
    poller = Poller(
        sqs=boto3.client("sqs"),
        queue_url=args.queue_url,
        handler=handler,
        function_name=args.function_name,
        memory_mb=args.memory,
        timeout_s=args.timeout,
        batch_size=args.batch_size,
        batching_window_s=args.batching_window,
        report_batch_item_failures=args.report_batch_item_failures,
        wait_seconds=args.wait_seconds,
        region=region,
        stop_requested=lambda: stopping,
    )
    parent = os.getppid()
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid()}), encoding="utf-8")
        tmp.replace(args.ready_file)
    log.info("polling %s for %s", args.queue_url, args.handler)
    failures_in_a_row = 0
    while not stopping and os.getppid() == parent:
        try:
            poller.poll_once()
            failures_in_a_row = 0
        except Exception:
            # The queue itself is unreachable (e.g. the stack is stopping): back off.
            failures_in_a_row += 1
            log.exception("polling failed")
            if failures_in_a_row >= 5:
                return 1
            time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
