"""Start and stop the local stack: moto for S3, SQS and DynamoDB (`aws`), the local SageMaker
endpoint and the SQS poller that runs the Lambda handler, all laid out by template.yaml
(`sam_template`) and the model's ``config.json``."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ecg_scorer.local import HOST, REPO
from ecg_scorer.local.aws import (
    INGEST_PREFIX,
    child_env,
    client_env,
    create_resources,
    local_env,
    start_moto,
)
from ecg_scorer.local.processes import free_port, spawn, stop_process, wait_ready
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

BUILD = REPO / "build"
WORK_DIR = BUILD / "local"
ARCHIVE = REPO / "sagemaker_models" / "cnn1d_lstm_ecg_v1_sagemaker.tar.gz"
MODEL_DIR = BUILD / "model"
CODE_DIR = REPO / "model_code"


@dataclass
class LocalStack:
    """A running local stack; `stop` ends everything `start` started."""

    resources: Resources
    lambda_settings: LambdaSettings
    endpoint_name: str
    endpoint_url: str
    model_dir: Path
    code_dir: Path
    work_dir: Path
    moto_server: Any = field(repr=False)
    endpoint_proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    poller_proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def client_env(self) -> dict[str, str]:
        """Variables for tools talking to this stack (boto3, the aws CLI, ecg-scorer)."""
        return client_env(self.describe())

    def lambda_env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The poller's environment: the Lambda's variables plus what the runtime sets."""
        settings = self.lambda_settings
        env = child_env(local_env(self.resources.moto_url, self.endpoint_url))
        env.update(settings.environment)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": settings.function_name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{settings.function_name}",
                "_HANDLER": settings.handler,
                # The Lambda zip is functions/ (SAM CodeUri): import scorer from there.
                "PYTHONPATH": str(REPO / "functions"),
            }
        )
        env.update(overrides or {})
        return env

    def start_endpoint(self, wait: bool = True, timeout: float = 120.0) -> None:
        """Start the endpoint server on the stack's endpoint port (kept across restarts, so
        the URL the Lambda was given stays valid)."""
        port = self.endpoint_url.rsplit(":", 1)[1]
        args = ["-m", "ecg_scorer.local.endpoint", "--model-dir", str(self.model_dir)]
        args += ["--endpoint-name", self.endpoint_name, "--host", HOST, "--port", port]
        env = child_env({"PYTHONPATH": str(self.code_dir)})
        self.endpoint_proc = spawn(args, env, self._log("endpoint"), self._ready("endpoint"))
        if wait:
            self.wait_endpoint(timeout)

    def wait_endpoint(self, timeout: float = 120.0) -> None:
        assert self.endpoint_proc is not None
        wait_ready(self.endpoint_proc, self._ready("endpoint"), self._log("endpoint"), timeout)

    def _log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _ready(self, name: str) -> Path:
        return self.work_dir / f"{name}.ready"

    def stop_endpoint(self) -> None:
        stop_process(self.endpoint_proc)
        self.endpoint_proc = None

    def start_poller(
        self,
        overrides: Mapping[str, str] | None = None,
        wait: bool = True,
        timeout: float = 60.0,
        batching_window_s: int | None = None,
    ) -> None:
        """Start the poller; ``overrides`` replace Lambda environment variables (tests use it
        to point the function at a missing endpoint), ``batching_window_s`` the template's
        MaximumBatchingWindowInSeconds."""
        settings = self.lambda_settings
        if batching_window_s is not None:
            settings = replace(settings, batching_window_s=batching_window_s)
        args = ["-m", "ecg_scorer.local.poller", "--queue-url", self.resources.queue_url]
        args += ["--function-name", settings.function_name, "--handler", settings.handler]
        args += ["--timeout", str(settings.timeout_s), "--memory", str(settings.memory_mb)]
        args += ["--batch-size", str(settings.batch_size)]
        args += ["--batching-window", str(settings.batching_window_s)]
        if settings.report_batch_item_failures:
            args.append("--report-batch-item-failures")
        env = self.lambda_env(overrides)
        self.poller_proc = spawn(args, env, self._log("poller"), self._ready("poller"))
        if wait:
            self.wait_poller(timeout)

    def wait_poller(self, timeout: float = 60.0) -> None:
        assert self.poller_proc is not None
        wait_ready(self.poller_proc, self._ready("poller"), self._log("poller"), timeout)

    def stop_poller(self) -> None:
        stop_process(self.poller_proc)
        self.poller_proc = None

    def restart_poller(
        self, overrides: Mapping[str, str] | None = None, batching_window_s: int | None = None
    ) -> None:
        self.stop_poller()
        self.start_poller(overrides, batching_window_s=batching_window_s)

    def stop(self) -> None:
        self.stop_poller()
        self.stop_endpoint()
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
        }


def read_model_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build the model with `make model`")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def start(
    model_dir: Path,
    code_dir: Path,
    work_dir: Path,
    *,
    template_path: Path = TEMPLATE,
    names: LocalNames | None = None,
    visibility_timeout_s: int | None = None,
    with_poller: bool = True,
) -> LocalStack:
    """Start moto, create the resources, start the endpoint and the poller.

    Parameters
    ----------
    model_dir
        Directory with ``model.pth`` and ``config.json`` (an unpacked model.tar.gz or
        build/model).
    code_dir
        Directory with ``inference.py`` and ``model.py`` (the archive's ``code/`` or
        model_code/); it becomes the endpoint's PYTHONPATH as in the container.
    work_dir
        Where logs and the children's ready files go.
    visibility_timeout_s
        Overrides the template's queue visibility timeout (tests and the demo use a short
        one so a retried message comes back within their patience).
    """
    names = names or LocalNames()
    template = load_template(template_path)
    config = read_model_config(model_dir)
    endpoint_name = default_endpoint_name(template, config)
    work_dir.mkdir(parents=True, exist_ok=True)
    server, moto_url = start_moto()
    stack: LocalStack | None = None
    try:
        resources = create_resources(moto_url, template, names, visibility_timeout_s)
        settings = lambda_settings(template, names, resources, config, endpoint_name)
        stack = LocalStack(
            resources=resources,
            lambda_settings=settings,
            endpoint_name=endpoint_name,
            endpoint_url=f"http://{HOST}:{free_port()}",
            model_dir=model_dir,
            code_dir=code_dir,
            work_dir=work_dir,
            moto_server=server,
        )
        # Both children import heavy libraries (torch; numpy and Powertools): start them
        # together, then wait for both.
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


def model_source(
    archive: Path = ARCHIVE, work_dir: Path = WORK_DIR, model_dir: Path | None = None
) -> tuple[Path, Path, str]:
    """(model dir, code dir, description): ``model_dir`` with model_code/ when given, else the
    packaged model.tar.gz when it exists, unpacked as SageMaker does (code/ becomes the
    handler's PYTHONPATH), else build/model with model_code/."""
    if model_dir is not None:
        return model_dir, CODE_DIR, f"{model_dir} with model_code/"
    if archive.is_file():
        target = work_dir / "model"
        stamp = target / ".unpacked-from"
        mark = f"{archive.stat().st_size}:{archive.stat().st_mtime_ns}"
        if not stamp.is_file() or stamp.read_text(encoding="utf-8") != mark:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
            stamp.write_text(mark, encoding="utf-8")
        return target, target / "code", f"{shown(archive)} (unpacked)"
    return MODEL_DIR, CODE_DIR, f"{shown(MODEL_DIR)} with model_code/"


def shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path
