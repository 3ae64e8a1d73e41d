"""A Holter recording scored end to end in the local stack: wall time, invocations, endpoint
calls, windows, and the peak memory of every function process against its MemorySize.

    nice -n 10 .venv/bin/python benchmarks/bench_holter.py [--case 24h-3 --case 48h-3 ...]

Each case is an EDF file as a Holter exports it (1-s data records, 16-bit, uV; a synthetic
normal minute played over and over, ``samples.edf_bytes``), written on the fly under
``build/bench-holter/`` (never committed), uploaded to the local stack as a device would
(boto3's multipart upload) and scored as `make demo` scores files: moto, the ``sam build``
artifact of the function on Python 3.12 run by the poller with the template's memory size,
timeout, batch size and concurrency, and the packaged model behind the SageMaker toolkit and
TorchServe. The cases run one after another in one stack. Per case it prints:

- wall time: the upload, then from the upload's end to the file's item in the table, and
  until the queue is empty (every invocation done);
- invocations: one line per invocation from the poller's REPORT lines (messages in the
  batch, deleted, left for retry, duration, Max Memory Used, sampled every 20 ms with its
  children), and the chunk orders the trigger sent (the job item);
- endpoint calls: POSTs in TorchServe's access log, and the calls the function counted
  (its "windows scored" log lines, retries apart);
- peak RSS (VmHWM, exact) of every function process, reset when the case starts, against
  the function's MemorySize;
- the item: how many items the file has (one result, plus its job item), status, windows
  against the recording's 10-s windows, and the per-window results object in S3.

Needs what `make demo` needs (docs/local.md); refuses to run on a fallback (no Python 3.12
artifact or no Java) unless ``--allow-fallback``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from boto3.dynamodb.types import TypeDeserializer
from scorer import schema

from ecg_scorer.local import REPO, samples
from ecg_scorer.local import stack as local_stack
from ecg_scorer.local.artifacts import what_runs
from ecg_scorer.local.aws import INGEST_PREFIX, isolate_from_aws, moto_version
from ecg_scorer.local.demo import dlq_keys, use_stack_env

WORK = REPO / "build" / "bench-holter"
THREE = ("I", "II", "V2")
TWELVE = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
CASES = {"24h-3": (24, THREE), "48h-3": (48, THREE), "24h-12": (24, TWELVE)}
WINDOW_S = 10
BATCH = re.compile(r"batch of (\d+): (\d+) deleted, (\d+) left for retry: \[[^\]]*\]( \(.*\))?")
REPORT = re.compile(r"REPORT Duration: (\d+) ms Max Memory Used: (\d+) MB")


@dataclass
class Invocation:
    messages: int
    deleted: int
    retried: int
    error: str
    duration_ms: int = 0
    max_memory_mb: int = 0


@dataclass
class Figures:
    case: str
    file_mb: float
    upload_s: float = 0.0
    to_item_s: float = 0.0
    to_idle_s: float = 0.0
    invocations: list[Invocation] = field(default_factory=list)
    chunks: int = 0
    chunks_done: int = 0
    endpoint_posts: dict[str, int] = field(default_factory=dict)
    function_calls: int = 0
    function_retries: int = 0
    processes: dict[int, float] = field(default_factory=dict)  # pid -> VmHWM MB
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (s, largest VmRSS MB)
    items: list[str] = field(default_factory=list)  # the sort keys under the file's pk
    item: dict[str, Any] = field(default_factory=dict)
    expected_windows: int = 0
    results_object_mb: float | None = None
    in_dlq: bool = False


def write_holter(path: Path, hours: int, leads: tuple[str, ...], fs: int, seed: int = 11) -> None:
    """A day (or two) of EDF from one synthetic minute, as the demo's Holter is made."""
    rng = np.random.default_rng(seed)
    minute = samples.load_synthetic().synthesize("normal", 60.0, fs, list(leads), rng)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(samples.edf_bytes(minute, fs, leads, start, repeat=hours * 60))


# -- what the stack's pieces say -------------------------------------------------------------


class LogTail:
    """The lines a log file gained since this was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", errors="replace").splitlines()


def invocations(lines: list[str]) -> list[Invocation]:
    """The poller's 'batch of' and 'REPORT' lines, paired in order (each invocation logs the
    two one after the other)."""
    found: list[Invocation] = []
    for line in lines:
        if m := BATCH.search(line):
            error = (m.group(4) or "")[2:-1]  # " (why)"
            found.append(Invocation(int(m.group(1)), int(m.group(2)), int(m.group(3)), error))
        elif (m := REPORT.search(line)) and found and found[-1].duration_ms == 0:
            found[-1].duration_ms, found[-1].max_memory_mb = int(m.group(1)), int(m.group(2))
    return found


def function_calls(lines: list[str]) -> tuple[int, int]:
    """Endpoint calls and retries the function logged ("windows scored")."""
    calls = retries = 0
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("message") == "windows scored":
            calls += int(doc.get("calls", 0))
            retries += int(doc.get("retries", 0))
    return calls, retries


def endpoint_posts(lines: list[str]) -> dict[str, int]:
    """POST /invocations in TorchServe's access log, by status code."""
    counts: dict[str, int] = {}
    for line in lines:
        if m := re.search(r'"POST /invocations HTTP/1.1" (\d{3})', line):
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def children(pid: int) -> set[int]:
    """Direct children of every thread of ``pid`` (the poller starts the function's
    processes from its invocation threads)."""
    found: set[int] = set()
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return found


def vm_mb(pid: int, name: str) -> float | None:
    """VmHWM (peak) or VmRSS (now) of a process, MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


class ProcessWatch:
    """The peak RSS of every function process while a case runs: VmHWM reset at the start
    (a warm process carries its earlier peak), read every 0.2 s and at the end (a process
    killed for memory or time is replaced; its last reading stays)."""

    def __init__(self, poller_pid: int) -> None:
        self.poller_pid = poller_pid
        self.peaks: dict[int, float] = {}
        self.started = time.monotonic()
        self.timeline: list[tuple[float, float]] = []  # (s, MB): the largest VmRSS each second
        self._stop = threading.Event()
        for pid in children(poller_pid):
            with contextlib.suppress(OSError):  # it just exited
                Path(f"/proc/{pid}/clear_refs").write_text("5")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        largest = 0.0
        for pid in children(self.poller_pid):
            hwm, rss = vm_mb(pid, "VmHWM"), vm_mb(pid, "VmRSS")
            if hwm is not None:
                self.peaks[pid] = max(hwm, self.peaks.get(pid, 0.0))
            largest = max(largest, rss or 0.0)
        elapsed = time.monotonic() - self.started
        if not self.timeline or elapsed - self.timeline[-1][0] >= 1.0:
            self.timeline.append((elapsed, largest))

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def stop(self) -> dict[int, float]:
        self._stop.set()
        self._thread.join()
        self.sample()
        return dict(self.peaks)


def queue_empty(sqs: Any, url: str) -> bool:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return all(int(attrs.get(n, "0")) == 0 for n in names)


def file_items(ddb: Any, table: str, bucket: str, key: str) -> dict[str, dict[str, Any]]:
    """Every item under the file's partition key, by sort key."""
    pk = schema.file_pk(bucket, key)
    got = ddb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        ConsistentRead=True,
    )["Items"]
    deserialize = TypeDeserializer().deserialize
    return {i["sk"]["S"]: {k: deserialize(v) for k, v in i.items()} for i in got}


# -- one case ----------------------------------------------------------------------------------


def run_case(
    stack: local_stack.LocalStack, name: str, fs: int, timeout_s: float, keep: bool
) -> Figures:
    hours, leads = CASES[name]
    path = WORK / f"holter_{name}_{fs}hz.edf"
    write_holter(path, hours, leads, fs)
    figures = Figures(name, path.stat().st_size / 1e6, expected_windows=hours * 3600 // WINDOW_S)
    s3, ddb, sqs = boto3.client("s3"), boto3.client("dynamodb"), boto3.client("sqs")
    bucket, table = stack.resources.bucket, stack.resources.table
    version = stack.lambda_settings.environment["MODEL_VERSION"]
    key = f"{INGEST_PREFIX}bench/holter/{path.name}"
    poller_log = LogTail(stack.log_dir / "poller.log")
    function_log = LogTail(stack.log_dir / "function.log")
    access = None
    if stack.model_server is not None:
        access = LogTail(stack.model_server.log_dir / "access_log.log")
    assert stack.poller_proc is not None
    watch = ProcessWatch(stack.poller_proc.pid)
    try:
        started = time.monotonic()
        s3.upload_file(str(path), bucket, key)
        uploaded = time.monotonic()
        figures.upload_s = uploaded - started
        if not keep:
            path.unlink()
        deadline = uploaded + timeout_s
        while time.monotonic() < deadline:
            items = file_items(ddb, table, bucket, key)
            if schema.model_sk(version) in items:
                figures.to_item_s = time.monotonic() - uploaded
                break
            if (bucket, key) in dlq_keys(sqs, stack.resources.dead_letter_queue_url):
                figures.in_dlq = True
                break
            time.sleep(0.5)
        while time.monotonic() < deadline and not queue_empty(sqs, stack.resources.queue_url):
            time.sleep(0.5)
        time.sleep(1.0)  # the last invocation's REPORT follows its deletes
        figures.to_idle_s = time.monotonic() - uploaded
    finally:
        figures.processes = watch.stop()
        figures.timeline = watch.timeline
    items = file_items(ddb, table, bucket, key)
    figures.items = sorted(items)
    figures.item = items.get(schema.model_sk(version), {})
    job = items.get(f"JOB#{version}", {})
    figures.chunks, figures.chunks_done = int(job.get("chunks", 0)), len(job.get("done", ()))
    figures.invocations = invocations(poller_log.lines())
    figures.function_calls, figures.function_retries = function_calls(function_log.lines())
    figures.endpoint_posts = endpoint_posts(access.lines()) if access is not None else {}
    uri = str(figures.item.get("windows_s3_uri", ""))
    if uri.startswith("s3://"):
        where, what = uri[5:].split("/", 1)
        figures.results_object_mb = s3.head_object(Bucket=where, Key=what)["ContentLength"] / 1e6
    return figures


def report(f: Figures, memory_mb: int) -> None:
    item = f.item
    windows = int(item.get("windows", 0))
    print(f"\n### {f.case}: {f.file_mb:.1f} MB EDF\n")
    print("| figure | value |")
    print("|---|---|")
    print(f"| upload (multipart, boto3) | {f.upload_s:.1f} s |")
    got = f"{f.to_item_s:.1f} s" if f.item else f"no item after {f.to_idle_s:.0f} s"
    print(f"| upload done -> item in the table | {got} |")
    print(f"| upload done -> queue empty (or --timeout) | {f.to_idle_s:.1f} s |")
    messages = sum(i.messages for i in f.invocations)
    errors = sum(1 for i in f.invocations if i.error)
    print(
        f"| Lambda invocations | {len(f.invocations)} ({messages} messages received: 1 trigger "
        f"+ {f.chunks} chunk orders{', plus redeliveries' if messages > 1 + f.chunks else ''}"
        f"; {errors} function errors) |"
    )
    print(f"| chunks done (job item) | {f.chunks_done} of {f.chunks} |")
    posts = ", ".join(f"{n} x {code}" for code, n in sorted(f.endpoint_posts.items())) or "-"
    print(f"| endpoint calls (TorchServe access log) | {posts} |")
    calls = f"{f.function_calls} ({f.function_retries} retries)"
    print(f"| endpoint calls (the function's count) | {calls} |")
    print(
        f"| windows in the item | {windows} of {f.expected_windows} "
        f"({'all' if windows == f.expected_windows else 'MISMATCH'}) |"
    )
    peak = max(f.processes.values(), default=0.0)
    print(
        f"| function processes, peak RSS (VmHWM) | {len(f.processes)}: "
        + ", ".join(f"{mb:.0f}" for mb in sorted(f.processes.values(), reverse=True))
        + f" MB; the largest {peak / memory_mb:.0%} of MemorySize {memory_mb} MB |"
    )
    report_peak = max((i.max_memory_mb for i in f.invocations), default=0)
    print(f"| per invocation, Max Memory Used (REPORT) | up to {report_peak} MB |")
    results = f"{f.results_object_mb:.2f} MB" if f.results_object_mb is not None else "none"
    result_items = [sk for sk in f.items if not sk.startswith("JOB#")]
    print(
        f"| items of the file | {len(result_items)} result ({', '.join(result_items) or '-'}) "
        f"+ {len(f.items) - len(result_items)} job |"
    )
    print(
        f"| the item | {item.get('status', 'MISSING')}, probability "
        f"{float(item.get('probability', float('nan'))):.3f}, label {item.get('label')}"
        f"{', IN DLQ' if f.in_dlq else ''} |"
    )
    print(f"| windows_s3_uri object | {results} |")
    step = max(1, len(f.timeline) // 20)
    print(
        "\nlargest function process's RSS over the case (s: MB): "
        + ", ".join(f"{t:.0f}: {mb:.0f}" for t, mb in f.timeline[::step])
    )
    print(
        "\n| invocation | messages | deleted | left for retry | duration (s) "
        "| Max Memory Used (MB) | error |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for n, i in enumerate(f.invocations, 1):
        print(
            f"| {n} | {i.messages} | {i.deleted} | {i.retried} | {i.duration_ms / 1000:.1f} "
            f"| {i.max_memory_mb} | {i.error} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="default 24h-3")
    parser.add_argument("--fs", type=int, default=500, help="sampling rate, Hz")
    parser.add_argument("--timeout", type=float, default=1800.0, help="per case, s")
    parser.add_argument(
        "--visibility-timeout", type=int, default=None, help="s (default: the template's)"
    )
    parser.add_argument("--keep-file", action="store_true", help="keep the EDF in build/")
    parser.add_argument("--allow-fallback", action="store_true")
    args = parser.parse_args()
    isolate_from_aws()
    load = os.getloadavg()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load {load[0]:.1f}")
    stack = local_stack.start(
        local_stack.ARCHIVE, WORK, visibility_timeout_s=args.visibility_timeout
    )
    results: list[Figures] = []
    try:
        for line in what_runs(stack.parts, moto_version()):
            print(f"  {line}")
        if stack.parts.notices:
            for notice in stack.parts.notices:
                print(f"  !!! {notice}")
            if not args.allow_fallback:
                print("not the deployed function or serving stack: see docs/local.md")
                return 1
        use_stack_env(stack)
        settings = stack.lambda_settings
        print(
            f"function: MemorySize {settings.memory_mb} MB, Timeout {settings.timeout_s} s, "
            f"batch {settings.batch_size}, window {settings.batching_window_s} s, "
            f"MaximumConcurrency {settings.max_concurrency}; model ready in "
            f"{stack.endpoint_ready_s:.1f} s"
        )
        for name in args.case or ["24h-3"]:
            results.append(run_case(stack, name, args.fs, args.timeout, args.keep_file))
            report(results[-1], settings.memory_mb)
    finally:
        stack.stop()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (start {load[0]:.1f})")
    ok = all(
        r.item.get("status") == "SCORED" and int(r.item.get("windows", 0)) == r.expected_windows
        for r in results
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
