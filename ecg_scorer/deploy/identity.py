"""What names a model: config.json's model_version, and one version for one archive.

The model_version gives the archive's file name, its S3 prefix and its tags, and must always
mean one archive (one SHA-256). The rule matters because results are stored per file and
model version (DESIGN.md, contract 3): new weights under an old version would be skipped as
already scored, and old and new results would mix under one name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_scorer.deploy.aws import Aws, client_error, error_code, tag_dict

TAG_MANAGED_BY = "ecg-scorer:managed-by"
TAG_ENDPOINT = "ecg-scorer:endpoint"
TAG_SHA = "ecg-scorer:archive-sha256"
TAG_VERSION = "ecg-scorer:model-version"
MANAGED_BY = "deploy_model.py"

ARCHIVE_DIR = Path("sagemaker_models")
PREFIX_ROOT = "ecg-scorer/models"
# A model_version names a file, an S3 prefix and a tag value: characters all three take.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Model names deploy gives (rollout.resource_names): <endpoint>-m-<12 hex>.
_MODEL_NAME = re.compile(r".+-m-[0-9a-f]{12}")


def version_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a model_version, or None when it can."""
    if isinstance(value, str) and _VERSION.fullmatch(value):
        return None
    return (
        f"model_version {value!r} is not 1-100 letters, digits, '.', '_' or '-' "
        "(starting with a letter or digit)"
    )


def archive_path(version: str) -> Path:
    """Where package writes the archive of ``version`` by default."""
    return ARCHIVE_DIR / f"{version}_sagemaker.tar.gz"


def s3_prefix(version: str) -> str:
    """The default S3 prefix of ``version``'s archives (each under <prefix>/<sha256>/)."""
    return f"{PREFIX_ROOT}/{version}"


def s3_key(prefix: str, sha: str) -> str:
    return f"{prefix.strip('/')}/{sha}/model.tar.gz"


def tags(endpoint: str, version: str, sha: str | None = None) -> list[dict[str, str]]:
    """The tags deploy puts on what it creates (the archive's hash where it names one)."""
    result = [
        {"Key": TAG_MANAGED_BY, "Value": MANAGED_BY},
        {"Key": TAG_ENDPOINT, "Value": endpoint},
        {"Key": TAG_VERSION, "Value": version},
    ]
    if sha:
        result.append({"Key": TAG_SHA, "Value": sha})
    return result


def managed(tag_values: dict[str, str], endpoint: str) -> bool:
    """Whether deploy created the resource with these tags for ``endpoint``."""
    return tag_values.get(TAG_MANAGED_BY) == MANAGED_BY and tag_values.get(TAG_ENDPOINT) == endpoint


@dataclass
class Conflicts:
    """Archives already uploaded or deployed under one model_version with another SHA-256."""

    found: list[tuple[str, str]] = field(default_factory=list)  # (where, its sha256)
    unread: list[str] = field(default_factory=list)  # what could not be looked at, and why


def version_conflicts(aws: Aws, version: str, sha: str, bucket: str, prefix: str) -> Conflicts:
    """Look for ``version`` with an archive other than ``sha``: among the models deploy
    created in the region (by tag) and the archives under ``prefix`` in ``bucket``."""
    result = Conflicts()
    sm = aws.client("sagemaker")
    for page in sm.get_paginator("list_models").paginate():
        for item in page.get("Models", []):
            if not _MODEL_NAME.fullmatch(item["ModelName"]):
                continue  # not named by deploy: not ours, and one ListTags call saved
            found = tag_dict(sm, item["ModelArn"])
            ours = found.get(TAG_MANAGED_BY) == MANAGED_BY and found.get(TAG_VERSION) == version
            if ours and found.get(TAG_SHA, sha) != sha:
                result.found.append((f"model {item['ModelName']}", found[TAG_SHA]))
    s3 = aws.client("s3")
    key_of = re.compile(re.escape(prefix.strip("/")) + r"/([0-9a-f]{64})/model\.tar\.gz")
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix.strip("/") + "/"
        ):
            for item in page.get("Contents", []):
                match = key_of.fullmatch(item["Key"])
                if not match or match[1] == sha:
                    continue
                object_tags = s3.get_object_tagging(Bucket=bucket, Key=item["Key"])["TagSet"]
                if {t["Key"]: t["Value"] for t in object_tags}.get(TAG_VERSION) == version:
                    result.found.append((f"s3://{bucket}/{item['Key']}", match[1]))
    except client_error() as exc:
        code = error_code(exc)
        if code not in ("NoSuchBucket", "404"):  # no bucket yet: nothing uploaded
            result.unread.append(f"s3://{bucket}/{prefix.strip('/')}/ ({code})")
    return result


def describe_conflicts(version: str, sha: str, conflicts: Conflicts) -> str:
    """Why deploy refuses, and what to do instead."""
    lines = [f"model_version {version} is already uploaded or deployed with another archive:"]
    lines += [f"  {where}: archive sha256 {other[:16]}..." for where, other in conflicts.found]
    lines.append(
        f"this archive's sha256 is {sha[:16]}...; one model_version must always mean one "
        "archive, because results are stored per file and model version (new weights under "
        "an old version would be skipped as already scored). Give the new model its own "
        "model_version in config.json (retrain, or edit it and package again), or deploy "
        f"the archive that was built as {version}."
    )
    return "\n".join(lines)
