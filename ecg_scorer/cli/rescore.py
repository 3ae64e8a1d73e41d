"""``ecg-scorer rescore``: send stored files through the scoring queue again, as the S3
notifications their uploads sent, so a newly deployed model version scores old files.

The Lambda writes one item per (file, model version) with a conditional put: a file already
scored by the deployed version is left as it is, a new version's result lands beside the
old one. The messages carry no S3 sequencer (only S3 knows it), so the store's "first write
wins" condition applies.

Throttled: the queue never holds more than ``2 x concurrency x batch size`` messages from
us, so the Lambda (``MaximumConcurrency``) and the endpoint (``MaxConcurrency``) stay busy
while fresh uploads still get through. Resumable: the last key sent is saved after every
batch in a state file, and a second run with the same selection continues after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote_plus

from scorer import keys

from ecg_scorer import render
from ecg_scorer.cli import objects
from ecg_scorer.cli.context import CliError, Context

SQS_BATCH = 10  # SendMessageBatch's limit
SEND_ATTEMPTS = 3
QUEUE_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]


@dataclass(frozen=True)
class Selection:
    """Which objects: a key prefix below incoming/ and an upload-time range."""

    bucket: str
    prefix: str
    since: datetime | None
    until: datetime | None

    def wants(self, obj: objects.StoredObject) -> bool:
        if not keys.is_incoming(obj.key):
            return False
        if self.since is not None and obj.last_modified < self.since:
            return False
        return self.until is None or obj.last_modified < self.until

    def digest(self) -> str:
        text = json.dumps([self.bucket, self.prefix, _iso(self.since), _iso(self.until)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def selection_of(ctx: Context) -> Selection:
    args = ctx.args
    if args.prefix and (args.site or args.device):
        raise ValueError("give --prefix or --site/--device, not both")
    if args.prefix:
        prefix = (
            args.prefix if args.prefix.startswith(keys.INCOMING) else keys.INCOMING + args.prefix
        )
    else:
        prefix = keys.prefix(args.site, args.device)  # ValueError for a device without site
    if args.since and args.until and args.since >= args.until:
        raise ValueError("--since must be before --until")
    return Selection(ctx.name("bucket"), prefix, args.since, args.until)


def s3_event(obj: objects.StoredObject, bucket: str, region: str) -> str:
    """The body S3 sends SQS for an upload (keys URL-encoded, as S3 does)."""
    entry: dict[str, Any] = {"key": quote_plus(obj.key, safe="/"), "size": obj.size}
    if obj.etag:
        entry["eTag"] = obj.etag.strip('"')
    if obj.version_id:
        entry["versionId"] = obj.version_id
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": obj.last_modified.astimezone(UTC).isoformat(timespec="milliseconds")[:-6]
        + "Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "ecg-scorer-rescore"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "ecg-scorer-rescore",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": entry,
        },
    }
    return json.dumps({"Records": [record]})


class State:
    """The resume file: the selection it belongs to, the last key sent, how many so far."""

    def __init__(self, path: Path, selection: Selection) -> None:
        self.path = path
        self.digest = selection.digest()
        self.last_key: str | None = None
        self.sent = 0

    def load(self) -> None:
        if not self.path.exists():
            return
        saved = json.loads(self.path.read_text(encoding="utf-8"))
        if saved.get("selection") != self.digest:
            raise CliError(f"{self.path} belongs to another selection: pass --restart or --state")
        self.last_key, self.sent = saved.get("last_key"), int(saved.get("sent", 0))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        doc = {"selection": self.digest, "last_key": self.last_key, "sent": self.sent}
        partial.write_text(json.dumps(doc), encoding="utf-8")
        partial.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def default_state_path(selection: Selection) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ecg-scorer" / f"rescore-{selection.digest()}.json"


def chosen(s3: Any, selection: Selection, after: str | None) -> Iterator[objects.StoredObject]:
    for obj in objects.listing(s3, selection.bucket, selection.prefix, start_after=after):
        if selection.wants(obj):
            yield obj


def queued(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=QUEUE_ATTRIBUTES)
    return sum(int(attributes["Attributes"].get(name, 0)) for name in QUEUE_ATTRIBUTES)


def send(
    sqs: Any,
    queue_url: str,
    bodies: list[str],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """One SendMessageBatch; entries SQS refuses are sent again, then CliError."""
    pending = {str(n): body for n, body in enumerate(bodies)}
    for attempt in range(SEND_ATTEMPTS):
        entries = [{"Id": i, "MessageBody": b} for i, b in pending.items()]
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        failed = answer.get("Failed", [])
        pending = {f["Id"]: pending[f["Id"]] for f in failed}
        if not pending:
            return
        sleep(2**attempt)
    codes = sorted({f.get("Code", "?") for f in failed})
    raise CliError(f"the scoring queue refused {len(pending)} message(s): {', '.join(codes)}")


def rescore(
    s3: Any,
    sqs: Any,
    queue_url: str,
    selection: Selection,
    state: State,
    region: str,
    max_queued: int,
    progress: render.Progress,
    total: int,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 2.0,
) -> int:
    """Send every chosen object after the state's last key; returns how many this run sent."""
    sent_now = 0
    batch: list[objects.StoredObject] = []

    def flush() -> None:
        nonlocal sent_now
        while (depth := queued(sqs, queue_url)) + len(batch) > max_queued:
            progress.count(state.sent, total, f"waiting: {depth} messages queued")
            sleep(poll_s)
        send(sqs, queue_url, [s3_event(o, selection.bucket, region) for o in batch], sleep)
        state.last_key = batch[-1].key
        state.sent += len(batch)
        sent_now += len(batch)
        state.save()
        progress.count(state.sent, total)
        batch.clear()

    for obj in chosen(s3, selection, state.last_key):
        batch.append(obj)
        if len(batch) == SQS_BATCH:
            flush()
    if batch:
        flush()
    return sent_now


def cmd_rescore(ctx: Context, out: TextIO) -> int:
    args = ctx.args
    selection = selection_of(ctx)
    s3 = ctx.client("s3")
    where = f"s3://{selection.bucket}/{selection.prefix}"
    state = State(Path(args.state) if args.state else default_state_path(selection), selection)
    if args.restart:
        state.clear()
    state.load()
    remaining = sum(1 for _ in chosen(s3, selection, state.last_key))
    total = state.sent + remaining
    if args.dry_run:
        resumed = f" ({state.sent} sent by an earlier run)" if state.sent else ""
        out.write(f"would send {render.plural(remaining, 'file')} under {where}{resumed}\n")
        return 0
    queue_url = ctx.name("queue_url")
    if state.sent:
        out.write(f"resuming after {state.sent} sent (state {state.path})\n")
    progress = render.Progress("rescoring")
    region = ctx.client("sqs").meta.region_name
    sent = rescore(
        s3,
        ctx.client("sqs"),
        queue_url,
        selection,
        state,
        region,
        max_queued=2 * args.concurrency * args.batch_size,
        progress=progress,
        total=total,
    )
    progress.finish()
    state.clear()
    out.write(
        f"sent {render.plural(sent, 'file')} under {where} to the scoring queue "
        f"({state.sent} in all); each is scored by the deployed model version, beside "
        "the results of other versions\n"
    )
    return 0
