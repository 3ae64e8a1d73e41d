"""Reading speed and memory of the WFDB and EDF/BDF readers, on a 1-hour 3-lead 500 Hz
recording written on the fly in each format.

    nice -n 10 .venv/bin/python benchmarks/bench_formats.py [--minutes 60] [--range-minutes 10]

Prints Markdown tables (docs/formats.md):
- reading speed of a whole file, in MB of file per second (best of ``--rounds``, 5), all
  formats side by side in interleaved rounds (the machine is shared: compare the ratios);
- peak RSS above the process's baseline when reading the whole file and when reading one
  range of frames from only its bytes (as the Lambda does with S3 Range GETs), each in a
  fresh process.

Needs the dev requirements (wfdb and edfio write the files).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FS = 500
LEADS = ["I", "II", "V2"]
FORMATS = ["wfdb 16", "wfdb 212", "wfdb 24", "wfdb .mat", "edf", "bdf"]


def ecg(seconds: float) -> np.ndarray:
    """[T, 3] float64 mV: a spike every 0.8 s over a slow wave, different per lead."""
    t = np.arange(round(seconds * FS)) / FS
    beat = np.exp(-(((t % 0.8) - 0.4) ** 2) / 2e-4)
    return np.column_stack([beat * (1 + k / 3) + 0.1 * np.sin(0.6 * t + k) for k in range(3)])


def write_all(folder: Path, seconds: float) -> dict[str, tuple[str, list[str]]]:
    """Each format written to ``folder``: name -> (file to open first, every file)."""
    import edfio
    import wfdb as wfdb_ref
    from wfdb.io.convert.matlab import wfdb_to_mat

    x = ecg(seconds)
    written: dict[str, tuple[str, list[str]]] = {}
    for fmt, gain in (("16", 1000.0), ("212", 200.0), ("24", 100_000.0)):
        name = f"rec{fmt}"
        digital = np.round(x * gain).astype(np.int32)
        wfdb_ref.wrsamp(
            name,
            fs=FS,
            units=["mV"] * 3,
            sig_name=LEADS,
            d_signal=digital,
            fmt=[fmt] * 3,
            adc_gain=[gain] * 3,
            baseline=[0] * 3,
            write_dir=str(folder),
        )
        written[f"wfdb {fmt}"] = (f"{name}.hea", [f"{name}.hea", f"{name}.dat"])
    cwd = Path.cwd()
    try:  # wfdb_to_mat writes RECm.mat / RECm.hea into the current directory
        os.chdir(folder)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a table of the signals
            wfdb_to_mat("rec16")
    finally:
        os.chdir(cwd)
    written["wfdb .mat"] = ("rec16m.hea", ["rec16m.hea", "rec16m.mat"])
    uv = [(x[:, j] * 1000, f"ECG {lead}") for j, lead in enumerate(LEADS)]
    edfio.Edf([edfio.EdfSignal(v, FS, label=k, physical_dimension="uV") for v, k in uv]).write(
        folder / "rec.edf"
    )
    edfio.Bdf([edfio.BdfSignal(v, FS, label=k, physical_dimension="uV") for v, k in uv]).write(
        folder / "rec.bdf"
    )
    written["edf"] = ("rec.edf", ["rec.edf"])
    written["bdf"] = ("rec.bdf", ["rec.bdf"])
    return written


def read_whole(fmt: str, folder: Path, first: str, files: list[str]) -> np.ndarray:
    from scorer import edf, wfdb

    if fmt.startswith("wfdb"):
        return wfdb.read_record({f: (folder / f).read_bytes() for f in files}, first).signal
    return edf.read_edf((folder / first).read_bytes()).signal


def read_range(fmt: str, folder: Path, first: str, seconds: float) -> np.ndarray:
    """One range of frames in the middle, from only its bytes (read with seek, like a
    Range GET): the header is parsed first, then the plan says which bytes to fetch."""
    from scorer import edf, wfdb, wfdb_header

    def fetch(name: str, start: int, end: int) -> bytes:
        with open(folder / name, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    if fmt.startswith("wfdb"):
        header = wfdb_header.parse_header((folder / first).read_bytes())
        sizes = {n: (folder / n).stat().st_size for n in wfdb_header.needed_files(header)}
        plan = wfdb.plan(header, sizes)
        start = plan.n_frames // 2
        stop = min(plan.n_frames, start + round(seconds * plan.fs / plan.samples_per_frame))
        ranges = plan.byte_ranges(start, stop)
        return plan.read({n: fetch(n, a, b) for n, (a, b) in ranges.items()}, start, stop).signal
    edf_header = edf.parse_header(fetch(first, 0, edf.header_size(fetch(first, 0, 256))))
    eplan = edf.plan(edf_header, (folder / first).stat().st_size)
    start = eplan.n_frames // 2
    stop = min(eplan.n_frames, start + round(seconds * eplan.fs / eplan.samples_per_frame))
    a, b = eplan.byte_range(start, stop)
    return eplan.read(fetch(first, a, b), start, stop).signal


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(key)


def child(args: argparse.Namespace) -> None:
    """Run in a fresh process: RSS after imports, then the peak RSS of the read alone (the
    high-water mark is reset first; ru_maxrss would carry the parent's across exec)."""
    import scorer.edf
    import scorer.wfdb  # noqa: F401  (imported before the baseline is taken)

    folder = Path(args.folder)
    info = json.loads(args.info)
    base = _status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    if args.mode == "whole":
        out = read_whole(args.child, folder, info[0], info[1])
    else:
        out = read_range(args.child, folder, info[0], args.range_minutes * 60)
    print(json.dumps({"base": base, "peak": _status_mb("VmHWM"), "rows": out.shape[0]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--range-minutes", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"writing a {args.minutes:g}-min 3-lead {FS} Hz recording in {len(FORMATS)} formats")
        written = write_all(folder, args.minutes * 60)
        reference = ecg(args.minutes * 60).astype(np.float32)
        best = dict.fromkeys(FORMATS, float("inf"))
        errors = {}
        for _ in range(args.rounds):  # rounds over all formats, so load hits all alike
            for fmt in FORMATS:
                first, files = written[fmt]
                t0 = time.perf_counter()
                out = read_whole(fmt, folder, first, files)
                best[fmt] = min(best[fmt], time.perf_counter() - t0)
                assert out.shape == reference.shape
                errors[fmt] = float(np.abs(out - reference).max())
        rounds = f"best of {args.rounds}"
        print(f"\n| format | file MB | read whole (s, {rounds}) | MB/s | max error (mV) |")
        print("|---|---:|---:|---:|---:|")
        for fmt in FORMATS:
            size = sum((folder / f).stat().st_size for f in written[fmt][1]) / 1e6
            print(
                f"| {fmt} | {size:.1f} | {best[fmt]:.3f} | {size / best[fmt]:.0f} | "
                f"{errors[fmt]:.1e} |"
            )
        print(
            f"\n| format | peak RSS above baseline, whole file (MB) | "
            f"peak RSS above baseline, {args.range_minutes:g}-min range (MB) | baseline (MB) |"
        )
        print("|---|---:|---:|---:|")
        for fmt in FORMATS:
            first, files = written[fmt]
            rows = []
            for mode in ("whole", "range"):
                result = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        fmt,
                        "--mode",
                        mode,
                        "--folder",
                        tmp,
                        "--info",
                        json.dumps([first, files]),
                        "--range-minutes",
                        str(args.range_minutes),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                rows.append(json.loads(result.stdout))
            whole, part = rows
            print(
                f"| {fmt} | {whole['peak'] - whole['base']:.0f} | "
                f"{part['peak'] - part['base']:.0f} | {whole['base']:.0f} |"
            )


if __name__ == "__main__":
    main()
