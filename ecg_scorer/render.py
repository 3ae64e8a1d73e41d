"""How results look: terminal tables that wrap long text (never cut it), CSV, JSON and JSON
lines with the same columns, and progress lines that rewrite themselves on a terminal.

Shared by ``ecg-scorer``, the local demo and ``deploy_model.py``. Values may be what DynamoDB
returns (``Decimal``, sets); :func:`plain` turns them into JSON-ready Python.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TextIO

FORMATS = ("table", "csv", "json", "jsonl")
# Columns shown with three decimals.
DECIMAL_COLUMNS = frozenset(
    {"probability", "threshold", "probability_a", "probability_b", "change"}
)
MIN_WRAP_WIDTH = 24


def plain(value: Any) -> Any:
    """DynamoDB values as JSON-ready Python: Decimal -> int/float, sets -> sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    return value


def cell(value: Any, column: str = "") -> str:
    """One value as the text of a table or CSV cell ("" for none)."""
    if value is None:
        return ""
    value = plain(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column in DECIMAL_COLUMNS and isinstance(value, int | float):
        return f"{value:.3f}"
    if isinstance(value, list):
        if any(isinstance(v, int | float) or v is None for v in value):
            return json.dumps(value)  # numbers keep their brackets: they parse back as JSON
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    width: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """A fixed-width table whose last column wraps to the terminal's width (never cut);
    columns empty in every row are left out.

    ``width`` defaults to the terminal's (80 when not a terminal is too narrow for most
    tables: then the last column wraps at its own width of at least MIN_WRAP_WIDTH).
    """
    headers = headers or {}
    # A column empty in every row says nothing: its room goes to the wrapped last column.
    columns = [c for c in columns[:-1] if any(cell(r.get(c)) for r in rows)] + [columns[-1]]
    names = [headers.get(c, c.upper()) for c in columns]
    cells = [[" ".join(cell(row.get(c), c).split()) for c in columns] for row in rows]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    total = width or shutil.get_terminal_size((160, 24)).columns
    fixed = sum(widths[:-1]) + 2 * (len(widths) - 1)
    last = max(MIN_WRAP_WIDTH, total - fixed)
    indent = " " * (fixed + (2 if len(widths) > 1 else 0)) if len(widths) > 1 else ""
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip()]
    for r in cells:
        head = "  ".join(v.ljust(w) for v, w in zip(r[:-1], widths[:-1], strict=True))
        wrapped = textwrap.wrap(r[-1], last, break_long_words=True, break_on_hyphens=False)
        first = wrapped[0] if wrapped else ""
        lines.append(f"{head}  {first}".rstrip() if len(r) > 1 else first)
        lines.extend(indent + more for more in wrapped[1:])
    return "\n".join(lines) + "\n"


def record(fields: Mapping[str, Any], width: int | None = None) -> str:
    """One item as ``name  value`` lines, long values wrapped under themselves."""
    if not fields:
        return ""
    name_width = max(len(k) for k in fields)
    total = width or shutil.get_terminal_size((160, 24)).columns
    room = max(MIN_WRAP_WIDTH, total - name_width - 2)
    lines = []
    for name in sorted(fields):
        text = cell(fields[name], name)
        wrapped = textwrap.wrap(text, room, break_long_words=True, break_on_hyphens=False) or [""]
        lines.append(f"{name.ljust(name_width)}  {wrapped[0]}".rstrip())
        lines.extend(" " * (name_width + 2) + more for more in wrapped[1:])
    return "\n".join(lines) + "\n"


def row_values(row: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """The row's columns, JSON-ready; a missing column is None (null), so every format has
    the same columns."""
    return {c: plain(row.get(c)) for c in columns}


def write_rows(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], fmt: str, out: TextIO
) -> int:
    """Rows as csv, json (one array) or jsonl (one object a line), streaming where the
    format allows; returns how many. The same columns in every format."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row.get(c), c) for c in columns])
            count += 1
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row_values(row, columns)) + "\n")
            count += 1
    elif fmt == "json":
        values = [row_values(row, columns) for row in rows]
        json.dump(values, out, indent=2)
        out.write("\n")
        count = len(values)
    else:
        raise ValueError(f"unknown format {fmt!r}: one of csv, json, jsonl")
    return count


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class Progress:
    """A status line that rewrites itself on a terminal; elsewhere (logs, CI) it prints a
    line only when the text changes, at most every ``every_s`` seconds for counts.

    ``count(done, total)`` shows ``label  120/500  24%  31.0/s  ~12s left``; ``line(text)``
    any text; ``step(text)`` a permanent line; ``finish(text)`` ends the status line.
    """

    def __init__(
        self,
        label: str = "",
        out: TextIO | None = None,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.out = out or sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.every_s = every_s
        self.clock = clock
        self.started = clock()
        self._shown = ""
        self._width = 0
        self._printed_at = -1e9

    def elapsed(self) -> float:
        return self.clock() - self.started

    def line(self, text: str, force: bool = False) -> None:
        if text == self._shown and not force:
            return
        if self.tty:
            self.out.write("\r" + text.ljust(self._width))
            self._width = max(self._width, len(text))
        else:
            self.out.write(text + "\n")
            self._printed_at = self.clock()
        self.out.flush()
        self._shown = text

    def count(self, done: int, total: int | None = None, note: str = "") -> None:
        if not self.tty and done != total and self.clock() - self._printed_at < self.every_s:
            return
        rate = done / self.elapsed() if self.elapsed() > 0 else 0.0
        parts = [self.label, f"{done}/{total}" if total is not None else str(done)]
        if total:
            parts.append(f"{100 * done // total}%")
            if rate > 0 and done < total:
                parts.append(f"{rate:.1f}/s  ~{(total - done) / rate:.0f}s left")
        if note:
            parts.append(note)
        self.line("  ".join(p for p in parts if p))

    def step(self, text: str) -> None:
        """A permanent line (the status line, if any, ends first)."""
        self.finish()
        self.out.write(text + "\n")
        self.out.flush()

    def finish(self, text: str | None = None) -> None:
        if text is not None:
            self.line(text, force=True)
        if self.tty and self._shown:
            self.out.write("\n")
            self.out.flush()
        self._shown, self._width = "", 0
