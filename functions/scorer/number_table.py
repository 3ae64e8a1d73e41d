"""Lines of delimited numbers -> the float32 signal (and time column), parsed by NumPy a
chunk at a time: the rows of a CSV and of a JSON "signals" array.

Never one Python object per value: each chunk of whole lines goes to ``np.loadtxt``, again
with gap cells made nan if it refuses them, and only then line by line in Python, which
names the bad line (:class:`BadLine`); the caller turns that into its own reason.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

MAX_LINE_BYTES = 64 * 1024  # one CSV line or JSON row; 64 leads of numbers need ~2 KB


class BadLine(Exception):
    """A line of numbers that cannot be read: its number (1-based, in the text given to
    :func:`parse_table`) and the 1-based column of the bad cell, or its field count."""

    def __init__(self, line: int, column: int | None = None, fields: int | None = None) -> None:
        super().__init__(line, column, fields)
        self.line, self.column, self.fields = line, column, fields


@dataclass(frozen=True)
class Table:
    """How to turn lines of delimited numbers into the signal (and time) columns."""

    columns: int  # fields per line
    keep: list[int]  # the lead columns kept, in order
    factors: np.ndarray  # float64 per kept column, to mV
    time: int | None = None  # the time column, if any
    time_factor: float = 1.0  # to seconds
    delimiter: str = ","
    gaps: bool = True  # empty, NA and null cells are gaps (CSV); JSON has only null


# null/NA cells (one token between delimiters, maybe quoted): checked by _gap_token.
_GAP_TOKEN = {
    d: re.compile(rf'[nN](?:[uU][lL][lL]|[aA])(?="?[ ]*(?:{re.escape(d)}|\r?$))', re.M)
    for d in (",", ";", "\t")
}


_BLANK_LINE = re.compile(r"^[ \t]+(?=\r?$)", re.M)


def _gaps_to_nan(text: str, delimiter: str) -> str:
    """Empty, null and NA cells -> nan, which NumPy reads (str.replace and one regex:
    ~30 ms per MiB, where a per-cell Python loop would take seconds and a list per row)."""
    d = delimiter
    if d == "\t":  # a line of blanks is no row, though tabs would be cells
        text = _BLANK_LINE.sub("", text)
    for _ in range(2):  # ",,," needs two passes: the replacement consumes the delimiter
        text = text.replace(d + d, d + "nan" + d)
    text = text.replace("\n" + d, "\nnan" + d).replace(d + "\n", d + "nan\n")
    text = text.replace(d + "\r\n", d + "nan\r\n")
    if text.startswith(d):
        text = "nan" + text
    if text.endswith(d):
        text += "nan"

    def token(match: re.Match[str]) -> str:
        before = match.string[match.start() - 1] if match.start() else "\n"
        return "nan" if before in f'{d}\n "' else match.group(0)

    return _GAP_TOKEN[d].sub(token, text)


def _loadtxt(text: str, table: Table) -> np.ndarray | None:
    """NumPy's C parser on whole lines; None if it refuses them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            values = np.loadtxt(
                io.StringIO(text, newline=None),
                delimiter=table.delimiter,
                comments="#",
                quotechar='"',
                ndmin=2,
                dtype=np.float64,
            )
    except ValueError:
        return None
    if values.size == 0:
        return np.empty((0, table.columns))
    return values if values.shape[1] == table.columns else None


def _parse_slowly(text: str, table: Table) -> np.ndarray:
    """Line by line in Python, for a chunk NumPy refused: finds the bad line (BadLine) or
    takes what NumPy does not (e.g. a line of blanks). Bounded: one chunk at a time."""
    gap_tokens = {"", "nan", "na", "null"} if table.gaps else {"nan"}
    values = np.empty((text.count("\n") + 1, table.columns))  # <= 4 bytes of it per byte
    n = 0
    for offset, line in enumerate(text.split("\n")):
        body = line.split("#", 1)[0].rstrip("\r")
        if not body.strip():
            continue
        fields = next(csv.reader([body], delimiter=table.delimiter))
        if len(fields) != table.columns:
            raise BadLine(offset + 1, fields=len(fields))
        for j, cell in enumerate(fields):
            cell = cell.strip()
            try:
                values[n, j] = math.nan if cell.lower() in gap_tokens else float(cell)
            except ValueError as e:
                raise BadLine(offset + 1, column=j + 1) from e
        n += 1
    return values[:n]


def _parse_lines(chunk: bytes, table: Table) -> np.ndarray:
    """Whole lines -> float64 [rows, columns]: NumPy first, then with gaps made nan, then
    Python (which names the bad line)."""
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadLine(chunk.count(b"\n", 0, e.start) + 1) from e
    if not table.gaps and "null" in text:  # JSON's only gap
        text = text.replace("null", "nan ")
    values = _loadtxt(text, table)
    if values is None and table.gaps:
        values = _loadtxt(_gaps_to_nan(text, table.delimiter), table)
    return values if values is not None else _parse_slowly(text, table)


def _whole_lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut blocks of text at line ends; a line longer than MAX_LINE_BYTES is refused
    (as BadLine, numbered from the start)."""
    pending, line = b"", 0
    for block in blocks:
        pending += block
        cut = pending.rfind(b"\n") + 1
        if cut == 0:
            if len(pending) > MAX_LINE_BYTES:
                raise BadLine(line + 1, fields=-1)
            continue
        chunk, pending = pending[:cut], pending[cut:]
        yield chunk
        line += chunk.count(b"\n")
    if len(pending) > MAX_LINE_BYTES:
        raise BadLine(line + 1, fields=-1)
    if pending:
        yield pending


def parse_table(
    blocks: Iterable[bytes], table: Table, max_rows: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Lines of numbers -> (float32 [rows, kept] in mV, float64 time column in seconds),
    parsed a chunk at a time into arrays of ``max_rows`` allocated once. Raises BadLine
    with line numbers counted from the first block."""
    signal = np.empty((max_rows, len(table.keep)), np.float32)
    times = np.empty(max_rows) if table.time is not None else None
    n, line = 0, 0
    for chunk in _whole_lines(blocks):
        try:
            values = _parse_lines(chunk, table)
        except BadLine as bad:
            raise BadLine(line + bad.line, bad.column, bad.fields) from bad
        rows = len(values)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused later
            signal[n : n + rows] = values[:, table.keep] * table.factors
        if times is not None and table.time is not None:
            times[n : n + rows] = values[:, table.time] * table.time_factor
        n += rows
        line += chunk.count(b"\n")
    return signal[:n], None if times is None else times[:n]
