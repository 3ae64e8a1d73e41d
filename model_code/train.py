"""Train the CNN1D-LSTM ECG model, calibrate it, and write model.pth, config.json, metrics.json.

Usage::

    python model_code/train.py --data ../shared/data/ptbxl --out build/model   # the demo model
    python model_code/train.py --data synthetic --out build/synthetic          # no real data
    python model_code/train.py --data DIR --out build/mine                     # DIR/labels.csv

``--data`` names a PTB-XL folder, ``synthetic`` or a folder with ``labels.csv``; how each
is read into windows, through the Lambda's own readers and preparation, is
``train_data.py``'s job.

After training, a temperature ``T`` fitted on the validation recordings (minimum negative
log-likelihood) turns logits into calibrated probabilities ``sigmoid(logit / T)``; the
threshold is chosen on the same validation recordings, after calibration. The test figures
carry bootstrap 95% intervals. The model version is a name plus a hash of what decides its
outputs (weights, calibration, threshold, input contract), or ``--version``. The same seed
gives the same weights on the same machine and torch build only.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from tqdm import tqdm

from inference import CONFIG_NAME, DEFAULT_STD_FLOOR_MV, WEIGHTS_NAME, normalise
from model import CNN1DLSTM
from synthetic import ANOMALY_KINDS, NORMAL
from train_data import (
    FS,
    LEADS,
    WINDOW,
    DataError,
    Dataset,
    Split,
    bar_interval,
    load_dataset,
)

NAME = "cnn1d-lstm"  # the model version is NAME-<source>-<content hash>
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
ECE_BINS = 10
BOOTSTRAP_RESAMPLES = 2000


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
    with tqdm(total=steps, desc="training", unit="batch", mininterval=bar_interval()) as bar:
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
