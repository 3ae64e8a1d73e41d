"""The smoke prediction of `check`: an unpacked archive's own handler scores two requests.

It loads the archive as SageMaker would, scores one JSON and one x-npy request, and prints
one JSON line (ok, or the member at fault and a fix). Run by path in a fresh interpreter,
``python -P smoke.py MODEL_DIR`` with only MODEL_DIR/code on PYTHONPATH (archive.check_archive
does this), so ``inference`` and ``model`` are the archive's own code, as in the container.
It imports nothing from this project.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch

HANDLER_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn")
SAVE_WEIGHTS = "save only the weights: torch.save(model.state_dict(), 'model.pth')"
SAME_RUN = (
    "package config.json and model.pth from the same training run "
    "(make model, then deploy_model.py package)"
)
RUN_LOCALLY = "run the handler locally with PYTHONPATH=model_code and fix it"


class Refused(Exception):
    """What is wrong, in which member, and how to fix it."""

    def __init__(self, member: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.member, self.message, self.fix = member, message, fix


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:400]


def load_weights(model_dir: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(f"{model_dir}/model.pth", map_location="cpu", weights_only=True)
    except Exception as exc:
        message = "cannot be loaded with torch.load(weights_only=True): " + first_line(exc)
        raise Refused("model.pth", message, SAVE_WEIGHTS) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise Refused("model.pth", "is not a state_dict (a dict of tensors)", SAVE_WEIGHTS)
    return state


def import_handler() -> ModuleType:
    try:
        handler = importlib.import_module("inference")
    except Exception as exc:
        raise Refused(
            "code/inference.py",
            "cannot be imported with code/ on sys.path: " + first_line(exc),
            "import the model module flat (from model import CNN1DLSTM) and use only packages "
            "of the PyTorch 2.0.0 container or code/requirements.txt",
        ) from exc
    for name in HANDLER_FUNCTIONS:
        if not callable(getattr(handler, name, None)):
            raise Refused(
                "code/inference.py", f"defines no {name}", f"define {name} (PyTorch toolkit)"
            )
    return handler


def load_model(handler: ModuleType, model_dir: str, state: dict[str, torch.Tensor]) -> Any:
    """The handler's model_fn result, its network checked against the weights' shapes."""
    try:
        model = handler.model_fn(model_dir)
    except Exception as exc:
        # The archive's own model_fn judges its config.json (required keys included) and
        # whether it rebuilds a network that model.pth fits.
        message = "refused by the archive's own model_fn: " + first_line(exc)
        raise Refused("config.json", message, SAME_RUN) from exc
    net = network(model)
    if net is not None:
        want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if want != got:
            missing = sorted(set(want) - set(got))[:3]
            extra = sorted(set(got) - set(want))[:3]
            shapes = [k for k in set(want) & set(got) if want[k] != got[k]][:3]
            message = (
                f"architecture does not match model.pth (missing {missing}, "
                f"unexpected {extra}, shape differs {shapes})"
            )
            raise Refused("config.json", message, SAME_RUN)
    return model


def network(model: Any) -> torch.nn.Module | None:
    """The torch network behind model_fn's result (itself, or its ``net``), if there is one."""
    net = model if isinstance(model, torch.nn.Module) else getattr(model, "net", None)
    return net if isinstance(net, torch.nn.Module) else None


def window_shape(config: dict[str, Any]) -> tuple[int, int]:
    try:
        return int(config["window_samples"]), int(config["channels"])
    except (KeyError, TypeError, ValueError) as exc:
        message = "gives no window_samples and channels: " + first_line(exc)
        raise Refused("config.json", message, "write it with model_code/train.py") from exc


def predict(handler: ModuleType, model: Any, body: bytes, content_type: str) -> Any:
    """input_fn -> predict_fn -> output_fn, the answer decoded from JSON."""
    data = handler.input_fn(body, content_type)
    result = handler.output_fn(handler.predict_fn(data, model), "application/json")
    if isinstance(result, tuple):  # (body, content type)
        result = result[0]
    if isinstance(result, bytes | bytearray):
        result = result.decode()
    return json.loads(result)


def smoke(model_dir: str) -> dict[str, Any]:
    """Score one JSON window and two x-npy windows of noise; the report of a passing archive."""
    state = load_weights(model_dir)
    handler = import_handler()
    model = load_model(handler, model_dir, state)
    with open(f"{model_dir}/config.json") as handle:
        config = json.load(handle)
    shape = window_shape(config)
    rng = np.random.default_rng(0)
    try:
        one_body = json.dumps({"signals": rng.normal(0, 0.2, shape).tolist()}).encode()
        one = predict(handler, model, one_body, "application/json")
        buffer = io.BytesIO()
        np.save(buffer, rng.normal(0, 0.2, (2, *shape)).astype(np.float32))
        two = predict(handler, model, buffer.getvalue(), "application/x-npy")
    except Exception as exc:
        message = "smoke prediction input_fn -> predict_fn -> output_fn failed: " + first_line(exc)
        raise Refused("code/inference.py", message, RUN_LOCALLY) from exc
    if isinstance(one, list) and len(one) == 1:
        one = one[0]
    p = one.get("probability") if isinstance(one, dict) else None
    if not isinstance(p, int | float) or not math.isfinite(p) or not 0.0 <= p <= 1.0:
        raise Refused(
            "code/inference.py",
            f"smoke prediction gave no probability in [0, 1] (got {one!r:.200})",
            'output_fn must answer {"prediction": p, "probability": p} with 0 <= p <= 1',
        )
    if not isinstance(two, list) or len(two) != 2:
        raise Refused(
            "code/inference.py",
            "a 2-window application/x-npy request did not answer a list of 2",
            "answer one object per window, in order, for N > 1",
        )
    configured = config.get("model_version")
    version = one.get("model_version")
    if version is not None and version != configured:
        raise Refused(
            "code/inference.py",
            f"answers model_version {version!r} but config.json says {configured!r}",
            "read model_version from config.json",
        )
    # Trainable parameters when the network is at hand (state_dict also holds BatchNorm buffers).
    net = network(model)
    tensors = net.parameters() if net is not None else state.values()
    return {
        "ok": True,
        "probability": p,
        "label": one.get("label"),
        "model_version": version,
        "parameters": sum(int(v.numel()) for v in tensors),
    }


def main(argv: Sequence[str]) -> int:
    """Print the report (exit 0 whatever it says: the report carries the verdict)."""
    try:
        report = smoke(argv[1])
    except Refused as refused:
        report = {"ok": False, "member": refused.member, "message": refused.message}
        report["fix"] = refused.fix
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
