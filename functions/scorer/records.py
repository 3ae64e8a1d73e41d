"""Recordings read header first: EDF/BDF files, and WFDB records made of several objects.

Opening reads the header(s) and looks the other parts up (sizes, versions), so the
recording's length, rate and leads are known before a sample is read. Its samples are then
read whole, or a range of frames at a time by S3 Range GETs: a 48-h Holter is never held
whole (scorer.fanout cuts it into chunks).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from scorer import edf, objects, wfdb, wfdb_header
from scorer.budget import Budget
from scorer.errors import RejectedFile
from scorer.recording import Recording
from scorer.uploads import FileRef

# WFDB parts by extension. A header names its signal files (any name); these are the
# extensions that mark an upload as a part of a record rather than a file of its own.
WFDB_HEADER = ".hea"
WFDB_SIGNALS = frozenset({".dat", ".mat", ".xyz"})
# Annotation files travel with records and hold no samples: not scored, no item.
WFDB_ANNOTATIONS = frozenset(
    {".atr", ".qrs", ".ecg", ".ari", ".apn", ".st", ".pwave", ".wqrs", ".sqrs", ".wabp", ".16a"}
)
EDF_FORMATS = {".edf": "edf", ".bdf": "bdf"}


class Plan(Protocol):
    """What the format readers' plans (wfdb.Plan, an EDF adapter) offer: a recording's
    frames, and the bytes of each part that hold a range of them."""

    @property
    def fs(self) -> float: ...

    @property
    def n_frames(self) -> int: ...

    @property
    def samples_per_frame(self) -> int: ...

    @property
    def recorded_at(self) -> str | None: ...

    def byte_ranges(self, start: int, stop: int) -> dict[str, tuple[int, int]]: ...

    def read(self, chunks: Mapping[str, Any], start: int, stop: int) -> Recording: ...


@dataclass
class _EdfPlan:
    """edf.Plan as a one-part Plan (the part is the file itself)."""

    inner: edf.Plan
    part: str

    @property
    def fs(self) -> float:
        return self.inner.fs

    @property
    def n_frames(self) -> int:
        return self.inner.n_frames

    @property
    def samples_per_frame(self) -> int:
        return self.inner.samples_per_frame

    @property
    def recorded_at(self) -> str | None:
        return self.inner.recorded_at

    def byte_ranges(self, start: int, stop: int) -> dict[str, tuple[int, int]]:
        return {self.part: self.inner.byte_range(start, stop)}

    def read(self, chunks: Mapping[str, Any], start: int, stop: int) -> Recording:
        return self.inner.read(chunks[self.part], start, stop)


@dataclass(frozen=True)
class Part:
    """One object of a recording, pinned to the version that was opened."""

    key: str
    version_id: str | None
    size: int
    etag: str
    modified: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "version_id": self.version_id,
            "size": self.size,
            "etag": self.etag,
            "modified": self.modified.isoformat(),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Part:
        return cls(
            str(doc["key"]),
            doc.get("version_id"),
            int(doc["size"]),
            str(doc["etag"]),
            datetime.fromisoformat(str(doc["modified"])),
        )


@dataclass
class Opened:
    """A recording whose header is read: how to read it, and the objects it is read from."""

    format: str  # wfdb | edf | bdf
    plan: Plan
    parts: dict[str, Part]  # by the name the plan uses (a WFDB file name, or the EDF key)
    metadata: dict[str, str] = field(default_factory=dict)  # S3 metadata of the header object

    @property
    def samples(self) -> int:
        return self.plan.n_frames * self.plan.samples_per_frame

    @property
    def duration_s(self) -> float:
        return self.samples / self.plan.fs

    @property
    def signature(self) -> str:
        """Orders the uploads of one record: the newest part's time, then a digest of every
        part's content tag. A re-upload of any part gives a larger signature."""
        newest = max(p.modified for p in self.parts.values()).astimezone(UTC)
        tags = "|".join(f"{name}:{p.etag}" for name, p in sorted(self.parts.items()))
        digest = hashlib.sha256(tags.encode()).hexdigest()[:8]
        return f"{newest.isoformat(timespec='milliseconds').replace('+00:00', 'Z')}#{digest}"

    def read(self, s3: Any, bucket: str, start: int, stop: int, budget: Budget) -> Recording:
        """Frames ``[start, stop)``, by Range GETs of exactly the bytes that hold them."""
        chunks = {}
        for name, (first, end) in self.plan.byte_ranges(start, stop).items():
            part = self.parts[name]
            chunks[name] = objects.read_range(
                s3, bucket, part.key, part.version_id, first, end, budget
            )
        recording = self.plan.read(chunks, start, stop)
        recording.metadata = {**self.metadata, **recording.metadata}
        return recording


class Incomplete(Exception):
    """A WFDB record whose other parts have not all arrived yet (names them)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(", ".join(missing))
        self.missing = missing


def _part(head: objects.Head) -> Part:
    return Part(head.key, head.version_id, head.size, head.etag, head.modified)


def open_edf(s3: Any, ref: FileRef, budget: Budget) -> Opened:
    """An EDF/BDF upload, from its header bytes only."""
    first = objects.read_range(s3, ref.bucket, ref.key, ref.version_id, 0, 256, budget)
    size = edf.header_size(first)
    raw = objects.read_range(s3, ref.bucket, ref.key, ref.version_id, 0, size, budget)
    found = objects.head(s3, ref.bucket, ref.key, budget)
    if found is None:
        raise RejectedFile(
            "the object no longer exists (deleted before it could be scored)", "gone"
        )
    plan = edf.plan(edf.parse_header(raw), ref.size_bytes or found.size)
    fmt = "bdf" if plan.bdf else "edf"
    version = Part(
        ref.key, ref.version_id or found.version_id, found.size, found.etag, found.modified
    )
    return Opened(fmt, _EdfPlan(plan, ref.key), {ref.key: version}, found.metadata)


def _folder(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/"


def open_wfdb(s3: Any, bucket: str, header_key: str, budget: Budget) -> Opened:
    """A WFDB record from its header's key: the header (and segment headers) read, every
    signal file looked up. Incomplete when a part has not arrived; RejectedFile when the
    parts that are there cannot make a record."""
    folder = _folder(header_key)
    main = objects.head(s3, bucket, header_key, budget)
    if main is None:
        raise Incomplete([header_key.rsplit("/", 1)[-1]])
    header_bytes = _read_header(s3, bucket, main, budget)
    header = wfdb_header.parse_header(header_bytes)
    parts = {header_key.rsplit("/", 1)[-1]: _part(main)}
    segments: dict[str, wfdb_header.Header] = {}
    signal_files = []
    missing = []
    if header.segments is not None:
        for seg in header.segments:
            if seg.header_file is None:
                continue
            found = objects.head(s3, bucket, folder + seg.header_file, budget)
            if found is None:
                missing.append(seg.header_file)
                continue
            parts[seg.header_file] = _part(found)
            segments[seg.name] = wfdb_header.parse_header(_read_header(s3, bucket, found, budget))
            signal_files += wfdb_header.needed_files(segments[seg.name])
    else:
        signal_files = wfdb_header.needed_files(header)
    sizes = {}
    for name in dict.fromkeys(signal_files):
        found = objects.head(s3, bucket, folder + name, budget)
        if found is None:
            missing.append(name)
            continue
        parts[name] = _part(found)
        sizes[name] = found.size
    if missing:
        raise Incomplete(missing)
    plan = wfdb.plan(header, sizes, segments)
    return Opened("wfdb", plan, parts, main.metadata)


def reopen(
    s3: Any, bucket: str, fmt: str, parts: Mapping[str, Part], header: str, budget: Budget
) -> Opened:
    """The recording a chunk order names, pinned to the versions it was opened at."""
    if fmt in ("edf", "bdf"):
        part = parts[header]
        first = objects.read_range(s3, bucket, part.key, part.version_id, 0, 256, budget)
        size = edf.header_size(first)
        raw = objects.read_range(s3, bucket, part.key, part.version_id, 0, size, budget)
        return Opened(
            fmt, _EdfPlan(edf.plan(edf.parse_header(raw), part.size), header), dict(parts)
        )
    main = parts[header]
    raw = objects.read_range(s3, bucket, main.key, main.version_id, 0, main.size, budget)
    parsed = wfdb_header.parse_header(raw)
    segments = {}
    for seg in parsed.segments or ():
        if seg.header_file is not None:
            part = parts[seg.header_file]
            seg_raw = objects.read_range(
                s3, bucket, part.key, part.version_id, 0, part.size, budget
            )
            segments[seg.name] = wfdb_header.parse_header(seg_raw)
    sizes = {name: p.size for name, p in parts.items()}
    return Opened("wfdb", wfdb.plan(parsed, sizes, segments), dict(parts))


def _read_header(s3: Any, bucket: str, head: objects.Head, budget: Budget) -> bytes:
    if head.size > wfdb_header.MAX_HEADER_BYTES:
        raise RejectedFile(
            f"the WFDB header is {head.size:,} bytes; headers are at most "
            f"{wfdb_header.MAX_HEADER_BYTES:,} bytes of text",
            "bad_wfdb_header",
        )
    return objects.read_range(s3, bucket, head.key, head.version_id, 0, head.size, budget)


def header_candidates(signal_key: str) -> list[str]:
    """Where the header of a signal file is likely to be: ``rec.dat`` and ``rec_x.dat``
    belong to ``rec.hea`` (the names WFDB tools write)."""
    folder, name = signal_key.rsplit("/", 1)
    stem = name.rsplit(".", 1)[0]
    stems = [stem] + ([stem.rsplit("_", 1)[0]] if "_" in stem else [])
    return [f"{folder}/{s}{WFDB_HEADER}" for s in dict.fromkeys(stems)]


def master_of(s3: Any, bucket: str, header_key: str, budget: Budget) -> str | None:
    """The multi-segment record a header is a segment of (``041s01.hea`` of ``041s.hea``,
    ``rec_1.hea`` of ``rec.hea``), when that master header is there; None otherwise. A
    segment's own upload event must not score the segment as a record of its own."""
    folder, name = header_key.rsplit("/", 1)
    stem = name.removesuffix(WFDB_HEADER)
    candidates = [stem.rstrip("0123456789"), stem.rsplit("_", 1)[0] if "_" in stem else ""]
    for master in dict.fromkeys(c for c in candidates if c and c != stem):
        found = objects.head(s3, bucket, f"{folder}/{master}{WFDB_HEADER}", budget)
        if found is None or found.size > wfdb_header.MAX_HEADER_BYTES:
            continue
        try:
            header = wfdb_header.parse_header(_read_header(s3, bucket, found, budget))
        except RejectedFile:
            continue
        if header.segments is not None and stem in {seg.name for seg in header.segments}:
            return found.key
    return None


def read_zip_record(data: bytes, max_expanded: int) -> Recording:
    """The one WFDB record a ``.zip`` holds (its headers and signal files, any folder)."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            if sum(i.file_size for i in infos) > max_expanded:
                raise RejectedFile(
                    f"the .zip expands to more than {max_expanded:,} bytes; zip one record, "
                    "or upload its files separately",
                    "too_large",
                )
            files = {i.filename.rsplit("/", 1)[-1]: archive.read(i) for i in infos}
    except zipfile.BadZipFile as e:
        raise RejectedFile(
            "the .zip archive is truncated or corrupt; zip it again", "bad_zip"
        ) from e
    headers = [name for name in files if name.endswith(WFDB_HEADER)]
    named = set()
    for name in headers:
        parsed = wfdb_header.parse_header(files[name])
        named |= set(wfdb_header.needed_files(parsed))
    tops = [name for name in headers if name not in named]  # not a segment of another
    if len(tops) != 1:
        raise RejectedFile(
            f"the .zip holds {len(tops)} WFDB records (.hea headers that no other header "
            "names); zip exactly one record: its .hea and the files it names",
            "zip_not_one_record",
        )
    return wfdb.read_record(files, tops[0])
