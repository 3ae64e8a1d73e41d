"""Find what the local stack runs, and say what is real and what stands in for AWS.

Real, when this machine has them (``make`` builds all three; CI has them):

- the function: the ``sam build`` artifact (``.aws-sam/build/<function>``) run by the
  template's runtime, Python 3.12 from ``.venv-lambda`` (made from pyenv's or the system's
  ``python3.12``, with the AWS SDK the Lambda runtime provides);
- the endpoint: the packaged model.tar.gz served by the SageMaker PyTorch inference toolkit
  and TorchServe from ``.venv-serving``, which needs Java.

Where one is missing, the stack does not refuse: it falls back, and says so loudly in every
output (`notices`): the function then runs ``functions/`` from the dev venv's Python (same
code and pinned packages, not the deployed package or Python version); the endpoint runs the
handler in one process (`endpoint`), without the toolkit or TorchServe. The end-to-end test
does not fall back: it fails, naming what to install.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_scorer.local import REPO
from ecg_scorer.local.function import FunctionCode
from ecg_scorer.local.model_server import SERVING_VENV, missing_prerequisites
from ecg_scorer.local.sam_template import score_function

LAMBDA_VENV = REPO / ".venv-lambda"
SAM_BUILD = REPO / ".aws-sam" / "build"


@dataclass
class Parts:
    """What one local stack runs, and the notices to show for what fell back."""

    function: FunctionCode
    real_endpoint: bool
    notices: list[str] = field(default_factory=list)


def venv_python_version(venv: Path) -> str | None:
    """The Python version a venv was made with (its pyvenv.cfg), None if there is none."""
    cfg = venv / "pyvenv.cfg"
    if not (venv / "bin" / "python").exists() or not cfg.is_file():
        return None
    match = re.search(r"^version(?:_info)?\s*=\s*([\d.]+)", cfg.read_text(), re.MULTILINE)
    return match[1] if match else None


def function_code(template: Mapping[str, Any]) -> tuple[FunctionCode, str | None]:
    """The function to run, and a notice when it is not the SAM artifact on its runtime."""
    logical_id, props, glob = score_function(template)
    runtime = str(props.get("Runtime") or glob.get("Runtime") or "")
    handler = str(props.get("Handler") or glob.get("Handler"))
    wanted = runtime.removeprefix("python")
    artifact = SAM_BUILD / logical_id
    source = REPO / str(props.get("CodeUri") or glob.get("CodeUri") or "functions/")
    version = venv_python_version(LAMBDA_VENV)
    why = None
    if version is None or not version.startswith(wanted + "."):
        why = f"no {runtime} for the function ({LAMBDA_VENV.name}/ needs python{wanted})"
    elif not (artifact / handler.split(".")[0]).is_dir():
        why = f"no sam build artifact in {artifact.relative_to(REPO)}"
    elif _newest_mtime(source) > (SAM_BUILD / "template.yaml").stat().st_mtime:
        why = f"the sam build artifact is older than {source.relative_to(REPO)}/"
    if why is None:
        code = FunctionCode(
            LAMBDA_VENV / "bin" / "python",
            artifact,
            handler,
            f"the sam build artifact {artifact.relative_to(REPO)} on Python {version} "
            f"(the template's {runtime})",
            True,
        )
        return code, None
    here = ".".join(map(str, sys.version_info[:3]))
    code = FunctionCode(
        Path(sys.executable),
        source,
        handler,
        f"{source.relative_to(REPO)}/ on the dev venv's Python {here}",
        False,
    )
    notice = (
        f"NOT the deployed function: {why}; running {code.description} instead. "
        "Build it with `make sam-build` (needs Python 3.12, e.g. `pyenv install 3.12`)."
    )
    return code, notice


def _newest_mtime(folder: Path) -> float:
    """The newest source that `sam build` packages (not __pycache__, which tests rewrite)."""
    sources = [*folder.rglob("*.py"), *folder.glob("requirements.txt")]
    return max((p.stat().st_mtime for p in sources if "__pycache__" not in p.parts), default=0.0)


def find_parts(template: Mapping[str, Any], light_endpoint: bool = False) -> Parts:
    """What to run; ``light_endpoint`` asks for the in-process endpoint on purpose."""
    function, notice = function_code(template)
    parts = Parts(function=function, real_endpoint=not light_endpoint)
    if notice:
        parts.notices.append(notice)
    missing = [] if light_endpoint else missing_prerequisites()
    if missing:
        parts.real_endpoint = False
        parts.notices.append(
            "NOT the SageMaker serving stack: missing "
            + "; ".join(missing)
            + ". The endpoint runs the archive's handler in one process instead "
            "(no inference toolkit, no TorchServe)."
        )
    return parts


def installed_version(venv: Path, distribution: str) -> str:
    """A distribution's version in a venv, from its dist-info folder's name ("?" if absent)."""
    pattern = f"lib/python*/site-packages/{distribution.replace('-', '_')}-*.dist-info"
    for info in sorted(venv.glob(pattern)):
        return info.name.removesuffix(".dist-info").rsplit("-", 1)[-1]
    return "?"


def what_runs(parts: Parts, moto_version: str) -> list[str]:
    """Lines for the demo's output: each piece, real or stand-in."""
    if parts.real_endpoint:
        endpoint = (
            f"REAL      SageMaker model container: TorchServe "
            f"{installed_version(SERVING_VENV, 'torchserve')} + SageMaker PyTorch inference "
            f"toolkit {installed_version(SERVING_VENV, 'sagemaker-pytorch-inference')} "
            "serving the packaged model.tar.gz"
        )
    else:
        endpoint = "STAND-IN  SageMaker model container: the archive's handler in one process"
    function = ("REAL      " if parts.function.is_artifact else "STAND-IN  ") + (
        f"Lambda function: {parts.function.description}"
    )
    return [
        endpoint,
        function,
        f"EMULATED  S3, SQS, DynamoDB: moto {moto_version} (S3 event sequencers synthesised)",
        "EMULATED  SageMaker runtime InvokeEndpoint API and Lambda's SQS event source: "
        "ecg_scorer.local (runtime_api, poller; the template's memory, timeout, batching and "
        "concurrency enforced)",
    ]
