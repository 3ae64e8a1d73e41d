"""The uploaded object being scored and what is learnt about it: the types every stage shares,
and the one rule for the times they carry.

The ground floor of the package: readers, prepare, endpoint and store import these; this
module imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


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


EARLIEST_YEAR, LATEST_YEAR = 1900, 2100


def parse_time(text: Any) -> datetime | None:
    """An ISO 8601 time between 1900 and 2100, UTC when it names no zone; None otherwise.

    The range check happens in UTC: ``9999-12-31T23:59:59-01:00`` parses but cannot be
    converted (OverflowError), and must never reach the item's keys.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        in_utc = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return in_utc if EARLIEST_YEAR <= in_utc.year <= LATEST_YEAR else None
