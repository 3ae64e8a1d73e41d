"""One upload (or one chunk of a long one) -> what is known about it and its model windows, or
why it is rejected, or what else must happen first.

Three steps, so the handler can read objects in parallel and prepare them one at a time:
:func:`check_name` (what the event alone tells), :func:`gather` (I/O, safe in a thread:
the bytes, a recording read by range, or the news that it must wait or fan out) and
:func:`prepare_file` (CPU and memory).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from scorer import fanout, keys, objects, read_checks, readers, records, schema, store, wfdb_header
from scorer.budget import S3_READ_WORST_S, Budget
from scorer.config import Settings
from scorer.errors import RejectedFile, TransientError
from scorer.fanout import ChunkOrder, is_long
from scorer.prepare import Prepared, Span, prepare
from scorer.recording import Recording
from scorer.uploads import FileFacts, FileRef, parse_time


@dataclass
class Whole:
    """An upload read whole, to decode (JSON, CSV, NPY, NPZ)."""

    data: bytes
    meta: dict[str, str]  # its S3 user metadata


@dataclass
class Read:
    """A recording read from its parts (EDF/BDF, a WFDB record or .zip), or one chunk of it."""

    recording: Recording
    meta: dict[str, str]
    span: Span | None = None


@dataclass
class Long:
    """A recording to fan out in chunks (scorer.fanout): its header is read, no sample."""

    opened: records.Opened
    header: str  # the part holding the header


@dataclass
class Waiting:
    """A WFDB record some of whose parts have not arrived (their file names)."""

    missing: list[str]


@dataclass
class Nothing:
    """No item to write: an annotation file, a record already scored..."""

    why: str


Gathered = Whole | Read | Long | Waiting | Nothing


def check_name(ref: FileRef, facts: FileFacts, settings: Settings) -> None:
    """What the key and the event's size say, before any read: site, device, format."""
    where = keys.parse(ref.key)
    facts.site = _name_part(where.site, "site", "by the key") if where.site else None
    facts.device = _name_part(where.device, "device", "by the key") if where.device else None
    facts.format = format_of(ref.key)
    if facts.format in RANGED:
        readers.check_size(ref.size_bytes or 1, settings.max_recording_bytes)
    elif facts.format not in ("wfdb", "wfdb_part", "annotation"):
        readers.check_size(ref.size_bytes or 1, settings.max_file_bytes)


RANGED = frozenset(records.EDF_FORMATS.values())


def format_of(key: str) -> str:
    """The format a key's extension names (readers' formats, edf, bdf, zip, WFDB parts)."""
    name = key.rsplit("/", 1)[-1]
    ext = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    if ext in records.EDF_FORMATS:
        return records.EDF_FORMATS[ext]
    if ext == records.WFDB_HEADER:
        return "wfdb"
    if ext in records.WFDB_SIGNALS:
        return "wfdb_part"
    if ext in records.WFDB_ANNOTATIONS:
        return "annotation"
    if ext == ".zip":
        return "zip"
    return readers.file_format(key)


def gather(
    ref: FileRef,
    order: ChunkOrder | None,
    s3: Any,
    dynamodb: Any,
    settings: Settings,
    budget: Budget,
) -> tuple[FileRef, Gathered]:
    """Read what preparing needs; the ref is the file's (a WFDB part's event becomes its
    record's header)."""
    if not budget.allows(S3_READ_WORST_S):
        raise TransientError("no time left in this invocation to read the file")
    if order is not None:
        if not fanout.still_wanted(dynamodb, settings, order, budget):
            return ref, Nothing("a chunk already done, or of a replaced upload")
        opened = records.reopen(s3, ref.bucket, order.format, order.parts, order.header, budget)
        spf = opened.plan.samples_per_frame
        first, end = order.read[0] // spf, order.read[1] // spf
        return ref, Read(opened.read(s3, ref.bucket, first, end, budget), {}, order.span)
    fmt = format_of(ref.key)
    if fmt == "annotation":
        return ref, Nothing("a WFDB annotation file: it holds no samples")
    if fmt in RANGED:
        return ref, _opened(ref, records.open_edf(s3, ref, budget), ref.key, s3, settings, budget)
    if fmt in ("wfdb", "wfdb_part"):
        return _wfdb(ref, fmt, s3, dynamodb, settings, budget)
    data, meta = objects.fetch(s3, ref, settings.max_file_bytes)
    if fmt == "zip":
        return ref, Read(records.read_zip_record(data, 8 * settings.max_file_bytes), meta)
    return ref, Whole(data, meta)


def _opened(
    ref: FileRef,
    opened: records.Opened,
    header: str,
    s3: Any,
    settings: Settings,
    budget: Budget,
) -> Gathered:
    if is_long(opened, settings):
        return Long(opened, header)
    recording = opened.read(s3, ref.bucket, 0, opened.plan.n_frames, budget)
    return Read(recording, {})


def _wfdb(
    ref: FileRef, fmt: str, s3: Any, dynamodb: Any, settings: Settings, budget: Budget
) -> tuple[FileRef, Gathered]:
    header_key = ref.key
    if fmt == "wfdb_part":
        found = None
        for candidate in records.header_candidates(ref.key):
            found = objects.head(s3, ref.bucket, candidate, budget)
            if found is not None:
                break
        if found is None:
            name = records.header_candidates(ref.key)[0].rsplit("/", 1)[-1]
            return ref, Waiting([name])
        header_key = found.key
    # A segment header (or a segment's file): the record is its master header's.
    header_key = records.master_of(s3, ref.bucket, header_key, budget) or header_key
    try:
        opened = records.open_wfdb(s3, ref.bucket, header_key, budget)
    except records.Incomplete as waiting:
        return ref, Waiting(waiting.missing)
    except RejectedFile:
        if header_key == ref.key:
            raise
        # The record cannot be read: its header's own event says why, on the header's item.
        return ref, Nothing("a part of a record that is rejected on its header")
    header = header_key.rsplit("/", 1)[-1]
    main = opened.parts[header]
    # The record's item is the header's; its uploads are ordered by the parts' signature.
    record = FileRef(
        ref.bucket,
        header_key,
        main.version_id,
        main.etag,
        sum(p.size for p in opened.parts.values()),
        opened.signature,
        max(p.modified for p in opened.parts.values()),
    )
    if _already_scored(dynamodb, record, settings, budget):
        return record, Nothing("this upload of the record is scored already")
    return record, _opened(record, opened, header, s3, settings, budget)


def named_by_a_header(s3: Any, ref: FileRef, budget: Budget) -> bool:
    """Whether a header in the signal file's folder names it (a record whose header has
    another name than ``rec.hea``): then the record's own item covers it."""
    folder, name = ref.key.rsplit("/", 1)
    for key in objects.keys_under(s3, ref.bucket, folder + "/", records.WFDB_HEADER, 200):
        found = objects.head(s3, ref.bucket, key, budget)
        if found is None or found.size > wfdb_header.MAX_HEADER_BYTES:
            continue
        raw = objects.read_range(s3, ref.bucket, key, found.version_id, 0, found.size, budget)
        try:
            header = wfdb_header.parse_header(raw)
        except RejectedFile:
            continue
        names = wfdb_header.needed_files(header)
        if name in names or any(n.endswith(".hea") for n in names):
            return True  # a multi-segment record's segments name their files themselves
    return False


def _already_scored(dynamodb: Any, ref: FileRef, settings: Settings, budget: Budget) -> bool:
    """A record's parts each send an event: the first to find the record whole scores it,
    the others (and redeliveries) find its item and do nothing."""
    item = store.get_item(
        dynamodb,
        settings.predictions_table,
        schema.file_pk(ref.bucket, ref.key),
        schema.model_sk(settings.model_version),
        budget,
    )
    stored = (item or {}).get("s3_sequencer_sortable")
    return stored is not None and stored >= store.sortable_sequencer(ref.sequencer or "")


def facts_from(facts: FileFacts, file_meta: dict[str, str], s3_meta: dict[str, str]) -> None:
    """Site, device, patient and record ids and recording time from the file's metadata and
    the upload's S3 metadata (later sources win: key < file < S3), each checked."""
    key_site = facts.site
    for source, meta in (("in the file", file_meta), ("as S3 metadata", s3_meta)):
        # A site's uploaders may write only under incoming/<their site>/, so a file there
        # cannot claim another site.
        if "site" in meta:
            facts.site = _name_part(meta["site"], "site", source)
            if key_site is not None and facts.site != key_site:
                facts.site = key_site
                raise RejectedFile(
                    f"the site given {source} differs from the site folder the file was "
                    "uploaded to (incoming/<site>/...): upload it under its own site's folder, "
                    "or leave the site out of the metadata",
                    "site_mismatch",
                )
        if "device" in meta:
            facts.device = _name_part(meta["device"], "device", source)
    meta = {**file_meta, **s3_meta}
    facts.patient_ref, facts.record_id = meta.get("patient_ref"), meta.get("record_id")
    if not (facts.site and facts.device):
        raise RejectedFile(
            "the site and device are unknown: upload to incoming/<site>/<device>/<file> "
            "or give site and device as metadata",
            "no_site_device",
        )
    if "recorded_at" in meta:
        facts.recorded_at = parse_time(meta["recorded_at"])
        if facts.recorded_at is None:
            raise RejectedFile(
                "recorded_at is not an ISO 8601 time between 1900 and 2100 "
                "(e.g. 2026-11-27T08:30:00Z)",
                "bad_recorded_at",
            )


def prepare_file(
    ref: FileRef, facts: FileFacts, gathered: Whole | Read, settings: Settings
) -> Prepared:
    """Read, check and cut one file (or chunk); fills ``facts`` as it learns them (a REJECTED
    item still says what was known), RejectedFile saying why it cannot be scored."""
    s3_meta = gathered.meta
    stated_rate = None
    if "sampling_rate_hz" in s3_meta:
        stated_rate = read_checks.parse_rate(
            s3_meta["sampling_rate_hz"], "S3 metadata sampling-rate-hz"
        )
    if isinstance(gathered, Whole):
        recording = readers.read_recording(
            gathered.data,
            ref.key,
            model_leads=settings.model_leads,
            model_rate_hz=settings.model_sampling_rate_hz,
            metadata_rate_hz=stated_rate,
            memory_budget_bytes=settings.memory_budget_bytes,
        )
    else:
        recording = gathered.recording
    span = gathered.span if isinstance(gathered, Read) else None
    if span is None:  # a chunk's facts are its order's, learnt when the file was opened
        facts_from(facts, recording.metadata, s3_meta)
    if recording.fs is None and stated_rate is not None:
        recording = dataclasses.replace(recording, fs=stated_rate)
    if recording.leads is None and "leads" in s3_meta:
        names = [n.strip() for n in s3_meta["leads"].split(",")]
        leads = read_checks.lead_names(names, recording.signal.shape[1], "S3 metadata")
        recording = dataclasses.replace(recording, leads=leads)
    return prepare(
        recording,
        settings.model_leads,
        settings.model_sampling_rate_hz,
        settings.window_samples,
        span=span,
    )


def _name_part(value: str, what: str, source: str) -> str:
    if not keys.valid_name(value):
        reason = f"the {what} name given {source} must be {keys.NAME_RULE}"
        raise RejectedFile(reason, f"bad_{what}")
    return value
