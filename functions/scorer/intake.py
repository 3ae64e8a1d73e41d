"""One uploaded object -> what is known about it and its model windows, or why it is rejected.

Three steps, so the handler can read objects in parallel and prepare them one at a time:
:func:`check_name` (what the event alone tells), :func:`fetch` (I/O, safe in a thread) and
:func:`prepare_file` (CPU and memory).
"""

from __future__ import annotations

from typing import Any

from scorer import events, keys, objects, readers
from scorer.budget import S3_READ_WORST_S, Budget
from scorer.config import Settings
from scorer.errors import RejectedFile, TransientError
from scorer.prepare import Prepared, prepare
from scorer.uploads import FileFacts, FileRef

Fetched = tuple[bytes, dict[str, str]]  # the object's bytes and its S3 user metadata


def check_name(ref: FileRef, facts: FileFacts, settings: Settings) -> None:
    """What the key and the event's size say, before any read: site, device, format."""
    where = keys.parse(ref.key)
    facts.site = _name_part(where.site, "site", "by the key") if where.site else None
    facts.device = _name_part(where.device, "device", "by the key") if where.device else None
    facts.format = readers.file_format(ref.key)
    readers.check_size(ref.size_bytes or 1, settings.max_file_bytes)


def fetch(ref: FileRef, s3: Any, settings: Settings, budget: Budget) -> Fetched:
    """The object's bytes, when time allows the read's worst case."""
    if not budget.allows(S3_READ_WORST_S):
        raise TransientError("no time left in this invocation to read the file")
    return objects.fetch(s3, ref, settings.max_file_bytes)


def prepare_file(ref: FileRef, facts: FileFacts, fetched: Fetched, settings: Settings) -> Prepared:
    """Read, check and cut one file; fills ``facts`` as it learns them (a REJECTED item
    still says what was known), RejectedFile saying why it cannot be scored."""
    data, s3_meta = fetched
    stated_rate = None
    if "sampling_rate_hz" in s3_meta:
        stated_rate = readers.parse_rate(
            s3_meta["sampling_rate_hz"], "S3 metadata sampling-rate-hz"
        )
    recording = readers.read_recording(
        data,
        ref.key,
        model_leads=settings.model_leads,
        model_rate_hz=settings.model_sampling_rate_hz,
        metadata_rate_hz=stated_rate,
        memory_budget_bytes=settings.memory_budget_bytes,
    )
    key_site = facts.site
    for source, meta in (("in the file", recording.metadata), ("as S3 metadata", s3_meta)):
        # Later sources win: key < file < S3 object metadata; but a site's uploaders may
        # write only under incoming/<their site>/, so a file there cannot claim another site.
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
    meta = {**recording.metadata, **s3_meta}
    facts.patient_ref, facts.record_id = meta.get("patient_ref"), meta.get("record_id")
    if not (facts.site and facts.device):
        raise RejectedFile(
            "the site and device are unknown: upload to incoming/<site>/<device>/<file> "
            "or give site and device as metadata",
            "no_site_device",
        )
    if "recorded_at" in meta:
        facts.recorded_at = events.parse_time(meta["recorded_at"])
        if facts.recorded_at is None:
            raise RejectedFile(
                "recorded_at is not an ISO 8601 time between 1900 and 2100 "
                "(e.g. 2026-11-27T08:30:00Z)",
                "bad_recorded_at",
            )
    if recording.fs is None and stated_rate is not None:
        recording.fs = stated_rate
    if recording.leads is None and "leads" in s3_meta:
        names = [n.strip() for n in s3_meta["leads"].split(",")]
        recording.leads = readers.lead_names(names, recording.signal.shape[1], "S3 metadata")
    return prepare(
        recording, settings.model_leads, settings.model_sampling_rate_hz, settings.window_samples
    )


def _name_part(value: str, what: str, source: str) -> str:
    if not keys.valid_name(value):
        reason = f"the {what} name given {source} must be {keys.NAME_RULE}"
        raise RejectedFile(reason, f"bad_{what}")
    return value
