"""What the ecg-scorer tests share: items written by the Lambda's own store, and ways to run
the command (the fixtures are in cli_fixtures)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scorer import store, uploads
from scorer.budget import Budget
from scorer.config import load_settings
from scorer.errors import RejectedFile
from scorer.prepare import Prepared
from scorer.quality import Verdict
from scorer.window_results import WindowResults, summary_of
from scorer_helpers import FakeContext

from ecg_scorer import cli

TABLE = "predictions-test"
BUCKET = "ingest-test"
NOW = datetime.now(UTC).replace(microsecond=0)
# The Lambda's settings (as template.yaml sets them) that the store's items record.
LAMBDA_ENV = {
    "PREDICTIONS_TABLE": TABLE,
    "SCORING_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/scoring",
    "ENDPOINT_NAME": "cnn1d-lstm-ecg-v1",
    "MODEL_VERSION": "cnn1d_lstm_ecg_v1",
    "MODEL_LEADS": "I,II,V2",
    "MODEL_SAMPLING_RATE_HZ": "200",
    "WINDOW_SAMPLES": "2000",
    "MAX_FILE_BYTES": "26214400",
    "MAX_RECORDING_BYTES": "4294967296",
    "MAX_PAYLOAD_BYTES": "4000000",
    "POWERTOOLS_SERVICE_NAME": "ecg-scorer",
    "POWERTOOLS_METRICS_NAMESPACE": "EcgScorer",
    "LOG_LEVEL": "INFO",
}
CLI_ENV = ("ECG_SCORER_TABLE", "ECG_SCORER_BUCKET", "ECG_SCORER_QUEUE_URL", "ECG_SCORER_DLQ_URL")


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def share_near(pixels: np.ndarray, hex_colour: str, tolerance: int = 12) -> float:
    """Fraction of pixels within ``tolerance`` of a colour on every channel."""
    close = np.all(np.abs(pixels[..., :3].astype(int) - rgb(hex_colour)) <= tolerance, axis=-1)
    return float(close.mean())


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def ecg_npz(seconds: float, fs: float = 250.0) -> bytes:
    """Three leads of a regular rhythm, named, with its rate: what a device would upload."""
    t = np.arange(int(seconds * fs)) / fs

    def beat(at: float, width: float) -> np.ndarray:
        return np.exp(-(((t % 0.8) - at) ** 2) / width)

    lead_ii = 1.1 * beat(0.3, 2e-4) + 0.25 * beat(0.55, 2e-3) + 0.1 * beat(0.12, 1e-3)
    # V2: a deep S and an upright T, on a breathing baseline (a flat one reads as clipped).
    lead_v2 = -0.6 * beat(0.3, 2e-4) + 0.3 * beat(0.55, 2e-3) + 0.05 * np.sin(2 * np.pi * 0.25 * t)
    signal = np.stack([0.7 * lead_ii, lead_ii, lead_v2], axis=1)
    body = io.BytesIO()
    np.savez(
        body, signal=signal.astype(np.float32), fs=np.array(fs), leads=np.array(["I", "II", "V2"])
    )
    return body.getvalue()


def stored(
    ddb: Any,
    key: str,
    at: datetime,
    site: str | None = "stmarys",
    device: str | None = "holter-7",
    probability: float | None = 0.1,
    reason: str | None = None,
    model_version: str = "cnn1d_lstm_ecg_v1",
    uploaded_at: datetime | None = None,
    full_key: str | None = None,
) -> dict[str, Any]:
    """Put one item built by the Lambda's own store (so a change there reaches these tests)."""
    full_key = full_key or f"incoming/{site}/{device}/{key}"
    ref = uploads.FileRef(
        bucket=BUCKET,
        key=full_key,
        version_id="v-1",
        etag='"abc"',
        size_bytes=1234,
        sequencer="0055AED6DCD90281E5",
        uploaded_at=uploaded_at or at,
    )
    facts = uploads.FileFacts(
        site=site, device=device, format="csv", recorded_at=at if uploaded_at else None
    )
    settings = load_settings({**LAMBDA_ENV, "MODEL_VERSION": model_version})
    scored_at = at + timedelta(seconds=3)
    if reason is not None:
        item = store.rejected_item(
            ref, facts, RejectedFile(reason, "test_reason"), settings, scored_at
        )
    else:
        assert probability is not None
        prepared = Prepared(
            windows=np.zeros((2, 2000, 3), dtype=np.float32),
            window_starts_s=[0.0, 10.0],
            sampling_rate_hz=200.0,
            rate_assumed=False,
            leads_found=["I", "II", "V2"],
            duration_s=20.0,
            verdicts=[Verdict(), Verdict()],
        )
        results = WindowResults.of(prepared, [probability, 0.05])
        summary = summary_of(prepared, 0.5)
        item = store.scored_item(ref, facts, results, summary, settings, scored_at)
    context = FakeContext()
    budget = Budget(context, sleep=context.sleep)
    if site and device:
        store.register_device(ddb, TABLE, site, device, at, budget, set())
    assert store.put_item(ddb, TABLE, item, budget)
    return item


def run(*argv: str) -> str:
    out = io.StringIO()
    assert cli.main(list(argv), out=out) == 0
    return out.getvalue()


def run_failing(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command that must fail with status 1; its one error line."""
    capsys.readouterr()
    assert cli.main(list(argv), out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert err.startswith("ecg-scorer: "), err
    return err


def run_json(*argv: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(run(*argv, "--format", "json", "--table", TABLE))
    return result


def keys(rows: list[dict[str, Any]]) -> list[str]:
    return [r["key"].rsplit("/", 1)[-1] for r in rows]
