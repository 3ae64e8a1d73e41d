"""Scoring Lambda figures: handler work per file (endpoint stubbed), cold import of the
handler module, and the size of the Lambda package.

    .venv/bin/python benchmarks/bench_handler.py [--skip-package]

Targets (issue 3): < 10 ms of handler work per 10-s three-lead file; < 1.5 s cold import;
package well under Lambda's 250 MB unzipped limit. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FUNCTIONS = REPO / "functions"
ENV = {
    "PREDICTIONS_TABLE": "bench-table",
    "SCORING_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench",
    "ENDPOINT_NAME": "bench-endpoint",
    "MODEL_VERSION": json.loads((REPO / "models" / "demo" / "config.json").read_text())[
        "model_version"
    ],
    "MODEL_LEADS": "I,II,V2",
    "MODEL_SAMPLING_RATE_HZ": "200",
    "WINDOW_SAMPLES": "2000",
    "MAX_FILE_BYTES": "20000000",
    "MAX_RECORDING_BYTES": "4294967296",
    "MAX_PAYLOAD_BYTES": str(4 * 1024 * 1024 - 64 * 1024),
    "POWERTOOLS_SERVICE_NAME": "ecg-scorer",
    "POWERTOOLS_METRICS_NAMESPACE": "EcgScorer",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "LOG_LEVEL": "WARNING",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def signal(seconds: float, fs: float) -> np.ndarray:
    t = np.arange(round(seconds * fs)) / fs
    beat = np.exp(-(((t % 0.8) - 0.4) ** 2) / 2e-4)  # a spike every 0.8 s
    return np.column_stack([beat + 0.1 * np.sin(2 * np.pi * 0.3 * t + k) for k in range(3)])


def sample_files(fs_device: float = 500) -> dict[str, bytes]:
    """One 10-s three-lead file per format."""
    files: dict[str, bytes] = {}
    seed = signal(10, 200)
    files["json (seed, 200 Hz)"] = json.dumps({"signals": seed.round(4).tolist()}).encode()
    dev = signal(10, fs_device)
    t = np.arange(len(dev)) / fs_device
    rows = "\n".join(
        ",".join(f"{v:.4f}" for v in (ti, *row)) for ti, row in zip(t, dev, strict=True)
    )
    files[f"csv (time column, {fs_device:g} Hz)"] = f"time_s,I_mV,II_mV,V2_mV\n{rows}\n".encode()
    buffer = io.BytesIO()
    np.save(buffer, seed.astype(np.float32))
    files["npy (200 Hz)"] = buffer.getvalue()
    buffer = io.BytesIO()
    np.savez(
        buffer,
        signals=dev.astype(np.float32),
        fs=np.array(fs_device),
        leads=np.array(["I", "II", "V2"]),
    )
    files[f"npz ({fs_device:g} Hz)"] = buffer.getvalue()
    return files


class _Body:
    def __init__(self, data: bytes):
        self._stream = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def close(self) -> None:
        self._stream.close()


class MemoryS3:
    def __init__(self, objects: dict[str, bytes]):
        self.objects = objects

    def get_object(self, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        data = self.objects[Key]
        return {"Body": _Body(data), "ContentLength": len(data), "Metadata": {}}


class NullTable:
    def put_item(self, **_: Any) -> dict[str, Any]:
        return {}


class InstantEndpoint:
    """Answers at once (the endpoint is excluded from the figure)."""

    def __init__(self) -> None:
        self.calls = 0

    def invoke_endpoint(self, Body: bytes, **_: Any) -> dict[str, Any]:
        self.calls += 1
        count = (len(Body) - 128) // 24000
        answer = {"prediction": 0.1, "probability": 0.1, "label": "normal", "threshold": 0.5}
        answer["model_version"] = ENV["MODEL_VERSION"]
        raw = json.dumps(answer if count == 1 else [answer] * count).encode()
        return {"Body": _Body(raw)}


class Context:
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


def event_for(keys: list[str], sizes: list[int]) -> dict[str, Any]:
    records = []
    for i, (key, size) in enumerate(zip(keys, sizes, strict=True)):
        s3 = {
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "eventTime": "2026-11-27T03:00:00.000Z",
            "s3": {
                "bucket": {"name": "bench"},
                "object": {"key": key, "size": size, "eTag": "e", "sequencer": f"{i:018X}"},
            },
        }
        records.append({"messageId": f"m{i}", "body": json.dumps({"Records": [s3]})})
    return {"Records": records}


def bench_handler(repeats: int) -> list[tuple[str, float, float, float]]:
    """(format, median ms per file in a 10-file batch: wall and CPU, median ms of
    read + prepare alone). CPU time is shown because a busy machine inflates wall time."""
    from scorer import app, readers
    from scorer.prepare import prepare

    rows = []
    for name, data in sample_files().items():
        ext = name.split(" ")[0]
        keys = [f"incoming/site/dev/f{i}.{ext}" for i in range(10)]
        s3 = MemoryS3(dict.fromkeys(keys, data))
        clients = app.Clients(s3, NullTable(), InstantEndpoint())
        event = event_for(keys, [len(data)] * 10)
        per_file, cpu = [], []
        for _ in range(repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            result = app.process_batch(event, Context(), clients, app.SETTINGS)
            per_file.append((time.perf_counter() - started) * 1000 / 10)
            cpu.append((time.process_time() - cpu_started) * 1000 / 10)
            assert result == {"batchItemFailures": []}, result
            app.metrics.clear_metrics()  # no handler decorator here to flush them
        core = []
        for _ in range(repeats):
            started = time.perf_counter()
            recording = readers.read_recording(data, keys[0])
            prepare(recording, ("I", "II", "V2"), 200.0, 2000)
            core.append((time.perf_counter() - started) * 1000)
        rows.append(
            (name, statistics.median(per_file), statistics.median(cpu), statistics.median(core))
        )
    return rows


def bench_cold_import(runs: int) -> tuple[float, float, float, float, list[tuple[str, float]]]:
    """Seconds to import scorer.app in a fresh interpreter: median and best wall time,
    median CPU time, median whole-process time, and the slowest imports (-X importtime)."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(FUNCTIONS)}
    code = (
        "import time; t = time.perf_counter(); c = time.process_time(); import scorer.app; "
        "print(time.perf_counter() - t, time.process_time() - c)"
    )
    inside, cpu, wall = [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        wall.append(time.perf_counter() - started)
        seconds, cpu_seconds = (float(v) for v in done.stdout.split())
        inside.append(seconds)
        cpu.append(cpu_seconds)
    importtime = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    # "import time: self [us] | cumulative [us] | package", nested imports indented by 2
    direct: dict[str, float] = {}
    for line in importtime.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].startswith("   ") and not parts[2].startswith("    "):
            try:
                direct[parts[2].strip()] = int(parts[1]) / 1e6
            except ValueError:
                continue
    top = sorted(direct.items(), key=lambda kv: -kv[1])[:6]
    return (
        statistics.median(inside),
        min(inside),
        statistics.median(cpu),
        statistics.median(wall),
        top,
    )


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def package_size() -> tuple[str, int, int, list[tuple[str, int]]]:
    """Install functions/requirements.txt as `sam build` would, add functions/scorer, and
    measure. Returns (how it was built, unzipped bytes, zipped bytes, top entries)."""
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    req = ["-r", str(FUNCTIONS / "requirements.txt")]
    attempts = [
        (
            "manylinux2014_x86_64 wheels for CPython 3.12 (the Lambda's platform)",
            [
                "--platform",
                "manylinux2014_x86_64",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
            ],
        ),
        (
            f"the local platform ({sys.platform}, Python {sys.version.split()[0]}): "
            "the registry could not serve the Lambda platform's wheels",
            [],
        ),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        how = ""
        for attempt, extra in attempts:
            how = attempt
            target = Path(tmp) / "package"
            shutil.rmtree(target, ignore_errors=True)
            done = subprocess.run(
                [*base, *req, "--target", str(target), *extra], capture_output=True, text=True
            )
            if done.returncode == 0:
                break
        else:
            raise SystemExit(f"pip could not install the requirements:\n{done.stderr[-2000:]}")
        shutil.copytree(
            FUNCTIONS / "scorer", target / "scorer", ignore=shutil.ignore_patterns("__pycache__")
        )
        unzipped = _size(target)
        zipped = Path(shutil.make_archive(str(Path(tmp) / "package"), "zip", target)).stat().st_size
        entries = sorted(((p.name, _size(p)) for p in target.iterdir()), key=lambda kv: -kv[1])
    return how, unzipped, zipped, entries[:8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--imports", type=int, default=5)
    parser.add_argument("--skip-package", action="store_true")
    args = parser.parse_args()
    for name, value in ENV.items():
        os.environ.setdefault(name, value)

    print(
        "## Handler work per 10-s three-lead file "
        "(endpoint, S3 and DynamoDB stubbed; target < 10 ms)\n"
    )
    print("| file | per file in a 10-file batch (wall) | same, CPU time | read + prepare alone |")
    print("|---|---|---|---|")
    for name, per_file, cpu, core in bench_handler(args.repeats):
        print(f"| {name} | {per_file:.2f} ms | {cpu:.2f} ms | {core:.2f} ms |")

    median, best, cpu, wall, top = bench_cold_import(args.imports)
    print("\n## Cold import of scorer.app in a fresh interpreter (target < 1.5 s)\n")
    print(
        f"import scorer.app: median {median:.2f} s, best {best:.2f} s of {args.imports} runs "
        f"(CPU time {cpu:.2f} s); whole process {wall:.2f} s (median)"
    )
    print("imports made by scorer.app itself (cumulative, one run with -X importtime):")
    print(", ".join(f"{n} {s:.2f} s" for n, s in top))
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    if not args.skip_package:
        how, unzipped, zipped, entries = package_size()
        print("\n## Lambda package (limit 250 MB unzipped)\n")
        print(f"built with pip for {how}")
        print(f"unzipped {unzipped / 1e6:.1f} MB, zipped {zipped / 1e6:.1f} MB\n")
        print("| entry | MB |")
        print("|---|---|")
        for name, size in entries:
            print(f"| {name} | {size / 1e6:.1f} |")


if __name__ == "__main__":
    main()
