"""Cost of the signal-quality check per 10-s three-lead window, beside the preparation the
Lambda already does (map leads, resample to 200 Hz, cut windows), in the same run.

    .venv/bin/python benchmarks/bench_quality.py [--repeats 300]

One BLAS thread (the Lambda's one core). The two are timed alternately on the same
recordings, so a busy machine slows both alike; compare the ratio. Target (issue 8): the
check adds <= 2 ms per window. Prints a Markdown table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: one core, as in the Lambda
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scorer import quality
from scorer.prepare import prepare
from scorer.recording import Recording

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "model_code"))
from synthetic import synthesize  # noqa: E402

LEADS = ("I", "II", "V2")
FS_MODEL, WINDOW = 200.0, 2000
TARGET_MS = 2.0


def recording(seconds: float, fs: float, seed: int) -> Recording:
    x = synthesize("normal", seconds, fs, LEADS, np.random.default_rng(seed))
    return Recording(signal=x.astype(np.float32), fs=fs, leads=list(LEADS), format="npz")


def timed(fn: object, *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()

    cases = [  # (label, seconds, device rate)
        ("10-s file at 500 Hz (1 window)", 10.0, 500.0),
        ("60-s file at 500 Hz (6 windows)", 60.0, 500.0),
        ("30-min file at 360 Hz (180 windows)", 1800.0, 360.0),
    ]
    print("| file | windows | prepare, per window | quality check, per window | ratio |")
    print("|---|---|---|---|---|")
    worst = 0.0
    for label, seconds, fs in cases:
        rec = recording(seconds, fs, seed=1)
        windows = prepare(rec, LEADS, FS_MODEL, WINDOW).windows
        n = windows.shape[0]
        repeats = max(5, args.repeats * 6 // (6 + n))  # fewer repeats for long files
        quality.assess(windows, LEADS, FS_MODEL)  # warm-up (FFT plans, imports)
        prep, check = [], []
        for _ in range(repeats):  # alternate, so load on the machine hits both alike
            prep.append(timed(prepare, rec, LEADS, FS_MODEL, WINDOW) / n)
            check.append(timed(quality.assess, windows, LEADS, FS_MODEL) / n)
        p_ms, q_ms = statistics.median(prep) * 1e3, statistics.median(check) * 1e3
        worst = max(worst, q_ms)
        print(f"| {label} | {n} | {p_ms:.2f} ms | {q_ms:.2f} ms | {q_ms / p_ms:.2f}x |")
    verdict = "met" if worst <= TARGET_MS else "MISSED"
    print(f"\nmedians; quality check <= {TARGET_MS:g} ms per window in every case: {verdict}")


if __name__ == "__main__":
    main()
