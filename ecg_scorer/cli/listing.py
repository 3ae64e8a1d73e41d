"""The finding commands: one file's results, a time range's results (device, site,
anomalies, rejected), sites and devices, the file behind a log hash, and export.

Every list says how much it shows of how much exists, and an empty range says whether files
were uploaded in it (the range is about recording time, not upload time).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from scorer import keys, schema

from ecg_scorer import query, render
from ecg_scorer.cli import objects
from ecg_scorer.cli.context import CliError, Context

Item = dict[str, Any]

# What a list shows: the columns every index projects (schema.INDEX_PROJECTION), where and
# when first, plus the file's hash (what logs name it by). The terminal table shows fewer,
# the file by its name.
_FIRST = ("recorded_at", "uploaded_at", "site", "device", "bucket", "key", "file_hash")
LIST_COLUMNS = _FIRST + tuple(c for c in schema.INDEX_PROJECTION if c not in _FIRST)
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
# A full item (result, export): everything the store writes, and what it is about to write
# (window_quality, leads_derived, windows_s3_uri) so nothing is left out when it arrives.
EXPORT_COLUMNS = (
    "recorded_at",
    "site",
    "device",
    "bucket",
    "key",
    "file_hash",
    "version_id",
    "status",
    "outcome",
    "label",
    "probability",
    "threshold",
    "windows",
    "windows_usable",
    "window_probabilities",
    "window_start_s",
    "window_quality",
    "quality_note",
    "windows_s3_uri",
    "model_version",
    "endpoint",
    "recorded_at_source",
    "uploaded_at",
    "scored_at",
    "etag",
    "size_bytes",
    "format",
    "duration_s",
    "sampling_rate_hz",
    "sampling_rate_assumed",
    "leads_found",
    "leads_derived",
    "record_id",
    "patient_ref",
    "reason_code",
    "reason",
    "s3_sequencer",
)
REGISTRY_COLUMNS = ("site", "device", "first_seen")
SITE_COLUMNS = ("site", "devices", "first_seen")
UPLOAD_COUNT_MAX = 10_000  # objects listed for the empty-range hint before saying "at least"


def derived(item: Item) -> Item:
    """The item with the columns computed from it: ``file`` (the name below the device's
    folder) and ``file_hash`` (how logs name the file)."""
    bucket, key = str(item.get("bucket", "")), str(item.get("key", ""))
    if item.get("site") and item.get("device"):
        name = key.removeprefix(keys.prefix(str(item["site"]), str(item["device"])))
    else:
        name = key.removeprefix(keys.INCOMING)
    return {**item, "file": name, "file_hash": schema.file_hash(bucket, key) if key else None}


# ------------------------------------------------------------------ one file


def cmd_result(ctx: Context, out: TextIO) -> int:
    bucket, key = objects.locate(ctx, ctx.args.file)
    items = query.file_results(ctx.client("dynamodb"), ctx.name("table"), bucket, key)
    if not items:
        raise CliError(objects.why_no_result(ctx.client("s3"), bucket, key))
    rows = [derived(query.public(item)) for item in items]
    if ctx.args.format == "table":
        out.write("\n".join(render.record(r) for r in rows))
    else:
        render.write_rows(rows, EXPORT_COLUMNS, ctx.args.format, out)
    return 0


# ------------------------------------------------------------------ a time range

# command -> (what the rows are called, plural; the query; the S3 prefix of its files)
Select = Callable[[Context, Any, str, datetime, datetime], Iterable[Item]]
LISTS: dict[str, tuple[str, Select, Callable[[Any], str]]] = {
    "device": (
        "results",
        lambda ctx, c, t, s, u: query.device_results(
            c, t, ctx.args.site, ctx.args.device, s, u, ctx.args.page_size
        ),
        lambda a: keys.prefix(a.site, a.device),
    ),
    "site": (
        "results",
        lambda ctx, c, t, s, u: query.site_results(c, t, ctx.args.site, s, u, ctx.args.page_size),
        lambda a: keys.prefix(a.site),
    ),
    "anomalies": (
        "anomalies",
        lambda ctx, c, t, s, u: query.anomalies(
            c, t, s, u, ctx.args.min_probability, ctx.args.page_size
        ),
        lambda a: keys.prefix(),
    ),
    "rejected": (
        "rejected files",
        lambda ctx, c, t, s, u: query.rejected(c, t, s, u, ctx.args.page_size),
        lambda a: keys.prefix(),
    ),
}


def cmd_list(ctx: Context, out: TextIO) -> int:
    """device, site, anomalies, rejected: the command's query over a time range, listed."""
    since, until = ctx.time_range()
    noun, select, prefix = LISTS[ctx.args.command]
    found = iter(select(ctx, ctx.client("dynamodb"), ctx.name("table"), since, until))
    shown = [derived(item) for item in itertools.islice(found, ctx.args.limit)]
    more = sum(1 for _ in found)  # "showing N of M": the rest is counted, not shown
    fmt = ctx.args.format
    if fmt == "table":
        if shown:
            out.write(render.table(shown, TABLE_COLUMNS))
        if more:
            out.write(f"showing {len(shown)} of {len(shown) + more} (use --limit)\n")
        else:
            out.write(render.plural(len(shown), "result") + "\n")
    else:
        render.write_rows(shown, LIST_COLUMNS, fmt, out)
        if more:
            print(f"showing {len(shown)} of {len(shown) + more} (use --limit)", file=sys.stderr)
    if not shown:
        print(_empty_hint(ctx, noun, prefix(ctx.args), since, until), file=sys.stderr)
    return 0


def _empty_hint(ctx: Context, noun: str, prefix: str, since: datetime, until: datetime) -> str:
    """Why a range can be empty: it is about recording time; say how many uploads it holds."""
    head = f"0 {noun} for recording time in [{_t(since)}, {_t(until)})"
    bucket = ctx.maybe_name("bucket")
    if bucket is None:
        return f"{head}; the range is the recording's time (recorded_at), not the upload's"
    uploaded, capped = objects.count_uploaded(
        ctx.client("s3"), bucket, prefix, since, until, UPLOAD_COUNT_MAX
    )
    where = f"s3://{bucket}/{prefix}"
    if not uploaded:
        return f"{head}; nothing was uploaded in that range under {where} either"
    count = f"{'at least ' if capped else ''}{uploaded}"
    return (
        f"{head}; {count} uploaded in range under {where} "
        "(recording times can be older than uploads: widen --since)"
    )


def _t(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%MZ}"


# ------------------------------------------------------------------ sites and devices


def cmd_devices(ctx: Context, out: TextIO) -> int:
    rows = query.registry(ctx.client("dynamodb"), ctx.name("table"), ctx.args.site)
    _show(rows, REGISTRY_COLUMNS, ctx.args.format, out, "device")
    return 0


def cmd_sites(ctx: Context, out: TextIO) -> int:
    rows: list[Item] = []
    registered = query.registry(ctx.client("dynamodb"), ctx.name("table"))
    for site, group in itertools.groupby(registered, key=lambda item: item["site"]):
        members = list(group)
        rows.append(
            {
                "site": site,
                "devices": len(members),
                "first_seen": min(str(m.get("first_seen", "")) for m in members),
            }
        )
    _show(rows, SITE_COLUMNS, ctx.args.format, out, "site")
    return 0


def _show(rows: list[Item], columns: tuple[str, ...], fmt: str, out: TextIO, noun: str) -> None:
    if fmt != "table":
        render.write_rows(rows, columns, fmt, out)
        return
    if rows:
        out.write(render.table(rows, columns))
    out.write(render.plural(len(rows), noun) + "\n")


# ------------------------------------------------------------------ hashes in the logs


def cmd_resolve(ctx: Context, out: TextIO) -> int:
    wanted = ctx.args.hash.strip().lower()
    if len(wanted) != 16 or any(ch not in "0123456789abcdef" for ch in wanted):
        raise ValueError(f"{ctx.args.hash!r} is not a file hash: 16 hex digits, as logs carry")
    since, until = ctx.time_range()
    table = ctx.name("table")
    rows = [
        derived(item)
        for item in query.find_hash(
            ctx.client("dynamodb"), table, wanted, since, until, ctx.args.site, ctx.args.device
        )
    ]
    if not rows and (bucket := ctx.maybe_name("bucket")):
        # Never scored (still queued, or in the DLQ): the object itself still has the name.
        prefix = keys.prefix(ctx.args.site, ctx.args.device)
        rows = [
            derived({"bucket": bucket, "key": key, "status": "NOT SCORED"})
            for key in objects.keys_with_hash(ctx.client("s3"), bucket, prefix, wanted)
        ]
    if not rows:
        raise CliError(
            f"no file with hash {wanted} in {table}"
            + ("" if ctx.maybe_name("bucket") else " (give --bucket to search the bucket too)")
        )
    columns = (
        "file_hash",
        "bucket",
        "key",
        "site",
        "device",
        "recorded_at",
        "status",
        "model_version",
    )
    _show(rows, columns, ctx.args.format, out, "file")
    return 0


# ------------------------------------------------------------------ export


def cmd_export(ctx: Context, out: TextIO) -> int:
    since, until = ctx.time_range()
    items = query.export(
        ctx.client("dynamodb"), ctx.name("table"), since, until, ctx.args.page_size
    )
    rows: Iterator[Item] = (derived(item) for item in items)
    fmt = ctx.args.format
    if not ctx.args.out:
        _export_to(rows, fmt, out)
        return 0
    # Write beside the target and rename at the end: a failed export leaves no half file.
    final = Path(ctx.args.out)
    partial = final.with_name(final.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as target:
            count = _export_to(rows, fmt, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(final)
    print(f"exported {render.plural(count, 'result')} to {final}", file=sys.stderr)
    return 0


def _export_to(rows: Iterable[Item], fmt: str, target: TextIO) -> int:
    if fmt == "table":
        shown = list(rows)
        target.write(render.table(shown, EXPORT_COLUMNS))
        return len(shown)
    return render.write_rows(rows, EXPORT_COLUMNS, fmt, target)
