"""SageMaker PyTorch serving handler for the CNN1D-LSTM ECG model.

The toolkit calls ``model_fn`` once per worker, then for every request
``input_fn -> predict_fn -> output_fn``.

Requests (contract 1 in the design):

- ``application/json``: ``{"signals": [...]}`` with shape ``[2000, 3]`` or ``[N, 2000, 3]``
  (10 s at 200 Hz, leads I, II, V2 in that order, raw mV).
- ``application/x-npy``: the same array as a ``.npy`` body, float32 or float64, loaded with
  ``allow_pickle=False``.

The response (``application/json``) is one object ``{"prediction", "probability", "label",
"threshold", "model_version"}`` for one ECG, or a list of such objects in request order for
N > 1. A bad request raises :class:`RequestError`, which the toolkit turns into a 4xx
response carrying the message; messages never contain the request's values.

Runs in the SageMaker PyTorch 2.0.0 / Python 3.10 container, where ``code/`` is on
``sys.path`` (hence the flat ``from model import ...``).
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import CNN1DLSTM

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.pth"
JSON = "application/json"
NPY = "application/x-npy"
# SageMaker refuses InvokeEndpoint bodies over 6 MB (4 MB on serverless), so anything much
# bigger did not come through SageMaker; refusing it before decoding bounds memory.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
DEFAULT_STD_FLOOR_MV = 0.01
# Largest magnitude accepted: far beyond any ECG in mV (or uV), far below float32 overflow.
MAX_ABS_VALUE = 1e6
# Windows per forward pass: bounds activation memory for big requests.
CHUNK = 64
REQUIRED_CONFIG_KEYS = (
    "model_version",
    "window_samples",
    "channels",
    "leads",
    "sampling_rate_hz",
    "threshold",
    "max_windows_per_request",
    "architecture",
)

try:  # In the SageMaker container the toolkit maps this class to the HTTP status.
    # Absent outside the container: the Makefile's 3.10 mypy run must not fail on it.
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # Locally (tests, local stack): same constructor and attributes.

    class _ToolkitError(Exception):  # type: ignore[no-redef]
        """Stand-in for ``sagemaker_inference.errors.BaseInferenceToolkitError``."""

        def __init__(self, status_code: int, message: str, phrase: str) -> None:
            self.status_code = status_code
            self.message = message
            self.phrase = phrase
            super().__init__(status_code, message, phrase)


class RequestError(_ToolkitError):
    """A client's mistake: ``status_code`` (4xx) and a message saying what was expected.

    The toolkit sends ``status_code`` with ``phrase`` as the reason and ``message`` in the
    body, so both carry the same text.
    """

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code, message, message)

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


class ModelConfigError(ValueError):
    """``config.json`` and ``model.pth`` do not describe a loadable model."""


@dataclass
class LoadedModel:
    """What ``model_fn`` returns: the network in eval mode and its contract."""

    net: CNN1DLSTM
    config: dict[str, Any]

    @property
    def window_samples(self) -> int:
        return int(self.config["window_samples"])

    @property
    def channels(self) -> int:
        return int(self.config["channels"])

    @property
    def threshold(self) -> float:
        return float(self.config["threshold"])

    @property
    def temperature(self) -> float:
        """Calibration: probabilities are ``sigmoid(logit / temperature)`` (1 without it)."""
        calibration = self.config.get("calibration")
        return float(calibration["temperature"]) if calibration else 1.0

    @property
    def std_floor(self) -> float:
        norm = self.config.get("normalisation")
        if isinstance(norm, dict):
            return float(norm.get("std_floor_mv", DEFAULT_STD_FLOOR_MV))
        return DEFAULT_STD_FLOOR_MV


# What input_fn checks against; model_fn replaces it with the loaded config, so a request
# is judged by the contract of the model actually served.
_contract: dict[str, Any] = {
    "window_samples": 2000,
    "channels": 3,
    "leads": ["I", "II", "V2"],
    "sampling_rate_hz": 200,
    "max_windows_per_request": 256,
}


def normalise(x: np.ndarray, std_floor: float = DEFAULT_STD_FLOOR_MV) -> np.ndarray:
    """Z-score each window and each lead over time; the model was trained on this.

    Parameters
    ----------
    x : numpy.ndarray
        ``[N, T, C]`` in mV.
    std_floor : float
        Smallest standard deviation divided by (mV), so a flat or disconnected lead
        stays near zero instead of amplifying its noise.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    return ((x - mean) / np.maximum(std, np.float32(std_floor))).astype(np.float32, copy=False)


def _torch_threads() -> int:
    # Several model-server workers may share the instance; give each an equal share of
    # the cores instead of letting every worker use all of them (oversubscription).
    explicit = os.environ.get("ECG_TORCH_THREADS")
    if explicit:
        return max(1, int(explicit))
    workers = int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "1") or 1)
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def load_config(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``config.json`` in ``model_dir``."""
    path = Path(model_dir) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{CONFIG_NAME} not found in {model_dir}: the model archive "
            f"must hold {CONFIG_NAME} beside {WEIGHTS_NAME}"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelConfigError(f"{path} is not valid JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(config, dict):
        raise ModelConfigError(f"{path} must hold a JSON object")
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in config]
    if missing:
        raise ModelConfigError(f"{path} lacks {', '.join(missing)}; retrain with train.py")
    arch = config["architecture"]
    if not isinstance(arch, dict):
        raise ModelConfigError(f"{path}: 'architecture' must be an object of hyper-parameters")
    if len(config["leads"]) != int(config["channels"]):
        raise ModelConfigError(
            f"{path}: {len(config['leads'])} lead names but channels={config['channels']}"
        )
    channels = int(config["channels"])
    if int(arch.get("in_channels", channels)) != channels:
        raise ModelConfigError(
            f"{path}: architecture.in_channels={arch.get('in_channels')} but "
            f"channels={config['channels']}"
        )
    _check_calibration(config.get("calibration"), path)
    return config


def _check_calibration(calibration: Any, path: Path) -> None:
    """Only temperature scaling is known; anything else would silently mis-scale answers."""
    if calibration is None:
        return
    if not isinstance(calibration, dict) or calibration.get("method") != "temperature":
        raise ModelConfigError(
            f'{path}: calibration must be {{"method": "temperature", "temperature": T}}'
        )
    t = calibration.get("temperature")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < float("inf"):
        raise ModelConfigError(f"{path}: calibration temperature must be a positive number")


def build_model(config: dict[str, Any]) -> CNN1DLSTM:
    """The network described by ``config['architecture']`` (random weights)."""
    try:
        return CNN1DLSTM(**config["architecture"])
    except TypeError as e:
        raise ModelConfigError(
            f"{CONFIG_NAME} 'architecture' does not match CNN1DLSTM's parameters: {e}"
        ) from e


def model_fn(model_dir: str) -> LoadedModel:
    """Rebuild the network from ``config.json`` and load ``model.pth`` (a ``state_dict``).

    Parameters
    ----------
    model_dir : str
        Folder holding ``config.json`` and ``model.pth`` (``/opt/ml/model`` in SageMaker).

    Returns
    -------
    LoadedModel
        Network in eval mode on CPU, plus its config.
    """
    global _contract
    torch.set_num_threads(_torch_threads())
    config = load_config(model_dir)
    net = build_model(config)
    weights = Path(model_dir) / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{WEIGHTS_NAME} not found in {model_dir}")
    # weights_only: a state_dict is tensors only; never unpickle arbitrary objects.
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ModelConfigError(
            f"{WEIGHTS_NAME} does not fit the architecture in {CONFIG_NAME} ({e}); package "
            f"the {CONFIG_NAME} that train.py wrote with these weights"
        ) from e
    net.eval()
    _contract = config
    logger.info("loaded %s", config["model_version"])
    return LoadedModel(net=net, config=config)


def _media_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()


def _max_body_bytes() -> int:
    return int(os.environ.get("ECG_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


def _expected_shape() -> str:
    w, c = int(_contract["window_samples"]), int(_contract["channels"])
    leads = ", ".join(_contract["leads"])
    rate = _contract["sampling_rate_hz"]
    return f"[N, {w}, {c}] or [{w}, {c}] (time x leads {leads} at {rate} Hz, in mV)"


# Decoding errors are re-raised "from None": the toolkit puts the traceback in the response
# body, and a chained numpy/json message can quote the client's values.
def _decode_json(body: str | bytes) -> np.ndarray:
    try:
        doc = json.loads(body)
    except UnicodeDecodeError:
        raise RequestError(400, "body is not UTF-8 encoded JSON") from None
    except RecursionError:
        raise RequestError(400, "JSON is nested too deeply; signals have 2 or 3 levels") from None
    except json.JSONDecodeError as e:
        # e.msg and the position never contain the document itself.
        raise RequestError(
            400, f"body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    if not isinstance(doc, dict) or "signals" not in doc:
        raise RequestError(
            400,
            f'JSON body must be an object {{"signals": ...}} with signals of shape '
            f"{_expected_shape()}",
        )
    try:
        # float64 parses JSON numbers exactly; None (null) becomes NaN and fails below.
        return np.asarray(doc["signals"], dtype=np.float64)
    except (ValueError, TypeError, RecursionError):
        raise RequestError(
            400,
            f"signals must be numbers in equal-length nested lists of shape "
            f"{_expected_shape()}; found ragged lists or non-numeric values",
        ) from None


def _decode_npy(body: str | bytes) -> np.ndarray:
    if isinstance(body, str):
        raise RequestError(400, f"{NPY} body must be binary .npy bytes, not text")
    if body[:4] == b"PK\x03\x04":
        raise RequestError(400, "got an .npz archive; send a single array as .npy")
    if body[:6] != b"\x93NUMPY":
        raise RequestError(400, f"body is not a .npy file (send numpy.save output as {NPY})")
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise RequestError(
                400, "object arrays are not accepted; send float32 or float64 values"
            ) from None
        raise RequestError(400, "body is not a readable .npy file (truncated or corrupt)") from None
    except (OSError, EOFError):
        raise RequestError(400, "body is not a readable .npy file (truncated or corrupt)") from None
    if not isinstance(arr, np.ndarray):
        raise RequestError(400, "body is not a single .npy array")
    return arr


def input_fn(request_body: str | bytes | bytearray, request_content_type: str | None) -> np.ndarray:
    """Decode and validate a request into float32 ``[N, 2000, 3]`` mV.

    Parameters
    ----------
    request_body : str or bytes
        The body (the toolkit passes JSON as ``str``, other types as ``bytes``).
    request_content_type : str
        ``application/json`` or ``application/x-npy`` (parameters such as charset ignored).

    Returns
    -------
    numpy.ndarray
        float32 ``[N, window_samples, channels]``; a single ECG becomes ``N = 1``.

    Raises
    ------
    RequestError
        415 unknown content type; 413 body too large or too many windows; 400 empty body,
        bad JSON or .npy, non-numeric values, wrong shape, NaN or infinite values.
    """
    media = _media_type(request_content_type)
    if media not in (JSON, NPY):
        shown = media[:60] or "none"
        raise RequestError(415, f"content type {shown!r} is not supported; use {JSON} or {NPY}")
    if isinstance(request_body, (bytearray, memoryview)):
        request_body = bytes(request_body)
    if request_body is None or len(request_body) == 0:
        raise RequestError(400, f"empty request body; send an ECG of shape {_expected_shape()}")
    limit = _max_body_bytes()
    if len(request_body) > limit:
        raise RequestError(
            413,
            f"request body is {len(request_body)} bytes; the limit is {limit} bytes: "
            f"send fewer windows per request ({NPY} float32 is the most compact)",
        )

    arr = _decode_json(request_body) if media == JSON else _decode_npy(request_body)

    if arr.dtype.kind != "f":
        # Integer arrays are usually raw ADC counts, not mV: refuse rather than guess a gain.
        raise RequestError(
            400, f"array dtype {arr.dtype.name} is not accepted; send float32 or float64 mV"
        )
    w, c = int(_contract["window_samples"]), int(_contract["channels"])
    if arr.ndim == 2 and arr.shape == (w, c):
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (w, c):
        hint = ""
        if arr.shape[-2:] == (c, w):
            hint = " (looks transposed: put time first, leads last)"
        raise RequestError(
            400, f"expected shape {_expected_shape()}; received {list(arr.shape)}{hint}"
        )
    n = arr.shape[0]
    if n == 0:
        raise RequestError(400, f"request holds no ECG; expected {_expected_shape()}")
    max_windows = int(_contract["max_windows_per_request"])
    if n > max_windows:
        raise RequestError(
            413,
            f"request holds {n} windows; at most {max_windows} per request: "
            "split it into several requests",
        )
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: refused
        arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr).all(axis=(1, 2))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        listed = ", ".join(str(i) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise RequestError(
            400,
            f"NaN or infinite values in {bad.size} of {n} windows (index {listed}); "
            "fill or drop gaps before sending (JSON null counts as NaN)",
        )
    # The z-score makes the scale irrelevant to the model, but sums of squares of huge
    # values overflow float32 and would turn into NaN probabilities.
    huge = np.abs(arr).max(axis=(1, 2)) > MAX_ABS_VALUE
    if huge.any():
        raise RequestError(
            400,
            f"{int(huge.sum())} of {n} windows (first: index {int(np.flatnonzero(huge)[0])}) "
            f"hold values beyond +/-{MAX_ABS_VALUE:g}; send mV",
        )
    return arr


def predict_fn(input_data: np.ndarray, model: LoadedModel) -> list[dict[str, Any]]:
    """Score windows: normalise per window and lead, run the network, calibrate, label.

    Parameters
    ----------
    input_data : numpy.ndarray
        ``[N, window_samples, channels]`` from :func:`input_fn`.
    model : LoadedModel
        From :func:`model_fn`.

    Returns
    -------
    list of dict
        One result per window, in order.
    """
    x = normalise(input_data, model.std_floor)
    probs: list[float] = []
    with torch.no_grad():
        for start in range(0, x.shape[0], CHUNK):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + CHUNK]))
            probs.extend(torch.sigmoid(model.net(batch) / model.temperature).tolist())
    threshold = model.threshold
    version = str(model.config["model_version"])
    return [
        {
            "prediction": p,
            "probability": p,
            "label": "anomalous" if p > threshold else "normal",
            "threshold": threshold,
            "model_version": version,
        }
        for p in probs
    ]


def output_fn(prediction: list[dict[str, Any]], accept: str | None) -> tuple[str, str]:
    """Serialise to JSON: one object for one ECG, a list for several.

    Returns ``(body, "application/json")``: the toolkit labels a bare body with the request's
    Accept header (``text/csv, application/json`` would come back as that content type), a
    ``(body, content_type)`` tuple with the type given.

    Raises
    ------
    RequestError
        406 when ``accept`` allows no JSON.
    """
    accepted = [_media_type(part) for part in (accept or "").split(",")]
    if not any(a in ("", "*/*", "application/*", JSON) for a in accepted):
        shown = (accept or "")[:60]
        raise RequestError(406, f"cannot answer in {shown!r}; this endpoint answers {JSON}")
    body: Any = prediction[0] if len(prediction) == 1 else prediction
    return json.dumps(body), JSON
