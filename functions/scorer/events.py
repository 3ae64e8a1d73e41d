"""SQS messages -> the uploaded objects to score, with Powertools' SQS and S3 event classes.

A message whose body is no S3 notification, or that holds a malformed record, is that
message's problem alone: the other messages of the batch go ahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, SQSEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from scorer import keys
from scorer.uploads import FileRef


class NotAnS3Event(ValueError):
    """The message body is not an S3 event notification (or a record in it is malformed)."""


@dataclass
class Message:
    """One SQS message: the files it names, and whether something in it could not be read."""

    message_id: str
    refs: list[FileRef] = field(default_factory=list)
    problem: str | None = None  # a body or record we could not read: the message goes back


def messages(event: dict[str, Any]) -> list[Message]:
    """Every SQS message of the batch; never raises for one bad message."""
    out = []
    raw = event.get("Records") if isinstance(event, dict) else None
    for record in SQSEvent({"Records": raw if isinstance(raw, list) else []}).records:
        if not isinstance(record.raw_event, dict) or not isinstance(record.get("messageId"), str):
            continue  # Lambda never sends this; without an id it cannot even be retried
        message = Message(record.message_id)
        try:
            message.refs, bad = files_of(record)
            if bad:
                # The good records are still scored (their writes are idempotent); the message
                # goes back and, after 5 receives, to the DLQ where a person can look at it.
                message.problem = f"{bad} malformed S3 record(s)"
        except NotAnS3Event as problem:
            message.problem = str(problem)
        except Exception as error:  # anything else odd in one body stays with its message
            message.problem = f"unreadable message ({type(error).__name__})"
        out.append(message)
    return out


def files_of(record: SQSRecord) -> tuple[list[FileRef], int]:
    """The objects under ``incoming/`` that one message reports as created, and how many of
    its S3 records were malformed."""
    try:
        doc = record.json_body
    except (TypeError, ValueError) as e:
        raise NotAnS3Event("body is not JSON") from e
    if not isinstance(doc, dict):
        raise NotAnS3Event("body is not a JSON object")
    if doc.get("Event") == "s3:TestEvent":  # sent once when the notification is configured
        return [], 0
    if not isinstance(doc.get("Records"), list):
        raise NotAnS3Event("no Records")
    refs = []
    bad = 0
    for s3_record in S3Event(doc).records:
        try:
            ref = _file_ref(s3_record)
        except (KeyError, TypeError, ValueError, AttributeError):
            bad += 1
            continue
        if ref is not None:
            refs.append(ref)
    return refs, bad


def _file_ref(record: Any) -> FileRef | None:
    if not isinstance(record.raw_event, dict):
        raise TypeError("record is not an object")
    if record.event_source != "aws:s3" or not str(record.event_name).startswith("ObjectCreated:"):
        return None
    obj = record.s3.get_object
    raw_key = obj.key
    if not isinstance(raw_key, str):
        raise TypeError("key is not a string")
    key = unquote_plus(raw_key)  # keys arrive URL-encoded, spaces as '+'
    if not keys.is_incoming(key):
        return None
    bucket = record.s3.bucket.name
    if not isinstance(bucket, str) or not bucket:
        raise TypeError("bucket is not a string")
    return FileRef(
        bucket=bucket,
        key=key,
        version_id=_text(obj.get("versionId")),
        etag=_text(obj.get("eTag")),
        size_bytes=max(0, int(obj.get("size") or 0)),
        sequencer=_text(obj.get("sequencer")),
        uploaded_at=parse_time(record.get("eventTime")) or datetime.now(UTC),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


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
