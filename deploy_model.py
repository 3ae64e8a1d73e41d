"""Package, check, deploy, invoke, watch and remove the ECG model on SageMaker Serverless Inference.

One command line tool (run ``python deploy_model.py --help``)::

    package    build/model + model_code/ -> sagemaker_models/cnn1d_lstm_ecg_v1_sagemaker.tar.gz
    check      validate any such archive (members, paths, config vs weights, a smoke prediction)
    preflight  credentials, execution role, bucket, serverless concurrency quota
    deploy     package, check, upload, Model, EndpointConfig (ServerlessConfig), create or update
    invoke     score an ECG file on an endpoint (name or runtime URL)
    status     endpoint state, memory, concurrency, model version, CloudWatch figures
    logs       CloudWatch log lines of the endpoint (--since, --follow)
    delete     the endpoint, its configs and the models this tool created (found by tag)

AWS credentials, region and endpoints come only from boto3's standard configuration
(profiles, environment variables such as ``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``,
instance roles). The SageMaker execution role comes from ``--role`` or ``SAGEMAKER_ROLE_ARN``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlencode

REPO = Path(__file__).resolve().parent
MODEL_VERSION = "cnn1d_lstm_ecg_v1"
DEFAULT_MODEL_DIR = Path("build/model")
DEFAULT_CODE_DIR = REPO / "model_code"
DEFAULT_ARCHIVE = Path("sagemaker_models") / f"{MODEL_VERSION}_sagemaker.tar.gz"
DEFAULT_ENDPOINT = "cnn1d-lstm-ecg-v1"
DEFAULT_PREFIX = f"ecg-scorer/models/{MODEL_VERSION}"
ROLE_ENV = "SAGEMAKER_ROLE_ARN"
VARIANT = "AllTraffic"

# Archive layout: SageMaker unpacks model.tar.gz into /opt/ml/model; the PyTorch container runs
# code/inference.py with code/ on sys.path and pip-installs code/requirements.txt.
WEIGHTS = "model.pth"
CONFIG = "config.json"
CODE_FILES = ("inference.py", "model.py", "requirements.txt")
REQUIRED_MEMBERS = (WEIGHTS, CONFIG, *(f"code/{name}" for name in CODE_FILES))
# Fixed metadata so the same inputs always give the same bytes (and the same SHA-256, which
# names the S3 key, the Model and the EndpointConfig: that is what makes deploy idempotent).
ARCHIVE_MTIME = 315532800  # 1980-01-01T00:00:00Z
# config.json keys read outside the archive: by this tool (invoke prepares recordings to the
# leads, rate and window; deploy tags the version) and by the stacks (the Lambda's MODEL_*
# settings must match them). What the handler itself needs is the archive's business: check
# runs the archive's own model_fn, which refuses a config.json it cannot serve.
CONTRACT_KEYS = ("model_version", "window_samples", "channels", "leads", "sampling_rate_hz")
# check holds the unpacked archive in memory: refuse, before reading, anything that would
# unpack to more (a gzip/tar bomb). The real archive is well under 1 MiB.
MAX_UNPACKED_MIB = 1024
MAX_MEMBERS = 1000
MAX_CONFIG_BYTES = 1024 * 1024

FRAMEWORK_VERSION = "2.0.0"
PY_VERSION = "py310"
# Serverless has no instance type; any CPU type selects the CPU image.
CPU_INSTANCE_FOR_IMAGE = "ml.m5.xlarge"
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
# Serverless containers may write only under /tmp. TorchServe's log4j configuration (in the
# SageMaker PyTorch inference toolkit) writes its log and metrics files to $LOG_LOCATION and
# $METRICS_LOCATION (default ./logs, read-only there) and unpacks models under $TEMP.
# SAGEMAKER_MODEL_SERVER_WORKERS=1: one worker per container; serverless scales by containers,
# and a second copy of the model would only cost memory.
CONTAINER_ENV = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
    "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    "LOG_LOCATION": "/tmp/logs",  # noqa: S108 - inside the container, the only writable place
    "METRICS_LOCATION": "/tmp/logs",  # noqa: S108
    "TEMP": "/tmp",  # noqa: S108
}

TAG_MANAGED_BY = "ecg-scorer:managed-by"
TAG_ENDPOINT = "ecg-scorer:endpoint"
TAG_SHA = "ecg-scorer:archive-sha256"
TAG_VERSION = "ecg-scorer:model-version"
MANAGED_BY = "deploy_model.py"

# Serverless request bodies are capped at 4 MB (4,000,000 bytes keeps clear of both readings
# of "MB"); invoke splits a file's windows into requests by their encoded size.
MAX_REQUEST_BYTES = 4_000_000
METRICS = (
    ("Invocations", "Sum", ""),
    ("Invocation4XXErrors", "Sum", ""),
    ("Invocation5XXErrors", "Sum", ""),
    ("ModelLatency", "Average", "us"),
    ("OverheadLatency", "Average", "us"),
    ("ModelSetupTime", "Average", "us"),
    ("ServerlessConcurrentExecutionsUtilization", "Maximum", ""),
)


class ToolError(Exception):
    """An error the user can act on; main() prints it and exits 1."""


# ----------------------------------------------------------------------------------------------
# package


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = ARCHIVE_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def package(model_dir: Path, out: Path, code_dir: Path = DEFAULT_CODE_DIR) -> str:
    """Write the deterministic SageMaker archive and return its SHA-256 (hex).

    Members, sorted: code/inference.py, code/model.py, code/requirements.txt, config.json,
    model.pth. Identical inputs give identical bytes.
    """
    sources = {WEIGHTS: model_dir / WEIGHTS, CONFIG: model_dir / CONFIG}
    sources.update({f"code/{name}": code_dir / name for name in CODE_FILES})
    missing = [str(path) for path in sources.values() if not path.is_file()]
    if missing:
        hint = (
            "train the model first: make model (or python model_code/train.py --out build/model)"
            if any(model_dir.as_posix() in m for m in missing)
            else f"the model code must be in {code_dir}"
        )
        raise ToolError(f"missing input file(s): {', '.join(missing)}; {hint}")
    buffer = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of names and times.
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for name in sorted(sources):
            data = sources[name].read_bytes()
            tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
    data = buffer.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# check


@dataclass
class Problem:
    """One thing wrong with an archive: which member, what, and how to fix it."""

    member: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.member}: {self.message}. Fix: {self.fix}"


@dataclass
class CheckResult:
    """What `check` found; ok when there are no problems."""

    problems: list[Problem] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    smoke: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


_SMOKE_SCRIPT = r"""
import io, json, math, sys
model_dir = sys.argv[1]

def fail(member, message, fix):
    print(json.dumps({"ok": False, "member": member, "message": message, "fix": fix}))
    sys.exit(0)

def first_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:400]

import numpy as np
import torch

try:
    state = torch.load(f"{model_dir}/model.pth", map_location="cpu", weights_only=True)
except Exception as exc:
    fail("model.pth", "cannot be loaded with torch.load(weights_only=True): " + first_line(exc),
         "save only the weights: torch.save(model.state_dict(), 'model.pth')")
if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
    fail("model.pth", "is not a state_dict (a dict of tensors)",
         "save only the weights: torch.save(model.state_dict(), 'model.pth')")
try:
    import inference
except Exception as exc:
    fail("code/inference.py", "cannot be imported with code/ on sys.path: " + first_line(exc),
         "import the model module flat (from model import CNN1DLSTM) and use only packages "
         "of the PyTorch 2.0.0 container or code/requirements.txt")
for name in ("model_fn", "input_fn", "predict_fn", "output_fn"):
    if not callable(getattr(inference, name, None)):
        fail("code/inference.py", f"defines no {name}", f"define {name} (PyTorch toolkit)")
try:
    model = inference.model_fn(model_dir)
except Exception as exc:
    # The archive's own model_fn judges its config.json (required keys included) and whether
    # it rebuilds a network that model.pth fits.
    fail("config.json", "refused by the archive's own model_fn: " + first_line(exc),
         "package config.json and model.pth from the same training run "
         "(make model, then deploy_model.py package)")
net = model if isinstance(model, torch.nn.Module) else getattr(model, "net", None)
if isinstance(net, torch.nn.Module):
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if want != got:
        missing = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        shapes = [k for k in set(want) & set(got) if want[k] != got[k]][:3]
        fail("config.json", f"architecture does not match model.pth (missing {missing}, "
             f"unexpected {extra}, shape differs {shapes})",
             "package config.json and model.pth from the same training run "
             "(make model, then deploy_model.py package)")
with open(f"{model_dir}/config.json") as handle:
    config = json.load(handle)
rng = np.random.default_rng(0)
try:
    shape = (int(config["window_samples"]), int(config["channels"]))
except (KeyError, TypeError, ValueError) as exc:
    fail("config.json", "gives no window_samples and channels: " + first_line(exc),
         "write it with model_code/train.py")

def run(body, content_type):
    data = inference.input_fn(body, content_type)
    result = inference.output_fn(inference.predict_fn(data, model), "application/json")
    if isinstance(result, tuple):
        result = result[0]
    if isinstance(result, (bytes, bytearray)):
        result = result.decode()
    return json.loads(result)

try:
    one = run(json.dumps({"signals": rng.normal(0, 0.2, shape).tolist()}).encode(),
              "application/json")
    buf = io.BytesIO()
    np.save(buf, rng.normal(0, 0.2, (2, *shape)).astype(np.float32))
    two = run(buf.getvalue(), "application/x-npy")
except Exception as exc:
    fail("code/inference.py", "smoke prediction input_fn -> predict_fn -> output_fn failed: "
         + first_line(exc), "run the handler locally with PYTHONPATH=model_code and fix it")
if isinstance(one, list) and len(one) == 1:
    one = one[0]
p = one.get("probability") if isinstance(one, dict) else None
if not isinstance(p, (int, float)) or not math.isfinite(p) or not 0.0 <= p <= 1.0:
    fail("code/inference.py", f"smoke prediction gave no probability in [0, 1] (got {one!r:.200})",
         "output_fn must answer {\"prediction\": p, \"probability\": p} with 0 <= p <= 1")
if not isinstance(two, list) or len(two) != 2:
    fail("code/inference.py", "a 2-window application/x-npy request did not answer a list of 2",
         "answer one object per window, in order, for N > 1")
version = one.get("model_version")
if version is not None and version != config.get("model_version"):
    fail("code/inference.py", f"answers model_version {version!r} but config.json says "
         f"{config.get('model_version')!r}", "read model_version from config.json")
# Trainable parameters when the network is at hand (state_dict also holds BatchNorm buffers).
tensors = net.parameters() if isinstance(net, torch.nn.Module) else state.values()
params = sum(int(v.numel()) for v in tensors)
print(json.dumps({"ok": True, "probability": p, "label": one.get("label"),
                  "model_version": version, "parameters": params}))
"""


def _member_problems(members: Sequence[tarfile.TarInfo]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for info in members:
        name = info.name
        parts = PurePosixPath(name).parts
        if name.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", name):
            problems.append(
                Problem(name, "absolute path", "store members relative to the archive root")
            )
        elif ".." in parts or "\\" in name:
            problems.append(
                Problem(name, "path escapes the archive root ('..')", "rebuild with package")
            )
        if info.issym() or info.islnk():
            problems.append(
                Problem(name, f"is a link (to {info.linkname!r})", "store the file itself")
            )
        elif info.isdev() or not (info.isfile() or info.isdir()):
            problems.append(
                Problem(name, "is a device or special file", "store only regular files")
            )
        clean = PurePosixPath(*[p for p in parts if p not in ("", ".")]).as_posix()
        if info.isfile():
            if clean in seen:
                problems.append(Problem(name, "appears twice", "rebuild the archive with package"))
            seen.add(clean)
            if clean not in REQUIRED_MEMBERS and not clean.startswith("code/"):
                problems.append(
                    Problem(name, "is not part of the model archive", "remove it (or rebuild)")
                )
    for required in REQUIRED_MEMBERS:
        if required not in seen:
            source = "build/model" if "/" not in required else "model_code"
            problems.append(
                Problem(
                    required,
                    "missing",
                    f"rebuild with deploy_model.py package (it takes {required.split('/')[-1]} "
                    f"from {source})",
                )
            )
    return problems


def _config_problems(config: Any) -> list[Problem]:
    """What this tool and the stacks read from config.json (`CONTRACT_KEYS`); everything
    else is judged by the archive's own model_fn in the smoke run."""
    if not isinstance(config, dict):
        return [Problem(CONFIG, "is not a JSON object", "write it with model_code/train.py")]
    missing = [key for key in CONTRACT_KEYS if key not in config]
    if missing:
        return [Problem(CONFIG, f"lacks {', '.join(missing)}", "write it with model_code/train.py")]
    problems = []
    leads, channels = config["leads"], config["channels"]
    if not isinstance(leads, list) or len(leads) != channels:
        problems.append(
            Problem(CONFIG, f"leads {leads!r} do not match channels {channels}", "retrain")
        )
    threshold = config.get("threshold")
    if threshold is not None and (not isinstance(threshold, int | float) or not 0 < threshold < 1):
        problems.append(Problem(CONFIG, f"threshold {threshold!r} not in (0, 1)", "fix it"))
    for key in ("window_samples", "channels", "sampling_rate_hz"):
        value = config[key]
        if not isinstance(value, int | float) or value <= 0:
            problems.append(Problem(CONFIG, f"{key} {value!r} is not positive", "retrain"))
    return problems


class _TooLarge(Exception):
    """The archive would unpack to more than the limit; carries the problem to report."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _read_archive(
    path: Path, max_bytes: int = MAX_UNPACKED_MIB * 1024 * 1024
) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """Every member with its bytes (None for anything but a regular file).

    Each member's size comes from its tar header, so the limits are checked before its data
    is read: no member over ``max_bytes``, no more than ``max_bytes`` in all, at most
    `MAX_MEMBERS` members (raises `_TooLarge`).
    """
    fix = (
        "check only archives built by deploy_model.py package; if this one is genuine, raise "
        "the limit with --max-unpacked-mib"
    )
    limit = f"{max_bytes / 2**20:.0f} MiB"
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    total = 0
    with tarfile.open(path, mode="r:gz") as tar:
        for info in tar:
            if len(entries) >= MAX_MEMBERS:
                raise _TooLarge(Problem(str(path), f"holds over {MAX_MEMBERS} members", fix))
            if info.isfile():
                if info.size > max_bytes:
                    raise _TooLarge(
                        Problem(info.name, f"unpacks to {info.size} bytes, over {limit}", fix)
                    )
                total += info.size
                if total > max_bytes:
                    raise _TooLarge(
                        Problem(str(path), f"unpacks to over {limit} (at {info.name})", fix)
                    )
            handle = tar.extractfile(info) if info.isfile() else None
            entries.append((info, handle.read() if handle else None))
    return entries


def check_archive(
    path: Path, timeout: float = 180.0, max_unpacked_mib: int = MAX_UNPACKED_MIB
) -> CheckResult:
    """Validate an archive; the smoke prediction runs in a fresh interpreter from its own code.

    That interpreter imports the archive's code/inference.py and runs its model_fn: check
    only archives you would deploy (it runs with your user's rights, not in a sandbox).
    """
    result = CheckResult()
    if not path.is_file():
        result.problems.append(
            Problem(str(path), "archive not found", "build it with deploy_model.py package")
        )
        return result
    try:
        entries = _read_archive(path, max_unpacked_mib * 1024 * 1024)
    except _TooLarge as exc:
        result.problems.append(exc.problem)
        return result
    except (tarfile.TarError, OSError, EOFError) as exc:
        result.problems.append(
            Problem(str(path), f"not a gzip-compressed tar ({exc})", "rebuild with package")
        )
        return result
    result.problems.extend(_member_problems([info for info, _ in entries]))
    if result.problems:
        return result
    with tempfile.TemporaryDirectory(prefix="ecg-check-") as tmp:
        root = Path(tmp)
        # Members are vetted above (regular files, relative, no '..'); written by hand so no
        # tar feature (links, modes, owners) reaches the disk.
        for info, data in entries:
            if data is None:
                continue
            target = root.joinpath(*PurePosixPath(info.name).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        try:
            config = json.loads((root / CONFIG).read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            result.problems.append(Problem(CONFIG, f"is not valid JSON ({exc})", "rewrite it"))
            return result
        result.problems.extend(_config_problems(config))
        result.config = config
        if result.problems:
            return result
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(root / "code"),
            "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": tmp,
        }
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _SMOKE_SCRIPT, str(root)],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            result.problems.append(
                Problem(
                    "code/inference.py",
                    f"smoke prediction took over {timeout:.0f} s",
                    "make model_fn/predict_fn fast",
                )
            )
            return result
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            result.problems.append(
                Problem(
                    "code/inference.py",
                    f"smoke interpreter exited {proc.returncode}: {tail[:400]}",
                    "run the handler locally with PYTHONPATH=model_code and fix it",
                )
            )
            return result
        report = json.loads(lines[-1])
        if not report.get("ok"):
            result.problems.append(Problem(report["member"], report["message"], report["fix"]))
        else:
            result.smoke = report
    return result


# ----------------------------------------------------------------------------------------------
# AWS plumbing


def _session() -> Any:
    import boto3

    return boto3.session.Session()


@dataclass
class Aws:
    """boto3 clients made from the standard configuration (tests hand in their own)."""

    session: Any
    region: str
    _clients: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> Aws:
        session = _session()
        if not session.region_name:
            raise ToolError(
                "no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION) "
                "or a region in your profile (aws configure)"
            )
        return cls(session=session, region=session.region_name)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    return ClientError


def _not_found(exc: Exception) -> bool:
    """SageMaker answers ValidationException 'Could not find ...' for missing resources."""
    code = _error_code(exc)
    text = str(exc).lower()
    return code in ("ValidationException", "ResourceNotFound", "404", "NoSuchKey", "NotFound") and (
        "could not find" in text or "not found" in text or code in ("404", "NoSuchKey", "NotFound")
    )


def _tags(endpoint: str, version: str, sha: str | None = None) -> list[dict[str, str]]:
    tags = [
        {"Key": TAG_MANAGED_BY, "Value": MANAGED_BY},
        {"Key": TAG_ENDPOINT, "Value": endpoint},
        {"Key": TAG_VERSION, "Value": version},
    ]
    if sha:
        tags.append({"Key": TAG_SHA, "Value": sha})
    return tags


def _tag_dict(sm: Any, arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    kwargs: dict[str, Any] = {"ResourceArn": arn}
    while True:
        page = sm.list_tags(**kwargs)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        if not page.get("NextToken"):
            return tags
        kwargs["NextToken"] = page["NextToken"]


def resolve_image_uri(region: str, override: str | None = None) -> str:
    """The PyTorch 2.0.0 / py310 CPU inference image, from the installed SageMaker SDK.

    sagemaker 3.x keeps ``image_uris`` in ``sagemaker.core``; 2.x at ``sagemaker.image_uris``.
    Imported here only: ``import sagemaker`` costs seconds and most commands never need it.
    """
    if override:
        return override
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import logging

    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    try:
        from sagemaker.core import image_uris  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from sagemaker import image_uris  # type: ignore[no-redef,unused-ignore]
        except ImportError as exc:
            raise ToolError(
                "the SageMaker SDK is not installed: pip install sagemaker, "
                "or pass --image-uri <account>.dkr.ecr.<region>.amazonaws.com/"
                "pytorch-inference:2.0.0-cpu-py310"
            ) from exc
    try:
        return str(
            image_uris.retrieve(
                framework="pytorch",
                region=region,
                version=FRAMEWORK_VERSION,
                py_version=PY_VERSION,
                instance_type=CPU_INSTANCE_FOR_IMAGE,
                image_scope="inference",
            )
        )
    except ValueError as exc:
        raise ToolError(
            f"no PyTorch {FRAMEWORK_VERSION} inference image known for {region}: {exc}; "
            "pass --image-uri"
        ) from exc


# ----------------------------------------------------------------------------------------------
# preflight


@dataclass
class Check:
    """One preflight line."""

    name: str
    ok: bool | None  # None: could not be checked (not a failure)
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        text = f"{mark} {self.name:<12} {self.detail}"
        return text + (f"\n     fix: {self.fix}" if self.fix and self.ok is not True else "")


def resolve_role(role: str | None) -> str:
    """--role, else SAGEMAKER_ROLE_ARN."""
    value = role or os.environ.get(ROLE_ENV, "")
    if not value:
        raise ToolError(
            f"no SageMaker execution role: pass --role arn:aws:iam::<account>:role/<name> "
            f"or set {ROLE_ENV} (docs/deploy.md says what the role needs)"
        )
    return value


def _trusts_sagemaker(document: Any) -> bool:
    if isinstance(document, str):
        document = json.loads(unquote(document))
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        services = statement.get("Principal", {}).get("Service", [])
        services = [services] if isinstance(services, str) else services
        if "sagemaker.amazonaws.com" in services and any(
            a in ("sts:AssumeRole", "sts:*", "*") for a in actions
        ):
            return True
    return False


def _quota_check(quotas: Any, max_concurrency: int) -> Check:
    found: list[dict[str, Any]] = []
    error = ""
    for method in ("list_service_quotas", "list_aws_default_service_quotas"):
        try:
            for page in quotas.get_paginator(method).paginate(ServiceCode="sagemaker"):
                found.extend(page.get("Quotas", []))
        except Exception as exc:  # quota reading is best effort: many roles cannot
            error = _error_code(exc) or type(exc).__name__
        if found:
            break
    serverless = [
        q
        for q in found
        if "serverless" in q.get("QuotaName", "").lower()
        and "concurrency" in q.get("QuotaName", "").lower()
    ]
    if not serverless:
        reason = f"({error})" if error else "(no serverless concurrency quota listed)"
        return Check(
            "quota",
            None,
            f"serverless concurrency quota not readable {reason}; requested {max_concurrency}",
            "allow servicequotas:ListServiceQuotas to have this checked",
        )
    limits = {q["QuotaName"]: int(q.get("Value", 0)) for q in serverless}
    too_low = {name: value for name, value in limits.items() if value < max_concurrency}
    text = "; ".join(f"{name} = {value}" for name, value in sorted(limits.items()))
    if too_low:
        return Check(
            "quota",
            False,
            f"--max-concurrency {max_concurrency} exceeds {text}",
            "lower --max-concurrency or request an increase in the Service Quotas console "
            "(Amazon SageMaker)",
        )
    return Check("quota", True, f"max concurrency {max_concurrency} fits ({text})")


def default_bucket(region: str, account: str) -> str:
    """The SageMaker SDK's default bucket name."""
    return f"sagemaker-{region}-{account}"


def preflight(
    aws: Aws, role: str | None, bucket: str | None, max_concurrency: int
) -> tuple[list[Check], str, str]:
    """Run every preflight check; returns (checks, account, bucket)."""
    checks: list[Check] = []
    client_error = _client_error()
    from botocore.exceptions import BotoCoreError

    try:
        identity = aws.client("sts").get_caller_identity()
    except (client_error, BotoCoreError) as exc:
        checks.append(
            Check(
                "credentials",
                False,
                f"cannot get the caller identity: {exc}",
                "configure credentials (aws configure, AWS_PROFILE, or aws sso login)",
            )
        )
        return checks, "", bucket or ""
    account = identity["Account"]
    checks.append(Check("credentials", True, f"{identity['Arn']} (account {account})"))
    checks.append(Check("region", True, aws.region))

    try:
        role_arn = resolve_role(role)
    except ToolError as exc:
        checks.append(Check("role", False, str(exc), f"set {ROLE_ENV} or pass --role"))
        role_arn = ""
    if role_arn:
        role_name = role_arn.rsplit("/", 1)[-1]
        try:
            got = aws.client("iam").get_role(RoleName=role_name)["Role"]
            if got["Arn"] != role_arn:
                checks.append(
                    Check(
                        "role",
                        False,
                        f"{role_arn} not found (a role named {role_name} is {got['Arn']})",
                        "pass the exact ARN",
                    )
                )
            elif not _trusts_sagemaker(got.get("AssumeRolePolicyDocument", {})):
                checks.append(
                    Check(
                        "role",
                        False,
                        f"{role_arn} does not trust sagemaker.amazonaws.com",
                        "add a trust statement: Allow, Principal Service "
                        "sagemaker.amazonaws.com, Action sts:AssumeRole",
                    )
                )
            else:
                checks.append(Check("role", True, f"{role_arn} trusts sagemaker.amazonaws.com"))
        except client_error as exc:
            if _error_code(exc) == "NoSuchEntity":
                checks.append(
                    Check(
                        "role",
                        False,
                        f"{role_arn} does not exist",
                        "create it (docs/deploy.md) or fix --role / " + ROLE_ENV,
                    )
                )
            else:
                checks.append(
                    Check(
                        "role",
                        None,
                        f"cannot read {role_name}: {_error_code(exc)}",
                        "allow iam:GetRole on the role to have this checked",
                    )
                )

    bucket = bucket or default_bucket(aws.region, account)
    try:
        aws.client("s3").head_bucket(Bucket=bucket)
        checks.append(Check("bucket", True, f"s3://{bucket} reachable"))
    except client_error as exc:
        code = _error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            checks.append(
                Check(
                    "bucket",
                    False,
                    f"s3://{bucket} does not exist",
                    f"aws s3 mb s3://{bucket} --region {aws.region} (or deploy --create-bucket, "
                    "or pass --bucket)",
                )
            )
        else:
            checks.append(
                Check(
                    "bucket",
                    False,
                    f"s3://{bucket} not reachable ({code})",
                    "grant s3:ListBucket, s3:GetObject, s3:PutObject on it, or pass --bucket",
                )
            )
    checks.append(_quota_check(aws.client("service-quotas"), max_concurrency))
    return checks, account, bucket


# ----------------------------------------------------------------------------------------------
# deploy


@dataclass
class Plan:
    """What deploy will do; every name is derived from content, so a rerun finds the same."""

    endpoint: str
    region: str
    archive: Path
    sha: str
    bucket: str
    key: str
    image: str
    role: str
    model_name: str
    config_name: str
    serverless: dict[str, int]
    env: dict[str, str]
    model_version: str = MODEL_VERSION  # the archive's config.json model_version (a tag)
    upload: bool = True
    create_model: bool = True
    create_config: bool = True
    endpoint_action: str = "create"  # create | update | none | wait
    current_config: str = ""

    def lines(self) -> list[str]:
        mem = self.serverless["MemorySizeInMB"]
        conc = self.serverless["MaxConcurrency"]
        prov = self.serverless.get("ProvisionedConcurrency")
        size = self.archive.stat().st_size / 1024
        action = {
            "create": "create",
            "update": f"update (now {self.current_config}; no downtime)",
            "none": "up to date",
            "wait": "wait (a change is in progress)",
        }[self.endpoint_action]
        return [
            f"plan for endpoint {self.endpoint} in {self.region}:",
            f"  archive   {self.archive} ({size:.1f} KiB, sha256 {self.sha[:16]}...)",
            f"  upload    s3://{self.bucket}/{self.key}  "
            f"[{'upload' if self.upload else 'exists, skip'}]",
            f"  image     {self.image}",
            f"  model     {self.model_name}  [{'create' if self.create_model else 'exists, skip'}]",
            f"  config    {self.config_name} ({mem} MB, max concurrency {conc}"
            f"{f', provisioned {prov}' if prov else ''})  "
            f"[{'create' if self.create_config else 'exists, skip'}]",
            f"  endpoint  {self.endpoint}  [{action}]",
        ]


def _short_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def resource_names(
    endpoint: str, sha: str, image: str, role: str, env: dict[str, str], serverless: dict[str, int]
) -> tuple[str, str]:
    """Content-addressed Model and EndpointConfig names (<= 63 characters)."""
    base = endpoint[:46].rstrip("-")
    model = f"{base}-m-{_short_hash([sha, image, role, env])}"
    config = f"{base}-c-{_short_hash([model, serverless])}"
    return model, config


def _exists(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except _client_error() as exc:
        if _not_found(exc):
            return None
        raise


def make_plan(
    aws: Aws,
    *,
    endpoint: str,
    archive: Path,
    bucket: str,
    prefix: str,
    image: str,
    role: str,
    memory: int,
    max_concurrency: int,
    provisioned: int | None,
    model_version: str = MODEL_VERSION,
) -> Plan:
    """Look at what exists (read-only) and decide what to create."""
    sm, s3 = aws.client("sagemaker"), aws.client("s3")
    sha = sha256_file(archive)
    serverless = {"MemorySizeInMB": memory, "MaxConcurrency": max_concurrency}
    if provisioned:
        serverless["ProvisionedConcurrency"] = provisioned
    env = dict(CONTAINER_ENV, SAGEMAKER_REGION=aws.region)
    model_name, config_name = resource_names(endpoint, sha, image, role, env, serverless)
    key = f"{prefix.strip('/')}/{sha}/model.tar.gz"
    plan = Plan(
        endpoint=endpoint,
        region=aws.region,
        archive=archive,
        sha=sha,
        bucket=bucket,
        key=key,
        image=image,
        role=role,
        model_name=model_name,
        config_name=config_name,
        serverless=serverless,
        env=env,
        model_version=model_version,
    )
    head = _exists(lambda: s3.head_object(Bucket=bucket, Key=key))
    plan.upload = head is None or head.get("Metadata", {}).get("sha256") != sha
    plan.create_model = _exists(lambda: sm.describe_model(ModelName=model_name)) is None
    plan.create_config = (
        _exists(lambda: sm.describe_endpoint_config(EndpointConfigName=config_name)) is None
    )
    current = _exists(lambda: sm.describe_endpoint(EndpointName=endpoint))
    if current is None:
        plan.endpoint_action = "create"
    else:
        plan.current_config = current.get("EndpointConfigName", "")
        status = current.get("EndpointStatus", "")
        if status == "Failed":
            raise ToolError(
                f"endpoint {endpoint} is Failed ({current.get('FailureReason', 'no reason')}); "
                f"a failed endpoint cannot be updated: run deploy_model.py delete "
                f"--endpoint-name {endpoint}, then deploy again"
            )
        if status in ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"):
            plan.endpoint_action = "wait"
        elif plan.current_config == config_name:
            plan.endpoint_action = "none"
        else:
            plan.endpoint_action = "update"
    return plan


def _log_tail(logs: Any, endpoint: str, lines: int = 20) -> list[str]:
    """The last lines of the endpoint's CloudWatch log group (empty when there is none)."""
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    try:
        streams = logs.describe_log_streams(
            logGroupName=group, orderBy="LastEventTime", descending=True, limit=3
        ).get("logStreams", [])
        events: list[dict[str, Any]] = []
        for stream in streams:
            events.extend(
                logs.get_log_events(
                    logGroupName=group,
                    logStreamName=stream["logStreamName"],
                    limit=lines,
                    startFromHead=False,
                ).get("events", [])
            )
    except _client_error() as exc:
        return [f"(no log lines: {_error_code(exc)} for {group})"]
    events.sort(key=lambda e: e.get("timestamp", 0))
    return [_format_event(e) for e in events[-lines:]]


def _format_event(event: dict[str, Any]) -> str:
    stamp = datetime.fromtimestamp(event.get("timestamp", 0) / 1000, UTC)
    return f"{stamp:%Y-%m-%d %H:%M:%S} {event.get('message', '').rstrip()}"


def wait_for_endpoint(
    sm: Any,
    logs: Any,
    endpoint: str,
    config_name: str,
    *,
    timeout: float,
    poll: float,
    out: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll until InService on ``config_name``; raise ToolError with reason and logs otherwise."""
    out = sys.stdout if out is None else out
    start = clock()
    tty = getattr(out, "isatty", lambda: False)()
    last = ""
    while True:
        desc = sm.describe_endpoint(EndpointName=endpoint)
        status = desc["EndpointStatus"]
        elapsed = clock() - start
        line = f"endpoint {endpoint}: {status} ({int(elapsed // 60)}m{int(elapsed % 60):02d}s)"
        if tty:
            out.write("\r" + line.ljust(70))
        elif status != last:
            out.write(line + "\n")
        out.flush()
        last = status
        if status == "InService":
            if tty:
                out.write("\n")
            if desc.get("EndpointConfigName") != config_name:
                # An update that fails rolls back: the endpoint keeps serving the old config.
                reason = desc.get("FailureReason", "no FailureReason given")
                raise ToolError(
                    f"update of {endpoint} to {config_name} did not take effect; it still "
                    f"serves {desc.get('EndpointConfigName')} ({reason})\nlast log lines:\n"
                    + "\n".join(_log_tail(logs, endpoint))
                )
            return
        if status in ("Failed", "OutOfService"):
            if tty:
                out.write("\n")
            reason = desc.get("FailureReason", "no FailureReason given")
            raise ToolError(
                f"endpoint {endpoint} is {status}: {reason}\nlast log lines:\n"
                + "\n".join(_log_tail(logs, endpoint))
            )
        if elapsed > timeout:
            if tty:
                out.write("\n")
            raise ToolError(
                f"endpoint {endpoint} still {status} after {timeout:.0f} s; it keeps going in "
                f"AWS: watch it with deploy_model.py status --endpoint-name {endpoint}"
            )
        sleep(poll)


def apply_plan(
    aws: Aws,
    plan: Plan,
    *,
    wait: bool = True,
    timeout: float = 1800.0,
    poll: float = 15.0,
    out: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Create what the plan says; returns what was done, one line each."""
    out = sys.stdout if out is None else out
    sm = aws.client("sagemaker")
    done: list[str] = []
    tags = _tags(plan.endpoint, plan.model_version, plan.sha)
    if plan.upload:
        s3 = aws.client("s3")
        with plan.archive.open("rb") as body:
            s3.put_object(
                Bucket=plan.bucket,
                Key=plan.key,
                Body=body,
                Metadata={"sha256": plan.sha},
                Tagging=urlencode([(t["Key"], t["Value"]) for t in tags]),
                ServerSideEncryption="AES256",
            )
        done.append(f"uploaded s3://{plan.bucket}/{plan.key}")
    if plan.create_model:
        sm.create_model(
            ModelName=plan.model_name,
            PrimaryContainer={
                "Image": plan.image,
                "ModelDataUrl": f"s3://{plan.bucket}/{plan.key}",
                "Environment": plan.env,
            },
            ExecutionRoleArn=plan.role,
            Tags=tags,
        )
        done.append(f"created model {plan.model_name}")
    if plan.create_config:
        sm.create_endpoint_config(
            EndpointConfigName=plan.config_name,
            ProductionVariants=[
                {
                    "VariantName": VARIANT,
                    "ModelName": plan.model_name,
                    "ServerlessConfig": plan.serverless,
                }
            ],
            Tags=tags,
        )
        done.append(f"created endpoint config {plan.config_name}")
    if plan.endpoint_action == "create":
        sm.create_endpoint(
            EndpointName=plan.endpoint,
            EndpointConfigName=plan.config_name,
            Tags=_tags(plan.endpoint, plan.model_version),
        )
        done.append(f"creating endpoint {plan.endpoint}")
    elif plan.endpoint_action == "update":
        # UpdateEndpoint swaps the config behind the live endpoint; the old one serves until
        # the new one is ready, and a failed update rolls back.
        sm.update_endpoint(EndpointName=plan.endpoint, EndpointConfigName=plan.config_name)
        done.append(f"updating endpoint {plan.endpoint} from {plan.current_config}")
    elif plan.endpoint_action == "wait":
        done.append(f"endpoint {plan.endpoint} is changing; waiting")
    for line in done:
        out.write(line + "\n")
    if wait and plan.endpoint_action != "none":
        wait_until_done = partial(
            wait_for_endpoint,
            sm,
            aws.client("logs"),
            plan.endpoint,
            plan.config_name,
            timeout=timeout,
            poll=poll,
            out=out,
            sleep=sleep,
        )
        wait_until_done()
        if plan.endpoint_action == "wait":
            # Something else was in flight; now compare again.
            desc = sm.describe_endpoint(EndpointName=plan.endpoint)
            if desc.get("EndpointConfigName") != plan.config_name:
                sm.update_endpoint(EndpointName=plan.endpoint, EndpointConfigName=plan.config_name)
                wait_until_done()
    return done


# ----------------------------------------------------------------------------------------------
# invoke

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


def read_model_config(source: Path) -> dict[str, Any]:
    """config.json from a file, a model folder (build/model) or a model archive."""
    if source.is_dir():
        source = source / CONFIG
    if not source.is_file():
        raise ToolError(f"{source}: no such file")
    try:
        if source.name.endswith((".tar.gz", ".tgz")):
            with tarfile.open(source, mode="r:gz") as tar:
                info = next(
                    (m for m in tar if m.isfile() and m.name.removeprefix("./") == CONFIG), None
                )
                handle = tar.extractfile(info) if info and info.size <= MAX_CONFIG_BYTES else None
                if handle is None:
                    raise ToolError(f"{source}: no {CONFIG} of at most {MAX_CONFIG_BYTES} bytes")
                text = handle.read()
        else:
            text = source.read_bytes()
        config = json.loads(text)
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise ToolError(f"{source}: cannot read {CONFIG} ({exc})") from exc
    if not isinstance(config, dict):
        raise ToolError(f"{source}: {CONFIG} is not a JSON object")
    return config


def default_model_config() -> Path:
    """Where invoke finds the model's config.json without --model-config."""
    candidates = (DEFAULT_ARCHIVE, DEFAULT_MODEL_DIR / CONFIG)
    for candidate in (*candidates, *(REPO / c for c in candidates)):
        if candidate.is_file():
            return candidate
    raise ToolError(
        "no model config.json to take the leads, rate and window from: pass --model-config "
        f"(the archive, its model folder or its config.json; looked for {DEFAULT_ARCHIVE} "
        f"and {DEFAULT_MODEL_DIR / CONFIG})"
    )


def _as_windows(array: Any, source: str, contract: Contract) -> Any:
    import numpy as np

    shape = (contract.window_samples, contract.channels)
    array = np.asarray(array, dtype=np.float32)
    if array.shape == shape:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != shape:
        raise ValueError(f"{source}: shape {array.shape}")
    return array


def load_windows(path: Path, contract: Contract) -> tuple[Any, str]:
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


def _windows_from_pipeline(path: Path, contract: Contract) -> Any:
    try:
        from scorer import prepare, readers  # type: ignore[attr-defined,unused-ignore]
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


def _body(windows: Any, content_type: str) -> bytes:
    import numpy as np

    if content_type == "application/json":
        signals = windows[0] if len(windows) == 1 else windows
        return json.dumps({"signals": signals.tolist()}).encode()
    buffer = io.BytesIO()
    np.save(buffer, windows.astype(np.float32), allow_pickle=False)
    return buffer.getvalue()


def request_bodies(
    windows: Any,
    content_type: str,
    max_bytes: int = MAX_REQUEST_BYTES,
    max_windows: int | None = None,
) -> Iterable[tuple[int, bytes]]:
    """(window count, body) per request: as many windows as fit in ``max_bytes`` encoded
    (and at most ``max_windows``), in order."""
    start = 0
    while start < len(windows):
        count = len(windows) - start
        if max_windows:
            count = min(count, max_windows)
        body = _body(windows[start : start + count], content_type)
        while len(body) > max_bytes:
            if count == 1:
                raise ToolError(
                    f"one window encodes to {len(body)} bytes as {content_type}, over the "
                    f"{max_bytes}-byte request limit; send application/x-npy"
                )
            # Shrink in proportion (JSON's size per window varies a little), then re-check.
            count = max(1, min(count - 1, int(count * max_bytes / len(body) * 0.98)))
            body = _body(windows[start : start + count], content_type)
        yield count, body
        start += count


def invoke(
    runtime: Any,
    endpoint: str,
    windows: Any,
    content_type: str,
    batch: int | None = None,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[dict[str, Any]]:
    """Score windows [N, W, C] in requests of at most ``max_bytes`` (and ``batch`` windows);
    one result object per window."""
    results: list[dict[str, Any]] = []
    for count, body in request_bodies(windows, content_type, max_bytes, batch):
        response = runtime.invoke_endpoint(
            EndpointName=endpoint,
            ContentType=content_type,
            Accept="application/json",
            Body=body,
        )
        raw = response["Body"].read()
        try:
            answer = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ToolError(
                f"endpoint {endpoint} answered something that is not JSON: {raw[:80]!r}"
            ) from exc
        answer = answer if isinstance(answer, list) else [answer]
        if len(answer) != count:
            raise ToolError(
                f"endpoint {endpoint} answered {len(answer)} result(s) for {count} window(s)"
            )
        if not all(isinstance(a, dict) and isinstance(a.get("probability"), int | float)
                   for a in answer):  # fmt: skip
            raise ToolError(
                f"endpoint {endpoint} answered without a probability per window: {raw[:120]!r}"
            )
        results.extend(answer)
    return results


# ----------------------------------------------------------------------------------------------
# status, logs, delete


def _metric_lines(cloudwatch: Any, endpoint: str, minutes: int) -> list[str]:
    end = datetime.now(UTC)
    start = end - timedelta(minutes=minutes)
    period = max(60, (minutes * 60) // 60 * 60)
    lines = []
    for name, stat, unit in METRICS:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName=name,
            Dimensions=[
                {"Name": "EndpointName", "Value": endpoint},
                {"Name": "VariantName", "Value": VARIANT},
            ],
            StartTime=start,
            EndTime=end,
            Period=period,
            Statistics=[stat],
        ).get("Datapoints", [])
        values = [p[stat] for p in points if stat in p]
        if not values:
            text = "0" if stat == "Sum" else "n/a"
        elif stat == "Sum":
            text = f"{sum(values):.0f}"
        elif stat == "Maximum":
            text = f"{max(values):.2f}"
        elif unit == "us":
            text = f"{sum(values) / len(values) / 1000:.1f} ms"
        else:
            text = f"{sum(values) / len(values):.2f}"
        lines.append(f"  {name:<42} {stat.lower():<8} {text}")
    return lines


def status_lines(aws: Aws, endpoint: str, minutes: int = 60) -> list[str]:
    """What `status` prints."""
    sm = aws.client("sagemaker")
    desc = _exists(lambda: sm.describe_endpoint(EndpointName=endpoint))
    if desc is None:
        raise ToolError(
            f"endpoint {endpoint} not found in {aws.region}: deploy it with "
            "deploy_model.py deploy (or pass --endpoint-name)"
        )
    lines = [
        f"endpoint   {endpoint} ({aws.region})",
        f"state      {desc['EndpointStatus']}"
        + (f": {desc['FailureReason']}" if desc.get("FailureReason") else ""),
        f"config     {desc.get('EndpointConfigName', '?')}",
        f"modified   {desc.get('LastModifiedTime', '')}",
    ]
    config = _exists(
        lambda: sm.describe_endpoint_config(EndpointConfigName=desc["EndpointConfigName"])
    )
    for variant in (config or {}).get("ProductionVariants", []):
        serverless = variant.get("ServerlessConfig", {})
        lines.append(
            f"memory     {serverless.get('MemorySizeInMB', '?')} MB, max concurrency "
            f"{serverless.get('MaxConcurrency', '?')}"
            + (
                f", provisioned {serverless['ProvisionedConcurrency']}"
                if serverless.get("ProvisionedConcurrency")
                else ""
            )
        )
        model = _exists(partial(sm.describe_model, ModelName=variant["ModelName"]))
        if model:
            tags = _tag_dict(sm, model["ModelArn"])
            container = model.get("PrimaryContainer", {})
            lines.append(f"model      {variant['ModelName']}")
            lines.append(f"version    {tags.get(TAG_VERSION, '?')}")
            lines.append(f"archive    {container.get('ModelDataUrl', '?')}")
            lines.append(f"sha256     {tags.get(TAG_SHA, '?')}")
            lines.append(f"image      {container.get('Image', '?')}")
    lines.append(f"last {minutes} min (CloudWatch AWS/SageMaker):")
    lines.extend(_metric_lines(aws.client("cloudwatch"), endpoint, minutes))
    return lines


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'30s', '10m', '2h', '1d' ago, or an ISO 8601 time."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"(\d+)\s*([smhd])", text.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
        return now - timedelta(**{unit: int(match[1])})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use a duration like 10m, 2h, 1d or an ISO time"
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def log_events(logs: Any, endpoint: str, since: datetime) -> Iterable[dict[str, Any]]:
    """Events of the endpoint's log group since a time, oldest first."""
    kwargs: dict[str, Any] = {
        "logGroupName": f"/aws/sagemaker/Endpoints/{endpoint}",
        "startTime": int(since.timestamp() * 1000),
    }
    while True:
        page = logs.filter_log_events(**kwargs)
        yield from page.get("events", [])
        if not page.get("nextToken"):
            return
        kwargs["nextToken"] = page["nextToken"]


@dataclass
class Owned:
    """What delete would remove."""

    endpoint: str | None
    configs: list[str]
    models: list[str]
    artifacts: list[str]


def _managed(tags: dict[str, str], endpoint: str) -> bool:
    return tags.get(TAG_MANAGED_BY) == MANAGED_BY and tags.get(TAG_ENDPOINT) == endpoint


def find_owned(aws: Aws, endpoint: str) -> Owned:
    """The endpoint and the configs and models this tool created for it (by tag)."""
    sm = aws.client("sagemaker")
    desc = _exists(lambda: sm.describe_endpoint(EndpointName=endpoint))
    configs = []
    for page in sm.get_paginator("list_endpoint_configs").paginate():
        for item in page.get("EndpointConfigs", []):
            if _managed(_tag_dict(sm, item["EndpointConfigArn"]), endpoint):
                configs.append(item["EndpointConfigName"])
    models, artifacts = [], []
    for page in sm.get_paginator("list_models").paginate():
        for item in page.get("Models", []):
            if _managed(_tag_dict(sm, item["ModelArn"]), endpoint):
                models.append(item["ModelName"])
                model = _exists(partial(sm.describe_model, ModelName=item["ModelName"]))
                url = (model or {}).get("PrimaryContainer", {}).get("ModelDataUrl")
                if url and url not in artifacts:
                    artifacts.append(url)
    return Owned(desc["EndpointName"] if desc else None, sorted(configs), sorted(models), artifacts)


def delete_owned(
    aws: Aws,
    owned: Owned,
    *,
    artifacts: bool,
    timeout: float = 900.0,
    poll: float = 10.0,
    out: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Delete the endpoint first (and wait until it is gone), then configs, models, artifacts."""
    out = sys.stdout if out is None else out
    sm = aws.client("sagemaker")
    if owned.endpoint:
        sm.delete_endpoint(EndpointName=owned.endpoint)
        out.write(f"deleting endpoint {owned.endpoint}\n")
        start = time.monotonic()
        while _exists(lambda: sm.describe_endpoint(EndpointName=owned.endpoint)) is not None:
            if time.monotonic() - start > timeout:
                raise ToolError(f"endpoint {owned.endpoint} still deleting after {timeout:.0f} s")
            sleep(poll)
        out.write(f"deleted endpoint {owned.endpoint}\n")
    for name in owned.configs:
        sm.delete_endpoint_config(EndpointConfigName=name)
        out.write(f"deleted endpoint config {name}\n")
    for name in owned.models:
        sm.delete_model(ModelName=name)
        out.write(f"deleted model {name}\n")
    if artifacts:
        s3 = aws.client("s3")
        for url in owned.artifacts:
            bucket, _, key = url.removeprefix("s3://").partition("/")
            s3.delete_object(Bucket=bucket, Key=key)
            out.write(f"deleted {url}\n")


# ----------------------------------------------------------------------------------------------
# command line


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def _memory(text: str) -> int:
    value = int(text)
    if value not in SERVERLESS_MEMORY_MB:
        raise argparse.ArgumentTypeError(
            f"{text}: serverless memory is one of {', '.join(map(str, SERVERLESS_MEMORY_MB))} MB"
        )
    return value


def cmd_package(args: argparse.Namespace) -> int:
    sha = package(args.model_dir, args.out, args.code_dir)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} KiB)")
    print(f"sha256 {sha}")
    return 0


def _print_check(path: Path, result: CheckResult) -> None:
    if result.ok:
        smoke = result.smoke
        print(
            f"ok {path}: {len(REQUIRED_MEMBERS)} members, model_version "
            f"{result.config.get('model_version')}, {smoke.get('parameters', '?')} parameters, "
            f"smoke probability {smoke.get('probability', float('nan')):.4f}"
        )
    else:
        for problem in result.problems:
            print(f"error: {problem}", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    result = check_archive(args.archive, max_unpacked_mib=args.max_unpacked_mib)
    _print_check(args.archive, result)
    return 0 if result.ok else 1


def cmd_preflight(args: argparse.Namespace) -> int:
    checks, _, _ = preflight(Aws.from_environment(), args.role, args.bucket, args.max_concurrency)
    for item in checks:
        print(item)
    return 1 if any(c.ok is False for c in checks) else 0


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.provisioned_concurrency and args.provisioned_concurrency > args.max_concurrency:
        raise ToolError("--provisioned-concurrency must not exceed --max-concurrency")
    archive: Path = args.archive
    if args.model_dir.is_dir() and archive == DEFAULT_ARCHIVE:
        # Packaging is deterministic: rebuilding an unchanged model gives the same bytes.
        sha = package(args.model_dir, archive, args.code_dir)
        print(f"packaged {archive} (sha256 {sha[:16]}...)")
    elif not archive.is_file():
        raise ToolError(
            f"{archive} not found and {args.model_dir} has no model: run make model, "
            "or pass --archive"
        )
    result = check_archive(archive, max_unpacked_mib=args.max_unpacked_mib)
    _print_check(archive, result)
    if not result.ok:
        return 1
    aws = Aws.from_environment()
    checks, account, bucket = preflight(aws, args.role, args.bucket, args.max_concurrency)
    for item in checks:
        print(item)
    failed = [c for c in checks if c.ok is False]
    if failed and args.create_bucket and [c.name for c in failed] == ["bucket"]:
        if args.dry_run:
            print(f"would create bucket s3://{bucket}")
        else:
            params: dict[str, Any] = {"Bucket": bucket}
            if aws.region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
            aws.client("s3").create_bucket(**params)
            print(f"created bucket s3://{bucket}")
        failed = []
    if failed:
        print("preflight failed: fix the lines marked FAIL above", file=sys.stderr)
        return 1
    image = resolve_image_uri(aws.region, args.image_uri)
    plan = make_plan(
        aws,
        endpoint=args.endpoint_name,
        archive=archive,
        bucket=bucket,
        prefix=args.prefix,
        image=image,
        role=resolve_role(args.role),
        memory=args.memory,
        max_concurrency=args.max_concurrency,
        provisioned=args.provisioned_concurrency,
        model_version=str(result.config["model_version"]),
    )
    for line in plan.lines():
        print(line)
    if args.dry_run:
        print("dry run: nothing changed")
        return 0
    done = apply_plan(aws, plan, wait=not args.no_wait, timeout=args.timeout, poll=args.poll)
    if not done:
        print("nothing to do: already deployed")
    state = "submitted" if args.no_wait and plan.endpoint_action != "none" else "InService"
    print(f"endpoint {plan.endpoint} {state} with {plan.config_name} (account {account})")
    return 0


def _label(result: dict[str, Any], threshold: float) -> str:
    if isinstance(result.get("label"), str):
        return str(result["label"])
    return "anomalous" if float(result["probability"]) > threshold else "normal"


def cmd_invoke(args: argparse.Namespace) -> int:
    import boto3

    name, region, endpoint_url = parse_endpoint(args.endpoint)
    config_source = args.model_config or default_model_config()
    contract = Contract.from_config(read_model_config(config_source), str(config_source))
    windows, how = load_windows(args.file, contract)
    content_type = args.content_type
    if content_type == "auto":
        # JSON only for what already is JSON windows; x-npy is 5x smaller for everything else.
        content_type = "application/json" if how == "seed-json" else "application/x-npy"
    session = boto3.session.Session()
    region = region or session.region_name
    if not region:
        raise ToolError("no AWS region configured: set AWS_REGION or pass a runtime URL")
    runtime = session.client("sagemaker-runtime", region_name=region, endpoint_url=endpoint_url)
    results = invoke(runtime, name, windows, content_type, args.batch)
    if args.json:
        print(json.dumps(results))
        return 0
    print(
        f"{args.file}: {len(windows)} window(s) of {windows.shape[1]} samples, "
        f"sent as {content_type}"
    )
    for index, result in enumerate(results):
        threshold = float(result.get("threshold", 0.5))
        print(
            f"window {index:>3}  probability {float(result['probability']):.4f}  "
            f"{_label(result, threshold)}"
        )
    top = max(results, key=lambda r: float(r["probability"]))
    print(
        f"file: max probability {float(top['probability']):.4f} -> "
        f"{_label(top, float(top.get('threshold', 0.5)))} "
        f"(threshold {top.get('threshold', 0.5)}, model {top.get('model_version', '?')})"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    for line in status_lines(Aws.from_environment(), args.endpoint_name, args.minutes):
        print(line)
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    aws = Aws.from_environment()
    logs = aws.client("logs")
    since = args.since
    seen: set[str] = set()
    try:
        while True:
            for event in log_events(logs, args.endpoint_name, since):
                if event.get("eventId") in seen:
                    continue
                seen.add(event.get("eventId", ""))
                print(_format_event(event), flush=True)
                since = max(since, datetime.fromtimestamp(event["timestamp"] / 1000, UTC))
            if not args.follow:
                return 0
            time.sleep(args.poll)
    except _client_error() as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            raise ToolError(
                f"no log group /aws/sagemaker/Endpoints/{args.endpoint_name} in {aws.region}: "
                "the endpoint has not started a container yet (or the name is wrong)"
            ) from exc
        raise
    except KeyboardInterrupt:
        return 0


def cmd_delete(args: argparse.Namespace) -> int:
    aws = Aws.from_environment()
    owned = find_owned(aws, args.endpoint_name)
    if owned.endpoint:
        tags = _tag_dict(
            aws.client("sagemaker"),
            aws.client("sagemaker").describe_endpoint(EndpointName=owned.endpoint)["EndpointArn"],
        )
        if tags.get(TAG_MANAGED_BY) != MANAGED_BY and not args.force:
            raise ToolError(
                f"endpoint {owned.endpoint} was not created by deploy_model.py (no "
                f"{TAG_MANAGED_BY} tag); pass --force to delete it anyway"
            )
    if not (owned.endpoint or owned.configs or owned.models):
        print(f"nothing to delete for {args.endpoint_name} in {aws.region}")
        return 0
    print(f"to delete in {aws.region}:")
    print(f"  endpoint          {owned.endpoint or '(none)'}")
    for name in owned.configs:
        print(f"  endpoint config   {name}")
    for name in owned.models:
        print(f"  model             {name}")
    for url in owned.artifacts if args.artifacts else []:
        print(f"  artifact          {url}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise ToolError("not deleting without confirmation: pass --yes")
        answer = input(f"type the endpoint name ({args.endpoint_name}) to delete: ")
        if answer.strip() != args.endpoint_name:
            print("not deleted")
            return 1
    delete_owned(aws, owned, artifacts=args.artifacts, timeout=args.timeout)
    print("done")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse CLI; every flag has help."""
    parser = argparse.ArgumentParser(
        prog="deploy_model.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="AWS credentials and region come from boto3's standard configuration "
        f"(AWS_PROFILE, AWS_REGION, ...). The execution role comes from --role or {ROLE_ENV}.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def endpoint_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--endpoint-name",
            default=DEFAULT_ENDPOINT,
            help=f"SageMaker endpoint name (default {DEFAULT_ENDPOINT})",
        )

    def role_bucket(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--role",
            help=f"SageMaker execution role ARN (default: ${ROLE_ENV})",
        )
        p.add_argument(
            "--bucket",
            help="S3 bucket for the model archive (default sagemaker-<region>-<account>)",
        )
        p.add_argument(
            "--max-concurrency",
            type=_positive,
            default=10,
            help="serverless MaxConcurrency, checked against the account quota (default 10)",
        )

    def unpack_limit(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--max-unpacked-mib",
            type=_positive,
            default=MAX_UNPACKED_MIB,
            help="refuse an archive whose members unpack to more than this many MiB, in all "
            f"or one member, checked before reading them (default {MAX_UNPACKED_MIB})",
        )

    def packaging(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--model-dir",
            type=Path,
            default=DEFAULT_MODEL_DIR,
            help="folder with model.pth and config.json from training (default build/model)",
        )
        p.add_argument(
            "--code-dir",
            type=Path,
            default=DEFAULT_CODE_DIR,
            help="folder with inference.py, model.py, requirements.txt (default model_code/)",
        )

    p = sub.add_parser("package", help="build the model archive (deterministic)")
    packaging(p)
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_ARCHIVE,
        help=f"archive to write (default {DEFAULT_ARCHIVE})",
    )
    p.set_defaults(func=cmd_package)

    p = sub.add_parser(
        "check",
        help="validate a model archive",
        description="Validate a model archive: members and paths, config.json, and a smoke "
        "prediction. The smoke prediction imports the archive's own code/inference.py and runs "
        "its model_fn, input_fn, predict_fn and output_fn in a separate Python process, with "
        "your user's rights (not a sandbox): check only archives you would deploy. Members are "
        f"read into memory: an archive that unpacks to over {MAX_UNPACKED_MIB} MiB is refused "
        "before it is read (see --max-unpacked-mib).",
    )
    p.add_argument("archive", type=Path, metavar="TAR", help="the model.tar.gz to check")
    unpack_limit(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("preflight", help="check credentials, role, bucket and quota")
    role_bucket(p)
    p.set_defaults(func=cmd_preflight)

    p = sub.add_parser("deploy", help="package, check, upload and create or update the endpoint")
    endpoint_flag(p)
    role_bucket(p)
    packaging(p)
    unpack_limit(p)
    p.add_argument(
        "--archive",
        type=Path,
        default=DEFAULT_ARCHIVE,
        help=f"archive to deploy; rebuilt from --model-dir when it is the default "
        f"({DEFAULT_ARCHIVE}) and the model folder exists",
    )
    p.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX,
        help=f"S3 key prefix; the archive goes to <prefix>/<sha256>/model.tar.gz "
        f"(default {DEFAULT_PREFIX})",
    )
    p.add_argument(
        "--memory",
        type=_memory,
        default=3072,
        help="serverless memory in MB: 1024, 2048, 3072, 4096, 5120 or 6144 (default 3072)",
    )
    p.add_argument(
        "--provisioned-concurrency",
        type=_positive,
        help="serverless ProvisionedConcurrency (warm containers, billed while idle)",
    )
    p.add_argument(
        "--image-uri",
        help="container image (default: the SageMaker SDK's PyTorch 2.0.0 py310 CPU image)",
    )
    p.add_argument(
        "--create-bucket", action="store_true", help="create the bucket if it does not exist"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--no-wait", action="store_true", help="return once the change is submitted")
    p.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds to wait for InService (default 1800)",
    )
    p.add_argument(
        "--poll", type=float, default=15, help="seconds between status polls (default 15)"
    )
    p.set_defaults(func=cmd_deploy)

    p = sub.add_parser("invoke", help="score an ECG file on an endpoint")
    p.add_argument("file", type=Path, help="ECG file: seed JSON, .npy windows, or a recording")
    p.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        help="endpoint name or runtime URL https://runtime.sagemaker.<region>.amazonaws.com/"
        f"endpoints/<name>/invocations (default {DEFAULT_ENDPOINT})",
    )
    p.add_argument(
        "--content-type",
        choices=("auto", "application/json", "application/x-npy"),
        default="auto",
        help="request format (default: JSON for seed JSON files, application/x-npy for "
        "everything else)",
    )
    p.add_argument(
        "--batch",
        type=_positive,
        help="at most this many windows per request (default: as many as fit in a "
        f"{MAX_REQUEST_BYTES}-byte request body, the serverless payload limit)",
    )
    p.add_argument(
        "--model-config",
        type=Path,
        help="the model's config.json, model folder or archive, for the leads, rate and window "
        f"to prepare recordings to (default {DEFAULT_ARCHIVE}, else "
        f"{DEFAULT_MODEL_DIR / CONFIG})",
    )
    p.add_argument("--json", action="store_true", help="print the results as one JSON list")
    p.set_defaults(func=cmd_invoke)

    p = sub.add_parser("status", help="endpoint state, configuration and recent metrics")
    endpoint_flag(p)
    p.add_argument(
        "--minutes", type=_positive, default=60, help="metrics window in minutes (default 60)"
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("logs", help="CloudWatch log lines of the endpoint")
    endpoint_flag(p)
    p.add_argument(
        "--since",
        type=parse_since,
        default=parse_since("1h"),
        help="start: 30s, 10m, 2h, 1d ago or an ISO time (default 1h)",
    )
    p.add_argument("--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    p.add_argument(
        "--poll", type=float, default=5, help="seconds between polls with --follow (default 5)"
    )
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("delete", help="delete the endpoint, its configs and models")
    endpoint_flag(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--artifacts",
        action="store_true",
        help="also delete the model archives in S3 that the deleted models used",
    )
    p.add_argument(
        "--force", action="store_true", help="delete an endpoint this tool did not create"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=900,
        help="seconds to wait for the endpoint to go (default 900)",
    )
    p.set_defaults(func=cmd_delete)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; 0 on success, 1 on any failure (with the reason on stderr)."""
    args = build_parser().parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return int(args.func(args))
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except NoCredentialsError:
        print(
            "error: no AWS credentials found: configure a profile (aws configure / aws sso "
            "login) or the standard environment variables",
            file=sys.stderr,
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(
            f"error: {exc.operation_name} failed: {error.get('Code', '?')}: "
            f"{error.get('Message', exc)}",
            file=sys.stderr,
        )
    except BotoCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        # A submitted create or update goes on in AWS; say where to look.
        print("interrupted: anything submitted continues in AWS; see status", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
