"""Local endpoint figures, side by side in one run: the real serving stack (SageMaker PyTorch
toolkit + TorchServe behind the runtime API) against the light endpoint (the handler in one
process behind the same runtime API).

    .venv/bin/python benchmarks/bench_local_stack.py [--requests 40] [--archive PATH]

Both serve the same packaged model (``build/local/model.tar.gz``, ``make``'s) and are called
through boto3's ``sagemaker-runtime`` client exactly as the Lambda calls them
(``application/x-npy``). Requests alternate between the two so that the shared machine's
noise falls on both alike. Prints Markdown tables: start-up to ready, resident memory after
the requests, per-request latency for one window and for a ~4 MB request (the serverless
payload limit), and the ratio real / light. Last, the runtime API's own cost per response
with and without TCP_NODELAY (a canned answer, no model): what Nagle's algorithm cost the
light endpoint before (headers and body leave in two writes).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import numpy as np

from ecg_scorer.local import HOST, REPO
from ecg_scorer.local.aws import child_env, isolate_from_aws
from ecg_scorer.local.model_server import ContainerClient, missing_prerequisites, start_model_server
from ecg_scorer.local.processes import (
    free_port,
    session_rss_bytes,
    spawn,
    stop_process,
    wait_ready,
)
from ecg_scorer.local.runtime_api import (
    MAX_PAYLOAD_BYTES,
    ModelAnswer,
    make_handler_class,
    make_server,
    serve_in_thread,
)
from ecg_scorer.local.stack import ARCHIVE, read_model_config, unpack

ENDPOINT = "bench-endpoint"
WORK = REPO / "build" / "bench-local-stack"


def npy(windows: int, window: int, channels: int) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.save(buffer, rng.normal(0.0, 0.3, (windows, window, channels)).astype(np.float32))
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="per size and endpoint")
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    args = parser.parse_args()
    missing = missing_prerequisites()
    if missing:
        raise SystemExit("cannot run the real serving stack here: " + "; ".join(missing))
    isolate_from_aws()
    shutil.rmtree(WORK, ignore_errors=True)
    model_dir = unpack(args.archive, WORK)
    config = read_model_config(model_dir)
    window, channels = int(config["window_samples"]), int(config["channels"])
    one = npy(1, window, channels)
    per_window = len(npy(2, window, channels)) - len(one)
    most = (MAX_PAYLOAD_BYTES - len(one)) // per_window  # the most windows under 4 MB
    big = npy(most, window, channels)

    # Start both at once, as the stack starts its pieces; each start is timed on its own.
    started = time.monotonic()
    real = start_model_server(model_dir, WORK / "real")
    port = free_port()
    light_args = ["-m", "ecg_scorer.local.endpoint", "--model-dir", str(model_dir)]
    light_args += ["--endpoint-name", ENDPOINT, "--host", HOST, "--port", str(port)]
    light_env = child_env({"PYTHONPATH": str(model_dir / "code")})
    light_log, light_ready = WORK / "light" / "endpoint.log", WORK / "light" / "endpoint.ready"
    light = spawn(light_args, light_env, light_log, light_ready)
    front = None
    try:
        wait_ready(light, light_ready, light_log, 180)
        light_start = time.monotonic() - started
        real_start = real.wait_ready()
        front = make_server(ENDPOINT, ContainerClient(real.url), HOST)
        serve_in_thread(front)
        urls = {
            "real (toolkit + TorchServe)": f"http://{HOST}:{front.server_address[1]}",
            "light (handler in process)": f"http://{HOST}:{port}",
        }
        clients = {
            name: boto3.client("sagemaker-runtime", endpoint_url=url) for name, url in urls.items()
        }
        latencies: dict[tuple[str, str], list[float]] = {}
        sizes = {
            "1 window": one,
            f"{most} windows ({len(big) / 1e6:.1f} MB)": big,
        }
        for size, body in sizes.items():
            for client in clients.values():  # warm up: first calls load lazily
                invoke(client, body)
            for _ in range(args.requests):
                for name, client in clients.items():
                    latencies.setdefault((size, name), []).append(invoke(client, body))
        rss = {
            "real (toolkit + TorchServe)": session_rss_bytes(real.proc.pid),
            "light (handler in process)": session_rss_bytes(light.pid),
        }
        starts = dict(zip(urls, (real_start, light_start), strict=True))
    finally:
        if front is not None:
            front.shutdown()
            front.server_close()
        real.stop()
        stop_process(light)

    names = list(clients)
    print(
        f"CPU cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; "
        f"{args.requests} requests per size and endpoint, alternating\n"
    )
    print("| endpoint | start to ready (s) | resident memory (MB) |")
    print("|---|---|---|")
    for name in names:
        print(f"| {name} | {starts[name]:.1f} | {rss[name] / 2**20:.0f} |")
    print()
    print("| request | endpoint | median (ms) | p90 (ms) | real / light (median) |")
    print("|---|---|---|---|---|")
    for size in sizes:
        medians = {n: statistics.median(latencies[(size, n)]) for n in names}
        for name in names:
            values = latencies[(size, name)]
            ratio = medians[names[0]] / medians[names[1]]
            shown = f"{ratio:.2f}" if name == names[0] else ""
            print(
                f"| {size} | {name} | {medians[name]:.1f} | {percentile(values, 0.9):.1f} "
                f"| {shown} |"
            )
    print()
    print("| runtime API alone (canned answer) | median (ms) |")
    print("|---|---|")
    for name, median in transport(args.requests).items():
        print(f"| {name} | {median:.1f} |")
    return 0


def transport(requests: int) -> dict[str, float]:
    """Median ms per InvokeEndpoint through the runtime API with a canned answer, with and
    without TCP_NODELAY on the server's sockets."""
    answer = ModelAnswer(200, b'{"probability": 0.5}' * 15, "application/json")
    with_nodelay = make_handler_class(ENDPOINT, lambda body, ctype, accept: answer)

    class Nagle(with_nodelay):  # type: ignore[valid-type, misc]
        def setup(self) -> None:
            BaseHTTPRequestHandler.setup(self)

    body = b"x" * 24_000  # one window's .npy
    medians = {}
    for name, handler in (("TCP_NODELAY", with_nodelay), ("Nagle (before)", Nagle)):
        server = ThreadingHTTPServer((HOST, 0), handler)
        server.daemon_threads = True
        serve_in_thread(server)
        client = boto3.client(
            "sagemaker-runtime", endpoint_url=f"http://{HOST}:{server.server_address[1]}"
        )
        try:
            invoke(client, body)
            medians[name] = statistics.median(invoke(client, body) for _ in range(requests))
        finally:
            server.shutdown()
            server.server_close()
    return medians


def invoke(client: Any, body: bytes) -> float:
    """Milliseconds for one InvokeEndpoint, answer read."""
    started = time.perf_counter()
    answer = client.invoke_endpoint(
        EndpointName=ENDPOINT, Body=body, ContentType="application/x-npy", Accept="application/json"
    )
    answer["Body"].read()
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    raise SystemExit(main())
