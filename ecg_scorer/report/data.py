"""What a report shows: the trace the model saw and each window's figures.

The trace comes from S3 through the Lambda's own reader and preparation
(``scorer.readers.read_recording``, ``scorer.prepare.prepare``), with the S3 object's
metadata applied the way the Lambda applies it, so the picture is what was scored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from scorer import objects, read_checks, readers
from scorer.errors import RejectedFile
from scorer.prepare import prepare

# The demo model's contract (model_code/config.json); the Lambda's variables override it.
DEFAULT_LEADS = ("I", "II", "V2")
DEFAULT_RATE_HZ = 200.0
DEFAULT_WINDOW = 2000
USABLE = "ok"


@dataclass(frozen=True)
class Model:
    leads: tuple[str, ...]
    rate_hz: float
    window: int

    @property
    def window_s(self) -> float:
        return self.window / self.rate_hz

    @classmethod
    def from_env(cls) -> Model:
        """The Lambda's MODEL_LEADS, MODEL_SAMPLING_RATE_HZ, WINDOW_SAMPLES when set."""
        leads = os.environ.get("MODEL_LEADS")
        return cls(
            tuple(x.strip() for x in leads.split(",")) if leads else DEFAULT_LEADS,
            float(os.environ.get("MODEL_SAMPLING_RATE_HZ") or DEFAULT_RATE_HZ),
            int(os.environ.get("WINDOW_SAMPLES") or DEFAULT_WINDOW),
        )


@dataclass
class Window:
    start_s: float
    probability: float | None  # None: not scored (unusable signal)
    quality: str  # "ok", or the signal-quality code that kept it from the model


@dataclass
class Trace:
    """The model's view of the recording: [T, leads] mV at the model's rate."""

    signal: np.ndarray
    rate_hz: float
    leads: tuple[str, ...]

    @property
    def duration_s(self) -> float:
        return self.signal.shape[0] / self.rate_hz


@dataclass
class Figures:
    """The windows of one result, and what could not be shown and why."""

    windows: list[Window] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, Decimal | int | float) else None


def windows_of(item: dict[str, Any], s3: Any, model: Model) -> Figures:
    """Each window's start, probability and quality, from the item or from the S3 object the
    item points to (``windows_s3_uri``, for recordings too long for one item)."""
    figures = Figures()
    source: dict[str, Any] = item
    if "window_probabilities" not in item and item.get("windows_s3_uri"):
        try:
            source = _load_s3_json(s3, str(item["windows_s3_uri"]))
        except Exception as e:  # the page still shows everything else
            figures.notes.append(
                f"per-window figures are stored at {item['windows_s3_uri']} and could not be "
                f"read ({type(e).__name__})"
            )
            return figures
    probabilities = list(source.get("window_probabilities") or [])
    starts = list(source.get("window_start_s") or [])
    quality = list(source.get("window_quality") or [])
    if probabilities and not starts:  # items written before window_start_s existed
        starts = [n * model.window_s for n in range(len(probabilities))]
        figures.notes.append("window starts not stored: consecutive windows assumed")
    for n, start in enumerate(starts):
        p = _number(probabilities[n]) if n < len(probabilities) else None
        q = str(quality[n]) if n < len(quality) and quality[n] else USABLE
        if p is None and q == USABLE:
            q = "not scored"
        figures.windows.append(Window(float(start), p, q))
    return figures


def _load_s3_json(s3: Any, uri: str) -> dict[str, Any]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def load_trace(s3: Any, item: dict[str, Any], model: Model) -> Trace:
    """The recording of ``item`` (the version it names), read and prepared like the Lambda.

    RejectedFile when the file cannot be prepared (the reason says why).
    """
    request = {"Bucket": item["bucket"], "Key": item["key"]}
    if item.get("version_id"):
        request["VersionId"] = item["version_id"]
    response = s3.get_object(**request)
    data = response["Body"].read()
    s3_meta = objects.user_metadata(response.get("Metadata") or {})
    recording = readers.read_recording(data, str(item["key"]))
    if recording.fs is None and "sampling_rate_hz" in s3_meta:
        recording.fs = read_checks.parse_rate(s3_meta["sampling_rate_hz"], "S3 metadata")
    if recording.leads is None and "leads" in s3_meta:
        names = [n.strip() for n in s3_meta["leads"].split(",")]
        recording.leads = read_checks.lead_names(names, recording.signal.shape[1], "S3 metadata")
    prepared = prepare(recording, model.leads, model.rate_hz, model.window)
    return Trace(
        _join(prepared.windows, prepared.window_starts_s, model), model.rate_hz, model.leads
    )


def _join(windows: np.ndarray, starts_s: list[float], model: Model) -> np.ndarray:
    """The windows put back in place: consecutive slices of one signal, the last possibly
    overlapping the one before, so together they are the prepared signal itself."""
    starts = [round(s * model.rate_hz) for s in starts_s]
    signal = np.zeros((max(starts) + model.window, windows.shape[2]), dtype=np.float32)
    for start, window in zip(starts, windows, strict=True):
        signal[start : start + model.window] = window
    return signal


__all__ = ["Figures", "Model", "RejectedFile", "Trace", "Window", "load_trace", "windows_of"]
