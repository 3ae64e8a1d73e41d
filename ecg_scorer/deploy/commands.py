"""What each deploy_model.py command does and prints (cli holds the flags).

Each returns the exit status, or raises ToolError for main() to print.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ecg_scorer.deploy import ToolError
from ecg_scorer.deploy.archive import (
    REQUIRED_MEMBERS,
    CheckResult,
    check_archive,
    default_archive,
    package,
    read_model_config,
    version_of,
)
from ecg_scorer.deploy.aws import (
    REGION_ADVICE,
    Aws,
    client_error,
    default_bucket,
    error_code,
    new_session,
    resolve_image_uri,
)
from ecg_scorer.deploy.identity import (
    TAG_MANAGED_BY,
    describe_conflicts,
    s3_prefix,
    version_conflicts,
)
from ecg_scorer.deploy.invoke import (
    JSON,
    NPY,
    Contract,
    default_model_config,
    invoke,
    load_windows,
    parse_endpoint,
)
from ecg_scorer.deploy.operate import (
    delete_owned,
    find_owned,
    format_event,
    log_events,
    log_group,
    status_lines,
)
from ecg_scorer.deploy.preflight import CREDENTIALS_FIX, Check, preflight, resolve_role
from ecg_scorer.deploy.rollout import Plan, PlanInputs, apply_plan, draft_plan, make_plan


def cmd_package(args: argparse.Namespace) -> int:
    out: Path = args.out or default_archive(args.model_dir)
    sha = package(args.model_dir, out, args.code_dir)
    print(f"wrote {out} ({out.stat().st_size / 1024:.1f} KiB)")
    print(f"sha256 {sha}")
    return 0


def _print_check(path: Path, result: CheckResult) -> None:
    if result.ok:
        smoke = result.smoke
        print(
            f"ok {path}: {len(REQUIRED_MEMBERS)} members, model_version "
            f"{result.config.get('model_version')}, {smoke.get('parameters', '?')} parameters, "
            f"smoke probability {smoke.get('probability', float('nan')):.4f}"
        )
    else:
        for problem in result.problems:
            print(f"error: {problem}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    result = check_archive(args.archive, max_unpacked_mib=args.max_unpacked_mib)
    _print_check(args.archive, result)
    return 0 if result.ok else 1


def cmd_preflight(args: argparse.Namespace) -> int:
    checks, _, _ = preflight(Aws.from_environment(), args.role, args.bucket, args.max_concurrency)
    for item in checks:
        print(item)
    return 1 if any(c.ok is False for c in checks) else 0


def _archive_to_deploy(args: argparse.Namespace) -> Path:
    """--archive as it is, else the model folder packaged (deterministic: an unchanged model
    gives the same bytes)."""
    if args.archive:
        if not args.archive.is_file():
            raise ToolError(f"{args.archive} not found: build it with deploy_model.py package")
        return Path(args.archive)
    if not args.model_dir.is_dir():
        raise ToolError(f"{args.model_dir} has no model: run make model, or pass --archive")
    archive = default_archive(args.model_dir)
    sha = package(args.model_dir, archive, args.code_dir)
    print(f"packaged {archive} (sha256 {sha[:16]}...)")
    return archive


def _plan_inputs(
    args: argparse.Namespace, archive: Path, version: str, bucket: str, image: str, role: str
) -> PlanInputs:
    return PlanInputs(
        endpoint=args.endpoint_name,
        archive=archive,
        bucket=bucket,
        prefix=args.prefix or s3_prefix(version),
        image=image,
        role=role,
        memory=args.memory,
        max_concurrency=args.max_concurrency,
        provisioned=args.provisioned_concurrency,
        model_version=version,
    )


def _plan_without_account(args: argparse.Namespace, aws: Aws, archive: Path, version: str) -> int:
    """deploy --dry-run with no credentials: the plan from the archive and the flags alone."""
    print(Check("credentials", None, "none found: planning without an account", CREDENTIALS_FIX))
    try:
        role = resolve_role(args.role)
    except ToolError:
        role = ""
    bucket = args.bucket or default_bucket(aws.region, "<account>")
    image = resolve_image_uri(aws.region, args.image_uri)
    plan = draft_plan(aws.region, **_plan_inputs(args, archive, version, bucket, image, role))
    if args.create_bucket:
        print(f"would create bucket s3://{bucket} unless it exists")
    for line in plan.lines():
        print(line)
    role_text = "that it exists and trusts sagemaker.amazonaws.com" if role else "none given"
    unchecked = [
        "the caller's identity and account",
        f"the execution role ({role_text})",
        "the bucket (that it exists and can be written)",
        f"the serverless concurrency quota (max concurrency {args.max_concurrency} asked)",
        "which of the archive, model, config and endpoint exist (create or skip, create or update)",
        f"whether model_version {plan.model_version} was uploaded or deployed before with "
        "another archive",
    ]
    print("not checked without an account; configure credentials and run it again for these:")
    for item in unchecked:
        print(f"  {item}")
    print("dry run: nothing changed")
    return 0


def _preflight_for_deploy(args: argparse.Namespace, aws: Aws) -> tuple[str, str] | None:
    """Print the preflight lines, creating a missing bucket with --create-bucket (or saying
    it would); (account, bucket), or None when a check failed."""
    checks, account, bucket = preflight(aws, args.role, args.bucket, args.max_concurrency)
    for item in checks:
        print(item)
    failed = [c.name for c in checks if c.ok is False]
    if failed == ["bucket"] and args.create_bucket:
        if args.dry_run:
            print(f"would create bucket s3://{bucket}")
        else:
            params: dict[str, Any] = {"Bucket": bucket}
            if aws.region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
            aws.client("s3").create_bucket(**params)
            print(f"created bucket s3://{bucket}")
        failed = []
    return None if failed else (account, bucket)


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.provisioned_concurrency and args.provisioned_concurrency > args.max_concurrency:
        raise ToolError("--provisioned-concurrency must not exceed --max-concurrency")
    archive = _archive_to_deploy(args)
    result = check_archive(archive, max_unpacked_mib=args.max_unpacked_mib)
    _print_check(archive, result)
    if not result.ok:
        return 1
    version = version_of(result.config, archive)
    aws = Aws.from_environment()
    if args.dry_run and not aws.has_credentials():
        return _plan_without_account(args, aws, archive, version)
    passed = _preflight_for_deploy(args, aws)
    if passed is None:
        print("preflight failed: fix the lines marked FAIL above", file=sys.stderr)
        return 1
    account, bucket = passed
    image = resolve_image_uri(aws.region, args.image_uri)
    inputs = _plan_inputs(args, archive, version, bucket, image, resolve_role(args.role))
    plan = make_plan(aws, **inputs)
    for line in plan.lines():
        print(line)
    _refuse_a_reused_version(aws, plan, inputs["prefix"])
    if args.dry_run:
        print("dry run: nothing changed")
        return 0
    done = apply_plan(aws, plan, wait=not args.no_wait, timeout=args.timeout, poll=args.poll)
    if not done:
        print("nothing to do: already deployed")
    state = "submitted" if args.no_wait and plan.endpoint_action != "none" else "InService"
    print(f"endpoint {plan.endpoint} {state} with {plan.config_name} (account {account})")
    return 0


def _refuse_a_reused_version(aws: Aws, plan: Plan, prefix: str) -> None:
    """One model_version, one archive: raise when the version was shipped with other bytes."""
    conflicts = version_conflicts(aws, plan.model_version, plan.sha, plan.bucket, prefix)
    for where in conflicts.unread:
        print(
            f"warning: could not look for other archives of {plan.model_version} in {where}; "
            "allow s3:ListBucket and s3:GetObjectTagging to have this checked",
            file=sys.stderr,
        )
    if conflicts.found:
        raise ToolError(describe_conflicts(plan.model_version, plan.sha, conflicts))


def cmd_invoke(args: argparse.Namespace) -> int:
    name, region, endpoint_url = parse_endpoint(args.endpoint_name)
    source = args.model_config or default_model_config()
    config = read_model_config(source)
    contract = Contract.from_config(config, str(source))
    version = version_of(config, source)
    windows, how = load_windows(args.file, contract)
    content_type = args.content_type
    if content_type == "auto":
        # JSON only for what already is JSON windows; x-npy is 5x smaller for everything else.
        content_type = JSON if how == "seed-json" else NPY
    session = new_session()
    region = region or session.region_name
    if not region:
        raise ToolError(f"no AWS region configured: {REGION_ADVICE}; or pass a runtime URL")
    runtime = session.client("sagemaker-runtime", region_name=region, endpoint_url=endpoint_url)
    answers = invoke(runtime, name, version, windows, content_type, args.batch)
    if args.json:  # contract 1's objects, one per window
        print(json.dumps([{"prediction": a.probability, **asdict(a)} for a in answers]))
        return 0
    print(
        f"{args.file}: {len(windows)} window(s) of {windows.shape[1]} samples, "
        f"sent as {content_type}"
    )
    for index, answer in enumerate(answers):
        print(f"window {index:>3}  probability {answer.probability:.4f}  {answer.label}")
    top = max(answers, key=lambda a: a.probability)
    print(
        f"file: max probability {top.probability:.4f} -> {top.label} "
        f"(threshold {top.threshold}, model {top.model_version})"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    for line in status_lines(Aws.from_environment(), args.endpoint_name, args.minutes):
        print(line)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    aws = Aws.from_environment()
    logs = aws.client("logs")
    since = args.since
    seen: set[str] = set()
    try:
        while True:
            for event in log_events(logs, args.endpoint_name, since):
                if event.get("eventId") in seen:
                    continue
                seen.add(event.get("eventId", ""))
                print(format_event(event), flush=True)
                since = max(since, datetime.fromtimestamp(event["timestamp"] / 1000, UTC))
            if not args.follow:
                return 0
            time.sleep(args.poll)
    except client_error() as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise ToolError(
                f"no log group {log_group(args.endpoint_name)} in {aws.region}: "
                "the endpoint has not started a container yet (or the name is wrong)"
            ) from exc
        raise
    except KeyboardInterrupt:
        return 0


def cmd_delete(args: argparse.Namespace) -> int:
    aws = Aws.from_environment()
    owned = find_owned(aws, args.endpoint_name)
    if owned.foreign and not args.force:
        raise ToolError(
            f"endpoint {owned.endpoint} was not created by deploy_model.py (no "
            f"{TAG_MANAGED_BY} tag); pass --force to delete it anyway"
        )
    if not (owned.endpoint or owned.configs or owned.models):
        print(f"nothing to delete for {args.endpoint_name} in {aws.region}")
        return 0
    print(f"to delete in {aws.region}:")
    for line in owned.lines(artifacts=args.artifacts):
        print(line)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ToolError("not deleting without confirmation: pass --yes")
        answer = input(f"type the endpoint name ({args.endpoint_name}) to delete: ")
        if answer.strip() != args.endpoint_name:
            print("not deleted")
            return 1
    delete_owned(aws, owned, artifacts=args.artifacts, timeout=args.timeout, out=sys.stdout)
    print("done")
    return 0
