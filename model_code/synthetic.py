"""Synthetic ECGs: sinus rhythm and the anomalies a screening model should flag.

Each beat is a sum of Gaussian waves (P, Q, R, S, T) drawn by a 3-D cardiac dipole; a lead
is the projection of that dipole on the lead's axis, so any common lead name (I, II, III,
aVR, aVL, aVF, V1-V6, MLII, MCL1, Frank X/Y/Z, ...) gets a consistent signal and unknown
names fall back to lead II, the usual monitoring lead. Records carry heart-rate
variability, baseline wander, mains hum and muscle noise, and are generated at any
sampling rate and duration. Everything is drawn from the ``numpy.random.Generator`` passed
in, so the same seed gives the same recording.

Only numpy is needed: tests, the local demo and benchmarks import this module too.

Example
-------
>>> import numpy as np
>>> x = synthesize("af", 10.0, 200.0, ["I", "II", "V2"], np.random.default_rng(0))
>>> x.shape
(2000, 3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NORMAL = "normal"
#: Every kind ``synthesize`` accepts; all but ``normal`` are anomalous.
KINDS: tuple[str, ...] = (
    NORMAL,
    "af",
    "pvc",
    "wide_qrs",
    "st_elevation",
    "st_depression",
    "bradycardia",
    "tachycardia",
)
ANOMALY_KINDS: tuple[str, ...] = KINDS[1:]

# Heart-rate ranges (beats per minute). Normal stays clear of the brady/tachy cut-offs so
# that labels are unambiguous for training.
_HR_NORMAL = (55.0, 95.0)
_HR_BRADY = (32.0, 48.0)
_HR_TACHY = (110.0, 170.0)


def _frontal(deg: float) -> tuple[float, float, float]:
    # x points to the patient's left, y downwards (inferior), z forwards (anterior).
    r = np.deg2rad(deg)
    return (float(np.cos(r)), float(np.sin(r)), 0.0)


def _horizontal(deg: float, inferior: float = 0.1) -> tuple[float, float, float]:
    r = np.deg2rad(deg)
    return (float(np.cos(r)), inferior, float(np.sin(r)))


_AUG = float(np.sqrt(3.0) / 2.0)
# Lead axes as 3-D vectors (hexaxial frontal system, approximate precordial angles).
LEAD_AXES: dict[str, tuple[float, float, float]] = {
    "I": _frontal(0.0),
    "II": _frontal(60.0),
    "III": _frontal(120.0),
    "AVR": tuple(_AUG * c for c in _frontal(-150.0)),  # type: ignore[dict-item]
    "AVL": tuple(_AUG * c for c in _frontal(-30.0)),  # type: ignore[dict-item]
    "AVF": tuple(_AUG * c for c in _frontal(90.0)),  # type: ignore[dict-item]
    "V1": _horizontal(120.0),
    "V2": _horizontal(90.0),
    "V3": _horizontal(70.0),
    "V4": _horizontal(50.0),
    "V5": _horizontal(25.0),
    "V6": _horizontal(0.0),
    "X": (1.0, 0.0, 0.0),
    "Y": (0.0, 1.0, 0.0),
    "Z": (0.0, 0.0, 1.0),
}
# Names seen in real databases (MIT-BIH, PTB, MIMIC) for the same axes.
_ALIASES = {
    "MLI": "I",
    "MLII": "II",
    "MLIII": "III",
    "MCL1": "V1",
    "MCL6": "V6",
    "CM5": "V5",
    "V": "V5",
    "VX": "X",
    "VY": "Y",
    "VZ": "Z",
}
DEFAULT_LEAD = "II"


def lead_axis(name: str) -> np.ndarray:
    """Unit-ish axis of a lead name; case-insensitive, unit suffixes ignored, unknown -> II.

    Parameters
    ----------
    name : str
        Lead name such as ``"II"``, ``"ii"``, ``"V2_mV"`` or ``"MLII"``.

    Returns
    -------
    numpy.ndarray
        Shape ``[3]``: the lead's direction in (left, inferior, anterior) space.
    """
    key = name.strip().upper().replace(" ", "")
    for suffix in ("_MV", "(MV)", "_UV"):
        key = key.removesuffix(suffix)
    key = _ALIASES.get(key, key)
    return np.asarray(LEAD_AXES.get(key, LEAD_AXES[DEFAULT_LEAD]), dtype=np.float64)


def _unit(v: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def _jitter(v: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    # A small random rotation of a wave's direction: every heart has its own axis.
    return _unit(v + rng.normal(0.0, scale, 3))


# Mean wave directions (left, inferior, anterior) and amplitudes in mV.
_P_DIR = (0.5, 0.8, 0.2)
_Q_DIR = (-0.6, 0.2, 0.7)  # septal depolarisation: rightwards and forwards
_R_DIR = (0.6, 0.7, -0.4)
_S_DIR = (-0.4, -0.3, -0.85)
_T_DIR = (0.6, 0.6, 0.5)


def _rr_intervals(
    seconds: float, hr: float, rng: np.random.Generator, irregular: bool
) -> np.ndarray:
    """RR intervals (s) covering ``seconds`` plus one beat either side."""
    mean_rr = 60.0 / hr
    n = int(np.ceil(seconds / (mean_rr * (0.6 if irregular else 0.85)))) + 4
    if irregular:
        # Atrial fibrillation: irregularly irregular, no periodic structure.
        cv = rng.uniform(0.15, 0.3)
        rr = rng.gamma(1.0 / cv**2, mean_rr * cv**2, n)
        return np.clip(rr, 0.28, 2.0)
    # Sinus rhythm: respiratory sinus arrhythmia, a slower (Mayer) wave, small jitter.
    t = np.cumsum(np.full(n, mean_rr))
    rsa = rng.uniform(0.01, 0.05) * np.sin(
        2 * np.pi * rng.uniform(0.15, 0.35) * t + rng.uniform(0, 6.3)
    )
    mayer = rng.uniform(0.0, 0.03) * np.sin(
        2 * np.pi * rng.uniform(0.07, 0.12) * t + rng.uniform(0, 6.3)
    )
    rr = mean_rr * (1.0 + rsa + mayer + rng.normal(0.0, 0.01, n))
    return np.asarray(rr)


def _add_waves(
    out: np.ndarray,
    fs: float,
    centres: np.ndarray,
    widths: np.ndarray,
    vectors: np.ndarray,
) -> None:
    """Add Gaussian waves into the dipole signal ``out`` [T, 3] in place.

    ``centres`` and ``widths`` are seconds, shape [W]; ``vectors`` is [W, 3] in mV.
    """
    if centres.size == 0:
        return
    n = out.shape[0]
    half = int(np.ceil(4.0 * float(widths.max()) * fs)) + 1
    offs = np.arange(-half, half + 1)
    centre_idx = np.rint(centres * fs).astype(np.int64)
    idx = centre_idx[:, None] + offs[None, :]  # [W, L]
    t = idx / fs - centres[:, None]
    g = np.exp(-0.5 * (t / widths[:, None]) ** 2)  # [W, L]
    ok = (idx >= 0) & (idx < n)
    flat_idx = idx[ok]
    for d in range(3):
        w = (g * vectors[:, d : d + 1])[ok]
        out[:, d] += np.bincount(flat_idx, weights=w, minlength=n)


def synthesize(
    kind: str,
    seconds: float,
    fs: float,
    leads: Sequence[str],
    rng: np.random.Generator,
) -> np.ndarray:
    """One synthetic ECG recording.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`: ``normal`` (sinus rhythm, 55-95 bpm) or an anomaly:
        ``af`` (irregular RR, no P waves, fibrillatory waves), ``pvc`` (premature
        ventricular beats), ``wide_qrs`` (QRS > 120 ms, bundle-branch-block-like),
        ``st_elevation``, ``st_depression``, ``bradycardia`` (< 50 bpm),
        ``tachycardia`` (> 100 bpm).
    seconds : float
        Duration in seconds (> 0).
    fs : float
        Sampling rate in Hz (>= 50); any value, integer or not.
    leads : sequence of str
        Lead names, case-insensitive. Unknown names are drawn as lead II.
    rng : numpy.random.Generator
        Source of randomness; the same generator state gives the same recording.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of shape ``[round(seconds * fs), len(leads)]`` in mV.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if seconds <= 0 or fs < 50:
        raise ValueError("seconds must be > 0 and fs >= 50 Hz")
    if not leads:
        raise ValueError("at least one lead name is needed")
    n = round(seconds * fs)

    if kind == "bradycardia":
        hr = rng.uniform(*_HR_BRADY)
    elif kind == "tachycardia":
        hr = rng.uniform(*_HR_TACHY)
    elif kind == "af":
        hr = rng.uniform(70.0, 140.0)
    else:
        hr = rng.uniform(*_HR_NORMAL)
    irregular = kind == "af"
    rr = _rr_intervals(seconds, hr, rng, irregular)
    beats = np.cumsum(rr) - rng.uniform(0.3, 1.0) * rr[0] - rr[0]
    beats = beats[beats < seconds + 1.0]
    nb = beats.size

    # Per-record morphology: axis jitter and amplitude scale.
    amp = rng.uniform(0.6, 1.4)
    p_dir, q_dir = _jitter(_unit(_P_DIR), rng, 0.2), _jitter(_unit(_Q_DIR), rng, 0.2)
    r_dir, s_dir = _jitter(_unit(_R_DIR), rng, 0.25), _jitter(_unit(_S_DIR), rng, 0.25)
    t_dir = _jitter(_unit(_T_DIR), rng, 0.2)
    p_amp, q_amp = rng.uniform(0.08, 0.25), rng.uniform(0.05, 0.2)
    r_amp, s_amp = rng.uniform(0.9, 1.8), rng.uniform(0.2, 0.6)
    t_amp = rng.uniform(0.2, 0.45)
    qrs_scale = rng.uniform(0.85, 1.15)  # narrow QRS: ~70-100 ms
    if kind == "wide_qrs":
        qrs_scale = rng.uniform(2.0, 2.8)
    pr = rng.uniform(0.13, 0.19)

    cen: list[np.ndarray] = []
    wid: list[np.ndarray] = []
    vec: list[np.ndarray] = []

    def waves(at: np.ndarray, offset: float | np.ndarray, width: float, v: np.ndarray) -> None:
        at = np.asarray(at, dtype=np.float64)
        cen.append(at + offset)
        wid.append(np.full(at.size, width))
        vec.append(np.broadcast_to(v, (at.size, 3)) * rng.uniform(0.92, 1.08, (at.size, 1)))

    # Ventricular premature beats replace a few sinus beats, early, with a pause after.
    is_pvc = np.zeros(nb, dtype=bool)
    if kind == "pvc" and nb > 3:
        k = int(rng.integers(1, max(2, min(4, nb // 3)) + 1))
        picks = rng.choice(np.arange(1, nb - 1), size=min(k, nb - 2), replace=False)
        is_pvc[picks] = True
        for i in np.sort(picks):
            prev_rr = beats[i] - beats[i - 1]
            early = prev_rr * (1.0 - rng.uniform(0.3, 0.45))
            shift = beats[i] - (beats[i - 1] + early)
            beats[i] -= shift
    sinus = beats[~is_pvc]
    rr_local = (
        np.interp(sinus, beats[1:], np.diff(beats)) if nb > 1 else np.full(sinus.size, 60 / hr)
    )
    qt_shift = 0.28 * np.sqrt(np.clip(rr_local, 0.3, 2.0))  # Bazett-like QT scaling

    if kind != "af":
        waves(sinus, -pr, rng.uniform(0.02, 0.03), p_amp * amp * p_dir)
    q_w = 0.010 * qrs_scale
    waves(sinus, -0.025 * qrs_scale, q_w, q_amp * amp * q_dir)
    waves(sinus, 0.0, 0.011 * qrs_scale, r_amp * amp * r_dir)
    waves(sinus, 0.028 * qrs_scale, 0.012 * qrs_scale, s_amp * amp * s_dir)
    if kind == "wide_qrs":
        # A late R' (as in bundle branch block) and discordant repolarisation.
        rprime = _jitter(_unit((-0.3, 0.0, 0.9)) if rng.random() < 0.5 else r_dir, rng, 0.3)
        waves(sinus, 0.06 * qrs_scale / 2.4, 0.014 * qrs_scale, 0.6 * r_amp * amp * rprime)
        waves(sinus, qt_shift + 0.03, 0.06, -0.6 * t_amp * amp * t_dir)
    else:
        waves(sinus, qt_shift, rng.uniform(0.04, 0.06), t_amp * amp * t_dir)

    if kind in ("st_elevation", "st_depression"):
        # A raised/lowered ST segment: a broad plateau from the J point into the T wave,
        # built from overlapping Gaussians; reciprocal leads see the opposite sign.
        if kind == "st_elevation":
            st_dir = _jitter(
                _unit((0.2, 0.5, 0.8)) if rng.random() < 0.5 else _unit((0.4, 0.9, 0.1)), rng, 0.2
            )
            st_amp = rng.uniform(0.15, 0.4)
        else:
            st_dir = -_jitter(_unit((0.6, 0.6, 0.3)), rng, 0.2)
            st_amp = rng.uniform(0.12, 0.3)
        for frac in (0.25, 0.45, 0.65, 0.85):
            waves(sinus, 0.04 + frac * (qt_shift - 0.04), 0.035, st_amp * amp * st_dir)

    if is_pvc.any():
        pv = beats[is_pvc]
        pvc_dir = _jitter(-r_dir if rng.random() < 0.5 else _unit((0.2, -0.6, 0.8)), rng, 0.3)
        pvc_amp = rng.uniform(1.2, 2.2) * amp
        waves(pv, 0.0, rng.uniform(0.03, 0.045), pvc_amp * pvc_dir)
        waves(pv, 0.05, 0.03, 0.4 * pvc_amp * _jitter(-pvc_dir, rng, 0.3))
        waves(pv, 0.3, 0.07, -0.3 * pvc_amp * pvc_dir)

    dipole = np.zeros((n, 3))
    _add_waves(dipole, fs, np.concatenate(cen), np.concatenate(wid), np.concatenate(vec))

    t = np.arange(n) / fs
    if kind == "af":
        # Fibrillatory waves: 4-9 Hz, drifting frequency and amplitude, atrial direction.
        f0 = rng.uniform(4.5, 8.0)
        drift = np.cumsum(rng.normal(0.0, 0.02, n)) / np.sqrt(fs)
        phase = 2 * np.pi * np.cumsum(f0 * (1.0 + 0.1 * np.tanh(drift))) / fs
        env = rng.uniform(0.03, 0.1) * (1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))
        f_dir = _jitter(_unit((0.3, 0.5, 0.8)), rng, 0.3)
        dipole += (env * np.sin(phase + rng.uniform(0, 6.3)))[:, None] * f_dir[None, :] * amp

    axes = np.stack([lead_axis(name) for name in leads], axis=1)  # [3, C]
    x = dipole @ axes
    x += _noise(n, fs, len(leads), rng)
    return x


def _noise(n: int, fs: float, channels: int, rng: np.random.Generator) -> np.ndarray:
    """Baseline wander, mains hum and muscle (EMG) noise, [n, channels] mV."""
    t = np.arange(n) / fs
    out = np.zeros((n, channels))
    # Baseline wander: breathing and electrode motion, 0.05-0.5 Hz, different per lead.
    for _ in range(2):
        f = rng.uniform(0.05, 0.5, channels)
        a = rng.uniform(0.0, 0.15, channels)
        out += a * np.sin(2 * np.pi * f * t[:, None] + rng.uniform(0, 6.3, channels))
    out += rng.normal(0.0, 0.1, channels)  # electrode DC offset
    # Mains hum at 50 or 60 Hz, only where the rate can represent it.
    mains = 50.0 if rng.random() < 0.5 else 60.0
    if mains < fs / 2:
        a = rng.uniform(0.0, 0.04) * rng.uniform(0.5, 1.0, channels)
        out += a * np.sin(2 * np.pi * mains * t[:, None] + rng.uniform(0, 6.3, channels))
    # Muscle noise: broadband, bursty.
    sigma = rng.uniform(0.002, 0.03)
    burst = 1.0 + 2.0 * (np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t) > 0.8)
    out += rng.normal(0.0, sigma, (n, channels)) * burst[:, None]
    return out


def synthesize_batch(
    kinds: Sequence[str],
    seconds: float,
    fs: float,
    leads: Sequence[str],
    rng: np.random.Generator,
) -> np.ndarray:
    """Several recordings stacked: ``[len(kinds), round(seconds * fs), len(leads)]`` float32 mV."""
    n = round(seconds * fs)
    out = np.empty((len(kinds), n, len(leads)), dtype=np.float32)
    for i, kind in enumerate(kinds):
        out[i] = synthesize(kind, seconds, fs, leads, rng)
    return out


def is_anomalous(kind: str) -> bool:
    """True for every kind the model should flag."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind != NORMAL
