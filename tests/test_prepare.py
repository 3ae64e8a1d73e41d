"""Preparation: leads, gap filling, NumPy-only resampling (checked against SciPy), windows
(whole files and chunks of long ones), and the real PTB recording."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import scipy.signal
from scorer.errors import RejectedFile
from scorer.prepare import (
    MAX_GAP_SECONDS,
    chunks,
    fill_gaps,
    prepare,
    rate_ratio,
    resample_poly,
)
from scorer.readers import read_recording
from scorer.recording import Recording
from scorer_helpers import ecg_like

LEADS = ("I", "II", "V2")


def _recording(
    signal: np.ndarray, fs: float | None, leads: list[str] | None, fmt: str = "npz"
) -> Recording:
    return Recording(signal.astype(np.float32), fs, leads, fmt)


@pytest.mark.parametrize(
    ("up", "down"), [(1, 5), (2, 5), (5, 9), (4, 5), (7, 9), (2, 1), (5, 3), (1, 2)]
)
@pytest.mark.parametrize("length", [1, 7, 101, 2000, 5003])
@pytest.mark.parametrize("padtype", ["constant", "mean"])
def test_resample_poly_matches_scipy(up: int, down: int, length: int, padtype: str) -> None:
    x = np.random.default_rng(length).normal(size=(length, 3)) + 2.0
    ours = resample_poly(x, up, down, padtype=padtype)
    theirs = scipy.signal.resample_poly(x, up, down, axis=0, padtype=padtype)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)


def test_resampling_filters_what_the_new_rate_cannot_hold() -> None:
    t = np.arange(10_000) / 1000
    passband = np.sin(2 * np.pi * 10 * t)  # 10 Hz: kept
    alias = np.sin(2 * np.pi * 150 * t)  # 150 Hz: above the new 100 Hz Nyquist, would fold to 50 Hz
    out = resample_poly(np.column_stack([passband, alias]), 1, 5)
    middle = slice(100, -100)  # away from the edges
    assert np.abs(out[middle, 0]).max() == pytest.approx(1.0, abs=0.01)
    assert np.abs(out[middle, 1]).max() < 0.01


@pytest.mark.parametrize(
    ("fs", "expected"), [(1000, (1, 5)), (500, (2, 5)), (360, (5, 9)), (250, (4, 5)), (100, (2, 1))]
)
def test_rate_ratio(fs: float, expected: tuple[int, int]) -> None:
    assert rate_ratio(fs, 200) == expected


def test_odd_rate_gets_a_short_filter_and_a_close_ratio() -> None:
    up, down = rate_ratio(257.3, 200)
    assert max(up, down) <= 100
    assert up / down == pytest.approx(200 / 257.3, rel=1e-3)


@pytest.mark.parametrize(
    ("samples", "starts"),
    [
        (2000, [0]),
        (4000, [0, 2000]),
        (4001, [0, 2000, 2001]),
        (4999, [0, 2000, 2999]),
        (5000, [0, 2000, 3000]),
        (5999, [0, 2000, 3999]),
    ],
)
def test_windows_are_consecutive_and_a_tail_gets_a_last_window_ending_at_the_end(
    samples: int, starts: list[int]
) -> None:
    # An ECG on a slow ramp: every sample differs, so a window's place shows in its values.
    x = ecg_like(samples / 200, 200) + np.arange(samples)[:, None] * 1e-4
    prepared = prepare(_recording(x, 200, list(LEADS)), LEADS, 200, 2000)
    assert prepared.window_starts_s == [s / 200 for s in starts]
    for window, start in zip(prepared.windows, starts, strict=True):
        # Every window is real samples of the recording: nothing padded, nothing invented.
        np.testing.assert_allclose(window, x[start : start + 2000], rtol=1e-6)
    np.testing.assert_allclose(prepared.windows[-1, -1], x[-1], rtol=1e-6)  # none unscored
    assert all(v.usable for v in prepared.verdicts)


def test_leads_are_taken_by_name_and_a_missing_limb_lead_is_derived() -> None:
    names = ["v2", "Lead III", "aVR", "I"]
    signal = ecg_like(10, 200, leads=tuple(names))
    prepared = prepare(_recording(signal, 200, names), LEADS, 200, 2000)
    assert prepared.leads_derived == ["II"]  # Einthoven: II = I + III
    np.testing.assert_allclose(prepared.windows[0, :, 1], signal[:, 3] + signal[:, 1], atol=1e-5)
    np.testing.assert_allclose(prepared.windows[0, :, 2], signal[:, 0], atol=1e-6)


def test_short_gaps_are_interpolated_and_long_ones_reported() -> None:
    x = np.column_stack([np.linspace(0, 1, 1000)] * 3)
    x[100:110, 1] = np.nan  # 10 samples at 200 Hz = 50 ms
    x[500:560, 2] = np.nan  # 300 ms: longer than MAX_GAP_SECONDS
    filled, long_gaps = fill_gaps(x.copy(), 200, LEADS)
    np.testing.assert_allclose(filled, np.column_stack([np.linspace(0, 1, 1000)] * 3))
    assert long_gaps == [("V2", slice(500, 560))] and MAX_GAP_SECONDS < 60 / 200


@pytest.mark.parametrize("fs", [200.0, 250.0, 360.0, 500.0, 1000.0, 257.3])
@pytest.mark.parametrize("seconds", [95.0, 100.0, 61.3])
def test_chunks_of_a_long_recording_cut_what_the_whole_file_cuts(fs: float, seconds: float) -> None:
    """Chunks read by different invocations add up to the whole file, window for window."""
    signal = ecg_like(seconds, fs)
    signal[int(20.2 * fs) : int(20.6 * fs), 0] = np.nan  # a long gap, inside chunk 0
    whole = prepare(_recording(signal, fs, list(LEADS)), LEADS, 200, 2000)
    frame = 5 if fs == 500 else 1  # e.g. reads by whole EDF records
    parts = chunks(len(signal), fs, 200, 2000, per_chunk=3, frame=frame)
    assert len(parts) == -(-int(whole.duration_s // 10) // 3)
    pieces = []
    for part in parts:
        assert part.read.start % frame == 0 and part.read.stop % frame == 0
        piece = _recording(signal[part.read.start : part.read.stop], fs, list(LEADS))
        pieces.append(prepare(piece, LEADS, 200, 2000, span=part.span))
    assert [t for p in pieces for t in p.window_starts_s] == whole.window_starts_s
    joined = np.concatenate([p.windows for p in pieces])
    # The same samples inside the recording. At its two real ends (the filter's reach, 50
    # samples) the resampler's mean padding sees the chunk's mean instead of the file's:
    # a few uV there (an ECG's ADC step is 1-5 uV).
    inside = np.ones(whole.windows.shape[:2], bool)
    inside[0, :50] = inside[-1, -50:] = False
    np.testing.assert_allclose(joined[inside], whole.windows[inside], rtol=0, atol=1e-4)
    np.testing.assert_allclose(joined, whole.windows, rtol=0, atol=1e-2)
    gaps = [g for p in pieces for g in p.gaps_s]
    assert len(gaps) == len(whole.gaps_s) == 1 and gaps[0][0] == whole.gaps_s[0][0] == "I"
    assert np.allclose(gaps[0][1:], whole.gaps_s[0][1:])
    assert [v.code for p in pieces for v in p.verdicts] == [v.code for v in whole.verdicts]


def test_prepare_resamples_and_cuts_windows() -> None:
    signal = ecg_like(25, 500, leads=("V2", "I", "II"))
    prepared = prepare(_recording(signal, 500, ["V2", "I", "II"]), LEADS, 200, 2000)
    assert prepared.windows.shape == (3, 2000, 3) and prepared.windows.dtype == np.float32
    assert prepared.window_starts_s == [0.0, 10.0, 15.0] and not prepared.rate_assumed
    reference = scipy.signal.resample_poly(signal[:, [1, 2, 0]], 2, 5, axis=0, padtype="mean")
    np.testing.assert_allclose(prepared.windows.reshape(-1, 3)[:4000], reference[:4000], atol=1e-5)
    np.testing.assert_allclose(prepared.windows[2], reference[3000:5000], atol=1e-5)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


TEN_S, FORTY_S = ecg_like(10, 200), ecg_like(20, 200)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("seed.json", json.dumps({"signals": TEN_S.tolist()}).encode()),
        ("batch.json", json.dumps({"signals": FORTY_S.reshape(2, 2000, 3).tolist()}).encode()),
        ("seed.npy", _npy(TEN_S)),
        ("batch.npy", _npy(FORTY_S.reshape(2, 2000, 3))),
    ],
)
def test_the_endpoints_own_format_is_taken_at_the_model_rate(name: str, data: bytes) -> None:
    prepared = prepare(read_recording(data, name), LEADS, 200, 2000)
    assert prepared.rate_assumed and prepared.sampling_rate_hz == 200


@pytest.mark.parametrize(
    ("name", "data", "how"),
    [
        ("long.json", json.dumps({"signals": FORTY_S.tolist()}).encode(), '"sampling_rate_hz"'),
        (
            "named.json",
            json.dumps({"signals": TEN_S.tolist(), "leads": list(LEADS)}).encode(),
            '"sampling_rate_hz"',
        ),
        ("long.npy", _npy(FORTY_S), ".npz with an array 'sampling_rate_hz'"),
        ("seed.npz", _npz(signals=TEN_S), "array 'sampling_rate_hz' to the .npz"),
        ("plain.csv", b"I,II,V2\n" + b"0.1,0.2,0.3\n" * 2400, "time column"),
    ],
)
def test_a_rate_is_never_guessed_for_other_files(name: str, data: bytes, how: str) -> None:
    with pytest.raises(RejectedFile) as caught:
        prepare(read_recording(data, name), LEADS, 200, 2000)
    assert caught.value.code == "no_rate"
    assert how in caught.value.reason and "x-amz-meta-sampling-rate-hz" in caught.value.reason


def test_values_beyond_a_million_are_not_mv() -> None:
    counts = ecg_like(10, 200) * 2e6  # raw ADC counts, say
    with pytest.raises(RejectedFile, match="must be in mV") as caught:
        prepare(_recording(counts, 200, list(LEADS)), LEADS, 200, 2000)
    assert caught.value.code == "not_mv"


def test_values_beyond_float32_are_refused_not_sent_as_inf() -> None:
    huge = ecg_like(10, 200)
    huge[5, 1] = 1e39  # a float64 in the file; inf once the signal is float32
    data = json.dumps({"signals": huge.tolist(), "fs": 200, "leads": list(LEADS)}).encode()
    with pytest.raises(RejectedFile) as caught:
        prepare(read_recording(data, "huge.json"), LEADS, 200, 2000)
    assert caught.value.code in {"infinite", "not_finite"}


@pytest.mark.parametrize("scale", [1e3, 4e5, 9.5e5, 9.99e5, 1.2e6])
@pytest.mark.parametrize("fs", [200.0, 500.0, 360.0])
def test_what_prepare_lets_through_the_endpoint_accepts(
    scale: float, fs: float, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """prepare.py promises the endpoint's own checks, so a 4xx can never be a file's fault:
    run model_code/inference.py's input_fn on whatever prepare returns."""
    monkeypatch.syspath_prepend("model_code")
    inference = pytest.importorskip("inference")
    signal = ecg_like(12, fs)
    signal = signal / np.abs(signal).max() * scale  # peaks right at the scale: resampling rings
    signal[: int(fs) // 20, 0] = np.nan  # and a short gap to fill
    try:
        prepared = prepare(_recording(signal, fs, list(LEADS)), LEADS, 200, 2000)
    except RejectedFile as rejected:
        # Beyond the endpoint's limit (1e6) the file is refused; far beyond any ECG in mV
        # (300 mV) every window is unusable.
        assert (rejected.code, scale >= 9e5) in {
            ("not_mv", True),
            ("poor_signal_quality", True),
        } or (rejected.code == "poor_signal_quality" and scale > 300)
        return
    accepted = inference.input_fn(_npy(prepared.windows), "application/x-npy")
    assert accepted.shape == prepared.windows.shape


def test_real_ptb_recording_at_1000_hz_is_resampled(shared_ecg) -> None:  # type: ignore[no-untyped-def]
    path = shared_ecg / "csv" / "ptbdb_s0010_re_i_ii_v2_38s_1000hz.csv"
    prepared = prepare(read_recording(path.read_bytes(), path.name), LEADS, 200, 2000)
    # 38.4 s at 200 Hz = 7680 samples: three full windows and a 1680-sample tail, covered by
    # a fourth window on the recording's last 10 s (contract 2: never padded).
    assert prepared.windows.shape == (4, 2000, 3)
    assert prepared.window_starts_s == [0.0, 10.0, 20.0, 28.4]
    assert prepared.sampling_rate_hz == 1000 and prepared.leads_found == ["i", "ii", "v2"]


@pytest.mark.parametrize(
    ("name", "missing", "found"),
    [
        # II would be derived from I and III; V is not V2 and cannot be derived.
        ("mimicdb_041s_III_I_V_16s_500hz.csv", "V2", "standard leads I, III and 1 other channel"),
        ("ptbdb_s0010_re_vxvyvz_10s_1000hz.csv", "I, II, V2", "3 other channels"),
    ],
)
def test_real_recordings_without_the_model_leads_are_refused(
    shared_ecg, name: str, missing: str, found: str
) -> None:  # type: ignore[no-untyped-def]
    recording = read_recording((shared_ecg / "csv" / name).read_bytes(), name)
    with pytest.raises(RejectedFile, match=f"missing leads? {missing}: found {found}; the model"):
        prepare(recording, LEADS, 200, 2000)


@pytest.mark.parametrize(
    ("fs", "leads"), [(360.0, ("MLII", "V1")), (500.0, ("II", "v2", "I", "aVR"))]
)
def test_synthetic_device_recordings_prepare_like_scipy(
    monkeypatch, fs: float, leads: tuple[str, ...]
) -> None:  # type: ignore[no-untyped-def]
    """Realistic recordings from model_code/synthetic.py, at device rates and lead sets."""
    monkeypatch.syspath_prepend("model_code")
    synthetic = pytest.importorskip("synthetic")
    signal = synthetic.synthesize("normal", 21.0, fs, leads, np.random.default_rng(7))
    recording = _recording(signal, fs, list(leads))
    if not {"i", "ii", "v2"} <= {lead.lower() for lead in leads}:
        with pytest.raises(RejectedFile, match="the model needs I, II, V2"):
            prepare(recording, LEADS, 200, 2000)
        return
    prepared = prepare(recording, LEADS, 200, 2000)
    up, down = rate_ratio(fs, 200)
    order = [[lead.lower() for lead in leads].index(name) for name in ("i", "ii", "v2")]
    reference = scipy.signal.resample_poly(
        signal.astype(np.float32).astype(np.float64)[:, order], up, down, axis=0, padtype="mean"
    )
    # 21 s: two windows and a 1-s tail, covered by a third window on the last 10 s.
    assert prepared.windows.shape == (3, 2000, 3) and prepared.window_starts_s == [0, 10, 11]
    np.testing.assert_allclose(prepared.windows[:2].reshape(-1, 3), reference[:4000], atol=1e-5)
    np.testing.assert_allclose(prepared.windows[2], reference[2200:4200], atol=1e-5)
