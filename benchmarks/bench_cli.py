"""ecg-scorer start-up: the median of cold starts of ``ecg-scorer --help`` and of a command's
first step, side by side with a bare interpreter and with ``import boto3`` (the machine is
shared and noisy: read the ratios).

    .venv/bin/python benchmarks/bench_cli.py [--runs 10]

Target (issue 12): ``ecg-scorer --help`` under 0.5 s. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "ecg-scorer"

CASES = {
    "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
    "ecg-scorer --help": [str(SCRIPT), "--help"],
    "ecg-scorer report --help": [str(SCRIPT), "report", "--help"],
    "python -c 'import boto3' (what a command adds)": [sys.executable, "-c", "import boto3"],
}


def cold_start_s(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):  # interleaved, so a busy moment hits every case alike
        for name, argv in CASES.items():
            times[name].append(cold_start_s(argv))
    base = statistics.median(times["python -c pass (interpreter alone)"])
    print(f"| what ({args.runs} cold starts each) | median | min | vs interpreter |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} s | {min(values):.3f} s | {median / base:.1f}x |")


if __name__ == "__main__":
    main()
