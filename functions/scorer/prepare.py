"""Preparation (contract 2): the model's leads (derived where computable), gaps filled, the
model's rate (anti-aliased resampling), and consecutive windows with their start times.

A long recording is prepared chunk by chunk (:class:`Span`): each chunk cuts exactly the
windows a whole-file preparation would, at the same places, so chunks scored by different
invocations add up to the file.

Output: ``[N, window, leads]`` float32 in raw mV; the endpoint normalises each window.
What leaves here is what the endpoint accepts (finite values, ``|value| <= 1e6`` mV, that
shape and dtype), so a refusal by the endpoint is never a file's fault (see endpoint.py).
NumPy only: the Lambda has no SciPy, so :func:`resample_poly` re-implements
``scipy.signal.resample_poly`` (Kaiser-windowed sinc, polyphase) and is tested against it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from scorer import quality
from scorer.errors import RejectedFile, SystemFault
from scorer.leads import select_leads
from scorer.quality import Problem, Verdict
from scorer.recording import Recording

# Gaps up to this long are interpolated; the windows a longer gap touches are unusable.
MAX_GAP_SECONDS = 0.1
FLAT_PTP_MV = 1e-3  # a lead whose whole range is below 1 uV carries no ECG
MIN_RATE_HZ = 100.0
MAX_RATE_HZ = 20_000.0
MAX_SECONDS = 48 * 3600  # Holter and patch recordings run up to 48 h
QUALITY_BATCH = 32  # windows checked at once
RATIO_MAX_DENOMINATOR = 100  # 257 Hz -> 200 Hz becomes 7/9: 0.05 % rate error, short filter
# The endpoint refuses larger values (model_code/inference.py MAX_ABS_VALUE): an ECG in mV
# stays within a few mV, so such a file holds uV, nV or raw ADC counts.
MAX_ABS_MV = 1e6


@dataclass
class Prepared:
    """Model-ready windows of one file and what the table records about it."""

    windows: np.ndarray  # float32 [N, window, C], raw mV
    window_starts_s: list[float]  # where each window starts in the recording
    sampling_rate_hz: float  # the file's own rate
    rate_assumed: bool  # True when the file gave no rate and the model's was assumed
    leads_found: list[str] | None
    duration_s: float
    leads_derived: list[str] = field(default_factory=list)  # computed from other leads
    # (lead, start s, end s) of gaps longer than MAX_GAP_SECONDS: their windows are unusable.
    gaps_s: list[tuple[str, float, float]] = field(default_factory=list)
    # One per window: usable, or what is wrong (quality.assess, and gaps).
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def usable(self) -> np.ndarray:
        return np.array([v.usable for v in self.verdicts], bool)


@dataclass(frozen=True)
class Span:
    """Where a chunk of a long recording sits in the whole, and which windows it cuts.

    ``first`` is the index (at the file's rate) of the chunk's first sample in the whole
    recording of ``total`` samples; the chunk cuts the whole recording's windows number
    ``windows`` and, when ``last``, the final window ending at the recording's last sample.
    ``first`` must fall on the resampling grid (``first * up`` divisible by ``down``).
    """

    first: int
    total: int
    windows: range
    last: bool


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths of the True runs of a 1-D mask."""
    edge = np.zeros(1, np.int8)  # int8 throughout: no int64 copy of a long mask
    edges = np.diff(np.concatenate((edge, mask.view(np.int8), edge)))
    starts = np.flatnonzero(edges == 1)
    return starts, np.flatnonzero(edges == -1) - starts


def _interpolate_runs(col: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
    """Fill each run of missing samples of ``col`` in place with the straight line between
    the samples on either side of it (the nearest one at an end)."""
    after = starts + lengths
    left = col[np.maximum(starts - 1, 0)].astype(np.float64)
    right = col[np.minimum(after, col.size - 1)].astype(np.float64)
    left = np.where(starts == 0, right, left)
    right = np.where(after == col.size, left, right)
    run = np.repeat(np.arange(starts.size), lengths)
    step = np.arange(run.size) - np.repeat(np.cumsum(lengths) - lengths, lengths) + 1
    frac = step / (lengths[run] + 1)
    col[np.repeat(starts, lengths) + step - 1] = left[run] + frac * (right[run] - left[run])


def fill_gaps(
    x: np.ndarray, fs: float, names: Sequence[str]
) -> tuple[np.ndarray, list[tuple[str, slice]]]:
    """Interpolate every run of missing samples (in place); return the runs longer than
    MAX_GAP_SECONDS (lead, samples), whose windows must not be scored. Infinite values and a
    lead with no value at all are the file's fault."""
    long_gaps: list[tuple[str, slice]] = []
    for j, name in enumerate(names):
        col = x[:, j]
        if np.isinf(col).any():
            first = int(np.flatnonzero(np.isinf(col))[0])
            raise RejectedFile(
                f"lead {name} holds infinite values (first at {first / fs:.2f} s); "
                "send finite numbers in mV",
                "infinite",
            )
        missing = np.isnan(col)
        if not missing.any():
            continue
        if missing.all():
            raise RejectedFile(f"lead {name} holds no values (every sample is empty)", "nan_only")
        starts, lengths = _runs(missing)
        long_gaps += [
            (name, slice(int(a), int(a + n)))
            for a, n in zip(starts, lengths, strict=True)
            if n > MAX_GAP_SECONDS * fs
        ]
        _interpolate_runs(col, starts, lengths)
    return x, long_gaps


@functools.lru_cache(maxsize=32)  # a handful of device rates: design each filter once
def firwin_lowpass(numtaps: int, cutoff: float, beta: float = 5.0) -> np.ndarray:
    """Kaiser-windowed sinc low-pass, unit DC gain; ``cutoff`` relative to Nyquist.

    Same as ``scipy.signal.firwin(numtaps, cutoff, window=("kaiser", beta))``.
    """
    m = np.arange(numtaps) - (numtaps - 1) / 2
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(numtaps, beta)
    h /= h.sum()
    h.flags.writeable = False  # shared by the cache
    return h


def _upfirdn_range(
    h: np.ndarray, x: np.ndarray, up: int, down: int, start: int, count: int
) -> np.ndarray:
    """Outputs ``start .. start+count`` of upsample(x, up) * h, decimated by ``down``.

    Polyphase: output k only meets the taps ``h[r::up]`` with ``r = k*down % up``, so
    each phase is a strided dot product over x and the zeros are never multiplied.
    """
    taps = -(-h.size // up)
    phases = np.zeros((up, taps))
    for r in range(up):
        part = h[r::up]
        phases[r, : part.size] = part
    last_base = ((start + count - 1) * down) // up
    x_pad = np.concatenate(
        (
            np.zeros((taps - 1, x.shape[1])),
            x,
            np.zeros((max(0, last_base + 1 - x.shape[0]), x.shape[1])),
        )
    )
    windows = np.lib.stride_tricks.sliding_window_view(x_pad, taps, axis=0)  # [.., C, taps]
    out = np.empty((count, x.shape[1]))
    for q in range(min(up, count)):
        k0 = start + q
        n = len(range(q, count, up))
        r, base = (k0 * down) % up, (k0 * down) // up
        # Row i of this phase reads x_pad[base + down*i .. + taps) against reversed taps.
        out[q::up] = windows[base : base + down * (n - 1) + 1 : down] @ phases[r, ::-1]
    return out


RESAMPLE_BLOCK = 65_536  # output samples computed at a time: bounds the float64 work arrays


def resample_poly(
    x: np.ndarray, up: int, down: int, padtype: str = "mean", dtype: type = np.float64
) -> np.ndarray:
    """Resample [T, C] by ``up/down`` along axis 0, as ``scipy.signal.resample_poly`` does.

    ``padtype="mean"`` (subtract the mean, filter with zeros beyond the ends, add it back)
    keeps a baseline offset from ringing at both ends; ``"constant"`` is SciPy's default.
    The output (of ``dtype``) is computed in blocks of RESAMPLE_BLOCK samples from the input
    slice each block reads, so a long recording is never copied whole in float64.
    """
    g = math.gcd(up, down)
    up, down = up // g, down // g
    x = np.asarray(x)
    if up == down == 1:
        return x.astype(dtype)
    n_in = x.shape[0]
    n_out = -(-n_in * up // down)
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = firwin_lowpass(2 * half_len + 1, 1.0 / max_rate) * up
    # Zero-pad the filter so output samples sit at its centre (as SciPy does).
    n_pre_pad = down - half_len % down
    n_pre_remove = (half_len + n_pre_pad) // down
    n_post_pad = 0
    while (
        (n_in - 1) * up + h.size + n_pre_pad + n_post_pad - 1
    ) // down + 1 < n_out + n_pre_remove:
        n_post_pad += 1
    h = np.concatenate((np.zeros(n_pre_pad), h, np.zeros(n_post_pad)))
    if padtype == "mean":
        background = x.mean(axis=0, dtype=np.float64, keepdims=True)
    elif padtype == "constant":
        background = np.zeros((1, x.shape[1]))
    else:
        raise ValueError(f"padtype {padtype!r}: use 'mean' or 'constant'")
    taps = -(-h.size // up)
    out = np.empty((n_out, x.shape[1]), dtype)
    for k0 in range(0, n_out, RESAMPLE_BLOCK):
        count = min(RESAMPLE_BLOCK, n_out - k0)
        first = k0 + n_pre_remove  # the block's outputs, in upfirdn's numbering
        # The inputs they read (x_pad[base .. base + taps), x_pad = taps - 1 zeros + x),
        # from a start on a multiple of `down` so every output keeps its filter phase.
        lo = max(0, (first * down) // up - (taps - 1))
        lo -= lo % down
        hi = min(n_in, ((first + count - 1) * down) // up + 1)
        piece = x[lo:hi].astype(np.float64) - background
        shift = (lo // down) * up
        out[k0 : k0 + count] = _upfirdn_range(h, piece, up, down, first - shift, count)
        out[k0 : k0 + count] += background
    return out


def prepare_bytes(
    rows: int, leads: int, fs: float | None, model_rate_hz: float, window_samples: int = 2000
) -> int:
    """Peak bytes :func:`prepare` allocates besides the Recording, for ``rows`` samples
    of ``leads`` model leads at ``fs`` (None: the lowest accepted rate, the worst case).

    Mirrors prepare.py: the model's leads as one float32 copy, worked on in place (gaps
    filled, a 2-byte-per-sample mask); resampled into a float32 output in blocks of
    RESAMPLE_BLOCK outputs, each reading its input slice in float64 (two copies, and the
    block's output); the windows, one float32 array; the quality checks, QUALITY_BATCH
    windows at a time (four complex spectra per sample). tests/test_readers.py holds the
    estimate to tracemalloc's count for several rates and lengths.
    """
    rate = max(fs or MIN_RATE_HZ, MIN_RATE_HZ)
    up, down = rate_ratio(rate, model_rate_hz) if rate != model_rate_hz else (1, 1)
    out = -(-rows * up // down)
    signal = rows * leads * 4 + 2 * rows
    if (up, down) == (1, 1):
        work = out * leads * 4  # the windows
    else:
        block_in = min(rows, RESAMPLE_BLOCK * down // up) + 20 * max(up, down) // up
        block = (2 * block_in + 2 * min(out, RESAMPLE_BLOCK)) * leads * 8
        work = 2 * out * leads * 4 + block  # output, windows, one block's work
    checks = QUALITY_BATCH * window_samples * leads * 16 * 4
    return signal + work + checks + 2**20


def rate_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """(up, down) with up/down close to fs_out/fs_in and a short filter."""
    ratio = Fraction(fs_out / fs_in).limit_denominator(RATIO_MAX_DENOMINATOR)
    if ratio.numerator > RATIO_MAX_DENOMINATOR:
        ratio = Fraction(round(fs_out / fs_in * RATIO_MAX_DENOMINATOR), RATIO_MAX_DENOMINATOR)
    return ratio.numerator, ratio.denominator


def window_plan(total_out: int, window: int) -> tuple[range, bool]:
    """The whole recording's full windows and whether a last, overlapping one ends it."""
    full, rest = divmod(total_out, window)
    return range(full), rest > 0


def resampled_length(samples: int, up: int, down: int) -> int:
    """Samples :func:`resample_poly` makes of ``samples``."""
    return -(-samples * up // down)


@dataclass(frozen=True)
class Chunk:
    """One chunk of a long recording: the samples to read (``read``, at the file's rate,
    whole frames) and what it cuts of the whole (``span``)."""

    read: range
    span: Span


def chunks(
    total: int,
    fs: float,
    model_rate_hz: float,
    window_samples: int,
    per_chunk: int,
    frame: int = 1,
) -> list[Chunk]:
    """Cut a recording of ``total`` samples into chunks of ``per_chunk`` windows.

    Each chunk reads a margin beyond its windows on both sides, so the resampling filter
    sees the same neighbours as in a whole-file preparation; reads start on the resampling
    grid and on whole frames (``frame`` samples: a WFDB frame, an EDF data record).
    """
    up, down = rate_ratio(fs, model_rate_hz) if fs != model_rate_hz else (1, 1)
    numbers, last = window_plan(
        max(resampled_length(total, up, down), window_samples), window_samples
    )
    grid = math.lcm(down, frame)
    margin = -(-(10 * max(up, down) + 1) // up) + grid  # the filter's half length, and then some
    out = []
    for k0 in range(0, len(numbers), per_chunk):
        k1 = min(k0 + per_chunk, len(numbers))
        final = k1 == len(numbers)
        first = (k0 * window_samples * down) // up - margin
        first = max(0, first - first % grid)
        end = total if final else -(-(k1 * window_samples * down) // up) + margin
        end = min(total, -(-end // frame) * frame)
        out.append(Chunk(range(first, end), Span(first, total, range(k0, k1), final and last)))
    return out


def is_endpoint_format(recording: Recording, window_samples: int, channels: int) -> bool:
    """The endpoint's own request format: an .npy, or JSON with "signals" and nothing else,
    shaped [window, channels] or [N, window, channels]. Only this is at the model's rate
    when it does not say."""
    shape = recording.stored_shape
    return (
        recording.format in {"json", "npy"}
        and recording.bare
        and shape[-2:] == (window_samples, channels)
        and len(shape) in {2, 3}
    )


_HOW_TO_GIVE_RATE = {
    "csv": "add a time column (e.g. time_s) or a comment line '# sampling_rate_hz: 500'",
    "json": 'add the field "sampling_rate_hz" (e.g. "sampling_rate_hz": 500) to the JSON',
    "npy": "an .npy cannot hold it: save an .npz with an array 'sampling_rate_hz' "
    "(numpy.savez(path, signals=x, sampling_rate_hz=500))",
    "npz": "add an array 'sampling_rate_hz' to the .npz "
    "(numpy.savez(path, signals=x, sampling_rate_hz=500))",
}


def _no_rate(
    recording: Recording, model_rate_hz: float, window: int, channels: int
) -> RejectedFile:
    how = _HOW_TO_GIVE_RATE.get(recording.format, "give it in the file")
    reason = (
        f"the sampling rate is unknown: {how}, or upload with the S3 object metadata "
        "sampling-rate-hz (x-amz-meta-sampling-rate-hz: 500)"
    )
    if recording.format != "csv":
        reason += (
            f"; only the endpoint's own format ([{window}, {channels}] or "
            f"[N, {window}, {channels}] with nothing else in the file) is taken at "
            f"{model_rate_hz:g} Hz"
        )
    return RejectedFile(reason, "no_rate")


def check_windows(windows: np.ndarray, names: tuple[str, ...], window_samples: int) -> None:
    """What the endpoint checks, checked here: finite float32 mV within +/-1e6, [N, W, C].

    A value the endpoint would refuse rejects the file with a reason; a wrong shape or dtype
    is a bug of ours (SystemFault), never the file's.
    """
    if windows.dtype != np.float32 or windows.shape[1:] != (window_samples, len(names)):
        raise SystemFault(f"prepared windows are {windows.dtype} {list(windows.shape)}")
    for j, name in enumerate(names):
        lead = windows[:, :, j]
        if not np.isfinite(lead).all():
            raise RejectedFile(
                f"lead {name} holds values that are not finite after gap filling "
                "(too large for float32?); send finite numbers in mV",
                "not_finite",
            )
        peak = max(float(lead.max()), -float(lead.min()))  # no |lead| copy
        if peak > MAX_ABS_MV:
            raise RejectedFile(
                f"lead {name} holds values up to {peak:.3g}, beyond +/-{MAX_ABS_MV:g}: the "
                "signal must be in mV (uV or raw ADC counts?); convert it to mV, or name the "
                "unit in a CSV header (e.g. II_uV)",
                "not_mv",
            )


def prepare(
    recording: Recording,
    model_leads: tuple[str, ...],
    model_rate_hz: float,
    window_samples: int,
    span: Span | None = None,
) -> Prepared:
    """Recording (or one chunk of it, ``span``) -> model windows, or RejectedFile saying why."""
    fs, assumed = recording.fs, False
    if fs is None:
        if not is_endpoint_format(recording, window_samples, len(model_leads)):
            raise _no_rate(recording, model_rate_hz, window_samples, len(model_leads))
        fs, assumed = model_rate_hz, True
    if not MIN_RATE_HZ <= fs <= MAX_RATE_HZ:
        raise RejectedFile(
            f"sampling rate {fs:g} Hz is outside {MIN_RATE_HZ:g}..{MAX_RATE_HZ:g} Hz", "bad_rate"
        )
    total = span.total if span is not None else recording.signal.shape[0]
    duration = total / fs
    needed_s = window_samples / model_rate_hz
    if duration < needed_s:
        raise RejectedFile(
            f"the recording lasts {duration:.1f} s; the model needs at least {needed_s:g} s "
            f"({window_samples} samples at {model_rate_hz:g} Hz)",
            "too_short",
        )
    if duration > MAX_SECONDS:
        raise RejectedFile(
            f"the recording lasts {duration / 3600:.1f} h; split it into files of at most "
            f"{MAX_SECONDS // 3600} h",
            "too_long",
        )
    selection = select_leads(recording.signal, recording.leads, model_leads)
    x, long_gaps = fill_gaps(selection.signal, fs, model_leads)
    up, down = rate_ratio(fs, model_rate_hz) if fs != model_rate_hz else (1, 1)
    first = span.first if span is not None else 0
    if (first * up) % down:
        raise SystemFault(f"chunk start {first} is off the {up}/{down} resampling grid")
    if (up, down) != (1, 1):
        x = resample_poly(x, up, down, dtype=np.float32)
    total_out = resampled_length(total, up, down)
    if total_out < window_samples:
        # A recording of exactly one window can come out a sample or two short when the rate
        # ratio is rounded (257 Hz -> 7/9): those samples repeat the last one (<= 0.1 %).
        x = np.pad(x, ((0, window_samples - x.shape[0]), (0, 0)), mode="edge")
        total_out = window_samples
    numbers, last = window_plan(total_out, window_samples)
    if span is not None:
        numbers, last = span.windows, span.last
    starts = [k * window_samples for k in numbers]
    if last:
        starts.append(total_out - window_samples)
    offset = first * up // down  # the chunk's first output sample in the whole recording
    if starts and (starts[0] < offset or starts[-1] - offset + window_samples > x.shape[0]):
        raise SystemFault(f"a chunk lacks samples for windows {numbers} (span {span})")
    windows = np.empty((len(starts), window_samples, len(model_leads)), np.float32)
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf: refused below
        for i, g in enumerate(starts):
            windows[i] = x[g - offset : g - offset + window_samples]
    del x
    check_windows(windows, model_leads, window_samples)
    window_s = window_samples / model_rate_hz
    starts_s = [round(g / model_rate_hz, 3) for g in starts]
    gaps = [(lead, (first + g.start) / fs, (first + g.stop) / fs) for lead, g in long_gaps]
    verdicts = [  # a few windows at a time: the checks' spectra are 16 B per sample
        verdict
        for b in range(0, len(windows), QUALITY_BATCH)
        for verdict in quality.assess(windows[b : b + QUALITY_BATCH], model_leads, model_rate_hz)
    ]
    for i, t0 in enumerate(starts_s):
        in_gap = tuple(Problem(lead, "gap") for lead, a, b in gaps if a < t0 + window_s and t0 < b)
        if in_gap:  # a gap is the first thing to fix: the interpolation there is ours
            verdicts[i] = Verdict(in_gap + verdicts[i].problems)
    if span is None and not any(v.usable for v in verdicts):
        raise RejectedFile(quality.summarise(verdicts, window_s), "poor_signal_quality")
    return Prepared(
        windows=windows,
        window_starts_s=starts_s,
        sampling_rate_hz=fs,
        rate_assumed=assumed,
        leads_found=list(recording.leads_in_file or recording.leads or []) or None,
        duration_s=duration,
        leads_derived=selection.derived,
        gaps_s=gaps,
        verdicts=verdicts,
    )
