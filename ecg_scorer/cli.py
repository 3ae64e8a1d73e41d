"""`ecg-scorer`: ask PredictionsTable the analysts' questions, upload files, replay the DLQ.

The same command works against AWS and the local stack: boto3's standard configuration picks
the account, region and endpoint (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` ...).
Resource names come from a flag, else from ``--stack NAME`` (the CloudFormation outputs of
template.yaml), else from ``ECG_SCORER_TABLE`` / ``ECG_SCORER_BUCKET`` /
``ECG_SCORER_QUEUE_URL`` / ``ECG_SCORER_DLQ_URL``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from ecg_scorer import query

DEFAULT_SINCE = "24h"

# CloudFormation output name and environment variable for each resource the CLI uses.
RESOURCES = {
    "table": ("PredictionsTableName", "ECG_SCORER_TABLE", "--table"),
    "bucket": ("IngestBucketName", "ECG_SCORER_BUCKET", "--bucket"),
    "queue_url": ("ScoringQueueUrl", "ECG_SCORER_QUEUE_URL", "--queue-url"),
    "dlq_url": ("DeadLetterQueueUrl", "ECG_SCORER_DLQ_URL", "--dlq-url"),
}

# Columns of list output, in order (window_probabilities only in json/jsonl). The table shows
# the file's name below incoming/<site>/<device>/; csv keeps the bucket and full key.
TABLE_COLUMNS = (
    "recorded_at",
    "site",
    "device",
    "file",
    "status",
    "probability",
    "label",
    "windows",
    "model_version",
    "reason",
)
LIST_COLUMNS = (
    "recorded_at",
    "site",
    "device",
    "bucket",
    "key",
    "status",
    "probability",
    "label",
    "windows",
    "model_version",
    "reason",
)
EXPORT_COLUMNS = (
    "recorded_at",
    "site",
    "device",
    "bucket",
    "key",
    "version_id",
    "status",
    "outcome",
    "label",
    "probability",
    "threshold",
    "windows",
    "last_window_padded",
    "window_probabilities",
    "model_version",
    "endpoint",
    "recorded_at_source",
    "uploaded_at",
    "scored_at",
    "etag",
    "size_bytes",
    "format",
    "sampling_rate_hz",
    "leads_found",
    "record_id",
    "patient_ref",
    "reason",
    "s3_sequencer",
)
TABLE_CELL_MAX = 60

_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 1."""


# ------------------------------------------------------------------ times


def parse_time(text: str, now: datetime) -> datetime:
    """ISO 8601 (naive means UTC), ``now``, or an age before now: ``90m``, ``24h``, ``7d``."""
    value = text.strip()
    if value.lower() == "now":
        return now
    age = _AGE.fullmatch(value.lower())
    if age:
        return now - timedelta(**{_AGE_UNITS[age.group(2)]: float(age.group(1))})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: use ISO 8601 (2026-11-27, 2026-11-27T08:30Z) "
            "or an age such as 90m, 24h, 7d, 2w"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def time_range(args: argparse.Namespace, now: datetime) -> tuple[datetime, datetime]:
    since, until = parse_time(args.since, now), parse_time(args.until, now)
    if since >= until:
        raise ValueError(f"--since ({args.since}) must be before --until ({args.until})")
    return since, until


# ------------------------------------------------------------------ resources


@dataclass
class Context:
    """Where to find things: flags first, then the stack's outputs, then the environment."""

    args: argparse.Namespace
    session: Any
    _outputs: dict[str, str] | None = field(default=None, repr=False)

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def stack_outputs(self) -> dict[str, str]:
        if self._outputs is None:
            cfn = self.client("cloudformation")
            try:
                stack = cfn.describe_stacks(StackName=self.args.stack)["Stacks"][0]
            except ClientError as e:
                raise CliError(f"stack {self.args.stack!r}: {_message(e)}") from e
            self._outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        return self._outputs

    def name(self, resource: str) -> str:
        output, env, flag = RESOURCES[resource]
        value = getattr(self.args, resource, None)
        if value:
            return str(value)
        if self.args.stack:
            outputs = self.stack_outputs()
            if output not in outputs:
                raise CliError(f"stack {self.args.stack!r} has no output {output}")
            return outputs[output]
        if os.environ.get(env):
            return os.environ[env]
        raise CliError(
            f"which {resource.replace('_', ' ')}? pass {flag}, set {env}, or pass --stack"
        )


def _message(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".rstrip(": ")


# ------------------------------------------------------------------ presentation


def plain(value: Any) -> Any:
    """DynamoDB values as JSON-ready Python: Decimal -> int/float, sets -> sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    return value


def cell(value: Any, column: str) -> str:
    """One value as text for a table or CSV cell."""
    if value is None:
        return ""
    value = plain(value)
    if column in {"probability", "threshold"} and isinstance(value, int | float):
        return f"{value:.3f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        if column == "window_probabilities":
            return json.dumps(value)
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def render_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    """A fixed-width table; long cells are cut with an ellipsis."""
    cells = [[_clip(cell(row.get(c), c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    out.write("\n")
    for r in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")


def _file_name(item: dict[str, Any]) -> str:
    key = str(item.get("key", ""))
    prefix = f"incoming/{item.get('site')}/{item.get('device')}/"
    return key.removeprefix(prefix)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TABLE_CELL_MAX else text[: TABLE_CELL_MAX - 1] + "…"


def write_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str], out: TextIO) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([cell(row.get(c), c) for c in columns])
        count += 1
    return count


def write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(plain(query.public(row)), sort_keys=True) + "\n")
        count += 1
    return count


def show_items(items: Iterable[dict[str, Any]], fmt: str, out: TextIO, limit: int | None) -> int:
    rows = list(_take(items, limit))
    if fmt == "json":
        json.dump([plain(query.public(r)) for r in rows], out, indent=2, sort_keys=True)
        out.write("\n")
    elif fmt == "csv":
        write_csv(rows, LIST_COLUMNS, out)
    else:
        if rows:
            render_table([{**r, "file": _file_name(r)} for r in rows], TABLE_COLUMNS, out)
        out.write(f"{len(rows)} result{'s' if len(rows) != 1 else ''}\n")
    return len(rows)


def show_records(items: Sequence[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """Whole items, one block per model version (the `result` command)."""
    if fmt != "table":
        show_items(items, fmt, out, None)
        return
    for n, item in enumerate(items):
        if n:
            out.write("\n")
        fields = query.public(item)
        width = max(len(k) for k in fields)
        for k in sorted(fields):
            out.write(f"{k.ljust(width)}  {cell(fields[k], k)}\n")


def _take(items: Iterable[dict[str, Any]], limit: int | None) -> Iterable[dict[str, Any]]:
    for n, item in enumerate(items):
        if limit is not None and n >= limit:
            return
        yield item


# ------------------------------------------------------------------ operations


def split_s3_uri(text: str) -> tuple[str, str]:
    """``s3://bucket/key`` or ``bucket/key`` -> (bucket, key)."""
    rest = text[len("s3://") :] if text.startswith("s3://") else text
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ValueError(f"not a file location: {text!r} (expected s3://bucket/key or bucket/key)")
    return bucket, key


def upload(
    s3: Any,
    bucket: str,
    path: Path,
    site: str,
    device: str,
    name: str | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """Put one file at incoming/<site>/<device>/<name>, where the pipeline picks it up."""
    for label, part in (("site", site), ("device", device)):
        if not part or "/" in part or part in {".", ".."}:
            raise ValueError(f"bad {label} {part!r}: one path segment, no '/'")
    filename = name or path.name
    if not filename or "/" in filename:
        raise ValueError(f"bad file name {filename!r}")
    key = f"incoming/{site}/{device}/{filename}"
    extra = {"Metadata": metadata} if metadata else None
    s3.upload_file(str(path), bucket, key, ExtraArgs=extra)
    return key


def redrive(
    sqs: Any,
    source_url: str,
    target_url: str,
    limit: int | None = None,
    wait_seconds: int = 1,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Move messages from the DLQ back to the scoring queue; returns how many moved.

    Each message is deleted from the source only after the target accepted it, so a failure
    part-way loses nothing (at worst a message is scored twice, which the store tolerates).
    """
    if source_url == target_url:
        raise ValueError("source and target queue are the same")
    moved = 0
    while limit is None or moved < limit:
        wanted = 10 if limit is None else min(10, limit - moved)
        messages = sqs.receive_message(
            QueueUrl=source_url,
            MaxNumberOfMessages=wanted,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        entries = []
        for n, message in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(n), "MessageBody": message["Body"]}
            if message.get("MessageAttributes"):
                entry["MessageAttributes"] = message["MessageAttributes"]
            entries.append(entry)
        sent = sqs.send_message_batch(QueueUrl=target_url, Entries=entries)
        accepted = {s["Id"] for s in sent.get("Successful", [])}
        done = [
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
            for n, m in enumerate(messages)
            if str(n) in accepted
        ]
        if done:
            sqs.delete_message_batch(QueueUrl=source_url, Entries=done)
        moved += len(done)
        if progress:
            progress(moved)
        if sent.get("Failed"):
            reasons = sorted({f.get("Code", "?") for f in sent["Failed"]})
            raise CliError(
                f"moved {moved}; the scoring queue refused {len(sent['Failed'])} "
                f"({', '.join(reasons)}); they stay in the DLQ"
            )
    return moved


def queue_arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def redrive_move_task(
    sqs: Any,
    source_url: str,
    target_url: str,
    timeout_s: float = 300.0,
    poll_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Move the DLQ back with SQS's own message move task and wait for it to finish.

    SQS moves the messages server-side; the count is the task's
    ApproximateNumberOfMessagesMoved once it is COMPLETED.
    """
    if source_url == target_url:
        raise ValueError("source and target queue are the same")
    source_arn = queue_arn(sqs, source_url)
    sqs.start_message_move_task(SourceArn=source_arn, DestinationArn=queue_arn(sqs, target_url))
    deadline = clock() + timeout_s
    while True:
        # Newest first, and only one task may run per source queue: the first is ours.
        tasks = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=1)["Results"]
        task = tasks[0] if tasks else {}
        status = task.get("Status", "RUNNING")
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if status == "COMPLETED":
            return moved
        if status in {"FAILED", "CANCELLED", "CANCELLING"}:
            reason = task.get("FailureReason") or status.lower()
            raise CliError(f"the SQS move task stopped after moving {moved}: {reason}")
        if clock() >= deadline:
            raise CliError(
                f"the SQS move task is still running after {timeout_s:.0f} s ({moved} moved so "
                f"far); it carries on in SQS: aws sqs list-message-move-tasks --source-arn "
                f"{source_arn}"
            )
        sleep(poll_s)


def runs_on_aws(sqs: Any) -> bool:
    """True when the client talks to SQS itself, not to an emulator such as moto's server."""
    host = urlsplit(str(sqs.meta.endpoint_url)).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


# ------------------------------------------------------------------ commands


def cmd_result(ctx: Context, out: TextIO) -> int:
    bucket, key = split_s3_uri(ctx.args.file)
    items = query.file_results(ctx.client("dynamodb"), ctx.name("table"), bucket, key)
    if not items:
        raise CliError(f"no result for s3://{bucket}/{key} (not uploaded, or not scored yet)")
    show_records(items, ctx.args.format, out)
    return 0


def cmd_list(ctx: Context, out: TextIO, now: datetime) -> int:
    """device, site, anomalies, rejected: the command's time-ranged query, listed."""
    since, until = time_range(ctx.args, now)
    select: Selection = ctx.args.select
    items = select(ctx.client("dynamodb"), ctx.name("table"), since, until, ctx.args)
    show_items(items, ctx.args.format, out, ctx.args.limit)
    return 0


# What a listing command asks the table: (client, table, since, until, args) -> items.
Selection = Callable[[Any, str, datetime, datetime, argparse.Namespace], Iterable[dict[str, Any]]]

SELECTIONS: dict[str, Selection] = {
    "device": lambda client, table, since, until, a: query.device_results(
        client, table, a.site, a.device, since, until, a.page_size
    ),
    "site": lambda client, table, since, until, a: query.site_results(
        client, table, a.site, since, until, a.page_size
    ),
    "anomalies": lambda client, table, since, until, a: query.anomalies(
        client, table, since, until, a.min_probability, a.page_size
    ),
    "rejected": lambda client, table, since, until, a: query.rejected(
        client, table, since, until, a.page_size
    ),
}


def cmd_export(ctx: Context, out: TextIO, now: datetime) -> int:
    since, until = time_range(ctx.args, now)
    items = query.export(
        ctx.client("dynamodb"), ctx.name("table"), since, until, ctx.args.page_size
    )
    target: TextIO
    if ctx.args.out:
        # Write beside the target and rename at the end: a failed export leaves no half file.
        final = Path(ctx.args.out)
        partial = final.with_name(final.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as target:
                count = _export_to(items, ctx.args.format, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(final)
        print(f"exported {count} results to {final}", file=sys.stderr)
    else:
        _export_to(items, ctx.args.format, out)
    return 0


def _export_to(items: Iterable[dict[str, Any]], fmt: str, target: TextIO) -> int:
    if fmt == "csv":
        return write_csv(items, EXPORT_COLUMNS, target)
    return write_jsonl(items, target)


def cmd_redrive(ctx: Context, out: TextIO) -> int:
    source, target = ctx.name("dlq_url"), ctx.name("queue_url")
    sqs = ctx.client("sqs")
    method = ctx.args.method
    if method == "move-task" and ctx.args.max_messages:
        raise ValueError("--max-messages needs --method loop (an SQS move task moves everything)")
    if method == "auto":
        # SQS's move task where it exists; emulators (the local stack's moto) lack it.
        use_task = runs_on_aws(sqs) and not ctx.args.max_messages
        method = "move-task" if use_task else "loop"
    if method == "move-task":
        moved = redrive_move_task(sqs, source, target, timeout_s=ctx.args.timeout)
    else:
        moved = redrive(
            sqs, source, target, limit=ctx.args.max_messages, wait_seconds=ctx.args.wait_seconds
        )
    out.write(
        f"moved {moved} message{'s' if moved != 1 else ''} from the DLQ to the scoring queue\n"
    )
    return 0


def cmd_upload(ctx: Context, out: TextIO) -> int:
    path = Path(ctx.args.file)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    metadata = {}
    for pair in ctx.args.metadata or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"bad --metadata {pair!r}: expected KEY=VALUE")
        metadata[name] = value
    bucket = ctx.name("bucket")
    key = upload(
        ctx.client("s3"), bucket, path, ctx.args.site, ctx.args.device, ctx.args.name, metadata
    )
    out.write(f"uploaded {path.stat().st_size} bytes to s3://{bucket}/{key}\n")
    return 0


# ------------------------------------------------------------------ argument parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-scorer",
        description="Query ECG scoring results, upload ECG files, replay failed files.",
        epilog="Names come from flags, else --stack outputs, else ECG_SCORER_TABLE, "
        "ECG_SCORER_BUCKET, ECG_SCORER_QUEUE_URL, ECG_SCORER_DLQ_URL. AWS access uses boto3's "
        "standard configuration; set AWS_ENDPOINT_URL to talk to the local stack.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where")
    where.add_argument("--stack", help="read names from this CloudFormation stack's outputs")
    where.add_argument("--region", help="AWS region (default: boto3's configuration)")

    table = argparse.ArgumentParser(add_help=False, parents=[common])
    table.add_argument("--table", help="PredictionsTable name (env ECG_SCORER_TABLE)")
    table.add_argument(
        "--format", choices=["table", "csv", "json"], default="table", help="output (default table)"
    )
    table.add_argument("--page-size", type=_positive, help=argparse.SUPPRESS)

    ranged = argparse.ArgumentParser(add_help=False, parents=[table])
    ranged.add_argument(
        "--since", default=DEFAULT_SINCE, help="start, inclusive: ISO 8601 or an age like 7d (24h)"
    )
    ranged.add_argument("--until", default="now", help="end, exclusive: ISO 8601 or an age (now)")
    ranged.add_argument("--limit", type=_positive, help="show at most this many results")

    p = commands.add_parser(
        "result", parents=[table], help="one file's results (every model version)"
    )
    p.add_argument("file", help="s3://bucket/key or bucket/key")
    p.set_defaults(run=cmd_result)

    p = commands.add_parser("device", parents=[ranged], help="a device's results, newest first")
    p.add_argument("site")
    p.add_argument("device")
    p.set_defaults(run=cmd_list, timed=True, select=SELECTIONS["device"])

    p = commands.add_parser("site", parents=[ranged], help="a site's results, newest first")
    p.add_argument("site")
    p.set_defaults(run=cmd_list, timed=True, select=SELECTIONS["site"])

    p = commands.add_parser(
        "anomalies", parents=[ranged], help="anomalous results, most probable first"
    )
    p.add_argument(
        "--min-probability", type=_probability, help="only results at least this probable"
    )
    p.set_defaults(run=cmd_list, timed=True, select=SELECTIONS["anomalies"])

    p = commands.add_parser(
        "rejected", parents=[ranged], help="rejected files and why, newest first"
    )
    p.set_defaults(run=cmd_list, timed=True, select=SELECTIONS["rejected"])

    p = commands.add_parser(
        "export", parents=[common], help="every result of a time range as CSV or JSON lines"
    )
    p.add_argument("--table", help="PredictionsTable name (env ECG_SCORER_TABLE)")
    p.add_argument("--since", default=DEFAULT_SINCE, help="start, inclusive (24h)")
    p.add_argument("--until", default="now", help="end, exclusive (now)")
    p.add_argument("--format", choices=["csv", "jsonl"], default="jsonl", help="(default jsonl)")
    p.add_argument("--out", help="write to this file instead of standard output")
    p.add_argument("--page-size", type=_positive, help=argparse.SUPPRESS)
    p.set_defaults(run=cmd_export, timed=True)

    p = commands.add_parser(
        "redrive", parents=[common], help="move dead-letter messages back to the scoring queue"
    )
    p.add_argument("--dlq-url", help="dead-letter queue URL (env ECG_SCORER_DLQ_URL)")
    p.add_argument("--queue-url", help="scoring queue URL (env ECG_SCORER_QUEUE_URL)")
    p.add_argument("--max-messages", type=_positive, help="stop after moving this many")
    p.add_argument(
        "--wait-seconds",
        type=int,
        choices=range(0, 21),
        default=1,
        metavar="0-20",
        help="loop: long-poll wait per receive; the move ends at the first empty receive (1)",
    )
    p.add_argument(
        "--method",
        choices=["auto", "move-task", "loop"],
        default="auto",
        help="move-task: SQS StartMessageMoveTask (server-side); loop: receive, send, delete. "
        "auto (default): move-task against AWS, loop against emulators or with --max-messages",
    )
    p.add_argument(
        "--timeout",
        type=_positive,
        default=300,
        help="move-task: seconds to wait for the task to finish (300)",
    )
    p.set_defaults(run=cmd_redrive)

    p = commands.add_parser(
        "upload", parents=[common], help="upload an ECG file to incoming/<site>/<device>/"
    )
    p.add_argument("file", help="local ECG file")
    p.add_argument("--site", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--name", help="object name (default: the file's name)")
    p.add_argument(
        "--metadata", action="append", metavar="KEY=VALUE", help="S3 object metadata; repeatable"
    )
    p.add_argument("--bucket", help="ingest bucket (env ECG_SCORER_BUCKET)")
    p.set_defaults(run=cmd_upload)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = out or sys.stdout
    now = datetime.now(UTC)
    try:
        session = boto3.session.Session(region_name=args.region)
        ctx = Context(args, session)
        if getattr(args, "timed", False):
            return int(args.run(ctx, out, now))
        return int(args.run(ctx, out))
    except ValueError as e:
        parser.error(str(e))
    except CliError as e:
        print(f"ecg-scorer: {e}", file=sys.stderr)
    except NoCredentialsError:
        print(
            "ecg-scorer: no AWS credentials found (configure a profile or role; for the local "
            "stack export its AWS_ENDPOINT_URL and dummy keys)",
            file=sys.stderr,
        )
    except NoRegionError:
        print("ecg-scorer: no AWS region: pass --region or set AWS_REGION", file=sys.stderr)
    except ClientError as e:
        print(f"ecg-scorer: {_explain(e, args)}", file=sys.stderr)
    except S3UploadFailedError as e:
        print(
            f"ecg-scorer: upload failed: {e} (check --bucket, ECG_SCORER_BUCKET or --stack)",
            file=sys.stderr,
        )
    except BotoCoreError as e:
        print(f"ecg-scorer: {e}", file=sys.stderr)
    except BrokenPipeError:
        # `ecg-scorer export | head`: the reader left; that is not an error.
        sys.stderr.close()
    return 1


def _explain(error: ClientError, args: argparse.Namespace) -> str:
    code = error.response.get("Error", {}).get("Code", "")
    if code == "ResourceNotFoundException" and error.operation_name == "Query":
        return (
            f"table not found: {_message(error)} (check --table, ECG_SCORER_TABLE or --stack, "
            "the region and AWS_ENDPOINT_URL)"
        )
    if code in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}:
        return f"queue not found: {_message(error)} (check --dlq-url / --queue-url or --stack)"
    if code == "NoSuchBucket":
        return f"bucket not found: {_message(error)} (check --bucket, ECG_SCORER_BUCKET or --stack)"
    return f"{error.operation_name}: {_message(error)}"


if __name__ == "__main__":
    sys.exit(main())
