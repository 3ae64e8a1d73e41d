"""A local SageMaker runtime: ``InvokeEndpoint`` over HTTP, running the real handler.

``python -m ecg_scorer.local.endpoint --model-dir DIR --endpoint-name NAME`` serves
``POST /endpoints/<name>/invocations`` the way the SageMaker runtime does, so boto3's
``sagemaker-runtime`` client (pointed here by ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``) works
unchanged. The handler functions ``model_fn``, ``input_fn``, ``predict_fn`` and ``output_fn``
are imported from the module ``inference`` on PYTHONPATH, as the SageMaker inference toolkit
does in the container with the archive's ``code/`` directory, and called in the toolkit's
order and with its conventions:

- the model is loaded once at start (the toolkit's worker initialisation);
- a JSON or CSV body reaches ``input_fn`` decoded to ``str``, any other body as ``bytes``;
- a missing or ``*/*`` Accept becomes ``application/json`` (the toolkit's default accept);
- an error with ``status_code`` and ``message`` (the toolkit's ``BaseInferenceToolkitError``)
  keeps its status; any other exception is a 500.

Errors come back as the SageMaker runtime's, in the shapes of botocore's service model
(``botocore/data/sagemaker-runtime/2017-05-13/service-2.json``), so boto3 raises the same
exceptions as against AWS:

- the model answered 4xx/5xx -> HTTP 424 ``ModelError`` with ``OriginalStatusCode``,
  ``OriginalMessage`` and ``LogStreamArn``. Unlike the toolkit, the original message carries
  no stack trace (it would reach the caller's logs);
- unknown endpoint name -> HTTP 400 ``ValidationError`` "Endpoint X of account Y not found.";
- a body over the serverless payload limit (4 MB) -> HTTP 400 ``ValidationError``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ecg_scorer.local import log_to_stderr

ACCOUNT = "123456789012"
REGION = "us-east-1"
# SageMaker Serverless Inference takes request bodies up to 4 MB.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
# The toolkit decodes these content types to str before input_fn (content_types.UTF8_TYPES).
UTF8_TYPES = ("application/json", "text/csv")
DEFAULT_ACCEPT = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json")
_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")

log = logging.getLogger("ecg_scorer.local.endpoint")


class ModelHandler:
    """The handler functions of one model, loaded as the inference toolkit loads them."""

    def __init__(self, module: Any, model_dir: str) -> None:
        self._input_fn: Callable[..., Any] = module.input_fn
        self._predict_fn: Callable[..., Any] = module.predict_fn
        self._output_fn: Callable[..., Any] = module.output_fn
        self.model = module.model_fn(model_dir)
        self._lock = threading.Lock()

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """input_fn -> predict_fn -> output_fn; returns the response body and content type.
        One request at a time, like one model-server worker."""
        with self._lock:
            return self._invoke(body, content_type, accept)

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


def model_error_body(endpoint_name: str, status: int, message: str) -> dict[str, Any]:
    """SageMaker's ModelError (HTTP 424) for a 4xx/5xx answer of the model container."""
    kind = "client" if status < 500 else "server"
    log_group = f"/aws/sagemaker/Endpoints/{endpoint_name}"
    return {
        "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
        "Message": (
            f'Received {kind} error ({status}) from primary with message "{message}". '
            f"See the log group {log_group} in account {ACCOUNT} for more information."
        ),
        "OriginalStatusCode": status,
        "OriginalMessage": message,
        "LogStreamArn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{log_group}",
    }


def make_handler_class(endpoint_name: str, model: ModelHandler) -> type[BaseHTTPRequestHandler]:
    class InvokeEndpointHandler(BaseHTTPRequestHandler):
        server_version = "LocalSageMakerRuntime"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/ping":  # the container's health check
                self._send(200, b"", "text/plain")
            else:
                self._error(404, "UnknownOperationException", "Unknown operation")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            match = _PATH.match(self.path.split("?", 1)[0])
            if match is None:
                self._error(404, "UnknownOperationException", "Unknown operation")
                return
            name = match["name"]
            if name != endpoint_name:
                self._error(
                    400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found."
                )
                return
            if length > MAX_PAYLOAD_BYTES:
                self._error(
                    400,
                    "ValidationError",
                    f"Request body of {length} bytes exceeds the serverless endpoint's limit "
                    f"of {MAX_PAYLOAD_BYTES} bytes.",
                )
                return
            content_type = self.headers.get("Content-Type") or ""
            accept = self.headers.get("Accept") or ""
            started = time.perf_counter()
            try:
                out, out_type = model.invoke(body, content_type, accept)
            except Exception as e:  # the toolkit answers every handler exception
                status, message = model_error_status(e)
                # Type and status only: messages may quote the request.
                log.warning("handler error %s -> %d", type(e).__name__, status)
                self._json(424, "ModelError", model_error_body(endpoint_name, status, message))
                return
            log.info(
                "invocation %s %d bytes -> %d bytes in %.0f ms",
                content_type,
                length,
                len(out),
                (time.perf_counter() - started) * 1000,
            )
            self._send(200, out, out_type, {"x-Amzn-Invoked-Production-Variant": "AllTraffic"})

        def _error(self, status: int, code: str, message: str) -> None:
            self._json(status, code, {"message": message})

        def _json(self, status: int, code: str, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode("utf-8")
            self._send(status, body, "application/json", {"x-amzn-ErrorType": code})

        def _send(
            self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return InvokeEndpointHandler


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

    # `inference` comes from PYTHONPATH (the archive's code/ dir), as in the container.
    module = importlib.import_module("inference")
    started = time.perf_counter()
    model = ModelHandler(module, str(args.model_dir))
    log.info("model loaded from %s in %.1f s", args.model_dir, time.perf_counter() - started)

    # One thread per connection: clients (boto3) keep connections alive between requests, and
    # a single-threaded server would serve only the first client's connection.
    server = ThreadingHTTPServer(
        (args.host, args.port), make_handler_class(args.endpoint_name, model)
    )
    server.daemon_threads = True
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
