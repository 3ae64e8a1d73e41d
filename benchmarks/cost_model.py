"""The AWS bill per 1 M files, by service, the seed's way and the project's way side by side,
from the figures bench_throughput.py measured; and, on paper, a backfill of 1 M stored
windows through the serverless path against SageMaker Batch Transform.

    .venv/bin/python benchmarks/cost_model.py [build/bench-throughput/throughput.json]

Measured (per file, from the JSON): Lambda invocations and duration (without the local
endpoint's queue: on AWS each call gets its own container), endpoint calls and windows, the
container's time for them alone (what SageMaker Serverless bills), bytes in and out of the
endpoint, DynamoDB write units of the items actually stored (the table's and its indexes'
sizes), and the function's log bytes. Modelled: one S3 PUT (the upload) and one GET (the
function's read) per file, and SQS requests: one SendMessage (the S3 event) per file plus one
ReceiveMessage and one DeleteMessageBatch per batch of up to 10 messages.

PRICES CHANGE. They are US East (N. Virginia) list prices, on-demand, without free tiers,
transcribed from the pages named beside each (as published in 2025, DynamoDB after its
2024-11-01 cut) and not fetched by this script (no network here): check them before quoting.
The local container runs one worker with one intra-op thread on a shared core, so its busy
time stands in for SageMaker's, which gives more vCPUs to larger memory sizes.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_INPUT = Path(__file__).resolve().parent.parent / "build/bench-throughput/throughput.json"
FILES = 1_000_000
PRICES_AS_OF = "2025 list prices, us-east-1 (not re-checked: PRICES CHANGE)"


@dataclass(frozen=True)
class Price:
    usd: float
    per: str
    source: str


S3_URL = "https://aws.amazon.com/s3/pricing/"
SQS_URL = "https://aws.amazon.com/sqs/pricing/"
LAMBDA_URL = "https://aws.amazon.com/lambda/pricing/"
SAGEMAKER_URL = "https://aws.amazon.com/sagemaker/pricing/"
DYNAMODB_URL = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
LOGS_URL = "https://aws.amazon.com/cloudwatch/pricing/"

S3_PUT = Price(0.005 / 1000, "PUT request (S3 Standard)", S3_URL)
S3_GET = Price(0.0004 / 1000, "GET request (S3 Standard)", S3_URL)
SQS_REQUEST = Price(0.40 / 1e6, "standard-queue request (64 KB chunk)", SQS_URL)
LAMBDA_REQUEST = Price(0.20 / 1e6, "invocation", LAMBDA_URL)
LAMBDA_GB_S = Price(0.0000166667, "GB-second, x86", LAMBDA_URL)
# Serverless Inference: per second of compute, by the endpoint's memory size.
SERVERLESS_PER_S = {
    1024: Price(0.0000200, "second at 1 GB", SAGEMAKER_URL),
    2048: Price(0.0000400, "second at 2 GB", SAGEMAKER_URL),
    3072: Price(0.0000600, "second at 3 GB", SAGEMAKER_URL),
    4096: Price(0.0000800, "second at 4 GB", SAGEMAKER_URL),
    5120: Price(0.0001000, "second at 5 GB", SAGEMAKER_URL),
    6144: Price(0.0001200, "second at 6 GB", SAGEMAKER_URL),
}
SERVERLESS_DATA = Price(0.016 / 1e9, "byte processed (in or out)", SAGEMAKER_URL)
DYNAMODB_WRITE = Price(0.625 / 1e6, "write request unit, on-demand", DYNAMODB_URL)
LOGS_INGEST = Price(0.50 / 1e9, "byte of log ingested (Standard)", LOGS_URL)
# Batch Transform bills instance-hours of its ML instances (same rates as real-time hosting).
BATCH_INSTANCES = {
    "ml.c5.xlarge": (Price(0.204, "instance-hour", SAGEMAKER_URL), 4),
    "ml.m5.xlarge": (Price(0.23, "instance-hour", SAGEMAKER_URL), 4),
}
SERVERLESS_MEMORY_MB = 3072  # deploy_model.py deploy's default --memory
# Lambda writes START, END and REPORT lines per invocation (~250 bytes) besides the
# function's own output, which the benchmark measures.
PLATFORM_LOG_BYTES = 250
# A Batch Transform job's instances boot and load the container before the first record.
BATCH_START_S = 6 * 60


def per_file(way: dict[str, Any], files: int, serverless_mb: int) -> dict[str, tuple[str, float]]:
    """What one file costs by service: (what was counted, USD)."""
    n = way["files"]
    lam, ep, items = way["lambda"], way["endpoint"], way["items"]
    batch = way["settings"]["batch_size"]
    sqs_requests = 1 + 2 / min(batch, 10)
    invocations = lam["invocations"] / n
    gb_s = lam["duration_ms_adjusted"] / 1000 * lam["memory_size_mb"] / 1024 / n
    busy_s = ep["billed_s"] / n
    data = (ep["bytes_in"] + ep["bytes_out"]) / n
    log_bytes = way.get("function_log_bytes", 0) / n + PLATFORM_LOG_BYTES * invocations
    memory_gb = serverless_mb / 1024
    return {
        "S3 PUT (upload)": ("1 request", S3_PUT.usd),
        "S3 GET (read)": ("1 request", S3_GET.usd),
        "SQS": (f"{sqs_requests:.2f} requests", sqs_requests * SQS_REQUEST.usd),
        "Lambda requests": (f"{invocations:.3f} invocations", invocations * LAMBDA_REQUEST.usd),
        "Lambda GB-s": (f"{gb_s:.4f} GB-s", gb_s * LAMBDA_GB_S.usd),
        "SageMaker Serverless compute": (
            f"{busy_s * 1000:.1f} ms at {memory_gb:g} GB",
            busy_s * SERVERLESS_PER_S[serverless_mb].usd,
        ),
        "SageMaker data in+out": (f"{data / 1e3:.1f} KB", data * SERVERLESS_DATA.usd),
        "DynamoDB writes": (
            f"{items['write_units_mean']:.2f} write units",
            items["write_units_mean"] * DYNAMODB_WRITE.usd,
        ),
        "CloudWatch Logs": (f"{log_bytes:.0f} bytes", log_bytes * LOGS_INGEST.usd),
    }


def money(usd: float) -> str:
    return f"${usd:,.2f}" if usd >= 0.01 else f"${usd:,.4f}"


def bill_table(report: dict[str, Any], serverless_mb: int) -> str:
    seed, project = report["ways"]
    a, b = per_file(seed, FILES, serverless_mb), per_file(project, FILES, serverless_mb)
    lines = [
        f"Per {FILES:,} files of {report['file']['seconds']:g} s "
        f"({report['date']} run, {seed['files']:,} files per way; serverless memory "
        f"{serverless_mb} MB; {PRICES_AS_OF})",
        "",
        "| service | seed way: per file | per 1 M | project way: per file | per 1 M "
        "| seed / project |",
        "|---|---|---|---|---|---|",
    ]
    for service in a:
        (what_a, usd_a), (what_b, usd_b) = a[service], b[service]
        ratio = f"{usd_a / usd_b:.1f}x" if usd_b else ""
        lines.append(
            f"| {service} | {what_a} | {money(usd_a * FILES)} | {what_b} | "
            f"{money(usd_b * FILES)} | {ratio} |"
        )
    total_a = sum(usd for _, usd in a.values()) * FILES
    total_b = sum(usd for _, usd in b.values()) * FILES
    lines.append(
        f"| **total** | | **{money(total_a)}** | | **{money(total_b)}** | "
        f"{total_a / total_b:.2f}x |"
    )
    # The seed sent JSON, the function .npy: what JSON bodies would add on the endpoint side.
    one = report["one_window"]
    js, npy = one["application/json"], one["application/x-npy"]
    time_factor = js["ms_median"] / npy["ms_median"]
    compute = a["SageMaker Serverless compute"][1] * time_factor * FILES
    data = (
        (seed["endpoint"]["bytes_in"] * js["bytes"] / npy["bytes"] + seed["endpoint"]["bytes_out"])
        / seed["files"]
        * SERVERLESS_DATA.usd
        * FILES
    )
    lines += [
        "",
        f"The seed sent JSON: one window as JSON took {js['ms_median']} ms and "
        f"{js['bytes'] / 1e3:.0f} KB against {npy['ms_median']} ms and {npy['bytes'] / 1e3:.0f} KB "
        f"as .npy on the same container, so the seed's own requests would bill "
        f"{money(compute)} of compute and {money(data)} of data per 1 M files "
        f"(seed way above: {money(a['SageMaker Serverless compute'][1] * FILES)} and "
        f"{money(a['SageMaker data in+out'][1] * FILES)}).",
    ]
    return "\n".join(lines)


def backfill_table(report: dict[str, Any], serverless_mb: int) -> str:
    """1 M stored windows re-scored: the serverless path (rescore -> queue -> Lambda) against
    a Batch Transform job over .npy windows prepared beforehand, on paper."""
    project = report["ways"][1]
    cost = report["call_cost"]
    full = int(max(cost["measured"], key=int))
    per_window_s = (cost["fixed_ms"] / full + cost["per_window_ms"]) / 1000  # in full calls
    windows = FILES
    path = per_file(project, FILES, serverless_mb)
    # Backfill through the queue: no upload; `ecg-scorer rescore` sends the messages 10 to a
    # SendMessageBatch where S3 sent one event per upload.
    serverless_parts = {k: v[1] for k, v in path.items() if k != "S3 PUT (upload)"}
    serverless_parts["SQS"] -= 0.9 * SQS_REQUEST.usd
    serverless_total = sum(serverless_parts.values()) * windows
    model_only = path["SageMaker Serverless compute"][1] * windows
    lines = [
        f"Backfill of {windows:,} stored 10-s windows (one per file), on paper: the model's "
        f"measured {per_window_s * 1000:.2f} ms per window in full calls (one thread)",
        "",
        "| path | model compute | everything per 1 M windows | model time |",
        "|---|---|---|---|",
    ]
    concurrency = project["settings"]["max_concurrency"]
    lines.append(
        f"| serverless path (rescore -> SQS -> Lambda -> endpoint -> DynamoDB) | "
        f"{money(model_only)} | {money(serverless_total)} | "
        f"{windows * per_window_s / concurrency / 3600:.1f} h at {concurrency} calls at once |"
    )
    for name, (price, vcpus) in BATCH_INSTANCES.items():
        hours = windows * per_window_s / vcpus / 3600 + BATCH_START_S / 3600
        compute = math.ceil(hours * 3600) / 3600 * price.usd
        # Still needed around it: reading each file (GET), cutting windows (Lambda-like work,
        # here the function's GB-s as the upper bound), writing items (DynamoDB).
        around = (
            sum(path[k][1] for k in ("S3 GET (read)", "Lambda GB-s", "DynamoDB writes")) * windows
        )
        lines.append(
            f"| Batch Transform, 1 x {name} ({vcpus} vCPU, {money(price.usd)}/h) | "
            f"{money(compute)} | {money(compute + around)} | {hours:.1f} h, one worker per vCPU |"
        )
    return "\n".join(lines)


def sources() -> str:
    prices = [S3_PUT, S3_GET, SQS_REQUEST, LAMBDA_REQUEST, LAMBDA_GB_S]
    prices += [SERVERLESS_PER_S[SERVERLESS_MEMORY_MB], SERVERLESS_DATA, DYNAMODB_WRITE]
    prices += [LOGS_INGEST] + [price for price, _ in BATCH_INSTANCES.values()]
    lines = ["| price (USD) | per | source |", "|---|---|---|"]
    for price in prices:
        lines.append(f"| {price.usd:.10g} | {price.per} | {price.source} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figures", type=Path, nargs="?", default=DEFAULT_INPUT)
    parser.add_argument(
        "--serverless-memory",
        type=int,
        default=SERVERLESS_MEMORY_MB,
        choices=sorted(SERVERLESS_PER_S),
        help="the endpoint's MemorySizeInMB (default: deploy_model.py's)",
    )
    args = parser.parse_args()
    if not args.figures.is_file():
        raise SystemExit(f"{args.figures} not found: run benchmarks/bench_throughput.py first")
    report = json.loads(args.figures.read_text(encoding="utf-8"))
    print(bill_table(report, args.serverless_memory))
    print()
    print(backfill_table(report, args.serverless_memory))
    print()
    print(f"Prices: {PRICES_AS_OF}")
    print()
    print(sources())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
