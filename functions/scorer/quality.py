"""Signal quality of model windows: which 10-s windows hold an ECG the model can score.

Each window ``[T, C]`` (mV, after resampling to the model's rate) gets one :class:`Verdict`.
Each lead is first checked for faults of the recording chain; a lead gets the first that
applies, in this order:

``out_of_range``  values beyond +/-300 mV (no ECG amplifier passes that offset: raw ADC
                  counts or uV), or, after the checks below, swings beyond 20 mV from the
                  lead's mean;
``flat``          no variation (RMS below 10 uV): electrode off, lead not connected;
``disconnected``  nothing in the QRS band (5-30 Hz, mains notched): only mains hum or
                  baseline drift, no cardiac activity;
``saturated``     the amplifier or ADC hit its limit: half a second at one level near the
                  window's extreme, or three beats clipped flat there.

A window with any such lead is unusable: the model needs all of its leads (docs/quality.md
measures what a flat V2 does to its output). A window whose leads all pass is then checked
for QRS complexes (``noise``): each lead's slope energy (Pan-Tompkins: band-pass,
derivative, square, moving sum) is divided by its median and the leads averaged; QRS
complexes, simultaneous in every lead, make the 98th percentile of that envelope tower over
its 25th, whatever the rhythm, while noise of any colour keeps it flat. This is the idea of
kSQI (kurtosis; Li, Mark & Clifford, Physiol Meas 2008; Clifford et al., Physiol Meas 2012)
applied to the QRS envelope: the raw signal's kurtosis falls to that of Gaussian noise for
wide QRS, paced beats and tachycardia. A dominant 2.5-10 Hz rhythm (ventricular flutter or
fibrillation has no QRS complexes) is never called noise. No rule looks at the rate or
regularity of beats: arrhythmias are what the model must see.

NumPy only (the Lambda has no SciPy); every step is vectorised over windows and leads.
Thresholds and the measurements behind them: docs/quality.md.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# -- limits (docs/quality.md gives the measurements) ---------------------------------------
MAX_ABS_MV = 300.0  # electrode offset an ECG amplifier must tolerate (IEC 60601-2-25)
MAX_SWING_MV = 20.0  # 3x the largest QRS in PTB-XL; unit errors give 100s-1000s
FLAT_RMS_MV = 0.01  # 10 uV RMS: below any real lead (PTB-XL minimum 33 uV)
QRS_BAND_HZ = (5.0, 30.0)
MIN_QRS_BAND_RMS_MV = 0.01  # RMS in the QRS band; PTB-XL minimum 0.026 mV
MAINS_HZ = (50.0, 60.0)
MAINS_HALF_WIDTH_HZ = 1.0
ENVELOPE_BAND_HZ = (1.0, 40.0)
ENVELOPE_SECONDS = 0.08  # moving-window integration (Pan-Tompkins: about a QRS width)
ENVELOPE_STEP_SECONDS = 0.02  # the envelope is smooth: every 4th sample at 200 Hz is enough
ENVELOPE_EDGE_SECONDS = 0.2  # the FFT's wrap-around disturbs the envelope this near the ends
# 98th / 25th percentile of the leads' mean envelope. Averaging k leads of noise narrows its
# spread as 1/sqrt(k): the limit is 1 + MIN_QRS_CONTRAST_EXCESS / sqrt(k) (12, 8.8, 7.4).
MIN_QRS_CONTRAST_EXCESS = 11.0
RHYTHM_BAND_HZ = (2.5, 10.0)  # ventricular flutter / fibrillation
RHYTHM_HALF_WIDTH_HZ = 1.0
MIN_RHYTHM_SHARE = 0.5  # share of envelope-band power around a dominant 2.5-10 Hz peak
# Saturation, relative to the lead's range in the window.
RAIL_TOLERANCE = 1e-3  # a rail: samples near the extreme, within this (of the range)...
RAIL_SECONDS = 0.5  # ...for this long (resampling ripples a rail by < 1e-3; a flat
# isoelectric baseline of a real ECG stays that close for at most 0.33 s)
STILL_TOLERANCE = 1e-6  # consecutive samples this close (of the range) stand still
CLIP_TOLERANCE = 0.03  # clipped beats ring within this of the clipping level (resampling)
CLIP_SECONDS = 0.015  # for at least this long
CLIP_FLANK_SECONDS = 0.01  # and fall this far outside the plateau...
CLIP_FLANK_DROP = 0.15  # ...by at least this much of the range (a QRS, not a T wave)
CLIP_MIN_BEATS = 3  # clipped beats at the same level
CLIP_OVERSHOOT_SHARE = 0.002  # the most extreme 0.2 % of samples may be ringing overshoot

_TINY = np.finfo(np.float64).tiny

# Faults of one lead, in order of precedence; the window's code is the first one found.
_LEAD_FAULTS = ("out_of_range", "flat", "disconnected", "saturated")
# (code, detail) -> (what one lead does, what several do, what to check)
_WORDS = {
    ("out_of_range", "abs"): (
        f"holds values beyond +/-{MAX_ABS_MV:g} mV",
        f"hold values beyond +/-{MAX_ABS_MV:g} mV",
        "is the signal in mV, not raw ADC counts or uV?",
    ),
    ("out_of_range", "swing"): (
        f"swings more than {MAX_SWING_MV:g} mV from its mean",
        f"swing more than {MAX_SWING_MV:g} mV from their mean",
        "is the signal in mV, not raw ADC counts or uV? are the electrodes attached?",
    ),
    ("flat", ""): ("is flat", "are flat", "electrode off or lead not connected?"),
    ("saturated", ""): (
        "is clipped at the recorder's limits",
        "are clipped at the recorder's limits",
        "check electrode contact and the recorder's input range",
    ),
    ("disconnected", "mains"): (
        "carries only mains hum (50/60 Hz), no cardiac activity",
        "carry only mains hum (50/60 Hz), no cardiac activity",
        "electrode off or cable not connected?",
    ),
    ("disconnected", "drift"): (
        "carries only baseline drift or low-level noise, no cardiac activity",
        "carry only baseline drift or low-level noise, no cardiac activity",
        "electrode off or cable not connected?",
    ),
    ("gap", ""): (
        "has a gap of missing samples longer than 0.1 s",
        "have gaps of missing samples longer than 0.1 s",
        "send the recording without gaps, or cut it where the gap is",
    ),
    ("noise", ""): (
        "holds noise with no detectable QRS complexes",
        "hold noise with no detectable QRS complexes",
        "check electrode contact and that the patient was still",
    ),
}


@dataclass(frozen=True)
class Problem:
    """One fault found in one lead of a window."""

    lead: str
    code: str
    detail: str = ""  # which variant of the fault (a key of _WORDS), never a sample value


@dataclass(frozen=True)
class Verdict:
    """Whether one window can be scored; if not, what is wrong and where."""

    problems: tuple[Problem, ...] = ()

    @property
    def usable(self) -> bool:
        return not self.problems

    @property
    def code(self) -> str | None:
        """The most serious fault (``None`` when usable): a short, stable category."""
        return self.problems[0].code if self.problems else None

    @property
    def leads(self) -> tuple[str, ...]:
        """The leads with that fault."""
        return tuple(p.lead for p in self.problems if p.code == self.code)

    @property
    def reason(self) -> str:
        """Every fault of the window in words, e.g. 'lead V2 is flat (electrode off ...?)'."""
        return "; ".join(_describe(*group) for group in _grouped(self))


def _grouped(verdict: Verdict) -> list[tuple[str, str, tuple[str, ...]]]:
    """(code, detail, leads) for each fault of the window, most serious first."""
    groups: dict[tuple[str, str], list[str]] = {}
    for p in verdict.problems:
        groups.setdefault((p.code, p.detail), []).append(p.lead)
    return [(code, detail, tuple(leads)) for (code, detail), leads in groups.items()]


def _describe(code: str, detail: str, leads: Sequence[str], where: str = "") -> str:
    one, several, check = _WORDS[code, detail]
    if len(leads) == 1:
        return f"lead {leads[0]} {one}{where} ({check})"
    return f"leads {', '.join(leads)} {several}{where} ({check})"


def summarise(verdicts: Sequence[Verdict], window_seconds: float) -> str:
    """The REJECTED reason (code ``poor_signal_quality``) for a file with no usable window.

    Names each fault, its leads and in how many windows, and what to check; quotes only the
    limits, never a sample value. E.g. ``no usable 10-s window: lead V2 is flat in all 3
    windows (electrode off or lead not connected?)``.
    """
    if not verdicts or any(v.usable for v in verdicts):
        raise ValueError("summarise is for a file with windows, none of them usable")
    return f"no usable {window_seconds:g}-s window: " + unusable(verdicts)


def unusable(verdicts: Sequence[Verdict]) -> str:
    """What is wrong with the unusable windows of a file, most frequent fault first."""
    bad = [v for v in verdicts if not v.usable]
    counts = Counter(group for v in bad for group in _grouped(v))
    n = len(verdicts)
    parts = []
    for (code, detail, leads), k in counts.most_common():
        if n == 1:
            where = ""
        elif k == n:
            where = f" in all {n} windows"
        else:
            where = f" in {k} of {n} windows"
        parts.append(_describe(code, detail, leads, where))
    return "; ".join(parts)


# -- measurements --------------------------------------------------------------------------


def _envelope(slope: np.ndarray, k: int, step: int) -> np.ndarray:
    """Moving sum of ``slope**2`` over k samples, taken every ``step`` samples (it is smooth)."""
    c = np.zeros((slope.shape[0], slope.shape[1] + 1))
    np.cumsum(slope**2, axis=1, out=c[:, 1:])
    ends = c[:, k::step]
    return ends - c[:, : c.shape[1] - k : step][:, : ends.shape[1]]


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, start and length of every True run in a [M, T] mask."""
    m, t = mask.shape
    padded = np.zeros((m, t + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded.ravel())  # a run never spans rows: each row is padded
    starts = np.flatnonzero(edges == 1)
    lengths = np.flatnonzero(edges == -1) - starts
    rows, starts = np.divmod(starts + 1, t + 2)
    return rows, starts - 1, lengths


def _saturated(x: np.ndarray, hi: np.ndarray, lo: np.ndarray, fs: float) -> np.ndarray:
    """[M, T] -> [M] bool: a rail plateau, or several clipped beats at one level.

    Resampling smooths a clipped plateau's corners and rings around its level, so plateaus
    are sought within CLIP_TOLERANCE (of the range) of a robust extreme: the few most
    extreme samples may be ringing overshoot.
    """
    m, t = x.shape
    rail_len = max(2, round(RAIL_SECONDS * fs))
    clip_len = max(2, round(CLIP_SECONDS * fs))
    flank = max(1, round(CLIP_FLANK_SECONDS * fs))
    skip = min(t - 1, max(1, round(CLIP_OVERSHOOT_SHARE * t)))
    out = np.zeros(m, dtype=bool)
    span = np.maximum(hi - lo, _TINY)
    # Rows that may hold a plateau at their top, then at their bottom (as a top of -x): most
    # rows have only a few samples near an extreme.
    loose = 3 * CLIP_TOLERANCE * span[:, None]  # the robust extreme may lie lower
    enough = min(rail_len, CLIP_MIN_BEATS * clip_len)
    top = np.flatnonzero((x >= hi[:, None] - loose).sum(axis=1) >= enough)
    bottom = np.flatnonzero((x <= lo[:, None] + loose).sum(axis=1) >= enough)
    which = np.concatenate((top, bottom))
    if which.size == 0:
        return out
    y = np.concatenate((x[top], -x[bottom]))
    level = np.partition(y, t - 1 - skip, axis=1)[:, t - 1 - skip]
    scale = span[which]
    near = y >= (level - CLIP_TOLERANCE * scale)[:, None]
    count = near.sum(axis=1)
    # A rail: RAIL_SECONDS within RAIL_TOLERANCE of the level most near-extreme samples
    # share (the median of them: a rail holds most of them, whatever its ringing edges do).
    for r in np.flatnonzero(count >= rail_len):  # rare: a long stretch near the extreme
        rail = np.partition(y[r], t - 1 - count[r] // 2)[t - 1 - count[r] // 2]
        _, _, lengths = _runs(np.abs(y[r : r + 1] - rail) <= RAIL_TOLERANCE * scale[r])
        out[which[r]] |= bool((lengths >= rail_len).any())
    # Clipped beats: plateaus left and entered steeply (a QRS complex, not a T wave or a
    # baseline), and flat as no natural peak is: standing still, or ringing (a natural
    # peak has one turning point).
    rows, starts, lengths = _runs(near)
    keep = (lengths >= clip_len) & (starts >= flank) & (starts + lengths + flank <= t)
    rows, starts, ends = rows[keep], starts[keep], starts[keep] + lengths[keep] - 1
    drop = level[rows] - CLIP_FLANK_DROP * scale[rows]
    steep = (y[rows, starts - flank] <= drop) & (y[rows, ends + flank] <= drop)
    rows, starts, ends = rows[steep], starts[steep], ends[steep]
    if rows.size == 0:
        return out
    # The few steep plateaus left: standing still (its first samples), or ringing?
    first = y[rows[:, None], starts[:, None] + np.arange(clip_len)]
    flat_top = (np.abs(np.diff(first, axis=1)) <= STILL_TOLERANCE * scale[rows, None]).all(1)
    tops = [y[r, s : e + 1] for r, s, e in zip(rows, starts, ends, strict=True)]
    ringing = np.array([np.count_nonzero(np.diff(np.sign(np.diff(w)))) >= 2 for w in tops])
    clipped = flat_top | ringing
    out[which[np.bincount(rows[clipped], minlength=which.size) >= CLIP_MIN_BEATS]] = True
    return out


def _quantiles(x: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Per-row quantiles (nearest rank) with one partial sort."""
    t = x.shape[1]
    ranks = [min(t - 1, round(q * (t - 1))) for q in qs]
    part = np.partition(x, ranks, axis=1)
    return [part[:, r] for r in ranks]


@dataclass(frozen=True)
class _Bands:
    """Frequency masks of one window length and rate, made once (cached)."""

    samples: int
    taper: np.ndarray  # [T] 1 inside, cosine ramps of ENVELOPE_EDGE_SECONDS at both ends
    freqs: np.ndarray
    sums: np.ndarray  # [F, 4] 0/1 weights: power @ sums -> the four band powers below
    slope: np.ndarray  # envelope band with the derivative: spectrum * slope -> QRS slopes
    envelope_band: np.ndarray  # bool [F]


_QRS, _MAINS, _ABOVE_DRIFT, _ENVELOPE = range(4)


@functools.lru_cache(maxsize=8)
def _bands(t: int, fs: float) -> _Bands:
    freqs = np.fft.rfftfreq(t, 1.0 / fs)
    mains = np.zeros(freqs.size, dtype=bool)
    for f0 in MAINS_HZ:
        mains |= np.abs(freqs - f0) <= MAINS_HALF_WIDTH_HZ
    above_drift = freqs >= 0.5
    qrs = (freqs >= QRS_BAND_HZ[0]) & (freqs <= QRS_BAND_HZ[1]) & ~mains
    envelope = (freqs >= ENVELOPE_BAND_HZ[0]) & (freqs <= ENVELOPE_BAND_HZ[1]) & ~mains
    sums = np.stack([qrs, mains & above_drift, above_drift, envelope], axis=1).astype(float)
    taper = np.ones(t)
    ramp = min(t // 4, round(ENVELOPE_EDGE_SECONDS * fs))
    if ramp > 1:
        half = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        taper[:ramp], taper[t - ramp :] = half, half[::-1]
    return _Bands(t, taper, freqs, sums, envelope * (2j * np.pi * freqs), envelope)


def _rhythmic(power: np.ndarray, bands: _Bands) -> np.ndarray:
    """[M, F] -> [M] bool: a dominant 2.5-10 Hz rhythm (ventricular flutter/fibrillation):
    the +/-1 Hz band around the strongest peak of the envelope band holds most of its power."""
    p = np.where(bands.envelope_band, power, 0.0)
    half = max(1, round(RHYTHM_HALF_WIDTH_HZ / (bands.freqs[1] - bands.freqs[0])))
    cum = np.cumsum(p, axis=1)
    around = cum[:, 2 * half :] - cum[:, : -2 * half]  # power in (f - 1 Hz, f + 1 Hz]
    centre = bands.freqs[half : half + around.shape[1]]
    strongest = np.argmax(around, axis=1)
    peak = centre[strongest]
    share = around[np.arange(p.shape[0]), strongest] / np.maximum(cum[:, -1], _TINY)
    in_band = (peak >= RHYTHM_BAND_HZ[0]) & (peak <= RHYTHM_BAND_HZ[1])
    return in_band & (share >= MIN_RHYTHM_SHARE)


def assess(windows: np.ndarray, leads: Sequence[str], fs: float) -> list[Verdict]:
    """One verdict per window.

    Parameters
    ----------
    windows
        ``[N, T, C]`` finite values in mV at ``fs`` (what ``prepare`` gives: float32).
    leads
        The C lead names, in order; verdicts name the faulty ones.
    fs
        Sampling rate in Hz; at least 100 Hz, so the QRS band (up to 40 Hz) is kept.
    """
    if windows.ndim != 3 or windows.shape[2] != len(leads):
        raise ValueError(f"windows must be [N, T, {len(leads)}], got {list(windows.shape)}")
    n, t, c = windows.shape
    if n == 0:
        return []
    x = np.moveaxis(windows, 1, 2).reshape(n * c, t).astype(np.float64)  # [M, T], M = N*C

    hi, lo = x.max(axis=1), x.min(axis=1)
    mean = x.mean(axis=1)
    centred = x - mean[:, None]
    beyond_abs = np.maximum(hi, -lo) > MAX_ABS_MV
    beyond_swing = np.maximum(hi - mean, mean - lo) > MAX_SWING_MV
    flat = np.einsum("ij,ij->i", centred, centred) < t * FLAT_RMS_MV**2
    saturated = _saturated(x, hi, lo, fs)

    bands = _bands(t, float(fs))
    # A drifting baseline ends the window at another level than it starts: in the FFT's
    # periodic extension that jump would leak into the QRS band. Cosine ramps at both ends
    # (ENVELOPE_EDGE_SECONDS, where the envelope is not used anyway) remove the jump.
    spectrum = np.fft.rfft(centred * bands.taper, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    band_power = power @ bands.sums  # [M, 4]
    # Parseval: the QRS band's RMS without computing the band-passed signal.
    quiet = np.sqrt(2.0 * band_power[:, _QRS]) / t < MIN_QRS_BAND_RMS_MV
    if quiet.any():  # a 2.5-10 Hz rhythm (flutter, fibrillation) has little above 5 Hz
        quiet[quiet] = ~_rhythmic(power[quiet], bands)
    mains = band_power[:, _MAINS] > 0.5 * band_power[:, _ABOVE_DRIFT]

    faults = (  # in order of precedence: each lead gets the first that applies
        ("out_of_range", "abs", beyond_abs),
        ("flat", "", flat),
        ("disconnected", "mains", quiet & mains),
        ("disconnected", "drift", quiet),
        ("saturated", "", saturated),  # after: a slow drift's crest also stands still
        ("out_of_range", "swing", beyond_swing),
    )
    bad = np.zeros(n * c, dtype=bool)
    problems: list[list[Problem]] = [[] for _ in range(n)]
    for code, detail, found in faults:
        for i in np.flatnonzero(found & ~bad):
            problems[i // c].append(Problem(leads[i % c], code, detail))
        bad |= found
    order = {code: k for k, code in enumerate(_LEAD_FAULTS)}
    for p in problems:  # most serious first, then in the window's lead order
        p.sort(key=lambda q: (order[q.code], leads.index(q.lead)))

    # QRS complexes: only where every lead passed (a window with a bad lead is unusable).
    clean = np.flatnonzero(~bad.reshape(n, c).any(axis=1))
    if clean.size:
        rows = (clean[:, None] * c + np.arange(c)).ravel()
        no_qrs = ~_qrs_seen(spectrum[rows], power[rows], bands, c, fs)
        for w in clean[no_qrs]:
            problems[w] = [Problem(lead, "noise") for lead in leads]
    return [Verdict(tuple(p)) for p in problems]


def _qrs_seen(
    spectrum: np.ndarray, power: np.ndarray, bands: _Bands, c: int, fs: float
) -> np.ndarray:
    """[W*C, F] spectra of W windows of C leads -> [W] bool: QRS complexes (or a
    flutter/fibrillation rhythm) in the window.

    Each lead's slope energy (Pan-Tompkins: band-pass, derivative, square, moving sum) is
    divided by its median, and the leads' envelopes averaged: QRS complexes, simultaneous
    in every lead, make its 98th percentile tower over its 25th; noise does not.
    """
    t = bands.samples
    slope = np.fft.irfft(spectrum * bands.slope, n=t, axis=1)
    edge = round(ENVELOPE_EDGE_SECONDS * fs)
    if t > 4 * edge:
        slope = slope[:, edge:-edge]
    envelope = _envelope(
        slope, max(1, round(ENVELOPE_SECONDS * fs)), max(1, round(ENVELOPE_STEP_SECONDS * fs))
    )
    (mid,) = _quantiles(envelope, (0.5,))
    envelope /= np.maximum(mid, _TINY)[:, None]
    combined = envelope.reshape(-1, c, envelope.shape[1]).mean(axis=1)
    low, top = _quantiles(combined, (0.25, 0.98))
    seen = top >= (1.0 + MIN_QRS_CONTRAST_EXCESS / np.sqrt(c)) * low
    if not seen.all():  # rare: a dominant 2.5-10 Hz rhythm in any lead also counts
        unsure = np.flatnonzero(~seen)
        rows = (unsure[:, None] * c + np.arange(c)).ravel()
        seen[unsure] = _rhythmic(power[rows], bands).reshape(-1, c).any(axis=1)
    return seen
