"""What every format reader checks alike: the array's dtype and shape, the rate, lead names
and text metadata, the channels kept, and the Recording built from them.

Reasons never quote the file (cells, header text, lead names, metadata values, array
names): they name a line, column or field and say what is expected.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from scorer.decode_memory import Limits
from scorer.errors import RejectedFile
from scorer.leads import canonical
from scorer.recording import Recording

# Metadata keys a file may carry, and the spellings accepted for them.
META_ALIASES = {
    "sampling_rate_hz": "sampling_rate_hz",
    "sampling_rate": "sampling_rate_hz",
    "sample_rate": "sampling_rate_hz",
    "sample_rate_hz": "sampling_rate_hz",
    "sampling_frequency": "sampling_rate_hz",
    "fs": "sampling_rate_hz",
    "fs_hz": "sampling_rate_hz",
    "leads": "leads",
    "recorded_at": "recorded_at",
    "record_id": "record_id",
    "patient_ref": "patient_ref",
    "site": "site",
    "device": "device",
}
TEXT_META = ("recorded_at", "record_id", "patient_ref", "site", "device")
MAX_CHANNELS = 64


def check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype.kind not in "iuf":
        kinds = {"b": "booleans", "c": "complex numbers", "O": "Python objects"}
        held = kinds.get(dtype.kind, "values that are not numbers")
        raise RejectedFile(f"{what} holds {held}; it must hold numbers (mV)", "not_numeric")


def check_shape(shape: tuple[int, ...], what: str) -> tuple[int, int]:
    """(rows, channels) of a [T, C] array (or [N, W, C] windows, joined), or RejectedFile."""
    if len(shape) == 1:
        raise RejectedFile(
            f"{what} is 1-D ({shape[0]} values); expected [samples, channels], one column per lead",
            "wrong_shape",
        )
    if len(shape) not in {2, 3}:
        raise RejectedFile(
            f"{what} has {len(shape)} dimensions; expected [samples, channels]", "wrong_shape"
        )
    # The endpoint's own batch format [N, 2000, C]: consecutive windows of one recording.
    rows, cols = math.prod(shape[:-1]), shape[-1]
    if rows * cols == 0:
        raise RejectedFile(f"{what} holds no samples", "no_samples")
    if rows <= 16 < cols:
        raise RejectedFile(
            f"{what} has shape [{rows}, {cols}], which looks like [channels, samples]; "
            "send [samples, channels] (transpose it)",
            "transposed",
        )
    if cols > MAX_CHANNELS:
        raise RejectedFile(
            f"{what} has {cols} channels; at most {MAX_CHANNELS} are accepted", "wrong_shape"
        )
    return rows, cols


def parse_rate(value: Any, where: str) -> float:
    if isinstance(value, bool):
        value = None
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise RejectedFile(
            f"{where} is not a positive number of samples per second (e.g. 500)", "bad_rate"
        )
    return rate


def stated_rate(raw: dict[str, Any], where: str) -> float | None:
    return parse_rate(raw["sampling_rate_hz"], where) if "sampling_rate_hz" in raw else None


def text_meta(raw: dict[str, Any], where: str) -> dict[str, str]:
    meta: dict[str, str] = {}
    for name in TEXT_META:
        value = raw.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise RejectedFile(f"{where} '{name}' must be a string", "bad_metadata")
        text = str(value).strip()
        if text:
            meta[name] = text[:256]
    return meta


def lead_names(value: Any, channels: int, where: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise RejectedFile(f"{where} 'leads' must be a list of lead names", "bad_leads")
    names = [v.strip() for v in value]
    if len(names) != channels:
        raise RejectedFile(
            f"{where} names {len(names)} leads but the signal has {channels} channels", "bad_leads"
        )
    return names


def select(names: list[str] | None, channels: int, limits: Limits) -> tuple[list[int], int]:
    """(channels to keep, leads prepare will copy and resample). Kept: the model's leads when
    the file names each of them once, else all (prepare then names what is missing or
    twice). Prepared: none when prepare must refuse first (too few channels, a model lead
    missing or named twice), else the model's (every channel without them)."""
    everything = list(range(channels))
    if limits.model_leads is None:
        return everything, channels
    if channels < len(limits.model_leads):
        return everything, 0
    if names is None:
        return everything, len(limits.model_leads)
    keys = [canonical(name) for name in names]  # as prepare's select_leads matches them
    wanted = {canonical(lead) for lead in limits.model_leads}
    named = [k for k in keys if k is not None]
    if len(set(named)) != len(named) or not wanted <= set(named):
        return everything, 0
    return [j for j, k in enumerate(keys) if k in wanted], len(wanted)


def build_recording(
    signal: np.ndarray,
    fs: float | None,
    names: list[str] | None,
    keep: list[int],
    fmt: str,
    **rest: Any,
) -> Recording:
    """The Recording of the kept channels; it lists every lead the file names when some
    were not kept."""
    kept = [names[j] for j in keep] if names is not None else None
    dropped = names is not None and len(keep) < len(names)
    return Recording(signal, fs, kept, fmt, leads_in_file=names if dropped else None, **rest)
