"""ecg-scorer's access commands against moto: `policy` prints least-privilege IAM policies for
the stack's own bucket and table (moto enforces the uploader's for S3), and `presign` gives a
device without AWS credentials a URL or form that puts files in its folder, with the headers
it must send."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import boto3
import pytest
import requests
from cli_helpers import BUCKET, TABLE, denied, run, run_failing, s3_as_user
from moto.core import set_initial_no_auth_action_count

from ecg_scorer import cli, tenants

pytest_plugins = ["cli_fixtures"]  # its fixtures: cli_aws (moto), ddb (the table)


def make_stack(outputs: dict[str, str]) -> None:
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName="ecg", TemplateBody=json.dumps(template))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.main(list(argv), out=io.StringIO())
    assert exit_.value.code == 2
    return capsys.readouterr().err


# 6 set-up requests (bucket, stack, the command's describe_stacks, user, policy, key) go
# unauthorised; from then on moto checks every S3 request against the printed policy.
@set_initial_no_auth_action_count(6)
def test_uploader_policy_for_the_stacks_bucket_lets_a_device_write_only_its_folder(
    cli_aws: None,
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    make_stack({"IngestBucketName": BUCKET})
    printed = run("policy", "uploader", "--stack", "ecg", "--site", "stmarys", "--device", "h-7")
    policy = json.loads(printed)
    assert policy == tenants.uploader_policy(BUCKET, "stmarys", "h-7")

    device = s3_as_user(boto3.client("iam"), printed, "h-7")
    device.put_object(Bucket=BUCKET, Key="incoming/stmarys/h-7/a.csv", Body=b"I\n1\n")
    assert denied(lambda: device.put_object(Bucket=BUCKET, Key="incoming/stmarys/h-8/a.csv"))
    assert denied(lambda: device.put_object(Bucket=BUCKET, Key="incoming/royal/h-7/a.csv"))
    assert denied(lambda: device.get_object(Bucket=BUCKET, Key="incoming/stmarys/h-7/a.csv"))


def test_analyst_policy_names_the_stacks_table_and_only_the_sites_given(ddb: Any) -> None:
    make_stack({"IngestBucketName": BUCKET, "PredictionsTableName": TABLE})
    arn = ddb.describe_table(TableName=TABLE)["Table"]["TableArn"]
    printed = run(
        "policy", "analyst", "--stack", "ecg", "--site", "stmarys", "--site", "royal",
        "--site", "stmarys",
    )  # fmt: skip
    policy = json.loads(printed)
    assert policy == tenants.analyst_policy(arn, BUCKET, ["stmarys", "royal"])
    tables = {s["Resource"] for s in policy["Statement"] if s["Sid"] != "SiteRecordings"}
    assert tables == {arn, f"{arn}/index/by_device"}
    assert "other" not in printed


def test_policy_refuses_names_that_would_widen_it(
    cli_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(capsys, "policy", "uploader", "--bucket", BUCKET, "--site", "*")
    assert "site must be 1-64 letters" in err
    err = usage_error(
        capsys, "policy", "uploader", "--bucket", BUCKET, "--site", "s", "--device", "a/b"
    )
    assert "device must be 1-64 letters" in err
    assert "the following arguments are required: --site" in usage_error(
        capsys, "policy", "analyst", "--bucket", BUCKET
    )


def test_presign_gives_a_url_a_device_puts_to_with_the_headers_printed(
    cli_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    capsys.readouterr()
    out = run(
        "presign", "day 1/rec 1.csv", "--bucket", BUCKET, "--site", "stmarys", "--device",
        "holter-7", "--expires", "15m", "--metadata", "recorded_at=2026-05-10T01:00:00Z",
    )  # fmt: skip
    request_line, *header_lines = out.splitlines()
    method, url = request_line.split(" ", 1)
    assert method == "PUT"
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "X-Amz-Expires=900" in url
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert headers == {"x-amz-meta-recorded_at": "2026-05-10T01:00:00Z"}
    hint = capsys.readouterr().err
    assert "curl --fail -T 'day 1/rec 1.csv' -H 'x-amz-meta-recorded_at: 2026-" in hint

    # The device has no AWS credentials: only the URL and the headers.
    assert requests.put(url, data=b"I,II,V2\n", headers=headers, timeout=10).status_code == 200
    stored = s3.head_object(Bucket=BUCKET, Key="incoming/stmarys/holter-7/rec 1.csv")
    assert stored["Metadata"] == {"recorded_at": "2026-05-10T01:00:00Z"}


def test_presign_post_gives_a_form_for_any_file_into_the_devices_folder(cli_aws: None) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    form = json.loads(
        run(
            "presign", "--post", "--format", "json", "--bucket", BUCKET, "--site", "stmarys",
            "--device", "patch-3", "--max-bytes", "1000", "--metadata", "sampling_rate_hz=250",
        )
    )  # fmt: skip
    assert form["method"] == "POST" and form["max_bytes"] == 1000
    for name in ("a.csv", "b.npy"):
        answer = requests.post(
            form["url"], data=form["fields"], files={"file": (name, b"1,2,3\n")}, timeout=10
        )
        assert answer.status_code in {200, 204}
        head = s3.head_object(Bucket=BUCKET, Key=f"incoming/stmarys/patch-3/{name}")
        assert head["Metadata"] == {"sampling_rate_hz": "250"}
    # What S3 enforces (moto does not): the folder, the size and the metadata are pinned.
    conditions = json.loads(base64.b64decode(form["fields"]["policy"]))["conditions"]
    assert ["starts-with", "$key", "incoming/stmarys/patch-3/"] in conditions
    assert ["content-length-range", 1, 1000] in conditions
    assert {"x-amz-meta-sampling_rate_hz": "250"} in conditions


def test_presign_mistakes_say_what_is_expected(
    cli_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--bucket", BUCKET, "--site", "stmarys", "--device", "d"]
    assert "at most 7d" in usage_error(capsys, "presign", "a.csv", *where, "--expires", "8d")
    assert "bad duration" in usage_error(capsys, "presign", "a.csv", *where, "--expires", "soon")
    assert "--post" in usage_error(capsys, "presign", *where)
    assert "site must be" in usage_error(
        capsys, "presign", "a.csv", "--bucket", BUCKET, "--site", "..", "--device", "d"
    )
    assert f"bucket {BUCKET} not found" in run_failing(capsys, "presign", "a.csv", *where)
