"""The ingest bucket's objects as the Lambda reads them: bytes of one version, and its metadata.

Only reads: nothing in S3 is ever modified or deleted by the pipeline.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from scorer import readers
from scorer.errors import RejectedFile, error_code, from_boto
from scorer.uploads import FileRef

GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404"})


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
        if isinstance(e, ClientError) and error_code(e)[0] in GONE_CODES:
            raise RejectedFile(
                "the object no longer exists (deleted before it could be scored)", "gone"
            ) from e
        mapped = from_boto(e, "reading from S3")
        if mapped is None:
            raise
        raise mapped from e
    readers.check_size(len(data), max_bytes)
    return data, user_metadata(response.get("Metadata") or {})


def user_metadata(raw: dict[str, str]) -> dict[str, str]:
    """S3 user metadata (x-amz-meta-*), keys normalised like the files' metadata keys."""
    out = {}
    for key, value in raw.items():
        norm = readers.META_ALIASES.get(key.lower().replace("-", "_"))
        if norm and value.strip():
            out[norm] = value.strip()
    return out
