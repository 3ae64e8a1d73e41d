"""``ecg-scorer report``: a file's ECG on ECG paper with its window probabilities, as a
self-contained HTML page and a PNG; with ``--anomalies``, one report per anomalous result of
a time range and an index page linking them.

Files are named by the file's hash (``schema.file_hash``, what logs call it) and the model
version, never by the key, which can carry patient data.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError
from scorer import schema
from scorer.errors import RejectedFile

from ecg_scorer import query, render
from ecg_scorer.cli import objects
from ecg_scorer.cli.context import CliError, Context
from ecg_scorer.report import data, figure, page

Item = dict[str, Any]


def base_name(item: Item) -> str:
    version = re.sub(r"[^A-Za-z0-9._-]", "_", str(item.get("model_version", "")))
    return f"{schema.file_hash(str(item['bucket']), str(item['key']))}-{version}"


def write_report(
    s3: Any, item: Item, others: list[Item], out_dir: Path, model: data.Model
) -> tuple[Path, Path | None]:
    """The report of one result: ``<name>.html`` and ``<name>.png`` (and a thumbnail) in
    ``out_dir``; returns the page and the thumbnail (None without a trace)."""
    name = base_name(item)
    figures = data.windows_of(item, s3, model)
    notes = list(figures.notes)
    png, thumb = out_dir / f"{name}.png", out_dir / f"{name}-thumb.png"
    drawn: Path | None = None
    try:
        trace = data.load_trace(s3, item, model)
    except RejectedFile as e:
        notes.append(f"no trace: {e}")
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "?")
        notes.append(f"no trace: the object cannot be read from S3 ({code})")
    else:
        windows = figures.windows or [data.Window(0.0, None, "not scored")]
        threshold = float(item.get("threshold") or 0.5)
        title = (
            f"{str(item['key']).rsplit('/', 1)[-1]}   {item.get('outcome', '')}   "
            f"p={render.cell(item.get('probability'), 'probability')}   "
            f"model {item.get('model_version', '')}"
        )
        shown = figure.draw(trace, windows, threshold, title, png, model.window_s, thumb)
        if shown.rows_shown < shown.rows_total:
            notes.append(
                f"showing {shown.rows_shown} of {shown.rows_total} strips: those holding the "
                "most probable windows (the overview above covers every window)"
            )
        drawn = png
    html = page.report_page(query.public(item), drawn, figures.windows, notes, others)
    target = out_dir / f"{name}.html"
    target.write_text(html, encoding="utf-8")
    return target, (thumb if drawn else None)


def cmd_report(ctx: Context, out: TextIO) -> int:
    args = ctx.args
    if bool(args.anomalies) == bool(args.file):
        raise ValueError("give a file, or --anomalies for every anomalous file of a time range")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.anomalies:
        return _anomalies(ctx, out, out_dir)
    bucket, key = objects.locate(ctx, args.file)
    items = query.file_results(ctx.client("dynamodb"), ctx.name("table"), bucket, key)
    if not items:
        raise CliError(objects.why_no_result(ctx.client("s3"), bucket, key))
    if args.model_version:
        chosen = [i for i in items if i.get("model_version") == args.model_version]
        if not chosen:
            versions = ", ".join(sorted(str(i.get("model_version")) for i in items))
            raise CliError(f"no result of {args.model_version} for this file (it has {versions})")
        item = chosen[0]
    else:
        item = max(items, key=lambda i: str(i.get("scored_at", "")))
    others = [i for i in items if i is not item]
    html, _ = write_report(ctx.client("s3"), item, others, out_dir, data.Model.from_env())
    out.write(f"wrote {html} and {html.with_suffix('.png')}\n")
    return 0


def _anomalies(ctx: Context, out: TextIO, out_dir: Path) -> int:
    args = ctx.args
    since, until = ctx.time_range()
    client, table = ctx.client("dynamodb"), ctx.name("table")
    found = iter(query.anomalies(client, table, since, until, args.min_probability))
    chosen = list(itertools.islice(found, args.limit))
    more = sum(1 for _ in found)
    s3, model = ctx.client("s3"), data.Model.from_env()
    progress = render.Progress("reports")
    entries = []
    for n, item in enumerate(query.full_items(client, table, chosen), start=1):
        html, thumb = write_report(s3, item, [], out_dir, model)
        row = {**item, "file": str(item.get("key", "")).rsplit("/", 1)[-1]}
        entries.append({**row, "page": html.name, "thumbnail": thumb.name if thumb else None})
        progress.count(n, len(chosen))
    progress.finish()
    notes = [f"recording time {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"]
    if more:
        notes.append(f"showing {len(chosen)} of {len(chosen) + more} (use --limit)")
    index = out_dir / "index.html"
    index.write_text(page.index_page("Anomalous ECGs", entries, notes), encoding="utf-8")
    out.write(f"wrote {render.plural(len(entries), 'report')} and {index}\n")
    if more:
        out.write(f"showing {len(chosen)} of {len(chosen) + more} (use --limit)\n")
    return 0
