"""The SageMaker runtime's ``InvokeEndpoint`` over HTTP, in front of a model backend.

``POST /endpoints/<name>/invocations`` is checked and answered the way the SageMaker runtime
does, so boto3's ``sagemaker-runtime`` client (pointed here by
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``) works unchanged and raises the same exceptions. Errors
take the shapes of botocore's service model (``botocore/data/sagemaker-runtime/2017-05-13``):

- the model container answered 4xx/5xx -> HTTP 424 ``ModelError`` with ``OriginalStatusCode``,
  ``OriginalMessage`` and ``LogStreamArn``; it gave no answer in time -> the same with status
  0 (SageMaker's "invocation timed out while waiting for a response from container").
  ``OriginalMessage`` is the container's message without the Python traceback the inference
  toolkit appends (the traceback goes to the log; a caller's logs never get it);
- unknown endpoint name -> HTTP 400 ``ValidationError`` "Endpoint X of account Y not found.";
- a body over the serverless payload limit (4 MB) -> HTTP 400 ``ValidationError``, before the
  container sees it (SageMaker checks the limit itself).

The backend is any callable ``(body, content_type, accept) -> ModelAnswer``: the real model
container over HTTP (`model_server`) or the handler loaded in this process (`endpoint`).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ecg_scorer.local.sam_template import ACCOUNT, REGION

# SageMaker Serverless Inference takes request bodies up to 4 MB.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024
# SageMaker waits this long for the container's answer to one invocation.
INVOCATION_TIMEOUT_S = 60.0
TIMED_OUT = (
    "Your invocation timed out while waiting for a response from container primary. Review "
    "the latency metrics for each container in Amazon CloudWatch, resolve the issue, and try "
    "again."
)
_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
_TRACEBACK = "Traceback (most recent call last):"
_MAX_MESSAGE_CHARS = 1000

log = logging.getLogger("ecg_scorer.local.runtime_api")


@dataclass(frozen=True)
class ModelAnswer:
    """What the model container answered: its status (0: no answer), body and content type."""

    status: int
    body: bytes
    content_type: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


Backend = Callable[[bytes, str, str], ModelAnswer]


def original_message(answer: ModelAnswer) -> str:
    """The container's error message as SageMaker relays it, minus the inference toolkit's
    traceback (``"<message>\\n<traceback>"``); the status phrase when the body is empty (as
    TorchServe's 413 for a body over its own limit)."""
    text = answer.body.decode("utf-8", errors="replace")
    text = text.split(_TRACEBACK, 1)[0].strip()
    if not text:
        try:
            text = HTTPStatus(answer.status).phrase
        except ValueError:
            text = "no answer from the model container"
    return text[:_MAX_MESSAGE_CHARS]


def model_error_body(endpoint_name: str, status: int, message: str) -> dict[str, Any]:
    """SageMaker's ModelError (HTTP 424) for a 4xx/5xx answer (or none) of the container."""
    kind = "client" if 400 <= status < 500 else "server"
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


def make_handler_class(endpoint_name: str, backend: Backend) -> type[BaseHTTPRequestHandler]:
    class InvokeEndpointHandler(BaseHTTPRequestHandler):
        server_version = "LocalSageMakerRuntime"
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in separate writes: without this, Nagle's algorithm holds
            # the body until the client's delayed ACK (~40 ms on every response).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self) -> None:
            if self.path == "/ping":
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
                message = f"Endpoint {name} of account {ACCOUNT} not found."
                self._error(400, "ValidationError", message)
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
            started = time.perf_counter()
            answer = backend(body, content_type, self.headers.get("Accept") or "")
            elapsed_ms = (time.perf_counter() - started) * 1000
            if not answer.ok:
                # Status only: the container's message may quote the request.
                log.warning("model error %d after %.0f ms", answer.status, elapsed_ms)
                error = model_error_body(endpoint_name, answer.status, original_message(answer))
                self._json(424, "ModelError", error)
                return
            log.info(
                "invocation %s %d bytes -> %d bytes in %.0f ms",
                content_type,
                length,
                len(answer.body),
                elapsed_ms,
            )
            headers = {"x-Amzn-Invoked-Production-Variant": "AllTraffic"}
            self._send(200, answer.body, answer.content_type or "application/json", headers)

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


def make_server(
    endpoint_name: str, backend: Backend, host: str, port: int = 0
) -> ThreadingHTTPServer:
    """The runtime API server (not yet serving). One thread per connection: clients (boto3)
    keep connections alive, and one thread would serve only the first client's."""
    server = ThreadingHTTPServer((host, port), make_handler_class(endpoint_name, backend))
    server.daemon_threads = True
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="runtime-api", daemon=True)
    thread.start()
    return thread
