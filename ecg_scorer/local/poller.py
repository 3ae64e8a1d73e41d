"""The Lambda SQS event source mapping, locally: long-poll the queue, call the handler.

``python -m ecg_scorer.local.poller --queue-url URL ...`` does what the Lambda service does
for an SQS event source, with the function's environment taken from this process's:

- receive up to ``--batch-size`` messages (waiting up to ``--batching-window`` seconds to
  fill a batch) and build the event exactly as Lambda does (``Records`` with ``messageId``,
  ``receiptHandle``, ``body``, ``attributes``, ``messageAttributes``, ``md5OfBody``,
  ``eventSource``, ``eventSourceARN``, ``awsRegion``);
- call the unchanged handler (``scorer.app.lambda_handler``) with a Lambda-like context, in
  a child process (the function's execution environment: the handler is imported once there,
  the cold start, and kept warm between batches);
- enforce the function's timeout as Lambda does: an invocation still running at the deadline
  is stopped (the child is killed and a fresh one is started for the next batch) and counts
  as failed, so every message of its batch is left to come back after the visibility timeout;
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
import multiprocessing
import os
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import boto3

from ecg_scorer.local import log_to_stderr

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
class Invocation:
    """How one invocation ended, as the Lambda service sees it."""

    response: Any = None
    error: str | None = None  # a function error: the handler raised, timed out or crashed


def _json_default(value: Any) -> Any:
    # The Python runtime's marshaller turns Decimal into a number; anything else it cannot
    # serialise fails the invocation (Runtime.MarshalError).
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _serve(
    conn: Connection, handler_name: str, function_name: str, memory_mb: int, region: str
) -> None:
    """The execution environment's main loop (in the child): import the handler once, then
    run one invocation per event received."""
    # Ctrl-C in a terminal reaches the whole process group: the poller decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        handler = load_handler(handler_name)
    except BaseException as e:  # an init error, as Lambda reports it
        conn.send(("init_error", f"{type(e).__name__}: {e}", traceback.format_exc()))
        return
    conn.send(("ready", None, ""))
    while True:
        try:
            event, timeout_s = conn.recv()
        except (EOFError, OSError):  # the poller is gone
            return
        context = LambdaContext(function_name, str(memory_mb), timeout_s, region=region)
        try:
            response = handler(event, context)
            # What Lambda hands back is the handler's return value serialised as JSON.
            reply: tuple[str, Any, str] = (
                "ok",
                json.loads(json.dumps(response, default=_json_default)),
                "",
            )
        except Exception as e:
            reply = ("error", f"{type(e).__name__}: {e}", traceback.format_exc())
        conn.send(reply)


@dataclass
class FunctionRuntime:
    """The function's execution environment: a child process that imports the handler (the
    cold start) and runs one invocation at a time. An invocation still running at the
    timeout is stopped by killing the child, as Lambda stops the function; the next
    invocation starts a fresh one."""

    handler_name: str
    function_name: str
    memory_mb: int
    region: str = "us-east-1"
    init_timeout_s: float = 120.0
    _process: Any = field(default=None, repr=False)
    _conn: Connection | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the child and wait for the handler's import; RuntimeError if it fails."""
        self.stop()
        # spawn, not fork: the child starts clean (no copied threads or sockets of boto3 or
        # moto), as a new execution environment does.
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_serve,
            args=(child, self.handler_name, self.function_name, self.memory_mb, self.region),
            name=f"{self.function_name}-runtime",
            daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        if not parent.poll(self.init_timeout_s):
            self.stop()
            raise RuntimeError(f"handler {self.handler_name} did not initialise in time")
        try:
            kind, message, trace = parent.recv()
        except EOFError:
            self.stop()
            raise RuntimeError(f"runtime exited while importing {self.handler_name}") from None
        if kind != "ready":
            self.stop()
            raise RuntimeError(
                f"handler {self.handler_name} failed to initialise: {message}\n{trace}"
            )

    def invoke(self, event: dict[str, Any], timeout_s: float) -> Invocation:
        """Run the handler on one event; stop it at ``timeout_s``."""
        if self._conn is None or self._process is None or not self._process.is_alive():
            try:
                self.start()
            except RuntimeError as e:
                return Invocation(error=str(e))
        assert self._conn is not None
        self._conn.send((event, timeout_s))
        if not self._conn.poll(timeout_s):
            self.stop()  # Lambda stops the function and resets its environment
            return Invocation(error=f"Task timed out after {timeout_s:.2f} seconds")
        try:
            kind, payload, trace = self._conn.recv()
        except (EOFError, OSError):
            code = self._process.exitcode if self._process is not None else None
            self.stop()
            return Invocation(error=f"Runtime exited with error: exit code {code}")
        if kind == "ok":
            return Invocation(response=payload)
        log.error("handler raised; the whole batch returns to the queue\n%s", trace.rstrip())
        return Invocation(error=str(payload))

    def stop(self) -> None:
        """Kill the child (if running) and forget it."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(timeout=10)


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
    runtime: Any  # FunctionRuntime, or anything with its invoke(event, timeout_s)
    timeout_s: float
    batch_size: int = 10
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = True
    wait_seconds: int = 1
    region: str = "us-east-1"
    queue_arn: str = ""

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
            if not messages or time.monotonic() >= deadline:
                break
            if not got:
                time.sleep(0.05)
        return messages

    def process(self, messages: list[dict[str, Any]]) -> BatchOutcome:
        event = {"Records": [sqs_record(m, self.queue_arn, self.region) for m in messages]}
        ids = {m["MessageId"] for m in messages}
        invocation = self.runtime.invoke(event, self.timeout_s)
        if invocation.error is not None:
            # A function error (raised, timed out, crashed) fails the whole batch, as in
            # Lambda: nothing is deleted and every message comes back after the visibility
            # timeout, even those the handler had finished before it was stopped.
            keep = set(ids)
        elif self.report_batch_item_failures:
            keep = failed_ids(invocation.response, ids)
        else:
            keep = set()
        done = [m for m in messages if m["MessageId"] not in keep]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
        return BatchOutcome(len(messages), len(done), sorted(keep), invocation.error)

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
    log_to_stderr(log, "poller")

    def stop(signum: int, frame: Any) -> None:
        # Leave at once, even mid-invocation: the finally below kills the function's child
        # process, and the batch in flight comes back after its visibility timeout, as when
        # Lambda stops a function.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    region = os.environ.get("AWS_REGION", "us-east-1")
    runtime = FunctionRuntime(args.handler, args.function_name, args.memory, region)
    # Importing the handler reads the function's configuration, as a Lambda cold start does:
    # a missing variable fails here, before any message is taken.
    try:
        runtime.start()
    except RuntimeError as e:
        log.error("%s", e)
        return 1
    poller = Poller(
        sqs=boto3.client("sqs"),
        queue_url=args.queue_url,
        runtime=runtime,
        timeout_s=args.timeout,
        batch_size=args.batch_size,
        batching_window_s=args.batching_window,
        report_batch_item_failures=args.report_batch_item_failures,
        wait_seconds=args.wait_seconds,
        region=region,
    )
    parent = os.getppid()
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid()}), encoding="utf-8")
        tmp.replace(args.ready_file)
    log.info("polling %s for %s", args.queue_url, args.handler)
    failures_in_a_row = 0
    try:
        while os.getppid() == parent:
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
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
