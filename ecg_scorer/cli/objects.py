"""The ingest bucket's objects as the CLI meets them: where a name the user typed points,
whether an object exists, listings with version, size and ETag, and counts by upload time.

Listings use boto3's paginators: ``list_object_versions`` (latest versions only) in a
versioned bucket, so each object's version id is known, else ``list_objects_v2``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from scorer import keys, schema

from ecg_scorer.cli.context import Context


@dataclass(frozen=True)
class StoredObject:
    """One object of the bucket, as a listing reports it."""

    key: str
    version_id: str | None
    size: int
    etag: str | None
    last_modified: datetime


def split_s3_uri(text: str) -> tuple[str, str]:
    """``s3://bucket/key`` or ``bucket/key`` -> (bucket, key)."""
    rest = text[len("s3://") :] if text.startswith("s3://") else text
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ValueError(
            f"not a file location: {text!r} (expected s3://bucket/key, bucket/key or "
            f"{keys.INCOMING}<site>/<device>/<file>)"
        )
    return bucket, key


def locate(ctx: Context, text: str) -> tuple[str, str]:
    """Where a file the user named is: a key below ``incoming/`` is in the configured
    bucket; anything else is ``s3://bucket/key`` or ``bucket/key``."""
    if text.startswith(keys.INCOMING):
        return ctx.name("bucket"), text
    return split_s3_uri(text)


def head(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's HEAD, or None when there is no such object."""
    try:
        return dict(s3.head_object(Bucket=bucket, Key=key))
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise


def why_no_result(s3: Any, bucket: str, key: str) -> str:
    """The table has no result for the file: was it never uploaded, or not scored yet?"""
    where = f"s3://{bucket}/{key}"
    try:
        found = head(s3, bucket, key)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "?")
        return f"no result for {where}, and the bucket cannot be asked whether it exists ({code})"
    if found is None:
        return f"no such object: {where} (no result either; check the bucket and key)"
    uploaded = found.get("LastModified")
    when = f" at {uploaded.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" if uploaded else ""
    return (
        f"{where} was uploaded{when}, not scored yet: it is queued, being retried, or in the "
        f"dead-letter queue (logs name it {schema.file_hash(bucket, key)}; `ecg-scorer "
        "redrive` replays the DLQ once the cause is fixed)"
    )


def versioned(s3: Any, bucket: str) -> bool:
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    return status in {"Enabled", "Suspended"}


def listing(
    s3: Any, bucket: str, prefix: str, start_after: str | None = None
) -> Iterator[StoredObject]:
    """Every current object under ``prefix`` in key order, after ``start_after`` if given."""
    if versioned(s3, bucket):
        request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if start_after:
            request["KeyMarker"] = start_after
        for page in s3.get_paginator("list_object_versions").paginate(**request):
            for version in page.get("Versions", []):
                if version.get("IsLatest"):  # a delete marker as latest: no current object
                    yield _stored(version, version.get("VersionId"))
        return
    request = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        request["StartAfter"] = start_after
    for page in s3.get_paginator("list_objects_v2").paginate(**request):
        for obj in page.get("Contents", []):
            yield _stored(obj, None)


def _stored(raw: dict[str, Any], version_id: str | None) -> StoredObject:
    return StoredObject(
        key=raw["Key"],
        version_id=version_id if version_id and version_id != "null" else None,
        size=int(raw.get("Size", 0)),
        etag=raw.get("ETag"),
        last_modified=raw["LastModified"],
    )


def count_uploaded(
    s3: Any, bucket: str, prefix: str, since: datetime, until: datetime, cap: int
) -> tuple[int, bool]:
    """How many objects under ``prefix`` were uploaded in [since, until), after listing at
    most ``cap`` objects; True when the cap was reached (the count is then a lower bound)."""
    count = 0
    for n, obj in enumerate(listing(s3, bucket, prefix)):
        if n >= cap:
            return count, True
        count += since <= obj.last_modified < until
    return count, False


def keys_with_hash(s3: Any, bucket: str, prefix: str, wanted: str) -> list[str]:
    """The keys under ``prefix`` whose ``schema.file_hash`` is ``wanted``."""
    return [
        obj.key
        for obj in listing(s3, bucket, prefix)
        if schema.file_hash(bucket, obj.key) == wanted
    ]
