"""The synthetic ECG generator (model_code/synthetic.py) that trains the demo model and feeds
tests, the local demo and benchmarks."""

from __future__ import annotations

import types

import numpy as np
import pytest

LEADS = ["I", "II", "V2"]


@pytest.fixture
def syn(model_code: types.SimpleNamespace) -> types.ModuleType:
    """model_code/synthetic.py, loaded by conftest's model_code fixture."""
    return model_code.synthetic


def _beats(x: np.ndarray, fs: float) -> np.ndarray:
    """R-peak times (s) from a lead-II-like trace: band-limit, then local maxima of energy."""
    from scipy.signal import butter, filtfilt, find_peaks

    b, a = butter(2, [5.0 / (fs / 2), 25.0 / (fs / 2)], btype="band")
    energy = filtfilt(b, a, x) ** 2
    peaks, _ = find_peaks(energy, height=0.25 * np.percentile(energy, 99), distance=0.25 * fs)
    return peaks / fs


def _heart_rate(syn: types.ModuleType, kind: str, seed: int) -> tuple[float, float]:
    """Mean rate (bpm) and RR coefficient of variation of a 30 s lead II recording."""
    x = syn.synthesize(kind, 30.0, 250.0, ["II"], np.random.default_rng(seed))[:, 0]
    rr = np.diff(_beats(x, 250.0))
    return 60.0 / float(np.median(rr)), float(rr.std() / rr.mean())


KINDS = ["normal", "af", "pvc", "wide_qrs", "st_elevation", "st_depression", "bradycardia",
         "tachycardia"]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_a_finite_mv_trace_of_the_asked_shape(
    syn: types.ModuleType, kind: str
) -> None:
    assert kind in syn.KINDS
    x = syn.synthesize(kind, 10.0, 200.0, LEADS, np.random.default_rng(0))
    assert x.shape == (2000, 3)
    assert np.isfinite(x).all()
    # An ECG in mV: QRS of the order of 1 mV, not volts or microvolts.
    assert 0.3 < float(np.ptp(x, axis=0).max()) < 8.0
    assert syn.is_anomalous(kind) == (kind != "normal")


def test_same_seed_same_recording_other_seed_other_recording(syn: types.ModuleType) -> None:
    def make(seed: int) -> np.ndarray:
        return syn.synthesize("pvc", 10.0, 200.0, LEADS, np.random.default_rng(seed))

    assert np.array_equal(make(5), make(5))
    assert not np.allclose(make(5), make(6))


RATES = [(10.0, 200.0), (8.0, 500.0), (30.0, 360.0), (2.5, 1000.0), (16.0, 250.5), (10.0, 100.0)]


@pytest.mark.parametrize(("seconds", "fs"), RATES)
def test_any_rate_and_duration(syn: types.ModuleType, seconds: float, fs: float) -> None:
    x = syn.synthesize("normal", seconds, fs, LEADS, np.random.default_rng(0))
    assert x.shape == (round(seconds * fs), 3)
    assert np.isfinite(x).all()


def test_lead_names_are_matched_like_real_files_name_them(syn: types.ModuleType) -> None:
    def lead(name: str) -> np.ndarray:
        return syn.synthesize("normal", 5.0, 200.0, [name], np.random.default_rng(1))[:, 0]

    assert np.array_equal(lead("ii"), lead("II"))
    assert np.array_equal(lead("MLII"), lead("II"))
    assert np.array_equal(lead("II_mV"), lead("II"))
    assert np.array_equal(lead("ECG 1"), lead("II"))  # unknown -> the monitoring lead
    assert not np.allclose(lead("V1"), lead("II"))


def test_aVR_is_mostly_negative_where_II_is_positive(syn: types.ModuleType) -> None:
    x = syn.synthesize("normal", 10.0, 500.0, ["II", "aVR"], np.random.default_rng(3))
    assert np.corrcoef(x[:, 0], x[:, 1])[0, 1] < -0.5


def test_rates_and_rhythm_match_the_kind(syn: types.ModuleType) -> None:
    normal = [_heart_rate(syn, "normal", s) for s in range(4)]
    brady = [_heart_rate(syn, "bradycardia", s) for s in range(4)]
    tachy = [_heart_rate(syn, "tachycardia", s) for s in range(4)]
    af = [_heart_rate(syn, "af", s) for s in range(4)]
    assert all(50 <= hr <= 100 for hr, _ in normal), normal
    assert all(hr < 50 for hr, _ in brady), brady
    assert all(hr > 100 for hr, _ in tachy), tachy
    # Atrial fibrillation: irregularly irregular RR, far more variable than sinus rhythm.
    assert min(cv for _, cv in af) > 2 * max(cv for _, cv in normal)


def test_unknown_kind_lists_the_known_ones(syn: types.ModuleType) -> None:
    with pytest.raises(ValueError, match="expected one of normal, af, pvc"):
        syn.synthesize("vfib", 10.0, 200.0, LEADS, np.random.default_rng(0))


def test_batch_stacks_float32(syn: types.ModuleType) -> None:
    x = syn.synthesize_batch(["normal", "af"], 10.0, 200.0, LEADS, np.random.default_rng(0))
    assert x.shape == (2, 2000, 3) and x.dtype == np.float32
