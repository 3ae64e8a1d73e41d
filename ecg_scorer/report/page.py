"""HTML pages: one self-contained report per result (figure embedded, no external
resources) and an index with a sortable table and a thumbnail per file."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ecg_scorer import render
from ecg_scorer.report.data import Window

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.3rem; margin-bottom: .2rem; }
.outcome { display: inline-block; padding: .15rem .6rem; border-radius: .3rem; color: #fff;
           font-weight: 600; }
.ANOMALOUS { background: #c0392b; } .NORMAL { background: #2e8b57; }
.REJECTED { background: #777; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .85rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable::after { content: " \\2195"; color: #999; }
img.ecg { max-width: 100%; border: 1px solid #ddd; }
img.thumb { width: 220px; height: auto; display: block; }
#results td, #results th { white-space: nowrap; }
.note { color: #8a5a00; }
td.unusable { background: #eee; color: #555; }
"""

# Sorts the index by a column on a header click; "#sort=<column>:<asc|desc>" in the URL sorts
# on load (a link can share an order, and a headless browser test can check the script).
SORT_SCRIPT = """
function sortBy(column, descending) {
  const table = document.getElementById('results');
  const body = table.tBodies[0];
  const index = [...table.tHead.rows[0].cells].findIndex(c => c.dataset.column === column);
  if (index < 0) return;
  const key = row => row.cells[index].dataset.sort ?? row.cells[index].textContent;
  const rows = [...body.rows];
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    const nx = parseFloat(x), ny = parseFloat(y);
    const order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
    return descending ? -order : order;
  });
  rows.forEach(row => body.appendChild(row));
  table.dataset.sortedBy = column + ':' + (descending ? 'desc' : 'asc');
}
document.querySelectorAll('th.sortable').forEach(th => th.addEventListener('click', () => {
  const table = document.getElementById('results');
  const descending = table.dataset.sortedBy !== th.dataset.column + ':desc';
  sortBy(th.dataset.column, descending);
}));
const wanted = /^#sort=([a-z_]+):(asc|desc)$/.exec(location.hash);
if (wanted) sortBy(wanted[1], wanted[2] === 'desc');
"""


def _e(value: Any, column: str = "") -> str:
    return html.escape(render.cell(value, column), quote=True)


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _document(title: str, body: str, script: str = "") -> str:
    tail = f"<script>{script}</script>" if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}{tail}</body></html>\n"
    )


def report_page(
    item: Mapping[str, Any],
    figure: Path | None,
    windows: Sequence[Window],
    notes: Sequence[str],
    others: Sequence[Mapping[str, Any]],
) -> str:
    """One result: outcome, the figure (embedded), notes, every window, all metadata."""
    outcome = str(item.get("outcome") or item.get("status") or "")
    name = str(item.get("key", "")).rsplit("/", 1)[-1]
    head = (
        f"<h1>{html.escape(name)}</h1>"
        f'<p><span class="outcome {html.escape(outcome)}" id="outcome">'
        f"{html.escape(outcome)}</span> "
        f'probability <b id="probability">{_e(item.get("probability"), "probability")}</b> '
        f"(threshold {_e(item.get('threshold'))}) &middot; model "
        f'<b id="model-version">{_e(item.get("model_version"))}</b> &middot; recorded '
        f"{_e(item.get('recorded_at'))} &middot; "
        f"{_e(item.get('site'))} / {_e(item.get('device'))}</p>"
    )
    parts = [head]
    if item.get("reason"):
        parts.append(f'<p id="reason"><b>Rejected:</b> {_e(item.get("reason"))}</p>')
    if figure is not None:
        parts.append(
            f'<img class="ecg" id="ecg" src="{_data_uri(figure)}" '
            f'alt="ECG on standard paper, 25 mm/s, 10 mm/mV, with window probabilities">'
        )
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in notes]
    if windows:
        rows = "".join(
            f"<tr><td>{n + 1}</td><td>{w.start_s:g}</td>"
            + (
                f'<td class="unusable">not scored: {html.escape(w.quality)}</td>'
                if w.probability is None
                else f"<td>{w.probability:.3f}</td>"
            )
            + f"<td>{html.escape(w.quality)}</td></tr>"
            for n, w in enumerate(windows)
        )
        parts.append(
            '<h2>Windows</h2><table id="windows"><thead><tr><th>#</th><th>start (s)</th>'
            f"<th>probability</th><th>signal quality</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    if others:
        rows = "".join(
            f"<tr><td>{_e(o.get('model_version'))}</td><td>{_e(o.get('outcome'))}</td>"
            f"<td>{_e(o.get('probability'))}</td><td>{_e(o.get('scored_at'))}</td></tr>"
            for o in others
        )
        parts.append(
            '<h2>Other model versions</h2><table id="versions"><thead><tr><th>model version'
            "</th><th>outcome</th><th>probability</th><th>scored at</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    skipped = {"window_probabilities", "window_start_s", "window_quality"}
    fields = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_e(v)}</td></tr>"
        for k, v in sorted(item.items())
        if k not in skipped
    )
    parts.append(f'<h2>Stored result</h2><table id="metadata">{fields}</table>')
    return _document(f"ECG report: {name}", "".join(parts))


INDEX_COLUMNS = (
    ("recorded_at", "recorded at"),
    ("site", "site"),
    ("device", "device"),
    ("file", "file"),
    ("probability", "probability"),
    ("label", "label"),
    ("windows", "windows"),
    ("model_version", "model version"),
)


def index_page(title: str, entries: Sequence[Mapping[str, Any]], notes: Sequence[str]) -> str:
    """A sortable table of reports; each entry has the row's columns plus ``page`` (the
    report's file name) and ``thumbnail`` (a PNG file name beside it, or None)."""
    header = "<th>trace</th>" + "".join(
        f'<th class="sortable" data-column="{c}">{html.escape(label)}</th>'
        for c, label in INDEX_COLUMNS
    )
    rows = []
    for entry in entries:
        link = html.escape(str(entry["page"]), quote=True)
        thumb = (
            f'<a href="{link}"><img class="thumb" src="{html.escape(str(entry["thumbnail"]))}" '
            'alt="lead II, first strip"></a>'
            if entry.get("thumbnail")
            else ""
        )
        cells = []
        for column, _ in INDEX_COLUMNS:
            text = html.escape(render.cell(entry.get(column), column))
            if column == "file":
                text = f'<a href="{link}">{text}</a>'
            cells.append(f'<td class="{column}" data-sort="{_e(entry.get(column))}">{text}</td>')
        rows.append(f"<tr><td>{thumb}</td>{''.join(cells)}</tr>")
    body = (
        f"<h1>{html.escape(title)}</h1>"
        + "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
        + f"<p>{render.plural(len(entries), 'file')}; click a column to sort.</p>"
        + f'<table id="results"><thead><tr>{header}</tr></thead>'
        + f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return _document(title, body, SORT_SCRIPT)
