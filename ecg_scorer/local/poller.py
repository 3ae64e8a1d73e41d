"""The Lambda SQS event source mapping, locally: long-poll the queue, invoke the function.

``python -m ecg_scorer.local.poller --queue-url URL ...`` does what the Lambda service does
for an SQS event source, with the function's environment taken from this process's:

- receive up to ``--batch-size`` messages (waiting up to ``--batching-window`` seconds to
  fill a batch) and build the event exactly as Lambda does (``Records`` with ``messageId``,
  ``receiptHandle``, ``body``, ``attributes``, ``messageAttributes``, ``md5OfBody``,
  ``eventSource``, ``eventSourceARN``, ``awsRegion``);
- invoke the function in one of up to ``--max-concurrency`` execution environments
  (`function`: the ``sam build`` artifact run by the runtime's Python, with the function's
  memory size and timeout enforced), so batches run side by side as the event source's
  MaximumConcurrency allows;
- with ``ReportBatchItemFailures``, delete every message of the batch but those listed in
  ``batchItemFailures``; a function error (the handler raised, timed out, ran out of memory,
  crashed) or an invalid response fails the whole batch; without it, a batch that returns is
  deleted whole;
- failed messages are left alone: they come back after the visibility timeout, and SQS moves
  them to the DLQ after ``maxReceiveCount`` receives.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from ecg_scorer.local import log_to_stderr
from ecg_scorer.local.function import FunctionCode, FunctionRuntime

log = logging.getLogger("ecg_scorer.local.poller")


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
    duration_ms: float = 0.0
    max_memory_mb: float = 0.0


@dataclass
class Poller:
    sqs: Any
    queue_url: str
    runtime: Any  # a FunctionRuntime, or anything with its invoke(event, timeout_s)
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

    def process(self, messages: list[dict[str, Any]], runtime: Any = None) -> BatchOutcome:
        """Invoke the function on one batch (in ``runtime``, default `runtime`) and delete
        what succeeded."""
        event = {"Records": [sqs_record(m, self.queue_arn, self.region) for m in messages]}
        ids = {m["MessageId"] for m in messages}
        invocation = (runtime or self.runtime).invoke(event, self.timeout_s)
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
        return BatchOutcome(
            len(messages),
            len(done),
            sorted(keep),
            invocation.error,
            invocation.duration_ms,
            invocation.max_memory_mb,
        )

    def poll_once(self) -> BatchOutcome | None:
        """Receive one batch and invoke the function on it, here and now."""
        messages = self.receive()
        if not messages:
            return None
        outcome = self.process(messages)
        self.report(outcome)
        return outcome

    def report(self, outcome: BatchOutcome) -> None:
        log.info(
            "batch of %d: %d deleted, %d left for retry: [%s]%s",
            outcome.received,
            outcome.deleted,
            len(outcome.failed),
            ",".join(outcome.failed),
            f" ({outcome.error})" if outcome.error else "",
        )
        log.info(
            "REPORT Duration: %.0f ms Max Memory Used: %.0f MB",
            outcome.duration_ms,
            outcome.max_memory_mb,
        )

    def run(self, pool: list[Any], keep_going: Callable[[], bool]) -> None:
        """Receive batches and invoke the function on each in the first idle environment of
        ``pool``: up to len(pool) invocations at once, as MaximumConcurrency allows. The most
        recently used environment is reused first (it is warm); the others start only when
        batches overlap. Raises after 5 failed receives in a row (the queue is gone)."""
        idle: queue.LifoQueue[Any] = queue.LifoQueue()
        for runtime in reversed(pool):
            idle.put(runtime)

        def invoke(runtime: Any, messages: list[dict[str, Any]]) -> None:
            try:
                self.report(self.process(messages, runtime))
            except Exception:
                log.exception("batch failed; its messages come back after the visibility timeout")
            finally:
                idle.put(runtime)

        workers = ThreadPoolExecutor(max_workers=len(pool), thread_name_prefix="invoke")
        failures_in_a_row = 0
        try:
            while keep_going():
                try:
                    runtime = idle.get(timeout=1.0)
                except queue.Empty:
                    continue  # every environment is busy
                try:
                    messages = self.receive()
                    failures_in_a_row = 0
                except Exception:
                    idle.put(runtime)
                    failures_in_a_row += 1
                    log.exception("polling failed")
                    if failures_in_a_row >= 5:
                        raise
                    time.sleep(1.0)
                    continue
                if messages:
                    workers.submit(invoke, runtime, messages)
                else:
                    idle.put(runtime)
        finally:
            # Leave at once, even mid-invocation: the caller stops the environments, and the
            # batches in flight come back after their visibility timeout, as when Lambda
            # stops a function.
            workers.shutdown(wait=False, cancel_futures=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--python", type=Path, required=True, help="the runtime's interpreter")
    parser.add_argument("--code-dir", type=Path, required=True, help="LAMBDA_TASK_ROOT")
    parser.add_argument("--handler", default="scorer.app.lambda_handler")
    parser.add_argument("--timeout", type=float, default=60.0, help="function timeout, s")
    parser.add_argument("--memory", type=int, default=1024, help="function memory, MB")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--batching-window", type=float, default=0.0)
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--report-batch-item-failures", action="store_true")
    parser.add_argument("--wait-seconds", type=int, default=1, help="long-poll wait per call")
    parser.add_argument("--function-log", type=Path, help="where the function's output goes")
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    log_to_stderr(log, "poller")
    log_to_stderr(logging.getLogger("ecg_scorer.local.function"), "poller")

    def stop(signum: int, frame: Any) -> None:
        # Leave at once, even mid-invocation: the finally below kills the functions'
        # processes, and the batches in flight come back after their visibility timeout, as
        # when Lambda stops a function.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    code = FunctionCode(args.python, args.code_dir, args.handler, "", True)
    # The function's environment is this process's, minus what only the poller uses.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pool = [
        FunctionRuntime(code, env, args.memory, args.function_log)
        for _ in range(max(1, args.max_concurrency))
    ]
    region = os.environ.get("AWS_REGION", "us-east-1")
    try:
        # The first environment's cold start reads the function's configuration: a missing
        # variable or package fails here, before any message is taken.
        try:
            pool[0].start()
        except RuntimeError as e:
            log.error("%s", e)
            return 1
        log.info("function runs on Python %s from %s", pool[0].python_version, args.code_dir)
        poller = Poller(
            sqs=boto3.client("sqs"),
            queue_url=args.queue_url,
            runtime=pool[0],
            timeout_s=args.timeout,
            batch_size=args.batch_size,
            batching_window_s=args.batching_window,
            report_batch_item_failures=args.report_batch_item_failures,
            wait_seconds=args.wait_seconds,
            region=region,
        )
        if args.ready_file:
            tmp = args.ready_file.with_suffix(".tmp")
            ready = {"pid": os.getpid(), "python": pool[0].python_version}
            tmp.write_text(json.dumps(ready), encoding="utf-8")
            tmp.replace(args.ready_file)
        log.info(
            "polling %s for %s, up to %d invocations at once",
            args.queue_url,
            args.handler,
            len(pool),
        )
        parent = os.getppid()
        try:
            poller.run(pool, keep_going=lambda: os.getppid() == parent)
        except Exception:
            return 1  # the queue is unreachable (e.g. the stack is stopping); logged above
    finally:
        for runtime in pool:
            runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
