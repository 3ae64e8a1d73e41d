"""Start and stop the local stack: moto for S3, SQS and DynamoDB (`aws`), the SageMaker
endpoint (the model container of `model_server` behind `runtime_api`) and the SQS poller that
invokes the function (`poller`), all laid out by template.yaml (`sam_template`) and the
served model's ``config.json``; `artifacts` finds what runs and what fell back."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ecg_scorer.local import HOST, REPO
from ecg_scorer.local.artifacts import Parts, find_parts, what_runs
from ecg_scorer.local.aws import (
    INGEST_PREFIX,
    child_env,
    client_env,
    create_resources,
    local_env,
    moto_version,
    start_moto,
)
from ecg_scorer.local.model_server import ContainerClient, ModelServer, start_model_server
from ecg_scorer.local.processes import free_port, spawn, stop_process, wait_ready
from ecg_scorer.local.runtime_api import make_server, serve_in_thread
from ecg_scorer.local.sam_template import (
    REGION,
    TEMPLATE,
    LambdaSettings,
    LocalNames,
    Resources,
    default_endpoint_name,
    lambda_settings,
    load_template,
)

WORK_DIR = REPO / "build" / "local"
# The packaged model the stack serves: `make` writes it with deploy_model.py package, the same
# bytes `make package` writes (the archive is deterministic), under a name free of versions.
ARCHIVE = WORK_DIR / "model.tar.gz"
ENDPOINT_TIMEOUT_S = 180.0


@dataclass
class LocalStack:
    """A running local stack; `stop` ends everything `start` started."""

    resources: Resources
    lambda_settings: LambdaSettings
    parts: Parts
    endpoint_name: str
    model_dir: Path  # the unpacked archive (what SageMaker puts in /opt/ml/model)
    work_dir: Path
    moto_server: Any = field(repr=False)
    endpoint_url: str = ""
    endpoint_ready_s: float = 0.0
    model_server: ModelServer | None = field(default=None, repr=False)
    runtime_api: ThreadingHTTPServer | None = field(default=None, repr=False)
    endpoint_proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    poller_proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def client_env(self) -> dict[str, str]:
        """Variables for tools talking to this stack (boto3, the aws CLI, ecg-scorer)."""
        return client_env(self.describe())

    def lambda_env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The function's environment: the template's variables plus what Lambda sets."""
        settings = self.lambda_settings
        env = child_env(local_env(self.resources.moto_url, self.endpoint_url))
        env.update(settings.environment)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": settings.function_name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{settings.function_name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": "local/[$LATEST]",
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{settings.runtime}",
                "_HANDLER": settings.handler,
                "TZ": ":UTC",
            }
        )
        env.pop("VIRTUAL_ENV", None)
        env.update(overrides or {})
        return env

    # ---------------------------------------------------------------- the endpoint

    def start_endpoint(self, wait: bool = True) -> None:
        """The model container (or its light stand-in) and the runtime API in front of it.
        The runtime API keeps its port across restarts, so the URL the function was given
        stays valid."""
        if self.parts.real_endpoint:
            self.model_server = start_model_server(self.model_dir, self.work_dir)
            if self.runtime_api is None:
                client = ContainerClient(self.model_server.url)
                self.runtime_api = make_server(self.endpoint_name, client, HOST)
                serve_in_thread(self.runtime_api)
                self.endpoint_url = f"http://{HOST}:{self.runtime_api.server_address[1]}"
        else:
            port = self.endpoint_url.rsplit(":", 1)[1] if self.endpoint_url else str(free_port())
            self.endpoint_url = f"http://{HOST}:{port}"
            args = ["-m", "ecg_scorer.local.endpoint", "--model-dir", str(self.model_dir)]
            args += ["--endpoint-name", self.endpoint_name, "--host", HOST, "--port", port]
            env = child_env({"PYTHONPATH": str(self.model_dir / "code")})
            self.endpoint_proc = spawn(args, env, self._log("endpoint"), self._ready("endpoint"))
        if wait:
            self.wait_endpoint()

    def wait_endpoint(self, timeout: float = ENDPOINT_TIMEOUT_S) -> None:
        if self.model_server is not None:
            self.endpoint_ready_s = self.model_server.wait_ready(timeout)
        else:
            assert self.endpoint_proc is not None
            wait_ready(self.endpoint_proc, self._ready("endpoint"), self._log("endpoint"), timeout)

    def endpoint_exit_code(self) -> int | None:
        """The model container's (or stand-in's) exit code if it stopped, else None."""
        proc = self.model_server.proc if self.model_server else self.endpoint_proc
        return None if proc is None else proc.poll()

    def stop_endpoint(self) -> None:
        if self.model_server is not None:
            self.model_server.stop()
            self.model_server = None
        stop_process(self.endpoint_proc)
        self.endpoint_proc = None

    # ---------------------------------------------------------------- the poller

    def start_poller(
        self,
        overrides: Mapping[str, str] | None = None,
        wait: bool = True,
        timeout: float = 120.0,
        batching_window_s: int | None = None,
    ) -> None:
        """Start the poller; ``overrides`` replace the function's environment variables
        (tests use it to point the function at a missing endpoint), ``batching_window_s``
        the template's MaximumBatchingWindowInSeconds."""
        settings = self.lambda_settings
        if batching_window_s is not None:
            settings = replace(settings, batching_window_s=batching_window_s)
        code = self.parts.function
        args = ["-m", "ecg_scorer.local.poller", "--queue-url", self.resources.queue_url]
        args += ["--python", str(code.python), "--code-dir", str(code.code_dir)]
        args += ["--handler", code.handler, "--function-log", str(self._log("function"))]
        args += ["--timeout", str(settings.timeout_s), "--memory", str(settings.memory_mb)]
        args += ["--batch-size", str(settings.batch_size)]
        args += ["--batching-window", str(settings.batching_window_s)]
        args += ["--max-concurrency", str(settings.max_concurrency)]
        if settings.report_batch_item_failures:
            args.append("--report-batch-item-failures")
        env = self.lambda_env(overrides)
        self.poller_proc = spawn(args, env, self._log("poller"), self._ready("poller"))
        if wait:
            self.wait_poller(timeout)

    def wait_poller(self, timeout: float = 120.0) -> dict[str, Any]:
        assert self.poller_proc is not None
        return wait_ready(self.poller_proc, self._ready("poller"), self._log("poller"), timeout)

    def stop_poller(self) -> None:
        stop_process(self.poller_proc)
        self.poller_proc = None

    def restart_poller(
        self, overrides: Mapping[str, str] | None = None, batching_window_s: int | None = None
    ) -> None:
        self.stop_poller()
        self.start_poller(overrides, batching_window_s=batching_window_s)

    def _log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _ready(self, name: str) -> Path:
        return self.work_dir / f"{name}.ready"

    def stop(self) -> None:
        self.stop_poller()
        self.stop_endpoint()
        if self.runtime_api is not None:
            self.runtime_api.shutdown()
            self.runtime_api.server_close()
            self.runtime_api = None
        if self.moto_server is not None:
            self.moto_server.stop()
            self.moto_server = None

    def describe(self) -> dict[str, Any]:
        """What a user needs to reach the stack (written to the state file by `up`)."""
        return {
            "moto_url": self.resources.moto_url,
            "endpoint_url": self.endpoint_url,
            "endpoint_name": self.endpoint_name,
            "bucket": self.resources.bucket,
            "ingest_prefix": INGEST_PREFIX,
            "queue_url": self.resources.queue_url,
            "dead_letter_queue_url": self.resources.dead_letter_queue_url,
            "table": self.resources.table,
            "region": REGION,
            "logs": str(self.log_dir),
            "runs": what_runs(self.parts, moto_version()),
            "notices": list(self.parts.notices),
        }


def read_model_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is this a model.tar.gz of deploy_model.py?")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def unpack(archive: Path, work_dir: Path) -> Path:
    """The archive unpacked as SageMaker unpacks it into /opt/ml/model (kept while unchanged)."""
    if not archive.is_file():
        raise FileNotFoundError(
            f"{archive} not found: package the model first (make {shown(ARCHIVE)})"
        )
    target = work_dir / "model"
    stamp = work_dir / "model.unpacked-from"
    mark = f"{archive.resolve()}:{archive.stat().st_size}:{archive.stat().st_mtime_ns}"
    if not stamp.is_file() or stamp.read_text(encoding="utf-8") != mark:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        stamp.write_text(mark, encoding="utf-8")
    return target


def start(
    archive: Path,
    work_dir: Path,
    *,
    template_path: Path = TEMPLATE,
    names: LocalNames | None = None,
    visibility_timeout_s: int | None = None,
    with_poller: bool = True,
    light_endpoint: bool = False,
) -> LocalStack:
    """Start moto, create the resources, start the endpoint and the poller.

    Parameters
    ----------
    archive
        The model.tar.gz to serve (``deploy_model.py package``), unpacked under ``work_dir``.
    work_dir
        Where the unpacked model, logs and the children's files go.
    visibility_timeout_s
        Overrides the template's queue visibility timeout (tests and the demo use a short
        one so a retried message comes back within their patience).
    light_endpoint
        Serve the model in one process instead of the toolkit and TorchServe.
    """
    names = names or LocalNames()
    template = load_template(template_path)
    work_dir.mkdir(parents=True, exist_ok=True)
    model_dir = unpack(archive, work_dir)
    config = read_model_config(model_dir)
    endpoint_name = default_endpoint_name(template, config)
    parts = find_parts(template, light_endpoint)
    server, moto_url = start_moto()
    stack: LocalStack | None = None
    try:
        resources = create_resources(moto_url, template, names, visibility_timeout_s)
        settings = lambda_settings(template, names, resources, config, endpoint_name)
        stack = LocalStack(
            resources=resources,
            lambda_settings=settings,
            parts=parts,
            endpoint_name=endpoint_name,
            model_dir=model_dir,
            work_dir=work_dir,
            moto_server=server,
        )
        # The model server and the function's cold start both import heavy libraries (torch;
        # numpy and Powertools): start them together, then wait for both.
        stack.start_endpoint(wait=False)
        if with_poller:
            stack.start_poller(wait=False)
        stack.wait_endpoint()
        if with_poller:
            stack.wait_poller()
        return stack
    except BaseException:
        if stack is not None:
            stack.stop()
        else:
            server.stop()
        raise


def shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path
