"""Long recordings scored as one file: chunk orders through the queue, each chunk scored by
whichever invocation receives it, and the file's item written when the last chunk is done.

A recording read by byte range (EDF/BDF, WFDB) that is longer than one chunk, or larger than
MAX_FILE_BYTES, is not read by the invocation its upload event reaches. That one reads the
header, cuts the recording into chunks of at most CHUNK_WINDOWS windows and CHUNK_BYTES of
source (prepare.chunks: each chunk cuts exactly the windows a whole-file read would), records
the job in the table (the file's pk, sk ``JOB#<model version>``) and sends one order per
chunk to the scoring queue. Each chunk is read by Range GETs, prepared, checked and scored
like any file (its windows share endpoint calls with the rest of its batch), its per-window
results written to S3 (``work/chunks/...``), and the job's set of done chunks updated
atomically; the update that completes the set gathers the chunks' results, writes the file's
per-window arrays (``results/...``) and its item, with the conditional write of any file.

- Chunks retry on their own (each is a message); one that keeps failing goes to the DLQ like
  any message, and the file has no item until it is redriven: never a partial result.
- A re-upload has a newer signature: its job replaces the older one, whose remaining chunk
  orders find another signature and stop.
- A chunk the file's own content breaks (a part cut short, infinite values) REJECTS the
  file: the reason is kept on the job and written when the job completes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from scorer import keys, objects, quality, schema, store
from scorer.budget import DYNAMODB_ATTEMPT_S, Budget, retry
from scorer.config import Settings
from scorer.errors import RejectedFile, SystemFault, TransientError, error_code, from_boto
from scorer.prepare import Span, chunks
from scorer.records import Opened, Part
from scorer.uploads import FileFacts, FileRef, parse_time
from scorer.window_results import Summary, WindowResults

logger = Logger(child=True)

CHUNK_WINDOWS = 360  # one hour of 10-s windows per chunk order
CHUNK_BYTES = 48 * 2**20  # of source bytes per chunk (a 12-lead 1000 Hz hour is 86 MB)
JOB_DAYS = 14  # a job item (and its chunks in work/) is kept this long
ORDER = "ecg_scorer_chunk"  # the message body's marker
SEND_BATCH = 10  # SendMessageBatch's limit
_deserializer = TypeDeserializer()


def is_long(opened: Opened, settings: Settings) -> bool:
    """Too long or too large to read in the invocation that opened it."""
    window_s = settings.window_samples / settings.model_sampling_rate_hz
    size = sum(p.size for p in opened.parts.values())
    return opened.duration_s > CHUNK_WINDOWS * window_s or size > settings.max_file_bytes


@dataclass(frozen=True)
class ChunkOrder:
    """One chunk of a long recording: what its message says."""

    ref: FileRef  # the file (its sequencer is the recording's signature)
    facts: FileFacts
    format: str
    header: str  # the part holding the header (a WFDB .hea, the EDF file)
    parts: dict[str, Part]
    index: int
    count: int
    read: tuple[int, int]  # samples to read, whole frames
    span: Span

    def body(self) -> str:
        ref, facts = self.ref, self.facts
        return json.dumps(
            {
                ORDER: 1,
                "file": {
                    "bucket": ref.bucket,
                    "key": ref.key,
                    "version_id": ref.version_id,
                    "etag": ref.etag,
                    "size": ref.size_bytes,
                    "sequencer": ref.sequencer,
                    "uploaded_at": ref.uploaded_at.isoformat(),
                },
                "facts": {
                    k: (v.isoformat() if isinstance(v, datetime) else v)
                    for k, v in asdict(facts).items()
                },
                "format": self.format,
                "header": self.header,
                "parts": {name: p.as_dict() for name, p in self.parts.items()},
                "chunk": [self.index, self.count],
                "read": list(self.read),
                "span": [
                    self.span.first,
                    self.span.total,
                    self.span.windows.start,
                    self.span.windows.stop,
                    self.span.last,
                ],
            }
        )

    @classmethod
    def from_body(cls, doc: Mapping[str, Any]) -> ChunkOrder:
        """An order from a message body (KeyError/TypeError/ValueError when malformed)."""
        f = doc["file"]
        uploaded = parse_time(f["uploaded_at"])
        if uploaded is None:
            raise ValueError("uploaded_at")
        ref = FileRef(
            str(f["bucket"]),
            str(f["key"]),
            f.get("version_id"),
            f.get("etag"),
            int(f["size"]),
            str(f["sequencer"]),
            uploaded,
        )
        raw = dict(doc["facts"])
        raw["recorded_at"] = parse_time(raw.get("recorded_at"))
        first, total, k0, k1, last = doc["span"]
        index, count = doc["chunk"]
        return cls(
            ref,
            FileFacts(**raw),
            str(doc["format"]),
            str(doc["header"]),
            {str(n): Part.from_dict(p) for n, p in doc["parts"].items()},
            int(index),
            int(count),
            (int(doc["read"][0]), int(doc["read"][1])),
            Span(int(first), int(total), range(int(k0), int(k1)), bool(last)),
        )


def orders(
    ref: FileRef, facts: FileFacts, opened: Opened, header: str, settings: Settings
) -> list[ChunkOrder]:
    """The chunk orders of a long recording (``ref.sequencer`` its signature)."""
    window_s = settings.window_samples / settings.model_sampling_rate_hz
    size = sum(p.size for p in opened.parts.values())
    windows = max(1.0, opened.duration_s / window_s)
    per_chunk = max(1, min(CHUNK_WINDOWS, math.floor(CHUNK_BYTES * windows / max(size, 1))))
    parts = chunks(
        opened.samples,
        opened.plan.fs,
        settings.model_sampling_rate_hz,
        settings.window_samples,
        per_chunk,
        frame=opened.plan.samples_per_frame,
    )
    return [
        ChunkOrder(
            ref,
            facts,
            opened.format,
            header,
            opened.parts,
            i,
            len(parts),
            (part.read.start, part.read.stop),
            part.span,
        )
        for i, part in enumerate(parts)
    ]


# -- the job item ----------------------------------------------------------------------------


def _job_key(ref: FileRef, settings: Settings) -> dict[str, Any]:
    return {
        schema.PK: {"S": schema.file_pk(ref.bucket, ref.key)},
        schema.SK: {"S": f"JOB#{settings.model_version}"},
    }


def _call(call: Any, budget: Budget, doing: str) -> Any:
    def once() -> Any:
        try:
            return call()
        except ClientError as e:
            if error_code(e)[0] == "ConditionalCheckFailedException":
                return None
            mapped = from_boto(e, doing)
            raise (mapped or e) from e
        except Exception as e:
            mapped = from_boto(e, doing)
            if mapped is None:
                raise
            raise mapped from e

    return retry(once, budget, DYNAMODB_ATTEMPT_S)


def start(
    dynamodb: Any, sqs: Any, settings: Settings, work: list[ChunkOrder], budget: Budget
) -> bool:
    """Record the job and send its orders; False when a newer upload's job is there.

    A redelivered trigger (same signature) keeps the job's progress and sends the orders
    again: a chunk done twice writes the same results, and the set of done chunks is a set.
    """
    ref = work[0].ref
    signature = store.sortable_sequencer(ref.sequencer or "")
    expires = int(time.time()) + JOB_DAYS * 86400
    put = _call(
        lambda: dynamodb.put_item(
            TableName=settings.predictions_table,
            Item={
                **_job_key(ref, settings),
                "signature": {"S": signature},
                "chunks": {"N": str(len(work))},
                "started_at": {"S": schema.iso_utc(datetime.now(UTC))},
                "expires_at": {"N": str(expires)},
            },
            ConditionExpression="attribute_not_exists(pk) OR signature < :sig",
            ExpressionAttributeValues={":sig": {"S": signature}},
        ),
        budget,
        f"writing to {settings.predictions_table}",
    )
    if put is None:  # a job is there: this one (a redelivery), or a newer upload's
        found = _call(
            lambda: dynamodb.get_item(
                TableName=settings.predictions_table,
                Key=_job_key(ref, settings),
                ConsistentRead=True,
            ),
            budget,
            f"reading {settings.predictions_table}",
        )
        current = ((found or {}).get("Item") or {}).get("signature", {}).get("S")
        if current != signature:
            return False
    send(sqs, settings.scoring_queue_url, [o.body() for o in work], budget)
    return True


def send(sqs: Any, queue_url: str, bodies: list[str], budget: Budget, delay_s: int = 0) -> None:
    """Messages to the scoring queue; TransientError when some could not be sent (the
    trigger's message goes back and sends them all again)."""
    for i in range(0, len(bodies), SEND_BATCH):
        entries = [
            {"Id": str(n), "MessageBody": body, "DelaySeconds": delay_s}
            for n, body in enumerate(bodies[i : i + SEND_BATCH])
        ]
        answer = _call(
            lambda entries=entries: sqs.send_message_batch(QueueUrl=queue_url, Entries=entries),
            budget,
            "sending to the scoring queue",
        )
        if answer is None or answer.get("Failed"):
            raise TransientError("the scoring queue refused some chunk orders")


# -- a chunk done ------------------------------------------------------------------------------


def finish(
    s3: Any,
    dynamodb: Any,
    settings: Settings,
    order: ChunkOrder,
    outcome: WindowResults | RejectedFile,
    summary: Summary | None,
    budget: Budget,
) -> dict[str, Any] | None:
    """Keep one chunk's results and mark it done; the file's item when this completed the
    job (None otherwise, or when the job was replaced by a newer upload's)."""
    ref = order.ref
    signature = store.sortable_sequencer(ref.sequencer or "")
    values: dict[str, Any] = {
        ":i": {"NS": [str(order.index)]},
        ":sig": {"S": signature},
        ":now": {"S": schema.iso_utc(datetime.now(UTC))},
    }
    update = "ADD done :i SET updated_at = :now"
    if isinstance(outcome, RejectedFile):
        update += (
            ", rejected_reason = if_not_exists(rejected_reason, :r),"
            " rejected_code = if_not_exists(rejected_code, :c)"
        )
        values |= {":r": {"S": outcome.reason[:1000]}, ":c": {"S": outcome.code}}
    else:
        body = outcome.to_npz(summary)
        key = keys.chunk_key(
            schema.file_hash(ref.bucket, ref.key),
            settings.model_version,
            _safe(signature),
            order.index,
        )
        objects.put(s3, ref.bucket, key, body, budget)
    answer = _call(
        lambda: dynamodb.update_item(
            TableName=settings.predictions_table,
            Key=_job_key(ref, settings),
            UpdateExpression=update,
            ConditionExpression="signature = :sig",
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        ),
        budget,
        f"writing to {settings.predictions_table}",
    )
    if answer is None:
        logger.info("chunk of a replaced upload; dropped", extra={"chunk": order.index})
        return None
    job = {k: _deserializer.deserialize(v) for k, v in answer["Attributes"].items()}
    if len(job.get("done", ())) < int(job["chunks"]):
        return None
    return gather(s3, settings, order, job, budget)


def _safe(signature: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in signature)


def gather(
    s3: Any, settings: Settings, order: ChunkOrder, job: Mapping[str, Any], budget: Budget
) -> dict[str, Any]:
    """Every chunk is done: the file's item (SCORED with its arrays in S3, or REJECTED)."""
    ref, facts = order.ref, order.facts
    now = datetime.now(UTC)
    if job.get("rejected_code"):
        rejection = RejectedFile(str(job["rejected_reason"]), str(job["rejected_code"]))
        return store.rejected_item(ref, facts, rejection, settings, now)
    file_hash = schema.file_hash(ref.bucket, ref.key)
    signature = _safe(store.sortable_sequencer(ref.sequencer or ""))
    parts, summary = [], None
    for i in range(order.count):
        key = keys.chunk_key(file_hash, settings.model_version, signature, i)
        results, chunk_summary = WindowResults.from_npz(
            objects.get_owned(s3, ref.bucket, key, budget)
        )
        parts.append(results)
        summary = summary or chunk_summary
    if summary is None:
        raise SystemFault("no chunk of the job recorded the recording's summary")
    results = WindowResults.join(parts)
    if not results.usable.any():
        window_s = settings.window_samples / settings.model_sampling_rate_hz
        reason = quality.summarise(results.verdicts(), window_s)
        return store.rejected_item(
            ref, facts, RejectedFile(reason, "poor_signal_quality"), settings, now
        )
    site, device = facts.site or "-", facts.device or "-"
    key = keys.results_key(site, device, file_hash, settings.model_version)
    objects.put(s3, ref.bucket, key, results.to_npz(summary), budget)
    return store.scored_item(
        ref, facts, results, summary, settings, now, windows_uri=f"s3://{ref.bucket}/{key}"
    )
