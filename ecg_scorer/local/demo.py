"""Run the whole pipeline on this machine: ``python -m ecg_scorer.local.demo [run|up|down]``.

``run`` (``make demo``): start the local stack, write the sample files, upload them through
S3, wait until each has a result in the table (or sits in the dead-letter queue), print one
line per file, stop everything. Exits 1 if a file is unaccounted for. ``up`` and ``down``
(``make local-up`` / ``make local-down``) are `daemon`'s; ``samples`` only writes the files.

Everything is wired with environment variables only (``AWS_ENDPOINT_URL`` for moto,
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` for the local endpoint, placeholder credentials), so
the Lambda handler, the endpoint handler and the query tool run exactly as deployed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote_plus

import boto3
from boto3.dynamodb.types import TypeDeserializer
from scorer import schema

from ecg_scorer.local import aws, daemon
from ecg_scorer.local import samples as sample_files
from ecg_scorer.local import stack as local_stack
from ecg_scorer.local.artifacts import what_runs
from ecg_scorer.local.aws import INGEST_PREFIX, moto_version
from ecg_scorer.local.processes import tail
from ecg_scorer.local.stack import ARCHIVE, WORK_DIR, LocalStack

# A failed message comes back after this many seconds (the template's 900 s would outlast
# any demo); 5 receives later it is in the DLQ.
DEMO_VISIBILITY_TIMEOUT_S = 20


def say(message: str) -> None:
    print(message, flush=True)


class Progress:
    """Steps with elapsed time; a line that rewrites itself on a terminal."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.tty = sys.stdout.isatty()
        self._last = ""

    def step(self, message: str) -> None:
        self.done_line()
        say(f"[{time.monotonic() - self.started:5.1f}s] {message}")

    def update(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:5.1f}s]   {message}"
        if self.tty:
            print("\r" + line.ljust(len(self._last)), end="", flush=True)
            self._last = line
        elif message != self._last:
            say(line)
            self._last = message

    def done_line(self) -> None:
        if self.tty and self._last:
            print(flush=True)
        self._last = ""


# ---------------------------------------------------------------------------------------------
# uploads and results


@dataclass
class FileResult:
    sample: sample_files.Sample
    key: str
    item: dict[str, Any] | None = None
    in_dlq: bool = False

    @property
    def item_key(self) -> str:
        """The key whose item tells what became of the file (a WFDB part: its header's)."""
        return INGEST_PREFIX + self.sample.item_path

    @property
    def accounted(self) -> bool:
        return self.item is not None or self.in_dlq

    @property
    def status(self) -> str:
        if self.item is not None:
            return str(self.item.get("status", "?"))
        return "IN DLQ" if self.in_dlq else "MISSING"

    def matches_expectation(self) -> bool:
        expect = self.sample.expect
        if self.item is None:
            return False
        if expect == sample_files.REJECTED:
            return self.status == "REJECTED"
        if expect == sample_files.SCORED:
            return self.status == "SCORED"
        return self.status == "SCORED" and self.item.get("label") == expect


def upload(s3: Any, bucket: str, root: Path, samples: Sequence[sample_files.Sample]) -> list[str]:
    """Upload each sample file to incoming/<site>/<device>/<file>, as a device would."""
    keys = []
    for sample in samples:
        key = INGEST_PREFIX + sample.path
        s3.upload_file(str(root / sample.path), bucket, key)
        keys.append(key)
    return keys


def dlq_keys(sqs: Any, dlq_url: str) -> set[tuple[str, str]]:
    """(bucket, key) of every S3 event in the dead-letter queue (read, left in place)."""
    found: set[tuple[str, str]] = set()
    seen: set[str] = set()
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=2, WaitTimeSeconds=0
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return found
        for message in fresh:
            seen.add(message["MessageId"])
            try:
                records = json.loads(message["Body"]).get("Records", [])
            except (ValueError, AttributeError):
                continue
            for record in records:
                s3 = record.get("s3", {})
                bucket = s3.get("bucket", {}).get("name", "")
                found.add((bucket, unquote_plus(s3.get("object", {}).get("key", ""))))


def find_item(ddb: Any, table: str, bucket: str, key: str, model_version: str) -> dict | None:
    got = ddb.get_item(
        TableName=table,
        Key={"pk": {"S": schema.file_pk(bucket, key)}, "sk": {"S": schema.model_sk(model_version)}},
        ConsistentRead=True,
    ).get("Item")
    if got is None:
        return None
    deserialize = TypeDeserializer().deserialize
    return {k: deserialize(v) for k, v in got.items()}


def wait_for_results(
    stack: LocalStack,
    results: list[FileResult],
    timeout_s: float,
    progress: Progress | None = None,
) -> None:
    """Poll the table (and the DLQ) until every file is accounted for or time runs out."""
    ddb = boto3.client("dynamodb")
    sqs = boto3.client("sqs")
    bucket = stack.resources.bucket
    version = stack.lambda_settings.environment["MODEL_VERSION"]
    deadline = time.monotonic() + timeout_s
    last_dlq_check = 0.0
    while True:
        for result in results:
            if result.item is None:
                result.item = find_item(
                    ddb, stack.resources.table, bucket, result.item_key, version
                )
        if time.monotonic() - last_dlq_check > 2.0:
            in_dlq = dlq_keys(sqs, stack.resources.dead_letter_queue_url)
            for result in results:
                result.in_dlq = result.item is None and bool(
                    {(bucket, result.key), (bucket, result.item_key)} & in_dlq
                )
            last_dlq_check = time.monotonic()
        counts = {s: sum(r.status == s for r in results) for s in ("SCORED", "REJECTED", "IN DLQ")}
        waiting = sum(not r.accounted for r in results)
        if progress is not None:
            progress.update(
                f"{counts['SCORED']} scored, {counts['REJECTED']} rejected, "
                f"{counts['IN DLQ']} in DLQ, {waiting} waiting"
            )
        if waiting == 0 or time.monotonic() > deadline:
            if progress is not None:
                progress.done_line()
            return
        if stack.endpoint_exit_code() is not None:
            if progress is not None:
                progress.done_line()
            raise RuntimeError(
                f"the model server stopped (exit {stack.endpoint_exit_code()}); logs in "
                f"{stack.log_dir}"
            )
        if stack.poller_proc is not None and stack.poller_proc.poll() is not None:
            if progress is not None:
                progress.done_line()
            raise RuntimeError(
                f"the poller stopped (exit {stack.poller_proc.returncode}):\n"
                + tail(stack.log_dir / "poller.log")
            )
        time.sleep(0.5)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal | float):  # probabilities; counts are int below
        return f"{float(value):.3f}"
    return str(value)


def results_table(results: Sequence[FileResult]) -> str:
    """One line per file: file, device, status, probability, label, windows, expected, reason."""
    header = ("file", "device", "status", "prob", "label", "windows", "expected", "reason")
    rows = []
    for r in results:
        item = r.item or {}
        reason = item.get("reason") or ("" if r.item else "no result in the table")
        if r.sample.part_of is not None:  # its record's item, on the header's row
            reason = f"a part of {r.sample.part_of.rsplit('/', 1)[-1]}: one record, one outcome"
        expected = r.sample.expect + ("" if r.matches_expectation() or not r.item else " (!)")
        rows.append(
            (
                r.sample.path.split("/", 2)[2],
                f"{r.sample.site}/{r.sample.device}",
                r.status,
                _cell(item.get("probability")),
                _cell(item.get("label")),
                _cell(None if item.get("windows") is None else int(item["windows"])),
                expected,
                _cell(reason),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])  # the reason is last and not padded
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# modes


def use_stack_env(stack: LocalStack) -> None:
    """Point this process's AWS SDK at the stack."""
    aws.isolate_from_aws()
    os.environ.update(stack.client_env())


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so `finally` blocks stop what was started."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(args: argparse.Namespace) -> int:
    progress = Progress()
    progress.step(f"model: {local_stack.shown(args.archive)}")
    progress.step("writing sample files")
    # Its own directory, so a demo never disturbs a stack left running by `up`.
    run_dir = args.work_dir / "demo"
    sample_dir = run_dir / "samples"
    shutil.rmtree(sample_dir, ignore_errors=True)
    samples = sample_files.write_samples(sample_dir)
    progress.step(f"  {len(samples)} files in {local_stack.shown(sample_dir)}")
    progress.step("starting moto (S3, SQS, DynamoDB), the model server and the function")
    stack: LocalStack | None = None
    with stop_on_signals():
        try:
            stack = local_stack.start(
                args.archive,
                run_dir,
                visibility_timeout_s=args.visibility_timeout,
                light_endpoint=args.light_endpoint,
            )
            use_stack_env(stack)
            progress.step(
                f"  moto {stack.resources.moto_url}, endpoint {stack.endpoint_name} at "
                f"{stack.endpoint_url} (model ready in {stack.endpoint_ready_s:.1f} s), "
                f"logs in {local_stack.shown(stack.log_dir)}/"
            )
            for line in what_runs(stack.parts, moto_version()):
                progress.step(f"  {line}")
            for notice in stack.parts.notices:
                progress.step(f"  !!! {notice}")
            progress.step(f"uploading to s3://{stack.resources.bucket}/{INGEST_PREFIX}")
            keys = upload(boto3.client("s3"), stack.resources.bucket, sample_dir, samples)
            results = [FileResult(s, k) for s, k in zip(samples, keys, strict=True)]
            progress.step("waiting for every file to be scored, rejected or dead-lettered")
            wait_for_results(stack, results, args.timeout, progress)
        except KeyboardInterrupt:
            progress.done_line()
            say("interrupted; stopping the local stack")
            return 130
        finally:
            if stack is not None:
                stack.stop()
    progress.step("stopped the local stack")
    say("")
    say(results_table(results))
    say("")
    missing = [r for r in results if not r.accounted]
    surprises = [r for r in results if r.accounted and not r.matches_expectation()]
    say(
        f"{len(results)} files: {sum(r.status == 'SCORED' for r in results)} scored, "
        f"{sum(r.status == 'REJECTED' for r in results)} rejected, "
        f"{sum(r.in_dlq for r in results)} in the DLQ, {len(missing)} unaccounted for; "
        f"{time.monotonic() - progress.started:.1f} s"
    )
    for notice in stack.parts.notices if stack is not None else []:
        say(f"!!! {notice}")
    if surprises:
        say(f"{len(surprises)} result(s) differ from what the sample was made to be (marked (!))")
    if missing:
        say(f"not every file has a result: see the logs in {local_stack.shown(run_dir / 'logs')}/")
        return 1
    return 0


def write_sample_files(args: argparse.Namespace) -> int:
    out = args.work_dir / "samples"
    shutil.rmtree(out, ignore_errors=True)
    written = sample_files.write_samples(out)
    for sample in written:
        say(f"{out / sample.path}  ({sample.what}; expect {sample.expect})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecg_scorer.local.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "mode", nargs="?", default="run", choices=("run", "up", "down", "serve", "samples")
    )
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help="model.tar.gz to serve")
    parser.add_argument(
        "--light-endpoint",
        action="store_true",
        help="serve the model in one process instead of the toolkit and TorchServe",
    )
    parser.add_argument(
        "--timeout", type=float, default=240.0, help="seconds to wait for results (or start-up)"
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=None,
        help=f"queue visibility timeout, s (run: {DEMO_VISIBILITY_TIMEOUT_S}; up: the template's)",
    )
    args = parser.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    aws.isolate_from_aws()
    if args.mode == "run":
        args.visibility_timeout = args.visibility_timeout or DEMO_VISIBILITY_TIMEOUT_S
        try:
            return run_demo(args)
        except KeyboardInterrupt:
            return 130
        except (RuntimeError, FileNotFoundError) as e:  # a part did not start or stopped
            say(f"demo failed: {e}")
            return 1
    return {
        "up": daemon.up,
        "down": daemon.down,
        "serve": daemon.serve,
        "samples": write_sample_files,
    }[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
