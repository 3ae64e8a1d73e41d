"""Peak memory of reading and preparing one file at the upload cap, per format, before/after.

    nice -n 10 .venv/bin/python benchmarks/bench_memory.py [--before main] [--only npz]
        [--also DIR]   # a third column: another functions/ directory, e.g. a prepare.py draft

Each case is one file of about MAX_FILE_BYTES (25 MiB) read by a FRESH process, as the
Lambda does: ``read_recording`` then ``prepare`` to the demo model's windows (leads I, II,
V2, 200 Hz, 2000 samples); the rate and lead names a file cannot carry (an .npy) are applied
as the S3 object metadata would be. The process's peak RSS (VmHWM) is printed for the
readers of ``--before`` (a git ref, default main: its ``functions/`` is extracted to a temp
dir) and of this checkout, side by side, with the outcome (windows, or the reason code).
Prints a Markdown table (docs/memory.md holds the latest run).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
CAP = 26_214_400  # template.yaml MaxFileBytes default
MODEL_LEADS = ("I", "II", "V2")
TWELVE = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FS = 500.0


@dataclass
class Case:
    name: str
    file: str  # the file name the reader sees (its extension picks the format)
    make: Callable[[int], bytes]  # cap -> the file's bytes
    s3_rate_hz: float | None = FS  # x-amz-meta-sampling-rate-hz, used when the file has none
    s3_leads: tuple[str, ...] | None = None  # x-amz-meta-leads, used when the file has none


def lead_names(leads: int) -> tuple[str, ...]:
    """1: II (not enough for the model), 3: the model's, 12: the standard twelve."""
    return {1: ("II",), 3: MODEL_LEADS, 12: TWELVE}[leads]


def ecg(rows: int, leads: int, seed: int = 0) -> np.ndarray:
    """ECG-like mV: a beat every 0.8 s at 500 Hz, baseline wander and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows, dtype=np.float32) / np.float32(FS)
    beat = np.exp(-(((t % 0.8) - 0.4) ** 2) / 2e-4)
    out = np.empty((rows, leads), np.float32)
    for j in range(leads):
        out[:, j] = (0.5 + 0.1 * j) * beat + 0.1 * np.sin(2 * np.pi * 0.3 * t + j)
        out[:, j] += rng.normal(0, 0.01, rows).astype(np.float32)
    return out


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npy(dtype: str, leads: int) -> Callable[[int], bytes]:
    def make(cap: int) -> bytes:
        rows = (cap - 128) // (leads * np.dtype(dtype).itemsize)
        x = ecg(rows, leads)
        if np.dtype(dtype).kind in "iu":  # counts of 1 uV (uint8: 10 uV around 128)
            info = np.iinfo(dtype)
            x = x * 1000 if info.min < 0 else x * 100 + 128
            x = np.clip(np.round(x), info.min, info.max)
        return _npy(x.astype(dtype))

    return make


def npz_int16_12(compressed: bool) -> Callable[[int], bytes]:
    """Realistic 12-lead int16: counts of 1 uV with the rate and lead names."""

    def build(rows: int) -> bytes:
        buffer = io.BytesIO()
        save = np.savez_compressed if compressed else np.savez
        signal = np.round(ecg(rows, 12) * 1000).astype(np.int16)
        save(buffer, signals=signal, fs=np.array(FS), leads=np.array(TWELVE))
        return buffer.getvalue()

    def make(cap: int) -> bytes:
        rows = (cap - 2048) // 24
        data = build(rows)
        if compressed:  # size it to the cap from the compression ratio measured
            rows = int(rows * (cap - 4096) / len(data))
            data = build(rows)
        return data

    return make


def npz_expanding(leads: int) -> Callable[[int], bytes]:
    """Near main's 8x expansion limit: a periodic int16 signal that deflates ~100x, 6.5 times
    the cap of it, plus an incompressible array that brings the file to the cap."""

    def build(signal: np.ndarray, padding: int) -> bytes:
        noise = np.random.default_rng(3).integers(0, 255, padding, dtype=np.uint8)
        buffer = io.BytesIO()
        names = np.array(lead_names(leads))
        np.savez_compressed(buffer, signals=signal, fs=np.array(FS), leads=names, pad=noise)
        return buffer.getvalue()

    def make(cap: int) -> bytes:
        period = np.round(ecg(400, leads) * 1000).astype(np.int16)
        signal = np.tile(period, (int(6.5 * cap) // (2 * leads) // 400, 1))
        data = build(signal, cap)
        return build(signal, 2 * cap - len(data) - 4096)  # the compressed signal, then noise

    return make


def _repeat_to(cap: int, head: bytes, block: bytes, tail: bytes = b"") -> bytes:
    """head + block repeated (cut at a line end) + tail, at most cap bytes."""
    room = cap - len(head) - len(tail)
    body = block * (room // len(block) + 1)
    return head + body[: body.rfind(b"\n", 0, room) + 1] + tail


def csv(leads: int, gaps: str = "", short: bool = False) -> Callable[[int], bytes]:
    """Leads named in the header, the rate in a comment, 10 s of ECG repeated to the cap;
    ``gaps`` "" (none), "empty" (0.1 % of the cells empty) or "null" (one null cell every
    10 s); ``short``: one digit per cell, the most rows a file of this size holds."""
    names = lead_names(leads)

    def make(cap: int) -> bytes:
        rng = np.random.default_rng(1)
        lines = []
        for i, row in enumerate(ecg(5000, leads)):
            cells = [f"{round(abs(v) * 9) % 10}" if short else f"{abs(v):.3f}" for v in row]
            if gaps == "empty":
                cells = ["" if rng.random() < 1e-3 else c for c in cells]
            elif gaps == "null" and i == 2500:
                cells[leads // 2] = "null"
            lines.append(",".join(cells))
        head = f"# sampling_rate_hz: {FS:g}\n{','.join(names)}\n".encode()
        return _repeat_to(cap, head, ("\n".join(lines) + "\n").encode())

    return make


def json_doc(leads: int) -> Callable[[int], bytes]:
    """{"sampling_rate_hz", "leads", "signals"}: 10 s of ECG (3 decimals) repeated."""
    names = list(lead_names(leads))

    def make(cap: int) -> bytes:
        rows = [json.dumps(row) for row in np.round(ecg(5000, leads), 3).tolist()]
        head = json.dumps({"sampling_rate_hz": FS, "leads": names})[:-1].encode()
        block = (",\n".join(rows) + ",\n").encode()
        data = _repeat_to(cap, head + b', "signals": [\n', block, rows[0].encode() + b"]}")
        return data

    return make


CASES = [
    Case("npy float32, 1 column", "a.npy", npy("float32", 1)),
    Case("npy float32, 3 columns", "a.npy", npy("float32", 3)),
    Case("npy float32, 12 columns (leads from S3)", "a.npy", npy("float32", 12), s3_leads=TWELVE),
    Case("npy int16, 1 column", "a.npy", npy("int16", 1)),
    Case("npy int16, 3 columns", "a.npy", npy("int16", 3)),
    Case("npy int16, 3 columns, 100 Hz (upsampled)", "a.npy", npy("int16", 3), s3_rate_hz=100),
    Case("npy int16, 12 columns (leads from S3)", "a.npy", npy("int16", 12), s3_leads=TWELVE),
    Case("npy uint8, 3 columns", "a.npy", npy("uint8", 3)),
    Case("npz int16, 12 leads, stored", "a.npz", npz_int16_12(False)),
    Case("npz int16, 12 leads, compressed", "a.npz", npz_int16_12(True)),
    Case("npz int16, 12 leads, compressed, 6.5x the cap", "a.npz", npz_expanding(12)),
    Case("npz int16, 3 leads, compressed, 6.5x the cap", "a.npz", npz_expanding(3)),
    Case("csv, 1 column", "a.csv", csv(1)),
    Case("csv, 1 column, empty cells", "a.csv", csv(1, "empty")),
    Case("csv, 3 columns", "a.csv", csv(3)),
    Case("csv, 3 columns, empty cells", "a.csv", csv(3, "empty")),
    Case("csv, 3 columns, null cells", "a.csv", csv(3, "null")),
    Case("csv, 3 columns, 1 digit per cell", "a.csv", csv(3, short=True)),
    Case("csv, 12 columns", "a.csv", csv(12)),
    Case("csv, 12 columns, empty cells", "a.csv", csv(12, "empty")),
    Case("json, 1 column", "a.json", json_doc(1)),
    Case("json, 3 columns", "a.json", json_doc(3)),
]


# -- one case in a fresh process ---------------------------------------------------------


def _vm_hwm_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(path: str, name: str, s3_rate_hz: str, s3_leads: str) -> None:
    """Read and prepare one file as the Lambda does; print what it cost as JSON."""
    from scorer import readers
    from scorer.errors import RejectedFile
    from scorer.prepare import prepare

    # lead_names left readers.py for read_checks.py when it was split; --before may predate it.
    checks = (
        readers if hasattr(readers, "lead_names") else importlib.import_module("scorer.read_checks")
    )

    data = Path(path).read_bytes()
    baseline = _vm_hwm_bytes()
    # This checkout's readers take the model's needs (leads kept, budget); main's do not.
    options = {"model_leads": MODEL_LEADS, "model_rate_hz": 200.0}
    if s3_rate_hz:
        options["metadata_rate_hz"] = float(s3_rate_hz)
    accepted = inspect.signature(readers.read_recording).parameters
    options = {k: v for k, v in options.items() if k in accepted}
    start = time.perf_counter()
    read_peak = 0
    try:
        recording = readers.read_recording(data, name, **options)  # type: ignore[arg-type]
        read_peak = _vm_hwm_bytes()
        if recording.fs is None and s3_rate_hz:  # app.py applies the S3 metadata this way
            recording.fs = float(s3_rate_hz)
        if recording.leads is None and s3_leads:
            channels = recording.signal.shape[1]
            recording.leads = checks.lead_names(s3_leads.split(","), channels, "S3 metadata")
        prepared = prepare(recording, MODEL_LEADS, 200.0, 2000)
        outcome = f"{prepared.windows.shape[0]} windows"
    except RejectedFile as rejected:
        outcome = rejected.code
    except MemoryError:
        outcome = "MemoryError"
    seconds = time.perf_counter() - start
    peak = _vm_hwm_bytes()
    print(
        json.dumps(
            {
                "baseline": baseline,
                "read_peak": read_peak or peak,
                "peak": peak,
                "outcome": outcome,
                "seconds": seconds,
            }
        )
    )


def run_case(functions: Path, path: Path, case: Case) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(functions),  # this copy of scorer, ahead of the installed one
        "OPENBLAS_NUM_THREADS": "1",  # as on a Lambda core; the same for both sides
    }
    command = [
        sys.executable,
        __file__,
        "--child",
        str(path),
        case.file,
        "" if case.s3_rate_hz is None else str(case.s3_rate_hz),
        ",".join(case.s3_leads or ()),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        # Killed (out of memory) or crashed: say so, with the last line of its error.
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"outcome": f"exit {done.returncode}: {last[:60]}", "peak": 0, "seconds": 0}
    return json.loads(done.stdout.strip().splitlines()[-1])


def extract(ref: str, into: Path) -> Path:
    """``functions/`` of a git ref, extracted to a directory."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "functions"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "functions"


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def mb1(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git ref of the 'before' readers")
    parser.add_argument("--only", default="", help="run the cases whose name holds this text")
    parser.add_argument("--cap", type=int, default=CAP, help="file size, bytes")
    parser.add_argument("--also", type=Path, help="a functions/ directory for a third column")
    args = parser.parse_args()

    cases = [c for c in CASES if args.only.lower() in c.name.lower()]
    with tempfile.TemporaryDirectory() as tmp:
        before = extract(args.before, Path(tmp) / "before")
        sides = {args.before: before, "this checkout": REPO / "functions"}
        if args.also:
            sides[str(args.also)] = args.also.resolve()
        print(f"Peak RSS (MiB) of a fresh process reading + preparing one file; cap {args.cap:,}")
        print()
        head = " | ".join(f"{side}: peak, outcome, s" for side in sides)
        print(f"| case | file MiB | {head} | this checkout / {args.before} |")
        print("|---|---:|" + "---|" * len(sides) + "---:|")
        baselines = []
        for case in cases:
            path = Path(tmp) / case.file
            data = case.make(args.cap)
            if len(data) > args.cap:
                raise SystemExit(f"{case.name}: {len(data):,} bytes, above the cap")
            path.write_bytes(data)
            results = [run_case(functions, path, case) for functions in sides.values()]
            baselines += [r["baseline"] for r in results if "baseline" in r]
            cells = " | ".join(
                f"**{mb(r['peak'])}** {r['outcome']} {r['seconds']:.1f}" for r in results
            )
            old, new = results[0]["peak"], results[1]["peak"]
            ratio = f"{new / old:.2f}" if old and new else "-"
            print(f"| {case.name} | {mb1(path.stat().st_size)} | {cells} | {ratio} |", flush=True)
        if baselines:
            print()
            print(
                f"Baseline (interpreter, numpy, scorer, the file's bytes): "
                f"{mb(min(baselines))}-{mb(max(baselines))} MiB."
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:6])
    else:
        main()
