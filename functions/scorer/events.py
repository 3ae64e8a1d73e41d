"""SQS messages -> what to do: uploaded objects to score (S3 event notifications, read with
Powertools' SQS and S3 event classes), and the orders the pipeline sends itself (a chunk of a
long recording, a second look at a WFDB record waiting for its parts).

A message that is none of these, or holds a malformed record, is that message's problem
alone: the other messages of the batch go ahead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event, SQSEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from scorer import keys
from scorer.fanout import ORDER, ChunkOrder
from scorer.uploads import FileRef, parse_time


class NotAnS3Event(ValueError):
    """The message body is not an S3 event notification (or a record in it is malformed)."""


RECHECK = "ecg_scorer_recheck"  # the body's marker of a second look


@dataclass(frozen=True)
class Recheck:
    """Look again at an upload that was waiting (a WFDB part whose record was incomplete)."""

    ref: FileRef
    attempt: int  # how many looks came before this one

    def body(self) -> str:
        ref = self.ref
        return json.dumps(
            {
                RECHECK: 1,
                "bucket": ref.bucket,
                "key": ref.key,
                "version_id": ref.version_id,
                "size": ref.size_bytes,
                "uploaded_at": ref.uploaded_at.isoformat(),
                "attempt": self.attempt,
            }
        )

    @classmethod
    def from_body(cls, doc: dict[str, Any]) -> Recheck:
        ref = FileRef(
            str(doc["bucket"]),
            str(doc["key"]),
            doc.get("version_id"),
            None,
            int(doc["size"]),
            None,
            parse_time(doc["uploaded_at"]) or datetime.now(UTC),
        )
        if not keys.is_incoming(ref.key):
            raise ValueError("not an incoming key")
        return cls(ref, int(doc["attempt"]))


@dataclass
class Message:
    """One SQS message: what it asks for, and whether something in it could not be read."""

    message_id: str
    refs: list[FileRef] = field(default_factory=list)
    chunks: list[ChunkOrder] = field(default_factory=list)
    rechecks: list[Recheck] = field(default_factory=list)
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
            if _order(record, message):
                out.append(message)
                continue
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


def _order(record: SQSRecord, message: Message) -> bool:
    """Read one of the pipeline's own orders into ``message``; False if it is none."""
    try:
        doc = record.json_body
    except (TypeError, ValueError):
        return False
    if not isinstance(doc, dict):
        return False
    try:
        if ORDER in doc:
            message.chunks.append(ChunkOrder.from_body(doc))
        elif RECHECK in doc:
            message.rechecks.append(Recheck.from_body(doc))
        else:
            return False
    except (KeyError, TypeError, ValueError, AttributeError):
        message.problem = "malformed order of the pipeline's own"
    return True


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
