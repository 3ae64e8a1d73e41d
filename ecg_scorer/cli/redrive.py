"""``ecg-scorer redrive``: move dead-letter messages back to the scoring queue, with SQS's own
message move task against AWS or a receive-send-delete loop against emulators."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlsplit

from ecg_scorer import render
from ecg_scorer.cli.context import CliError, Context


def redrive(
    sqs: Any,
    source_url: str,
    target_url: str,
    limit: int | None = None,
    wait_seconds: int = 1,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Move messages from the DLQ back to the scoring queue; returns how many moved.

    Each message is deleted from the source only after the target accepted it, so a failure
    part-way loses nothing (at worst a message is scored twice, which the store tolerates).
    """
    if source_url == target_url:
        raise ValueError("source and target queue are the same")
    moved = 0
    while limit is None or moved < limit:
        wanted = 10 if limit is None else min(10, limit - moved)
        messages = sqs.receive_message(
            QueueUrl=source_url,
            MaxNumberOfMessages=wanted,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        entries = []
        for n, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(n), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        sent = sqs.send_message_batch(QueueUrl=target_url, Entries=entries)
        accepted = {s["Id"] for s in sent.get("Successful", [])}
        done = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
            for n, m in enumerate(messages)
            if str(n) in accepted
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=source_url, Entries=done)
        moved += len(done)
        if progress:
            progress(moved)
        if sent.get("Failed"):
            reasons = sorted({f.get("Code", "?") for f in sent["Failed"]})
            raise CliError(
                f"moved {moved}; the scoring queue refused {len(sent['Failed'])} "
                f"({', '.join(reasons)}); they stay in the DLQ"
            )
    return moved


def queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def redrive_move_task(
    sqs: Any,
    source_url: str,
    target_url: str,
    timeout_s: float = 300.0,
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Move the DLQ back with SQS's own message move task and wait for it to finish.

    SQS moves the messages server-side; the count is the task's
    ApproximateNumberOfMessagesMoved once it is COMPLETED.
    """
    if source_url == target_url:
        raise ValueError("source and target queue are the same")
    source_arn = queue_arn(sqs, source_url)
    sqs.start_message_move_task(SourceArn=source_arn, DestinationArn=queue_arn(sqs, target_url))
    deadline = clock() + timeout_s
    while True:
        # Newest first, and only one task may run per source queue: the first is ours.
        tasks = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=1)["Results"]
        task = tasks[0] if tasks else {}
        status = task.get("Status", "RUNNING")
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if status == "COMPLETED":
            return moved
        if status in {"FAILED", "CANCELLED", "CANCELLING"}:
            reason = task.get("FailureReason") or status.lower()
            raise CliError(f"the SQS move task stopped after moving {moved}: {reason}")
        if clock() >= deadline:
            raise CliError(
                f"the SQS move task is still running after {timeout_s:.0f} s ({moved} moved so "
                f"far); it carries on in SQS: aws sqs list-message-move-tasks --source-arn "
                f"{source_arn}"
            )
        sleep(poll_s)


def runs_on_aws(sqs: Any) -> bool:
    """True when the client talks to SQS itself, not to an emulator such as moto's server."""
    host = urlsplit(str(sqs.meta.endpoint_url)).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def cmd_redrive(ctx: Context, out: TextIO) -> int:
    source, target = ctx.name("dlq_url"), ctx.name("queue_url")
    sqs = ctx.client("sqs")
    method = ctx.args.method
    if method == "move-task" and ctx.args.max_messages:
        raise ValueError("--max-messages needs --method loop (an SQS move task moves everything)")
    if method == "auto":
        # SQS's move task where it exists; emulators (the local stack's moto) lack it.
        use_task = runs_on_aws(sqs) and not ctx.args.max_messages
        method = "move-task" if use_task else "loop"
    if method == "move-task":
        moved = redrive_move_task(sqs, source, target, timeout_s=ctx.args.timeout)
    else:
        moved = redrive(
            sqs, source, target, limit=ctx.args.max_messages, wait_seconds=ctx.args.wait_seconds
        )
    out.write(f"moved {render.plural(moved, 'message')} from the DLQ to the scoring queue\n")
    return 0
