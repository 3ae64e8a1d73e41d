"""The light endpoint: the model's handler loaded in this process, behind the runtime API.

``python -m ecg_scorer.local.endpoint --model-dir DIR --endpoint-name NAME`` serves
``POST /endpoints/<name>/invocations`` (`runtime_api`) with ``model_fn``, ``input_fn``,
``predict_fn`` and ``output_fn`` imported from the module ``inference`` on PYTHONPATH (the
archive's ``code/``), called in the SageMaker inference toolkit's order and with its
conventions, but without the toolkit and TorchServe:

- the model is loaded once at start (the toolkit's worker initialisation);
- a JSON or CSV body reaches ``input_fn`` decoded to ``str``, any other body as ``bytes``;
- a missing or ``*/*`` Accept becomes ``application/json`` (the toolkit's default accept);
- ``output_fn`` may return ``(body, content type)``; a bare body is labelled with the Accept;
- an error with ``status_code`` and ``message`` (the toolkit's ``BaseInferenceToolkitError``)
  keeps its status; any other exception is a 500.

The local stack serves the real toolkit and TorchServe (`model_server`); this one starts in a
second and stands in where Java is missing, in tests that need an endpoint but not the
serving stack, and as the baseline of ``benchmarks/bench_local_stack.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from ecg_scorer.local import log_to_stderr
from ecg_scorer.local.runtime_api import ModelAnswer, make_server

# The toolkit decodes these content types to str before input_fn (content_types.UTF8_TYPES).
UTF8_TYPES = ("application/json", "text/csv")
DEFAULT_ACCEPT = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json")
# One worker on a shared 2-core machine: more intra-op threads only contend with the stack.
TORCH_THREADS = 1

log = logging.getLogger("ecg_scorer.local.endpoint")


class ModelHandler:
    """The handler functions of one model, loaded as the inference toolkit loads them."""

    def __init__(self, module: Any, model_dir: str) -> None:
        self._input_fn: Callable[..., Any] = module.input_fn
        self._predict_fn: Callable[..., Any] = module.predict_fn
        self._output_fn: Callable[..., Any] = module.output_fn
        self.model = module.model_fn(model_dir)
        self._lock = threading.Lock()

    def __call__(self, body: bytes, content_type: str, accept: str) -> ModelAnswer:
        """input_fn -> predict_fn -> output_fn, one request at a time like one worker."""
        with self._lock:
            try:
                out, out_type = self._invoke(body, content_type, accept)
            except Exception as e:  # the toolkit answers every handler exception
                status, message = model_error_status(e)
                log.warning("handler error %s -> %d", type(e).__name__, status)
                return ModelAnswer(status, message.encode("utf-8"))
        return ModelAnswer(200, out, out_type)

    def _invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        if not accept or accept == "*/*":
            accept = DEFAULT_ACCEPT
        data: str | bytes = body.decode("utf-8") if content_type in UTF8_TYPES else body
        result = self._output_fn(
            self._predict_fn(self._input_fn(data, content_type), self.model), accept
        )
        response_type = accept
        if isinstance(result, tuple):  # (body, content type), as the toolkit allows
            result, response_type = result
        if isinstance(result, str):
            result = result.encode("utf-8")
        return bytes(result), response_type


def model_error_status(error: BaseException) -> tuple[int, str]:
    """The status and message the toolkit would answer for an exception from the handler."""
    status = getattr(error, "status_code", None)
    message = getattr(error, "message", None)
    if isinstance(status, int) and 400 <= status < 600:
        return status, str(message if message is not None else error)
    return int(HTTPStatus.INTERNAL_SERVER_ERROR), str(error)


def _exit_with_parent(parent: int) -> None:
    """Stop serving when the process that started us is gone (e.g. it was killed)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--endpoint-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, help="written with the port once serving")
    args = parser.parse_args(argv)
    log_to_stderr(log, "endpoint")
    log_to_stderr(logging.getLogger("ecg_scorer.local.runtime_api"), "endpoint")

    import torch

    torch.set_num_threads(TORCH_THREADS)
    # `inference` comes from PYTHONPATH (the archive's code/ dir), as in the container.
    module = importlib.import_module("inference")
    started = time.perf_counter()
    model = ModelHandler(module, str(args.model_dir))
    log.info("model loaded from %s in %.1f s", args.model_dir, time.perf_counter() - started)

    server = make_server(args.endpoint_name, model, args.host, args.port)
    port = server.server_address[1]
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}), encoding="utf-8")
        tmp.replace(args.ready_file)
    log.info("serving endpoint %s on http://%s:%d", args.endpoint_name, args.host, port)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
