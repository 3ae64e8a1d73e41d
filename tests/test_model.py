"""The network (model_code/model.py) and its training script (model_code/train.py)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scorer.prepare import prepare
from scorer.readers import read_recording

LEADS = ["I", "II", "V2"]
SHARED_PTBXL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ptbxl"


@pytest.mark.parametrize("batch", [1, 7])
def test_one_probability_per_ecg(model_code: types.SimpleNamespace, batch: int) -> None:
    torch.manual_seed(0)
    net = model_code.model.CNN1DLSTM(**model_code.train.ARCHITECTURE).eval()
    x = torch.randn(batch, 2000, 3)
    logits = net(x)
    probs = net.predict_proba(x)
    assert logits.shape == (batch,)
    assert torch.all((probs >= 0) & (probs <= 1))
    assert torch.allclose(probs, torch.sigmoid(logits))


def test_each_ecg_is_scored_independently(model_code: types.SimpleNamespace) -> None:
    # In eval mode a window's probability must not depend on what else is in the batch.
    torch.manual_seed(0)
    net = model_code.model.CNN1DLSTM(**model_code.train.ARCHITECTURE).eval()
    x = torch.randn(4, 2000, 3)
    alone = torch.cat([net.predict_proba(x[i : i + 1]) for i in range(4)])
    assert torch.allclose(net.predict_proba(x), alone, atol=1e-5)


def test_demo_architecture_is_small_and_shortens_the_sequence(
    model_code: types.SimpleNamespace,
) -> None:
    net = model_code.model.CNN1DLSTM(**model_code.train.ARCHITECTURE)
    params = sum(p.numel() for p in net.parameters())
    assert 20_000 < params < 300_000
    h = torch.zeros(1, 3, 2000)
    for block in net.blocks:
        h = block(h)
    # The LSTM runs over this many steps: ~60, not 2000.
    assert h.shape[-1] <= 100
    assert isinstance(net.blocks, torch.nn.ModuleList)


def test_mismatched_block_settings_are_refused(model_code: types.SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        model_code.model.CNN1DLSTM(
            conv_channels=(8, 16), kernel_sizes=(7,), strides=(1,), pools=(2,)
        )


@pytest.mark.parametrize(
    ("y", "p", "auc"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),
        ([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.75),
    ],
)
def test_roc_auc(
    model_code: types.SimpleNamespace, y: list[int], p: list[float], auc: float
) -> None:
    assert model_code.train.roc_auc(np.array(y, float), np.array(p)) == pytest.approx(auc)


def test_sensitivity_and_specificity_use_strictly_greater_than_threshold(
    model_code: types.SimpleNamespace,
) -> None:
    y, p = np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.9, 0.5, 0.5, 0.1])
    assert model_code.train.sensitivity(y, p, 0.5) == 0.5
    assert model_code.train.specificity(y, p, 0.5) == 1.0


def test_temperature_fit_recovers_how_overconfident_the_logits_are(
    model_code: types.SimpleNamespace,
) -> None:
    # Labels drawn from sigmoid(z / 3): logits z are 3x too confident, so T is about 3.
    rng = np.random.default_rng(0)
    z = rng.normal(0, 6, 20_000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z / 3))).astype(float)
    assert model_code.train.fit_temperature(z, y) == pytest.approx(3.0, rel=0.05)


def test_calibration_figures(model_code: types.SimpleNamespace) -> None:
    train = model_code.train
    y = np.array([0.0, 0.0, 1.0, 1.0])
    assert train.brier(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0
    assert train.brier(y, np.full(4, 0.5)) == 0.25
    # Two bins used: [0.1, 0.1] holds one anomalous of two (|0.5 - 0.1|), [0.9, 0.9] too.
    p = np.array([0.1, 0.9, 0.1, 0.9])
    assert train.expected_calibration_error(y, p) == pytest.approx(0.4)
    assert train.expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0.0


def test_threshold_separates_validation_when_it_can(model_code: types.SimpleNamespace) -> None:
    y = np.array([0, 0, 0, 1, 1, 1], float)
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    assert 0.3 < model_code.train.choose_threshold(y, p, 0.85) < 0.6


def test_threshold_keeps_the_asked_specificity(model_code: types.SimpleNamespace) -> None:
    # Unconstrained, 0.35 is best (sensitivity 1.0, specificity 0.8); asking for 0.85
    # moves it above the normal at 0.5 (sensitivity 0.8, specificity 0.9).
    train = model_code.train
    y = np.array([0] * 10 + [1] * 5, float)
    p = np.array([0.1] * 6 + [0.3, 0.3, 0.5, 0.9] + [0.4, 0.6, 0.7, 0.95, 0.97])
    loose = train.choose_threshold(y, p, 0.0)
    strict = train.choose_threshold(y, p, 0.85)
    assert (train.sensitivity(y, p, loose), train.specificity(y, p, loose)) == (1.0, 0.8)
    assert (train.sensitivity(y, p, strict), train.specificity(y, p, strict)) == (0.8, 0.9)


def test_bootstrap_interval_brackets_the_figure_and_is_repeatable(
    model_code: types.SimpleNamespace,
) -> None:
    rng = np.random.default_rng(1)
    y = np.repeat([0.0, 1.0], 40)
    p = np.clip(y * 0.3 + rng.random(80) * 0.7, 0, 1)
    ci = model_code.train.bootstrap_ci(y, p, 0.5, resamples=300)
    auc = model_code.train.roc_auc(y, p)
    assert ci["roc_auc"][0] < auc < ci["roc_auc"][1]
    assert ci == model_code.train.bootstrap_ci(y, p, 0.5, resamples=300)


@pytest.mark.parametrize(
    ("codes", "label"),
    [
        ("{'NORM': 100.0, 'SR': 0.0}", 0),
        ("{'NORM': 80.0, 'SBRAD': 0.0}", 1),  # probably normal is not normal at 100
        ("{'IMI': 100.0, 'SR': 0.0}", 1),
    ],
)
def test_ptbxl_normal_means_norm_at_100(
    model_code: types.SimpleNamespace, codes: str, label: int
) -> None:
    assert model_code.train_data.ptbxl_label(codes) == label


def _tiny_run(model_code: types.SimpleNamespace, out: Path, *extra: str) -> int:
    return int(
        model_code.train.main(
            [
                *("--data", "synthetic", "--out", str(out)),
                *("--train-size", "48", "--held-out-size", "16", "--epochs", "1", *extra),
            ]
        )
    )


def _loads(model_code: types.SimpleNamespace, out: Path) -> dict[str, Any]:
    """config.json of ``out``, after checking model_fn loads the folder."""
    loaded = model_code.inference.model_fn(str(out))
    return dict(loaded.config)


def test_training_writes_weights_config_and_metrics(
    model_code: types.SimpleNamespace, tmp_path: Path
) -> None:
    assert _tiny_run(model_code, tmp_path) == 0
    config = _loads(model_code, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert re.fullmatch(r"cnn1d-lstm-synthetic-[0-9a-f]{8}", config["model_version"])
    assert config["content_sha256"].startswith(config["model_version"][-8:])
    assert (config["window_samples"], config["channels"], config["leads"]) == (2000, 3, LEADS)
    assert (config["sampling_rate_hz"], config["units"]) == (200, "mV")
    assert 0.0 <= config["threshold"] <= 1.0
    assert config["calibration"]["method"] == "temperature"
    assert config["calibration"]["temperature"] > 0
    assert config["max_windows_per_request"] == 256
    assert config["normalisation"]["applied_by"] == "handler"
    assert config["architecture"] == model_code.train.ARCHITECTURE
    assert config["training"]["seed"] == 0
    assert metrics["model_version"] == config["model_version"]
    assert metrics["threshold"] == config["threshold"]
    test = metrics["test"]
    assert test["n"] == 16
    assert {"roc_auc", "sensitivity", "specificity", "brier", "ece"} <= set(test)
    assert set(test["ci95"]) == {"roc_auc", "sensitivity", "specificity"}


def test_training_is_deterministic_for_a_seed(
    model_code: types.SimpleNamespace, tmp_path: Path
) -> None:
    runs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert _tiny_run(model_code, tmp_path / name, "--seed", seed) == 0
        runs.append(json.loads((tmp_path / name / "config.json").read_text()))
    assert runs[0]["model_version"] == runs[1]["model_version"]
    assert runs[0]["model_version"] != runs[2]["model_version"]


def test_version_is_a_hash_of_what_decides_the_answers(
    model_code: types.SimpleNamespace, tmp_path: Path
) -> None:
    assert _tiny_run(model_code, tmp_path) == 0
    train = model_code.train
    config = json.loads((tmp_path / "config.json").read_text())
    state = torch.load(tmp_path / "model.pth", weights_only=True)
    assert train.content_hash(state, config) == config["content_sha256"]
    # Same weights, another threshold or temperature: other answers, so another hash.
    assert train.content_hash(state, {**config, "threshold": 0.9}) != config["content_sha256"]
    other_t = {**config, "calibration": {"method": "temperature", "temperature": 7.0}}
    assert train.content_hash(state, other_t) != config["content_sha256"]
    # What does not change an answer does not change the version.
    assert train.content_hash(state, {**config, "training": {}}) == config["content_sha256"]
    state["head.bias"] += 1e-3
    assert train.content_hash(state, config) != config["content_sha256"]


def test_a_given_version_is_recorded(model_code: types.SimpleNamespace, tmp_path: Path) -> None:
    assert _tiny_run(model_code, tmp_path, "--version", "ward-b.2027-01") == 0
    assert _loads(model_code, tmp_path)["model_version"] == "ward-b.2027-01"


def test_a_version_naming_other_weights_is_refused(
    model_code: types.SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _tiny_run(model_code, tmp_path, "--version", "mine-1") == 0
    before = (tmp_path / "model.pth").read_bytes()
    # The same seed gives the same weights here: the same version is fine.
    assert _tiny_run(model_code, tmp_path, "--version", "mine-1") == 0
    assert _tiny_run(model_code, tmp_path, "--version", "mine-1", "--seed", "5") == 2
    assert "--version mine-1 already names other weights" in capsys.readouterr().err
    assert (tmp_path / "model.pth").read_bytes() == before


def test_a_committed_models_version_is_refused_for_other_weights(
    model_code: types.SimpleNamespace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    committed = tmp_path / "models"
    (committed / "demo").mkdir(parents=True)
    (committed / "demo" / "config.json").write_text(
        json.dumps({"model_version": "clinic-v3", "content_sha256": "0" * 64})
    )
    monkeypatch.setattr(model_code.train, "COMMITTED_MODELS", committed)
    assert _tiny_run(model_code, tmp_path / "out", "--version", "clinic-v3") == 2
    assert "already names other weights" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("version", ["", "-x", "a b", "x" * 65, "v1/../../etc", "é"])
def test_a_malformed_version_is_refused_before_training(
    model_code: types.SimpleNamespace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    version: str,
) -> None:
    assert _tiny_run(model_code, tmp_path / "out", f"--version={version}") == 2
    assert "use 1-64 letters, digits" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _tiny_ptbxl(source: Path, folder: Path, per_fold: int = 4) -> None:
    """A PTB-XL folder holding ``per_fold`` records of each fold (both labels where the
    fold has them), its records linked, not copied."""
    with (source / "ptbxl_database.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    assert fields is not None
    kept = []
    for fold in range(1, 11):
        in_fold = [r for r in rows if r["strat_fold"] == str(fold)]
        normal = [r for r in in_fold if model_label(r) == 0][: per_fold // 2]
        other = [r for r in in_fold if model_label(r) == 1][: per_fold - len(normal)]
        kept += normal + other
    folder.mkdir()
    with (folder / "ptbxl_database.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    (folder / "records500").symlink_to(source / "records500")


def model_label(row: dict[str, str]) -> int:
    return int("'NORM': 100.0" not in row["scp_codes"])


def test_training_on_ptbxl_end_to_end(
    model_code: types.SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not SHARED_PTBXL.is_dir():
        pytest.skip(f"PTB-XL records not found at {SHARED_PTBXL}")
    _tiny_ptbxl(SHARED_PTBXL, tmp_path / "ptbxl")
    out = tmp_path / "model"
    args = ["--data", str(tmp_path / "ptbxl"), "--out", str(out), "--epochs", "1"]
    assert model_code.train.main([*args, "--synthetic-windows", "16", "--held-out-size", "16"]) == 0
    config = _loads(model_code, out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert re.fullmatch(r"cnn1d-lstm-ptbxl-[0-9a-f]{8}", config["model_version"])
    # 4 records per fold: folds 1-8 train (plus the synthetic windows), 9 validates, 10 tests.
    assert config["training"]["train_windows"] == 8 * 4 + 16
    assert (config["training"]["validation_windows"], metrics["test"]["n"]) == (4, 4)
    assert metrics["test"]["name"] == "PTB-XL fold 10"
    assert metrics["synthetic_held_out"]["n"] == 16
    assert "PTB-XL fold 10 (4 recordings): ROC AUC" in capsys.readouterr().out


def test_ptbxl_windows_are_the_windows_the_lambda_scores(
    model_code: types.SimpleNamespace,
) -> None:
    if not SHARED_PTBXL.is_dir():
        pytest.skip(f"PTB-XL records not found at {SHARED_PTBXL}")
    recording = model_code.train_data.read_wfdb(SHARED_PTBXL / "records500/00000/00001_hr")
    assert recording.fs == 500.0
    assert recording.leads[:2] == ["I", "II"] and recording.leads[7] == "V2"
    served = prepare(recording, ("I", "II", "V2"), 200, 2000)
    windows = model_code.train_data.prepare_windows(recording).windows
    np.testing.assert_array_equal(windows, served.windows)
    assert windows.shape == (1, 2000, 3)  # 10 s at 500 Hz: one window at 200 Hz


SECONDS = 27.0  # two whole 10 s windows and a third ending at 27 s, overlapping the second


def _user_folder(model_code: types.SimpleNamespace, folder: Path) -> None:
    """12 labelled recordings of 27 s in every format the Lambda reads, with leads named,
    ordered and sampled differently; the bare .npy files need ``--data-fs 200``."""
    rng = np.random.default_rng(1)

    def synth(kind: str, fs: float, leads: list[str]) -> np.ndarray:
        return model_code.synthetic.synthesize(kind, SECONDS, fs, leads, rng)

    rows = ["file,label"]
    for i in range(12):
        kind = "normal" if i % 2 == 0 else "af"
        if i % 4 == 0:  # no rate, unnamed channels in the model's order
            name = f"r{i}.npy"
            np.save(folder / name, synth(kind, 200.0, LEADS))
        elif i % 4 == 1:  # an extra lead, another order and case, 500 Hz
            name = f"r{i}.npz"
            leads = ["ii", "V2", "aVR", "I"]
            x = synth(kind, 500.0, leads)
            np.savez(folder / name, signals=x, leads=np.array(leads), sampling_rate_hz=500.0)
        elif i % 4 == 2:  # a time column at 250 Hz, unit suffixes, "Lead II"
            name = f"r{i}.csv"
            x = synth(kind, 250.0, ["V2", "II", "I"])
            lines = [
                f"{t / 250:.4f}," + ",".join(f"{v:.4f}" for v in row) for t, row in enumerate(x)
            ]
            text = "# site: test\ntime_s,V2_mV,Lead II (mV),i_mV\n" + "\n".join(lines) + "\n"
            (folder / name).write_text(text)
        else:  # the Lambda's JSON with its rate and leads, 360 Hz
            name = f"r{i}.json"
            x = synth(kind, 360.0, LEADS)
            doc = {"signals": x.round(4).tolist(), "sampling_rate_hz": 360, "leads": LEADS}
            (folder / name).write_text(json.dumps(doc))
        words = i < 6  # both spellings of the labels
        label = (
            ("normal" if words else "0") if kind == "normal" else ("anomalous" if words else "1")
        )
        rows.append(f"{name},{label}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def _train_on(model_code: types.SimpleNamespace, data: Path, out: Path, *extra: str) -> int:
    return int(
        model_code.train.main(["--out", str(out), "--data", str(data), "--epochs", "1", *extra])
    )


def test_training_on_a_folder_of_labelled_recordings(
    model_code: types.SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _user_folder(model_code, data)
    out = tmp_path / "model"
    assert _train_on(model_code, data, out, "--data-fs", "200") == 0
    config = _loads(model_code, out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert re.fullmatch(r"cnn1d-lstm-custom-[0-9a-f]{8}", config["model_version"])
    # 12 recordings x 3 windows (the third overlapping); one recording of each label validates,
    # one of each tests, the other 8 train: recordings, not windows, are split.
    training = config["training"]
    assert (training["train_windows"], training["validation_windows"]) == (8 * 3, 2 * 3)
    assert (training["test_windows"], metrics["test"]["n"]) == (2 * 3, 2)
    assert training["overlapping_windows"] == 12
    assert "user recordings (12 files)" in training["data"]
    assert "36 windows (12 of them overlapping the window before)" in capsys.readouterr().out


def test_training_windows_are_the_windows_the_lambda_scores(
    model_code: types.SimpleNamespace, tmp_path: Path
) -> None:
    _user_folder(model_code, tmp_path)
    recordings, labels, overlapping = model_code.train_data.load_user_data(tmp_path, 200.0)
    config = model_code.train.make_config({})
    rows = [line.split(",") for line in (tmp_path / "labels.csv").read_text().splitlines()[1:]]
    assert labels.tolist() == [0, 1] * 6
    assert overlapping == 12
    compared = 0
    for (name, _), windows in zip(rows, recordings, strict=True):
        recording = read_recording((tmp_path / name).read_bytes(), name)
        if recording.fs is None:  # bare .npy: its rate came from --data-fs
            continue
        served = prepare(
            recording, tuple(config["leads"]), config["sampling_rate_hz"], config["window_samples"]
        )
        assert served.window_starts_s == [0.0, 10.0, 17.0]
        np.testing.assert_array_equal(windows, served.windows)
        compared += 1
    assert compared == 9


def _set_row(folder: Path, line: int, row: str) -> None:
    """Line ``line`` of labels.csv (1 is the header) becomes ``row``."""
    rows = (folder / "labels.csv").read_text().splitlines()
    rows[line - 1] = row
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def _row_for_new_file(path: Path, folder: Path, name: str) -> None:
    """labels.csv's first row names ``name``, a new 30 s recording at ``path``."""
    if path.suffix == ".npy":
        np.save(path, np.ones((6000, 3)))
    else:
        path.write_text("# fs: 200\nI,II,V2\n" + "1,2,3\n" * 6000)
    _set_row(folder, 2, f"{name},0")


def _pickled_npy(path: Path) -> None:
    np.save(path, np.array([{"leads": 3}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: (d / "labels.csv").unlink(), "labels.csv not found"),
        (lambda d: (d / "labels.csv").write_text("name,y\nr0.npy,1\n"), "'file' and 'label'"),
        (lambda d: _set_row(d, 3, "r1.npz,maybe"), "line 3: label 'maybe' is not 0/1"),
        (
            lambda d: (d / "labels.csv").write_text("file,label\nmissing.npy,1\n"),
            "line 2: file not found",
        ),
        (
            lambda d: _row_for_new_file(d.parent / "outside.npy", d, "../outside.npy"),
            "line 2: file not found inside",
        ),
        (
            lambda d: (d / "r2.csv").write_text("# fs: 200\nI,II\n" + "1,2\n" * 4000),
            r"line 4: r2\.csv: missing lead V2: found standard leads I, II",
        ),
        (
            lambda d: np.save(d / "r0.npy", np.zeros((5000, 2))),
            r"line 2: r0\.npy: the file has 2 unnamed channel\(s\)",
        ),
        (
            lambda d: np.save(d / "r0.npy", np.ones((100, 3))),
            r"line 2: r0\.npy: the recording lasts 0\.5 s; the model needs at least 10 s",
        ),
        (lambda d: _pickled_npy(d / "r0.npy"), r"line 2: r0\.npy: .*never unpickled"),
        (
            lambda d: _row_for_new_file(d / "notes.txt", d, "notes.txt"),
            r"line 2: notes\.txt: unsupported file type '\.txt'; accepted: \.json, \.csv",
        ),
        (
            lambda d: (d / "labels.csv").write_text("file,label\nr0.npy,0\nr1.npz,1\n"),
            "at least 10 recordings",
        ),
    ],
    ids=[
        "no labels",
        "bad header",
        "bad label",
        "missing file",
        "outside the folder",
        "missing lead",
        "unnamed channels",
        "short",
        "pickle",
        "unsupported",
        "few",
    ],
)
def test_bad_data_folder_fails_with_a_clear_message(
    model_code: types.SimpleNamespace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    break_it: Callable[[Path], object],
    message: str,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _user_folder(model_code, data)
    break_it(data)
    assert _train_on(model_code, data, tmp_path / "out", "--data-fs", "200") == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_every_unusable_row_is_listed_in_one_run(
    model_code: types.SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _user_folder(model_code, tmp_path)
    np.save(tmp_path / "r0.npy", np.ones((100, 3)))
    _set_row(tmp_path, 4, "r2.csv,maybe")
    (tmp_path / "r5.npz").unlink()
    assert _train_on(model_code, tmp_path, tmp_path / "out", "--data-fs", "200") == 2
    err = capsys.readouterr().err
    assert "3 of 12 rows of labels.csv cannot be used; fix or remove them" in err
    assert re.findall(r"labels\.csv line (\d+)", err) == ["2", "4", "7"]


def test_a_file_without_a_rate_needs_data_fs(
    model_code: types.SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _user_folder(model_code, tmp_path)
    # r2.csv without its time column: the Lambda rejects such a CSV; --data-fs supplies it.
    x = model_code.synthetic.synthesize("normal", 20.0, 500.0, LEADS, np.random.default_rng(0))
    lines = [",".join(f"{v:.4f}" for v in row) for row in x]
    (tmp_path / "r2.csv").write_text("I,II,V2\n" + "\n".join(lines) + "\n")
    assert _train_on(model_code, tmp_path, tmp_path / "a") == 2
    assert re.search(
        r"line 4: r2\.csv: the file does not state its sampling rate: pass --data-fs",
        capsys.readouterr().err,
    )
    recordings, _, _ = model_code.train_data.load_user_data(tmp_path, 500.0)
    assert recordings[2].shape == (2, 2000, 3)  # 20 s at 500 Hz -> two 10 s windows at 200 Hz


def test_a_rate_stated_in_the_file_wins_over_data_fs(
    model_code: types.SimpleNamespace, tmp_path: Path
) -> None:
    x = model_code.synthetic.synthesize("normal", 20.0, 500.0, LEADS, np.random.default_rng(0))
    lines = [",".join(f"{v:.4f}" for v in row) for row in x]
    (tmp_path / "a.csv").write_text("# sampling_rate_hz: 500\nI,II,V2\n" + "\n".join(lines))
    np.savez(tmp_path / "b.npz", signals=x, sampling_rate_hz=500.0)
    np.save(tmp_path / "c.npy", x[:4000])  # no rate in the file: --data-fs (200 Hz) applies
    rows = ["a.csv,0", "b.npz,1", "c.npy,0"] * 4
    (tmp_path / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    recordings, labels, overlapping = model_code.train_data.load_user_data(tmp_path, 200.0)
    assert [r.shape for r in recordings[:3]] == [(2, 2000, 3)] * 3
    assert labels.tolist() == [0, 1, 0] * 4
    assert overlapping == 0


# ------------------------------------------------------------------ the shipped model
REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "models" / "demo"
MODEL_SOURCES = ("train.py", "model.py", "inference.py", "synthetic.py")


def _make_n(*targets: str) -> str:
    """What make would run for ``targets`` with every model source newer than any build."""
    newer = [f"-W model_code/{name}" for name in MODEL_SOURCES]
    result = subprocess.run(
        ["make", "-n", *" ".join(newer).split(), *targets],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize("target", ["demo", "local-up", "test", "package", "bench"])
def test_no_make_target_but_model_trains(target: str) -> None:
    # A fresh clone (CI) must never train: the committed model has no rule that makes it.
    commands = _make_n(target)
    assert "train.py" not in commands
    if target in ("demo", "local-up", "package"):
        assert "deploy_model.py package --model-dir models/demo" in commands


def test_make_model_retrains_into_build_model() -> None:
    assert "model_code/train.py --data ../shared/data/ptbxl --out build/model" in _make_n("model")


def test_the_shipped_model_is_the_stacks_model_version(model_code: types.SimpleNamespace) -> None:
    config = _loads(model_code, DEMO)
    version = config["model_version"]
    assert re.fullmatch(r"cnn1d-lstm-ptbxl-[0-9a-f]{8}", version)
    template = (REPO / "template.yaml").read_text()
    assert re.search(rf"  ModelVersion:\n    Type: String\n    Default: {version}\n", template)
    assert f'"ModelVersion={version}"' in (REPO / "samconfig.toml").read_text()
    assert (DEMO / "model.pth").stat().st_size < 1_000_000  # a few hundred KB in git


def test_docs_quote_the_shipped_model(model_code: types.SimpleNamespace) -> None:
    assert model_code.model_card.check(DEMO) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["test"].update(roc_auc=0.99), "does not quote"),
        (lambda m: m.update(threshold=0.5), "disagree on the threshold"),
        (lambda m: m.update(model_version="cnn1d-lstm-ptbxl-00000000"), "describes"),
    ],
    ids=["figure", "threshold", "version"],
)
def test_docs_refuse_metrics_that_disagree(
    model_code: types.SimpleNamespace,
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    folder = tmp_path / "demo"
    folder.mkdir()
    for name in ("model.pth", "config.json", "metrics.json", "study.json"):
        (folder / name).write_bytes((DEMO / name).read_bytes())
    metrics = json.loads((folder / "metrics.json").read_text())
    change(metrics)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    problems = model_code.model_card.check(folder)
    assert any(message in p for p in problems), problems
