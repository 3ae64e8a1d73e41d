"""Train the CNN1D-LSTM ECG model, calibrate it, and write model.pth, config.json, metrics.json.

Usage::

    python model_code/train.py --data ../shared/data/ptbxl --out build/model   # the demo model
    python model_code/train.py --data synthetic --out build/synthetic          # no real data
    python model_code/train.py --data DIR --out build/mine                     # DIR/labels.csv

``--data`` names one of three sources:

- a PTB-XL folder (``ptbxl_database.csv`` and ``records500/``): real 12-lead ECGs, anomalous
  = not ``NORM`` at likelihood 100; folds 1-8 train, fold 9 validates (calibration and
  threshold), fold 10 tests, as the database's authors recommend;
- ``synthetic``: synthetic ECGs (``synthetic.py``), half sinus rhythm, half anomalies, with
  validation and test sets drawn from separate random streams;
- a folder with ``labels.csv`` (header ``file,label``; label ``0``/``1`` or
  ``normal``/``anomalous``; ``file`` relative to the folder) and the recordings it names, in
  any format the scoring Lambda accepts. Recordings, not windows, are split 70/15/15 into
  training, validation and test, so no recording is scored on windows it was trained on.

Real recordings go through the Lambda's own code (its readers, ``scorer.wfdb`` for PTB-XL,
then ``scorer.prepare.prepare``): same lead matching, gap filling, resampling, windows (the
last one ending at the recording's end) and signal-quality verdicts, so the model is trained
on inputs prepared exactly as they will be served. Windows the Lambda would not send to the
model are left out; a PTB-XL record it would reject (``poor_signal_quality``) is skipped and
counted, a user file it would reject stops training. Each window takes its recording's
label; a recording's probability is the maximum over its usable windows, as the Lambda
stores it.

After training, a temperature ``T`` fitted on the validation recordings (minimum negative
log-likelihood) turns logits into calibrated probabilities ``sigmoid(logit / T)``; the
threshold is chosen on the same validation recordings, after calibration. The test figures
carry bootstrap 95% intervals. The model version is a name plus a hash of what decides its
outputs (weights, calibration, threshold, input contract), or ``--version``. The same seed
gives the same weights on the same machine and torch build only.
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import hashlib
import json
import math
import platform
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The Lambda's own reader and preparation (functions/scorer, installed in the dev venv), so
# a model trained here sees its files exactly as the Lambda will serve them. train.py runs
# only in the dev venv; the container's code (inference.py, model.py) never imports scorer.
from scipy.optimize import minimize_scalar
from scorer.errors import RejectedFile
from scorer.prepare import Prepared, prepare
from scorer.readers import read_recording
from scorer.recording import Recording
from scorer.wfdb import needed_files, parse_header, read_record
from tqdm import tqdm

from inference import CONFIG_NAME, DEFAULT_STD_FLOOR_MV, WEIGHTS_NAME, normalise
from model import CNN1DLSTM
from synthetic import ANOMALY_KINDS, NORMAL, synthesize_batch

NAME = "cnn1d-lstm"  # the model version is NAME-<source>-<content hash>
WINDOW = 2000
FS = 200
LEADS = ["I", "II", "V2"]
MAX_WINDOWS = 256
ARCHITECTURE: dict[str, Any] = {
    "in_channels": 3,
    "conv_channels": [16, 32, 48, 64],
    "kernel_sizes": [7, 7, 5, 5],
    "strides": [2, 1, 1, 1],
    "pools": [2, 2, 2, 2],
    "lstm_hidden": 48,
    "lstm_layers": 1,
    "bidirectional": True,
    "dropout": 0.1,
}
# config.json keys that decide what the endpoint answers for a request: hashed into the
# version with the weights. model_version, training and request limits do not.
OUTPUT_KEYS = (
    "window_samples",
    "channels",
    "leads",
    "sampling_rate_hz",
    "units",
    "normalisation",
    "architecture",
    "calibration",
    "threshold",
)
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
REPO = Path(__file__).resolve().parent.parent
COMMITTED_MODELS = REPO / "models"  # versions in use: models/*/config.json
LABEL_WORDS = {"0": 0, "1": 1, "normal": 0, "anomalous": 1, "abnormal": 1, "anomaly": 1}
MAX_PROBLEMS_SHOWN = 20  # a folder of mostly bad files lists the first ones and a count
PTBXL_INDEX = "ptbxl_database.csv"
PTBXL_NORMAL = "NORM"  # normal = this SCP statement at likelihood 100
PTBXL_TRAIN_FOLDS = range(1, 9)
PTBXL_VALIDATION_FOLD = 9
PTBXL_TEST_FOLD = 10
ECE_BINS = 10
BOOTSTRAP_RESAMPLES = 2000


class DataError(ValueError):
    """The ``--data`` source does not hold what train.py accepts."""


class VersionError(ValueError):
    """``--version`` is malformed or already names other weights."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a model is trained: the schedule and what each training batch is made of."""

    epochs: int
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    # Augmentation of every training batch, applied to raw mV before the z-score (so a gain
    # per lead would be a no-op): circular time shift, white noise up to this fraction of
    # each lead's std, baseline wander up to this amplitude (mV, 0.05-0.5 Hz).
    shift: bool = False
    noise: float = 0.0
    wander_mv: float = 0.0
    synthetic_windows: int = 0  # synthetic windows mixed into real training data
    # The threshold keeps at least this specificity on validation (a screening tool's false
    # alarms on normal ECGs), with a margin over the 0.80 the project asks on unseen data.
    min_specificity: float = 0.85


RECIPES = {
    "synthetic": Recipe(epochs=6),
    "real": Recipe(epochs=30, batch_size=32, shift=True, noise=0.1, wander_mv=0.2),
}


@dataclasses.dataclass
class Split:
    """Windows of some recordings; each window carries its recording's label."""

    x: np.ndarray  # float32 [N, window, leads], raw mV
    y: np.ndarray  # float32 [N], 1 = anomalous
    recording: np.ndarray  # int [N]: index of the window's recording within the split
    kinds: list[str] | None = None  # synthetic kind of each window

    @classmethod
    def of(cls, recordings: Sequence[np.ndarray], labels: Sequence[int]) -> Split:
        """Stack the windows of ``recordings`` (``[n_i, window, leads]`` each)."""
        return cls(
            x=np.concatenate(recordings).astype(np.float32, copy=False),
            y=np.concatenate(
                [
                    np.full(len(r), lab, np.float32)
                    for r, lab in zip(recordings, labels, strict=True)
                ]
            ),
            recording=np.concatenate([np.full(len(r), i) for i, r in enumerate(recordings)]),
        )

    @classmethod
    def synthetic(cls, n: int, rng: np.random.Generator) -> Split:
        """``n`` synthetic windows, each its own recording."""
        x, y, kinds = synthetic_set(n, rng)
        return cls(x=x.astype(np.float32), y=y, recording=np.arange(n), kinds=kinds)

    def per_recording(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each recording's label and the maximum of ``values`` over its windows (the
        Lambda stores a file's maximum)."""
        n = int(self.recording.max()) + 1
        top = np.full(n, -np.inf)
        np.maximum.at(top, self.recording, values)
        label = np.zeros(n)
        label[self.recording] = self.y
        return label, top


@dataclasses.dataclass
class Dataset:
    """Training, validation and test recordings from one source."""

    source: str  # "ptbxl", "synthetic" or "custom": part of the model version
    description: str
    train: Split
    validation: Split
    test: Split
    test_name: str
    facts: dict[str, Any]  # recorded in config.json's training section


def synthetic_set(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Balanced synthetic windows: ``n // 2`` normal, the rest spread over anomaly kinds."""
    n_norm = n // 2
    kinds = [NORMAL] * n_norm + [ANOMALY_KINDS[i % len(ANOMALY_KINDS)] for i in range(n - n_norm)]
    order = rng.permutation(n)
    kinds = [kinds[i] for i in order]
    x = synthesize_batch(kinds, WINDOW / FS, FS, LEADS, rng)
    y = np.array([k != NORMAL for k in kinds], dtype=np.float32)
    return x, y, kinds


def prepare_windows(recording: Recording) -> Prepared:
    """A recording cut into model windows exactly as the Lambda serves it, each window with
    the Lambda's signal-quality verdict (``Prepared.usable``)."""
    return prepare(recording, tuple(LEADS), FS, WINDOW)


def overlaps_the_one_before(prepared: Prepared) -> bool:
    """Whether the last window ends at the recording's end and overlaps the window before."""
    starts = prepared.window_starts_s
    return len(starts) > 1 and starts[-1] - starts[-2] < WINDOW / FS


# ------------------------------------------------------------------------------ PTB-XL
def read_wfdb(path: Path) -> Recording:
    """One WFDB record (``path`` without extension) read by the Lambda's own WFDB reader."""
    header_name = path.name + ".hea"
    files = {header_name: path.with_suffix(".hea").read_bytes()}
    for name in needed_files(parse_header(files[header_name])):
        files[name] = (path.parent / name).read_bytes()
    return read_record(files, header_name)


def ptbxl_label(scp_codes: str) -> int:
    """1 (anomalous) unless the record's SCP statements give NORM likelihood 100."""
    codes = ast.literal_eval(scp_codes)  # a dict literal, e.g. "{'NORM': 100.0, 'SR': 0.0}"
    return int(float(codes.get(PTBXL_NORMAL, 0.0)) != 100.0)


def load_ptbxl(folder: Path) -> Dataset:
    """PTB-XL records (500 Hz) split by ``strat_fold``: 1-8 train, 9 validation, 10 test."""
    index = folder / PTBXL_INDEX
    with index.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    parts: dict[str, tuple[list[np.ndarray], list[int]]] = {
        "train": ([], []),
        "validation": ([], []),
        "test": ([], []),
    }
    dropped = rejected = 0
    for row in tqdm(rows, desc="reading PTB-XL", unit="record", mininterval=_bar_interval()):
        fold = int(row["strat_fold"])
        part = (
            "validation"
            if fold == PTBXL_VALIDATION_FOLD
            else "test"
            if fold == PTBXL_TEST_FOLD
            else "train"
        )
        path = folder / row["filename_hr"]
        if not path.with_suffix(".hea").is_file():
            raise DataError(f"{PTBXL_INDEX} names {row['filename_hr']}, not found in {folder}")
        try:
            prepared = prepare_windows(read_wfdb(path))
        except RejectedFile as e:
            if e.code == "poor_signal_quality":  # the Lambda would never score it either
                rejected += 1
                continue
            raise DataError(f"{row['filename_hr']}: {e.reason}") from e
        keep = prepared.usable  # the model never sees a window the Lambda would not send
        dropped += int((~keep).sum())
        parts[part][0].append(prepared.windows[keep])
        parts[part][1].append(ptbxl_label(row["scp_codes"]))
    splits = {name: Split.of(*part) for name, part in parts.items()}
    return Dataset(
        source="ptbxl",
        description=(
            f"PTB-XL ({len(rows)} records, 500 Hz; anomalous = not {PTBXL_NORMAL} at 100), "
            "folds 1-8 train, 9 validation, 10 test"
        ),
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        test_name=f"PTB-XL fold {PTBXL_TEST_FOLD}",
        facts={
            "unusable_windows_skipped": dropped,
            "records_rejected_poor_signal_quality": rejected,
        },
    )


# ------------------------------------------------------------------- user recordings
def _parse_label(value: str, where: str) -> int:
    key = value.strip().lower()
    if key not in LABEL_WORDS:
        raise DataError(f"{where}: label {value.strip()[:20]!r} is not 0/1 or normal/anomalous")
    return LABEL_WORDS[key]


def _training_reason(error: RejectedFile) -> str:
    """The Lambda's reason, except where train.py offers its own fix (matched by code)."""
    if error.code == "no_rate":
        # The Lambda's reason is about uploads (S3 metadata); here --data-fs is the fix.
        return (
            "the file does not state its sampling rate: pass --data-fs RATE for such files "
            "(to be scored, the file or its S3 upload metadata must state it)"
        )
    return error.reason


def prepare_file(path: Path, data_fs: float | None) -> Prepared:
    """One training file read and cut into windows exactly as the Lambda serves it.

    ``data_fs`` is the rate of a file that does not state its own; a stated rate wins.
    Raises :class:`RejectedFile` when the Lambda would reject the file.
    """
    recording = read_recording(path.read_bytes(), path.name)
    if recording.fs is None and data_fs is not None:
        recording = dataclasses.replace(recording, fs=data_fs)
    return prepare_windows(recording)


def load_user_data(
    folder: Path, data_fs: float | None = None
) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Windows per recording (``[n_i, 2000, 3]`` each), one label per recording, and how
    many recordings end with a window overlapping the one before.

    Every row of labels.csv is checked before training starts, so one run lists every
    file to fix.
    """
    labels_path = folder / "labels.csv"
    if not labels_path.is_file():
        raise DataError(f"{labels_path} not found; it needs the header 'file,label'")
    with labels_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise DataError(f"{labels_path.name}: header must contain 'file' and 'label'")
        entries = list(reader)
    recordings: list[np.ndarray] = []
    labels: list[int] = []
    overlapping = 0
    problems: list[str] = []
    for line, entry in enumerate(entries, start=2):
        name = (entry["file"] or "").strip()
        where = f"{labels_path.name} line {line}"
        path = (folder / name).resolve()
        try:
            label = _parse_label(entry["label"] or "", where)
            if not name or not path.is_relative_to(folder.resolve()) or not path.is_file():
                raise DataError(f"{where}: file not found inside {folder}")
            prepared = prepare_file(path, data_fs)
        except DataError as e:
            problems.append(str(e))
            continue
        except RejectedFile as e:
            problems.append(f"{where}: {name}: {_training_reason(e)}")
            continue
        keep = prepared.usable  # the model never sees a window the Lambda would not send
        recordings.append(prepared.windows[keep])
        labels.append(label)
        overlapping += int(overlaps_the_one_before(prepared) and keep[-1])
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        raise DataError(
            f"{len(problems)} of {len(entries)} rows of {labels_path.name} cannot be used; "
            "fix or remove them:\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else "")
        )
    y = np.array(labels)
    if len(recordings) < 10 or y.min() == y.max():
        raise DataError(
            f"{labels_path.name}: need at least 10 recordings with both labels; "
            f"found {len(recordings)} ({int(y.sum())} anomalous)"
        )
    return recordings, y, overlapping


def user_split(
    recordings: list[np.ndarray], y: np.ndarray, rng: np.random.Generator, share: float = 0.15
) -> tuple[Split, Split, Split]:
    """Train, validation and test by recording, stratified: ``share`` of each label (at
    least one recording) validates, as many test, the rest trains."""
    parts: list[list[int]] = [[], [], []]
    for label in (0, 1):
        ids = rng.permutation(np.flatnonzero(y == label)).tolist()
        k = max(1, round(share * len(ids)))
        parts[1] += ids[:k]
        parts[2] += ids[k : 2 * k]
        parts[0] += ids[2 * k :]
    train, validation, test = (
        Split.of([recordings[i] for i in sorted(p)], [int(y[i]) for i in sorted(p)]) for p in parts
    )
    return train, validation, test


def synthetic_dataset(seed: int, train_size: int = 8000, held_out_size: int = 2000) -> Dataset:
    """Synthetic windows; validation and test come from separate random streams."""
    return Dataset(
        source="synthetic",
        description="synthetic (synthetic.py): normal vs " + ", ".join(ANOMALY_KINDS),
        train=Split.synthetic(train_size, np.random.default_rng([seed, 1])),
        validation=Split.synthetic(held_out_size, np.random.default_rng([seed, 3])),
        test=Split.synthetic(held_out_size, np.random.default_rng([seed, 2])),
        test_name="synthetic held-out",
        facts={},
    )


def load_dataset(args: argparse.Namespace, rng: np.random.Generator) -> Dataset:
    """The source ``--data`` names (see the module docstring)."""
    data = str(args.data)
    if data == "synthetic":
        return synthetic_dataset(args.seed, args.train_size, args.held_out_size)
    folder = Path(data)
    if (folder / PTBXL_INDEX).is_file():
        return load_ptbxl(folder)
    if not folder.is_dir():
        raise DataError(
            f"--data {data}: no such folder; give 'synthetic', a PTB-XL folder (with "
            f"{PTBXL_INDEX}) or a folder with labels.csv"
        )
    recordings, labels, overlapping = load_user_data(folder, args.data_fs)
    train, validation, test = user_split(recordings, labels, rng)
    windows = sum(len(r) for r in recordings)
    print(
        f"{len(recordings)} recordings, {windows} windows "
        f"({overlapping} of them overlapping the window before)"
    )
    return Dataset(
        source="custom",
        description=f"user recordings ({len(recordings)} files)",
        train=train,
        validation=validation,
        test=test,
        test_name="held-out recordings",
        facts={"overlapping_windows": overlapping},
    )


# ---------------------------------------------------------------------------- training
def augment(x: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """A copy of raw mV windows ``[B, T, C]`` with the recipe's augmentation drawn."""
    b, t, c = x.shape
    x = x.copy()
    if recipe.shift:  # a 10-s window starts anywhere in the cardiac cycle
        for i in range(b):
            x[i] = np.roll(x[i], int(rng.integers(0, t)), axis=0)
    if recipe.noise:
        scale = x.std(axis=1, keepdims=True) * rng.uniform(0, recipe.noise, (b, 1, c))
        x += (rng.standard_normal(x.shape) * scale).astype(np.float32)
    if recipe.wander_mv:
        seconds = np.arange(t)[None, :, None] / FS
        freq = rng.uniform(0.05, 0.5, (b, 1, 1))
        phase = rng.uniform(0, 2 * np.pi, (b, 1, c))
        amp = rng.uniform(0, recipe.wander_mv, (b, 1, c))
        x += (amp * np.sin(2 * np.pi * freq * seconds + phase)).astype(np.float32)
    return x


def _bar_interval() -> float:
    # In a log (CI, make demo piped) redraw every 15 s instead of filling it with bars.
    return 0.1 if sys.stderr.isatty() else 15.0


def train(net: CNN1DLSTM, x: np.ndarray, y: np.ndarray, recipe: Recipe, seed: int) -> list[float]:
    """Mini-batch AdamW with a one-cycle schedule on raw mV windows ``x`` (augmented, then
    z-scored per batch); returns the mean loss per epoch."""
    rng = np.random.default_rng([seed, 4])
    yt = torch.from_numpy(y.astype(np.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    per_epoch = (len(x) + recipe.batch_size - 1) // recipe.batch_size
    steps = recipe.epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
    pos_weight = torch.tensor(float((y < 0.5).sum() / max(1.0, float((y > 0.5).sum()))))
    losses = []
    with tqdm(total=steps, desc="training", unit="batch", mininterval=_bar_interval()) as bar:
        for epoch in range(recipe.epochs):
            net.train()
            order = rng.permutation(len(x))
            total = 0.0
            for i in range(0, len(x), recipe.batch_size):
                idx = order[i : i + recipe.batch_size]
                xb = normalise(augment(x[idx], recipe, rng))
                logits = net(torch.from_numpy(xb))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, yt[idx], pos_weight=pos_weight
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
            losses.append(total / len(x))
    return losses


def logits_of(net: CNN1DLSTM, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Logits for raw mV windows ``x`` [N, T, C], z-scored as the handler does."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out.append(net(torch.from_numpy(normalise(x[i : i + batch]))).numpy())
    return np.concatenate(out).astype(np.float64)


# ------------------------------------------------------------- calibration and figures
def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The ``T`` minimising the negative log-likelihood of ``sigmoid(logits / T)``."""

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        # log(1 + e^z) - y z, computed without overflow
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    best = minimize_scalar(nll, bounds=(math.log(0.01), math.log(100.0)), method="bounded")
    return round(math.exp(float(best.x)), 4)


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.size)
    sorted_p = p[order]
    i = 0
    while i < p.size:  # average ranks over ties
        j = i
        while j + 1 < p.size and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    pos = y > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def sensitivity(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    pos = y > 0.5
    return float((p[pos] > threshold).sum() / max(1, pos.sum()))


def specificity(y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    neg = y < 0.5
    return float((p[neg] <= threshold).sum() / max(1, neg.sum()))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over ``bins`` equal-width probability bins of (share of recordings in the bin)
    x |observed anomalous share - mean probability|."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(float(y[inside].mean()) - float(p[inside].mean()))
    return total


def choose_threshold(y: np.ndarray, p: np.ndarray, min_specificity: float) -> float:
    """The validation threshold with the highest sensitivity + specificity among those
    whose specificity is at least ``min_specificity``; candidates are the midpoints
    between neighbouring probabilities (and 0 and 1)."""
    cuts = np.unique(p)
    candidates = np.concatenate(([0.0], (cuts[1:] + cuts[:-1]) / 2, [1.0]))
    best, best_j = 1.0, -1.0
    for t in candidates:
        spec = specificity(y, p, t)
        j = sensitivity(y, p, t) + spec
        if spec >= min_specificity and j > best_j:
            best, best_j = float(t), j
    return round(best, 4)


def bootstrap_ci(
    y: np.ndarray, p: np.ndarray, threshold: float, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, list[float]]:
    """Percentile 95% intervals of ROC AUC, sensitivity and specificity over recordings
    resampled with replacement (fixed seed: the same figures give the same intervals)."""
    rng = np.random.default_rng(0)
    draws: dict[str, list[float]] = {"roc_auc": [], "sensitivity": [], "specificity": []}
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        yy, pp = y[idx], p[idx]
        if yy.min() == yy.max():
            continue  # one class only: no AUC, no sensitivity or no specificity
        draws["roc_auc"].append(roc_auc(yy, pp))
        draws["sensitivity"].append(sensitivity(yy, pp, threshold))
        draws["specificity"].append(specificity(yy, pp, threshold))
    return {
        k: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]
        for k, v in draws.items()
    }


def figures(
    split: Split, logits: np.ndarray, temperature: float, threshold: float, ci: bool = True
) -> dict[str, Any]:
    """What a split says about the model, per recording (a recording's maximum window)."""
    y, top = split.per_recording(logits)
    p = sigmoid(top / temperature)
    raw = sigmoid(top)
    out: dict[str, Any] = {
        "n": int(y.size),
        "n_anomalous": int((y > 0.5).sum()),
        "n_normal": int((y < 0.5).sum()),
        "roc_auc": round(roc_auc(y, p), 4),
        "sensitivity": round(sensitivity(y, p, threshold), 4),
        "specificity": round(specificity(y, p, threshold), 4),
        "brier": round(brier(y, p), 4),
        "ece": round(expected_calibration_error(y, p), 4),
        "brier_uncalibrated": round(brier(y, raw), 4),
        "ece_uncalibrated": round(expected_calibration_error(y, raw), 4),
        "sensitivity_uncalibrated_at_0.5": round(sensitivity(y, raw, 0.5), 4),
        "specificity_uncalibrated_at_0.5": round(specificity(y, raw, 0.5), 4),
    }
    if ci:
        out["ci95"] = bootstrap_ci(y, p, threshold)
    if split.kinds is not None:
        kinds = np.array(split.kinds)
        probs = sigmoid(logits / temperature)
        out["flagged_per_kind"] = {
            k: round(float((probs[kinds == k] > threshold).mean()), 4)
            for k in [NORMAL, *ANOMALY_KINDS]
        }
    return out


# ---------------------------------------------------------------------------- identity
def content_hash(state: dict[str, torch.Tensor], config: dict[str, Any]) -> str:
    """sha256 of the weights and of the config keys that decide the endpoint's answers."""
    h = hashlib.sha256()
    decisive = {k: config.get(k) for k in OUTPUT_KEYS}
    h.update(json.dumps(decisive, sort_keys=True).encode())
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def check_version_format(version: str) -> None:
    """Refuse a ``--version`` that cannot be a table key part or an archive name."""
    if not VERSION_RE.fullmatch(version):
        raise VersionError(
            f"--version {version[:70]!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def check_version(version: str, digest: str, out: Path) -> None:
    """Refuse ``version`` if it already names a model with other content, looked up in
    ``out`` and in every committed model (``models/*/config.json``)."""
    check_version_format(version)
    for path in [out / CONFIG_NAME, *sorted(COMMITTED_MODELS.glob(f"*/{CONFIG_NAME}"))]:
        if not path.is_file():
            continue
        other = json.loads(path.read_text(encoding="utf-8"))
        if other.get("model_version") == version and other.get("content_sha256") != digest:
            raise VersionError(
                f"--version {version} already names other weights ({path}); "
                "choose a new version, or omit --version to get a content-hashed one"
            )


def make_config(
    training: dict[str, Any],
    threshold: float = 0.5,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """config.json without its identity: the contract model_fn and deploy_model.py read."""
    return {
        "window_samples": WINDOW,
        "channels": len(LEADS),
        "leads": LEADS,
        "sampling_rate_hz": FS,
        "units": "mV",
        "normalisation": {
            "method": "zscore",
            "scope": "per window, per lead, over time",
            "applied_by": "handler",
            "std_floor_mv": DEFAULT_STD_FLOOR_MV,
        },
        "calibration": calibration or {"method": "temperature", "temperature": 1.0},
        "threshold": threshold,
        "max_windows_per_request": MAX_WINDOWS,
        "architecture": ARCHITECTURE,
        "training": training,
    }


def identify(
    net: CNN1DLSTM, config: dict[str, Any], source: str, version: str | None = None
) -> dict[str, Any]:
    """``config`` with ``model_version`` (``version``, else NAME-source-hash) and the
    content hash it stands for first."""
    digest = content_hash(net.state_dict(), config)
    return {
        "model_version": version or f"{NAME}-{source}-{digest[:8]}",
        "content_sha256": digest,
        **config,
    }


def save(out: Path, net: CNN1DLSTM, config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write model.pth (state_dict only), config.json and metrics.json into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / WEIGHTS_NAME)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def fit(
    data: Dataset, recipe: Recipe, seed: int, synthetic_seed: int = 0
) -> tuple[CNN1DLSTM, dict[str, Any]]:
    """Train on ``data.train`` (plus the recipe's synthetic windows), calibrate and choose
    the threshold on ``data.validation``. Returns the network and its calibration facts."""
    torch.manual_seed(seed)
    x, y = data.train.x, data.train.y
    if recipe.synthetic_windows:
        extra = Split.synthetic(
            recipe.synthetic_windows, np.random.default_rng([synthetic_seed, 5])
        )
        x, y = np.concatenate([x, extra.x]), np.concatenate([y, extra.y])
    net = CNN1DLSTM(**ARCHITECTURE)
    losses = train(net, x, y, recipe, seed)
    return net, {
        **calibrate(net, data.validation, recipe.min_specificity),
        "final_loss": round(losses[-1], 4),
        "train_windows": len(y),
    }


def calibrate(net: CNN1DLSTM, validation: Split, min_specificity: float) -> dict[str, float]:
    """The temperature and threshold of a trained network, fitted on ``validation``."""
    y_val, top = validation.per_recording(logits_of(net, validation.x))
    temperature = fit_temperature(top, y_val)
    threshold = choose_threshold(y_val, sigmoid(top / temperature), min_specificity)
    return {"temperature": temperature, "threshold": threshold}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        required=True,
        help="'synthetic', a PTB-XL folder (with ptbxl_database.csv) or a folder with labels.csv",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. build/model")
    parser.add_argument(
        "--version",
        help="model_version to record (default: a name and a hash of the weights); refused "
        "if --out or a committed model (models/) already uses it for other weights",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="default: the source's recipe")
    parser.add_argument("--train-size", type=int, default=8000, help="synthetic windows")
    parser.add_argument(
        "--held-out-size", type=int, default=2000, help="synthetic validation and test windows"
    )
    parser.add_argument(
        "--synthetic-windows",
        type=int,
        help="synthetic windows mixed into real training data (default: the recipe's)",
    )
    parser.add_argument(
        "--data-fs",
        type=float,
        help="rate (Hz) of --data files that do not state their own (e.g. bare .npy)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    try:
        if args.version is not None:  # before training: a typo costs no minutes
            check_version_format(args.version)
        data = load_dataset(args, np.random.default_rng(args.seed))
    except (DataError, VersionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    recipe = RECIPES["synthetic" if data.source == "synthetic" else "real"]
    changes = {"epochs": args.epochs, "synthetic_windows": args.synthetic_windows}
    recipe = dataclasses.replace(recipe, **{k: v for k, v in changes.items() if v is not None})

    net, fitted = fit(data, recipe, args.seed, args.seed)
    temperature, threshold = fitted["temperature"], fitted["threshold"]
    test_logits = logits_of(net, data.test.x)
    metrics: dict[str, Any] = {
        "data": data.description,
        "threshold": threshold,
        "calibration": {"method": "temperature", "temperature": temperature},
        "ece_bins": ECE_BINS,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
        "validation": figures(
            data.validation, logits_of(net, data.validation.x), temperature, threshold, ci=False
        ),
        "test": {"name": data.test_name, **figures(data.test, test_logits, temperature, threshold)},
    }
    if data.source != "synthetic":  # does it still flag what the generator draws?
        held_out = Split.synthetic(args.held_out_size, np.random.default_rng([args.seed, 2]))
        metrics["synthetic_held_out"] = figures(
            held_out, logits_of(net, held_out.x), temperature, threshold, ci=False
        )
    duration = time.perf_counter() - started
    training = {
        "data": data.description,
        **data.facts,
        "recipe": dataclasses.asdict(recipe),
        "seed": args.seed,
        "train_windows": fitted["train_windows"],
        "validation_windows": len(data.validation.y),
        "test_windows": len(data.test.y),
        "final_loss": fitted["final_loss"],
        "threshold_rule": (
            "maximum sensitivity + specificity on validation, after calibration, among "
            f"thresholds with validation specificity >= {recipe.min_specificity}"
        ),
        "parameters": sum(p.numel() for p in net.parameters()),
        "duration_s": round(duration, 1),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    calibration = {"method": "temperature", "temperature": temperature, "fitted_on": "validation"}
    config = identify(net, make_config(training, threshold, calibration), data.source, args.version)
    try:
        check_version(config["model_version"], config["content_sha256"], args.out)
    except VersionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    metrics = {"model_version": config["model_version"], **metrics}
    save(args.out, net, config, metrics)
    test = metrics["test"]
    print(
        f"{data.test_name} ({test['n']} recordings): ROC AUC {test['roc_auc']:.4f} "
        f"{test['ci95']['roc_auc']}, sensitivity {test['sensitivity']:.4f} "
        f"{test['ci95']['sensitivity']}, specificity {test['specificity']:.4f} "
        f"{test['ci95']['specificity']} at threshold {threshold}; temperature {temperature}, "
        f"Brier {test['brier_uncalibrated']:.4f} -> {test['brier']:.4f}, "
        f"ECE {test['ece_uncalibrated']:.4f} -> {test['ece']:.4f}"
    )
    print(
        f"wrote {args.out}/{{{WEIGHTS_NAME},{CONFIG_NAME},metrics.json}} "
        f"({config['model_version']}) in {duration:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
