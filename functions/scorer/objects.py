"""The bucket's objects as the Lambda uses them: read an upload (whole or a byte range), look
one up, and keep per-window results beside the table.

An upload is never modified or deleted; the pipeline writes only under ``results/`` and
``work/`` (scorer.keys), which no notification watches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from scorer import read_checks, readers
from scorer.budget import S3_READ_WORST_S, Budget
from scorer.errors import RejectedFile, TransientError, error_code, from_boto
from scorer.uploads import FileRef

GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})


@dataclass(frozen=True)
class Head:
    """What S3 says of one object without reading it."""

    key: str
    version_id: str | None
    size: int
    etag: str
    modified: datetime
    metadata: dict[str, str]


def _mapped(e: Exception, doing: str) -> Exception:
    mapped = from_boto(e, doing)
    return e if mapped is None else mapped


def _gone(e: Exception) -> bool:
    return isinstance(e, ClientError) and error_code(e)[0] in GONE_CODES


def fetch(s3: Any, ref: FileRef, max_bytes: int) -> tuple[bytes, dict[str, str]]:
    """The object's bytes (the version named by the event) and its user metadata."""
    request = {"Bucket": ref.bucket, "Key": ref.key}
    if ref.version_id:
        request["VersionId"] = ref.version_id
    try:
        response = s3.get_object(**request)
        try:
            # Checked before reading: the event's size may be absent or stale.
            readers.check_size(int(response.get("ContentLength", 0)), max_bytes)
            data = response["Body"].read(max_bytes + 1)
        finally:
            response["Body"].close()
    except Exception as e:
        if _gone(e):
            raise RejectedFile(
                "the object no longer exists (deleted before it could be scored)", "gone"
            ) from e
        mapped = _mapped(e, "reading from S3")
        if mapped is e:
            raise
        raise mapped from e
    readers.check_size(len(data), max_bytes)
    return data, user_metadata(response.get("Metadata") or {})


def read_range(
    s3: Any, bucket: str, key: str, version_id: str | None, first: int, end: int, budget: Budget
) -> bytes:
    """Bytes ``[first, end)`` of one version of an object (an HTTP Range GET)."""
    if end <= first:
        return b""
    if not budget.allows(S3_READ_WORST_S):
        raise TransientError("no time left in this invocation to read from S3")
    request = {"Bucket": bucket, "Key": key, "Range": f"bytes={first}-{end - 1}"}
    if version_id:
        request["VersionId"] = version_id
    try:
        response = s3.get_object(**request)
        try:
            data: bytes = response["Body"].read(end - first + 1)
        finally:
            response["Body"].close()
    except Exception as e:
        if _gone(e):
            raise RejectedFile(
                "a part of the recording no longer exists (deleted before it could be scored)",
                "gone",
            ) from e
        mapped = _mapped(e, "reading from S3")
        if mapped is e:
            raise
        raise mapped from e
    if len(data) != end - first:
        raise RejectedFile(
            "a part of the recording is shorter than its header says; upload it again",
            "truncated",
        )
    return data


def head(s3: Any, bucket: str, key: str, budget: Budget) -> Head | None:
    """The object's latest version as S3 describes it, or None when there is none."""
    if not budget.allows(S3_READ_WORST_S):
        raise TransientError("no time left in this invocation to read from S3")
    try:
        response = s3.head_object(Bucket=bucket, Key=key)
    except Exception as e:
        if _gone(e):
            return None
        mapped = _mapped(e, "looking up an object in S3")
        if mapped is e:
            raise
        raise mapped from e
    modified = response.get("LastModified") or datetime.now(UTC)
    return Head(
        key=key,
        version_id=response.get("VersionId") or None,
        size=int(response.get("ContentLength", 0)),
        etag=str(response.get("ETag", "")).strip('"'),
        modified=modified if modified.tzinfo else modified.replace(tzinfo=UTC),
        metadata=user_metadata(response.get("Metadata") or {}),
    )


def keys_under(s3: Any, bucket: str, prefix: str, suffix: str, limit: int = 1000) -> list[str]:
    """Up to ``limit`` keys directly under ``prefix`` ending in ``suffix`` (one folder)."""
    found: list[str] = []
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            found += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(suffix)]
            if len(found) >= limit:
                break
    except Exception as e:
        mapped = _mapped(e, "listing S3")
        if mapped is e:
            raise
        raise mapped from e
    return found[:limit]


def put(s3: Any, bucket: str, key: str, body: bytes, budget: Budget) -> None:
    """Write one object the pipeline owns (results/, work/); never an upload."""
    if not budget.allows(S3_READ_WORST_S):
        raise TransientError("no time left in this invocation to write to S3")
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    except Exception as e:
        mapped = _mapped(e, "writing to S3")
        if mapped is e:
            raise
        raise mapped from e


def get_owned(s3: Any, bucket: str, key: str, budget: Budget) -> bytes:
    """An object the pipeline wrote (a chunk's results): missing is our fault, not a file's."""
    if not budget.allows(S3_READ_WORST_S):
        raise TransientError("no time left in this invocation to read from S3")
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
        try:
            data: bytes = response["Body"].read()
        finally:
            response["Body"].close()
    except Exception as e:
        mapped = _mapped(e, "reading a chunk's results from S3")
        if mapped is e:
            raise
        raise mapped from e
    return data


def user_metadata(raw: dict[str, str]) -> dict[str, str]:
    """S3 user metadata (x-amz-meta-*), keys normalised like the files' metadata keys."""
    out = {}
    for key, value in raw.items():
        norm = read_checks.META_ALIASES.get(key.lower().replace("-", "_"))
        if norm and value.strip():
            out[norm] = value.strip()
    return out
