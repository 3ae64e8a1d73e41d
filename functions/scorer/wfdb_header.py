"""Parse WFDB headers (``.hea``) from bytes and name the other files a record needs.

A record is a ``.hea`` header plus signal files (``.dat``, ``.mat``...); a multi-segment
record is a master header naming one header per segment. :func:`parse_header` turns a
header's bytes into a :class:`Header` (its record line and either :class:`Signal` or
:class:`Segment` lines); :func:`needed_files` names the objects to fetch next. Reading the
samples is :mod:`scorer.wfdb`'s job.

Reasons never quote header text (comments, descriptions, the record name can carry patient
data); they name line numbers and fields.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time

from scorer.errors import RejectedFile

MAX_HEADER_BYTES = 1 << 20
MAX_SIGNALS = 256
MAX_SEGMENTS = 100_000
MAX_SAMPLES_PER_FRAME = 4096
MAX_FIELD = 1 << 53  # integer fields (offsets, skews, baselines...) beyond this are nonsense
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")
_RECORD_LINE = re.compile(
    r"^(?P<name>[-\w]+)(?:/(?P<n_seg>\d+))?\s+(?P<n_sig>\d+)"
    r"(?:\s+(?P<fs>[^\s/(]+)(?:/(?P<counter>[^\s(]+)(?:\((?P<base_counter>[^\s)]+)\))?)?"
    r"(?:\s+(?P<n_frames>\d+)(?:\s+(?P<time>[\d:.]+)(?:\s+(?P<date>[\d/]+))?)?)?)?\s*$"
)
_FORMAT_FIELD = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN_FIELD = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:\((-?\d+)\))?(?:/(.*))?$")
_SEGMENT_LINE = re.compile(r"^(?P<name>[-\w]+|~)\s+(?P<frames>\d+)\s*$")


def bad_header(reason: str) -> RejectedFile:
    """A malformed header's RejectedFile (``bad_wfdb_header``), saying what is wrong."""
    return RejectedFile(f"the WFDB header (.hea) is malformed: {reason}", "bad_wfdb_header")


@dataclass(frozen=True)
class Signal:
    """One signal line of a header."""

    file_name: str  # "~" for a signal of a layout header, which has no file
    format: int
    samples_per_frame: int
    skew: int
    byte_offset: int
    gain: float  # ADC units per physical unit
    baseline: int
    units: str
    resolution: int | None
    zero: int
    initial_value: int
    checksum: int | None
    block_size: int
    description: str | None  # the lead name, as written


@dataclass(frozen=True)
class Segment:
    """One segment line of a multi-segment master header."""

    name: str  # "~" for a null segment (no signals, NaN)
    n_frames: int

    @property
    def header_file(self) -> str | None:
        return None if self.name == "~" else f"{self.name}.hea"


@dataclass(frozen=True)
class Header:
    """A parsed ``.hea``: the record line and either signal lines or segment lines."""

    name: str
    n_signals: int
    frame_rate: float  # frames per second (a signal's rate is this times its samples per frame)
    counter_freq: float | None
    base_counter: float | None
    n_frames: int | None  # None when the header leaves it to the signal files' length
    base_time: time | None
    base_date: date | None
    signals: tuple[Signal, ...] = ()
    segments: tuple[Segment, ...] | None = None  # a multi-segment master header

    @property
    def recorded_at(self) -> str | None:
        """ISO 8601 start time (no zone: WFDB gives local time) when the header has both."""
        if self.base_date is None or self.base_time is None:
            return None
        return datetime.combine(self.base_date, self.base_time).isoformat()


def _int(text: str, what: str, lo: int = -MAX_FIELD, hi: int = MAX_FIELD) -> int:
    try:
        value = int(text)
    except ValueError:
        raise bad_header(f"{what} is not an integer") from None
    if not lo <= value <= hi:
        raise bad_header(f"{what} is outside {lo}..{hi}")
    return value


def _float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise bad_header(f"{what} is not a number") from None
    if not math.isfinite(value):
        raise bad_header(f"{what} is not a finite number")
    return value


def _base_time(text: str) -> time:
    parts = text.split(":")
    try:
        if len(parts) > 3 or any(not p for p in parts):
            raise ValueError
        seconds = float(parts[-1])
        minutes = int(parts[-2]) if len(parts) > 1 else 0
        hours = int(parts[-3]) if len(parts) > 2 else 0
        whole = int(seconds)
        return time(hours, minutes, whole, round((seconds - whole) * 1e6) % 1_000_000)
    except ValueError:
        raise bad_header("the record line's base time is not a valid hh:mm:ss time") from None


def _base_date(text: str) -> date:
    try:
        day, month, year = (int(p) for p in text.split("/"))
        value = date(year, month, day)
    except ValueError:
        raise bad_header("the record line's base date is not a valid dd/mm/yyyy date") from None
    if not 1900 <= value.year <= 2100:
        raise bad_header("the record line's base date is not a date between 1900 and 2100")
    return value


def _signal(line: str, number: int) -> Signal:
    where = f"signal line {number}"
    fields = line.split(None, 8)
    if len(fields) < 2:
        raise bad_header(f"{where} needs at least a file name and a format")
    file_name = fields[0]
    if file_name != "~" and not _FILE_NAME.match(file_name):
        raise bad_header(
            f"{where}: the signal file name must be 1-100 letters, digits, '_', '.' or '-' "
            "(no folders)"
        )
    match = _FORMAT_FIELD.match(fields[1])
    if not match:
        raise bad_header(f"{where}: the format field is not 'format[xsamples][:skew][+offset]'")
    fmt = _int(match[1], f"{where}: the format", 0, 10**6)
    spf = _int(match[2] or "1", f"{where}: samples per frame", 1, MAX_SAMPLES_PER_FRAME)
    skew = _int(match[3] or "0", f"{where}: the skew", 0)
    offset = _int(match[4] or "0", f"{where}: the byte offset", 0)
    optional = [*fields[2:8], *[None] * (8 - len(fields))][:6]
    gain_field, res, zero_field, init, checksum, block = optional
    gain, baseline, units = 200.0, None, "mV"
    if gain_field is not None:
        parts = _GAIN_FIELD.match(gain_field)
        if not parts:
            raise bad_header(f"{where}: the gain field is not 'gain[(baseline)][/units]'")
        gain = _float(parts[1], f"{where}: the ADC gain") or 200.0  # WFDB: 0 means 200
        if parts[2] is not None:
            baseline = _int(parts[2], f"{where}: the baseline")
        if parts[3]:
            units = parts[3]
    zero = _int(zero_field, f"{where}: the ADC zero") if zero_field is not None else 0
    return Signal(
        file_name=file_name,
        format=fmt,
        samples_per_frame=spf,
        skew=skew,
        byte_offset=offset,
        gain=gain,
        baseline=zero if baseline is None else baseline,
        units=units,
        resolution=_int(res, f"{where}: the ADC resolution", 0, 64) if res else None,
        zero=zero,
        initial_value=_int(init, f"{where}: the initial value") if init is not None else zero,
        checksum=_int(checksum, f"{where}: the checksum") if checksum is not None else None,
        block_size=_int(block, f"{where}: the block size", 0) if block is not None else 0,
        description=fields[8].strip() or None if len(fields) > 8 else None,
    )


def parse_header(data: bytes) -> Header:
    """Parse a ``.hea`` file; RejectedFile (``bad_wfdb_header``) saying what is wrong."""
    if len(data) > MAX_HEADER_BYTES:
        raise bad_header(
            f"it is {len(data):,} bytes; a header is at most {MAX_HEADER_BYTES:,} bytes"
        )
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        text = bytes(data).decode("latin-1")
    if "\x00" in text:
        raise bad_header("it holds NUL bytes, so it is binary data, not a text header")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise bad_header("it has no record line (every line is empty or a # comment)")
    match = _RECORD_LINE.match(lines[0])
    if not match:
        raise bad_header(
            "line 1 is not 'record_name[/segments] signals [frequency[/counter] [frames "
            "[hh:mm:ss [dd/mm/yyyy]]]]'"
        )
    n_signals = _int(match["n_sig"], "the number of signals", 0, MAX_SIGNALS)
    rate = _float(match["fs"], "the sampling frequency") if match["fs"] else 250.0
    if rate <= 0:
        raise bad_header("the sampling frequency is not a positive number")
    counter = _float(match["counter"], "the counter frequency") if match["counter"] else None
    base_counter = (
        _float(match["base_counter"], "the base counter") if match["base_counter"] else None
    )
    n_frames = _int(match["n_frames"], "the number of samples", 0) if match["n_frames"] else None
    base_time = _base_time(match["time"]) if match["time"] else None
    base_date = _base_date(match["date"]) if match["date"] else None
    body = lines[1:]
    segments = None
    signals: tuple[Signal, ...] = ()
    if match["n_seg"] is not None:
        n_seg = _int(match["n_seg"], "the number of segments", 1, MAX_SEGMENTS)
        if len(body) != n_seg:
            raise bad_header(f"the record line declares {n_seg} segments but {len(body)} follow")
        parsed = []
        for number, line in enumerate(body, 1):
            seg = _SEGMENT_LINE.match(line)
            if not seg:
                raise bad_header(f"segment line {number} is not 'segment_name frames'")
            parsed.append(
                Segment(seg["name"], _int(seg["frames"], f"segment line {number}: frames", 0))
            )
        segments = tuple(parsed)
    else:
        if len(body) != n_signals:
            raise bad_header(
                f"the record line declares {n_signals} signals but {len(body)} signal lines follow"
            )
        signals = tuple(_signal(line, number) for number, line in enumerate(body, 1))
    return Header(
        name=match["name"],
        n_signals=n_signals,
        frame_rate=rate,
        counter_freq=counter,
        base_counter=base_counter,
        n_frames=n_frames or None,  # 0 also means "as long as the signal files"
        base_time=base_time,
        base_date=base_date,
        signals=signals,
        segments=segments,
    )


def needed_files(header: Header) -> list[str]:
    """The other objects a header's record is read from, in header order.

    A single-segment header needs its signal files. A multi-segment master header needs its
    segment headers (``<segment>.hea``, the layout header included); each of those, once
    parsed, needs its own signal files: ``needed_files(segment_header)``.
    """
    if header.segments is not None:
        names = (seg.header_file for seg in header.segments)
    else:
        names = (s.file_name for s in header.signals)
    return list(dict.fromkeys(name for name in names if name and name != "~"))
