"""CSV -> a Recording: one column per lead (units from the header), optional time and
sample columns, ``# key: value`` comment lines for the rate, lead names and metadata.

The head (comments, header) is read line by line; the rows are counted in the bytes for the
memory check, then parsed by NumPy a chunk at a time (:mod:`scorer.number_table`).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from scorer import decode_memory, read_checks  # CHUNK_BYTES, looked up when used: tests shrink it
from scorer.decode_memory import DecodePlan, Limits, check_memory
from scorer.errors import RejectedFile
from scorer.number_table import MAX_LINE_BYTES, BadLine, Table, parse_table
from scorer.recording import Recording

_UNIT = re.compile(r"^(?P<base>.*?)(?:\s*[\(\[](?P<u1>[^\)\]]*)[\)\]]|_(?P<u2>[a-zµμ]+))$", re.I)
VOLT_UNITS = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
TIME_UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6}
TIME_NAMES = {"time", "t", "times", "timestamp", "seconds", "sec", "elapsed", "elapsed_time"}
INDEX_NAMES = {"sample", "samples", "index", "idx", "n", "sample_no", "sample_number", "#"}


@dataclass
class _Column:
    name: str
    kind: str  # lead | time | index
    factor: float  # to mV for leads, to seconds for time


def _column(header: str, number: int) -> _Column:
    name = header.strip().strip('"').strip("'").strip()
    match = _UNIT.match(name)
    base, unit = name, ""
    if match:
        unit = (match.group("u1") or match.group("u2") or "").strip().lower()
        if unit in VOLT_UNITS or unit in TIME_UNITS or match.group("u1") is not None:
            base = match.group("base").strip()
        else:
            unit = ""
    low = base.lower()
    if low in TIME_NAMES or low.startswith("time_") or (not low and unit in TIME_UNITS):
        return _Column(base or "time", "time", TIME_UNITS.get(unit, 1.0))
    if low in {"time_ms", "ms"}:
        return _Column(base, "time", 1e-3)
    if low in INDEX_NAMES:
        return _Column(base, "index", 1.0)
    if unit and unit not in VOLT_UNITS:
        raise RejectedFile(
            f"column {number} of the header has a unit that is not a voltage; leads must be "
            "in mV, uV or V (e.g. II_mV, II (uV))",
            "bad_unit",
        )
    return _Column(base, "lead", VOLT_UNITS.get(unit, 1.0))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _line_text(data: bytes, start: int, end: int) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, start) + 1  # counted only when it is needed
        raise RejectedFile(
            f"line {lineno} is not UTF-8 text; export the CSV as UTF-8", "not_utf8"
        ) from e


def _comment(line: str, meta: dict[str, str]) -> None:
    """``# key: value`` (or ``# key = value``) into meta when the key is one we know."""
    key, sep, value = line.strip().lstrip("#").partition(":")
    if not sep:
        key, sep, value = line.strip().lstrip("#").partition("=")
    norm = re.sub(r"[^a-z0-9]+", "_", key.strip().lower()).strip("_")
    if sep and norm in read_checks.META_ALIASES:
        meta[read_checks.META_ALIASES[norm]] = value.strip()


def _comments_after(data: bytes, start: int, meta: dict[str, str]) -> None:
    """Comment lines among the rows (a '#' with only blanks before it on its line)."""
    at = data.find(b"#", start)
    while at >= 0:
        line_start = data.rfind(b"\n", 0, at) + 1
        line_end = data.find(b"\n", at)
        line_end = len(data) if line_end < 0 else line_end
        if not data[line_start:at].strip():
            _comment(_line_text(data, line_start, line_end), meta)
        at = data.find(b"#", line_end)


def read_csv(data: bytes, limits: Limits) -> Recording:
    """One column per lead, optional time/sample columns and ``# key: value`` comment lines."""
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    meta_raw: dict[str, str] = {}
    # The head, line by line (comments, blank lines, the header); the rows go to NumPy.
    lineno, header_at, end = 0, -1, pos
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        lineno += 1
        if end - pos > MAX_LINE_BYTES:
            raise RejectedFile(
                f"line {lineno} is longer than {MAX_LINE_BYTES // 1024} KB; expected a header "
                "and one row of numbers per line, one column per lead",
                "csv_ragged",
            )
        stripped = _line_text(data, pos, end).strip()
        if stripped.startswith("#"):
            _comment(stripped, meta_raw)
        elif stripped:
            header_at = pos
            break
        pos = end + 1
    if header_at < 0:
        raise RejectedFile("the CSV holds no header and no data rows", "csv_empty")
    header = _line_text(data, header_at, end).strip()
    after_header = end + 1
    if data.find(b"#", after_header) >= 0:
        _comments_after(data, after_header, meta_raw)

    delimiter = max((",", ";", "\t"), key=header.count)
    cells = next(csv.reader([header], delimiter=delimiter))
    if all(_is_number(c.strip()) for c in cells):
        names: list[str] | None = None  # no header: unnamed channels, data from this line
        columns = [_Column(f"column {j + 1}", "lead", 1.0) for j in range(len(cells))]
        body, first_lineno = header_at, lineno
    else:
        columns = [_column(c, j + 1) for j, c in enumerate(cells)]
        body, first_lineno = after_header, lineno + 1
        names = [c.name for c in columns if c.kind == "lead"]
    if sum(c.kind == "time" for c in columns) > 1:
        raise RejectedFile("the CSV has more than one time column", "bad_time")
    leads = [j for j, c in enumerate(columns) if c.kind == "lead"]
    if not leads:
        raise RejectedFile("the CSV has no lead columns (only time or sample columns)", "no_leads")
    if names is None and "leads" in meta_raw:
        names = read_checks.lead_names(meta_raw["leads"].split(","), len(leads), "the comment line")
    fs = read_checks.stated_rate(meta_raw, "the comment line sampling_rate_hz")
    time_col = next((j for j, c in enumerate(columns) if c.kind == "time"), None)

    max_rows = data.count(b"\n", body) + 1  # lines left: an upper bound on the rows
    read_checks.check_shape((max_rows, len(leads)), "the CSV")
    keep, prepared = read_checks.select(names, len(leads), limits)
    per_row = 8 if time_col is not None else 0  # the time column, float64
    check_memory(
        DecodePlan(max_rows, len(leads), len(keep), prepared, fs, work_per_row=per_row),
        len(data),
        limits,
    )
    table = Table(
        columns=len(columns),
        keep=[leads[i] for i in keep],
        factors=np.array([columns[leads[i]].factor for i in keep]),
        time=time_col,
        time_factor=columns[time_col].factor if time_col is not None else 1.0,
        delimiter=delimiter,
    )
    try:
        signal, times = parse_table(_blocks(data, body, len(data)), table, max_rows)
    except BadLine as bad:
        raise _bad_line(bad, first_lineno - 1, len(columns)) from bad
    if len(signal) == 0:
        raise RejectedFile("the CSV has a header but no data rows", "csv_no_rows")
    read_checks.check_shape(signal.shape, "the CSV")

    if times is not None:
        from_time = _rate_from_time(times)
        if fs is not None and abs(fs - from_time) > 0.01 * fs:
            raise RejectedFile(  # the stated rate is not repeated: it is a value from the file
                f"the comment line's sampling rate and the time column ({from_time:g} Hz) "
                "disagree; fix one of them",
                "bad_rate",
            )
        fs = fs or from_time
    meta = read_checks.text_meta(meta_raw, "the comment")
    return read_checks.build_recording(signal, fs, names, keep, "csv", metadata=meta)


def _bad_line(bad: BadLine, before: int, columns: int) -> RejectedFile:
    line = before + bad.line
    if bad.fields == -1:
        return RejectedFile(
            f"line {line} is longer than {MAX_LINE_BYTES // 1024} KB; expected one row of "
            "numbers per line, one column per lead",
            "csv_ragged",
        )
    if bad.fields is not None:
        return RejectedFile(
            f"line {line} has {bad.fields} fields but the header has {columns}", "csv_ragged"
        )
    if bad.column is None:
        return RejectedFile(f"line {line} is not UTF-8 text; export the CSV as UTF-8", "not_utf8")
    return RejectedFile(
        f"line {line}, column {bad.column}: the cell is not a number; every cell must be a "
        "number (in the column's unit, mV unless the header names another) or empty for a gap",
        "csv_not_a_number",
    )


def _rate_from_time(t: np.ndarray) -> float:
    """The rate of an evenly spaced time column (checked a chunk at a time: no copies)."""
    if t.size < 2:
        raise RejectedFile(
            "the file holds a single row; a recording needs many samples", "too_short"
        )
    fs = float((t.size - 1) / (t[-1] - t[0])) if t[-1] != t[0] else math.nan
    step = decode_memory.CHUNK_BYTES // 8
    for i in range(0, t.size, step):
        part = t[i : i + step + 1]
        if np.isnan(part).any():
            raise RejectedFile("the time column has empty cells; fill it or remove it", "bad_time")
        if not (np.diff(part) > 0).all():
            raise RejectedFile("the time column does not increase row by row", "bad_time")
        grid = t[0] + np.arange(i, i + part.size) / fs
        if np.abs(part - grid).max() > 0.5 / fs:
            raise RejectedFile(
                "the time column is not evenly spaced (missing rows or jitter); "
                "export the recording at a fixed sampling rate",
                "bad_time",
            )
    # 999.98 Hz from rounded time stamps is 1000 Hz.
    return float(round(fs)) if abs(fs - round(fs)) < 1e-3 * fs else fs


def _blocks(data: bytes, start: int, end: int) -> Iterator[bytes]:
    for i in range(start, end, decode_memory.CHUNK_BYTES):
        yield data[i : min(i + decode_memory.CHUNK_BYTES, end)]
