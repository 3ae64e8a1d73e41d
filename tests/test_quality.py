"""Signal quality (scorer.quality): what a user of the pipeline would notice. Noise, flat,
saturated and out-of-range windows are never scored and say which lead is wrong; real and
synthetic ECGs of every kind, arrhythmias included, are scored."""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path

import numpy as np
import pytest
from scorer import quality
from scorer.prepare import rate_ratio, resample_poly

LEADS = ("I", "II", "V2")
FS = 200.0
PTBXL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ptbxl"


def at_model_rate(x: np.ndarray, fs: float) -> np.ndarray:
    """[T, C] at ``fs`` -> model windows [N, 2000, C], resampled as the Lambda does."""
    up, down = rate_ratio(fs, FS)
    y = resample_poly(x, up, down)
    n = y.shape[0] // 2000
    return y[: n * 2000].reshape(n, 2000, x.shape[1]).astype(np.float32)


@pytest.fixture(scope="module")
def synthetic() -> types.ModuleType:
    """model_code/synthetic.py alone (numpy only): the model_code fixture would import torch."""
    path = Path(__file__).resolve().parent.parent / "model_code" / "synthetic.py"
    spec = importlib.util.spec_from_file_location("synthetic_ecgs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ecg(synthetic: types.ModuleType) -> np.ndarray:
    """Four 10-s synthetic sinus-rhythm windows, leads I, II, V2, at the model's rate."""
    return synthetic.synthesize_batch(["normal"] * 4, 10.0, FS, LEADS, np.random.default_rng(4))


def only(verdicts: list[quality.Verdict]) -> set[tuple[str | None, tuple[str, ...]]]:
    return {(v.code, v.leads) for v in verdicts}


@pytest.mark.parametrize("sd", [0.05, 0.2, 1.0, 2.0])
def test_gaussian_noise_is_unusable_noise(sd: float) -> None:
    rng = np.random.default_rng(1)
    windows = at_model_rate(rng.normal(0, sd, (20_000, 3)), 500.0)  # 40 s at 500 Hz
    verdicts = quality.assess(windows, LEADS, FS)
    assert only(verdicts) == {("noise", LEADS)}
    assert "leads I, II, V2 hold noise with no detectable QRS complexes" in verdicts[0].reason


def test_a_flat_lead_makes_the_window_unusable_and_is_named(ecg: np.ndarray) -> None:
    ecg[:, :, 2] = 0.0
    verdicts = quality.assess(ecg, LEADS, FS)
    assert only(verdicts) == {("flat", ("V2",))}
    assert verdicts[0].reason == "lead V2 is flat (electrode off or lead not connected?)"


def test_flat_with_tiny_noise_is_flat() -> None:
    windows = np.random.default_rng(2).normal(0.2, 0.003, (2, 2000, 3)).astype(np.float32)
    assert only(quality.assess(windows, LEADS, FS)) == {("flat", LEADS)}


def test_a_lead_with_only_mains_hum_is_disconnected(ecg: np.ndarray) -> None:
    t = np.arange(2000) / FS
    ecg[:, :, 0] = 0.4 * np.sin(2 * np.pi * 60 * t)
    verdicts = quality.assess(ecg, LEADS, FS)
    assert only(verdicts) == {("disconnected", ("I",))}
    assert "lead I carries only mains hum (50/60 Hz)" in verdicts[0].reason


@pytest.mark.parametrize("value", [32767.0, -32767.0])
def test_int16_rail_values_are_out_of_range(value: float) -> None:
    rng = np.random.default_rng(3)
    windows = (value * rng.choice((-1.0, 1.0), (2, 2000, 3))).astype(np.float32)
    windows[1] = value
    verdicts = quality.assess(windows, LEADS, FS)
    assert only(verdicts) == {("out_of_range", LEADS)}
    assert "beyond +/-300 mV" in verdicts[0].reason
    assert "raw ADC counts" in verdicts[0].reason


def test_an_ecg_in_microvolts_is_out_of_range(ecg: np.ndarray) -> None:
    assert only(quality.assess(ecg * 1000, LEADS, FS)) == {("out_of_range", LEADS)}


def test_an_ecg_driven_into_the_adc_rails_is_saturated(synthetic: types.ModuleType) -> None:
    """A 40-mV electrode-motion swing pins a 16-bit recorder (1000 counts/mV) at its rails."""
    fs = 500.0
    x = synthetic.synthesize("normal", 20.0, fs, LEADS, np.random.default_rng(5))
    swing = 40.0 * np.sin(2 * np.pi * 0.15 * np.arange(x.shape[0]) / fs)[:, None]
    counts = np.clip(np.round((x + swing) * 1000), -32767, 32767)
    verdicts = quality.assess(at_model_rate(counts / 1000, fs), LEADS, FS)
    assert only(verdicts) == {("saturated", LEADS)}
    assert "clipped at the recorder's limits" in verdicts[0].reason


def test_clipped_qrs_complexes_are_saturated(synthetic: types.ModuleType) -> None:
    """R waves cut flat by a recorder's range, recorded at 500 Hz and resampled."""
    fs = 500.0
    x = synthetic.synthesize("normal", 10.0, fs, ["II"], np.random.default_rng(6))
    level = 0.5 * x.max()
    lead = np.clip(x, None, level)
    ecg = synthetic.synthesize("normal", 10.0, fs, LEADS, np.random.default_rng(7))
    ecg[:, 1] = lead[:, 0]
    assert only(quality.assess(at_model_rate(ecg, fs), LEADS, FS)) == {("saturated", ("II",))}


@pytest.mark.parametrize("kind", ["normal", "af", "pvc", "wide_qrs", "st_elevation",
                                  "st_depression", "bradycardia", "tachycardia"])  # fmt: skip
def test_synthetic_ecgs_of_every_kind_are_usable(kind: str, synthetic: types.ModuleType) -> None:
    assert kind in synthetic.KINDS
    windows = synthetic.synthesize_batch([kind] * 30, 10.0, FS, LEADS, np.random.default_rng(8))
    assert only(quality.assess(windows, LEADS, FS)) == {(None, ())}


def test_fibrillation_like_waves_without_qrs_are_not_called_noise() -> None:
    """Ventricular flutter/fibrillation has no QRS complexes; it must reach the model."""
    t = np.arange(2000) / FS
    rng = np.random.default_rng(9)
    waves = [0.6 * np.sin(2 * np.pi * (4.5 + j) * t + j) + rng.normal(0, 0.02, t.size)
             for j in range(3)]  # fmt: skip
    windows = np.stack(waves, axis=1)[None].astype(np.float32)
    assert quality.assess(windows, LEADS, FS)[0].usable


def read_format16(record: Path, leads: tuple[str, ...]) -> tuple[np.ndarray, float]:
    """A PTB-XL record (WFDB format 16, one .dat) as [T, C] mV: enough for this test."""
    lines = [ln.split() for ln in record.with_suffix(".hea").read_text().splitlines() if ln]
    n_sig, fs = int(lines[0][1]), float(lines[0][2])
    raw = np.fromfile(record.with_suffix(".dat"), dtype="<i2").reshape(-1, n_sig)
    columns = []
    for lead in leads:
        spec = next(s for s in lines[1 : n_sig + 1] if s[-1] == lead)
        gain, baseline = re.fullmatch(r"([\d.]+)\((-?\d+)\)/mV", spec[2]).groups()  # type: ignore[union-attr]
        columns.append((raw[:, lines.index(spec) - 1] - int(baseline)) / float(gain))
    return np.column_stack(columns), fs


def test_real_ptbxl_windows_are_usable() -> None:
    """The first 100 PTB-XL records (NORM and every diagnosis among them)."""
    if not PTBXL.is_dir():
        pytest.skip(f"PTB-XL records not found at {PTBXL}")
    records = sorted((PTBXL / "records500").glob("*/*_hr.hea"))[:100]
    windows = np.concatenate(
        [at_model_rate(*read_format16(r.with_suffix(""), LEADS)) for r in records]
    )
    verdicts = quality.assess(windows, LEADS, FS)
    assert len(verdicts) == 100
    assert [v.reason for v in verdicts if not v.usable] == []


def test_verdicts_are_deterministic_and_independent_of_the_batch(ecg: np.ndarray) -> None:
    ecg[1, :, 2] = 0.0
    ecg[3] = np.random.default_rng(10).normal(0, 0.3, (2000, 3))
    batch = quality.assess(ecg, LEADS, FS)
    assert quality.assess(ecg, LEADS, FS) == batch
    assert [quality.assess(w[None], LEADS, FS)[0] for w in ecg] == batch
    assert [v.code for v in batch] == [None, "flat", None, "noise"]


def test_file_reason_names_the_fault_lead_and_what_to_check(ecg: np.ndarray) -> None:
    ecg = ecg[:3].copy()
    ecg[:, :, 2] = 0.0
    reason = quality.summarise(quality.assess(ecg, LEADS, FS), window_seconds=10.0)
    assert reason == (
        "no usable 10-s window: lead V2 is flat in all 3 windows "
        "(electrode off or lead not connected?)"
    )


def test_file_reason_counts_mixed_faults_and_quotes_no_sample_value(ecg: np.ndarray) -> None:
    ecg = ecg[:3].copy()
    ecg[0, :, 2] = 0.0
    ecg[1:] = 1234.5678 + ecg[1:]  # an offset beyond any electrode's: not mV
    reason = quality.summarise(quality.assess(ecg, LEADS, FS), window_seconds=10.0)
    assert reason.startswith("no usable 10-s window: ")
    assert "leads I, II, V2 hold values beyond +/-300 mV in 2 of 3 windows" in reason
    assert "lead V2 is flat in 1 of 3 windows" in reason
    assert "1234" not in reason and "5678" not in reason


def test_summarise_refuses_a_file_with_a_usable_window(ecg: np.ndarray) -> None:
    with pytest.raises(ValueError, match="none of them usable"):
        quality.summarise(quality.assess(ecg, LEADS, FS), window_seconds=10.0)


def test_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[N, T, 3\]"):
        quality.assess(np.zeros((2000, 3), dtype=np.float32), LEADS, FS)


def test_a_slow_wave_without_qrs_is_disconnected_in_every_lead() -> None:
    """Whatever its phase at the window's ends, a 1.2-Hz wave has no QRS complexes."""
    t = np.arange(2000) / FS
    waves = [0.5 * np.sin(2 * np.pi * 1.2 * t + k) + 2.0 * k for k in range(3)]
    windows = np.stack(waves, axis=1)[None].astype(np.float32)
    assert only(quality.assess(windows, LEADS, FS)) == {("disconnected", LEADS)}
