"""deploy_model.py against AWS stand-ins: moto (S3, IAM, STS, SageMaker, CloudWatch, Logs),
botocore Stubber for what moto lacks (UpdateEndpoint, a failed deployment), and the local
stack's SageMaker runtime (ecg_scorer.local.endpoint) serving the archive's own handler."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import numpy as np
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from scorer_helpers import ecg_like
from test_package import CONFIG as TINY_CONFIG
from test_package import make_code_dir, make_model_dir

from ecg_scorer.deploy import ToolError
from ecg_scorer.deploy.archive import package, read_model_config, sha256_file
from ecg_scorer.deploy.aws import Aws, resolve_image_uri
from ecg_scorer.deploy.cli import build_parser, main
from ecg_scorer.deploy.identity import (
    MANAGED_BY,
    TAG_MANAGED_BY,
    TAG_SHA,
    s3_prefix,
    version_conflicts,
)
from ecg_scorer.deploy.invoke import Contract, load_windows, parse_endpoint
from ecg_scorer.deploy.preflight import ROLE_ENV, _quota_check, preflight
from ecg_scorer.deploy.rollout import CONTAINER_ENV, Plan, apply_plan, make_plan, wait_for_endpoint
from ecg_scorer.local import HOST, aws, processes

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.0.0-cpu-py310"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ENDPOINT = "ecg-local"  # the name the local runtime serves
CONTRACT = Contract.from_config(TINY_CONFIG)
VERSION = TINY_CONFIG["model_version"]
PREFIX = s3_prefix(VERSION)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checked-out-able archive of the tiny model with model_code's handler."""
    root = tmp_path_factory.mktemp("deploy")
    out = root / "model.tar.gz"
    package(make_model_dir(root / "model"), out, make_code_dir(root / "code"))
    return out


@pytest.fixture
def moto_aws() -> Iterator[tuple[Aws, str]]:
    """moto with an execution role that trusts SageMaker and the default bucket."""
    with mock_aws():
        role = boto3.client("iam").create_role(
            RoleName="ecg-sagemaker", AssumeRolePolicyDocument=json.dumps(TRUST)
        )["Role"]["Arn"]
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield Aws.from_environment(), role


def plan_for(aws: Aws, role: str, archive: Path, **overrides: Any) -> Plan:
    params: dict[str, Any] = {
        "endpoint": "ecg-test",
        "archive": archive,
        "bucket": BUCKET,
        "prefix": PREFIX,
        "image": IMAGE,
        "role": role,
        "memory": 3072,
        "max_concurrency": 10,
        "provisioned": None,
        "model_version": VERSION,
    }
    params.update(overrides)
    return make_plan(aws, **params)


def tags_of(sm: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}


# ---------------------------------------------------------------------------------------------
# deploy against moto


def test_deploy_creates_tagged_serverless_endpoint(
    moto_aws: tuple[Aws, str], archive: Path
) -> None:
    aws, role = moto_aws
    plan = plan_for(aws, role, archive, provisioned=2)
    out = io.StringIO()
    apply_plan(aws, plan, poll=0, out=out)

    sm, s3 = aws.client("sagemaker"), aws.client("s3")
    sha = sha256_file(archive)
    key = f"{PREFIX}/{sha}/model.tar.gz"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == archive.read_bytes()
    model = sm.describe_model(ModelName=plan.model_name)
    env = model["PrimaryContainer"]["Environment"]
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/{key}"
    assert env["SAGEMAKER_PROGRAM"] == "inference.py"
    assert env["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert env["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    assert env["LOG_LOCATION"].startswith("/tmp") and env["METRICS_LOCATION"].startswith("/tmp")
    variant = sm.describe_endpoint_config(EndpointConfigName=plan.config_name)[
        "ProductionVariants"
    ][0]
    assert variant["ServerlessConfig"] == {
        "MemorySizeInMB": 3072,
        "MaxConcurrency": 10,
        "ProvisionedConcurrency": 2,
    }
    endpoint = sm.describe_endpoint(EndpointName="ecg-test")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == plan.config_name
    for arn in (
        model["ModelArn"],
        sm.describe_endpoint_config(EndpointConfigName=plan.config_name)["EndpointConfigArn"],
        endpoint["EndpointArn"],
    ):
        assert tags_of(sm, arn)[TAG_MANAGED_BY] == MANAGED_BY
    assert tags_of(sm, model["ModelArn"])[TAG_SHA] == sha
    assert "endpoint ecg-test: InService" in out.getvalue()


def test_deploying_the_same_archive_again_creates_nothing(
    moto_aws: tuple[Aws, str], archive: Path
) -> None:
    aws, role = moto_aws
    apply_plan(aws, plan_for(aws, role, archive), poll=0, out=io.StringIO())
    again = plan_for(aws, role, archive)
    assert (again.upload, again.create_model, again.create_config) == (False, False, False)
    assert again.endpoint_action == "none"
    assert apply_plan(aws, again, poll=0, out=io.StringIO()) == []
    sm = aws.client("sagemaker")
    assert len(sm.list_models()["Models"]) == 1
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1


def test_new_memory_size_plans_an_update_not_a_new_endpoint(
    moto_aws: tuple[Aws, str], archive: Path
) -> None:
    aws, role = moto_aws
    first = plan_for(aws, role, archive)
    apply_plan(aws, first, poll=0, out=io.StringIO())
    bigger = plan_for(aws, role, archive, memory=4096)
    assert bigger.model_name == first.model_name and not bigger.create_model
    assert bigger.create_config and bigger.config_name != first.config_name
    assert bigger.endpoint_action == "update" and bigger.current_config == first.config_name
    assert any("update (now" in line for line in bigger.lines())


def test_dry_run_prints_the_plan_and_changes_nothing(
    moto_aws: tuple[Aws, str], archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, role = moto_aws
    code = main(
        [
            "deploy",
            "--archive",
            str(archive),
            "--role",
            role,
            "--image-uri",
            IMAGE,
            "--endpoint-name",
            "ecg-dry",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "plan for endpoint ecg-dry" in out and "dry run: nothing changed" in out
    assert "[create]" in out and "[upload]" in out
    assert boto3.client("sagemaker").list_models()["Models"] == []
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=BUCKET)


def test_deploy_refuses_a_failed_endpoint_instead_of_deleting_it() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(sm) as stub, Stubber(s3) as s3_stub:
        s3_stub.add_client_error("head_object", "404", "Not Found", 404)
        stub.add_client_error("describe_model", "ValidationException", "Could not find model")
        stub.add_client_error(
            "describe_endpoint_config", "ValidationException", "Could not find config"
        )
        stub.add_response("describe_endpoint", _endpoint("Failed", "old", "bad image"))
        aws = Aws(session=None, region=REGION, _clients={"sagemaker": sm, "s3": s3})
        with pytest.raises(ToolError, match=r"is Failed \(bad image\).*delete"):
            plan_for(aws, "arn:aws:iam::123456789012:role/r", Path(__file__))


# ---------------------------------------------------------------------------------------------
# model identity: config.json's model_version names the archive, the prefix and the tags


def test_archive_name_prefix_and_tags_come_from_config_json(
    moto_aws: tuple[Aws, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    aws, role = moto_aws
    version = "tiny-lstm-0badc0de"
    model_dir = make_model_dir(tmp_path / "model", {**TINY_CONFIG, "model_version": version})
    code_dir = make_code_dir(tmp_path / "code")
    monkeypatch.chdir(tmp_path)
    assert main(["package", "--model-dir", str(model_dir), "--code-dir", str(code_dir)]) == 0
    assert f"wrote sagemaker_models/{version}_sagemaker.tar.gz" in capsys.readouterr().out

    deploy = ["deploy", "--model-dir", str(model_dir), "--code-dir", str(code_dir)]
    deploy += ["--role", role, "--image-uri", IMAGE, "--endpoint-name", "ecg-named", "--poll", "0"]
    assert main(deploy) == 0
    out = capsys.readouterr().out
    sha = sha256_file(tmp_path / "sagemaker_models" / f"{version}_sagemaker.tar.gz")
    key = f"ecg-scorer/models/{version}/{sha}/model.tar.gz"
    assert f"  version   {version}" in out and f"uploaded s3://{BUCKET}/{key}" in out
    sm = aws.client("sagemaker")
    model = sm.describe_model(ModelName=sm.list_models()["Models"][0]["ModelName"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/{key}"
    assert tags_of(sm, model["ModelArn"])["ecg-scorer:model-version"] == version
    object_tags = aws.client("s3").get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    assert {"Key": "ecg-scorer:model-version", "Value": version} in object_tags


def test_deploy_refuses_another_archive_under_a_deployed_model_version(
    moto_aws: tuple[Aws, str], archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws, role = moto_aws
    apply_plan(aws, plan_for(aws, role, archive), poll=0, out=io.StringIO())
    # Same model_version, other bytes (here: another threshold).
    other = tmp_path / "other.tar.gz"
    model_dir = make_model_dir(tmp_path / "model", {**TINY_CONFIG, "threshold": 0.4})
    package(model_dir, other, make_code_dir(tmp_path / "code"))
    deploy = ["deploy", "--role", role, "--image-uri", IMAGE, "--poll", "0"]

    # Refused on any endpoint, not only the one that serves the version.
    assert main([*deploy, "--archive", str(other), "--endpoint-name", "ecg-elsewhere"]) == 1
    err = capsys.readouterr().err
    assert f"model_version {VERSION} is already uploaded or deployed with another archive" in err
    assert "  model ecg-test-m-" in err and f"  s3://{BUCKET}/{PREFIX}/" in err
    assert "Give the new model its own model_version in config.json" in err
    sm, s3 = aws.client("sagemaker"), aws.client("s3")
    assert len(sm.list_models()["Models"]) == 1
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1
    # The archive that was built as this version still deploys.
    assert main([*deploy, "--archive", str(archive), "--endpoint-name", "ecg-test"]) == 0
    assert "nothing to do: already deployed" in capsys.readouterr().out


def test_an_uploaded_archive_alone_claims_its_model_version(moto_aws: tuple[Aws, str]) -> None:
    aws, _ = moto_aws
    key = f"{PREFIX}/{'a' * 64}/model.tar.gz"  # uploaded by a deploy that stopped there
    tagging = urlencode({"ecg-scorer:model-version": VERSION})
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"x", Tagging=tagging)
    found = version_conflicts(aws, VERSION, "b" * 64, BUCKET, PREFIX)
    assert found.found == [(f"s3://{BUCKET}/{key}", "a" * 64)] and found.unread == []
    assert version_conflicts(aws, VERSION, "a" * 64, BUCKET, PREFIX).found == []
    assert version_conflicts(aws, "another-version", "b" * 64, BUCKET, PREFIX).found == []
    missing_bucket = version_conflicts(aws, VERSION, "b" * 64, "no-such-bucket", PREFIX)
    assert missing_bucket.found == [] and missing_bucket.unread == []


# ---------------------------------------------------------------------------------------------
# deploy --dry-run without credentials: the plan from the archive and the flags alone


def _without_credentials(tmp_path: Path) -> dict[str, str]:
    """The environment with every AWS variable gone and no credentials or config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
    )
    return env


def test_dry_run_without_credentials_shows_the_plan_and_what_was_not_checked(
    moto_aws: tuple[Aws, str], archive: Path, tmp_path: Path
) -> None:
    aws, role = moto_aws
    args = ["deploy", "--dry-run", "--archive", str(archive), "--role", role]
    proc = subprocess.run(
        [sys.executable, str(REPO / "deploy_model.py"), *args, "--provisioned-concurrency", "2"],
        capture_output=True,
        text=True,
        env=_without_credentials(tmp_path),
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "skip credentials  none found: planning without an account" in out
    # The names are the ones a deploy with an account would use.
    online = plan_for(aws, role, archive, endpoint="cnn1d-lstm-ecg-v1", provisioned=2)
    assert f"plan for endpoint cnn1d-lstm-ecg-v1 in {REGION}:" in out
    assert f"  upload    s3://sagemaker-{REGION}-<account>/{online.key}  [upload, unless" in out
    assert f"  image     {IMAGE}" in out  # from the SageMaker SDK, no account needed
    assert f"  model     {online.model_name}  [create, unless it exists]" in out
    assert (
        f"  config    {online.config_name} (3072 MB, max concurrency 10, provisioned 2)  "
        "[create, unless it exists]"
    ) in out
    assert "  endpoint  cnn1d-lstm-ecg-v1  [create, or update it without downtime" in out
    assert "not checked without an account" in out
    assert f"whether model_version {VERSION} was uploaded or deployed before" in out
    assert out.rstrip().endswith("dry run: nothing changed")


def test_without_credentials_only_a_dry_run_goes_on(
    archive: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in _without_credentials(tmp_path).items():
        monkeypatch.setenv(name, value)
    deploy = ["deploy", "--archive", str(archive), "--image-uri", IMAGE]
    assert main([*deploy, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "  model     (named after the execution role: pass --role" in out
    assert "the execution role (none given)" in out

    assert main(deploy) == 1
    out = capsys.readouterr().out
    assert "FAIL credentials  cannot get the caller identity: Unable to locate credentials" in out
    assert "plan for endpoint" not in out


# ---------------------------------------------------------------------------------------------
# what moto lacks: UpdateEndpoint and failures, with Stubber


def _endpoint(status: str, config: str, reason: str | None = None) -> dict[str, Any]:
    response = {
        "EndpointName": "ecg-test",
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/ecg-test",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
    }
    if reason:
        response["FailureReason"] = reason
    return response


def _stub_plan(archive: Path, action: str) -> Plan:
    return Plan(
        endpoint="ecg-test",
        region=REGION,
        archive=archive,
        sha="0" * 64,
        bucket=BUCKET,
        key="k",
        image=IMAGE,
        role=f"arn:aws:iam::{ACCOUNT}:role/r",
        model_name="ecg-test-m-1",
        config_name="ecg-test-c-new",
        serverless={"MemorySizeInMB": 4096, "MaxConcurrency": 10},
        env=dict(CONTAINER_ENV),
        model_version=VERSION,
        upload=False,
        create_model=False,
        create_config=True,
        endpoint_action=action,
        current_config="ecg-test-c-old",
    )


def test_update_swaps_the_config_of_the_live_endpoint(archive: Path) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    with Stubber(sm) as stub:
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/new"},
            {
                "EndpointConfigName": "ecg-test-c-new",
                "ProductionVariants": [
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": "ecg-test-m-1",
                        "ServerlessConfig": {"MemorySizeInMB": 4096, "MaxConcurrency": 10},
                    }
                ],
                "Tags": ANY,
            },
        )
        # No delete_endpoint / create_endpoint stubbed: calling either fails the test.
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": _endpoint("Updating", "x")["EndpointArn"]},
            {"EndpointName": "ecg-test", "EndpointConfigName": "ecg-test-c-new"},
        )
        stub.add_response("describe_endpoint", _endpoint("Updating", "ecg-test-c-old"))
        stub.add_response("describe_endpoint", _endpoint("InService", "ecg-test-c-new"))
        aws = Aws(session=None, region=REGION, _clients={"sagemaker": sm, "logs": None})
        out = io.StringIO()
        done = apply_plan(aws, _stub_plan(archive, "update"), poll=1, out=out, sleep=lambda _: None)
        stub.assert_no_pending_responses()
    assert done[-1] == "updating endpoint ecg-test from ecg-test-c-old"
    lines = out.getvalue().splitlines()
    assert "endpoint ecg-test: Updating (0m00s)" in lines
    assert "endpoint ecg-test: InService (0m00s)" in lines


def _stub_logs(logs: Any) -> Stubber:
    stub = Stubber(logs)
    group = "/aws/sagemaker/Endpoints/ecg-test"
    stub.add_response(
        "describe_log_streams",
        {"logStreams": [{"logStreamName": "AllTraffic/abc"}]},
        {"logGroupName": group, "orderBy": "LastEventTime", "descending": True, "limit": 3},
    )
    stub.add_response(
        "get_log_events",
        {
            "events": [
                {"timestamp": 1_767_225_600_000, "message": "Loading model"},
                {"timestamp": 1_767_225_601_000, "message": "ModelConfigError: lacks channels"},
            ]
        },
        {
            "logGroupName": group,
            "logStreamName": "AllTraffic/abc",
            "limit": 20,
            "startFromHead": False,
        },
    )
    return stub


def test_failed_creation_reports_failure_reason_and_last_log_lines(archive: Path) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    logs = boto3.client("logs", region_name=REGION)
    plan = _stub_plan(archive, "create")
    plan.create_config = False
    with Stubber(sm) as stub, _stub_logs(logs) as log_stub:
        stub.add_response("create_endpoint", {"EndpointArn": _endpoint("x", "y")["EndpointArn"]})
        stub.add_response("describe_endpoint", _endpoint("Creating", "ecg-test-c-new"))
        reason = "The primary container for production variant AllTraffic did not pass the ping"
        stub.add_response("describe_endpoint", _endpoint("Failed", "ecg-test-c-new", reason))
        aws = Aws(session=None, region=REGION, _clients={"sagemaker": sm, "logs": logs})
        with pytest.raises(ToolError) as info:
            apply_plan(aws, plan, poll=1, out=io.StringIO(), sleep=lambda _: None)
        log_stub.assert_no_pending_responses()
    message = str(info.value)
    assert "endpoint ecg-test is Failed: " + reason in message
    assert "2026-01-01 00:00:01 ModelConfigError: lacks channels" in message


def test_update_that_rolls_back_is_reported_as_a_failure(archive: Path) -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    logs = boto3.client("logs", region_name=REGION)
    with Stubber(sm) as stub, _stub_logs(logs):
        stub.add_response("describe_endpoint", _endpoint("InService", "ecg-test-c-old", "OOM"))
        with pytest.raises(ToolError, match="still serves ecg-test-c-old"):
            wait_for_endpoint(
                sm, logs, "ecg-test", "ecg-test-c-new", timeout=60, poll=1, out=io.StringIO()
            )


def test_wait_gives_up_after_the_timeout() -> None:
    sm = boto3.client("sagemaker", region_name=REGION)
    clock = iter([0.0, 30.0, 61.0])
    with Stubber(sm) as stub:
        stub.add_response("describe_endpoint", _endpoint("Creating", "c"))
        stub.add_response("describe_endpoint", _endpoint("Creating", "c"))
        with pytest.raises(ToolError, match="still Creating after 60 s"):
            wait_for_endpoint(
                sm,
                None,
                "ecg-test",
                "c",
                timeout=60,
                poll=1,
                out=io.StringIO(),
                sleep=lambda _: None,
                clock=lambda: next(clock),
            )


# ---------------------------------------------------------------------------------------------
# preflight


def test_preflight_passes_with_role_and_bucket(moto_aws: tuple[Aws, str]) -> None:
    aws, role = moto_aws
    checks, account, bucket = preflight(aws, role, None, 10)
    status = {c.name: c.ok for c in checks}
    assert status == {
        "credentials": True,
        "region": True,
        "role": True,
        "bucket": True,
        "quota": None,  # moto has no SageMaker quotas: reported, not failed
    }
    assert (account, bucket) == (ACCOUNT, BUCKET)


def test_preflight_says_what_to_fix(
    moto_aws: tuple[Aws, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lambda_trust = json.loads(json.dumps(TRUST).replace("sagemaker", "lambda"))
    role = boto3.client("iam").create_role(
        RoleName="lambda-only", AssumeRolePolicyDocument=json.dumps(lambda_trust)
    )["Role"]["Arn"]
    code = main(["preflight", "--role", role, "--bucket", "no-such-bucket"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL role" in out and "does not trust sagemaker.amazonaws.com" in out
    assert "Principal Service sagemaker.amazonaws.com" in out
    assert "FAIL bucket" in out and "aws s3 mb s3://no-such-bucket" in out

    monkeypatch.delenv(ROLE_ENV, raising=False)
    code = main(["preflight"])
    out = capsys.readouterr().out
    assert code == 1 and f"set {ROLE_ENV}" in out and "ok   bucket" in out

    monkeypatch.setenv(ROLE_ENV, f"arn:aws:iam::{ACCOUNT}:role/missing")
    assert main(["preflight"]) == 1
    assert "role/missing does not exist" in capsys.readouterr().out


@pytest.mark.parametrize(("requested", "ok"), [(10, True), (20, False)])
def test_quota_check_compares_concurrency_with_the_account_quota(requested: int, ok: bool) -> None:
    quotas = boto3.client("service-quotas", region_name=REGION)
    names = (
        ("Maximum total concurrency that can be allocated across all serverless endpoints", 10),
        ("Maximum concurrency allowed per serverless endpoint", 200),
        ("ml.m5.large for endpoint usage", 4),
    )
    with Stubber(quotas) as stub:
        stub.add_response(
            "list_service_quotas",
            {
                "Quotas": [
                    {"ServiceCode": "sagemaker", "QuotaName": n, "Value": v} for n, v in names
                ]
            },
            {"ServiceCode": "sagemaker"},
        )
        check = _quota_check(quotas, requested)
    assert check.ok is ok
    assert "across all serverless endpoints = 10" in check.detail
    if not ok:
        assert "request an increase" in check.fix


def test_image_uri_comes_from_the_installed_sagemaker_sdk() -> None:
    assert resolve_image_uri("eu-west-1") == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.0.0-cpu-py310"
    )
    assert resolve_image_uri("eu-west-1", "my/image:1") == "my/image:1"


# ---------------------------------------------------------------------------------------------
# status, logs, delete


def test_status_shows_config_model_and_metrics(
    moto_aws: tuple[Aws, str], archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws, role = moto_aws
    plan = plan_for(aws, role, archive)
    apply_plan(aws, plan, poll=0, out=io.StringIO())
    dims = [
        {"Name": "EndpointName", "Value": "ecg-test"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    aws.client("cloudwatch").put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            # A minute ago: moto leaves out points stamped in the second the query ends.
            {
                "MetricName": "Invocations",
                "Dimensions": dims,
                "Value": 7,
                "Unit": "Count",
                "Timestamp": datetime.now(UTC) - timedelta(minutes=1),
            },
            {
                "MetricName": "ModelLatency",
                "Dimensions": dims,
                "Value": 4200,
                "Unit": "Microseconds",
                "Timestamp": datetime.now(UTC) - timedelta(minutes=1),
            },
        ],
    )
    assert main(["status", "--endpoint-name", "ecg-test"]) == 0
    out = capsys.readouterr().out
    assert "state      InService" in out
    assert "memory     3072 MB, max concurrency 10" in out
    assert f"version    {VERSION}" in out
    assert f"archive    s3://{BUCKET}/{plan.key}" in out
    rows = {line.split()[0]: line.split()[2:] for line in out.splitlines() if line.startswith("  ")}
    assert rows["Invocations"] == ["7"]
    assert rows["ModelLatency"] == ["4.2", "ms"]
    assert rows["Invocation5XXErrors"] == ["0"]

    assert main(["status", "--endpoint-name", "nope"]) == 1
    assert "endpoint nope not found" in capsys.readouterr().err


def test_logs_prints_recent_lines_and_explains_a_missing_group(
    moto_aws: tuple[Aws, str], capsys: pytest.CaptureFixture[str]
) -> None:
    logs = boto3.client("logs")
    group = "/aws/sagemaker/Endpoints/ecg-test"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="AllTraffic/1")
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="AllTraffic/1",
        logEvents=[
            {"timestamp": now_ms - 7_200_000, "message": "two hours ago"},
            {"timestamp": now_ms - 60_000, "message": "Model server started"},
        ],
    )
    assert main(["logs", "--endpoint-name", "ecg-test", "--since", "10m"]) == 0
    out = capsys.readouterr().out
    assert "Model server started" in out and "two hours ago" not in out
    assert main(["logs", "--endpoint-name", "other"]) == 1
    assert "no log group /aws/sagemaker/Endpoints/other" in capsys.readouterr().err


def test_logs_follow_prints_each_line_once_until_interrupted(
    moto_aws: tuple[Aws, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = boto3.client("logs")
    group, stream = "/aws/sagemaker/Endpoints/ecg-test", "AllTraffic/1"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": now_ms - 1000, "message": "first"}],
    )
    polls = []

    def sleep(_: float) -> None:
        polls.append(1)
        if len(polls) == 1:  # a new line arrives between two polls
            logs.put_log_events(
                logGroupName=group,
                logStreamName=stream,
                logEvents=[{"timestamp": now_ms, "message": "second"}],
            )
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    assert main(["logs", "--endpoint-name", "ecg-test", "--follow", "--poll", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == ["first", "second"]


def test_delete_removes_what_the_tool_created_and_nothing_else(
    moto_aws: tuple[Aws, str], archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws, role = moto_aws
    sm = aws.client("sagemaker")
    apply_plan(aws, plan_for(aws, role, archive), poll=0, out=io.StringIO())
    older = plan_for(aws, role, archive, memory=2048)  # a config left by an earlier deploy
    older.endpoint_action = "none"
    apply_plan(aws, older, poll=0, out=io.StringIO())
    sm.create_model(
        ModelName="someone-elses",
        PrimaryContainer={"Image": IMAGE},
        ExecutionRoleArn=role,
    )
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 2

    assert main(["delete", "--endpoint-name", "ecg-test"]) == 1  # stdin is no tty
    assert "pass --yes" in capsys.readouterr().err
    assert main(["delete", "--endpoint-name", "ecg-test", "--yes", "--artifacts"]) == 0
    out = capsys.readouterr().out
    assert "deleted endpoint ecg-test" in out
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["someone-elses"]
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_endpoints()["Endpoints"] == []
    assert "Contents" not in aws.client("s3").list_objects_v2(Bucket=BUCKET)
    assert main(["delete", "--endpoint-name", "ecg-test", "--yes"]) == 0
    assert "nothing to delete" in capsys.readouterr().out


def test_delete_refuses_an_endpoint_it_did_not_create(
    moto_aws: tuple[Aws, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, role = moto_aws
    sm = boto3.client("sagemaker")
    sm.create_model(ModelName="m", PrimaryContainer={"Image": IMAGE}, ExecutionRoleArn=role)
    sm.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "m",
                "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
            }
        ],
    )
    sm.create_endpoint(EndpointName="manual", EndpointConfigName="c")
    assert main(["delete", "--endpoint-name", "manual", "--yes"]) == 1
    assert "not created by deploy_model.py" in capsys.readouterr().err
    assert sm.describe_endpoint(EndpointName="manual")["EndpointStatus"] == "InService"


# ---------------------------------------------------------------------------------------------
# invoke: against the local stack's SageMaker runtime serving the archive's own handler


@dataclass
class LocalEndpoint:
    url: str
    log: Path

    def requests(self) -> list[tuple[str, int]]:
        """(content type, body bytes) of every request the model answered, in order."""
        text = self.log.read_text(encoding="utf-8")
        return [(m[1], int(m[2])) for m in re.finditer(r"invocation (\S+) (\d+) bytes", text)]


@pytest.fixture(scope="module")
def local_endpoint(
    archive: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalEndpoint]:
    """ecg_scorer.local.endpoint serving the unpacked archive, started as the local stack
    starts it (a child with the archive's code/ as PYTHONPATH)."""
    root = tmp_path_factory.mktemp("endpoint")
    model_dir = root / "model"
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(model_dir, filter="data")
    port = processes.free_port()
    args = ["-m", "ecg_scorer.local.endpoint", "--model-dir", str(model_dir)]
    args += ["--endpoint-name", ENDPOINT, "--host", HOST, "--port", str(port)]
    env = aws.child_env({"PYTHONPATH": str(model_dir / "code")})
    log, ready = root / "endpoint.log", root / "endpoint.ready"
    proc = processes.spawn(args, env, log, ready)
    try:
        processes.wait_ready(proc, ready, log, timeout=120)
        yield LocalEndpoint(f"http://{HOST}:{port}", log)
    finally:
        processes.stop_process(proc)


def _ecg(n: int | None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (2000, 3) if n is None else (n, 2000, 3)
    return rng.normal(0.0, 0.3, shape).astype(np.float32)


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"}
    full.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        **env,
    )
    return subprocess.run(
        [sys.executable, str(REPO / "deploy_model.py"), *args],
        capture_output=True,
        text=True,
        env=full,
        check=False,
        timeout=120,
    )


def test_invoke_seed_json_prints_probability_and_label(
    local_endpoint: LocalEndpoint, archive: Path, tmp_path: Path
) -> None:
    ecg = tmp_path / "seed.json"
    ecg.write_text(json.dumps({"signals": _ecg(None).tolist()}))
    proc = _cli(
        ["invoke", str(ecg), "--endpoint-name", ENDPOINT, "--model-config", str(archive)],
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=local_endpoint.url,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("1 window(s) of 2000 samples, sent as application/json")
    window = lines[1].split()
    assert window[:3] == ["window", "0", "probability"]
    assert 0.0 <= float(window[3]) <= 1.0 and window[4] in ("normal", "anomalous")
    assert lines[2].startswith("file: max probability") and "cnn1d_lstm_ecg_v1" in lines[2]
    assert local_endpoint.requests()[-1][0] == "application/json"


def test_invoke_npy_windows_by_runtime_url_in_batches(
    local_endpoint: LocalEndpoint, archive: Path, tmp_path: Path
) -> None:
    ecg = tmp_path / "windows.npy"
    np.save(ecg, _ecg(5))
    runtime_url = (
        f"https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/{ENDPOINT}/invocations"
    )
    before = len(local_endpoint.requests())
    proc = _cli(
        [
            "invoke",
            str(ecg),
            "--endpoint-name",
            runtime_url,
            "--batch",
            "2",
            "--json",
            "--model-config",
            str(archive),
        ],
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=local_endpoint.url,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == 5 and all(0.0 <= r["probability"] <= 1.0 for r in results)
    sent = local_endpoint.requests()[before:]
    assert [content_type for content_type, _ in sent] == ["application/x-npy"] * 3


@pytest.mark.parametrize("suffix", [".json", ".npy"])
def test_invoke_splits_a_long_file_into_requests_under_4_mb(
    local_endpoint: LocalEndpoint, archive: Path, tmp_path: Path, suffix: str
) -> None:
    windows = _ecg(200, seed=2)
    ecg = tmp_path / f"long{suffix}"
    if suffix == ".json":
        ecg.write_text(json.dumps({"signals": windows.tolist()}))
    else:
        np.save(ecg, windows)
    before = len(local_endpoint.requests())
    proc = _cli(
        ["invoke", str(ecg), "--endpoint-name", ENDPOINT, "--json", "--model-config", str(archive)],
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=local_endpoint.url,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 200
    sent = local_endpoint.requests()[before:]
    assert len(sent) > 1
    assert all(size <= 4_000_000 for _, size in sent), sent
    expected = "application/json" if suffix == ".json" else "application/x-npy"
    assert {content_type for content_type, _ in sent} == {expected}


def test_invoke_reports_a_rejected_request(
    local_endpoint: LocalEndpoint, archive: Path, tmp_path: Path
) -> None:
    ecg = tmp_path / "bad.npy"
    bad = _ecg(1)
    bad[0, 5, 1] = np.nan
    np.save(ecg, bad)
    proc = _cli(
        ["invoke", str(ecg), "--endpoint-name", ENDPOINT, "--model-config", str(archive)],
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=local_endpoint.url,
    )
    assert proc.returncode == 1
    # SageMaker's ModelError, with the model's own 400 message.
    assert "ModelError" in proc.stderr and "(400)" in proc.stderr
    assert "NaN" in proc.stderr


def test_invoke_prepares_other_recordings_with_the_pipeline_readers(
    local_endpoint: LocalEndpoint, archive: Path, tmp_path: Path
) -> None:
    signal = ecg_like(25.0, 500.0)  # 25 s at 500 Hz: resampled, 2.5 windows
    ecg = tmp_path / "holter.csv"
    rows = "\n".join(",".join(f"{v:.4f}" for v in row) for row in signal)
    ecg.write_text("# sampling_rate_hz: 500\nI_mV,II_mV,V2_mV\n" + rows + "\n")
    # The leads, rate and window come from the archive's own config.json.
    contract = Contract.from_config(read_model_config(archive))
    assert contract == Contract(("I", "II", "V2"), 200.0, 2000)
    windows, how = load_windows(ecg, contract)
    assert how == "pipeline" and windows.shape == (3, 2000, 3)

    proc = _cli(
        ["invoke", str(ecg), "--endpoint-name", ENDPOINT, "--model-config", str(archive)],
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=local_endpoint.url,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 window(s) of 2000 samples, sent as application/x-npy" in proc.stdout
    assert local_endpoint.requests()[-1][0] == "application/x-npy"

    short = tmp_path / "short.csv"
    short.write_text("# sampling_rate_hz: 500\nI,II,V2\n" + rows.split("\n", 1)[0] + "\n")
    with pytest.raises(ToolError, match=r"short.csv: cannot be scored: .*needs at least 10 s"):
        load_windows(short, contract)


def test_invoke_reads_a_real_recording(shared_ecg: Path) -> None:
    # PTB s0010_re: leads i, ii, v2 at 1000 Hz, 38.4 s -> 3 windows and a padded 4th.
    windows, how = load_windows(
        shared_ecg / "csv" / "ptbdb_s0010_re_i_ii_v2_38s_1000hz.csv", CONTRACT
    )
    assert how == "pipeline" and windows.shape == (4, 2000, 3)
    assert np.isfinite(windows).all()


def test_every_command_and_flag_has_help() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == {
        "package", "check", "preflight", "deploy", "invoke", "status", "logs", "delete"
    }  # fmt: skip
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0


def test_invoke_takes_endpoint_name_like_every_command_and_still_the_old_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    assert parser.parse_args(["invoke", "f.npy", "--endpoint-name", "a"]).endpoint_name == "a"
    assert capsys.readouterr().err == ""
    assert parser.parse_args(["invoke", "f.npy", "--endpoint", "b"]).endpoint_name == "b"
    assert "warning: --endpoint is deprecated; use --endpoint-name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["invoke", "--help"])
    assert not re.search(r"--endpoint\b(?!-)", capsys.readouterr().out)  # hidden from help


def test_a_bad_since_is_reported_with_the_usage_of_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["logs", "--since", "yesterday"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: deploy_model.py logs ")
    assert "error: argument --since: 'yesterday': use a duration like 10m, 2h, 1d" in err


def test_invoke_against_moto_reports_its_canned_answer(
    moto_aws: tuple[Aws, str], archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # moto's InvokeEndpoint answers a fixed non-JSON body: the CLI must say so, not crash.
    ecg = tmp_path / "seed.json"
    ecg.write_text(json.dumps({"signals": _ecg(None).tolist()}))
    argv = ["invoke", str(ecg), "--endpoint-name", "ecg-test", "--model-config", str(archive)]
    assert main(argv) == 1
    assert "something that is not JSON" in capsys.readouterr().err


def test_parse_endpoint_accepts_names_and_runtime_urls() -> None:
    assert parse_endpoint("ecg") == ("ecg", None, None)
    assert parse_endpoint(
        "https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/ecg/invocations"
    ) == ("ecg", "eu-west-1", None)
    assert parse_endpoint("http://127.0.0.1:8080/endpoints/ecg/invocations") == (
        "ecg",
        None,
        "http://127.0.0.1:8080",
    )
    with pytest.raises(ToolError, match="not a runtime URL"):
        parse_endpoint("https://example.com/ecg")


# ---------------------------------------------------------------------------------------------
# the CLI end to end, as a user runs it, against a moto server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_cli_end_to_end_against_moto_server(
    archive: Path, local_endpoint: LocalEndpoint, tmp_path: Path
) -> None:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    moto_url = f"http://127.0.0.1:{port}"
    try:
        session = boto3.session.Session(region_name=REGION)
        iam, s3, sm = (session.client(s, endpoint_url=moto_url) for s in ("iam", "s3", "sagemaker"))
        role = iam.create_role(RoleName="ecg-e2e", AssumeRolePolicyDocument=json.dumps(TRUST))[
            "Role"
        ]["Arn"]
        s3.create_bucket(Bucket=BUCKET)
        env = {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": local_endpoint.url,
            ROLE_ENV: role,
        }
        deploy = ["deploy", "--archive", str(archive), "--endpoint-name", ENDPOINT]
        deploy += ["--image-uri", IMAGE, "--poll", "0"]

        first = _cli(deploy, **env)
        assert first.returncode == 0, first.stderr
        assert "ok   role" in first.stdout and f"creating endpoint {ENDPOINT}" in first.stdout
        assert first.stdout.rstrip().splitlines()[-1].startswith(f"endpoint {ENDPOINT} InService")

        second = _cli(deploy, **env)
        assert second.returncode == 0, second.stderr
        assert "nothing to do: already deployed" in second.stdout
        assert "[up to date]" in second.stdout
        assert len(sm.list_models()["Models"]) == 1
        assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 1
        assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1

        status = _cli(["status", "--endpoint-name", ENDPOINT], **env)
        assert status.returncode == 0, status.stderr
        assert "state      InService" in status.stdout and "3072 MB" in status.stdout

        ecg = tmp_path / "seed.json"
        ecg.write_text(json.dumps({"signals": _ecg(2).tolist()}))
        invoked = _cli(
            ["invoke", str(ecg), "--endpoint-name", ENDPOINT, "--model-config", str(archive)], **env
        )
        assert invoked.returncode == 0, invoked.stderr
        assert [line.split()[:2] for line in invoked.stdout.splitlines()[1:3]] == [
            ["window", "0"],
            ["window", "1"],
        ]

        deleted = _cli(["delete", "--endpoint-name", ENDPOINT, "--yes", "--artifacts"], **env)
        assert deleted.returncode == 0, deleted.stderr
        assert sm.list_endpoints()["Endpoints"] == []
        assert sm.list_endpoint_configs()["EndpointConfigs"] == []
        assert sm.list_models()["Models"] == []
        assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    finally:
        server.stop()
