"""Train the demo CNN1D-LSTM and write model.pth, config.json and metrics.json.

Usage::

    python model_code/train.py --out build/model [--seed 0] [--epochs 6] [--data DIR]

Without ``--data`` the model learns from synthetic ECGs (``synthetic.py``): half sinus
rhythm, half anomalies spread evenly over the anomaly kinds, scored on a held-out
synthetic set drawn from a separate random stream. The same seed gives the same weights
on the same machine and torch build.

With ``--data DIR`` it learns from your own labelled recordings instead. ``DIR`` holds
``labels.csv`` with a header ``file,label`` (label ``0``/``1`` or ``normal``/``anomalous``;
``file`` relative to ``DIR``) and the recordings it names, in any format the scoring
Lambda accepts (.json, .csv, .npy, .npz). Each file goes through the Lambda's own code
(``scorer.readers.read_recording`` then ``scorer.prepare.prepare``): same lead matching,
gap filling, resampling and windows, so the model is trained on inputs prepared exactly
as they will be served. ``--data-fs`` gives the rate of files that do not state their
own. A file the Lambda would reject stops training; every such row is listed first.
A last window that overlaps the one before is kept, as the Lambda scores it too.
Windows inherit their recording's label; recordings, not windows, are split between
training and held-out so no recording is scored on windows it was trained on.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The Lambda's own reader and preparation (functions/scorer, installed in the dev venv), so
# a model trained here sees its files exactly as the Lambda will serve them. train.py runs
# only in the dev venv; the container's code (inference.py, model.py) never imports scorer.
from scorer.errors import RejectedFile
from scorer.prepare import Prepared, prepare
from scorer.readers import read_recording
from tqdm import tqdm

from inference import CONFIG_NAME, DEFAULT_STD_FLOOR_MV, WEIGHTS_NAME, normalise
from model import CNN1DLSTM
from synthetic import ANOMALY_KINDS, NORMAL, synthesize_batch

MODEL_VERSION = "cnn1d_lstm_ecg_v1"
WINDOW = 2000
FS = 200
LEADS = ["I", "II", "V2"]
THRESHOLD = 0.5
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
LABEL_WORDS = {"0": 0, "1": 1, "normal": 0, "anomalous": 1, "abnormal": 1, "anomaly": 1}
MAX_PROBLEMS_SHOWN = 20  # a folder of mostly bad files lists the first ones and a count


class DataError(ValueError):
    """The ``--data`` folder does not hold what train.py accepts."""


def synthetic_set(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Balanced synthetic windows: ``n // 2`` normal, the rest spread over anomaly kinds."""
    n_norm = n // 2
    kinds = [NORMAL] * n_norm + [ANOMALY_KINDS[i % len(ANOMALY_KINDS)] for i in range(n - n_norm)]
    order = rng.permutation(n)
    kinds = [kinds[i] for i in order]
    x = synthesize_batch(kinds, WINDOW / FS, FS, LEADS, rng)
    y = np.array([k != NORMAL for k in kinds], dtype=np.float32)
    return x, y, kinds


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
    return prepare(recording, tuple(LEADS), FS, WINDOW)


def load_user_data(
    folder: Path, data_fs: float | None = None
) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Windows per recording (``[n_i, 2000, 3]`` each), one label per recording, and how
    many of the windows are a last window overlapping the one before.

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
        recordings.append(prepared.windows)
        labels.append(label)
        starts = prepared.window_starts_s
        overlapping += int(len(starts) > 1 and starts[-1] - starts[-2] < WINDOW / FS)
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
    recordings: list[np.ndarray], y: np.ndarray, rng: np.random.Generator, held_out: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified split by recording; windows inherit their recording's label."""
    test_ids: list[int] = []
    for label in (0, 1):
        ids = rng.permutation(np.flatnonzero(y == label))
        test_ids.extend(ids[: max(1, round(held_out * ids.size))].tolist())
    test = set(test_ids)

    def stack(ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        xs = [recordings[i] for i in ids]
        ys = [np.full(recordings[i].shape[0], y[i], dtype=np.float32) for i in ids]
        return np.concatenate(xs), np.concatenate(ys)

    x_tr, y_tr = stack([i for i in range(len(recordings)) if i not in test])
    x_te, y_te = stack(sorted(test))
    return x_tr, y_tr, x_te, y_te


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


def evaluate(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """ROC AUC, and sensitivity/specificity when ``p > threshold`` means anomalous."""
    pos = y > 0.5
    pred = p > threshold
    return {
        "roc_auc": round(roc_auc(y, p), 4),
        "sensitivity": round(float((pred & pos).sum() / max(1, pos.sum())), 4),
        "specificity": round(float((~pred & ~pos).sum() / max(1, (~pos).sum())), 4),
        "threshold": threshold,
        "n": int(y.size),
        "n_anomalous": int(pos.sum()),
        "n_normal": int((~pos).sum()),
    }


def predict(net: CNN1DLSTM, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Probabilities for normalised windows ``x`` [N, T, C]."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out.append(torch.sigmoid(net(torch.from_numpy(x[i : i + batch]))).numpy())
    return np.concatenate(out)


def train(
    net: CNN1DLSTM,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 3e-3,
) -> list[float]:
    """Mini-batch AdamW with a one-cycle schedule; returns the mean loss per epoch."""
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(xt) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    pos_weight = torch.tensor(float((y < 0.5).sum() / max(1.0, float((y > 0.5).sum()))))
    losses = []
    # In a log (CI, make demo piped) redraw every 15 s instead of filling it with bars.
    interval = 0.1 if sys.stderr.isatty() else 15.0
    with tqdm(total=steps, desc="training", unit="batch", mininterval=interval) as bar:
        for epoch in range(epochs):
            net.train()
            order = torch.randperm(len(xt), generator=gen)
            total = 0.0
            for i in range(0, len(xt), batch_size):
                idx = order[i : i + batch_size]
                logits = net(xt[idx])
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
            losses.append(total / len(xt))
    return losses


def make_config(training: dict[str, Any]) -> dict[str, Any]:
    """config.json: the input contract model_fn and deploy_model.py check rely on."""
    return {
        "model_version": MODEL_VERSION,
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
        "threshold": THRESHOLD,
        "max_windows_per_request": MAX_WINDOWS,
        "architecture": ARCHITECTURE,
        "training": training,
    }


def save(out: Path, net: CNN1DLSTM, config: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write model.pth (state_dict only), config.json and metrics.json into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / WEIGHTS_NAME)
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. build/model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-size", type=int, default=8000, help="synthetic windows")
    parser.add_argument("--held-out-size", type=int, default=2000, help="synthetic windows")
    parser.add_argument("--data", type=Path, help="folder with labels.csv and recordings")
    parser.add_argument(
        "--data-fs",
        type=float,
        help="rate (Hz) of --data files that do not state their own (e.g. bare .npy)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    if args.data is not None:
        try:
            recordings, rec_labels, overlapping = load_user_data(args.data, args.data_fs)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        x_tr, y_tr, x_te, y_te = user_split(recordings, rec_labels, rng)
        data_desc = f"user recordings ({len(recordings)} files)"
        extra: dict[str, Any] = {"overlapping_windows": overlapping}
        print(
            f"{len(recordings)} recordings, {len(y_tr) + len(y_te)} windows "
            f"({overlapping} of them overlapping the window before)"
        )
        kinds_te: list[str] | None = None
    else:
        print(f"generating {args.train_size} + {args.held_out_size} synthetic windows ...")
        # Separate streams: the held-out set never shares draws with the training set.
        x_tr, y_tr, _ = synthetic_set(args.train_size, np.random.default_rng([args.seed, 1]))
        x_te, y_te, kinds_te = synthetic_set(
            args.held_out_size, np.random.default_rng([args.seed, 2])
        )
        data_desc = "synthetic (synthetic.py): normal vs " + ", ".join(ANOMALY_KINDS)
        extra = {}
    x_tr, x_te = normalise(x_tr), normalise(x_te)

    net = CNN1DLSTM(**ARCHITECTURE)
    losses = train(net, x_tr, y_tr, args.epochs, args.seed)
    p_te = predict(net, x_te)
    metrics = evaluate(y_te, p_te, THRESHOLD)
    metrics["data"] = data_desc
    if kinds_te is not None:
        kinds_arr = np.array(kinds_te)
        metrics["per_kind_flagged"] = {
            k: round(float((p_te[kinds_arr == k] > THRESHOLD).mean()), 4)
            for k in [NORMAL, *ANOMALY_KINDS]
        }
    duration = time.perf_counter() - started
    training = {
        "data": data_desc,
        "train_windows": len(y_tr),
        "held_out_windows": len(y_te),
        **extra,
        "seed": args.seed,
        "epochs": args.epochs,
        "final_loss": round(losses[-1], 4),
        "parameters": sum(p.numel() for p in net.parameters()),
        "duration_s": round(duration, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    save(args.out, net, make_config(training), metrics)
    print(
        f"held-out ({metrics['n']} windows): ROC AUC {metrics['roc_auc']:.4f}, "
        f"sensitivity {metrics['sensitivity']:.4f}, specificity {metrics['specificity']:.4f} "
        f"at threshold {THRESHOLD}"
    )
    if "per_kind_flagged" in metrics:
        print(
            "flagged per kind: "
            + ", ".join(f"{k} {v:.2f}" for k, v in metrics["per_kind_flagged"].items())
        )
    print(f"wrote {args.out}/{{{WEIGHTS_NAME},{CONFIG_NAME},metrics.json}} in {duration:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
