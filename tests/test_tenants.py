"""Tenants stay in their lane (issue 9): a site's uploaders write only under their folder and
read nothing; an analyst limited to some sites reads only their results.

S3 policies are enforced by moto itself (it authorises S3 requests against the caller's IAM
policies). moto does not evaluate DynamoDB condition keys, so the analyst policy is checked
by a small evaluator of the IAM rules it relies on (default deny, Action/Resource wildcards,
ForAllValues:StringLike / StringEquals on dynamodb:LeadingKeys) against lists of requests
that must be allowed and denied.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count
from scorer import schema

from ecg_scorer import tenants

BUCKET = "ecg-ingest-tenants"
TABLE_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Predictions"


def _user_client(iam: Any, policy: dict[str, Any], name: str) -> Any:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )


def _denied(call: Any) -> bool:
    try:
        call()
    except ClientError as e:
        return e.response["Error"]["Code"] == "AccessDenied"
    return False


@mock_aws
@set_initial_no_auth_action_count(4)  # the bucket and user set-up run unauthorised
def test_a_sites_uploaders_write_only_under_their_folder_and_read_nothing() -> None:
    admin = boto3.client("s3", region_name="us-east-1")
    admin.create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", region_name="us-east-1")
    s3 = _user_client(iam, tenants.uploader_policy(BUCKET, "stmarys"), "stmarys-uploader")

    s3.put_object(Bucket=BUCKET, Key="incoming/stmarys/holter-7/a.csv", Body=b"I,II,V2\n")
    assert _denied(lambda: s3.put_object(Bucket=BUCKET, Key="incoming/other/dev/a.csv", Body=b"x"))
    assert _denied(lambda: s3.put_object(Bucket=BUCKET, Key="incoming/stmarysx/d/a.csv", Body=b""))
    assert _denied(lambda: s3.put_object(Bucket=BUCKET, Key="results/x", Body=b"x"))
    assert _denied(lambda: s3.get_object(Bucket=BUCKET, Key="incoming/stmarys/holter-7/a.csv"))
    assert _denied(lambda: s3.list_objects_v2(Bucket=BUCKET))


@mock_aws
def test_a_device_without_credentials_uploads_with_a_presigned_url_to_its_folder() -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    url = tenants.presigned_put(s3, BUCKET, "stmarys", "patch-3", "rec 1.npy", 900)
    assert requests.put(url, data=b"\x93NUMPY", timeout=10).status_code == 200
    assert s3.get_object(Bucket=BUCKET, Key="incoming/stmarys/patch-3/rec 1.npy")["Body"].read()

    post = tenants.presigned_post(s3, BUCKET, "stmarys", "patch-3", 900, max_bytes=1000)
    ok = requests.post(
        post["url"], data=post["fields"], files={"file": ("b.csv", b"1,2,3\n")}, timeout=10
    )
    assert ok.status_code in {200, 204}
    assert s3.head_object(Bucket=BUCKET, Key="incoming/stmarys/patch-3/b.csv")["ContentLength"] == 6
    with pytest.raises(ValueError, match="site must be"):
        tenants.presigned_put(s3, BUCKET, "../other", "d", "x.csv", 60)


# -- the analyst policy, evaluated -----------------------------------------------------------


def _matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)  # IAM's * and ? (no [] in our policies)


def _condition_holds(condition: dict[str, Any], context: dict[str, list[str]]) -> bool:
    for operator, tests in condition.items():
        qualifier, _, op = operator.rpartition(":")
        for key, wanted in tests.items():
            values = context.get(key, [])
            compare = _matches if op == "StringLike" else str.__eq__
            assert qualifier == "ForAllValues", "these policies only use ForAllValues"
            # ForAllValues: every value in the request matches one of the policy's (and an
            # empty set passes, which is why LeadingKeys is always sent for a Query).
            if not all(any(compare(w, v) for w in wanted) for v in values):
                return False
    return True


def allowed(policy: dict[str, Any], action: str, resource: str, leading_keys: list[str]) -> bool:
    """IAM's answer for one request under one identity policy (no Deny statements here)."""
    context = {"dynamodb:LeadingKeys": leading_keys}
    for statement in policy["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        if (
            statement["Effect"] == "Allow"
            and any(_matches(a, action) for a in actions)
            and any(_matches(r, resource) for r in resources)
            and _condition_holds(statement.get("Condition", {}), context)
        ):
            return True
    return False


ANALYST = tenants.analyst_policy(TABLE_ARN, BUCKET, ["stmarys", "royal"])
INDEX = f"{TABLE_ARN}/index/{schema.BY_DEVICE}"


@pytest.mark.parametrize(
    ("action", "resource", "leading", "expected"),
    [
        ("dynamodb:Query", INDEX, ["stmarys/holter-7"], True),
        ("dynamodb:Query", INDEX, ["royal/ward-2"], True),
        ("dynamodb:Query", INDEX, ["other/holter-7"], False),
        ("dynamodb:Query", INDEX, ["stmarysx/holter-7"], False),
        ("dynamodb:GetItem", TABLE_ARN, [schema.file_pk(BUCKET, "incoming/royal/w/a.csv")], True),
        ("dynamodb:GetItem", TABLE_ARN, [schema.file_pk(BUCKET, "incoming/other/w/a.csv")], False),
        (
            "dynamodb:GetItem",
            TABLE_ARN,
            [schema.file_pk("other-bucket", "incoming/royal/w")],
            False,
        ),
        (
            "dynamodb:BatchGetItem",
            TABLE_ARN,
            [
                schema.file_pk(BUCKET, "incoming/royal/w/a"),
                schema.file_pk(BUCKET, "incoming/x/w/b"),
            ],
            False,
        ),
        ("dynamodb:Query", TABLE_ARN, [schema.REGISTRY_PK], True),
        ("dynamodb:Query", f"{TABLE_ARN}/index/{schema.BY_ANOMALY_DAY}", ["2026-11-27"], False),
        ("dynamodb:Query", f"{TABLE_ARN}/index/{schema.BY_REJECTED_DAY}", ["2026-11-27"], False),
        ("dynamodb:Scan", TABLE_ARN, [], False),
        ("dynamodb:PutItem", TABLE_ARN, [schema.file_pk(BUCKET, "incoming/royal/w/a")], False),
        ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/incoming/royal/w/a.csv", [], True),
        ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/incoming/other/w/a.csv", [], False),
        ("s3:PutObject", f"arn:aws:s3:::{BUCKET}/incoming/royal/w/a.csv", [], False),
    ],
)
def test_an_analyst_limited_to_some_sites_reads_only_theirs(
    action: str, resource: str, leading: list[str], expected: bool
) -> None:
    assert allowed(ANALYST, action, resource, leading) is expected


def test_policies_refuse_site_names_that_could_widen_them() -> None:
    for bad in ("*", "a/b", "", "../x"):
        with pytest.raises(ValueError):
            tenants.uploader_policy(BUCKET, bad)
        with pytest.raises(ValueError):
            tenants.analyst_policy(TABLE_ARN, BUCKET, [bad])
