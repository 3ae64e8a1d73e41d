"""The uploaded object being scored and what is learnt about it: the types every stage shares.

The ground floor of the package: readers, prepare, endpoint and store import these; this
module imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class FileRef:
    """One uploaded object, as the S3 event names it."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size_bytes: int
    sequencer: str | None
    uploaded_at: datetime


@dataclass
class FileFacts:
    """What is known about the file when its item is written (more for SCORED than REJECTED)."""

    site: str | None = None
    device: str | None = None
    format: str | None = None
    patient_ref: str | None = None
    record_id: str | None = None
    recorded_at: datetime | None = None  # from the file's metadata, when given
