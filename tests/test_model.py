"""The network (model_code/model.py) and its training script (model_code/train.py)."""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
MODEL_CODE = REPO / "model_code"
FLAT_MODULES = ("model", "inference", "synthetic", "train")
LEADS = ["I", "II", "V2"]


def _forget_flat_modules() -> None:
    for name in FLAT_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def code(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    """model_code's flat modules, imported fresh (code/ on sys.path, as in the container)."""
    _forget_flat_modules()
    monkeypatch.syspath_prepend(str(MODEL_CODE))
    import model
    import synthetic
    import train

    yield types.SimpleNamespace(model=model, synthetic=synthetic, train=train)
    _forget_flat_modules()


@pytest.mark.parametrize("batch", [1, 7])
def test_one_probability_per_ecg(code: types.SimpleNamespace, batch: int) -> None:
    torch.manual_seed(0)
    net = code.model.CNN1DLSTM(**code.train.ARCHITECTURE).eval()
    x = torch.randn(batch, 2000, 3)
    logits = net(x)
    probs = net.predict_proba(x)
    assert logits.shape == (batch,)
    assert torch.all((probs >= 0) & (probs <= 1))
    assert torch.allclose(probs, torch.sigmoid(logits))


def test_each_ecg_is_scored_independently(code: types.SimpleNamespace) -> None:
    # In eval mode a window's probability must not depend on what else is in the batch.
    torch.manual_seed(0)
    net = code.model.CNN1DLSTM(**code.train.ARCHITECTURE).eval()
    x = torch.randn(4, 2000, 3)
    alone = torch.cat([net.predict_proba(x[i : i + 1]) for i in range(4)])
    assert torch.allclose(net.predict_proba(x), alone, atol=1e-5)


def test_demo_architecture_is_small_and_shortens_the_sequence(
    code: types.SimpleNamespace,
) -> None:
    net = code.model.CNN1DLSTM(**code.train.ARCHITECTURE)
    params = sum(p.numel() for p in net.parameters())
    assert 20_000 < params < 300_000
    h = torch.zeros(1, 3, 2000)
    for block in net.blocks:
        h = block(h)
    # The LSTM runs over this many steps: ~60, not 2000.
    assert h.shape[-1] <= 100
    assert isinstance(net.blocks, torch.nn.ModuleList)


def test_mismatched_block_settings_are_refused(code: types.SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        code.model.CNN1DLSTM(conv_channels=(8, 16), kernel_sizes=(7,), strides=(1,), pools=(2,))


@pytest.mark.parametrize(
    ("y", "p", "auc"),
    [
        ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], 1.0),
        ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1], 0.0),
        ([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], 0.5),
        ([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], 0.75),
    ],
)
def test_roc_auc(code: types.SimpleNamespace, y: list[int], p: list[float], auc: float) -> None:
    assert code.train.roc_auc(np.array(y, float), np.array(p)) == pytest.approx(auc)


def test_sensitivity_and_specificity_use_strictly_greater_than_threshold(
    code: types.SimpleNamespace,
) -> None:
    m = code.train.evaluate(np.array([1.0, 1.0, 0.0, 0.0]), np.array([0.9, 0.5, 0.5, 0.1]), 0.5)
    assert (m["sensitivity"], m["specificity"], m["n"]) == (0.5, 1.0, 4)


def _tiny_run(code: types.SimpleNamespace, out: Path, *extra: str) -> int:
    return int(
        code.train.main(
            [
                *("--out", str(out), "--train-size", "48", "--held-out-size", "16"),
                *("--epochs", "1", *extra),
            ]
        )
    )


def test_training_writes_weights_config_and_metrics(
    code: types.SimpleNamespace, tmp_path: Path
) -> None:
    assert _tiny_run(code, tmp_path) == 0
    config = json.loads((tmp_path / "config.json").read_text())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert config["model_version"] == "cnn1d_lstm_ecg_v1"
    assert (config["window_samples"], config["channels"], config["leads"]) == (2000, 3, LEADS)
    assert (config["sampling_rate_hz"], config["units"], config["threshold"]) == (200, "mV", 0.5)
    assert config["max_windows_per_request"] == 256
    assert config["normalisation"]["applied_by"] == "handler"
    assert config["architecture"] == code.train.ARCHITECTURE
    assert config["training"]["seed"] == 0
    assert {"roc_auc", "sensitivity", "specificity", "threshold", "n"} <= set(metrics)
    assert metrics["n"] == 16
    state = torch.load(tmp_path / "model.pth", weights_only=True)
    code.model.CNN1DLSTM(**config["architecture"]).load_state_dict(state)


def test_training_is_deterministic_for_a_seed(code: types.SimpleNamespace, tmp_path: Path) -> None:
    runs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert _tiny_run(code, tmp_path / name, "--seed", seed) == 0
        runs.append(torch.load(tmp_path / name / "model.pth", weights_only=True))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def _user_folder(code: types.SimpleNamespace, folder: Path) -> None:
    """12 recordings of 25 s in the three formats train.py accepts."""
    rng = np.random.default_rng(1)
    rows = ["file,label"]
    for i in range(12):
        kind = "normal" if i % 2 == 0 else "af"
        x = code.synthetic.synthesize(kind, 25.0, 200.0, LEADS, rng)
        if i % 3 == 0:
            np.save(folder / f"r{i}.npy", x)
            name = f"r{i}.npy"
        elif i % 3 == 1:
            np.savez(folder / f"r{i}.npz", signals=x)
            name = f"r{i}.npz"
        else:
            name = f"r{i}.csv"
            header = "time_s,i_mV,II_mV,v2_mV"
            lines = [f"{t / 200:.3f},{a:.4f},{b:.4f},{c:.4f}" for t, (a, b, c) in enumerate(x)]
            (folder / name).write_text("# site: test\n" + header + "\n" + "\n".join(lines))
        rows.append(f"{name},{'normal' if kind == 'normal' else 'anomalous'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def test_training_on_a_folder_of_labelled_recordings(
    code: types.SimpleNamespace, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _user_folder(code, data)
    out = tmp_path / "model"
    assert code.train.main(["--out", str(out), "--data", str(data), "--epochs", "1"]) == 0
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    # 12 recordings x 2 whole windows; held-out: 20% of each label, by recording.
    assert config["training"]["train_windows"] + metrics["n"] == 24
    assert metrics["n"] == 2 * 2 * 1  # one recording per label held out
    assert "user recordings (12 files)" in config["training"]["data"]


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: (d / "labels.csv").unlink(), "labels.csv not found"),
        (lambda d: (d / "labels.csv").write_text("name,y\nr0.npy,1\n"), "'file' and 'label'"),
        (
            lambda d: (d / "labels.csv").write_text("file,label\nr0.npy,maybe\n"),
            "line 2: label 'maybe' is not 0/1",
        ),
        (
            lambda d: (d / "labels.csv").write_text("file,label\nmissing.npy,1\n"),
            "line 2: file not found",
        ),
        (lambda d: np.save(d / "r0.npy", np.zeros((5000, 2))), r"shape \[5000, 2\]"),
        (lambda d: np.save(d / "r0.npy", np.zeros((100, 3))), "shorter than one 2000-sample"),
        (lambda d: (d / "r2.csv").write_text("I,II\n1,2\n"), r"lack lead\(s\) \['V2'\]"),
        (
            lambda d: (d / "labels.csv").write_text("file,label\nr0.npy,0\nr1.npz,1\n"),
            "at least 10 recordings",
        ),
    ],
    ids=["no labels", "bad header", "bad label", "missing file", "shape", "short", "lead", "few"],
)
def test_bad_data_folder_fails_with_a_clear_message(
    code: types.SimpleNamespace,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    break_it: Callable[[Path], object],
    message: str,
) -> None:
    _user_folder(code, tmp_path)
    break_it(tmp_path)
    assert code.train.main(["--out", str(tmp_path / "out"), "--data", str(tmp_path)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_user_recordings_at_another_rate_are_resampled(
    code: types.SimpleNamespace, tmp_path: Path
) -> None:
    x = code.synthetic.synthesize("normal", 20.0, 500.0, LEADS, np.random.default_rng(0))
    np.save(tmp_path / "r.npy", x)
    (tmp_path / "labels.csv").write_text("file,label\n" + "r.npy,0\n" * 10 + "r.npy,1\n")
    recordings, labels = code.train.load_user_data(tmp_path, 500.0)
    assert recordings[0].shape == (2, 2000, 3)  # 20 s at 200 Hz
    assert labels.tolist() == [0] * 10 + [1]


def test_a_csv_comment_or_npz_key_gives_the_file_its_own_rate(
    code: types.SimpleNamespace, tmp_path: Path
) -> None:
    x = code.synthetic.synthesize("normal", 20.0, 500.0, LEADS, np.random.default_rng(0))
    lines = [",".join(f"{v:.4f}" for v in row) for row in x]
    (tmp_path / "a.csv").write_text("# sampling_rate_hz: 500\nI,II,V2\n" + "\n".join(lines))
    np.savez(tmp_path / "b.npz", signals=x, sampling_rate_hz=500.0)
    np.save(tmp_path / "c.npy", x[:4000])  # no rate in the file: --data-fs (200 Hz) applies
    rows = ["a.csv,0", "b.npz,1", "c.npy,0"] * 4
    (tmp_path / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    recordings, _ = code.train.load_user_data(tmp_path, 200.0)
    assert [r.shape[0] for r in recordings[:3]] == [2, 2, 2]
