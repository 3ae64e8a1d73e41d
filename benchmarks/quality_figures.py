"""Signal-quality figures: windows of real ECGs wrongly rejected, bad signals caught, and
what one bad lead does to the model's output.

    .venv/bin/python benchmarks/quality_figures.py [--model-dir models/demo]

Reads the real recordings in ../shared/data (PTB-XL records 1-500, the PhysioNet samples in
ecg/wfdb); each goes through what the Lambda does (leads I, II, V2 where they exist,
anti-aliased resampling to 200 Hz with scorer.prepare.resample_poly, 10-s windows, the last
one ending at the recording's last sample) and then scorer.quality.assess. Bad signals are
made at 500 Hz and resampled the same way. Seeded: the same run prints the same tables.
Prints Markdown for docs/quality.md. Needs the dev venv's ``wfdb`` (and torch for
--model-dir).
"""

from __future__ import annotations

import argparse
import ast
import csv
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scorer import quality
from scorer.prepare import rate_ratio, resample_poly

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "model_code"))
from synthetic import KINDS, synthesize_batch  # noqa: E402

LEADS = ("I", "II", "V2")
FS, WINDOW = 200.0, 2000
DEVICE_FS = 500.0
PTBXL_GAIN = 1000.0  # adu per mV in PTB-XL's headers
INT16_RAIL = 32767.0


def read_wfdb(path: Path, channels: Sequence[str] | None = None) -> tuple[np.ndarray, float]:
    """[T, C] in mV and the rate of the named channels (all at one rate). The one place that
    reads WFDB here: switch it to the scorer's own reader once there is one."""
    import wfdb  # dev-only dependency, imported where used

    rec = wfdb.rdrecord(str(path), channel_names=list(channels) if channels else None,
                        smooth_frames=False)  # fmt: skip
    rates = {rec.fs * spf for spf in rec.samps_per_frame}
    if len(rates) != 1:
        raise ValueError(f"{path.name}: channels at several rates; name channels of one rate")
    return np.column_stack(rec.e_p_signal), rates.pop()


def to_model_rate(x: np.ndarray, fs: float) -> np.ndarray:
    """As the Lambda: short gaps interpolated, anti-aliased resampling to 200 Hz."""
    x = np.array(x, dtype=np.float64)
    idx = np.arange(x.shape[0])
    for col in x.T:
        gap = np.isnan(col)
        if gap.any():
            col[gap] = np.interp(idx[gap], idx[~gap], col[~gap])
    if fs == FS:
        return x
    up, down = rate_ratio(fs, FS)
    return resample_poly(x, up, down)


def cut(x: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Consecutive windows and, when samples remain, one more ending at the last sample
    (contract 2); a recording shorter than a window is one shorter window here."""
    if x.shape[0] <= window:
        return x[None].astype(np.float32)
    starts = list(range(0, x.shape[0] - window + 1, window))
    if starts[-1] + window < x.shape[0]:
        starts.append(x.shape[0] - window)
    return np.stack([x[s : s + window] for s in starts]).astype(np.float32)


def codes(verdicts: Sequence[quality.Verdict]) -> str:
    count = Counter(f"{v.code} ({', '.join(v.leads)})" for v in verdicts if not v.usable)
    return ", ".join(f"{k} x{n}" for k, n in count.most_common()) or "-"


def pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.1f} %)" if n else "-"


# -- real ECGs: false rejections -----------------------------------------------------------


def ptbxl_windows() -> tuple[list[dict[str, str]], list[np.ndarray], np.ndarray]:
    """PTB-XL rows, their raw 500-Hz I/II/V2 signals, and their model windows."""
    root = SHARED / "ptbxl"
    with (root / "ptbxl_database.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    raw = [read_wfdb(root / row["filename_hr"], LEADS)[0] for row in rows]
    windows = np.concatenate([cut(to_model_rate(x, DEVICE_FS)) for x in raw])
    return rows, raw, windows


def is_norm(row: dict[str, str]) -> bool:
    return ast.literal_eval(row["scp_codes"]).get("NORM", 0.0) == 100.0


NOISE_FLAGS = ("baseline_drift", "static_noise", "burst_noise", "electrodes_problems")


def flagged_noisy(row: dict[str, str]) -> bool:
    return any(row[k].strip() for k in NOISE_FLAGS)


def report_ptbxl(rows: list[dict[str, str]], verdicts: list[quality.Verdict]) -> None:
    print("\n### PTB-XL records 1-500 (leads I, II, V2; one 10-s window each)\n")
    print("| records | windows rejected |")
    print("|---|---|")
    groups: list[tuple[str, Callable[[dict[str, str]], bool]]] = [
        ("all", lambda r: True),
        ("NORM (at 100)", is_norm),
        ("not NORM", lambda r: not is_norm(r)),
        ("flagged noisy by the database (any of " + ", ".join(NOISE_FLAGS) + ")", flagged_noisy),
        ("not flagged", lambda r: not flagged_noisy(r)),
        ("pacemaker", lambda r: bool(r["pacemaker"].strip())),
    ]
    for label, keep in groups:
        chosen = [v for r, v in zip(rows, verdicts, strict=True) if keep(r)]
        print(f"| {label} | {pct(sum(not v.usable for v in chosen), len(chosen))} |")
    for r, v in zip(rows, verdicts, strict=True):
        if not v.usable:
            print(f"\n- record {r['ecg_id']} ({r['scp_codes']}): {v.reason}")


OTHER_RECORDS: list[tuple[str, tuple[str, ...] | None, str]] = [
    ("100", None, "MIT-BIH Arrhythmia 100, 30 min (N, A, V beats)"),
    ("s0010_re", ("i", "ii", "v2"), "PTB Diagnostic, myocardial infarction"),
    ("a103l", ("II", "V"), "Challenge 2015, false asystole alarm"),
    ("v102s", ("II", "V"), "Challenge 2015, false VT alarm"),
    ("041s/041s", ("III", "I", "V"), "MIMIC, 16 s"),
    ("03700181", ("MCL1",), "MIMIC, 10 min"),
    ("test01_00s", None, "Motion Artifact Contaminated ECG, 8 s (one 8-s window)"),
]


def report_other() -> None:
    print("\n### Other real recordings (../shared/data/ecg/wfdb; their own leads)\n")
    print("| record | leads | windows rejected | codes |")
    print("|---|---|---|---|")
    for name, channels, what in OTHER_RECORDS:
        x, fs = read_wfdb(SHARED / "ecg" / "wfdb" / name, channels)
        import wfdb

        names = channels or tuple(wfdb.rdheader(str(SHARED / "ecg" / "wfdb" / name)).sig_name)
        w = cut(to_model_rate(x, fs))
        v = quality.assess(w, names, FS)
        rejected = sum(not x.usable for x in v)
        print(f"| {name}: {what} | {', '.join(names)} | {pct(rejected, len(v))} | {codes(v)} |")


def report_synthetic(per_kind: int) -> None:
    print(f"\n### Synthetic ECGs (model_code/synthetic.py, {per_kind} windows per kind)\n")
    print("| kind | windows rejected |")
    print("|---|---|")
    rng = np.random.default_rng(8)
    for kind in KINDS:
        w = synthesize_batch([kind] * per_kind, 10.0, FS, LEADS, rng)
        v = quality.assess(w, LEADS, FS)
        print(f"| {kind} | {pct(sum(not x.usable for x in v), len(v))} {codes(v)} |")


# -- bad signals: detection ----------------------------------------------------------------


def coloured(n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise with power spectrum 1/f**alpha (1: pink, 2: brown)."""
    f = np.fft.rfftfreq(n)
    scale = np.zeros_like(f)
    scale[1:] = f[1:] ** (-alpha / 2)
    x = np.fft.irfft(scale * (rng.normal(size=f.size) + 1j * rng.normal(size=f.size)), n)
    return x / x.std()


def steps(n: int, rng: np.random.Generator) -> np.ndarray:
    """Baseline jumps of 0.2-2 mV every 0.5-3 s, nothing else: a loose electrode."""
    x, at, level = np.zeros(n), 0, 0.0
    while at < n:
        length = int(rng.uniform(0.5, 3.0) * DEVICE_FS)
        level += rng.choice((-1, 1)) * rng.uniform(0.2, 2.0)
        x[at : at + length] = level
        at += length
    return x + rng.normal(0, 0.005, n)


def detection_cases(
    raw: list[np.ndarray], rng: np.random.Generator, per_case: int
) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (500-Hz recordings [K, T, 3] in mV, what should happen)."""
    n = int(10 * DEVICE_FS)
    t = np.arange(n) / DEVICE_FS
    real = np.stack([x[:n] for x in raw[:per_case]])

    def each(make: Callable[[], np.ndarray]) -> np.ndarray:
        return np.stack([np.column_stack([make() for _ in LEADS]) for _ in range(per_case)])

    def gaussian(sd: float) -> Callable[[], np.ndarray]:
        return lambda: rng.normal(0, sd, n)

    def coloured_noise(sd: float, alpha: float) -> Callable[[], np.ndarray]:
        return lambda: sd * coloured(n, alpha, rng)

    cases: dict[str, tuple[np.ndarray, str]] = {}
    for sd in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0):
        cases[f"Gaussian noise, SD {sd:g} mV"] = (each(gaussian(sd)), "noise")
    for name, alpha in (("pink", 1.0), ("brown", 2.0)):
        for sd in (0.1, 1.0):
            cases[f"{name} noise, SD {sd:g} mV"] = (each(coloured_noise(sd, alpha)), "noise")
    for hz in (50, 60):
        for amp in (0.05, 0.5):
            hum = [amp * np.sin(2 * np.pi * hz * t + rng.uniform(0, 6.3)) for _ in range(per_case)]
            cases[f"{hz} Hz mains only, {amp:g} mV"] = (
                np.stack([np.column_stack([h + rng.normal(0, 0.005, n)] * 3) for h in hum]),
                "disconnected",
            )

    def drift() -> np.ndarray:
        return sum(
            (
                0.5 * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 6.3))
                for _ in range(2)
            ),
            np.zeros(n),
        )

    cases["baseline drift only (0.05-0.5 Hz, 1 mV)"] = (each(drift), "disconnected")
    cases["steps only (0.2-2 mV jumps)"] = (each(lambda: steps(n, rng)), "disconnected")
    cases["flat: zeros"] = (np.zeros((per_case, n, 3)), "flat")
    cases["flat: constant 0.3 mV"] = (np.full((per_case, n, 3), 0.3), "flat")
    for sd in (0.002, 0.005):
        cases[f"flat + noise SD {sd * 1e3:g} uV"] = (each(gaussian(sd)), "flat")
    cases["+/-32767 (int16 rails read as mV)"] = (
        each(lambda: INT16_RAIL * rng.choice((-1.0, 1.0), n)),
        "out_of_range",
    )
    cases["constant 32767"] = (np.full((per_case, n, 3), INT16_RAIL), "out_of_range")
    cases["real ECG in ADC counts (1000/mV)"] = (real * PTBXL_GAIN, "out_of_range")
    cases["real ECG in uV"] = (real * 1000.0, "out_of_range")
    # A 40-mV electrode-motion swing drives the 16-bit ADC (1000 counts/mV) into its rails.
    swing = 40.0 * np.sin(2 * np.pi * 0.15 * t)[None, :, None]
    railed = np.clip((real + swing) * PTBXL_GAIN, -INT16_RAIL, INT16_RAIL) / PTBXL_GAIN
    cases["real ECG + 40 mV swing, clipped at the int16 rail"] = (railed, "saturated")
    for level in (1.0, 0.5):
        clipped = np.clip(real, -level, level)
        cases[f"real ECG clipped at +/-{level:g} mV"] = (clipped, "saturated")
    for lead, j in (("V2", 2), ("I", 0)):
        one = real.copy()
        one[:, :, j] = 0.0
        cases[f"real ECG, lead {lead} flat"] = (one, "flat")
    one = real.copy()
    one[:, :, 2] = 0.3 * np.sin(2 * np.pi * 50 * t) + rng.normal(0, 0.005, (per_case, n))
    cases["real ECG, lead V2 mains only"] = (one, "disconnected")
    one = real.copy()
    one[:, :, 2] = rng.normal(0, 0.2, (per_case, n))
    cases["real ECG, lead V2 Gaussian noise 0.2 mV"] = (one, "(not detected: see text)")
    one = real.copy()
    one[:, n // 2 :, :] += 1.0
    cases["real ECG + one 1-mV step"] = (one, "usable")

    def fibrillation() -> np.ndarray:
        wander = rng.uniform(3.5, 7.0) + 0.3 * np.sin(2 * np.pi * 0.2 * t)
        envelope = rng.uniform(0.3, 1.0) * (1 + 0.3 * np.sin(2 * np.pi * 0.3 * t))
        phase = 2 * np.pi * np.cumsum(wander) / DEVICE_FS
        return envelope * np.sin(phase) + rng.normal(0, 0.02, n)

    vf = each(fibrillation)
    cases["ventricular-fibrillation-like 3.5-7 Hz waves"] = (vf, "usable")
    return cases


def report_detection(raw: list[np.ndarray], per_case: int) -> None:
    print(f"\n### Bad signals ({per_case} 10-s recordings each, made at 500 Hz)\n")
    print("| signal | expected | windows rejected | codes (leads) |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(88)
    for name, (recs, expected) in detection_cases(raw, rng, per_case).items():
        w = np.concatenate([cut(to_model_rate(x, DEVICE_FS)) for x in recs])
        v = quality.assess(w, LEADS, FS)
        print(f"| {name} | {expected} | {pct(sum(not x.usable for x in v), len(v))} | {codes(v)} |")
    motion, fs = read_wfdb(SHARED / "ecg" / "wfdb" / "test01_00s")
    v = quality.assess(cut(to_model_rate(motion, fs)), ["ECG 1", "ECG 2", "ECG 3", "ECG 4"], FS)
    rejected = pct(sum(not x.usable for x in v), 1)
    print(f"| electrode motion, test01_00s (real, 8 s) | - | {rejected} | {codes(v)} |")


def report_clipping(raw: list[np.ndarray]) -> None:
    print("\n### PTB-XL clipped at a level, by how much of the most clipped lead is cut\n")
    print("| clipped at | share of that lead's samples cut | windows rejected (saturated) |")
    print("|---|---|---|")
    n = int(10 * DEVICE_FS)
    for level in (1.0, 0.5):
        cut_share = np.array([(np.abs(x[:n]) >= level).mean(axis=0).max() for x in raw])
        w = np.concatenate([cut(to_model_rate(np.clip(x[:n], -level, level), DEVICE_FS))
                            for x in raw])  # fmt: skip
        hit = np.array([v.code == "saturated" for v in quality.assess(w, LEADS, FS)])
        for lo, hi in ((0.0, 0.005), (0.005, 0.02), (0.02, 0.05), (0.05, 1.01)):
            chosen = (cut_share >= lo) & (cut_share < hi)
            share = f"{100 * lo:g}-{min(100.0, 100 * hi):g} %"
            print(
                f"| +/-{level:g} mV | {share} | {pct(int(hit[chosen].sum()), int(chosen.sum()))} |"
            )


def report_added_noise(raw: list[np.ndarray]) -> None:
    print("\n### PTB-XL windows with Gaussian noise added to all three leads\n")
    print("| added noise SD | windows rejected |")
    print("|---|---|")
    rng = np.random.default_rng(7)
    n = int(10 * DEVICE_FS)
    for sd in (0.05, 0.1, 0.2, 0.5, 1.0):
        w = np.concatenate([cut(to_model_rate(x[:n] + rng.normal(0, sd, (n, 3)), DEVICE_FS))
                            for x in raw])  # fmt: skip
        v = quality.assess(w, LEADS, FS)
        print(f"| {sd:g} mV | {pct(sum(not x.usable for x in v), len(v))} |")


# -- what one bad lead does to the model ---------------------------------------------------


def report_model(model_dir: Path, rows: list[dict[str, str]], windows: np.ndarray) -> None:
    import inference  # model_code, on sys.path above

    model = inference.model_fn(str(model_dir))

    def flagged(w: np.ndarray) -> float:
        probs = [r["probability"] for r in inference.predict_fn(w.astype(np.float32), model)]
        return float(np.mean(np.asarray(probs) > model.threshold))

    rng = np.random.default_rng(3)
    norm = windows[[is_norm(r) for r in rows]]
    synth = synthesize_batch(["normal"] * 200, 10.0, FS, LEADS, rng)
    t = np.arange(WINDOW) / FS
    print(f"\n### Normal ECGs flagged anomalous by the model in {model_dir}\n")
    print(f"| change | PTB-XL NORM ({len(norm)}) | synthetic normal ({len(synth)}) |")
    print("|---|---|---|")

    def replaced(lead: int | None, make: Callable[[tuple[int, ...]], np.ndarray]) -> Callable:
        def change(w: np.ndarray) -> None:
            if lead is None:
                w[...] = make(w.shape)
            else:
                w[:, :, lead] = make(w.shape[:2])

        return change

    changes: list[tuple[str, Callable[[np.ndarray], None]]] = [("none", lambda w: None)]
    for name, j in (("V2", 2), ("I", 0)):
        changes += [
            (f"lead {name} flat (zeros)", replaced(j, np.zeros)),
            (f"lead {name} mains only (0.3 mV)",
             replaced(j, lambda shape: np.broadcast_to(0.3 * np.sin(2 * np.pi * 50 * t), shape))),
            (f"lead {name} Gaussian noise 0.2 mV",
             replaced(j, lambda shape: rng.normal(0, 0.2, shape))),
        ]  # fmt: skip
    changes.append(
        ("all leads Gaussian noise 0.2 mV", replaced(None, lambda shape: rng.normal(0, 0.2, shape)))
    )
    for label, change in changes:
        a, b = norm.copy(), synth.copy()
        change(a)
        change(b)
        print(f"| {label} | {100 * flagged(a):.1f} % | {100 * flagged(b):.1f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="also measure a model's reaction")
    parser.add_argument("--per-case", type=int, default=100, help="recordings per bad signal")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"real recordings not found at {SHARED}")
    rows, raw, windows = ptbxl_windows()
    report_ptbxl(rows, quality.assess(windows, LEADS, FS))
    report_other()
    report_synthetic(per_kind=200)
    report_detection(raw, args.per_case)
    report_clipping(raw)
    report_added_noise(raw)
    if args.model_dir:
        report_model(args.model_dir, rows, windows)


if __name__ == "__main__":
    main()
