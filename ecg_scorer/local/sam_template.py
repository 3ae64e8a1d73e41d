"""Read template.yaml for the local stack: CloudFormation short tags, !Ref/!Sub/!GetAtt
resolved to local names, and the settings of the table, queues and function derived from it.

The cloud and the local stack share one layout: the table's keys and indexes, the queue's
redrive policy, the Lambda's environment, timeout, memory, batching and concurrency all come
from the template (its parameters at their defaults), so nothing is written twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ecg_scorer.local import REPO

TEMPLATE = REPO / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account id
DEFAULT_MAX_RECEIVE_COUNT = 5


@dataclass(frozen=True)
class LocalNames:
    """Physical names of the local resources (in AWS, CloudFormation picks them)."""

    bucket: str = "ecg-scorer-local-ingest"
    queue: str = "ecg-scorer-local-scoring"
    dead_letter_queue: str = "ecg-scorer-local-dlq"
    table: str = "ecg-scorer-local-predictions"
    function: str = "ecg-scorer-local-score"


@dataclass(frozen=True)
class QueueSettings:
    visibility_timeout_s: int
    max_receive_count: int
    retention_s: int | None


@dataclass(frozen=True)
class LambdaSettings:
    """What the Lambda service would give the function: environment, limits, batching."""

    function_name: str
    handler: str
    runtime: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]
    batch_size: int
    batching_window_s: int
    max_concurrency: int
    report_batch_item_failures: bool


@dataclass(frozen=True)
class Resources:
    moto_url: str
    bucket: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    dead_letter_queue_arn: str
    table: str


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that reads CloudFormation short tags (!Ref, !Sub, !GetAtt, ...) as the
    long form ({"Ref": ...}, {"Fn::Sub": ...}) instead of failing on them."""


def _cfn_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """Parse a CloudFormation / SAM template, short tags included."""
    with path.open(encoding="utf-8") as f:
        template = yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(template, dict) or "Resources" not in template:
        raise ValueError(f"{path} is not a CloudFormation template (no Resources)")
    return template


def resource_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    try:
        resource = template["Resources"][logical_id]
    except KeyError:
        raise ValueError(f"template has no resource {logical_id!r}") from None
    return dict(resource.get("Properties") or {})


class Unresolved(ValueError):
    """A template value that depends on something only CloudFormation knows."""


def resolve(value: Any, template: Mapping[str, Any], refs: Mapping[str, str]) -> str:
    """Resolve a template value to a string: literals, !Ref (to ``refs`` or a parameter's
    Default), !Sub over those, and !GetAtt X.Y given in ``refs`` as "X.Y"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, arg),) = value.items()
        if kind == "Ref":
            return _resolve_name(str(arg), template, refs)
        if kind == "Fn::GetAtt":
            return _resolve_name(".".join(arg), template, refs)
        if kind == "Fn::Sub" and isinstance(arg, str):
            return _substitute(arg, template, refs)
    raise Unresolved(f"cannot resolve {value!r} outside CloudFormation")


def _resolve_name(name: str, template: Mapping[str, Any], refs: Mapping[str, str]) -> str:
    pseudo = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}
    if name in refs:
        return refs[name]
    if name in pseudo:
        return pseudo[name]
    parameter = (template.get("Parameters") or {}).get(name)
    if parameter is not None and "Default" in parameter:
        return resolve(parameter["Default"], template, refs)
    raise Unresolved(f"cannot resolve {name!r}: not a parameter with a default")


def _substitute(text: str, template: Mapping[str, Any], refs: Mapping[str, str]) -> str:
    out, rest = [], text
    while "${" in rest:
        head, _, tail = rest.partition("${")
        name, _, rest = tail.partition("}")
        out.append(head)
        out.append(_resolve_name(name, template, refs))
    out.append(rest)
    return "".join(out)


_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
)
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")


def table_definition(template: Mapping[str, Any], table_name: str) -> dict[str, Any]:
    """``CreateTable`` arguments from PredictionsTable's Properties (same shape as the API)."""
    props = resource_properties(template, "PredictionsTable")
    kwargs: dict[str, Any] = {"TableName": table_name}
    for key in _TABLE_KEYS:
        if key in props:
            kwargs[key] = props[key]
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in kwargs:  # CloudFormation-only settings (e.g. ContributorInsights) dropped
            kwargs[key] = [{k: v for k, v in i.items() if k in _INDEX_KEYS} for i in kwargs[key]]
    if not isinstance(kwargs.get("BillingMode", "PAY_PER_REQUEST"), str):
        kwargs["BillingMode"] = "PAY_PER_REQUEST"  # a !Ref / !If: on-demand is the safe choice
    kwargs.setdefault("BillingMode", "PAY_PER_REQUEST")
    return kwargs


def queue_settings(template: Mapping[str, Any]) -> QueueSettings:
    props = resource_properties(template, "ScoringQueue")
    visibility = int(resolve(props.get("VisibilityTimeout", 30), template, {}))
    redrive = props.get("RedrivePolicy") or {}
    max_receive = redrive.get("maxReceiveCount", DEFAULT_MAX_RECEIVE_COUNT)
    retention = props.get("MessageRetentionPeriod")
    return QueueSettings(
        visibility_timeout_s=visibility,
        max_receive_count=int(resolve(max_receive, template, {})),
        retention_s=None if retention is None else int(resolve(retention, template, {})),
    )


def score_function(template: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The scoring function's logical id, Properties and the template's Globals.Function."""
    glob = _globals(template)
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            props = resource.get("Properties") or {}
            handler = props.get("Handler") or glob.get("Handler")
            if handler == "scorer.app.lambda_handler":
                return logical_id, props, glob
    raise ValueError("template has no function with Handler scorer.app.lambda_handler")


def _globals(template: Mapping[str, Any]) -> dict[str, Any]:
    return dict((template.get("Globals") or {}).get("Function") or {})


def lambda_settings(
    template: Mapping[str, Any],
    names: LocalNames,
    resources: Resources,
    model_config: Mapping[str, Any],
    endpoint_name: str | None = None,
) -> LambdaSettings:
    """The function's settings as the Lambda service would apply them, with every resource
    reference pointed at the local stack and the model contract taken from config.json."""
    _, props, glob = score_function(template)
    refs = {
        "PredictionsTable": resources.table,
        "ScoringQueue": resources.queue_url,
        "DeadLetterQueue": resources.dead_letter_queue_url,
        "IngestBucket": resources.bucket,
        "ScoringQueue.Arn": resources.queue_arn,
        "DeadLetterQueue.Arn": resources.dead_letter_queue_arn,
        "PredictionsTable.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{resources.table}",
        "IngestBucket.Arn": f"arn:aws:s3:::{resources.bucket}",
    }
    raw: dict[str, Any] = {}
    raw.update(((glob.get("Environment") or {}).get("Variables")) or {})
    raw.update(((props.get("Environment") or {}).get("Variables")) or {})
    fixed = {
        "PREDICTIONS_TABLE": resources.table,
        "MODEL_VERSION": str(model_config["model_version"]),
        "MODEL_LEADS": ",".join(model_config["leads"]),
        "MODEL_SAMPLING_RATE_HZ": str(model_config["sampling_rate_hz"]),
        "WINDOW_SAMPLES": str(model_config["window_samples"]),
        # No X-Ray daemon locally; everything else of Powertools runs as deployed.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    if endpoint_name is not None:
        fixed["ENDPOINT_NAME"] = endpoint_name
    env: dict[str, str] = {}
    unresolved: list[str] = []
    for name, value in raw.items():
        if name in fixed:
            continue
        try:
            env[name] = resolve(value, template, refs)
        except Unresolved:
            unresolved.append(name)
    if unresolved:
        raise ValueError(f"template environment variables not resolvable locally: {unresolved}")
    env.update(fixed)

    sqs_event: dict[str, Any] = {}
    for event in (props.get("Events") or {}).values():
        if event.get("Type") == "SQS":
            sqs_event = event.get("Properties") or {}
    timeout = int(resolve(props.get("Timeout", glob.get("Timeout", 3)), template, {}))
    memory = int(resolve(props.get("MemorySize", glob.get("MemorySize", 128)), template, {}))
    batch_size = int(resolve(sqs_event.get("BatchSize", 10), template, {}))
    window = int(resolve(sqs_event.get("MaximumBatchingWindowInSeconds", 0), template, {}))
    scaling = sqs_event.get("ScalingConfig") or {}
    # Without MaximumConcurrency, Lambda scales an SQS source far beyond one machine: one here.
    concurrency = int(resolve(scaling.get("MaximumConcurrency", 1), template, {}))
    return LambdaSettings(
        function_name=names.function,
        handler="scorer.app.lambda_handler",
        runtime=str(props.get("Runtime") or glob.get("Runtime") or "python3.12"),
        timeout_s=timeout,
        memory_mb=memory,
        environment=env,
        batch_size=batch_size,
        batching_window_s=window,
        max_concurrency=concurrency,
        report_batch_item_failures="ReportBatchItemFailures"
        in (sqs_event.get("FunctionResponseTypes") or []),
    )


def default_endpoint_name(template: Mapping[str, Any], model_config: Mapping[str, Any]) -> str:
    """ENDPOINT_NAME as the template sets it by default, else one derived from the model."""
    _, props, glob = score_function(template)
    raw: dict[str, Any] = {}
    raw.update(((glob.get("Environment") or {}).get("Variables")) or {})
    raw.update(((props.get("Environment") or {}).get("Variables")) or {})
    if "ENDPOINT_NAME" in raw:
        try:
            return resolve(raw["ENDPOINT_NAME"], template, {})
        except Unresolved:
            pass
    # SageMaker endpoint names allow letters, digits and hyphens only.
    return str(model_config["model_version"]).replace("_", "-")


def queue_notifications(template: Mapping[str, Any], queue_arn: str) -> list[dict[str, Any]]:
    """IngestBucket's S3 -> ScoringQueue notifications, in the S3 API's shape."""
    bucket = resource_properties(template, "IngestBucket")
    configs = (bucket.get("NotificationConfiguration") or {}).get("QueueConfigurations") or []
    out = []
    for config in configs:
        if config.get("Queue") != {"Fn::GetAtt": ["ScoringQueue", "Arn"]}:
            continue
        rules = ((config.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
        notification: dict[str, Any] = {"QueueArn": queue_arn, "Events": [config["Event"]]}
        if rules:
            notification["Filter"] = {
                "Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}
            }
        out.append(notification)
    if not out:
        raise ValueError("IngestBucket sends no notifications to ScoringQueue in the template")
    return out
