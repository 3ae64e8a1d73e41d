"""Check credentials, execution role, bucket and serverless quota before anything is made.

Each check says what to fix; a check that cannot be made is reported, not failed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ecg_scorer.deploy import ToolError
from ecg_scorer.deploy.aws import Aws, client_error, default_bucket, error_code
from ecg_scorer.deploy.render import rows

ROLE_ENV = "SAGEMAKER_ROLE_ARN"
CREDENTIALS_FIX = "configure credentials (aws configure, AWS_PROFILE, or aws sso login)"


@dataclass
class Check:
    """One preflight line."""

    name: str
    ok: bool | None  # None: could not be checked (not a failure)
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        mark = {True: "ok", False: "FAIL", None: "skip"}[self.ok]
        text = rows([(mark, self.name, self.detail)], [4, 12])[0]
        return text + (f"\n     fix: {self.fix}" if self.fix and self.ok is not True else "")


def resolve_role(role: str | None) -> str:
    """--role, else SAGEMAKER_ROLE_ARN."""
    value = role or os.environ.get(ROLE_ENV, "")
    if not value:
        raise ToolError(
            f"no SageMaker execution role: pass --role arn:aws:iam::<account>:role/<name> "
            f"or set {ROLE_ENV} (docs/deploy.md says what the role needs)"
        )
    return value


def _trusts_sagemaker(document: Any) -> bool:
    if isinstance(document, str):
        document = json.loads(unquote(document))
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        services = statement.get("Principal", {}).get("Service", [])
        services = [services] if isinstance(services, str) else services
        if "sagemaker.amazonaws.com" in services and any(
            a in ("sts:AssumeRole", "sts:*", "*") for a in actions
        ):
            return True
    return False


def _quota_check(quotas: Any, max_concurrency: int) -> Check:
    found: list[dict[str, Any]] = []
    error = ""
    for method in ("list_service_quotas", "list_aws_default_service_quotas"):
        try:
            for page in quotas.get_paginator(method).paginate(ServiceCode="sagemaker"):
                found.extend(page.get("Quotas", []))
        except Exception as exc:  # quota reading is best effort: many roles cannot
            error = error_code(exc) or type(exc).__name__
        if found:
            break
    serverless = [
        q
        for q in found
        if "serverless" in q.get("QuotaName", "").lower()
        and "concurrency" in q.get("QuotaName", "").lower()
    ]
    if not serverless:
        reason = f"({error})" if error else "(no serverless concurrency quota listed)"
        return Check(
            "quota",
            None,
            f"serverless concurrency quota not readable {reason}; requested {max_concurrency}",
            "allow servicequotas:ListServiceQuotas to have this checked",
        )
    limits = {q["QuotaName"]: int(q.get("Value", 0)) for q in serverless}
    too_low = {name: value for name, value in limits.items() if value < max_concurrency}
    text = "; ".join(f"{name} = {value}" for name, value in sorted(limits.items()))
    if too_low:
        return Check(
            "quota",
            False,
            f"--max-concurrency {max_concurrency} exceeds {text}",
            "lower --max-concurrency or request an increase in the Service Quotas console "
            "(Amazon SageMaker)",
        )
    return Check("quota", True, f"max concurrency {max_concurrency} fits ({text})")


def _role_check(iam: Any, role_arn: str) -> Check:
    role_name = role_arn.rsplit("/", 1)[-1]
    try:
        got = iam.get_role(RoleName=role_name)["Role"]
    except client_error() as exc:
        if error_code(exc) == "NoSuchEntity":
            return Check(
                "role",
                False,
                f"{role_arn} does not exist",
                "create it (docs/deploy.md) or fix --role / " + ROLE_ENV,
            )
        return Check(
            "role",
            None,
            f"cannot read {role_name}: {error_code(exc)}",
            "allow iam:GetRole on the role to have this checked",
        )
    if got["Arn"] != role_arn:
        return Check(
            "role",
            False,
            f"{role_arn} not found (a role named {role_name} is {got['Arn']})",
            "pass the exact ARN",
        )
    if not _trusts_sagemaker(got.get("AssumeRolePolicyDocument", {})):
        return Check(
            "role",
            False,
            f"{role_arn} does not trust sagemaker.amazonaws.com",
            "add a trust statement: Allow, Principal Service sagemaker.amazonaws.com, "
            "Action sts:AssumeRole",
        )
    return Check("role", True, f"{role_arn} trusts sagemaker.amazonaws.com")


def _bucket_check(s3: Any, bucket: str, region: str) -> Check:
    try:
        s3.head_bucket(Bucket=bucket)
    except client_error() as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return Check(
                "bucket",
                False,
                f"s3://{bucket} does not exist",
                f"aws s3 mb s3://{bucket} --region {region} (or deploy --create-bucket, "
                "or pass --bucket)",
            )
        return Check(
            "bucket",
            False,
            f"s3://{bucket} not reachable ({code})",
            "grant s3:ListBucket, s3:GetObject, s3:PutObject on it, or pass --bucket",
        )
    return Check("bucket", True, f"s3://{bucket} reachable")


def preflight(
    aws: Aws, role: str | None, bucket: str | None, max_concurrency: int
) -> tuple[list[Check], str, str]:
    """Run every preflight check; returns (checks, account, bucket)."""
    from botocore.exceptions import BotoCoreError

    try:
        identity = aws.client("sts").get_caller_identity()
    except (client_error(), BotoCoreError) as exc:
        failed = Check("credentials", False, f"cannot get the caller identity: {exc}")
        failed.fix = CREDENTIALS_FIX
        return [failed], "", bucket or ""
    account = identity["Account"]
    checks = [
        Check("credentials", True, f"{identity['Arn']} (account {account})"),
        Check("region", True, aws.region),
    ]
    try:
        checks.append(_role_check(aws.client("iam"), resolve_role(role)))
    except ToolError as exc:
        checks.append(Check("role", False, str(exc), f"set {ROLE_ENV} or pass --role"))
    bucket = bucket or default_bucket(aws.region, account)
    checks.append(_bucket_check(aws.client("s3"), bucket, aws.region))
    checks.append(_quota_check(aws.client("service-quotas"), max_concurrency))
    return checks, account, bucket
