"""Lambda entry point: an SQS batch of S3 upload events -> one item per file in PredictionsTable.

Phases instead of Powertools' record-by-record BatchProcessor, because every window of the
batch must reach the endpoint together (few InvokeEndpoint calls):

1. per message and per S3 record: read the object (S3 GETs in a bounded thread pool), prepare
   its windows one file at a time (a file problem becomes a REJECTED item; a transient or
   system problem fails the message);
2. score all windows of the batch at once;
3. write one item per file (PutItems in the same bounded pool).

Whatever goes wrong with one file, even a bug, is that file's outcome alone: its message
goes back to the queue (and after 5 receives to the DLQ), never the whole batch. Logs name
a file by its hash (``schema.file_hash``), never by its key: file names can carry patient
data; ``ecg-scorer`` resolves hashes for people who may read the table.

The answer keeps the SQS partial-batch format: ``{"batchItemFailures": [{"itemIdentifier":
<messageId>}]}`` lists the messages to deliver again (transient or system faults); every
other message is deleted. Nothing in S3 is ever modified or deleted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from scorer import endpoint, events, fanout, intake, keys, objects, schema, store
from scorer.budget import (
    DYNAMODB_CONNECT_S,
    DYNAMODB_READ_S,
    ENDPOINT_CONNECT_S,
    ENDPOINT_READ_S,
    S3_ATTEMPTS,
    S3_CONNECT_S,
    S3_READ_S,
    STORE_MARGIN_S,
    Budget,
)
from scorer.config import Settings, load_settings
from scorer.errors import RejectedFile, ScorerError, SystemFault, TransientError
from scorer.fanout import ChunkOrder
from scorer.prepare import Prepared
from scorer.uploads import FileFacts, FileRef
from scorer.window_results import Summary, WindowResults, summary_of

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = load_settings()  # fails the cold start, naming the missing variable
REGISTERED: set[tuple[str, str]] = set()  # devices this container has put in the registry
# S3 GETs and PutItems wait on the network: a few at once make a batch's wall time the
# scoring's, not the sum of its round trips. Bytes read but not yet prepared stay under
# PREFETCH_BYTES, so parallel reads never multiply a large file's memory.
IO_THREADS = 8
PREFETCH_BYTES = 32 * 1024 * 1024
# Windows are scored in rounds of a few full endpoint calls (~16 MB of float32 at 4 calls of
# ~166 windows): full requests, while a batch of long files never holds all its windows.
CALLS_PER_ROUND = 4
# SQS packs the chunk orders of a long recording into one batch (24 for a day): scoring
# them all in one invocation serialises what the fan-out is for and can outlast the timeout
# on a slow endpoint. An invocation scores a few (~4 rounds of calls) and sends the others
# back in groups as large, each group made visible PASS_ON_STEP_S after the one before so
# that they reach separate batches, hence invocations running side by side. Sent back is not
# failed: no receive is spent, nothing waits for a visibility timeout.
CHUNKS_PER_INVOCATION = 6
PASS_ON_STEP_S = 6  # > the template's default batching window (5 s)
# Our retry loops (budget.retry) are the ones that count for the endpoint and the table:
# botocore makes a single attempt there. S3 reads keep one botocore retry. The timeouts are
# budget.py's, which also budgets each call's worst case (connect + read timeout).
_NO_RETRY = {"mode": "standard", "total_max_attempts": 1}
S3 = boto3.client(
    "s3",
    config=Config(
        connect_timeout=S3_CONNECT_S,
        read_timeout=S3_READ_S,
        retries={"mode": "standard", "total_max_attempts": S3_ATTEMPTS},
        max_pool_connections=IO_THREADS,
    ),
)
DYNAMODB = boto3.client(
    "dynamodb",
    config=Config(
        connect_timeout=DYNAMODB_CONNECT_S,
        read_timeout=DYNAMODB_READ_S,
        retries=_NO_RETRY,
        max_pool_connections=IO_THREADS,
    ),
)
SQS = boto3.client("sqs", config=Config(connect_timeout=3, read_timeout=10, retries=_NO_RETRY))
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
    sqs: Any = None  # chunk orders and second looks (only long or multi-part recordings)


@dataclass
class Job:
    """One S3 record of one SQS message, followed through the phases."""

    message_id: str
    ref: FileRef
    facts: FileFacts = field(default_factory=FileFacts)
    order: ChunkOrder | None = None  # a chunk of a long recording
    looks: int = 0  # earlier looks at an upload waiting for its record's other parts
    gathered: intake.Gathered | None = None
    prepared: Prepared | None = None
    score: endpoint.FileScore | None = None
    rejection: RejectedFile | None = None
    failure: ScorerError | None = None

    @property
    def file(self) -> str:
        # Correlation by file in logs; never its key (names can carry patient data).
        return schema.file_hash(self.ref.bucket, self.ref.key)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    clients = Clients(S3, DYNAMODB, SAGEMAKER_RUNTIME, SQS)
    return process_batch(event, context, clients, SETTINGS)


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
    passed_on: list[tuple[str, str]] = []  # (message id, chunk order) for other invocations
    chunks_here = 0
    for message in events.messages(event):
        jobs.extend(Job(message.message_id, ref) for ref in message.refs)
        for order in message.chunks:
            if chunks_here < CHUNKS_PER_INVOCATION:
                jobs.append(Job(message.message_id, order.ref, order.facts, order=order))
                chunks_here += 1
            else:
                passed_on.append((message.message_id, order.body()))
        jobs.extend(Job(message.message_id, r.ref, looks=r.attempt) for r in message.rechecks)
        if message.problem is not None:
            # Not an S3 notification, or a malformed record: back to the queue, and after 5
            # receives to the DLQ where a person can look at it (nothing dropped silently).
            logger.error(
                "message is not a readable S3 event notification",
                extra={"message_id": message.message_id, "problem": message.problem},
            )
            failed[message.message_id] = None

    if passed_on:
        failed |= pass_on(passed_on, clients, settings, budget)

    per_call = endpoint.windows_per_call(settings.max_payload_bytes, settings.window_bytes)
    round_windows = per_call * CALLS_PER_ROUND
    scoring = Scoring(clients.runtime, settings, budget)
    with ThreadPoolExecutor(IO_THREADS, thread_name_prefix="io") as pool:
        writes: list[Future] = []

        def finish(round_jobs: list[Job]) -> None:
            scoring.score(round_jobs)
            writes.extend(
                pool.submit(write_isolated, job, clients, settings, store_budget)
                for job in round_jobs
            )

        round_jobs: list[Job] = []
        windows = 0
        records: set[tuple[str, str, str | None]] = set()  # scored in this batch already
        for job, read in prefetched(pool, jobs, clients, settings, budget):
            with file_context(job):
                isolated(job, "preparing", read_and_prepare, job, read, settings, records)
            round_jobs.append(job)
            windows += len(job.prepared.windows) if job.prepared is not None else 0
            if windows >= round_windows:
                finish(round_jobs)
                round_jobs, windows = [], 0
        finish(round_jobs)
        for future in writes:
            future.result()  # write_isolated never raises
    for job in jobs:
        if job.failure is not None:
            failed[job.message_id] = None

    if failed:
        metrics.add_metric(name="MessagesRetried", unit=MetricUnit.Count, value=len(failed))
    faults = sum(isinstance(job.failure, SystemFault) for job in jobs)
    if faults:  # endpoint missing, access denied...: worth an alarm, retrying will not help
        metrics.add_metric(name="SystemFaults", unit=MetricUnit.Count, value=faults)
    return {"batchItemFailures": [{"itemIdentifier": mid} for mid in failed]}


@contextmanager
def file_context(job: Job) -> Iterator[None]:
    """Log lines name the file (by hash) while one thread works on it."""
    logger.thread_safe_append_keys(file=job.file)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(["file"])


_metrics_lock = threading.Lock()


def count(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count) -> None:
    """Add a metric from any thread (Powertools' metric set is not thread-safe)."""
    with _metrics_lock:
        metrics.add_metric(name=name, unit=unit, value=value)


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


Read = Future | ScorerError  # a pending S3 read, or why the file was never read


def prefetched(
    pool: ThreadPoolExecutor, jobs: list[Job], clients: Clients, settings: Settings, budget: Budget
) -> Iterator[tuple[Job, Read]]:
    """Each job with its read, in order, while the next reads run in the pool.

    A read starts only while the bytes read and not yet prepared stay under PREFETCH_BYTES
    (by the event's sizes; a chunk counts as a whole chunk); a larger file is read alone.
    """
    queue: deque[tuple[Job, Read, int]] = deque()
    reserved = 0
    for job in jobs:
        if job.order is None:
            try:
                intake.check_name(job.ref, job.facts, settings)
            except ScorerError as error:
                queue.append((job, error, 0))
                continue
        size = fanout.CHUNK_BYTES if job.order is not None else max(job.ref.size_bytes, 1)
        while queue and reserved + size > PREFETCH_BYTES:
            done, read, held = queue.popleft()
            reserved -= held
            yield done, read
        queue.append((job, pool.submit(_gather_in_thread, job, clients, settings, budget), size))
        reserved += size
    while queue:
        done, read, _ = queue.popleft()
        yield done, read


def _gather_in_thread(
    job: Job, clients: Clients, settings: Settings, budget: Budget
) -> tuple[FileRef, intake.Gathered]:
    with file_context(job):
        return intake.gather(job.ref, job.order, clients.s3, clients.dynamodb, settings, budget)


@tracer.capture_method(capture_response=False)
def read_and_prepare(
    job: Job, read: Read, settings: Settings, records: set[tuple[str, str, str | None]]
) -> None:
    """Check and prepare one file once read; sets job.prepared, job.rejection or job.failure
    (or job.gathered, for what is not prepared now: a fan-out, a wait, nothing to do)."""
    try:
        if isinstance(read, ScorerError):
            raise read
        ref, job.gathered = read.result()
        gathered = job.gathered
        if ref.key != job.ref.key:  # a WFDB part's event: the record is its header's
            job.ref, job.facts.format = ref, intake.format_of(ref.key)
        job.ref = ref
        if job.order is None and isinstance(gathered, intake.Whole | intake.Read | intake.Long):
            # Two parts of one record can both find it whole in one batch: score it once.
            record = (job.ref.bucket, job.ref.key, job.ref.sequencer)
            if record in records:
                job.gathered = intake.Nothing("the same record as another message of the batch")
                return
            records.add(record)
        if isinstance(gathered, intake.Long):
            plan = gathered.opened.plan
            file_meta = {"recorded_at": plan.recorded_at} if plan.recorded_at else {}
            intake.facts_from(job.facts, file_meta, gathered.opened.metadata)
        elif isinstance(gathered, intake.Whole | intake.Read):
            job.prepared = intake.prepare_file(job.ref, job.facts, gathered, settings)
    except RejectedFile as rejection:
        job.rejection = rejection
        # The cause's type (e.g. zlib error for a corrupt .npz) helps; its text may quote data.
        cause = type(rejection.__cause__).__name__ if rejection.__cause__ else None
        logger.info("file rejected", extra={"reason_code": rejection.code, "cause": cause})
    except (TransientError, SystemFault) as error:
        job.failure = error
        logger.warning("file not read; message will be retried", extra={"error": str(error)})
    finally:
        # The bytes or samples read are not needed once prepared (or rejected): a batch of
        # many files or chunks must not hold them all until it returns.
        if isinstance(job.gathered, intake.Whole | intake.Read):
            job.gathered = None


def pass_on(
    orders: list[tuple[str, str]], clients: Clients, settings: Settings, budget: Budget
) -> dict[str, None]:
    """Send chunk orders back to the queue in staggered groups for other invocations; the
    messages whose orders could not be sent (they come back, and all their orders with them:
    a chunk ordered twice is done once)."""
    failed: dict[str, None] = {}
    for n, start in enumerate(range(0, len(orders), CHUNKS_PER_INVOCATION)):
        group = orders[start : start + CHUNKS_PER_INVOCATION]
        delay = min(n * PASS_ON_STEP_S, LOOK_DELAY_S)
        try:
            fanout.send(
                clients.sqs, settings.scoring_queue_url, [b for _, b in group], budget, delay
            )
        except (TransientError, SystemFault) as error:
            logger.warning("chunk orders not passed on", extra={"error": str(error)})
            failed |= dict.fromkeys(message_id for message_id, _ in group)
    count("ChunksPassedOn", len(orders))
    return failed


class Scoring:
    """The batch's endpoint calls, round after round; once calls had to stop (endpoint
    throttling past the budget, a system fault), later rounds do not call again."""

    def __init__(self, runtime: Any, settings: Settings, budget: Budget) -> None:
        self.runtime, self.settings, self.budget = runtime, settings, budget
        self.stopped: ScorerError | None = None

    @tracer.capture_method(capture_response=False)
    def score(self, jobs: list[Job]) -> None:
        """The prepared windows of these files through the endpoint together."""
        # Keyed by position: the same object may appear twice in a batch (two events).
        ready = {str(i): job for i, job in enumerate(jobs) if job.prepared is not None}
        if not ready:
            return
        if self.stopped is not None:
            for job in ready.values():
                job.failure = self.stopped
                if job.prepared is not None:  # retried later: nothing to keep meanwhile
                    job.prepared.windows = job.prepared.windows[:0]
            return
        # Only usable windows reach the model; the others keep their quality verdict.
        files = {
            jid: job.prepared.windows[job.prepared.usable]
            for jid, job in ready.items()
            if job.prepared is not None
        }
        try:
            outcome = endpoint.score_files(self.runtime, self.settings, files, self.budget)
        except Exception as error:  # a bug: these files go back; rejected ones are still stored
            self.stopped = SystemFault(f"unexpected {type(error).__name__} scoring the batch")
            for job in ready.values():
                job.failure = self.stopped
            logger.error(
                "unexpected error scoring the batch; its files will be retried",
                extra={"error": type(error).__name__, "at": _origin(error)},
            )
            return
        self.stopped = outcome.stopped
        for value in outcome.latencies_ms:
            count("EndpointLatency", value, MetricUnit.Milliseconds)
        count("EndpointRetries", outcome.retries)
        count("BytesSent", outcome.bytes_sent, MetricUnit.Bytes)
        logger.info(
            "windows scored",
            extra={"files": len(files), "calls": outcome.calls, "retries": outcome.retries},
        )
        for jid, job in ready.items():
            if jid in outcome.failed:
                job.failure = outcome.failed[jid]
            elif jid in outcome.scores:
                job.score = outcome.scores[jid]
            if job.prepared is not None:  # the item needs no samples: free them for the next round
                job.prepared.windows = job.prepared.windows[:0]


def write_isolated(job: Job, clients: Clients, settings: Settings, budget: Budget) -> None:
    """:func:`write` in a pool thread, its errors kept to its file."""
    with file_context(job):
        isolated(job, "storing", write, job, clients, settings, budget)


MAX_LOOKS = 4  # a WFDB record's parts get 4 looks, 15 min apart, to arrive (1 h in all)
LOOK_DELAY_S = 900  # SQS's longest message delay


def write(job: Job, clients: Clients, settings: Settings, budget: Budget) -> None:
    """What the job's outcome calls for: an item (SCORED or REJECTED), a chunk's results, the
    chunk orders of a long recording, or another look later; nothing for a failed job (its
    message is retried)."""
    if job.failure is not None:
        return
    now = datetime.now(UTC)
    gathered = job.gathered
    item: dict[str, Any] | None
    if isinstance(gathered, intake.Nothing):
        logger.info("nothing to store", extra={"why": gathered.why})
        return
    if job.order is not None:
        item = _chunk_done(job, clients, settings, budget)
        if item is None:
            return
    elif job.rejection is not None:
        item = store.rejected_item(job.ref, job.facts, job.rejection, settings, now)
    elif isinstance(gathered, intake.Waiting):
        item = _waiting(job, gathered, clients, settings, budget)
        if item is None:
            return
    elif isinstance(gathered, intake.Long):
        work = fanout.orders(job.ref, job.facts, gathered.opened, gathered.header, settings)
        if fanout.start(clients.dynamodb, clients.sqs, settings, work, budget):
            count("FilesFannedOut")
            count("ChunksOrdered", len(work))
            logger.info("long recording fanned out", extra={"chunks": len(work)})
        return
    elif job.prepared is not None and job.score is not None:
        results = WindowResults.of(job.prepared, job.score.probabilities)
        summary = summary_of(job.prepared, job.score.threshold)
        uri = None
        if len(results) > store.INLINE_WINDOWS:
            uri = _keep_windows(job, results, summary, clients.s3, settings, budget)
        item = store.scored_item(job.ref, job.facts, results, summary, settings, now, uri)
    else:  # not reached: every prepared file is scored or failed by score()
        job.failure = SystemFault("file was neither scored nor rejected")
        return
    _store(job, item, clients.dynamodb, settings, budget)


def _keep_windows(
    job: Job,
    results: WindowResults,
    summary: Summary,
    s3: Any,
    settings: Settings,
    budget: Budget,
) -> str:
    """A long file's per-window arrays, in S3 beside the table (an item holds 400 KB)."""
    file_hash = schema.file_hash(job.ref.bucket, job.ref.key)
    key = keys.results_key(
        job.facts.site or "-", job.facts.device or "-", file_hash, settings.model_version
    )
    objects.put(s3, job.ref.bucket, key, results.to_npz(summary), budget)
    return f"s3://{job.ref.bucket}/{key}"


def _chunk_done(
    job: Job, clients: Clients, settings: Settings, budget: Budget
) -> dict[str, Any] | None:
    """Keep a chunk's results; the file's item when it was the last chunk."""
    assert job.order is not None
    outcome: WindowResults | RejectedFile
    summary = None
    if job.rejection is not None:
        outcome = job.rejection
    elif job.prepared is not None:
        probabilities = job.score.probabilities if job.score is not None else []
        outcome = WindowResults.of(job.prepared, probabilities)
        summary = summary_of(job.prepared, job.score.threshold if job.score else None)
    else:
        job.failure = SystemFault("chunk was neither prepared nor rejected")
        return None
    count("ChunksScored")
    return fanout.finish(
        clients.s3, clients.dynamodb, settings, job.order, outcome, summary, budget
    )


def _waiting(
    job: Job, waiting: intake.Waiting, clients: Clients, settings: Settings, budget: Budget
) -> dict[str, Any] | None:
    """A WFDB record missing parts: look again in 15 min; after MAX_LOOKS, REJECTED."""
    if job.looks < MAX_LOOKS:
        look = events.Recheck(job.ref, job.looks + 1)
        fanout.send(
            clients.sqs, settings.scoring_queue_url, [look.body()], budget, delay_s=LOOK_DELAY_S
        )
        count("RecordsWaiting")
        logger.info("record incomplete; looking again later", extra={"look": job.looks + 1})
        return None
    if intake.format_of(job.ref.key) == "wfdb_part" and intake.named_by_a_header(
        clients.s3, job.ref, budget
    ):
        logger.info("a part of a record whose header has another name; the record is scored")
        return None
    waited = MAX_LOOKS * LOOK_DELAY_S // 60
    missing = ", ".join(waiting.missing[:10]) + (" ..." if len(waiting.missing) > 10 else "")
    rejection = RejectedFile(
        f"the WFDB record is incomplete: {missing} did not arrive within {waited} minutes of "
        "this part; upload every file the header (.hea) names into the same folder",
        "wfdb_incomplete",
    )
    return store.rejected_item(job.ref, job.facts, rejection, settings, datetime.now(UTC))


def _store(
    job: Job, item: dict[str, Any], dynamodb: Any, settings: Settings, budget: Budget
) -> None:
    def on_retry(error: TransientError, attempt: int, delay: float) -> None:
        count("StoreRetries")
        logger.warning("table write throttled, retrying", extra={"attempt": attempt})

    site, device = item.get("site"), item.get("device")
    try:
        if site and device:
            store.register_device(
                dynamodb,
                settings.predictions_table,
                site,
                device,
                datetime.now(UTC),
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
        count("DuplicatesSkipped")
        return
    if item["status"] == "REJECTED":
        count("FilesRejected")
        return
    count("FilesScored")
    count("Windows", item["windows"])
    if item["outcome"] == "ANOMALOUS":
        count("Anomalies")
    logger.info("file scored", extra={"windows": item["windows"], "outcome": item["outcome"]})
