"""The command line of ``ecg-scorer``: every command, flag and help text.

Imports nothing heavy (no boto3, no matplotlib): ``ecg-scorer --help`` stays fast. Each
command names the function that runs it as ``"module:function"`` inside ``ecg_scorer.cli``,
imported only when that command runs.
"""

from __future__ import annotations

import argparse

from ecg_scorer import args as types
from ecg_scorer import render, times

DEFAULT_SINCE = "24h"

DESCRIPTION = """\
Find, look at, export, compare and re-score ECG scoring results; upload ECG files; replay
failed files.

  find      result, device, site, anomalies, rejected, sites, devices, resolve
  look      report
  export    export
  compare   compare
  feed      upload, rescore, redrive
"""
EPILOG = (
    """\
Resource names come from a flag, else --stack NAME (the deployed stack's outputs), else
ECG_SCORER_TABLE, ECG_SCORER_BUCKET, ECG_SCORER_QUEUE_URL, ECG_SCORER_DLQ_URL.
AWS access is boto3's standard configuration: AWS_PROFILE, AWS_DEFAULT_REGION (or --region,
or the profile's region; boto3 ignores AWS_REGION), AWS_ENDPOINT_URL for the local stack
(`make local-up` prints what to export). Times: """
    + times.HELP
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecg-scorer",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where")
    where.add_argument("--stack", help="read resource names from this stack's outputs")
    where.add_argument("--region", help="AWS region (default: AWS_DEFAULT_REGION or the profile)")

    table = argparse.ArgumentParser(add_help=False, parents=[common])
    table.add_argument("--table", help="PredictionsTable name (env ECG_SCORER_TABLE)")
    table.add_argument("--page-size", type=types.positive, help=argparse.SUPPRESS)

    shown = argparse.ArgumentParser(add_help=False)
    shown.add_argument(
        "--format",
        choices=render.FORMATS,
        default="table",
        help="table (default), csv, json or jsonl: the same columns in csv, json and jsonl",
    )

    ranged = argparse.ArgumentParser(add_help=False, parents=[table])
    _time_flags(ranged, DEFAULT_SINCE, "recording time (recorded_at)")
    ranged.add_argument(
        "--limit", type=types.positive, help="show at most this many (says how many exist)"
    )

    bucket = argparse.ArgumentParser(add_help=False)
    bucket.add_argument("--bucket", help="ingest bucket (env ECG_SCORER_BUCKET)")

    def add(
        name: str, run: str, parents: list[argparse.ArgumentParser], help: str
    ) -> argparse.ArgumentParser:
        p = commands.add_parser(name, parents=parents, help=help, description=help)
        p.set_defaults(run=run, parser=p)
        return p

    # -- find
    p = add("result", "listing:cmd_result", [table, shown, bucket], "one file's results")
    p.add_argument(
        "file",
        help="s3://bucket/key, bucket/key, or a key (incoming/...) in the configured bucket",
    )

    p = add(
        "device", "listing:cmd_list", [ranged, shown, bucket], "a device's results, newest first"
    )
    p.add_argument("site")
    p.add_argument("device")

    p = add("site", "listing:cmd_list", [ranged, shown, bucket], "a site's results, newest first")
    p.add_argument("site")

    p = add(
        "anomalies",
        "listing:cmd_list",
        [ranged, shown, bucket],
        "anomalous results, most probable first",
    )
    p.add_argument(
        "--min-probability", type=types.probability, help="only results at least this probable"
    )

    add(
        "rejected",
        "listing:cmd_list",
        [ranged, shown, bucket],
        "rejected files and why, newest first",
    )

    add("sites", "listing:cmd_sites", [table, shown], "every site that has sent files")
    p = add("devices", "listing:cmd_devices", [table, shown], "every device (of one site)")
    p.add_argument("site", nargs="?", help="only this site's devices")

    p = add(
        "resolve",
        "listing:cmd_resolve",
        [table, shown, bucket],
        'the file behind a hash in the logs ("file": <16 hex digits>)',
    )
    p.add_argument("hash", help="the 16-hex-digit file hash a log line carries")
    p.add_argument("--site", help="only look at this site's devices")
    p.add_argument("--device", help="only look at this device (needs --site)")
    _time_flags(p, None, "recording time; default: all time")

    # -- look
    p = add(
        "report",
        "report:cmd_report",
        [table, bucket],
        "an HTML page and PNG of a file's ECG on ECG paper with its window probabilities",
    )
    p.add_argument("file", nargs="?", help="s3://bucket/key, bucket/key or a key in the bucket")
    p.add_argument(
        "--anomalies",
        action="store_true",
        help="a report for every anomalous file in the time range, and an index page",
    )
    _time_flags(p, "7d", "recording time (with --anomalies)")
    p.add_argument("--min-probability", type=types.probability, help="with --anomalies")
    p.add_argument("--limit", type=types.positive, default=50, help="with --anomalies (50)")
    p.add_argument("--model-version", help="which result to show (default: the newest)")
    p.add_argument("--out", default="ecg-report", help="output folder (ecg-report)")

    # -- export
    p = add(
        "export", "listing:cmd_export", [table], "every full result of a time range, oldest first"
    )
    _time_flags(p, DEFAULT_SINCE, "recording time")
    p.add_argument(
        "--format",
        choices=render.FORMATS,
        default="jsonl",
        help="jsonl (default), csv, json, table",
    )
    p.add_argument("--out", help="write to this file (whole or not at all) instead of stdout")

    # -- compare
    p = add(
        "compare",
        "compare:cmd_compare",
        [table, shown],
        "how two model versions differ on the same files: table or json for the summary, "
        "csv or jsonl for one row per file",
    )
    p.add_argument(
        "--model-version",
        action="append",
        required=True,
        metavar="VERSION",
        help="give twice: the old version (A), then the new one (B)",
    )
    p.add_argument("--site", help="only this site")
    p.add_argument("--device", help="only this device (needs --site)")
    _time_flags(p, "30d", "recording time")
    p.add_argument("--top", type=types.positive, default=10, help="largest changes to list (10)")

    # -- feed
    p = add(
        "upload",
        "upload:cmd_upload",
        [common, bucket],
        "upload ECG files (or folders, recursively) to incoming/<site>/<device>/",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--site", required=True)
    p.add_argument("--device", required=True)
    p.add_argument("--name", help="object name for a single file (default: the file's name)")
    p.add_argument(
        "--metadata", action="append", metavar="KEY=VALUE", help="S3 object metadata; repeatable"
    )
    p.add_argument("--jobs", type=types.positive, default=8, help="parallel uploads (8)")

    p = add(
        "rescore",
        "rescore:cmd_rescore",
        [common, bucket],
        "send stored files through the scoring queue again (e.g. for a new model version)",
    )
    p.add_argument("--site", help="only this site's files")
    p.add_argument("--device", help="only this device's files (needs --site)")
    p.add_argument("--prefix", help="only keys below this prefix (inside incoming/)")
    p.add_argument("--since", type=types.time, help="uploaded at or after (S3 LastModified)")
    p.add_argument("--until", type=types.time, help="uploaded before")
    p.add_argument("--dry-run", action="store_true", help="count what would be sent, send nothing")
    p.add_argument("--queue-url", help="scoring queue URL (env ECG_SCORER_QUEUE_URL)")
    p.add_argument(
        "--concurrency",
        type=types.positive,
        default=10,
        help="the endpoint's MaxConcurrency (10): at most this many SQS batches wait queued",
    )
    p.add_argument("--batch-size", type=types.positive, default=10, help="the Lambda's (10)")
    p.add_argument(
        "--state",
        help="resume file (default: ~/.cache/ecg-scorer/rescore-<selection>.json)",
    )
    p.add_argument("--restart", action="store_true", help="ignore the resume file, start over")

    p = add(
        "redrive",
        "redrive:cmd_redrive",
        [common],
        "move dead-letter messages back to the scoring queue",
    )
    p.add_argument("--dlq-url", help="dead-letter queue URL (env ECG_SCORER_DLQ_URL)")
    p.add_argument("--queue-url", help="scoring queue URL (env ECG_SCORER_QUEUE_URL)")
    p.add_argument("--max-messages", type=types.positive, help="stop after moving this many")
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
        type=types.positive,
        default=300,
        help="move-task: seconds to wait for the task to finish (300)",
    )
    return parser


def _time_flags(p: argparse.ArgumentParser, since: str | None, what: str) -> None:
    p.add_argument(
        "--since",
        type=types.time,
        default=since,
        help=f"start of the {what}, inclusive ({since or 'all time'})",
    )
    p.add_argument(
        "--until", type=types.time, default="now", help=f"end of the {what}, exclusive (now)"
    )
