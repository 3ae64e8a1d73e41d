"""Plan, apply and wait for a deployment: upload, Model, EndpointConfig, create or update.

Every name is derived from content, so a rerun finds the same and creates nothing.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO, TypedDict, Unpack
from urllib.parse import urlencode

from ecg_scorer.deploy import ToolError
from ecg_scorer.deploy.archive import sha256_file
from ecg_scorer.deploy.aws import VARIANT, Aws, exists
from ecg_scorer.deploy.identity import s3_key, tags
from ecg_scorer.deploy.operate import log_tail
from ecg_scorer.deploy.render import Progress, rows

SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
# Serverless containers may write only under /tmp. TorchServe's log4j configuration (in the
# SageMaker PyTorch inference toolkit) writes its log and metrics files to $LOG_LOCATION and
# $METRICS_LOCATION (default ./logs, read-only there) and unpacks models under $TEMP.
# SAGEMAKER_MODEL_SERVER_WORKERS=1: one worker per container; serverless scales by containers,
# and a second copy of the model would only cost memory.
CONTAINER_ENV = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
    "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    "LOG_LOCATION": "/tmp/logs",  # noqa: S108 - inside the container, the only writable place
    "METRICS_LOCATION": "/tmp/logs",  # noqa: S108
    "TEMP": "/tmp",  # noqa: S108
}
CHANGING = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


@dataclass
class Plan:
    """What deploy will do; every name is derived from content, so a rerun finds the same."""

    endpoint: str
    region: str
    archive: Path
    sha: str
    bucket: str
    key: str
    image: str
    role: str
    model_name: str  # "" when the role is not known (the name hashes it)
    config_name: str
    serverless: dict[str, int]
    env: dict[str, str]
    model_version: str  # the archive's config.json model_version (a tag)
    upload: bool = True
    create_model: bool = True
    create_config: bool = True
    endpoint_action: str = "create"  # create | update | none | wait
    current_config: str = ""
    checked: bool = True  # False: drawn without an account, nothing in AWS was looked at

    def _marker(self, create: bool, verb: str = "create") -> str:
        if not self.checked:
            return f"[{verb}, unless it exists]"
        return f"[{verb}]" if create else "[exists, skip]"

    def lines(self) -> list[str]:
        mem = self.serverless["MemorySizeInMB"]
        conc = self.serverless["MaxConcurrency"]
        prov = self.serverless.get("ProvisionedConcurrency")
        size = self.archive.stat().st_size / 1024
        unnamed = "(named after the execution role: pass --role or set SAGEMAKER_ROLE_ARN)"
        action = {
            "create": "create",
            "update": f"update (now {self.current_config}; no downtime)",
            "none": "up to date",
            "wait": "wait (a change is in progress)",
        }[self.endpoint_action]
        if not self.checked:
            action = "create, or update it without downtime if it exists"
        table = [
            ("archive", f"{self.archive} ({size:.1f} KiB, sha256 {self.sha[:16]}...)"),
            ("version", self.model_version),
            ("upload", f"s3://{self.bucket}/{self.key}  {self._marker(self.upload, 'upload')}"),
            ("image", self.image),
            ("model", f"{self.model_name or unnamed}  {self._marker(self.create_model)}"),
            (
                "config",
                f"{self.config_name or unnamed} ({mem} MB, max concurrency {conc}"
                f"{f', provisioned {prov}' if prov else ''})  "
                f"{self._marker(self.create_config)}",
            ),
            ("endpoint", f"{self.endpoint}  [{action}]"),
        ]
        return [f"plan for endpoint {self.endpoint} in {self.region}:", *rows(table, [9], "  ")]


def _short_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def resource_names(
    endpoint: str, sha: str, image: str, role: str, env: dict[str, str], serverless: dict[str, int]
) -> tuple[str, str]:
    """Content-addressed Model and EndpointConfig names (<= 63 characters)."""
    base = endpoint[:46].rstrip("-")
    model = f"{base}-m-{_short_hash([sha, image, role, env])}"
    config = f"{base}-c-{_short_hash([model, serverless])}"
    return model, config


class PlanInputs(TypedDict):
    """What a plan is drawn from, besides the region: the archive, the names and the flags."""

    endpoint: str
    archive: Path
    bucket: str
    prefix: str
    image: str
    role: str  # "" when not known: the Model and EndpointConfig names then stay open
    memory: int
    max_concurrency: int
    provisioned: int | None
    model_version: str


def draft_plan(region: str, **inputs: Unpack[PlanInputs]) -> Plan:
    """The plan from the inputs alone, before anything in AWS is looked at (``checked`` False)."""
    archive, role = inputs["archive"], inputs["role"]
    sha = sha256_file(archive)
    serverless = {"MemorySizeInMB": inputs["memory"], "MaxConcurrency": inputs["max_concurrency"]}
    if inputs["provisioned"]:
        serverless["ProvisionedConcurrency"] = inputs["provisioned"]
    env = dict(CONTAINER_ENV, SAGEMAKER_REGION=region)
    endpoint, image = inputs["endpoint"], inputs["image"]
    names = resource_names(endpoint, sha, image, role, env, serverless) if role else ("", "")
    return Plan(
        endpoint=endpoint,
        region=region,
        archive=archive,
        sha=sha,
        bucket=inputs["bucket"],
        key=s3_key(inputs["prefix"], sha),
        image=image,
        role=role,
        model_name=names[0],
        config_name=names[1],
        serverless=serverless,
        env=env,
        model_version=inputs["model_version"],
        checked=False,
    )


def make_plan(aws: Aws, **inputs: Unpack[PlanInputs]) -> Plan:
    """Look at what exists (read-only) and decide what to create."""
    sm, s3 = aws.client("sagemaker"), aws.client("s3")
    plan = draft_plan(aws.region, **inputs)
    plan.checked = True
    head = exists(lambda: s3.head_object(Bucket=plan.bucket, Key=plan.key))
    plan.upload = head is None or head.get("Metadata", {}).get("sha256") != plan.sha
    plan.create_model = exists(lambda: sm.describe_model(ModelName=plan.model_name)) is None
    plan.create_config = (
        exists(lambda: sm.describe_endpoint_config(EndpointConfigName=plan.config_name)) is None
    )
    endpoint = plan.endpoint
    current = exists(lambda: sm.describe_endpoint(EndpointName=endpoint))
    if current is None:
        plan.endpoint_action = "create"
        return plan
    plan.current_config = current.get("EndpointConfigName", "")
    status = current.get("EndpointStatus", "")
    if status == "Failed":
        raise ToolError(
            f"endpoint {endpoint} is Failed ({current.get('FailureReason', 'no reason')}); "
            f"a failed endpoint cannot be updated: run deploy_model.py delete "
            f"--endpoint-name {endpoint}, then deploy again"
        )
    if status in CHANGING:
        plan.endpoint_action = "wait"
    elif plan.current_config == plan.config_name:
        plan.endpoint_action = "none"
    else:
        plan.endpoint_action = "update"
    return plan


def wait_for_endpoint(
    sm: Any,
    logs: Any,
    endpoint: str,
    config_name: str,
    *,
    timeout: float,
    poll: float,
    out: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll until InService on ``config_name``; raise ToolError with reason and logs otherwise.

    By hand, not with the endpoint_in_service waiter: it shows progress, tells a rolled-back
    update from success, and adds the log tail to a failure.
    """
    progress = Progress(sys.stdout if out is None else out)
    start = clock()
    while True:
        desc = sm.describe_endpoint(EndpointName=endpoint)
        status = desc["EndpointStatus"]
        elapsed = clock() - start
        progress.update(
            f"endpoint {endpoint}: {status} ({int(elapsed // 60)}m{int(elapsed % 60):02d}s)",
            key=status,
        )
        if status == "InService":
            progress.end()
            if desc.get("EndpointConfigName") != config_name:
                # An update that fails rolls back: the endpoint keeps serving the old config.
                reason = desc.get("FailureReason", "no FailureReason given")
                raise ToolError(
                    f"update of {endpoint} to {config_name} did not take effect; it still "
                    f"serves {desc.get('EndpointConfigName')} ({reason})\nlast log lines:\n"
                    + "\n".join(log_tail(logs, endpoint))
                )
            return
        if status in ("Failed", "OutOfService"):
            progress.end()
            reason = desc.get("FailureReason", "no FailureReason given")
            raise ToolError(
                f"endpoint {endpoint} is {status}: {reason}\nlast log lines:\n"
                + "\n".join(log_tail(logs, endpoint))
            )
        if elapsed > timeout:
            progress.end()
            raise ToolError(
                f"endpoint {endpoint} still {status} after {timeout:.0f} s; it keeps going in "
                f"AWS: watch it with deploy_model.py status --endpoint-name {endpoint}"
            )
        sleep(poll)


def apply_plan(
    aws: Aws,
    plan: Plan,
    *,
    wait: bool = True,
    timeout: float = 1800.0,
    poll: float = 15.0,
    out: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Create what the plan says; returns what was done, one line each."""
    out = sys.stdout if out is None else out
    sm = aws.client("sagemaker")
    done: list[str] = []
    archive_tags = tags(plan.endpoint, plan.model_version, plan.sha)
    if plan.upload:
        with plan.archive.open("rb") as body:
            aws.client("s3").put_object(
                Bucket=plan.bucket,
                Key=plan.key,
                Body=body,
                Metadata={"sha256": plan.sha},
                Tagging=urlencode([(t["Key"], t["Value"]) for t in archive_tags]),
                ServerSideEncryption="AES256",
            )
        done.append(f"uploaded s3://{plan.bucket}/{plan.key}")
    if plan.create_model:
        sm.create_model(
            ModelName=plan.model_name,
            PrimaryContainer={
                "Image": plan.image,
                "ModelDataUrl": f"s3://{plan.bucket}/{plan.key}",
                "Environment": plan.env,
            },
            ExecutionRoleArn=plan.role,
            Tags=archive_tags,
        )
        done.append(f"created model {plan.model_name}")
    if plan.create_config:
        sm.create_endpoint_config(
            EndpointConfigName=plan.config_name,
            ProductionVariants=[
                {
                    "VariantName": VARIANT,
                    "ModelName": plan.model_name,
                    "ServerlessConfig": plan.serverless,
                }
            ],
            Tags=archive_tags,
        )
        done.append(f"created endpoint config {plan.config_name}")
    if plan.endpoint_action == "create":
        sm.create_endpoint(
            EndpointName=plan.endpoint,
            EndpointConfigName=plan.config_name,
            Tags=tags(plan.endpoint, plan.model_version),
        )
        done.append(f"creating endpoint {plan.endpoint}")
    elif plan.endpoint_action == "update":
        # UpdateEndpoint swaps the config behind the live endpoint; the old one serves until
        # the new one is ready, and a failed update rolls back.
        sm.update_endpoint(EndpointName=plan.endpoint, EndpointConfigName=plan.config_name)
        done.append(f"updating endpoint {plan.endpoint} from {plan.current_config}")
    elif plan.endpoint_action == "wait":
        done.append(f"endpoint {plan.endpoint} is changing; waiting")
    for line in done:
        out.write(line + "\n")
    if wait and plan.endpoint_action != "none":
        wait_until_done = partial(
            wait_for_endpoint,
            sm,
            aws.client("logs"),
            plan.endpoint,
            plan.config_name,
            timeout=timeout,
            poll=poll,
            out=out,
            sleep=sleep,
        )
        wait_until_done()
        if plan.endpoint_action == "wait":
            # Something else was in flight; now compare again.
            desc = sm.describe_endpoint(EndpointName=plan.endpoint)
            if desc.get("EndpointConfigName") != plan.config_name:
                sm.update_endpoint(EndpointName=plan.endpoint, EndpointConfigName=plan.config_name)
                wait_until_done()
    return done
