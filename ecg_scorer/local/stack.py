"""Start and stop the local stack: moto for S3, SQS and DynamoDB, the local SageMaker endpoint
and the SQS poller that runs the Lambda handler.

The resources are built from ``template.yaml`` so the cloud and the local stack share one
layout: the table's keys and indexes, the queue's redrive policy, the Lambda's environment,
timeout, memory and batch size all come from the template (with its parameters' defaults),
and the model's contract (version, leads, rate, window) from the model's ``config.json``.

moto's server delivers S3 event notifications to SQS by itself (``moto/s3/notifications.py``
sends an ``ObjectCreated`` message to the configured queue on every put, in the same
process), so the bucket is configured exactly as in AWS and nothing emulates that hop.
Two differences from AWS remain in those messages: moto leaves out ``sequencer`` and
``versionId`` in ``s3.object``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account id
HOST = "127.0.0.1"  # loopback only: the local stack never listens on other interfaces
INGEST_PREFIX = "incoming/"
DEFAULT_MAX_RECEIVE_COUNT = 5

# The environment that points every AWS SDK in a process at the local stack. The key pair is
# a placeholder (moto accepts any signature); it is set only in the local stack's processes
# and the shell lines it prints, never used against AWS.
_PLACEHOLDER_KEY = "local"
DROP_FROM_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_KEEP_ENV = ("PATH", "HOME", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV", "SYSTEMROOT")


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
    timeout_s: int
    memory_mb: int
    environment: dict[str, str]
    batch_size: int
    batching_window_s: int
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


# ---------------------------------------------------------------------------------------------
# template.yaml


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


def _score_function(template: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            props = resource.get("Properties") or {}
            handler = props.get("Handler") or _globals(template).get("Handler")
            if handler == "scorer.app.lambda_handler":
                return logical_id, props
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
    _, props = _score_function(template)
    glob = _globals(template)
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
    return LambdaSettings(
        function_name=names.function,
        handler="scorer.app.lambda_handler",
        timeout_s=timeout,
        memory_mb=memory,
        environment=env,
        batch_size=batch_size,
        batching_window_s=window,
        report_batch_item_failures="ReportBatchItemFailures"
        in (sqs_event.get("FunctionResponseTypes") or []),
    )


def default_endpoint_name(template: Mapping[str, Any], model_config: Mapping[str, Any]) -> str:
    """ENDPOINT_NAME as the template sets it by default, else one derived from the model."""
    _, props = _score_function(template)
    raw: dict[str, Any] = {}
    raw.update(((_globals(template).get("Environment") or {}).get("Variables")) or {})
    raw.update(((props.get("Environment") or {}).get("Variables")) or {})
    if "ENDPOINT_NAME" in raw:
        try:
            return resolve(raw["ENDPOINT_NAME"], template, {})
        except Unresolved:
            pass
    # SageMaker endpoint names allow letters, digits and hyphens only.
    return str(model_config["model_version"]).replace("_", "-")


# ---------------------------------------------------------------------------------------------
# moto and the AWS resources


def local_env(moto_url: str | None = None, sagemaker_url: str | None = None) -> dict[str, str]:
    """Environment variables that point boto3 (and the aws CLI) at the local stack."""
    env = {
        "AWS_ACCESS_KEY_ID": _PLACEHOLDER_KEY,
        "AWS_SECRET_ACCESS_KEY": _PLACEHOLDER_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if moto_url:
        env["AWS_ENDPOINT_URL"] = moto_url
    if sagemaker_url:
        env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = sagemaker_url
    return env


def client_env(state: Mapping[str, str]) -> dict[str, str]:
    """Variables for tools talking to a running stack (boto3, the aws CLI, ecg-scorer), from
    the stack's description (`LocalStack.describe`)."""
    env = local_env(state["moto_url"], state["endpoint_url"])
    env["ECG_SCORER_TABLE"] = state["table"]
    env["ECG_SCORER_BUCKET"] = state["bucket"]
    env["ECG_SCORER_QUEUE_URL"] = state["queue_url"]
    env["ECG_SCORER_DLQ_URL"] = state["dead_letter_queue_url"]
    return env


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A clean environment for a child, as a Lambda or a model container starts with: the
    basics of this one (PATH, locale, ...) and ``extra``. Nothing else leaks in, so a user's
    AWS profile, keys or endpoint variables can never reach the local stack's code."""
    env = {k: v for k, v in os.environ.items() if k in _KEEP_ENV or k.startswith("LC_")}
    env.update(extra)
    return env


def start_moto() -> tuple[Any, str]:
    """moto's server on a free loopback port, in a thread of this process."""
    from moto.server import ThreadedMotoServer

    # werkzeug would log every request to stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def create_resources(
    moto_url: str,
    template: Mapping[str, Any],
    names: LocalNames,
    visibility_timeout_s: int | None = None,
) -> Resources:
    """The bucket with its S3 -> SQS notification, the queues with redrive, the table."""
    env = local_env(moto_url)
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    s3 = session.client("s3", endpoint_url=moto_url)
    sqs = session.client("sqs", endpoint_url=moto_url)
    ddb = session.client("dynamodb", endpoint_url=moto_url)

    settings = queue_settings(template)
    dlq_attrs: dict[str, str] = {}
    dlq_retention = resource_properties(template, "DeadLetterQueue").get("MessageRetentionPeriod")
    if dlq_retention is not None:
        dlq_attrs["MessageRetentionPeriod"] = resolve(dlq_retention, template, {})
    dlq_url = sqs.create_queue(QueueName=names.dead_letter_queue, Attributes=dlq_attrs)["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    attrs = {
        "VisibilityTimeout": str(visibility_timeout_s or settings.visibility_timeout_s),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count}
        ),
    }
    if settings.retention_s is not None:
        attrs["MessageRetentionPeriod"] = str(settings.retention_s)
    queue_url = sqs.create_queue(QueueName=names.queue, Attributes=attrs)["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)

    s3.create_bucket(Bucket=names.bucket)
    versioning = resource_properties(template, "IngestBucket").get("VersioningConfiguration")
    if isinstance(versioning, dict) and versioning.get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=names.bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(
        Bucket=names.bucket,
        NotificationConfiguration={"QueueConfigurations": queue_notifications(template, queue_arn)},
    )
    ddb.create_table(**table_definition(template, names.table))
    ddb.get_waiter("table_exists").wait(TableName=names.table)
    return Resources(
        moto_url=moto_url,
        bucket=names.bucket,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dead_letter_queue_url=dlq_url,
        dead_letter_queue_arn=dlq_arn,
        table=names.table,
    )


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


def _queue_arn(sqs: Any, url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


# ---------------------------------------------------------------------------------------------
# child processes


def free_port() -> int:
    """A free loopback port (the endpoint's port must be known before the poller starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], ready_file: Path, log: Path, timeout: float) -> dict:
    """Wait for a child to write its ready file; fail with its log's tail if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists():
            return dict(json.loads(ready_file.read_text(encoding="utf-8")))
        if proc.poll() is not None:
            raise RuntimeError(f"{log.stem} exited with {proc.returncode}:\n{tail(log)}")
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"{log.stem} not ready after {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The whole session (spawn() starts one per child), so no grandchild outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def spawn(
    args: list[str], env: Mapping[str, str], log: Path, ready_file: Path
) -> subprocess.Popen[bytes]:
    """A child in its own session (so Ctrl-C reaches only the parent, which stops it)."""
    ready_file.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args, "--ready-file", str(ready_file)],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )


# ---------------------------------------------------------------------------------------------
# the whole stack


@dataclass
class LocalStack:
    """A running local stack; `stop` ends everything `start` started."""

    resources: Resources
    lambda_settings: LambdaSettings
    endpoint_name: str
    endpoint_url: str
    model_dir: Path
    code_dir: Path
    work_dir: Path
    moto_server: Any = field(repr=False)
    endpoint_proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    poller_proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def client_env(self) -> dict[str, str]:
        """Variables for tools talking to this stack (boto3, the aws CLI, ecg-scorer)."""
        return client_env(self.describe())

    def lambda_env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The poller's environment: the Lambda's variables plus what the runtime sets."""
        settings = self.lambda_settings
        env = child_env(local_env(self.resources.moto_url, self.endpoint_url))
        env.update(settings.environment)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": settings.function_name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{settings.function_name}",
                "_HANDLER": settings.handler,
                # The Lambda zip is functions/ (SAM CodeUri): import scorer from there.
                "PYTHONPATH": str(REPO / "functions"),
            }
        )
        env.update(overrides or {})
        return env

    def start_endpoint(self, wait: bool = True, timeout: float = 120.0) -> None:
        """Start the endpoint server on the stack's endpoint port (kept across restarts, so
        the URL the Lambda was given stays valid)."""
        port = self.endpoint_url.rsplit(":", 1)[1]
        args = ["-m", "ecg_scorer.local.endpoint", "--model-dir", str(self.model_dir)]
        args += ["--endpoint-name", self.endpoint_name, "--host", HOST, "--port", port]
        env = child_env({"PYTHONPATH": str(self.code_dir)})
        self.endpoint_proc = spawn(args, env, self._log("endpoint"), self._ready("endpoint"))
        if wait:
            self.wait_endpoint(timeout)

    def wait_endpoint(self, timeout: float = 120.0) -> None:
        assert self.endpoint_proc is not None
        wait_ready(self.endpoint_proc, self._ready("endpoint"), self._log("endpoint"), timeout)

    def _log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _ready(self, name: str) -> Path:
        return self.work_dir / f"{name}.ready"

    def stop_endpoint(self) -> None:
        stop_process(self.endpoint_proc)
        self.endpoint_proc = None

    def start_poller(
        self,
        overrides: Mapping[str, str] | None = None,
        wait: bool = True,
        timeout: float = 60.0,
        batching_window_s: int | None = None,
    ) -> None:
        """Start the poller; ``overrides`` replace Lambda environment variables (tests use it
        to point the function at a missing endpoint), ``batching_window_s`` the template's
        MaximumBatchingWindowInSeconds."""
        settings = self.lambda_settings
        if batching_window_s is not None:
            settings = replace(settings, batching_window_s=batching_window_s)
        args = ["-m", "ecg_scorer.local.poller", "--queue-url", self.resources.queue_url]
        args += ["--function-name", settings.function_name, "--handler", settings.handler]
        args += ["--timeout", str(settings.timeout_s), "--memory", str(settings.memory_mb)]
        args += ["--batch-size", str(settings.batch_size)]
        args += ["--batching-window", str(settings.batching_window_s)]
        if settings.report_batch_item_failures:
            args.append("--report-batch-item-failures")
        env = self.lambda_env(overrides)
        self.poller_proc = spawn(args, env, self._log("poller"), self._ready("poller"))
        if wait:
            self.wait_poller(timeout)

    def wait_poller(self, timeout: float = 60.0) -> None:
        assert self.poller_proc is not None
        wait_ready(self.poller_proc, self._ready("poller"), self._log("poller"), timeout)

    def stop_poller(self) -> None:
        stop_process(self.poller_proc)
        self.poller_proc = None

    def restart_poller(
        self, overrides: Mapping[str, str] | None = None, batching_window_s: int | None = None
    ) -> None:
        self.stop_poller()
        self.start_poller(overrides, batching_window_s=batching_window_s)

    def stop(self) -> None:
        self.stop_poller()
        self.stop_endpoint()
        if self.moto_server is not None:
            self.moto_server.stop()
            self.moto_server = None

    def describe(self) -> dict[str, Any]:
        """What a user needs to reach the stack (written to the state file by `up`)."""
        return {
            "moto_url": self.resources.moto_url,
            "endpoint_url": self.endpoint_url,
            "endpoint_name": self.endpoint_name,
            "bucket": self.resources.bucket,
            "ingest_prefix": INGEST_PREFIX,
            "queue_url": self.resources.queue_url,
            "dead_letter_queue_url": self.resources.dead_letter_queue_url,
            "table": self.resources.table,
            "region": REGION,
            "logs": str(self.log_dir),
        }


def read_model_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build the model with `make model`")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def start(
    model_dir: Path,
    code_dir: Path,
    work_dir: Path,
    *,
    template_path: Path = TEMPLATE,
    names: LocalNames | None = None,
    visibility_timeout_s: int | None = None,
    with_poller: bool = True,
) -> LocalStack:
    """Start moto, create the resources, start the endpoint and the poller.

    Parameters
    ----------
    model_dir
        Directory with ``model.pth`` and ``config.json`` (an unpacked model.tar.gz or
        build/model).
    code_dir
        Directory with ``inference.py`` and ``model.py`` (the archive's ``code/`` or
        model_code/); it becomes the endpoint's PYTHONPATH as in the container.
    work_dir
        Where logs and the children's ready files go.
    visibility_timeout_s
        Overrides the template's queue visibility timeout (tests and the demo use a short
        one so a retried message comes back within their patience).
    """
    names = names or LocalNames()
    template = load_template(template_path)
    config = read_model_config(model_dir)
    endpoint_name = default_endpoint_name(template, config)
    work_dir.mkdir(parents=True, exist_ok=True)
    server, moto_url = start_moto()
    stack: LocalStack | None = None
    try:
        resources = create_resources(moto_url, template, names, visibility_timeout_s)
        settings = lambda_settings(template, names, resources, config, endpoint_name)
        stack = LocalStack(
            resources=resources,
            lambda_settings=settings,
            endpoint_name=endpoint_name,
            endpoint_url=f"http://{HOST}:{free_port()}",
            model_dir=model_dir,
            code_dir=code_dir,
            work_dir=work_dir,
            moto_server=server,
        )
        # Both children import heavy libraries (torch; numpy and Powertools): start them
        # together, then wait for both.
        stack.start_endpoint(wait=False)
        if with_poller:
            stack.start_poller(wait=False)
        stack.wait_endpoint()
        if with_poller:
            stack.wait_poller()
        return stack
    except BaseException:
        if stack is not None:
            stack.stop()
        else:
            server.stop()
        raise
