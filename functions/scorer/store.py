"""PredictionsTable items (contract 3, layout in scorer.schema) and the conditional write.

One item per (file, model version). The write is conditional on the S3 event's sequencer,
so a redelivered event (same sequencer) never writes twice and an older event arriving
after a newer one (smaller sequencer) never overwrites the newer result. AWS: sequencers
are comparable only for the same key, and ones of different lengths are compared after
right-padding the shorter with zeros; we store that padded form, so DynamoDB's own string
comparison in the condition does the job.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from aws_lambda_powertools import Logger
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from scorer import quality, schema
from scorer.budget import DYNAMODB_ATTEMPT_S, Budget, retry
from scorer.config import Settings
from scorer.errors import RejectedFile, error_code, from_boto
from scorer.uploads import FileFacts, FileRef
from scorer.window_results import Summary, WindowResults

logger = Logger(child=True)

SEQUENCER_WIDTH = 32
PROBABILITY_DIGITS = 6
CONDITION = (
    "attribute_not_exists(pk) OR attribute_not_exists(s3_sequencer_sortable) "
    "OR s3_sequencer_sortable < :seq"
)
CONDITION_NO_SEQUENCER = "attribute_not_exists(pk)"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def sortable_sequencer(sequencer: str) -> str:
    """Right-pad with zeros (AWS's rule for sequencers of different lengths), upper-case."""
    return sequencer.strip().upper().ljust(SEQUENCER_WIDTH, "0")


def _decimal(value: float, digits: int = PROBABILITY_DIGITS) -> Decimal:
    return Decimal(str(round(float(value), digits)))


def _base_item(
    ref: FileRef,
    facts: FileFacts,
    outcome: schema.Outcome,
    settings: Settings,
    scored_at: datetime,
) -> dict[str, Any]:
    at = facts.recorded_at or ref.uploaded_at
    item: dict[str, Any] = {
        schema.PK: schema.file_pk(ref.bucket, ref.key),
        schema.SK: schema.model_sk(settings.model_version),
        "outcome": outcome.value,
        "at_key": schema.at_key(at, ref.bucket, ref.key),
        "recorded_at": schema.iso_utc(at),
        "recorded_at_source": "file" if facts.recorded_at else "upload",
        "uploaded_at": schema.iso_utc(ref.uploaded_at),
        "scored_at": schema.iso_utc(scored_at),
        "model_version": settings.model_version,
        "endpoint": settings.endpoint_name,
        "bucket": ref.bucket,
        "key": ref.key,
        "size_bytes": ref.size_bytes,
    }
    optional = {
        "site": facts.site,
        "device": facts.device,
        "patient_ref": facts.patient_ref,
        "record_id": facts.record_id,
        "format": facts.format,
        "version_id": ref.version_id,
        "etag": ref.etag,
    }
    item.update({k: v for k, v in optional.items() if v})
    if facts.site and facts.device:
        item["device_key"] = schema.device_key(facts.site, facts.device)
    if outcome in schema.OUTCOME_INDEX:  # sparse indexes: only their outcome is in them
        day_attribute = schema.INDEXES[schema.OUTCOME_INDEX[outcome]][0]
        item[day_attribute] = schema.day(at)
    if ref.sequencer:  # once, in the form the conditional write compares (the CLI shows it)
        item["s3_sequencer_sortable"] = sortable_sequencer(ref.sequencer)
    return item


# Windows kept in the item itself; a longer file's go to an S3 object beside the table
# (scorer.window_results), the item naming it: 60 windows (10 min) keep a normal item small.
INLINE_WINDOWS = 60


def scored_item(
    ref: FileRef,
    facts: FileFacts,
    results: WindowResults,
    summary: Summary,
    settings: Settings,
    scored_at: datetime,
    windows_uri: str | None = None,
) -> dict[str, Any]:
    """SCORED: the file's probability is the maximum over its usable windows.

    Unusable windows are stored with no probability (NULL) and their quality code. With
    ``windows_uri`` (more windows than INLINE_WINDOWS), the per-window arrays are in that
    object and the item holds the counts and the file's figures only.
    """
    usable = results.usable
    if not usable.any():
        raise ValueError("a SCORED item needs a usable window")
    probability = float(np.nanmax(results.probability[usable]))
    if summary.threshold is None:
        raise ValueError("a SCORED item needs the model's threshold")
    anomalous = probability > summary.threshold
    outcome = schema.Outcome.ANOMALOUS if anomalous else schema.Outcome.NORMAL
    item = _base_item(ref, facts, outcome, settings, scored_at)
    item.update(
        status=schema.Status.SCORED.value,
        label="anomalous" if anomalous else "normal",
        probability=_decimal(probability),
        windows=len(results),
        windows_usable=int(usable.sum()),
        threshold=_decimal(summary.threshold),
        sampling_rate_hz=_decimal(summary.sampling_rate_hz, 3),
        sampling_rate_assumed=summary.rate_assumed,
        duration_s=_decimal(summary.duration_s, 3),
    )
    if windows_uri is not None:
        item["windows_s3_uri"] = windows_uri
    else:
        item["window_probabilities"] = [
            _decimal(p) if ok else None for p, ok in zip(results.probability, usable, strict=True)
        ]
        item["window_start_s"] = [_decimal(t, 3) for t in results.start_s]
        if not usable.all():
            item["window_quality"] = [str(q) for q in results.quality]
    if not usable.all():  # what is wrong with the others, in words
        item["quality_note"] = quality.unusable(results.verdicts())[:1000]
    if summary.leads_found is not None:
        item["leads_found"] = summary.leads_found
    if summary.leads_derived:
        item["leads_derived"] = summary.leads_derived
    return item


def rejected_item(
    ref: FileRef,
    facts: FileFacts,
    rejection: RejectedFile,
    settings: Settings,
    scored_at: datetime,
) -> dict[str, Any]:
    """REJECTED: the reason, in words the uploader can act on, and its short code."""
    item = _base_item(ref, facts, schema.Outcome.REJECTED, settings, scored_at)
    item.update(
        status=schema.Status.REJECTED.value,
        reason=rejection.reason[:1000],
        reason_code=rejection.code,
    )
    return item


def register_device(
    client: Any,
    table: str,
    site: str,
    device: str,
    seen_at: datetime,
    budget: Budget,
    known: set[tuple[str, str]],
) -> None:
    """Add (site, device) to the registry the CLI lists sites and devices from.

    Written before the file's own item, so every device of an item is listed (exports of a
    time range go device by device). ``known`` holds the pairs this process has registered
    already (the handler keeps it per container): one write per device and container, not
    one per file.
    """
    if (site, device) in known:
        return
    item = {
        schema.PK: schema.REGISTRY_PK,
        schema.SK: schema.device_key(site, device),
        "site": site,
        "device": device,
        "first_seen": schema.iso_utc(seen_at),
    }
    request = {
        "TableName": table,
        "Item": {k: _serializer.serialize(v) for k, v in item.items()},
        "ConditionExpression": CONDITION_NO_SEQUENCER,
    }
    _conditional_put(client, request, table, budget)
    known.add((site, device))


def get_item(client: Any, table: str, pk: str, sk: str, budget: Budget) -> dict[str, Any] | None:
    """One item, strongly consistent (a decision depends on it), or None."""

    def once() -> dict[str, Any] | None:
        try:
            found = client.get_item(
                TableName=table,
                Key={schema.PK: {"S": pk}, schema.SK: {"S": sk}},
                ConsistentRead=True,
            )
        except Exception as e:
            mapped = from_boto(e, f"reading {table}")
            if mapped is None:
                raise
            raise mapped from e
        raw = found.get("Item")
        return None if raw is None else {k: _deserializer.deserialize(v) for k, v in raw.items()}

    return retry(once, budget, DYNAMODB_ATTEMPT_S)


def put_item(
    client: Any,
    table: str,
    item: dict[str, Any],
    budget: Budget,
    on_retry: Any = None,
) -> bool:
    """Write unless the table already holds this or a newer event's result.

    Returns True when written, False when the condition kept an item from the same or a
    newer event. Throttling and 5xx are retried within the budget (TransientError after,
    also when not even one attempt fits in the time left).
    """
    request: dict[str, Any] = {
        "TableName": table,
        "Item": {k: _serializer.serialize(v) for k, v in item.items()},
    }
    if "s3_sequencer_sortable" in item:
        request["ConditionExpression"] = CONDITION
        request["ExpressionAttributeValues"] = {":seq": {"S": item["s3_sequencer_sortable"]}}
    else:
        request["ConditionExpression"] = CONDITION_NO_SEQUENCER

    return _conditional_put(client, request, table, budget, on_retry)


def _conditional_put(
    client: Any, request: dict[str, Any], table: str, budget: Budget, on_retry: Any = None
) -> bool:
    """One conditional PutItem with retries: True when written, False when the condition
    kept the item that is there."""

    def once() -> bool:
        try:
            client.put_item(**request)
        except Exception as e:
            if isinstance(e, ClientError) and error_code(e)[0] == "ConditionalCheckFailedException":
                return False
            mapped = from_boto(e, f"writing to {table}")
            if mapped is None:
                raise
            raise mapped from e
        return True

    # Each attempt starts only when its worst case (connect + read timeout) still fits.
    return retry(once, budget, DYNAMODB_ATTEMPT_S, on_retry)
