"""Layout of PredictionsTable: key names, index names and how each key is built.

The one place for it: the Lambda's store writes by it, the analysts' CLI queries by it, the
local stack creates its table from template.yaml, and a test checks that template.yaml
declares exactly these keys and indexes.

Access patterns (contract 3), each one Query:
1. one file's results           -> table:         pk = FILE#<bucket>/<key>   (sk = MODEL#<version>)
2. a device's / a site's results -> by_device / by_site: device_key or site, at_key BETWEEN
3. anomalies in a time range     -> by_outcome_day: ANOMALOUS#<day> per day, sorted by probability
4. rejected files in a range     -> by_outcome_day: REJECTED#<day> per day
5. export of a time range        -> by_outcome_day: every outcome, every day
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

PK = "pk"
SK = "sk"
BY_DEVICE = "by_device"
BY_SITE = "by_site"
BY_OUTCOME_DAY = "by_outcome_day"

# index name -> (partition key attribute, sort key attribute); all project every attribute.
INDEXES: dict[str, tuple[str, str]] = {
    BY_DEVICE: ("device_key", "at_key"),
    BY_SITE: ("site", "at_key"),
    BY_OUTCOME_DAY: ("outcome_day", "at_key"),
}


class Status(StrEnum):
    SCORED = "SCORED"
    REJECTED = "REJECTED"


class Outcome(StrEnum):
    """What an analyst filters on: a scored file is ANOMALOUS or NORMAL, else REJECTED."""

    ANOMALOUS = "ANOMALOUS"
    NORMAL = "NORMAL"
    REJECTED = "REJECTED"


def iso_utc(moment: datetime) -> str:
    """Sortable UTC timestamp with milliseconds, e.g. 2026-11-27T03:21:07.123Z."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def file_pk(bucket: str, key: str) -> str:
    return f"FILE#{bucket}/{key}"


def model_sk(model_version: str) -> str:
    return f"MODEL#{model_version}"


def device_key(site: str, device: str) -> str:
    # Site and device come from S3 key segments, which never hold "/".
    return f"{site}/{device}"


def at_key(at: datetime, bucket: str, key: str) -> str:
    """Sort key of every index: the recording time, then the file, so equal times stay unique."""
    return f"{iso_utc(at)}#{bucket}/{key}"


def outcome_day(outcome: Outcome, at: datetime) -> str:
    return f"{outcome.value}#{at.astimezone(UTC):%Y-%m-%d}"


def days(since: datetime, until: datetime) -> Iterator[date]:
    """The UTC days a time range touches, newest first (the order analysts read in)."""
    first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    day = last
    while day >= first:
        yield day
        day -= timedelta(days=1)
