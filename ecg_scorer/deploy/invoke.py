"""Score an ECG file on an endpoint: read it into the model's windows, send, check answers.

Requests stay under the payload limit, and the x-npy request sizing and the answer check
are the Lambda's own (scorer.endpoint), so this tool and the pipeline cannot disagree about
what an endpoint must answer. numpy and the pipeline's modules are imported only when a
file is scored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ecg_scorer.deploy import ToolError
from ecg_scorer.deploy.archive import CONFIG, DEFAULT_MODEL_DIR, REPO
from ecg_scorer.deploy.identity import ARCHIVE_DIR

if TYPE_CHECKING:
    import numpy as np
    from scorer.endpoint import Answer

# Serverless request bodies are capped at 4 MB (4,000,000 bytes keeps clear of both readings
# of "MB"); invoke splits a file's windows into requests by their encoded size.
MAX_REQUEST_BYTES = 4_000_000
JSON = "application/json"
NPY = "application/x-npy"

_RUNTIME_URL = re.compile(
    r"^https://runtime\.sagemaker\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/endpoints/(?P<name>[^/]+)/invocations/?$"
)
_ANY_URL = re.compile(r"^(?P<base>https?://[^/]+)/endpoints/(?P<name>[^/]+)/invocations/?$")


def parse_endpoint(target: str) -> tuple[str, str | None, str | None]:
    """(name, region or None, endpoint_url or None) from a name or a runtime URL."""
    match = _RUNTIME_URL.match(target)
    if match:
        return unquote(match["name"]), match["region"], None
    match = _ANY_URL.match(target)
    if match:
        return unquote(match["name"]), None, match["base"]
    if target.startswith(("http://", "https://")):
        raise ToolError(
            f"{target} is not a runtime URL: expected "
            "https://runtime.sagemaker.<region>.amazonaws.com/endpoints/<name>/invocations"
        )
    return target, None, None


@dataclass(frozen=True)
class Contract:
    """The model's input contract, from its config.json: invoke prepares recordings to it."""

    leads: tuple[str, ...]
    sampling_rate_hz: float
    window_samples: int

    @property
    def channels(self) -> int:
        return len(self.leads)

    @classmethod
    def from_config(cls, config: Any, source: str = CONFIG) -> Contract:
        try:
            return cls(
                tuple(str(lead) for lead in config["leads"]),
                float(config["sampling_rate_hz"]),
                int(config["window_samples"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ToolError(
                f"{source}: no usable leads, sampling_rate_hz and window_samples ({exc!r})"
            ) from exc


def default_model_config() -> Path:
    """Where invoke finds the model's config.json without --model-config: the model folder,
    else the one packaged archive."""
    for folder in (DEFAULT_MODEL_DIR, REPO / DEFAULT_MODEL_DIR):
        if (folder / CONFIG).is_file():
            return folder / CONFIG
    pattern = "*_sagemaker.tar.gz"
    archives = {p.resolve() for d in (ARCHIVE_DIR, REPO / ARCHIVE_DIR) for p in d.glob(pattern)}
    if len(archives) == 1:
        return archives.pop()
    found = f"{len(archives)} archives in {ARCHIVE_DIR}" if archives else f"no {ARCHIVE_DIR}"
    raise ToolError(
        "no model config.json to take the leads, rate and window from: pass --model-config "
        f"(the archive, its model folder or its config.json; found no {DEFAULT_MODEL_DIR / CONFIG} "
        f"and {found}/{pattern})"
    )


def _as_windows(array: Any, source: str, contract: Contract) -> np.ndarray:
    import numpy as np

    shape = (contract.window_samples, contract.channels)
    array = np.asarray(array, dtype=np.float32)
    if array.shape == shape:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != shape:
        raise ValueError(f"{source}: shape {array.shape}")
    return array


def load_windows(path: Path, contract: Contract) -> tuple[np.ndarray, str]:
    """Read an ECG file into float32 windows [N, window, channels]; returns (windows, how).

    The seed JSON ({"signals": [W x C] or [N x W x C]}) and .npy windows are read here;
    any other recording goes through the pipeline's own reader and preparation
    (functions/scorer: readers, prepare), imported only then, to the model's contract.
    """
    import numpy as np

    if not path.is_file():
        raise ToolError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            doc = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ToolError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(doc, dict) and "signals" in doc:
            try:
                return _as_windows(doc["signals"], str(path), contract), "seed-json"
            except ValueError:
                pass  # a whole recording in the pipeline's JSON format: prepare it below
    elif suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
            return _as_windows(array, str(path), contract), "npy"
        except ValueError:
            pass
    return _windows_from_pipeline(path, contract), "pipeline"


def _windows_from_pipeline(path: Path, contract: Contract) -> np.ndarray:
    try:
        from scorer import prepare, readers
    except ImportError as exc:
        raise ToolError(
            f"{path}: not seed JSON or .npy windows, and the pipeline readers "
            f"(functions/scorer) cannot be imported ({exc}); install the project "
            "(pip install -e .) or send [N, window, channels] windows"
        ) from exc
    try:
        recording = readers.read_recording(path.read_bytes(), path.name)
        prepared = prepare.prepare(
            recording, contract.leads, contract.sampling_rate_hz, contract.window_samples
        )
    except Exception as exc:  # RejectedFile and friends: their message says what is wrong
        raise ToolError(f"{path}: cannot be scored: {exc}") from exc
    return _as_windows(prepared.windows, str(path), contract)


def _json_body(windows: np.ndarray) -> bytes:
    signals = windows[0] if len(windows) == 1 else windows
    return json.dumps({"signals": signals.tolist()}).encode()


def request_bodies(
    windows: np.ndarray,
    content_type: str,
    max_payload_bytes: int = MAX_REQUEST_BYTES,
    max_windows: int | None = None,
) -> Iterable[tuple[int, bytes]]:
    """(window count, body) per request, in order: as many windows as fit the payload limit
    (and at most ``max_windows``)."""
    from scorer.endpoint import to_npy, windows_per_call

    if content_type == NPY:
        per_call = windows_per_call(max_payload_bytes, windows[0].nbytes)
        step = min(per_call, max_windows or len(windows))
        for start in range(0, len(windows), step):
            chunk = windows[start : start + step]
            yield len(chunk), to_npy(chunk)
        return
    # JSON's size per window varies with the numbers; the Lambda never sends it, so it is sized
    # here: shrink in proportion until the body fits, then re-check.
    start = 0
    while start < len(windows):
        count = min(len(windows) - start, max_windows or len(windows))
        body = _json_body(windows[start : start + count])
        while len(body) > max_payload_bytes:
            if count == 1:
                raise ToolError(
                    f"one window encodes to {len(body)} bytes as {content_type}, over the "
                    f"{max_payload_bytes}-byte request limit; send {NPY}"
                )
            count = max(1, min(count - 1, int(count * max_payload_bytes / len(body) * 0.98)))
            body = _json_body(windows[start : start + count])
        yield count, body
        start += count


def invoke(
    runtime: Any,
    endpoint_name: str,
    model_version: str,
    windows: np.ndarray,
    content_type: str,
    batch: int | None = None,
) -> list[Answer]:
    """Score windows [N, W, C] on ``endpoint_name``; one answer per window, each checked by
    scorer.endpoint.parse_response (count, probability, model version)."""
    from scorer.endpoint import WrongModel, parse_response
    from scorer.errors import SystemFault

    answers: list[Answer] = []
    for count, body in request_bodies(windows, content_type, max_windows=batch):
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name, ContentType=content_type, Accept=JSON, Body=body
        )
        try:
            answers.extend(parse_response(response["Body"].read(), count, model_version))
        except WrongModel as fault:
            raise ToolError(
                f"invoking {endpoint_name}: {fault}; pass --model-config with the config.json "
                "of the model it serves"
            ) from fault
        except SystemFault as fault:
            raise ToolError(f"invoking {endpoint_name}: {fault}") from fault
    return answers
