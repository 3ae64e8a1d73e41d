"""The SageMaker handler (model_code/inference.py): input_fn -> predict_fn -> output_fn."""

from __future__ import annotations

import importlib
import io
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
MODEL_DIR = REPO / "models" / "demo"  # the committed demo model
JSON, NPY = "application/json", "application/x-npy"
LEADS = ["I", "II", "V2"]


@pytest.fixture
def tiny_model_dir(model_code: types.SimpleNamespace, tmp_path: Path) -> Path:
    """An untrained model written through train.py's own save path (config + state_dict)."""
    torch.manual_seed(0)
    train = model_code.train
    net = train.CNN1DLSTM(**train.ARCHITECTURE)
    config = train.identify(net, train.make_config({"data": "none (test)"}), "untrained")
    train.save(tmp_path, net, config, {})
    return tmp_path


@pytest.fixture
def trained(model_code: types.SimpleNamespace) -> Any:
    """The committed demo model."""
    return model_code.inference.model_fn(str(MODEL_DIR))


def ecgs(model_code: types.SimpleNamespace, kinds: list[str], seed: int = 0) -> np.ndarray:
    """[N, 2000, 3] float64 mV synthetic ECGs, leads I, II, V2 at 200 Hz."""
    rng = np.random.default_rng(seed)
    return np.stack([model_code.synthetic.synthesize(k, 10.0, 200.0, LEADS, rng) for k in kinds])


def as_json(x: np.ndarray) -> str:
    return json.dumps({"signals": x.tolist()})


def as_npy(x: np.ndarray, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, **kwargs)
    return buf.getvalue()


ENCODERS: dict[str, Callable[[np.ndarray], str | bytes]] = {JSON: as_json, NPY: as_npy}


def score(
    model_code: types.SimpleNamespace, model: Any, body: str | bytes, content_type: str
) -> Any:
    """What a client gets back: the parsed JSON response."""
    inf = model_code.inference
    out, out_type = inf.output_fn(inf.predict_fn(inf.input_fn(body, content_type), model), JSON)
    assert out_type == JSON
    return json.loads(out)


@pytest.mark.parametrize("content_type", [JSON, NPY])
@pytest.mark.parametrize("shape", [(2000, 3), (1, 2000, 3), (5, 2000, 3)])
def test_round_trip_answers_one_object_per_ecg(
    model_code: types.SimpleNamespace,
    tiny_model_dir: Path,
    content_type: str,
    shape: tuple[int, ...],
) -> None:
    model = model_code.inference.model_fn(str(tiny_model_dir))
    x = ecgs(model_code, ["normal"] * (shape[0] if len(shape) == 3 else 1)).reshape(shape)
    body = ENCODERS[content_type](x.astype(np.float32) if content_type == NPY else x)

    answer = score(model_code, model, body, content_type)

    results = answer if isinstance(answer, list) else [answer]
    assert isinstance(answer, list) == (len(shape) == 3 and shape[0] > 1)
    assert len(results) == (shape[0] if len(shape) == 3 else 1)
    for r in results:
        assert r["prediction"] == r["probability"]
        assert 0.0 <= r["probability"] <= 1.0
        assert r["label"] == ("anomalous" if r["probability"] > r["threshold"] else "normal")
        assert r["threshold"] == 0.5
        assert r["model_version"] == model.config["model_version"]
        assert r["model_version"].startswith("cnn1d-lstm-untrained-")


def test_json_and_npy_give_the_same_probabilities(
    model_code: types.SimpleNamespace, tiny_model_dir: Path
) -> None:
    model = model_code.inference.model_fn(str(tiny_model_dir))
    x = ecgs(model_code, ["normal", "af", "pvc"])
    via_json = score(model_code, model, as_json(x), JSON)
    via_npy = score(model_code, model, as_npy(x.astype(np.float32)), NPY)
    assert [r["probability"] for r in via_json] == pytest.approx(
        [r["probability"] for r in via_npy], abs=1e-5
    )


def test_bytes_json_body_and_charset_parameter_are_accepted(
    model_code: types.SimpleNamespace, tiny_model_dir: Path
) -> None:
    model = model_code.inference.model_fn(str(tiny_model_dir))
    body = as_json(ecgs(model_code, ["normal"])[0]).encode()
    answer = score(model_code, model, body, "application/json; charset=utf-8")
    assert 0.0 <= answer["probability"] <= 1.0


def test_threshold_comes_from_config(
    model_code: types.SimpleNamespace, tiny_model_dir: Path
) -> None:
    config_path = tiny_model_dir / "config.json"
    config = json.loads(config_path.read_text())
    x = as_npy(ecgs(model_code, ["normal"]).astype(np.float32))
    labels = []
    for threshold in (0.0, 1.0):  # every probability is above 0 and below 1
        config["threshold"] = threshold
        config_path.write_text(json.dumps(config))
        labels.append(
            score(model_code, model_code.inference.model_fn(str(tiny_model_dir)), x, NPY)["label"]
        )
    assert labels == ["anomalous", "normal"]


def test_probabilities_are_calibrated_by_the_configured_temperature(
    model_code: types.SimpleNamespace, tiny_model_dir: Path
) -> None:
    x = ecgs(model_code, ["normal", "af", "pvc"]).astype(np.float32)
    model = model_code.inference.model_fn(str(tiny_model_dir))
    logits = model.net(torch.from_numpy(model_code.inference.normalise(x))).detach().numpy()
    for temperature in (1.0, 4.0):
        _edit_config(
            tiny_model_dir,
            lambda c, t=temperature: c.update(
                calibration={"method": "temperature", "temperature": t}
            ),
        )
        answer = score(
            model_code, model_code.inference.model_fn(str(tiny_model_dir)), as_npy(x), NPY
        )
        expected = 1 / (1 + np.exp(-logits / temperature))
        assert [r["probability"] for r in answer] == pytest.approx(expected.tolist(), abs=1e-6)


def test_a_config_without_calibration_is_served_uncalibrated(
    model_code: types.SimpleNamespace, tiny_model_dir: Path
) -> None:
    x = ecgs(model_code, ["af"]).astype(np.float32)
    before = score(model_code, model_code.inference.model_fn(str(tiny_model_dir)), as_npy(x), NPY)
    _edit_config(tiny_model_dir, lambda c: c.pop("calibration"))
    after = score(model_code, model_code.inference.model_fn(str(tiny_model_dir)), as_npy(x), NPY)
    assert after["probability"] == pytest.approx(before["probability"])  # the fixture's T is 1


def test_committed_probabilities_are_not_saturated(
    model_code: types.SimpleNamespace, trained: Any
) -> None:
    # Ranking by probability is meaningful only if probabilities are not all 0 or 1.
    kinds = ["normal", "af", "pvc", "wide_qrs", "st_elevation", "bradycardia"] * 4
    answer = score(
        model_code, trained, as_npy(ecgs(model_code, kinds, seed=11).astype(np.float32)), NPY
    )
    probs = np.array([r["probability"] for r in answer])
    assert ((probs > 0.01) & (probs < 0.99)).mean() > 0.25


def test_served_model_gives_the_fold_10_figures_metrics_json_claims(
    model_code: types.SimpleNamespace, trained: Any
) -> None:
    ptbxl = REPO.parent / "shared" / "data" / "ptbxl"
    if not ptbxl.is_dir():
        pytest.skip(f"PTB-XL records not found at {ptbxl}")
    metrics = json.loads((MODEL_DIR / "metrics.json").read_text())["test"]
    test = model_code.train_data.load_ptbxl(ptbxl).test
    answer = score(model_code, trained, as_npy(test.x), NPY)
    y, top = test.per_recording(np.array([r["probability"] for r in answer]))
    flagged = top > trained.config["threshold"]
    assert len(y) == metrics["n"]
    assert model_code.train.roc_auc(y, top) == pytest.approx(metrics["roc_auc"], abs=1e-3)
    assert flagged[y == 1].mean() == pytest.approx(metrics["sensitivity"], abs=1e-3)
    assert (~flagged[y == 0]).mean() == pytest.approx(metrics["specificity"], abs=1e-3)


# Kinds PTB-XL's non-NORM records show (conduction delay, ST change, fast rhythm); AF and
# PVCs are too rare in its 400 training records for the real-data model to learn them.
@pytest.mark.parametrize("kind", ["wide_qrs", "st_elevation", "tachycardia"])
def test_trained_model_separates_normal_from_anomaly(
    model_code: types.SimpleNamespace, trained: Any, kind: str
) -> None:
    # Seed-format JSON, as existing clients send it, one ECG per request.
    normal = [
        score(model_code, trained, as_json(x), JSON)
        for x in ecgs(model_code, ["normal"] * 5, seed=7)
    ]
    anomal = [
        score(model_code, trained, as_json(x), JSON) for x in ecgs(model_code, [kind] * 5, seed=7)
    ]
    p_normal = np.median([r["probability"] for r in normal])
    p_anomal = np.median([r["probability"] for r in anomal])
    assert p_normal < 0.5 < p_anomal
    assert [r["label"] for r in normal].count("normal") >= 4
    assert [r["label"] for r in anomal].count("anomalous") >= 4


def test_trained_model_scores_a_many_window_npy_batch_in_order(
    model_code: types.SimpleNamespace, trained: Any
) -> None:
    kinds = ["normal", "wide_qrs", "normal", "tachycardia", "normal", "st_elevation"]
    answer = score(
        model_code, trained, as_npy(ecgs(model_code, kinds, seed=3).astype(np.float32)), NPY
    )
    assert [r["label"] for r in answer] == [
        "normal" if k == "normal" else "anomalous" for k in kinds
    ]


# ------------------------------------------------------------------ bad requests
SECRET = 123.456789  # a sample value that must never appear in an error message


def _good(n: int = 1) -> np.ndarray:
    x = np.zeros((n, 2000, 3), dtype=np.float32)
    x[:, ::7] = SECRET
    return x


def _with(value: float) -> np.ndarray:
    x = _good(3)
    x[1, 10, 2] = value
    return x


def _json_with(value: float) -> str:
    x = _good(3).astype(np.float64)
    x[1, 10, 2] = value
    return as_json(x)


def _object_npy() -> bytes:
    return as_npy(np.array([{"a": SECRET}], dtype=object), allow_pickle=True)


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, signals=_good())
    return buf.getvalue()


BAD_REQUESTS: list[tuple[str, str | None, Callable[[], str | bytes], int, str]] = [
    ("unknown content type", "text/csv", lambda: b"1,2,3", 415, "'text/csv' is not supported"),
    ("no content type", None, lambda: as_npy(_good()), 415, "use application/json or"),
    ("empty JSON body", JSON, lambda: "", 400, "empty request body"),
    ("empty npy body", NPY, lambda: b"", 400, r"empty request body.*\[N, 2000, 3\]"),
    ("broken JSON", JSON, lambda: '{"signals": [[1, 2', 400, "not valid JSON"),
    ("JSON nested deeply", JSON, lambda: "[" * 100_000 + "]" * 100_000, 400, "nested too deeply"),
    ("JSON without signals", JSON, lambda: json.dumps({"ecg": []}), 400, '"signals"'),
    ("JSON list at top", JSON, lambda: json.dumps([[1, 2, 3]]), 400, '"signals"'),
    (
        "JSON wrong shape",
        JSON,
        lambda: json.dumps({"signals": np.zeros((2000, 2)).tolist()}),
        400,
        r"expected shape \[N, 2000, 3\] or \[2000, 3\].*received \[2000, 2\]",
    ),
    (
        "JSON too short",
        JSON,
        lambda: json.dumps({"signals": np.zeros((1000, 3)).tolist()}),
        400,
        r"received \[1000, 3\]",
    ),
    (
        "JSON ragged",
        JSON,
        lambda: json.dumps({"signals": [[1.0, 2.0, 3.0], [1.0, 2.0]]}),
        400,
        "ragged lists or non-numeric",
    ),
    (
        "JSON strings",
        JSON,
        lambda: json.dumps({"signals": [[str(SECRET), "x", "y"]] * 2000}),
        400,
        "non-numeric",
    ),
    (
        "JSON null",
        JSON,
        lambda: json.dumps({"signals": [[None, 0.0, 0.0]] + [[0.0, 0.0, 0.0]] * 1999}),
        400,
        "NaN or infinite.*null counts as NaN",
    ),
    ("npy NaN", NPY, lambda: as_npy(_with(np.nan)), 400, r"NaN or infinite values in 1 of 3 .*1"),
    ("npy inf", NPY, lambda: as_npy(_with(np.inf)), 400, "NaN or infinite"),
    ("npy huge", NPY, lambda: as_npy(_with(3e7)), 400, r"1 of 3 windows \(first: index 1\)"),
    ("JSON beyond float32", JSON, lambda: _json_with(1e300), 400, "NaN or infinite values in 1"),
    ("npy int16", NPY, lambda: as_npy(_good().astype(np.int16)), 400, "dtype int16"),
    ("npy complex", NPY, lambda: as_npy(_good().astype(np.complex64)), 400, "dtype complex64"),
    ("npy object array", NPY, _object_npy, 400, "object arrays are not accepted"),
    ("npz archive", NPY, _npz, 400, r"\.npz archive"),
    ("not npy", NPY, lambda: b"hello, world", 400, r"not a \.npy file"),
    ("truncated npy", NPY, lambda: as_npy(_good())[:500], 400, "truncated or corrupt"),
    ("npy as text", NPY, lambda: "\x93NUMPY", 400, "binary"),
    (
        "npy transposed",
        NPY,
        lambda: as_npy(np.zeros((3, 2000), np.float32)),
        400,
        r"received \[3, 2000\] \(looks transposed",
    ),
    ("npy 1-D", NPY, lambda: as_npy(np.zeros(6000, np.float32)), 400, r"received \[6000\]"),
    ("no windows", NPY, lambda: as_npy(np.zeros((0, 2000, 3), np.float32)), 400, "no ECG"),
    (
        "too many windows",
        NPY,
        lambda: as_npy(np.zeros((257, 2000, 3), np.float16)),
        413,
        "257 windows; at most 256 per request",
    ),
]


@pytest.mark.parametrize(
    ("content_type", "make_body", "status", "match"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
def test_bad_request_gets_4xx_with_what_was_expected(
    model_code: types.SimpleNamespace,
    content_type: str | None,
    make_body: Callable[[], str | bytes],
    status: int,
    match: str,
) -> None:
    with pytest.raises(model_code.inference.RequestError, match=match) as err:
        model_code.inference.input_fn(make_body(), content_type)
    assert err.value.status_code == status
    assert err.value.phrase == err.value.message
    assert str(SECRET) not in err.value.message
    # No chained numpy/json exception either: the toolkit sends the traceback in the body.
    assert err.value.__cause__ is None
    assert err.value.__suppress_context__ or err.value.__context__ is None


def test_oversized_body_is_refused_before_decoding(
    model_code: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECG_MAX_BODY_BYTES", "10000")
    with pytest.raises(model_code.inference.RequestError, match="limit is 10000 bytes") as err:
        model_code.inference.input_fn(as_npy(_good()), NPY)
    assert err.value.status_code == 413


def test_default_body_limit_admits_the_biggest_sagemaker_payload(
    model_code: types.SimpleNamespace,
) -> None:
    # InvokeEndpoint allows 6 MB: 256 float32 windows would be 6.1 MB; 250 fit in 6 MB.
    x = np.zeros((250, 2000, 3), np.float32)
    assert model_code.inference.input_fn(as_npy(x), NPY).shape == (250, 2000, 3)


@pytest.mark.parametrize(
    "accept", [JSON, "application/json; charset=utf-8", "*/*", "text/html, application/*", None]
)
def test_output_answers_json_when_accepted(
    model_code: types.SimpleNamespace, tiny_model_dir: Path, accept: str | None
) -> None:
    inf = model_code.inference
    model = inf.model_fn(str(tiny_model_dir))
    prediction = inf.predict_fn(inf.input_fn(as_npy(_good(2)), NPY), model)
    body, content_type = inf.output_fn(prediction, accept)
    # Labelled JSON whatever the Accept said (the toolkit would echo the Accept otherwise).
    assert content_type == JSON
    assert len(json.loads(body)) == 2


@pytest.mark.parametrize("accept", ["text/csv", "application/x-npy", "text/html, image/png"])
def test_output_refuses_unsupported_accept_with_406(
    model_code: types.SimpleNamespace, tiny_model_dir: Path, accept: str
) -> None:
    inf = model_code.inference
    prediction = inf.predict_fn(
        inf.input_fn(as_npy(_good()), NPY), inf.model_fn(str(tiny_model_dir))
    )
    with pytest.raises(inf.RequestError, match="answers application/json") as err:
        inf.output_fn(prediction, accept)
    assert err.value.status_code == 406


# ------------------------------------------------------------------ model_fn
def test_model_fn_loads_weights_only_state_dict(
    model_code: types.SimpleNamespace, tiny_model_dir: Path
) -> None:
    model = model_code.inference.model_fn(str(tiny_model_dir))
    assert not model.net.training
    assert model.config["leads"] == LEADS and model.window_samples == 2000
    saved = torch.load(tiny_model_dir / "model.pth", weights_only=True)
    for name, tensor in model.net.state_dict().items():
        assert torch.equal(tensor, saved[name])


class _Payload:
    """Anything that is not a tensor: weights_only loading must refuse to unpickle it."""


def test_model_fn_refuses_pickled_objects_in_weights(
    model_code: types.SimpleNamespace, tiny_model_dir: Path
) -> None:
    torch.save({"payload": _Payload()}, tiny_model_dir / "model.pth")
    with pytest.raises(Exception, match=r"(?i)weights_only|unpickl"):
        model_code.inference.model_fn(str(tiny_model_dir))


def _edit_config(directory: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c["architecture"].update(lstm_hidden=32), "model.pth does not fit the arch"),
        (lambda c: c["architecture"].update(conv_channels=[8, 8, 8, 8]), "does not fit"),
        (lambda c: c["architecture"].update(kernel=3), "does not match CNN1DLSTM's param"),
        (lambda c: c.pop("threshold"), "lacks threshold"),
        (lambda c: c.update(leads=["I", "II"]), "2 lead names but channels=3"),
        (lambda c: c.update(architecture=[1, 2]), "'architecture' must be an object"),
        (lambda c: c.update(calibration={"method": "platt"}), "calibration must be"),
        (lambda c: c["calibration"].update(temperature=0), "temperature must be a positive"),
        (lambda c: c["calibration"].update(temperature="2"), "temperature must be a positive"),
    ],
    ids=[
        "hidden size",
        "conv widths",
        "unknown parameter",
        "no threshold",
        "leads",
        "arch",
        "unknown calibration",
        "zero temperature",
        "text temperature",
    ],
)
def test_model_fn_names_config_mismatch(
    model_code: types.SimpleNamespace,
    tiny_model_dir: Path,
    edit: Callable[[dict[str, Any]], None],
    match: str,
) -> None:
    _edit_config(tiny_model_dir, edit)
    with pytest.raises(model_code.inference.ModelConfigError, match=match):
        model_code.inference.model_fn(str(tiny_model_dir))


@pytest.mark.parametrize("missing", ["config.json", "model.pth"])
def test_model_fn_names_the_missing_file(
    model_code: types.SimpleNamespace, tiny_model_dir: Path, missing: str
) -> None:
    (tiny_model_dir / missing).unlink()
    with pytest.raises(FileNotFoundError, match=missing):
        model_code.inference.model_fn(str(tiny_model_dir))


def test_model_fn_uses_the_configured_thread_count(
    model_code: types.SimpleNamespace, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    monkeypatch.setenv("ECG_TORCH_THREADS", "1")
    try:
        model_code.inference.model_fn(str(tiny_model_dir))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ error class
def test_error_class_is_the_toolkits_when_it_is_installed(
    model_code: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the container, the toolkit maps BaseInferenceToolkitError to the HTTP status."""

    class BaseInferenceToolkitError(Exception):
        def __init__(self, status_code: int, message: str, phrase: str) -> None:
            self.status_code, self.message, self.phrase = status_code, message, phrase
            super().__init__(status_code, message, phrase)

    package = types.ModuleType("sagemaker_inference")
    errors = types.ModuleType("sagemaker_inference.errors")
    errors.BaseInferenceToolkitError = BaseInferenceToolkitError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sagemaker_inference", package)
    monkeypatch.setitem(sys.modules, "sagemaker_inference.errors", errors)
    # Run the module again, now that the toolkit is importable (the fixture forgets it after).
    inference = importlib.reload(model_code.inference)
    with pytest.raises(BaseInferenceToolkitError) as err:
        inference.input_fn(b"x", "text/plain")
    assert err.value.status_code == 415
