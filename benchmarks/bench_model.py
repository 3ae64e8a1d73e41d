"""Speed and memory of the model handler on one CPU thread (figures, not tests).

Usage::

    python benchmarks/bench_model.py --model-dir models/demo

Prints batch-1 latency, per-ECG latency at batch 32, model_fn time, application/x-npy vs
application/json decode time of one ECG, and the peak resident memory of a fresh process
that loads the model and scores a 128-window x-npy request, each against its target
(issue 2). Runs itself again with PYTHONPATH=model_code when the handler is not importable,
so the flat ``from model import ...`` resolves as it does in the container.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODEL_CODE = REPO / "model_code"

# Measured at 128 windows by a fresh interpreter: import, model_fn, one request end to end.
RSS_CHILD = """
import io, json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
import torch
torch.set_num_threads(1)
import inference
from synthetic import synthesize_batch
t1 = time.perf_counter()
model = inference.model_fn(sys.argv[1])
t2 = time.perf_counter()
x = synthesize_batch(["normal", "af"] * 64, 10.0, 200.0, ["I", "II", "V2"],
                     np.random.default_rng(0))
buf = io.BytesIO()
np.save(buf, x)
out = inference.output_fn(
    inference.predict_fn(inference.input_fn(buf.getvalue(), "application/x-npy"), model),
    "application/json",
)
assert len(json.loads(out)) == 128
rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"rss_kib": rss_kib, "import_s": t1 - t0, "model_fn_s": t2 - t1}))
"""


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def run(model_dir: Path, repeats: int) -> int:
    import numpy as np
    import torch

    os.environ["ECG_TORCH_THREADS"] = "1"  # model_fn honours it; the figures are per thread
    torch.set_num_threads(1)
    import inference
    from synthetic import synthesize_batch

    rng = np.random.default_rng(0)
    x32 = synthesize_batch(["normal", "af", "pvc", "tachycardia"] * 8, 10.0, 200.0,
                           ["I", "II", "V2"], rng)  # fmt: skip
    one = x32[:1]

    model = inference.model_fn(str(model_dir))
    model_fn_warm = timed(lambda: inference.model_fn(str(model_dir)), 10, warmup=1)

    b1 = timed(lambda: inference.predict_fn(one, model), repeats)
    b32 = timed(lambda: inference.predict_fn(x32, model), max(10, repeats // 10))

    buf = io.BytesIO()
    np.save(buf, one[0])  # float32, as the Lambda sends it
    npy_body = buf.getvalue()
    json_body = json.dumps({"signals": one[0].astype(np.float64).tolist()})
    dec_npy = timed(lambda: inference.input_fn(npy_body, "application/x-npy"), repeats)
    dec_json = timed(lambda: inference.input_fn(json_body, "application/json"), repeats // 4)

    env = dict(os.environ, PYTHONPATH=str(MODEL_CODE), OMP_NUM_THREADS="1")
    child = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(model_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    fresh = json.loads(child.stdout.strip().splitlines()[-1])
    rss_mb = fresh["rss_kib"] / 1024
    model_fn_cold = float(fresh["model_fn_s"])

    ms = 1000.0
    npy_med, json_med = pct(dec_npy, 50), pct(dec_json, 50)
    rows = [
        ("batch-1 latency, median", pct(b1, 50) * ms, "ms", "<= 5 ms", pct(b1, 50) * ms <= 5),
        ("batch-1 latency, p95", pct(b1, 95) * ms, "ms", "", None),
        ("batch-32 per ECG, median", pct(b32, 50) / 32 * ms, "ms", "<= 2 ms",
         pct(b32, 50) / 32 * ms <= 2),
        ("import torch + handler (fresh)", float(fresh["import_s"]) * ms, "ms", "", None),
        ("model_fn, fresh process", model_fn_cold * ms, "ms", "< 300 ms", model_fn_cold < 0.3),
        ("model_fn, warm median", pct(model_fn_warm, 50) * ms, "ms", "", None),
        ("decode 1 ECG x-npy, median", npy_med * ms, "ms", "", None),
        ("decode 1 ECG JSON, median", json_med * ms, "ms", "", None),
        ("JSON / x-npy decode ratio", json_med / npy_med, "x", ">= 20x", json_med / npy_med >= 20),
        ("peak RSS, 128-window request", rss_mb, "MB", "< 800 MB", rss_mb < 800),
    ]  # fmt: skip
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, model {model_dir}")
    print(f"request sizes for one ECG: x-npy {len(npy_body)} B, JSON {len(json_body)} B")
    print(f"{'measure':32} {'value':>10}  {'target':10} ok")
    failed = 0
    for name, value, unit, target, ok in rows:
        mark = "" if ok is None else ("yes" if ok else "NO")
        failed += ok is False
        print(f"{name:32} {value:>8.2f} {unit:2} {target:10} {mark}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "demo")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    if not (args.model_dir / "model.pth").is_file():
        print(f"no model in {args.model_dir}: run `make model` first", file=sys.stderr)
        return 2
    if importlib.util.find_spec("inference") is None:
        # Not importable yet: run again with model_code on PYTHONPATH (no sys.path edits).
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(MODEL_CODE), env.get("PYTHONPATH")]))
        cmd = [sys.executable, str(Path(__file__).resolve()), *(argv or sys.argv[1:])]
        return subprocess.run(cmd, env=env, check=False).returncode
    return run(args.model_dir, args.repeats)


if __name__ == "__main__":
    sys.exit(main())
