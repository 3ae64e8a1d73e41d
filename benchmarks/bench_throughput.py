"""Throughput of the local stack end to end, the seed's way and the project's way side by side
in one run: N ten-second three-lead ECG files uploaded to S3, queued, scored by the SAM-built
function through the real serving stack (SageMaker PyTorch toolkit + TorchServe) and stored
in DynamoDB.

    nice -n 10 .venv/bin/python benchmarks/bench_throughput.py [--files 2000] [--out PATH]

The two ways run on one stack, one after the other, each on its own N files:

- seed: one file per InvokeEndpoint, as the seed's clients did. The same function with
  settings that force it (BatchSize 1, no batching window, MAX_PAYLOAD_BYTES of one window),
  so S3, SQS, Lambda and DynamoDB are the same code and the difference is what the project
  changed: how many files share an invocation and a call. The function sends .npy, where
  the seed sent JSON; the JSON request's own cost is measured beside it on the same
  container (last table), and cost_model.py shows it separately.
- project: template.yaml's settings (BatchSize 100, batching window, calls up to the payload
  limit, MaximumConcurrency 10).

For each way the files are uploaded while no poller runs; the clock starts when the poller's
first execution environment is warm and stops when the queue is empty. Endpoint calls are
counted in front of the container; the container serves one call at a time (one worker),
so its busy time per call is what SageMaker Serverless bills, and queueing is left out.
Lambda invocations and durations come from the poller's REPORT lines. Prints Markdown tables
and writes the figures to ``--out`` (JSON, read by ``benchmarks/cost_model.py``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np

from ecg_scorer import query
from ecg_scorer.local import HOST, REPO
from ecg_scorer.local import stack as local_stack
from ecg_scorer.local.artifacts import what_runs
from ecg_scorer.local.aws import INGEST_PREFIX, isolate_from_aws, moto_version
from ecg_scorer.local.demo import stop_on_signals
from ecg_scorer.local.model_server import ContainerClient, missing_prerequisites
from ecg_scorer.local.runtime_api import ModelAnswer, make_server, serve_in_thread
from ecg_scorer.local.sam_template import load_template, table_definition
from ecg_scorer.local.samples import load_synthetic
from ecg_scorer.write_units import Layout, item_size

WORK = REPO / "build" / "bench-throughput"
OUT = WORK / "throughput.json"
DEVICES = 10  # files spread over this many devices of one site per way
FS, SECONDS, LEADS = 200.0, 10.0, ("I", "II", "V2")
NPY_HEADER = 128
REPORT = re.compile(r"REPORT Duration: (\d+) ms Max Memory Used: (\d+) MB")


@dataclass
class Way:
    name: str
    what: str
    batch_size: int
    batching_window_s: int
    max_payload_bytes: int
    max_concurrency: int


@dataclass
class Counted:
    calls: int = 0
    windows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    busy_s: float = 0.0
    queued_s: float = 0.0
    call_ms: list[float] = field(default_factory=list)
    windows_per_call: list[int] = field(default_factory=list)


class CountingBackend:
    """The container behind the runtime API, one call at a time, counted and timed."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.counted = Counted()

    def __call__(self, body: bytes, content_type: str, accept: str) -> ModelAnswer:
        windows = windows_in(body, content_type)
        arrived = time.perf_counter()
        with self.lock:
            started = time.perf_counter()
            answer: ModelAnswer = self.backend(body, content_type, accept)
            took = time.perf_counter() - started
            c = self.counted
            c.calls += 1
            c.windows += windows
            c.bytes_in += len(body)
            c.bytes_out += len(answer.body)
            c.busy_s += took
            c.queued_s += started - arrived
            c.call_ms.append(took * 1000)
            c.windows_per_call.append(windows)
        return answer

    def take(self) -> Counted:
        with self.lock:
            counted, self.counted = self.counted, Counted()
        return counted


def windows_in(body: bytes, content_type: str) -> int:
    if content_type.startswith("application/x-npy"):
        stream = io.BytesIO(body)
        major, _ = np.lib.format.read_magic(stream)
        fmt = np.lib.format
        read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, _, _ = read_header(stream)
        return int(shape[0]) if len(shape) == 3 else 1
    signals = np.asarray(json.loads(body)["signals"])
    return int(signals.shape[0]) if signals.ndim == 3 else 1


def recordings(count: int, seed: int = 14) -> list[bytes]:
    """Distinct 10-s three-lead recordings in the seed's request format (a JSON file that the
    seed's clients sent as is): one in five anomalous."""
    syn = load_synthetic()
    rng = np.random.default_rng(seed)
    anomalies = ("af", "pvc", "wide_qrs", "st_elevation", "tachycardia")
    out = []
    for i in range(count):
        kind = anomalies[(i // 5) % len(anomalies)] if i % 5 == 4 else "normal"
        signal = syn.synthesize(kind, SECONDS, FS, list(LEADS), rng)
        doc = {"signals": [[round(float(v), 4) for v in row] for row in signal]}
        out.append(json.dumps(doc, separators=(",", ":")).encode())
    return out


def upload(s3: Any, bucket: str, site: str, bodies: list[bytes], files: int) -> None:
    def put(i: int) -> None:
        key = f"{INGEST_PREFIX}{site}/device-{i % DEVICES:02d}/ecg-{i:06d}.json"
        s3.put_object(Bucket=bucket, Key=key, Body=bodies[i % len(bodies)])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(files)))


def queue_depth(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attrs[n]) for n in names)


def wait_depth(sqs: Any, url: str, done: Any, timeout_s: float, what: str) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done(queue_depth(sqs, url)):
            return time.monotonic()
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")


def run_way(
    stack: local_stack.LocalStack,
    way: Way,
    counter: CountingBackend,
    bodies: list[bytes],
    files: int,
    timeout_s: float,
) -> dict[str, Any]:
    s3, sqs, ddb = boto3.client("s3"), boto3.client("sqs"), boto3.client("dynamodb")
    queue_url, table = stack.resources.queue_url, stack.resources.table
    site = f"bench-{way.name}"
    since = datetime.now(UTC) - timedelta(minutes=1)
    print(f"[{way.name}] uploading {files} files", flush=True)
    upload(s3, stack.resources.bucket, site, bodies, files)
    wait_depth(sqs, queue_url, lambda n: n >= files, 120, "the uploads' events")
    log, function_log = stack.log_dir / "poller.log", stack.log_dir / "function.log"
    offset, function_offset = size_of(log), size_of(function_log)
    counter.take()
    overrides = {"MAX_PAYLOAD_BYTES": str(way.max_payload_bytes)}
    stack.lambda_settings = replace(
        stack.lambda_settings,
        batch_size=way.batch_size,
        max_concurrency=way.max_concurrency,
    )
    load_before = os.getloadavg()[0]
    stack.start_poller(overrides, batching_window_s=way.batching_window_s)
    started = time.monotonic()
    print(f"[{way.name}] poller warm; scoring", flush=True)
    finished = wait_depth(sqs, queue_url, lambda n: n == 0, timeout_s, "the queue to empty")
    load_after = os.getloadavg()[0]
    stack.stop_poller()
    wall_s = finished - started
    function_log_bytes = size_of(function_log) - function_offset
    counted = counter.take()
    with log.open(encoding="utf-8", errors="replace") as f:
        f.seek(offset)
        reports = [(int(m[1]), int(m[2])) for m in REPORT.finditer(f.read())]
    until = datetime.now(UTC) + timedelta(minutes=1)
    items = [item for item in query.export(ddb, table, since, until) if item.get("site") == site]
    layout = Layout.of(table_definition(load_template(), table))
    units = [sum(layout.write_units(item).values()) for item in items]
    durations = [d for d, _ in reports]
    return {
        "name": way.name,
        "what": way.what,
        "settings": asdict(way),
        "files": files,
        "wall_s": round(wall_s, 2),
        "files_per_s": round(files / wall_s, 2),
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "lambda": {
            "invocations": len(reports),
            "duration_ms_total": sum(durations),
            "duration_ms_median": statistics.median(durations) if durations else 0,
            "max_memory_mb": max((m for _, m in reports), default=0),
            "memory_size_mb": stack.lambda_settings.memory_mb,
        },
        "endpoint": {
            "calls": counted.calls,
            "windows": counted.windows,
            "windows_per_call_mean": round(counted.windows / max(1, counted.calls), 1),
            "windows_per_call_max": max(counted.windows_per_call, default=0),
            "bytes_in": counted.bytes_in,
            "bytes_out": counted.bytes_out,
            "busy_s": round(counted.busy_s, 3),
            "queued_s": round(counted.queued_s, 3),
            "call_ms_median": round(statistics.median(counted.call_ms), 1)
            if counted.call_ms
            else 0,
        },
        "items": {
            "stored": len(items),
            "outcomes": dict(Counter(str(item["outcome"]) for item in items)),
            "bytes_mean": round(statistics.mean(item_size(i) for i in items), 1) if items else 0,
            "write_units_mean": round(statistics.mean(units), 3) if units else 0,
        },
        "function_log_bytes": function_log_bytes,
        "dead_letters": queue_depth(sqs, stack.resources.dead_letter_queue_url),
    }


def call_cost(backend: Any, window_bytes_shape: tuple[int, int], most: int, reps: int) -> dict:
    """Milliseconds per call on the container alone (nothing else running): fixed part and
    per window, from calls of 1 and of ``most`` windows, alternating. In the runs the
    container shares 2 cores with ten execution environments and moto; a serverless
    container has its own vCPUs, so this is the time it would bill."""
    rng = np.random.default_rng(0)
    bodies = {}
    for n in (1, most):
        buffer = io.BytesIO()
        shape = (n, *window_bytes_shape)
        np.save(buffer, rng.normal(0, 0.3, shape).astype(np.float32), allow_pickle=False)
        bodies[n] = buffer.getvalue()
    times: dict[int, list[float]] = {n: [] for n in bodies}
    for body in bodies.values():  # warm up
        backend(body, "application/x-npy", "application/json")
    for _ in range(reps):
        for n, body in bodies.items():
            started = time.perf_counter()
            backend(body, "application/x-npy", "application/json")
            times[n].append((time.perf_counter() - started) * 1000)
    one, full = statistics.median(times[1]), statistics.median(times[most])
    per_window = (full - one) / (most - 1)
    return {
        "fixed_ms": round(one - per_window, 2),
        "per_window_ms": round(per_window, 3),
        "measured": {str(n): round(statistics.median(t), 1) for n, t in times.items()},
    }


def bill(result: dict[str, Any], cost: dict[str, Any]) -> None:
    """Add what SageMaker would bill (the container alone) and the Lambda duration without
    the local endpoint's queue and contention: an invocation waits out its calls, so the
    local wait and service time are swapped for the container-alone time."""
    ep, lam = result["endpoint"], result["lambda"]
    billed_s = (ep["calls"] * cost["fixed_ms"] + ep["windows"] * cost["per_window_ms"]) / 1000
    ep["billed_s"] = round(billed_s, 3)
    local_s = ep["queued_s"] + ep["busy_s"]
    lam["duration_ms_adjusted"] = round(lam["duration_ms_total"] - (local_s - billed_s) * 1000)


def size_of(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def json_vs_npy(backend: Any, body_json: bytes, requests: int) -> dict[str, Any]:
    """One window as the seed sent it (JSON) and as the function sends it (.npy), alternating
    on the same container: median ms and bytes per request."""
    signal = np.asarray(json.loads(body_json)["signals"], dtype=np.float32)[None]
    buffer = io.BytesIO()
    np.save(buffer, signal, allow_pickle=False)
    bodies = {"application/json": body_json, "application/x-npy": buffer.getvalue()}
    times: dict[str, list[float]] = {ctype: [] for ctype in bodies}
    for ctype, body in bodies.items():  # warm up
        backend(body, ctype, "application/json")
    for _ in range(requests):
        for ctype, body in bodies.items():
            started = time.perf_counter()
            answer = backend(body, ctype, "application/json")
            times[ctype].append((time.perf_counter() - started) * 1000)
            if not answer.ok:
                raise SystemExit(f"the container refused {ctype}: {answer.body[:200]!r}")
    return {
        ctype: {"ms_median": round(statistics.median(t), 1), "bytes": len(bodies[ctype])}
        for ctype, t in times.items()
    }


def ways(settings: Any, files: int) -> list[Way]:
    one_window = settings_window_bytes(settings) + NPY_HEADER + 128
    return [
        Way(
            "seed",
            "one file per invocation and per InvokeEndpoint (BatchSize 1, one window per call)",
            1,
            0,
            one_window,
            settings.max_concurrency,
        ),
        Way(
            "project",
            "template.yaml: BatchSize "
            f"{settings.batch_size}, batching window {settings.batching_window_s} s, calls up to "
            f"{int(settings.environment['MAX_PAYLOAD_BYTES']) / 1e6:.1f} MB",
            settings.batch_size,
            settings.batching_window_s,
            int(settings.environment["MAX_PAYLOAD_BYTES"]),
            settings.max_concurrency,
        ),
    ]


def settings_window_bytes(settings: Any) -> int:
    env = settings.environment
    return int(env["WINDOW_SAMPLES"]) * len(env["MODEL_LEADS"].split(",")) * 4


def table(results: list[dict[str, Any]], compare: dict[str, Any], cost: dict[str, Any]) -> str:
    seed, project = results
    rows = [
        ("wall time (s)", "wall_s", None, True),
        ("files/s", "files_per_s", None, False),
        ("Lambda invocations", ("lambda", "invocations"), None, True),
        ("Lambda duration, sum (s)", ("lambda", "duration_ms_total"), 1000, True),
        (
            "  without the local endpoint's queue (s)",
            ("lambda", "duration_ms_adjusted"),
            1000,
            True,
        ),
        ("Lambda duration, median (ms)", ("lambda", "duration_ms_median"), None, True),
        ("Lambda max memory (MB)", ("lambda", "max_memory_mb"), None, True),
        ("endpoint calls", ("endpoint", "calls"), None, True),
        ("windows per call, mean", ("endpoint", "windows_per_call_mean"), None, False),
        ("windows per call, max", ("endpoint", "windows_per_call_max"), None, False),
        ("endpoint busy time (s)", ("endpoint", "busy_s"), None, True),
        ("  the container alone, billed (s)", ("endpoint", "billed_s"), None, True),
        ("bytes to the endpoint (MB)", ("endpoint", "bytes_in"), 1e6, True),
        ("items stored", ("items", "stored"), None, None),
        ("write units per file, mean", ("items", "write_units_mean"), None, True),
        ("load average (start, end)", "load_average", None, None),
    ]
    lines = [
        "| | seed way | project way | project better by |",
        "|---|---|---|---|",
    ]
    for label, path, scale, lower_is_better in rows:
        a, b = pick(seed, path), pick(project, path)
        if scale:
            a, b = a / scale, b / scale
        ratio = ""
        if lower_is_better is not None and a and b:
            ratio = f"{a / b:.1f}x" if lower_is_better else f"{b / a:.1f}x"
        lines.append(f"| {label} | {shown(a)} | {shown(b)} | {ratio} |")
    lines.append("")
    lines.append("| one window, same container | median (ms) | request bytes |")
    lines.append("|---|---|---|")
    for ctype, figures in compare.items():
        lines.append(f"| {ctype} | {figures['ms_median']} | {figures['bytes']:,} |")
    lines.append("")
    lines.append(
        f"The container alone: {cost['fixed_ms']} ms per call plus {cost['per_window_ms']} ms "
        f"per window (medians of calls of {', '.join(cost['measured'])} windows: "
        f"{', '.join(str(v) for v in cost['measured'].values())} ms)."
    )
    return "\n".join(lines)


def pick(result: dict[str, Any], path: Any) -> Any:
    if isinstance(path, tuple):
        return result[path[0]][path[1]]
    return result[path]


def shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000, help="files per way (default 2000)")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON for cost_model.py")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per way, at most")
    parser.add_argument("--archive", type=Path, default=local_stack.ARCHIVE)
    args = parser.parse_args()
    missing = missing_prerequisites()
    if missing:
        raise SystemExit("cannot run the real serving stack here: " + "; ".join(missing))
    isolate_from_aws()
    print("starting the local stack", flush=True)
    # A visibility timeout long enough that no batch is handed out twice while it runs.
    with stop_on_signals():  # SIGTERM too stops what was started
        return run(args)


def run(args: argparse.Namespace) -> int:
    stack = local_stack.start(args.archive, WORK, visibility_timeout_s=900, with_poller=False)
    try:
        os.environ.update(stack.client_env())
        assert stack.model_server is not None and stack.runtime_api is not None
        # Count and time the calls in front of the container: the stack's runtime API is
        # replaced by one over a counting backend, before any poller is given its URL.
        counter = CountingBackend(ContainerClient(stack.model_server.url))
        stack.runtime_api.shutdown()
        stack.runtime_api.server_close()
        stack.runtime_api = make_server(stack.endpoint_name, counter, HOST)
        serve_in_thread(stack.runtime_api)
        stack.endpoint_url = f"http://{HOST}:{stack.runtime_api.server_address[1]}"
        bodies = recordings(min(args.files, 100))
        # S3's test event, sent when the notification was set up, is no upload of ours.
        boto3.client("sqs").purge_queue(QueueUrl=stack.resources.queue_url)
        results = [
            run_way(stack, way, counter, bodies, args.files, args.timeout)
            for way in ways(stack.lambda_settings, args.files)
        ]
        compare = json_vs_npy(counter.backend, bodies[0], 40)
        env = stack.lambda_settings.environment
        shape = (int(env["WINDOW_SAMPLES"]), len(env["MODEL_LEADS"].split(",")))
        most = max(r["endpoint"]["windows_per_call_max"] for r in results)
        cost = call_cost(counter.backend, shape, most, 15)
        for result in results:
            bill(result, cost)
        runs = what_runs(stack.parts, moto_version())
        notices = list(stack.parts.notices)
    finally:
        stack.stop()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": f"benchmarks/bench_throughput.py --files {args.files}",
        "cpus": os.cpu_count(),
        "file": {"seconds": SECONDS, "leads": list(LEADS), "rate_hz": FS, "format": "json"},
        "file_bytes_mean": round(statistics.mean(len(b) for b in bodies)),
        "runs": runs,
        "notices": notices,
        "ways": results,
        "one_window": compare,
        "call_cost": cost,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print()
    print(
        f"{args.files} files of {SECONDS:g} s ({LEADS}, {FS:g} Hz, JSON, "
        f"{report['file_bytes_mean'] / 1e3:.0f} KB) per way, {report['date']}, "
        f"{os.cpu_count()} CPU cores shared"
    )
    for line in runs:
        print(f"  {line}")
    for notice in notices:
        print(f"  !!! {notice}")
    for result in results:
        print(f"  {result['name']}: {result['what']}")
    print()
    print(table(results, compare, cost))
    print(f"\nfigures written to {local_stack.shown(args.out)}")
    bad = [r["name"] for r in results if r["items"]["stored"] != args.files or r["dead_letters"]]
    if bad:
        print(f"!!! not every file was stored in: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
