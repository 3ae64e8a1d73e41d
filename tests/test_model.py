"""The network (model_code/model.py) and its training script (model_code/train.py)."""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from scorer.prepare import prepare
from scorer.readers import read_recording

LEADS = ["I", "II", "V2"]


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
    m = model_code.train.evaluate(
        np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.9, 0.5, 0.5, 0.1]), 0.5
    )
    assert (m["sensitivity"], m["specificity"], m["n"]) == (0.5, 1.0, 4)


def _tiny_run(model_code: types.SimpleNamespace, out: Path, *extra: str) -> int:
    return int(
        model_code.train.main(
            [
                *("--out", str(out), "--train-size", "48", "--held-out-size", "16"),
                *("--epochs", "1", *extra),
            ]
        )
    )


def test_training_writes_weights_config_and_metrics(
    model_code: types.SimpleNamespace, tmp_path: Path
) -> None:
    assert _tiny_run(model_code, tmp_path) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert config["model_version"] == "cnn1d_lstm_ecg_v1"
    assert (config["window_samples"], config["channels"], config["leads"]) == (2000, 3, LEADS)
    assert (config["sampling_rate_hz"], config["units"], config["threshold"]) == (200, "mV", 0.5)
    assert config["max_windows_per_request"] == 256
    assert config["normalisation"]["applied_by"] == "handler"
    assert config["architecture"] == model_code.train.ARCHITECTURE
    assert config["training"]["seed"] == 0
    assert {"roc_auc", "sensitivity", "specificity", "threshold", "n"} <= set(metrics)
    assert metrics["n"] == 16
    state = torch.load(tmp_path / "model.pth", weights_only=True)
    model_code.model.CNN1DLSTM(**config["architecture"]).load_state_dict(state)


def test_training_is_deterministic_for_a_seed(
    model_code: types.SimpleNamespace, tmp_path: Path
) -> None:
    runs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert _tiny_run(model_code, tmp_path / name, "--seed", seed) == 0
        runs.append(torch.load(tmp_path / name / "model.pth", weights_only=True))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


SECONDS = 27.0  # two whole 10 s windows and a 7 s rest, which the Lambda pads and marks


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
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    # 12 recordings x 3 windows (the third overlapping the second); held out: 20% of each
    # label, by recording.
    assert config["training"]["train_windows"] + metrics["n"] == 36
    assert config["training"]["overlapping_windows"] == 12
    assert metrics["n"] == 2 * 3  # one recording per label held out
    assert "user recordings (12 files)" in config["training"]["data"]
    assert "36 windows (12 of them overlapping the window before)" in capsys.readouterr().out


def test_training_windows_are_the_windows_the_lambda_scores(
    model_code: types.SimpleNamespace, tmp_path: Path
) -> None:
    _user_folder(model_code, tmp_path)
    recordings, labels, overlapping = model_code.train.load_user_data(tmp_path, 200.0)
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
        assert served.window_starts_s[-1] - served.window_starts_s[-2] < 10.0
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
    recordings, _, _ = model_code.train.load_user_data(tmp_path, 500.0)
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
    recordings, labels, overlapping = model_code.train.load_user_data(tmp_path, 200.0)
    assert [r.shape for r in recordings[:3]] == [(2, 2000, 3)] * 3
    assert labels.tolist() == [0, 1, 0] * 4
    assert overlapping == 0
