"""The Lambda runtime inside one local execution environment, run by the function's Python.

``<python> bootstrap.py <fd>``: put ``$LAMBDA_TASK_ROOT`` (the ``sam build`` artifact) first on
``sys.path`` as the Python runtime does, import ``$_HANDLER`` once (the cold start), then run
one invocation per event the poller sends over the socket ``fd``: call the handler with a
context like the runtime's, and answer with its return value serialised as the runtime does
(JSON; ``Decimal`` as a number) or with the error it raised.

Messages are one JSON object per line: ``{"ready": true}`` or ``{"init_error": ...}`` first,
then ``{"event": ..., "timeout_s": ...}`` in and ``{"response": ...}`` / ``{"error": ...}`` out.
This file runs under the template's runtime (Python 3.12), never under the dev venv's
packages: standard library only, and nothing of ecg_scorer.
"""

import importlib
import json
import os
import signal
import socket
import sys
import time
import traceback
import uuid
from decimal import Decimal
from typing import Any


class LambdaContext:
    """The attributes and method of the Lambda Python runtime's context object."""

    def __init__(self, timeout_s: float) -> None:
        self._deadline = time.monotonic() + timeout_s
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.aws_request_id = str(uuid.uuid4())
        region = os.environ.get("AWS_REGION", "us-east-1")
        account = os.environ.get("LOCAL_ACCOUNT_ID", "123456789012")
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:{account}:function:{self.function_name}"
        )
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _json_default(value: Any) -> Any:
    # The runtime's marshaller turns Decimal into a number; anything else it cannot serialise
    # fails the invocation (Runtime.MarshalError).
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message, default=_json_default).encode("utf-8") + b"\n")


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    # Ctrl-C in a terminal reaches the whole process group: the poller decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path[0] = os.environ["LAMBDA_TASK_ROOT"]  # instead of this script's folder
    module_name, _, attr = os.environ["_HANDLER"].rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), attr)
    except BaseException as e:  # an init error, as Lambda reports it
        _send(sock, {"init_error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()})
        return 1
    _send(sock, {"ready": True, "python": sys.version.split()[0], "executable": sys.executable})
    requests = sock.makefile("rb")
    for line in requests:
        request = json.loads(line)
        context = LambdaContext(float(request["timeout_s"]))
        try:
            response = handler(request["event"], context)
            reply = {"response": json.loads(json.dumps(response, default=_json_default))}
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
        sys.stdout.flush()
        sys.stderr.flush()
        _send(sock, reply)
    return 0  # the poller closed the socket


if __name__ == "__main__":
    sys.exit(main())
