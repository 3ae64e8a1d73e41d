"""Layout of PredictionsTable: key names, index names and how each key is built.

The one place for it: the Lambda's store writes by it, the analysts' CLI queries by it, the
local stack creates its table from template.yaml, and a test checks that template.yaml
declares exactly these keys and indexes.

Access patterns (contract 3), each one or more Queries, never a Scan:
1. one file's results            -> table: pk = FILE#<bucket>/<key> (sk = MODEL#<version>)
2. a device's results in a range  -> by_device: device_key = <site>/<device>, at_key BETWEEN
   a site's results in a range    -> the site's devices (registry items, pk = REGISTRY), then
                                     by_device for each, merged by time
3. anomalies in a time range     -> by_anomaly_day: only ANOMALOUS items carry anomaly_day
4. rejected files in a range     -> by_rejected_day: only REJECTED items carry rejected_day
5. export of a time range        -> 2 over every registered device, plus 4 for rejected files
                                     that name no device; full items by BatchGetItem

Write cost: DynamoDB charges one write unit per KB for the table and for every index an item
appears in. A NORMAL file is in the table and by_device only, and the indexes project only
what list views show (INDEX_PROJECTION): 2 write units for a typical file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

PK = "pk"
SK = "sk"
BY_DEVICE = "by_device"
BY_ANOMALY_DAY = "by_anomaly_day"
BY_REJECTED_DAY = "by_rejected_day"

# index name -> (partition key attribute, sort key attribute).
INDEXES: dict[str, tuple[str, str]] = {
    BY_DEVICE: ("device_key", "at_key"),
    BY_ANOMALY_DAY: ("anomaly_day", "at_key"),
    BY_REJECTED_DAY: ("rejected_day", "at_key"),
}
# What every index projects besides the keys: what a list of results shows. Full items (the
# per-window figures, provenance) come from the table itself.
INDEX_PROJECTION = (
    "status",
    "outcome",
    "probability",
    "label",
    "windows",
    "model_version",
    "recorded_at",
    "uploaded_at",
    "site",
    "device",
    "bucket",
    "key",
    "reason_code",
    "reason",
)

# Registry of the sites and devices that have sent files: pk REGISTRY, sk <site>/<device>.
REGISTRY_PK = "REGISTRY"


class Status(StrEnum):
    SCORED = "SCORED"
    REJECTED = "REJECTED"


class Outcome(StrEnum):
    """What an analyst filters on: a scored file is ANOMALOUS or NORMAL, else REJECTED."""

    ANOMALOUS = "ANOMALOUS"
    NORMAL = "NORMAL"
    REJECTED = "REJECTED"


# The attribute that puts an item of this outcome into its sparse index.
OUTCOME_INDEX = {Outcome.ANOMALOUS: BY_ANOMALY_DAY, Outcome.REJECTED: BY_REJECTED_DAY}


def iso_utc(moment: datetime) -> str:
    """Sortable UTC timestamp with milliseconds, e.g. 2026-11-27T03:21:07.123Z."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def file_pk(bucket: str, key: str) -> str:
    # Fits any legal object: 5 + 63 (bucket) + 1 + 1024 (key) bytes, under the 2048 allowed.
    return f"FILE#{bucket}/{key}"


def model_sk(model_version: str) -> str:
    return f"MODEL#{model_version}"


def device_key(site: str, device: str) -> str:
    # Site and device names never hold "/" (scorer.keys.NAME_PART).
    return f"{site}/{device}"


def file_hash(bucket: str, key: str) -> str:
    """A stable, short stand-in for the object: in index keys (a sort key holds at most 1024
    bytes, an S3 key alone up to 1024) and in logs (file names can carry patient data)."""
    return hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:16]


def at_key(at: datetime, bucket: str, key: str) -> str:
    """Sort key of every index: the recording time, then the file's hash, 41 bytes always."""
    return f"{iso_utc(at)}#{file_hash(bucket, key)}"


def day(at: datetime) -> str:
    """The UTC day of a time: the partition of the sparse outcome indexes."""
    return f"{at.astimezone(UTC):%Y-%m-%d}"


def days(since: datetime, until: datetime) -> Iterator[date]:
    """The UTC days a time range touches, newest first (the order analysts read in)."""
    first, last = since.astimezone(UTC).date(), until.astimezone(UTC).date()
    current = last
    while current >= first:
        yield current
        current -= timedelta(days=1)
