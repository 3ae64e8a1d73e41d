"""EDF, EDF+ and BDF recordings from bytes: parse the header, and read samples in mV,
whole or a range of data records at a time.

An EDF file is a header (256 bytes, then 256 bytes per signal) followed by fixed-size data
records, each holding a fixed number of samples of every signal (16-bit in EDF, 24-bit in
BDF). So the bytes of records ``[start, stop)`` are one contiguous range:

- :func:`header_size` (the first 256 bytes) -> how many bytes the header has;
  :func:`parse_header` -> :class:`Header`.
- :func:`plan` (a header and the file's size) -> :class:`Plan`: the recording's length,
  rate and leads, checked against the size before any sample is read.
- ``Plan.byte_range(start, stop)`` and ``Plan.read(chunk, start, stop)`` read records
  ``[start, stop)`` from just their bytes, so a 24-h Holter is never held whole.
- :func:`read_edf` reads a whole file.

What is read (see docs/formats.md): signals in a voltage unit, at the rate of the standard
leads (``leads.ecg_channels``); "EDF Annotations"/"BDF Annotations" signals are ignored.
EDF+D (discontinuous) files are refused: they may have gaps in time that windows must not
straddle. The patient and recording identification fields are patient data: they are
never kept or quoted; only the start date and time become ``recorded_at``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np

from scorer import leads as lead_names
from scorer.errors import RejectedFile
from scorer.recording import Recording

FIXED_BYTES = 256  # the header's fixed part; then 256 bytes per signal
MAX_SIGNALS = 512
MAX_RECORD_BYTES = 64 << 20  # one data record must fit a read comfortably
ANNOTATIONS = {"EDF Annotations", "BDF Annotations"}
BDF_VERSION = b"\xffBIOSEMI"
EDF_VERSION = b"0       "
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_STARTDATE = re.compile(r"^Startdate (\d{2})-([A-Z]{3})-(\d{4})(?:\s|$)")
Bytes = bytes | bytearray | memoryview


def _bad(reason: str) -> RejectedFile:
    return RejectedFile(f"the EDF/BDF header is malformed: {reason}", "bad_edf_header")


@dataclass(frozen=True)
class Signal:
    """One signal of the header (the transducer and prefiltering fields are not kept)."""

    label: str
    units: str
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    samples_per_record: int

    @property
    def is_annotations(self) -> bool:
        return self.label in ANNOTATIONS


@dataclass(frozen=True)
class Header:
    """A parsed EDF/BDF header, without the patient and recording identification."""

    bdf: bool
    continuity: str | None  # "C" or "D" for EDF+/BDF+, None for plain EDF/BDF
    start: datetime | None  # local time, as the header gives it; None when anonymised
    header_bytes: int
    n_records: int | None  # None: unknown (-1), taken from the file's size
    record_duration: float  # seconds
    signals: tuple[Signal, ...]

    @property
    def sample_bytes(self) -> int:
        return 3 if self.bdf else 2

    @property
    def record_bytes(self) -> int:
        return sum(s.samples_per_record for s in self.signals) * self.sample_bytes


def _field(data: bytes, start: int, length: int) -> str:
    return data[start : start + length].decode("latin-1").strip()


def _number(text: str, what: str, integer: bool = False) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise _bad(f"{what} is not {'an integer' if integer else 'a number'}") from None
    if not math.isfinite(value):
        raise _bad(f"{what} is not a finite number")
    return value


def header_size(first: Bytes) -> int:
    """The header's size in bytes, from the file's first 256 bytes."""
    data = bytes(first[:FIXED_BYTES])
    if len(data) < FIXED_BYTES:
        raise RejectedFile(
            f"the file is {len(data)} bytes long, shorter than an EDF header (256 bytes); "
            "upload the whole recording",
            "truncated",
        )
    if data[:8] not in (EDF_VERSION, BDF_VERSION):
        raise RejectedFile(
            "the file does not start like an EDF file ('0' and 7 spaces) or a BDF file "
            "(byte 255 and 'BIOSEMI'); export the recording as EDF, EDF+ or BDF",
            "not_edf",
        )
    n = int(_number(_field(data, 252, 4), "the number of signals", integer=True))
    if not 1 <= n <= MAX_SIGNALS:
        raise _bad(f"the number of signals is outside 1..{MAX_SIGNALS}")
    return FIXED_BYTES * (n + 1)


def _start(data: bytes) -> datetime | None:
    """Start date and time: EDF+'s 'Startdate dd-MMM-yyyy' when given, else the dd.mm.yy
    field with EDF's 1985-2084 rule; and the hh.mm.ss field. None for EDF+'s anonymised
    'Startdate X', whose legacy field holds a placeholder (01.01.85)."""
    recording_field = _field(data, 88, 80)
    if recording_field == "Startdate X" or recording_field.startswith("Startdate X "):
        return None
    try:
        plus = _STARTDATE.match(recording_field)
        if plus and plus[2] in _MONTHS:
            day, month, year = int(plus[1]), _MONTHS.index(plus[2]) + 1, int(plus[3])
        else:
            day, month, yy = (int(p) for p in _field(data, 168, 8).split("."))
            year = 1900 + yy if 85 <= yy <= 99 else 2000 + yy
        hh, mm, ss = (int(p) for p in _field(data, 176, 8).split("."))
        start = datetime.combine(date(year, month, day), time(hh, mm, ss))
    except ValueError:
        raise _bad("the start date or time is not a valid dd.mm.yy / hh.mm.ss value") from None
    if not 1900 <= start.year <= 2100:
        raise _bad("the start date is not a date between 1900 and 2100")
    return start


def parse_header(data: Bytes) -> Header:
    """Parse an EDF/BDF header (the file's first ``header_size`` bytes, or more)."""
    size = header_size(data)
    raw = bytes(data[:size])
    if len(raw) < size:
        raise RejectedFile(
            f"the file ends inside its header ({len(raw)} of {size} bytes); upload the whole "
            "recording",
            "truncated",
        )
    bdf = raw[:8] == BDF_VERSION
    declared = _number(_field(raw, 184, 8), "the header size", integer=True)
    if declared != size:
        raise _bad("the header size does not match the number of signals (256 * (signals + 1))")
    reserved = _field(raw, 192, 44)
    continuity = reserved[4] if reserved[:4] in ("EDF+", "BDF+") and len(reserved) > 4 else None
    if continuity not in (None, "C", "D"):
        raise _bad("the reserved field says EDF+/BDF+ but neither C nor D")
    n_records = int(_number(_field(raw, 236, 8), "the number of data records", integer=True))
    if n_records < -1:
        raise _bad("the number of data records is negative")
    duration = _number(_field(raw, 244, 8), "the data record duration")
    if duration < 0:
        raise _bad("the data record duration is negative")
    n = (size - FIXED_BYTES) // FIXED_BYTES

    def column(offset: int, width: int, i: int) -> str:
        return _field(raw, FIXED_BYTES + offset * n + width * i, width)

    signals = []
    lo, hi = (-(2**23), 2**23 - 1) if bdf else (-(2**15), 2**15 - 1)
    for i in range(n):
        where = f"signal {i + 1}"
        signal = Signal(
            label=column(0, 16, i),
            units=column(96, 8, i),
            physical_min=_number(column(104, 8, i), f"{where}: the physical minimum"),
            physical_max=_number(column(112, 8, i), f"{where}: the physical maximum"),
            digital_min=int(_number(column(120, 8, i), f"{where}: the digital minimum", True)),
            digital_max=int(_number(column(128, 8, i), f"{where}: the digital maximum", True)),
            samples_per_record=int(
                _number(column(216, 8, i), f"{where}: the samples per data record", True)
            ),
        )
        if signal.samples_per_record < 1:
            raise _bad(f"{where}: the samples per data record is not a positive integer")
        if not lo <= signal.digital_min < signal.digital_max <= hi:
            raise _bad(
                f"{where}: the digital minimum and maximum must satisfy {lo} <= minimum < "
                f"maximum <= {hi}"
            )
        if not signal.is_annotations and signal.physical_min == signal.physical_max:
            raise _bad(f"{where}: the physical minimum equals the physical maximum")
        signals.append(signal)
    header = Header(
        bdf=bdf,
        continuity=continuity,
        start=_start(raw),
        header_bytes=size,
        n_records=None if n_records == -1 else n_records,
        record_duration=duration,
        signals=tuple(signals),
    )
    if header.record_bytes > MAX_RECORD_BYTES:
        raise _bad(
            f"one data record would be {header.record_bytes:,} bytes; at most "
            f"{MAX_RECORD_BYTES:,} are read"
        )
    return header


@dataclass(frozen=True)
class _Channel:
    position: int  # first sample of this signal within a data record
    gain: float  # physical units per digital step
    offset: float  # digital offset, as edfio computes it: physical = (digital + offset) * gain
    mv_per_unit: float


@dataclass
class Plan:
    """A recording checked against its file's size: what reading it will give, and how.

    ``n_frames`` data records of ``samples_per_frame`` samples per channel, at ``fs``
    samples per second. ``byte_range(start, stop)`` and ``read(chunk, start, stop)`` work
    on data records.
    """

    fs: float
    leads: list[str] | None
    n_frames: int
    samples_per_frame: int
    recorded_at: str | None
    bdf: bool
    header_bytes: int
    record_bytes: int
    record_samples: int  # over all signals
    channels: Sequence[_Channel]

    @property
    def duration_s(self) -> float:
        return self.n_frames * self.samples_per_frame / self.fs

    def byte_range(self, start: int, stop: int) -> tuple[int, int]:
        """(first byte, end byte) of data records ``[start, stop)``; the end is exclusive."""
        if not 0 <= start <= stop <= self.n_frames:
            raise ValueError(f"records {start}..{stop} outside 0..{self.n_frames}")
        return (
            self.header_bytes + start * self.record_bytes,
            self.header_bytes + stop * self.record_bytes,
        )

    def read(self, chunk: Bytes, start: int, stop: int) -> Recording:
        """Records ``[start, stop)`` from ``chunk``, the bytes of ``byte_range(start, stop)``."""
        first, end = self.byte_range(start, stop)
        raw = np.frombuffer(chunk, np.uint8)
        if raw.size > end - first:
            raise ValueError(f"{raw.size} bytes given for the range {first}..{end}")
        if raw.size < end - first:
            raise RejectedFile(
                f"the file ends early (data records {start:,}..{stop:,} are incomplete); "
                "upload it again",
                "truncated",
            )
        n = stop - start
        spf = self.samples_per_frame
        out = np.empty((n * spf, len(self.channels)), np.float32)
        width = 3 if self.bdf else 2
        records = raw.reshape(n, self.record_samples * width)
        for j, ch in enumerate(self.channels):
            part = records[:, ch.position * width : (ch.position + spf) * width]
            if self.bdf:
                b = np.ascontiguousarray(part).reshape(-1, 3)
                digital = b[:, 2].view(np.int8).astype(np.int32) << 16
                digital |= b[:, 1].astype(np.int32) << 8
                digital |= b[:, 0]
            else:
                digital = np.ascontiguousarray(part).view("<i2").reshape(-1)
            phys = digital + ch.offset  # float64, as edfio computes it
            phys *= ch.gain
            if ch.mv_per_unit != 1.0:
                phys *= ch.mv_per_unit
            out[:, j] = phys
        metadata = {"recorded_at": self.recorded_at} if self.recorded_at else {}
        return Recording(out, self.fs, self.leads, "bdf" if self.bdf else "edf", metadata)


def plan(header: Header, size: int) -> Plan:
    """Check a header against the file's size and say how the recording will be read."""
    kind = "BDF" if header.bdf else "EDF"
    if header.continuity == "D":
        raise RejectedFile(
            f"the file is {kind}+D (discontinuous: its data records may have gaps in time), "
            f"which is not read; export it as {kind}+C (continuous), one file per "
            "uninterrupted part",
            "edf_discontinuous",
        )
    if header.record_duration <= 0:
        raise RejectedFile(
            f"the {kind} file's data records last 0 s, so it holds no signal (annotations "
            "only?); upload a recording with signals",
            "no_samples",
        )
    data = [(i, s) for i, s in enumerate(header.signals) if not s.is_annotations]
    for i, s in data:
        if lead_names.mv_per_unit(s.units) is None and lead_names.canonical(s.label):
            raise RejectedFile(
                f"signal {i + 1} ({lead_names.canonical(s.label)}) is not in a voltage unit; "
                "ECG leads must be in uV, mV or V (the physical dimension field)",
                "bad_unit",
            )
    factors = {i: lead_names.mv_per_unit(s.units) for i, s in data}
    volts = [(i, s) for i, s in data if factors[i] is not None]
    if not volts:
        raise RejectedFile(
            f"the {kind} file has no signal in a voltage unit (uV, mV or V), so no ECG lead",
            "no_ecg_signal",
        )
    rates = [s.samples_per_record / header.record_duration for _, s in volts]
    keep = [volts[k] for k in lead_names.ecg_channels([s.label for _, s in volts], rates)]
    available = max(0, size - header.header_bytes) // header.record_bytes
    n_records = header.n_records if header.n_records is not None else available
    if available < n_records:
        raise RejectedFile(
            f"the file holds {available:,} complete data records but its header declares "
            f"{n_records:,}; the file was cut short: upload it again",
            "truncated",
        )
    if n_records == 0:
        raise RejectedFile(f"the {kind} file holds no data records", "no_samples")
    positions = np.cumsum([0] + [s.samples_per_record for s in header.signals])
    channels = []
    for i, s in keep:
        gain = (s.physical_max - s.physical_min) / (s.digital_max - s.digital_min)
        offset = s.physical_max / gain - s.digital_max
        channels.append(_Channel(int(positions[i]), gain, offset, factors[i] or 1.0))
    spf = keep[0][1].samples_per_record
    names = [s.label for _, s in keep]
    return Plan(
        fs=spf / header.record_duration,
        leads=names if any(names) else None,
        n_frames=n_records,
        samples_per_frame=spf,
        recorded_at=header.start.isoformat() if header.start else None,
        bdf=header.bdf,
        header_bytes=header.header_bytes,
        record_bytes=header.record_bytes,
        record_samples=int(positions[-1]),
        channels=channels,
    )


def read_edf(data: Bytes) -> Recording:
    """A whole EDF, EDF+ or BDF file."""
    header = parse_header(data)
    recording = plan(header, len(data))
    first, end = recording.byte_range(0, recording.n_frames)
    return recording.read(memoryview(data)[first:end], 0, recording.n_frames)
