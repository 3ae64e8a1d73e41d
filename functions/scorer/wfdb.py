"""Read a WFDB record's samples in mV from bytes, whole or a range of frames at a time.

The header is parsed by :mod:`scorer.wfdb_header`; everything here works on bytes (S3
objects), never paths:

- :func:`plan` (a header, its signal files' sizes, the segment headers) -> :class:`Plan`:
  the record's length, rate and leads, checked against the sizes before any sample is read.
- ``Plan.byte_ranges(start, stop)`` says which bytes of each signal file hold frames
  ``[start, stop)``; ``Plan.read(chunks, start, stop)`` reads exactly those bytes. So a
  24-h record can be read in parts by S3 Range GETs, never held whole.
- :func:`read_record` reads a whole record from ``{file name: bytes}``.

What is read (see docs/formats.md): channels whose units are a voltage, at the rate of
the standard leads (``leads.ecg_channels``); WFDB's invalid sample value becomes NaN. A
multi-segment record is the concatenation of its segments, NaN where a segment lacks a
signal or is a null segment. FLAC formats (508, 516, 524) are refused with a reason.

Reasons never quote header text (comments, descriptions, the record name can carry patient
data); they name fields and the signal files (object names in the upload).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scorer import leads as lead_names
from scorer.errors import RejectedFile
from scorer.recording import Recording
from scorer.wfdb_header import Header, bad_header, parse_header

FLAC_FORMATS = {508, 516, 524}
# format: (samples per block, bytes per block, invalid sample value, numpy dtype of a block)
_FORMATS: dict[int, tuple[int, int, int | None, str]] = {
    8: (1, 1, None, "i1"),  # first differences
    16: (1, 2, -(2**15), "<i2"),
    24: (1, 3, -(2**23), "u1"),
    32: (1, 4, -(2**31), "<i4"),
    61: (1, 2, -(2**15), ">i2"),
    80: (1, 1, -(2**7), "u1"),  # offset binary
    160: (1, 2, -(2**15), "<u2"),  # offset binary
    212: (2, 3, -(2**11), "u1"),
    310: (3, 4, -(2**9), "u1"),
    311: (3, 4, -(2**9), "u1"),
}
SUPPORTED_FORMATS = tuple(sorted(_FORMATS))
# Bytes holding the first r samples of a block, for the packed formats.
_PARTIAL_BYTES = {212: {1: 2}, 310: {1: 2, 2: 4}, 311: {1: 2, 2: 3}}
Bytes = bytes | bytearray | memoryview
CONVERT = (
    "convert the record to format 16 (e.g. with wfdb-python: wfdb.rdrecord, then "
    "wfdb.wrsamp with fmt=['16', ...])"
)


@dataclass(frozen=True)
class _Channel:
    """One output column as stored in one segment's signal file."""

    position: int  # first sample of this signal within a frame of its file
    skew: int
    gain: float
    baseline: int
    mv_per_unit: float
    initial_value: int


@dataclass(frozen=True)
class _Group:
    """One signal file of a segment: interleaved frames of its signals."""

    file_name: str
    format: int
    byte_offset: int
    samples_per_frame: int  # over all its signals
    columns: tuple[tuple[int, _Channel], ...]  # (output column, where it is stored)


def _samples_in(fmt: int, n_bytes: int) -> int:
    """How many whole samples ``n_bytes`` of a signal file hold."""
    block_samples, block_bytes, _, _ = _FORMATS[fmt]
    blocks, rest = divmod(n_bytes, block_bytes)
    partial = max((r for r, b in _PARTIAL_BYTES.get(fmt, {}).items() if b <= rest), default=0)
    return blocks * block_samples + partial


def _bytes_for(fmt: int, n_samples: int) -> int:
    """Bytes holding ``n_samples`` samples that start on a block boundary."""
    block_samples, block_bytes, _, _ = _FORMATS[fmt]
    blocks, rest = divmod(n_samples, block_samples)
    return blocks * block_bytes + (_PARTIAL_BYTES[fmt][rest] if rest else 0)


def _decode(fmt: int, raw: np.ndarray, n_samples: int) -> np.ndarray:
    """Digital samples from bytes starting on a block boundary (a view where possible)."""
    block_samples, block_bytes, _, dtype = _FORMATS[fmt]
    if block_samples == 1 and fmt != 24:
        values = raw[: n_samples * block_bytes].view(dtype)
        if fmt == 80:
            return values.astype(np.int16) - 128
        if fmt == 160:
            return values.astype(np.int32) - 32768
        return values
    if fmt == 24:
        b = raw[: n_samples * 3].reshape(n_samples, 3)
        out = b[:, 2].view(np.int8).astype(np.int32) << 16  # the sign is in the high byte
        out |= b[:, 1].astype(np.int32) << 8
        out |= b[:, 0]
        return out
    blocks = -(-n_samples // block_samples)
    if raw.size < blocks * block_bytes:  # a last, partial block
        raw = np.concatenate((raw, np.zeros(blocks * block_bytes - raw.size, np.uint8)))
    b = raw[: blocks * block_bytes].reshape(blocks, block_bytes)
    c = [b[:, k].astype(np.int16) for k in range(block_bytes)]  # 10-12 bits fit int16
    out = np.empty((blocks, block_samples), np.int16)
    if fmt == 212:
        out[:, 0] = c[0] | ((c[1] & 0x0F) << 8)
        out[:, 1] = c[2] | ((c[1] >> 4) << 8)
        sign = 1 << 11
    elif fmt == 310:  # two little-endian 16-bit words; bit 0 of each is unused
        out[:, 0] = (c[0] >> 1) | ((c[1] & 0x07) << 7)
        out[:, 1] = (c[2] >> 1) | ((c[3] & 0x07) << 7)
        out[:, 2] = ((c[1] >> 3) & 0x1F) | (((c[3] >> 3) & 0x1F) << 5)
        sign = 1 << 9
    else:  # 311: one little-endian 32-bit word, samples in bits 0-9, 10-19, 20-29
        out[:, 0] = c[0] | ((c[1] & 0x03) << 8)
        out[:, 1] = (c[1] >> 2) | ((c[2] & 0x0F) << 6)
        out[:, 2] = (c[2] >> 4) | ((c[3] & 0x3F) << 4)
        sign = 1 << 9
    flat = out.reshape(-1)[:n_samples]
    flat ^= sign  # two's complement of the format's width, without a mask
    flat -= sign
    return flat


class _SegmentReader:
    """Frames of one single-segment header, mapped onto the output columns."""

    def __init__(self, groups: list[_Group], n_frames: int) -> None:
        self.groups = groups
        self.n_frames = n_frames

    def _span(self, group: _Group, start: int, stop: int) -> tuple[int, int, int, int]:
        """(first byte, end byte, samples to drop at the front, first stored frame)."""
        skew = max(ch.skew for _, ch in group.columns)
        tspf = group.samples_per_frame
        first = 0 if group.format == 8 else start  # differences: read from the start
        end = min(stop + skew, self.n_frames)
        block_samples, block_bytes, _, _ = _FORMATS[group.format]
        s0 = first * tspf
        lead = s0 % block_samples
        aligned = s0 - lead
        byte0 = group.byte_offset + aligned // block_samples * block_bytes
        n = max(0, end * tspf - aligned)
        return byte0, byte0 + _bytes_for(group.format, n), lead, first

    def byte_ranges(self, start: int, stop: int) -> dict[str, tuple[int, int]]:
        ranges = {}
        for group in self.groups:
            byte0, byte1, _, _ = self._span(group, start, stop)
            ranges[group.file_name] = (byte0, byte1)
        return ranges

    def read_into(
        self, out: np.ndarray, spf: int, chunks: Mapping[str, Bytes], start: int, stop: int
    ) -> None:
        """Fill ``out`` (frames [start, stop) times ``spf`` rows) from the chunks."""
        for group in self.groups:
            byte0, byte1, lead, first = self._span(group, start, stop)
            if byte1 <= byte0:
                continue
            if group.file_name not in chunks:
                raise RejectedFile(
                    f"the signal file {group.file_name} is missing; upload it beside the header",
                    "missing_files",
                )
            raw = np.frombuffer(chunks[group.file_name], np.uint8)
            if raw.size > byte1 - byte0:
                raise ValueError(f"{raw.size} bytes given for the range {byte0}..{byte1}")
            if raw.size < byte1 - byte0:
                raise RejectedFile(
                    f"the signal file {group.file_name} ends early (the bytes of frames "
                    f"{start:,}..{stop:,} are incomplete); upload it again",
                    "truncated",
                )
            tspf = group.samples_per_frame
            skew = max(ch.skew for _, ch in group.columns)
            n_stored = min(stop + skew, self.n_frames) - first
            digital = _decode(group.format, raw, lead + n_stored * tspf)
            frames = digital[lead:].reshape(n_stored, tspf)
            invalid = _FORMATS[group.format][2]
            for column, ch in group.columns:
                if group.format == 8:
                    flat = self._undifference(frames, ch, spf, start, stop)
                else:
                    lo, hi = start + ch.skew - first, stop + ch.skew - first
                    part = frames[lo:hi, ch.position : ch.position + spf]
                    flat = np.ascontiguousarray(part).reshape(-1)
                phys = flat.astype(np.float64)
                phys -= ch.baseline
                phys /= ch.gain
                if ch.mv_per_unit != 1.0:
                    phys *= ch.mv_per_unit
                if invalid is not None:
                    phys[flat == invalid] = np.nan
                out[: phys.size, column] = phys
                out[phys.size :, column] = np.nan  # skewed past the end of the record

    def _undifference(
        self, frames: np.ndarray, ch: _Channel, spf: int, start: int, stop: int
    ) -> np.ndarray:
        """Format 8 stores first differences: sum them from the record's initial value."""
        cols = slice(ch.position, ch.position + spf)
        lo = start + ch.skew
        before = int(frames[:lo, cols].sum(dtype=np.int64))
        part = frames[lo : stop + ch.skew, cols].reshape(-1)
        return ch.initial_value + before + np.cumsum(part, dtype=np.int64)


@dataclass
class Plan:
    """A record checked against its files' sizes: what reading it will give, and how.

    ``n_frames`` frames of ``samples_per_frame`` samples per channel, at ``fs`` samples per
    second. ``byte_ranges(start, stop)`` and ``read(chunks, start, stop)`` work on frames.
    """

    fs: float
    leads: list[str] | None
    channels: int
    n_frames: int
    samples_per_frame: int
    recorded_at: str | None
    parts: list[tuple[int, int, _SegmentReader]]  # (first frame, frames, reader)

    @property
    def duration_s(self) -> float:
        return self.n_frames * self.samples_per_frame / self.fs

    def _overlapping(self, start: int, stop: int) -> list[tuple[int, int, _SegmentReader]]:
        if not 0 <= start <= stop <= self.n_frames:
            raise ValueError(f"frames {start}..{stop} outside 0..{self.n_frames}")
        return [
            (first, count, reader)
            for first, count, reader in self.parts
            if first < stop and start < first + count
        ]

    def byte_ranges(self, start: int, stop: int) -> dict[str, tuple[int, int]]:
        """``{signal file: (first byte, end byte)}`` holding frames ``[start, stop)``.

        The end is exclusive (an HTTP Range header is ``bytes=first-(end-1)``). Files whose
        range is empty are left out. Format 8 (differences) ranges start at the data.
        """
        ranges: dict[str, tuple[int, int]] = {}
        for first, count, reader in self._overlapping(start, stop):
            lo, hi = max(start, first) - first, min(stop, first + count) - first
            for name, (b0, b1) in reader.byte_ranges(lo, hi).items():
                if b1 > b0:
                    ranges[name] = (b0, b1)
        return ranges

    def read(self, chunks: Mapping[str, Bytes], start: int, stop: int) -> Recording:
        """Frames ``[start, stop)`` from ``chunks``: ``{file: exactly the bytes of
        byte_ranges(start, stop)}``. A shorter chunk (a file cut short) is a RejectedFile."""
        spf = self.samples_per_frame
        columns = self.channels
        out = np.full(((stop - start) * spf, columns), np.nan, np.float32)
        for first, count, reader in self._overlapping(start, stop):
            lo, hi = max(start, first) - first, min(stop, first + count) - first
            rows = slice((first + lo - start) * spf, (first + hi - start) * spf)
            reader.read_into(out[rows], spf, chunks, lo, hi)
        metadata = {"recorded_at": self.recorded_at} if self.recorded_at else {}
        return Recording(out, self.fs, self.leads, "wfdb", metadata)


def _output_channels(layout: Header) -> list[int]:
    """Indices of the layout's signals that are read: voltages at the ECG leads' rate."""
    names = [s.description for s in layout.signals]
    volts = [i for i, s in enumerate(layout.signals) if lead_names.mv_per_unit(s.units)]
    for i, s in enumerate(layout.signals):
        if i not in volts and lead_names.canonical(s.description) is not None:
            raise RejectedFile(
                f"signal {i + 1} ({lead_names.canonical(s.description)}) is not in a voltage "
                "unit; ECG leads must be in mV, uV or V (the units after '/' in the gain field)",
                "bad_unit",
            )
    rates = [layout.signals[i].samples_per_frame * layout.frame_rate for i in volts]
    keep = lead_names.ecg_channels([names[i] for i in volts], rates)
    return [volts[i] for i in keep]


def _gap(number: int, frames: int, frame_rate: float) -> RejectedFile:
    """A null segment ('~'), or one without any of the ECG signals: no bytes back its
    frames, and a gap longer than preparation fills (0.1 s) could never be scored."""
    return RejectedFile(
        f"segment {number} of the multi-segment record holds no ECG signal (a gap of "
        f"{frames:,} frames, {frames / frame_rate:.1f} s); a recording must be continuous: "
        "export the parts before and after the gap as separate records",
        "wfdb_gap",
    )


def _unsupported(fmt: int, number: int) -> RejectedFile:
    kind = " (FLAC-compressed)" if fmt in FLAC_FORMATS else ""
    supported = ", ".join(str(f) for f in SUPPORTED_FORMATS)
    return RejectedFile(
        f"signal {number} is stored in WFDB format {fmt}{kind}, which is not read here "
        f"(formats read: {supported}); {CONVERT}",
        "wfdb_format_not_supported",
    )


def _segment_reader(
    header: Header, sizes: Mapping[str, int], columns: dict[int, int], spf: int
) -> _SegmentReader:
    """A reader of one single-segment header; ``columns`` maps signal index -> output column.

    Signals without a column are skipped, but their samples still sit in each frame.
    """
    order: list[str] = []
    members: dict[str, list[int]] = {}
    for index, s in enumerate(header.signals):
        if not order or order[-1] != s.file_name:
            if s.file_name in members:
                raise bad_header(
                    f"signal {index + 1}: the signals of one file must be on adjacent lines"
                )
            order.append(s.file_name)
            members[s.file_name] = []
        members[s.file_name].append(index)
    groups = []
    n_frames = header.n_frames
    for name in order:
        first = header.signals[members[name][0]]
        if any(header.signals[i].format != first.format for i in members[name]):
            raise bad_header(f"the signals of file {name} are stored in different formats")
        stored = []
        position = 0
        for i in members[name]:
            s = header.signals[i]
            if i in columns:
                factor = lead_names.mv_per_unit(s.units)
                if s.samples_per_frame != spf or factor is None:
                    raise RejectedFile(
                        f"signal {i + 1} of a segment has another rate or unit than the same "
                        "signal in the record's layout; export it as a single-segment record",
                        "mixed_rates" if factor else "bad_unit",
                    )
                channel = _Channel(position, s.skew, s.gain, s.baseline, factor, s.initial_value)
                stored.append((columns[i], channel))
            position += s.samples_per_frame
        if not stored:
            continue
        if name == "~":
            raise bad_header("a signal to read has no signal file ('~')")
        if first.format not in _FORMATS:
            raise _unsupported(first.format, members[name][0] + 1)
        if name not in sizes:
            raise RejectedFile(
                f"the signal file {name} is missing; upload it beside the header", "missing_files"
            )
        frames = _samples_in(first.format, max(0, sizes[name] - first.byte_offset)) // position
        if header.n_frames is None:  # as long as the shortest file
            n_frames = frames if n_frames is None else min(n_frames, frames)
        elif frames < header.n_frames:
            raise RejectedFile(
                f"the signal file {name} holds {frames:,} frames but the header declares "
                f"{header.n_frames:,}; the file was cut short: upload it again",
                "truncated",
            )
        groups.append(_Group(name, first.format, first.byte_offset, position, tuple(stored)))
    return _SegmentReader(groups, n_frames or 0)


def plan(
    header: Header,
    sizes: Mapping[str, int],
    segments: Mapping[str, Header] | None = None,
) -> Plan:
    """Check a record against its signal files' sizes and say how it will be read.

    ``sizes`` maps each signal file the record names to its size in bytes; for a
    multi-segment record ``segments`` maps segment names to their parsed headers (and
    ``sizes`` covers every segment's files). Raises RejectedFile for whatever cannot be
    read (missing files, truncated files, unsupported formats, mixed rates).
    """
    segments = segments or {}
    parts: list[tuple[Header | None, int | None]]
    first_number = 1  # of the segments read, in the master header's list
    if header.segments is None:
        layout, parts = header, [(header, header.n_frames)]
    else:
        parts = []
        for seg in header.segments:
            if seg.name == "~":
                parts.append((None, seg.n_frames))
                continue
            if seg.name not in segments:
                raise RejectedFile(
                    f"the segment header {seg.header_file} is missing; upload it beside the "
                    "master header",
                    "missing_files",
                )
            sub = segments[seg.name]
            if sub.segments is not None:
                raise bad_header("a segment header is itself a multi-segment header")
            if not math.isclose(sub.frame_rate, header.frame_rate, rel_tol=1e-9):
                raise bad_header("a segment's sampling frequency differs from the master header's")
            parts.append((sub, seg.n_frames))
        if not any(sub for sub, _ in parts):
            raise bad_header("the multi-segment record has only null segments")
        # A first segment of length 0 is the layout header (variable layout): it names the
        # signals of the whole record. Otherwise (fixed layout) the first segment does.
        if parts[0][1] == 0:
            layout = parts.pop(0)[0] or header
            first_number = 2
        else:
            layout = next(sub for sub, _ in parts if sub is not None)
    for i, s in enumerate(layout.signals):
        if s.format in FLAC_FORMATS and s.file_name != "~":
            raise _unsupported(s.format, i + 1)
    keep = _output_channels(layout)
    if not keep:
        raise RejectedFile(
            "the record has no signal in a voltage unit (mV, uV or V), so no ECG lead",
            "no_ecg_signal",
        )
    spf = layout.signals[keep[0]].samples_per_frame
    wanted = [layout.signals[i].description for i in keep]
    readers: list[tuple[int, int, _SegmentReader]] = []
    first_frame = 0
    files_seen: set[str] = set()
    for number, (seg_header, declared) in enumerate(parts, first_number):
        if seg_header is None:
            raise _gap(number, declared or 0, layout.frame_rate)
        if seg_header is layout or [s.description for s in seg_header.signals] == [
            s.description for s in layout.signals
        ]:
            columns = {index: column for column, index in enumerate(keep)}
        else:  # variable layout: by name; a signal the segment lacks stays NaN
            descriptions = [s.description for s in seg_header.signals]
            columns = {
                descriptions.index(name): column
                for column, name in enumerate(wanted)
                if name is not None and descriptions.count(name) == 1
            }
        reader = _segment_reader(seg_header, sizes, columns, spf)
        n = reader.n_frames
        if header.segments is not None:
            if n < (declared or 0):
                raise RejectedFile(
                    f"a segment's signal files hold {n:,} frames but the master header declares "
                    f"{declared:,}; upload the segment's files again",
                    "truncated",
                )
            n = reader.n_frames = declared or 0
            if n and not reader.groups:
                raise _gap(number, n, layout.frame_rate)
        names_here = {g.file_name for g in reader.groups}
        if files_seen & names_here:
            raise bad_header("two segments name the same signal file")
        files_seen |= names_here
        readers.append((first_frame, n, reader))
        first_frame += n
    if header.segments is not None and header.n_frames not in (None, first_frame):
        raise bad_header(
            f"the master header declares {header.n_frames:,} frames but its segments hold "
            f"{first_frame:,}"
        )
    if first_frame == 0:
        raise RejectedFile("the record holds no samples (0 frames)", "no_samples")
    names = [d.strip() if d else "" for d in wanted]
    return Plan(
        fs=layout.frame_rate * spf,
        leads=names if any(names) else None,
        channels=len(keep),
        n_frames=first_frame,
        samples_per_frame=spf,
        recorded_at=header.recorded_at,
        parts=readers,
    )


def read_record(files: Mapping[str, Bytes], header_name: str) -> Recording:
    """A whole record from ``{file name: bytes}`` holding its header(s) and signal files."""
    header = parse_header(bytes(files[header_name]))
    segments = {}
    if header.segments is not None:
        for seg in header.segments:
            if seg.header_file is not None and seg.header_file in files:
                segments[seg.name] = parse_header(bytes(files[seg.header_file]))
    sizes = {name: len(data) for name, data in files.items()}
    record = plan(header, sizes, segments)
    ranges = record.byte_ranges(0, record.n_frames)
    chunks = {name: memoryview(files[name])[b0:b1] for name, (b0, b1) in ranges.items()}
    return record.read(chunks, 0, record.n_frames)
