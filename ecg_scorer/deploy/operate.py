"""Operate a deployed endpoint: status and CloudWatch figures, log lines, and deletion.

Deletion removes what deploy created for the endpoint (found by tag).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TextIO

from ecg_scorer.deploy import ToolError
from ecg_scorer.deploy.aws import VARIANT, Aws, client_error, error_code, exists, tag_dict
from ecg_scorer.deploy.identity import MANAGED_BY, TAG_MANAGED_BY, TAG_SHA, TAG_VERSION, managed
from ecg_scorer.deploy.render import rows

METRICS = (
    ("Invocations", "Sum", ""),
    ("Invocation4XXErrors", "Sum", ""),
    ("Invocation5XXErrors", "Sum", ""),
    ("ModelLatency", "Average", "us"),
    ("OverheadLatency", "Average", "us"),
    ("ModelSetupTime", "Average", "us"),
    ("ServerlessConcurrentExecutionsUtilization", "Maximum", ""),
)


def log_group(endpoint: str) -> str:
    return f"/aws/sagemaker/Endpoints/{endpoint}"


# ----------------------------------------------------------------------------------------------
# status


def _metric_value(points: list[dict[str, Any]], stat: str, unit: str) -> str:
    values = [p[stat] for p in points if stat in p]
    if not values:
        return "0" if stat == "Sum" else "n/a"
    if stat == "Sum":
        return f"{sum(values):.0f}"
    if stat == "Maximum":
        return f"{max(values):.2f}"
    if unit == "us":
        return f"{sum(values) / len(values) / 1000:.1f} ms"
    return f"{sum(values) / len(values):.2f}"


def _metric_lines(cloudwatch: Any, endpoint: str, minutes: int) -> list[str]:
    end = datetime.now(UTC)
    start = end - timedelta(minutes=minutes)
    period = max(60, (minutes * 60) // 60 * 60)
    table = []
    for name, stat, unit in METRICS:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName=name,
            Dimensions=[
                {"Name": "EndpointName", "Value": endpoint},
                {"Name": "VariantName", "Value": VARIANT},
            ],
            StartTime=start,
            EndTime=end,
            Period=period,
            Statistics=[stat],
        ).get("Datapoints", [])
        table.append((name, stat.lower(), _metric_value(points, stat, unit)))
    return rows(table, [42, 8], indent="  ")


def _serverless_text(serverless: dict[str, Any]) -> str:
    text = (
        f"{serverless.get('MemorySizeInMB', '?')} MB, "
        f"max concurrency {serverless.get('MaxConcurrency', '?')}"
    )
    if serverless.get("ProvisionedConcurrency"):
        text += f", provisioned {serverless['ProvisionedConcurrency']}"
    return text


def status_lines(aws: Aws, endpoint: str, minutes: int = 60) -> list[str]:
    """What `status` prints."""
    sm = aws.client("sagemaker")
    desc = exists(lambda: sm.describe_endpoint(EndpointName=endpoint))
    if desc is None:
        raise ToolError(
            f"endpoint {endpoint} not found in {aws.region}: deploy it with "
            "deploy_model.py deploy (or pass --endpoint-name)"
        )
    reason = f": {desc['FailureReason']}" if desc.get("FailureReason") else ""
    table = [
        ("endpoint", f"{endpoint} ({aws.region})"),
        ("state", desc["EndpointStatus"] + reason),
        ("config", desc.get("EndpointConfigName", "?")),
        ("modified", desc.get("LastModifiedTime", "")),
    ]
    config = exists(
        lambda: sm.describe_endpoint_config(EndpointConfigName=desc["EndpointConfigName"])
    )
    for variant in (config or {}).get("ProductionVariants", []):
        table.append(("memory", _serverless_text(variant.get("ServerlessConfig", {}))))
        model = exists(partial(sm.describe_model, ModelName=variant["ModelName"]))
        if model:
            tags = tag_dict(sm, model["ModelArn"])
            container = model.get("PrimaryContainer", {})
            table += [
                ("model", variant["ModelName"]),
                ("version", tags.get(TAG_VERSION, "?")),
                ("archive", container.get("ModelDataUrl", "?")),
                ("sha256", tags.get(TAG_SHA, "?")),
                ("image", container.get("Image", "?")),
            ]
    lines = rows(table, [10])
    lines.append(f"last {minutes} min (CloudWatch AWS/SageMaker):")
    lines.extend(_metric_lines(aws.client("cloudwatch"), endpoint, minutes))
    return lines


# ----------------------------------------------------------------------------------------------
# logs


def format_event(event: dict[str, Any]) -> str:
    stamp = datetime.fromtimestamp(event.get("timestamp", 0) / 1000, UTC)
    return f"{stamp:%Y-%m-%d %H:%M:%S} {event.get('message', '').rstrip()}"


def log_events(logs: Any, endpoint: str, since: datetime) -> Iterable[dict[str, Any]]:
    """Events of the endpoint's log group since a time, oldest first."""
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=log_group(endpoint), startTime=int(since.timestamp() * 1000)
    )
    for page in pages:
        yield from page.get("events", [])


def log_tail(logs: Any, endpoint: str, lines: int = 20) -> list[str]:
    """The last lines of the endpoint's CloudWatch log group (why, when there are none)."""
    group = log_group(endpoint)
    try:
        # The three newest streams: one call each, no pagination wanted.
        streams = logs.describe_log_streams(
            logGroupName=group, orderBy="LastEventTime", descending=True, limit=3
        ).get("logStreams", [])
        events: list[dict[str, Any]] = []
        for stream in streams:
            events.extend(
                logs.get_log_events(
                    logGroupName=group,
                    logStreamName=stream["logStreamName"],
                    limit=lines,
                    startFromHead=False,
                ).get("events", [])
            )
    except client_error() as exc:
        return [f"(no log lines: {error_code(exc)} for {group})"]
    events.sort(key=lambda e: e.get("timestamp", 0))
    return [format_event(e) for e in events[-lines:]]


# ----------------------------------------------------------------------------------------------
# delete


@dataclass
class Owned:
    """What delete would remove."""

    endpoint: str | None
    configs: list[str]
    models: list[str]
    artifacts: list[str]
    foreign: bool = False  # the endpoint exists but deploy did not create it

    def lines(self, artifacts: bool) -> list[str]:
        table = [("endpoint", self.endpoint or "(none)")]
        table += [("endpoint config", name) for name in self.configs]
        table += [("model", name) for name in self.models]
        table += [("artifact", url) for url in (self.artifacts if artifacts else [])]
        return rows(table, [17], indent="  ")


def find_owned(aws: Aws, endpoint: str) -> Owned:
    """The endpoint and the configs and models this tool created for it (by tag)."""
    sm = aws.client("sagemaker")
    desc = exists(lambda: sm.describe_endpoint(EndpointName=endpoint))
    configs = []
    for page in sm.get_paginator("list_endpoint_configs").paginate():
        for item in page.get("EndpointConfigs", []):
            if managed(tag_dict(sm, item["EndpointConfigArn"]), endpoint):
                configs.append(item["EndpointConfigName"])
    models, artifacts = [], []
    for page in sm.get_paginator("list_models").paginate():
        for item in page.get("Models", []):
            if managed(tag_dict(sm, item["ModelArn"]), endpoint):
                models.append(item["ModelName"])
                model = exists(partial(sm.describe_model, ModelName=item["ModelName"]))
                url = (model or {}).get("PrimaryContainer", {}).get("ModelDataUrl")
                if url and url not in artifacts:
                    artifacts.append(url)
    foreign = bool(desc) and tag_dict(sm, desc["EndpointArn"]).get(TAG_MANAGED_BY) != MANAGED_BY
    name = desc["EndpointName"] if desc else None
    return Owned(name, sorted(configs), sorted(models), artifacts, foreign)


def delete_owned(
    aws: Aws,
    owned: Owned,
    *,
    artifacts: bool,
    out: TextIO,
    timeout: float = 900.0,
    poll: float = 10.0,
) -> None:
    """Delete the endpoint first (and wait until it is gone), then configs, models, artifacts."""
    from botocore.exceptions import WaiterError

    sm = aws.client("sagemaker")
    if owned.endpoint:
        sm.delete_endpoint(EndpointName=owned.endpoint)
        out.write(f"deleting endpoint {owned.endpoint}\n")
        attempts = max(1, math.ceil(timeout / poll)) if poll > 0 else 1
        try:
            sm.get_waiter("endpoint_deleted").wait(
                EndpointName=owned.endpoint,
                WaiterConfig={"Delay": poll, "MaxAttempts": attempts},
            )
        except WaiterError as exc:
            raise ToolError(
                f"endpoint {owned.endpoint} still deleting after {timeout:.0f} s "
                f"({exc.last_response.get('EndpointStatus', exc)}): see deploy_model.py status"
            ) from exc
        out.write(f"deleted endpoint {owned.endpoint}\n")
    for name in owned.configs:
        sm.delete_endpoint_config(EndpointConfigName=name)
        out.write(f"deleted endpoint config {name}\n")
    for name in owned.models:
        sm.delete_model(ModelName=name)
        out.write(f"deleted model {name}\n")
    if artifacts:
        s3 = aws.client("s3")
        for url in owned.artifacts:
            bucket, _, key = url.removeprefix("s3://").partition("/")
            s3.delete_object(Bucket=bucket, Key=key)
            out.write(f"deleted {url}\n")
