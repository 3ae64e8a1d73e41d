"""Lambda entry point: an SQS batch of S3 upload events -> one item per file in PredictionsTable.

Two phases instead of Powertools' record-by-record BatchProcessor, because every window of
the batch must reach the endpoint together (few InvokeEndpoint calls):

1. per message and per S3 record: read the object, prepare its windows (a file problem
   becomes a REJECTED item; a transient or system problem fails the message);
2. score all windows of the batch at once, then write one item per file.

Whatever goes wrong with one file, even a bug, is that file's outcome alone: its message
goes back to the queue (and after 5 receives to the DLQ), never the whole batch. Logs name
a file by its hash (``schema.file_hash``), never by its key: file names can carry patient
data; ``ecg-scorer`` resolves hashes for people who may read the table.

The answer keeps the SQS partial-batch format: ``{"batchItemFailures": [{"itemIdentifier":
<messageId>}]}`` lists the messages to deliver again (transient or system faults); every
other message is deleted. Nothing in S3 is ever modified or deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import ClientError

from scorer import endpoint, events, keys, readers, schema, store
from scorer.budget import (
    DYNAMODB_CONNECT_S,
    DYNAMODB_READ_S,
    ENDPOINT_CONNECT_S,
    ENDPOINT_READ_S,
    S3_ATTEMPTS,
    S3_CONNECT_S,
    S3_READ_S,
    S3_READ_WORST_S,
    STORE_MARGIN_S,
    Budget,
)
from scorer.config import Settings, load_settings
from scorer.errors import (
    RejectedFile,
    ScorerError,
    SystemFault,
    TransientError,
    error_code,
    from_boto,
)
from scorer.prepare import Prepared, prepare
from scorer.uploads import FileFacts, FileRef

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = load_settings()  # fails the cold start, naming the missing variable
REGISTERED: set[tuple[str, str]] = set()  # devices this container has put in the registry
# Our retry loops (errors.retry) are the ones that count for the endpoint and the table:
# botocore makes a single attempt there. S3 reads keep one botocore retry. The timeouts are
# errors.py's, which also budgets each call's worst case (connect + read timeout).
_NO_RETRY = {"mode": "standard", "total_max_attempts": 1}
S3 = boto3.client(
    "s3",
    config=Config(
        connect_timeout=S3_CONNECT_S,
        read_timeout=S3_READ_S,
        retries={"mode": "standard", "total_max_attempts": S3_ATTEMPTS},
    ),
)
DYNAMODB = boto3.client(
    "dynamodb",
    config=Config(
        connect_timeout=DYNAMODB_CONNECT_S, read_timeout=DYNAMODB_READ_S, retries=_NO_RETRY
    ),
)
# A serverless container has 60 s to answer; a little more for the network.
SAGEMAKER_RUNTIME = boto3.client(
    "sagemaker-runtime",
    config=Config(
        connect_timeout=ENDPOINT_CONNECT_S, read_timeout=ENDPOINT_READ_S, retries=_NO_RETRY
    ),
)


@dataclass
class Clients:
    s3: Any
    dynamodb: Any
    runtime: Any


@dataclass
class Job:
    """One S3 record of one SQS message, followed through the phases."""

    message_id: str
    ref: FileRef
    facts: FileFacts = field(default_factory=FileFacts)
    prepared: Prepared | None = None
    score: endpoint.FileScore | None = None
    rejection: RejectedFile | None = None
    failure: ScorerError | None = None

    def log_keys(self) -> dict[str, Any]:
        # Correlation by file; never its key, patient references or samples.
        return {"file": schema.file_hash(self.ref.bucket, self.ref.key)}


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_batch(event, context, Clients(S3, DYNAMODB, SAGEMAKER_RUNTIME), SETTINGS)


def process_batch(
    event: dict,
    context: Any,
    clients: Clients,
    settings: Settings,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """The whole batch; returns the SQS partial-batch response."""
    # S3 reads and endpoint calls start only when their worst case still leaves
    # SAFETY_MARGIN_S; the table writes may use that reserve (each write only when its own
    # worst case fits), so results scored before an endpoint outage are still stored.
    budget = Budget(context, sleep=sleep)
    store_budget = Budget(context, margin_s=STORE_MARGIN_S, sleep=sleep)
    failed: dict[str, None] = {}  # message ids, in order
    jobs: list[Job] = []
    for message in events.messages(event):
        jobs.extend(Job(message.message_id, ref) for ref in message.refs)
        if message.problem is not None:
            # Not an S3 notification, or a malformed record: back to the queue, and after 5
            # receives to the DLQ where a person can look at it (nothing dropped silently).
            logger.error(
                "message is not a readable S3 event notification",
                extra={"message_id": message.message_id, "problem": message.problem},
            )
            failed[message.message_id] = None

    for job in jobs:
        with logger.append_context_keys(**job.log_keys()):
            isolated(job, "preparing", read_and_prepare, job, clients.s3, settings, budget)
    score(jobs, clients.runtime, settings, budget)
    for job in jobs:
        with logger.append_context_keys(**job.log_keys()):
            isolated(job, "storing", write, job, clients.dynamodb, settings, store_budget)
        if job.failure is not None:
            failed[job.message_id] = None

    if failed:
        metrics.add_metric(name="MessagesRetried", unit=MetricUnit.Count, value=len(failed))
    faults = sum(isinstance(job.failure, SystemFault) for job in jobs)
    if faults:  # endpoint missing, access denied...: worth an alarm, retrying will not help
        metrics.add_metric(name="SystemFaults", unit=MetricUnit.Count, value=faults)
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failed]}


def isolated(job: Job, stage: str, step: Callable[..., None], *args: Any) -> None:
    """Run one file's step; an unexpected error becomes that file's system fault.

    Logged with its type and place only: an exception's text can quote the file's content.
    """
    try:
        step(*args)
    except Exception as error:
        job.failure = SystemFault(f"unexpected {type(error).__name__} {stage} the file")
        logger.error(
            "unexpected error; the file's message will be retried",
            extra={"stage": stage, "error": type(error).__name__, "at": _origin(error)},
        )


def _origin(error: BaseException) -> str:
    """file:line where an exception was raised, e.g. ``prepare.py:212``."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return "?"
    return f"{frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}"


def _name_part(value: str, what: str, source: str) -> str:
    if not keys.valid_name(value):
        raise RejectedFile(
            f"the {what} name given {source} must be {keys.NAME_RULE}", f"bad_{what}"
        )
    return value


def _object_metadata(raw: dict[str, str]) -> dict[str, str]:
    """S3 user metadata (x-amz-meta-*), keys normalised like the files' metadata keys."""
    out = {}
    for key, value in raw.items():
        norm = readers.META_ALIASES.get(key.lower().replace("-", "_"))
        if norm and value.strip():
            out[norm] = value.strip()
    return out


@tracer.capture_method(capture_response=False)
def read_and_prepare(job: Job, s3: Any, settings: Settings, budget: Budget) -> None:
    """Read, check and prepare one file; sets job.prepared, job.rejection or job.failure.

    The object is read only when the budget covers the read's worst case; otherwise the
    file's message goes back to the queue.
    """
    ref, facts = job.ref, job.facts
    try:
        where = keys.parse(ref.key)
        facts.site = _name_part(where.site, "site", "by the key") if where.site else None
        facts.device = _name_part(where.device, "device", "by the key") if where.device else None
        facts.format = readers.file_format(ref.key)
        readers.check_size(ref.size_bytes or 1, settings.max_file_bytes)
        if not budget.allows(S3_READ_WORST_S):
            raise TransientError("no time left in this invocation to read the file")
        data, s3_meta = fetch(s3, ref, settings.max_file_bytes)
        recording = readers.read_recording(data, ref.key)
        for source, meta in (("in the file", recording.metadata), ("as S3 metadata", s3_meta)):
            # Later sources win: key < file < S3 object metadata.
            if "site" in meta:
                facts.site = _name_part(meta["site"], "site", source)
            if "device" in meta:
                facts.device = _name_part(meta["device"], "device", source)
        meta = {**recording.metadata, **s3_meta}
        facts.patient_ref, facts.record_id = meta.get("patient_ref"), meta.get("record_id")
        if not (facts.site and facts.device):
            raise RejectedFile(
                "the site and device are unknown: upload to incoming/<site>/<device>/<file> "
                "or give site and device as metadata",
                "no_site_device",
            )
        if "recorded_at" in meta:
            facts.recorded_at = events.parse_time(meta["recorded_at"])
            if facts.recorded_at is None:
                raise RejectedFile(
                    "recorded_at is not an ISO 8601 time between 1900 and 2100 "
                    "(e.g. 2026-11-27T08:30:00Z)",
                    "bad_recorded_at",
                )
        if recording.fs is None and "sampling_rate_hz" in s3_meta:
            recording.fs = readers.parse_rate(
                s3_meta["sampling_rate_hz"], "S3 metadata sampling-rate-hz"
            )
        if recording.leads is None and "leads" in s3_meta:
            names = [n.strip() for n in s3_meta["leads"].split(",")]
            recording.leads = readers.lead_names(names, recording.signal.shape[1], "S3 metadata")
        job.prepared = prepare(
            recording,
            settings.model_leads,
            settings.model_sampling_rate_hz,
            settings.window_samples,
        )
    except RejectedFile as rejection:
        job.rejection = rejection
        # The cause's type (e.g. zlib error for a corrupt .npz) helps; its text may quote data.
        cause = type(rejection.__cause__).__name__ if rejection.__cause__ else None
        logger.info("file rejected", extra={"reason_code": rejection.code, "cause": cause})
    except (TransientError, SystemFault) as error:
        job.failure = error
        logger.warning("file not read; message will be retried", extra={"error": str(error)})


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
        if isinstance(e, ClientError) and error_code(e)[0] in {"NoSuchKey", "NoSuchVersion", "404"}:
            raise RejectedFile(
                "the object no longer exists (deleted before it could be scored)", "gone"
            ) from e
        mapped = from_boto(e, "reading from S3")
        if mapped is None:
            raise
        raise mapped from e
    readers.check_size(len(data), max_bytes)
    return data, _object_metadata(response.get("Metadata") or {})


@tracer.capture_method(capture_response=False)
def score(jobs: list[Job], runtime: Any, settings: Settings, budget: Budget) -> None:
    """All prepared windows of the batch through the endpoint together."""
    # Keyed by position: the same object may appear twice in a batch (two events).
    ready = {str(i): job for i, job in enumerate(jobs) if job.prepared is not None}
    if not ready:
        return
    files = {jid: job.prepared.windows for jid, job in ready.items() if job.prepared is not None}
    try:
        outcome = endpoint.score_files(runtime, settings, files, budget)
    except Exception as error:  # a bug: these files go back; the rejected ones are still stored
        for job in ready.values():
            job.failure = SystemFault(f"unexpected {type(error).__name__} scoring the batch")
        logger.error(
            "unexpected error scoring the batch; its files will be retried",
            extra={"error": type(error).__name__, "at": _origin(error)},
        )
        return
    for value in outcome.latencies_ms:
        metrics.add_metric(name="EndpointLatency", unit=MetricUnit.Milliseconds, value=value)
    metrics.add_metric(name="EndpointRetries", unit=MetricUnit.Count, value=outcome.retries)
    metrics.add_metric(name="BytesSent", unit=MetricUnit.Bytes, value=outcome.bytes_sent)
    logger.info(
        "batch scored",
        extra={"files": len(files), "calls": outcome.calls, "retries": outcome.retries},
    )
    for jid, job in ready.items():
        if jid in outcome.failed:
            job.failure = outcome.failed[jid]
    for jid, file_score in outcome.scores.items():
        ready[jid].score = file_score


@tracer.capture_method(capture_response=False)
def write(job: Job, dynamodb: Any, settings: Settings, budget: Budget) -> None:
    """One item per file: SCORED or REJECTED; nothing for a failed file (it is retried)."""
    if job.failure is not None:
        return
    now = datetime.now(UTC)
    if job.rejection is not None:
        item = store.rejected_item(job.ref, job.facts, job.rejection, settings, now)
    elif job.prepared is not None and job.score is not None:
        item = store.scored_item(job.ref, job.facts, job.prepared, job.score, settings, now)
    else:  # not reached: every prepared file is scored or failed by score()
        job.failure = SystemFault("file was neither scored nor rejected")
        return

    def on_retry(error: TransientError, attempt: int, delay: float) -> None:
        metrics.add_metric(name="StoreRetries", unit=MetricUnit.Count, value=1)
        logger.warning("table write throttled, retrying", extra={"attempt": attempt})

    try:
        if job.facts.site and job.facts.device:
            store.register_device(
                dynamodb,
                settings.predictions_table,
                job.facts.site,
                job.facts.device,
                now,
                budget,
                REGISTERED,
            )
        written = store.put_item(dynamodb, settings.predictions_table, item, budget, on_retry)
    except (TransientError, SystemFault) as error:
        job.failure = error
        logger.warning("item not written; message will be retried", extra={"error": str(error)})
        return
    if not written:
        logger.info("same or newer result already stored; nothing written")
        metrics.add_metric(name="DuplicatesSkipped", unit=MetricUnit.Count, value=1)
        return
    if item["status"] == "REJECTED":
        metrics.add_metric(name="FilesRejected", unit=MetricUnit.Count, value=1)
        return
    metrics.add_metric(name="FilesScored", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Windows", unit=MetricUnit.Count, value=item["windows"])
    if item["outcome"] == "ANOMALOUS":
        metrics.add_metric(name="Anomalies", unit=MetricUnit.Count, value=1)
    logger.info("file scored", extra={"windows": item["windows"], "outcome": item["outcome"]})
