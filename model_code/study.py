"""Measure what one training run cannot: seed spread, the synthetic-only model, other recordings.

Usage::

    python model_code/study.py --data ../shared/data/ptbxl --model-dir models/demo

Retrains the model folder's recipe with ``--seeds`` seeds (each calibrated and thresholded on
PTB-XL fold 9, scored on fold 10), trains the synthetic-only model (``--data synthetic``'s
recipe) and scores it on the same fold-10 records, and scores the real recordings of
``--ecg`` (other databases) with both models. Writes ``study.json`` into the model folder,
which ``model_card.py`` quotes in docs/model.md. Slow: it trains ``seeds + 1`` models.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scorer.readers import read_recording
from scorer.recording import Recording

import train
import train_data
from inference import CONFIG_NAME, model_fn
from model import CNN1DLSTM

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class OtherRecord:
    """A real recording from another database, and how its leads map to I, II, V2."""

    record: str
    path: str  # relative to --ecg; a WFDB record has no extension
    what: str
    leads: str  # what stands in for I, II, V2, in words
    # Each model lead as a sum of the file's leads: {"II": {"I": 1, "III": 1}} (Einthoven).
    derive: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)


OTHER_RECORDS = (
    OtherRecord(
        "PTB Diagnostic s0010_re",
        "csv/ptbdb_s0010_re_i_ii_v2_38s_1000hz.csv",
        "myocardial infarction, 38 s at 1000 Hz",
        "i, ii, v2",
    ),
    OtherRecord(
        "MIMIC 041s",
        "csv/mimicdb_041s_III_I_V_16s_500hz.csv",
        "ICU monitor, 16 s at 500 Hz, diagnosis not given",
        "I; II = I + III; chest lead V for V2",
        {"I": {"I": 1.0}, "II": {"I": 1.0, "III": 1.0}, "V2": {"V": 1.0}},
    ),
)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def seed_spread(
    data: train_data.Dataset,
    recipe: train.Recipe,
    seeds: list[int],
    committed: dict[str, Any],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """Fold-10 figures of the recipe trained with each seed; the committed model's own seed
    is not retrained when this machine, torch and thread count trained it (the same seed
    gives the same weights there), its metrics.json is that run."""
    training = committed["training"]
    same_machine = (training["torch"], training["threads"]) == (
        torch.__version__,
        torch.get_num_threads(),
    )
    runs = []
    for seed in seeds:
        if same_machine and seed == training["seed"]:
            test = metrics["test"]
            calibration = committed["calibration"]
            fitted = {"threshold": metrics["threshold"], "temperature": calibration["temperature"]}
        else:
            net, fitted = train.fit(data, recipe, seed, seed)
            test = train.figures(
                data.test,
                train.logits_of(net, data.test.x),
                fitted["temperature"],
                fitted["threshold"],
                ci=False,
            )
        runs.append(
            {
                "seed": seed,
                "roc_auc": test["roc_auc"],
                "sensitivity": test["sensitivity"],
                "specificity": test["specificity"],
                "threshold": fitted["threshold"],
                "temperature": fitted["temperature"],
            }
        )
        print(f"seed {seed}: {runs[-1]}", flush=True)
    return {
        "seeds": seeds,
        "per_seed": runs,
        "summary": {
            k: summary([r[k] for r in runs]) for k in ("roc_auc", "sensitivity", "specificity")
        },
    }


def other_recording(ecg: Path, other: OtherRecord) -> Recording:
    """The file as the Lambda reads it, with derived or stand-in leads named I, II, V2."""
    path = ecg / other.path
    recording = read_recording(path.read_bytes(), path.name)
    if not other.derive:
        return recording
    assert recording.leads is not None
    index = {name.upper(): j for j, name in enumerate(recording.leads)}
    columns = [
        sum(w * recording.signal[:, index[name]] for name, w in parts.items())
        for parts in other.derive.values()
    ]
    return dataclasses.replace(
        recording, signal=np.stack(columns, axis=1), leads=list(other.derive)
    )


def window_probabilities(net: CNN1DLSTM, temperature: float, recording: Recording) -> list[float]:
    prepared = train_data.prepare_windows(recording)
    windows = prepared.windows[prepared.usable]  # the windows the Lambda sends the model
    p = train.sigmoid(train.logits_of(net, windows) / temperature)
    return [round(float(v), 3) for v in p]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "ptbxl", help="PTB-XL folder")
    parser.add_argument("--ecg", type=Path, default=SHARED / "ecg", help="other recordings")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "demo")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--synthetic-model",
        type=Path,
        help="a synthetic-only model folder to compare with (default: train one, slow)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)

    committed = json.loads((args.model_dir / CONFIG_NAME).read_text(encoding="utf-8"))
    recipe = train.Recipe(**committed["training"]["recipe"])
    data = train_data.load_ptbxl(args.data)
    metrics = json.loads((args.model_dir / "metrics.json").read_text(encoding="utf-8"))
    seeds = seed_spread(data, recipe, list(range(args.seeds)), committed, metrics)

    synthetic = train_data.synthetic_dataset(seed=0)
    syn_recipe = train.RECIPES["synthetic"]
    if args.synthetic_model is None:
        syn_net, syn_fit = train.fit(synthetic, syn_recipe, 0)
        syn_source = "trained here: train.py --data synthetic, seed 0"
    else:  # a synthetic-only model trained before, calibrated here as train.py would
        syn_net = model_fn(str(args.synthetic_model)).net
        syn_fit = train.calibrate(syn_net, synthetic.validation, syn_recipe.min_specificity)
        syn_config = json.loads((args.synthetic_model / CONFIG_NAME).read_text(encoding="utf-8"))
        syn_source = f"{syn_config['model_version']}, calibrated on synthetic validation"
    syn_t, syn_threshold = syn_fit["temperature"], syn_fit["threshold"]
    synthetic_only = {
        "model": syn_source,
        "threshold": syn_threshold,
        "temperature": syn_t,
        "test": train.figures(
            data.test, train.logits_of(syn_net, data.test.x), syn_t, syn_threshold
        ),
        "synthetic_held_out": train.figures(
            synthetic.test,
            train.logits_of(syn_net, synthetic.test.x),
            syn_t,
            syn_threshold,
            ci=False,
        ),
    }

    shipped = model_fn(str(args.model_dir))
    others = []
    for other in OTHER_RECORDS:
        recording = other_recording(args.ecg, other)
        others.append(
            {
                "record": other.record,
                "what": other.what,
                "leads": other.leads,
                "probabilities": window_probabilities(shipped.net, shipped.temperature, recording),
                "synthetic_only": window_probabilities(syn_net, syn_t, recording),
            }
        )
    study = {
        "model_version": committed["model_version"],
        "seeds": seeds,
        "synthetic_only": synthetic_only,
        "other_records": others,
        "duration_s": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    out = args.model_dir / "study.json"
    out.write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
