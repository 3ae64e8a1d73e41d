"""JSON -> a Recording: the "signals" array found in the bytes and parsed by NumPy a chunk
at a time, the few other fields by the json module.

The array's extent and shape come from its brackets and commas, counted with vectorised
bracket depth before any value is parsed, so the memory check comes first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from scorer import decode_memory, read_checks  # CHUNK_BYTES, looked up when used: tests shrink it
from scorer.decode_memory import (
    DECODE_BYTES,
    MIB,
    DecodePlan,
    Limits,
    check_memory,
    size_text,
)
from scorer.errors import RejectedFile
from scorer.number_table import BadLine, Table, parse_table
from scorer.recording import Recording

MAX_JSON_FIELDS_BYTES = MIB  # JSON besides "signals" becomes Python objects: keep it small
MAX_SIGNALS_KEYS = 8  # "signals" keys looked at (each costs a scan of up to a chunk)
_SIGNALS = re.compile(rb'"signals"\s*:\s*\[')
# Stands for the "signals" array, parsed apart, in the rest of the document.
_PLACEHOLDER, _PLACEHOLDER_VALUE = b'"\\u0000signals"', "\x00signals"


def read_json(data: bytes, limits: Limits) -> Recording:
    """``{"signals": [T, C] | [N, 2000, C], "sampling_rate_hz"?, "leads"?, ...}``.

    The "signals" array is found in the bytes and parsed apart (NumPy, a chunk at a time);
    the rest of the document, small, goes to the json module.
    """
    span = _find_signals(data)
    rest = data if span is None else data[: span.start] + _PLACEHOLDER + data[span.end :]
    if span is None and len(rest) > MAX_JSON_FIELDS_BYTES:
        if _SIGNALS.search(data):
            raise _bad_signals(None)
        raise RejectedFile(
            'expected a JSON object with a "signals" array of [samples, channels] numbers',
            "no_signals",
        )
    if len(rest) > MAX_JSON_FIELDS_BYTES:
        raise RejectedFile(
            f'the JSON holds {size_text(len(rest))} besides "signals"; the other fields (rate, '
            f"leads, metadata) may hold at most {size_text(MAX_JSON_FIELDS_BYTES)}: remove the "
            "large ones",
            "too_large_in_memory",
        )
    doc = _json_fields(rest, data, span)
    if not isinstance(doc, dict) or "signals" not in doc:
        raise RejectedFile(
            'expected a JSON object with a "signals" array of [samples, channels] numbers',
            "no_signals",
        )
    raw = {
        read_checks.META_ALIASES.get(k.strip().lower(), k): v
        for k, v in doc.items()
        if isinstance(k, str)
    }
    fs = read_checks.stated_rate(raw, '"sampling_rate_hz"')
    what = '"signals"'
    if span is not None and doc["signals"] == _PLACEHOLDER_VALUE:
        shape = span.shape(data)
        rows, cols = read_checks.check_shape(shape, what)
        names = read_checks.lead_names(raw["leads"], cols, "the JSON") if "leads" in raw else None
        keep, prepared = read_checks.select(names, cols, limits)
        # The other fields as Python objects: up to ~30 bytes per byte of JSON.
        plan = DecodePlan(rows, cols, len(keep), prepared, fs, DECODE_BYTES + 30 * len(rest))
        check_memory(plan, len(data), limits)
        table = Table(cols, keep, np.ones(len(keep)), gaps=False)
        try:
            signal, _ = parse_table(span.lines(data), table, rows)
        except BadLine as bad:
            raise _bad_signals(bad) from bad
        if len(signal) != rows:  # an empty row ("[]") among the others
            raise _bad_signals(None)
    else:  # "signals" given twice, or not an array: small, the json module parsed it
        try:
            array = np.asarray(raw["signals"], dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise _bad_signals(None) from e
        shape = array.shape
        rows, cols = read_checks.check_shape(shape, what)
        names = read_checks.lead_names(raw["leads"], cols, "the JSON") if "leads" in raw else None
        keep, _ = read_checks.select(names, cols, limits)
        with np.errstate(over="ignore"):
            signal = array.reshape(rows, cols)[:, keep].astype(np.float32)
    meta = read_checks.text_meta(raw, "the JSON field")
    bare = set(doc) == {"signals"}
    return read_checks.build_recording(
        signal, fs, names, keep, "json", metadata=meta, stored_shape=shape, bare=bare
    )


def _bad_signals(bad: BadLine | None) -> RejectedFile:
    where = f"row {bad.line} of " if bad is not None else ""
    if bad is not None and bad.column is not None:
        where = f"row {bad.line}, value {bad.column} of "
    return RejectedFile(
        f'{where}"signals" is not a [samples, channels] array of numbers: every row the '
        "same length, numbers or null only (no strings or nested objects)",
        "bad_signals",
    )


def _json_fields(rest: bytes, data: bytes, span: _Span | None) -> Any:
    """The document with "signals" stood in for, parsed; errors located in ``data``."""
    try:
        text = rest.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RejectedFile("the file is not UTF-8 text, so it cannot be JSON", "not_utf8") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        line, column = e.lineno, e.colno
        if span is not None:  # after the array: count its lines and columns back in
            cut = text.index(_PLACEHOLDER.decode()) + len(_PLACEHOLDER)
            if e.pos >= cut:
                line += data.count(b"\n", span.start, span.end)
                if text.count("\n", cut, e.pos) == 0:  # on the line where the array ends
                    column = e.pos - cut + span.end - data.rfind(b"\n", 0, span.end)
        hint = " (the file ends early: was the upload cut short?)" if e.pos >= len(text) - 1 else ""
        raise RejectedFile(
            f"not valid JSON: {e.msg} at line {line}, column {column}{hint}", "bad_json"
        ) from e


@dataclass(frozen=True)
class _Span:
    """The "signals" array in the bytes: [start, end), its depth and what it holds."""

    start: int
    end: int
    depth: int  # 1: [..], 2: [[..]], 3: [[[..]]]
    rows: int  # innermost arrays
    values: int  # numbers (or nulls)

    def shape(self, data: bytes) -> tuple[int, ...]:
        if self.depth == 1:
            return (self.values,)
        if self.depth > 3:
            return (0,) * self.depth  # refused by check_shape for its dimensions
        if self.rows == 0 or self.values % self.rows:
            raise _bad_signals(None)
        cols = self.values // self.rows
        if self.depth == 2:
            return (self.rows, cols)
        windows, rows = self._windows(data)
        return (windows, rows, cols)

    def _windows(self, data: bytes) -> tuple[int, int]:
        """(windows, rows in each) of a 3-deep array, checked equal a chunk at a time."""
        windows, rows, last_end, each = 0, 0, 0, -1
        for _, _, closes, depth in _bracket_chunks(data, self.start, self.end):
            row_close = closes & (depth == 2)
            ends = np.cumsum(row_close)[np.flatnonzero(closes & (depth == 1))] + rows
            sizes = np.diff(ends, prepend=last_end)
            if sizes.size:
                each = int(sizes[0]) if each < 0 else each
                if (sizes != each).any():
                    raise _bad_signals(None)
                windows, last_end = windows + sizes.size, int(ends[-1])
            rows += int(row_close.sum())
        if windows == 0 or each * windows != self.rows:
            raise _bad_signals(None)
        return windows, each

    def lines(self, data: bytes) -> Iterator[bytes]:
        """The array as text with one row per line: brackets and the commas between rows
        become spaces, each innermost closing bracket a newline."""
        for buf, opens, closes, depth in _bracket_chunks(data, self.start, self.end):
            out = buf.copy()
            out[(buf == 9) | (buf == 10) | (buf == 13)] = 32
            out[opens | closes | ((buf == 44) & (depth < self.depth))] = 32
            out[closes & (depth == self.depth - 1)] = 10
            yield out.tobytes()


def _bracket_chunks(
    data: bytes, start: int, end: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(bytes, '[' mask, ']' mask, depth after each byte) of data[start:end], by chunks."""
    carry = 0
    for i in range(start, end, decode_memory.CHUNK_BYTES):
        buf = np.frombuffer(data, np.uint8, min(decode_memory.CHUNK_BYTES, end - i), i)
        opens, closes = buf == 91, buf == 93
        depth = np.cumsum(opens.astype(np.int32) - closes, dtype=np.int32) + carry
        carry = int(depth[-1])
        yield buf, opens, closes, depth


def _find_signals(data: bytes) -> _Span | None:
    """The "signals" array: the first array of numbers under that key that leaves the rest
    of the document small (a nested "signals" may come first), else the largest seen."""
    chosen, pos = None, 0
    for _ in range(MAX_SIGNALS_KEYS):
        found = _SIGNALS.search(data, pos)
        if found is None:
            break
        span = _signals_span(data, found.end() - 1)
        if span is None:
            pos = found.end()
            continue
        if len(data) - (span.end - span.start) <= MAX_JSON_FIELDS_BYTES:
            return span
        if chosen is None or span.end - span.start > chosen.end - chosen.start:
            chosen = span
        pos = span.end
    return chosen


def _signals_span(data: bytes, start: int) -> _Span | None:
    """Where the array that starts at ``start`` ends, and its structure, checked without
    building it; None when it holds strings or objects, RejectedFile when it is malformed
    or never ends."""
    max_depth, end = 0, -1
    closes_at = np.zeros(66, np.int64)  # closing brackets by the depth they return to
    commas_at = np.zeros(66, np.int64)
    stray_at = np.zeros(66, np.int64)  # bytes other than brackets, commas, blanks, by depth
    for chunk_start, (buf, _, closes, depth) in zip(
        range(start, len(data), decode_memory.CHUNK_BYTES),
        _bracket_chunks(data, start, len(data)),
        strict=True,
    ):
        zero = np.flatnonzero(depth == 0)
        if zero.size:  # the array ends in this chunk
            n = int(zero[0]) + 1
            buf, closes, depth = buf[:n], closes[:n], depth[:n]
            end = chunk_start + n
        if (buf == 34).any() or (buf == 123).any():  # a string or an object inside
            return None
        max_depth = max(max_depth, int(depth.max()))
        if max_depth > 64:
            raise _bad_signals(None)
        closes_at += np.bincount(depth[closes], minlength=66)[:66]
        commas_at += np.bincount(depth[buf == 44], minlength=66)[:66]
        blank = (buf == 32) | (buf == 9) | (buf == 10) | (buf == 13)
        other = ~(blank | (buf == 91) | (buf == 93) | (buf == 44))
        stray_at += np.bincount(depth[other], minlength=66)[:66]
        if end >= 0:
            break
    if end < 0:
        raise RejectedFile(
            'not valid JSON: the "signals" array is never closed (the file ends early: was '
            "the upload cut short?)",
            "bad_json",
        )
    rows = int(closes_at[max_depth - 1]) if max_depth > 1 else 1
    values = int(commas_at[max_depth]) + rows if stray_at[max_depth] else 0
    # Numbers outside the innermost arrays, or separators that do not separate rows.
    if stray_at[:max_depth].any() or (max_depth > 1 and commas_at[:max_depth].sum() != rows - 1):
        raise _bad_signals(None)
    return _Span(start, end, max_depth, rows, values)
