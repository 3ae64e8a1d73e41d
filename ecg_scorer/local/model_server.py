"""The real model container without Docker: the SageMaker PyTorch inference toolkit and
TorchServe serving the unpacked model.tar.gz, and the HTTP client the runtime API calls it with.

The serving venv (``.venv-serving``, built by ``make``) holds what SageMaker's PyTorch inference
image holds for this: ``sagemaker-pytorch-inference``, ``sagemaker-inference``, ``torchserve``,
torch and numpy; Java runs TorchServe's frontend. `container_entrypoint` starts it as the
image's entrypoint does, with ``SAGEMAKER_BASE_DIR`` at a folder holding ``model/``, every
address on 127.0.0.1, and its temporary files, logs and metrics under the stack's folder.

Ready means every worker of the model is READY on TorchServe's management API: ``/ping``
answers 200 while workers still fail to load (a missing package, a broken ``model_fn``), and
invocations then hang.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ecg_scorer.local import HOST, REPO
from ecg_scorer.local.aws import child_env
from ecg_scorer.local.processes import free_port, stop_process, tail
from ecg_scorer.local.runtime_api import INVOCATION_TIMEOUT_S, TIMED_OUT, ModelAnswer

SERVING_VENV = REPO / ".venv-serving"
ENTRYPOINT = Path(__file__).with_name("container_entrypoint.py")
MODEL_NAME = "model"  # the toolkit registers the one model under this name
# One worker, as a serverless endpoint's container has for its one concurrent request.
WORKERS = 1
READY_TIMEOUT_S = 180.0


def missing_prerequisites(venv: Path = SERVING_VENV) -> list[str]:
    """What this machine lacks to run the real serving stack (empty when nothing)."""
    missing = []
    if not (venv / "bin" / "python").is_file():
        missing.append(f"the serving venv {venv.name}/ (make {venv.name}/.installed)")
    java_home = os.environ.get("JAVA_HOME")
    if not (shutil.which("java") or (java_home and Path(java_home, "bin", "java").is_file())):
        missing.append("Java 17 for TorchServe (e.g. apt-get install openjdk-17-jre-headless)")
    return missing


@dataclass
class ModelServer:
    """A running toolkit + TorchServe; `stop` ends it and its workers."""

    proc: subprocess.Popen[bytes]
    url: str
    log_dir: Path
    started: float = field(default_factory=time.monotonic)

    def workers(self) -> list[dict[str, object]]:
        """The model's workers as TorchServe's management API describes them."""
        conn = http.client.HTTPConnection(self.url.removeprefix("http://"), timeout=5)
        try:
            conn.request("GET", f"/models/{MODEL_NAME}")
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            return []
        described = json.loads(body)
        return list(described[0].get("workers") or []) if described else []

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Seconds from start until every worker is READY; RuntimeError with the model log's
        tail if TorchServe exits or the workers are not ready in time."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the model server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                workers = self.workers()
            except (OSError, ValueError, http.client.HTTPException):
                workers = []  # not listening yet
            if workers and all(w.get("status") == "READY" for w in workers):
                return time.monotonic() - self.started
            if time.monotonic() > deadline:
                states = [str(w.get("status")) for w in workers] or ["none registered"]
                self.stop()
                raise RuntimeError(
                    f"the model's workers are not READY after {timeout:.0f} s "
                    f"({', '.join(states)}); last lines of the model log:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_tail(self, lines: int = 25) -> str:
        model_log = self.log_dir / "model_log.log"
        return tail(model_log if model_log.exists() else self.log_dir / "container.log", lines)

    def stop(self) -> None:
        stop_process(self.proc, timeout=20.0)


def start_model_server(
    model_dir: Path, work_dir: Path, venv: Path = SERVING_VENV, workers: int = WORKERS
) -> ModelServer:
    """Start the toolkit + TorchServe on ``model_dir`` (an unpacked model.tar.gz) with its
    files under ``work_dir``; returns at once (`ModelServer.wait_ready` waits)."""
    work_dir = work_dir.resolve()  # the container runs in it: every path must be absolute
    base = work_dir / "ml"  # stands for /opt/ml: the toolkit serves $SAGEMAKER_BASE_DIR/model
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    (base / "model").symlink_to(model_dir.resolve(), target_is_directory=True)
    tmp, log_dir = work_dir / "tmp", work_dir / "logs" / "model-server"
    for folder in (tmp, log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://{HOST}:{port}"
    env = child_env(
        {
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "SAGEMAKER_BASE_DIR": str(base),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
            # The toolkit writes 0.0.0.0 into TorchServe's config; TorchServe's environment
            # variables (enable_envvars_config=true in the toolkit's config) take precedence.
            "TS_INFERENCE_ADDRESS": url,
            "TS_MANAGEMENT_ADDRESS": url,
            "TS_METRICS_ADDRESS": f"http://{HOST}:{free_port()}",
            "LOCAL_TS_CONFIG_FILE": str(work_dir / "sagemaker-ts.properties"),
            "TEMP": str(tmp),  # TorchServe's java.io.tmpdir: model copies, worker sockets
            "TMPDIR": str(tmp),  # Python's: TorchServe's pid file
            "LOG_LOCATION": str(log_dir),
            "METRICS_LOCATION": str(log_dir),
            "PYTHONUNBUFFERED": "1",
            # One intra-op thread per worker: the machine's cores are shared with the rest of
            # the stack (and, here, other jobs); more threads only contend.
            "OMP_NUM_THREADS": "1",
        }
    )
    env.pop("VIRTUAL_ENV", None)
    log = log_dir / "container.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "python"), str(ENTRYPOINT)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # TorchServe and its workers join this session
            cwd=work_dir,  # the toolkit's model store is ./.sagemaker/ts/models
        )
    return ModelServer(proc, url, log_dir)


class ContainerClient:
    """Calls the container's ``POST /invocations`` as SageMaker does: Content-Type and Accept
    passed through, at most `INVOCATION_TIMEOUT_S` for the answer. One connection per thread
    (the runtime API serves each client connection in its own thread)."""

    def __init__(self, url: str, timeout_s: float = INVOCATION_TIMEOUT_S) -> None:
        self._address = url.removeprefix("http://")
        self._timeout_s = timeout_s
        self._local = threading.local()

    def __call__(self, body: bytes, content_type: str, accept: str) -> ModelAnswer:
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        for attempt in (1, 2):  # a kept-alive connection the container closed: reconnect once
            try:
                conn = self._connection()
                conn.request("POST", "/invocations", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except TimeoutError:
                self._drop()
                return ModelAnswer(0, TIMED_OUT.encode("utf-8"))
            except (ConnectionError, http.client.HTTPException):
                self._drop()
                if attempt == 2:
                    return ModelAnswer(0, b"the model container did not answer")
                continue
            if response.will_close:
                self._drop()
            return ModelAnswer(response.status, data, response.getheader("Content-Type"))
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._address, timeout=self._timeout_s)
            conn.connect()
            # Headers and body go in separate writes; don't let Nagle hold the body.
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None
