"""Build the deterministic model archive and check any such archive before it is deployed.

package: a model folder (models/demo, or a retrained build/model) + model_code/ ->
model.tar.gz; check: members, config.json, and a smoke prediction by the archive's own code.
Layout: SageMaker unpacks model.tar.gz into /opt/ml/model; the PyTorch container runs
code/inference.py with code/ on sys.path and pip-installs code/requirements.txt.
"""

from __future__ import annotations

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ecg_scorer.deploy import ToolError
from ecg_scorer.deploy.identity import archive_path, version_problem

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_DIR = Path("models/demo")  # the committed demo model
DEFAULT_CODE_DIR = REPO / "model_code"
TRAIN_HINT = "train a model first: make model (python model_code/train.py --out build/model)"

WEIGHTS = "model.pth"
CONFIG = "config.json"
CODE_FILES = ("inference.py", "model.py", "requirements.txt")
REQUIRED_MEMBERS = (WEIGHTS, CONFIG, *(f"code/{name}" for name in CODE_FILES))
# Fixed metadata so the same inputs always give the same bytes (and the same SHA-256, which
# names the S3 key, the Model and the EndpointConfig: that is what makes deploy idempotent).
ARCHIVE_MTIME = 315532800  # 1980-01-01T00:00:00Z
# config.json keys read outside the archive: by this tool (invoke prepares recordings to the
# leads, rate and window; deploy names and tags the version) and by the stacks (the Lambda's
# MODEL_* settings must match them). What the handler itself needs is the archive's business:
# check runs the archive's own model_fn, which refuses a config.json it cannot serve.
CONTRACT_KEYS = ("model_version", "window_samples", "channels", "leads", "sampling_rate_hz")
# check holds the unpacked archive in memory: refuse, before reading, anything that would
# unpack to more (a gzip/tar bomb). The real archive is well under 1 MiB.
MAX_UNPACKED_MIB = 1024
MAX_MEMBERS = 1000
MAX_CONFIG_BYTES = 1024 * 1024
# The smoke prediction: a real module, run by path (see check_archive).
SMOKE = Path(__file__).with_name("smoke.py")


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
            TRAIN_HINT
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


def read_model_config(source: Path) -> dict[str, Any]:
    """config.json from a file, a model folder (models/demo) or a model archive."""
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


def version_of(config: dict[str, Any], source: Path | str) -> str:
    """config.json's model_version, checked to be usable in names and tags."""
    problem = version_problem(config.get("model_version"))
    if problem:
        raise ToolError(f"{source}: {problem}; write config.json with model_code/train.py")
    return str(config["model_version"])


def default_archive(model_dir: Path) -> Path:
    """Where the archive of the model in ``model_dir`` goes: named by its model_version."""
    config = model_dir / CONFIG
    if not config.is_file():
        raise ToolError(f"{config}: no such file; {TRAIN_HINT}")
    return archive_path(version_of(read_model_config(config), config))


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
            source = "the model folder" if "/" not in required else "model_code"
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
    version = version_problem(config["model_version"])
    if version:
        problems.append(Problem(CONFIG, version, "write it with model_code/train.py"))
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


def _smoke(root: Path, timeout: float) -> Problem | dict[str, Any]:
    """Run smoke.py on the unpacked archive at ``root``: its report, or the problem found.

    A fresh interpreter, with only the archive's code/ on PYTHONPATH and ``-P`` (so this
    package's folder is not on sys.path either): ``import inference`` finds the archive's
    own handler, as in the container.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(root / "code"),
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(root.parent),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-P", str(SMOKE), str(root)],
            cwd=root.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Problem(
            "code/inference.py",
            f"smoke prediction took over {timeout:.0f} s",
            "make model_fn/predict_fn fast",
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return Problem(
            "code/inference.py",
            f"smoke interpreter exited {proc.returncode}: {tail[:400]}",
            "run the handler locally with PYTHONPATH=model_code and fix it",
        )
    report: dict[str, Any] = json.loads(lines[-1])
    if not report.get("ok"):
        return Problem(report["member"], report["message"], report["fix"])
    return report


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
        root = Path(tmp) / "model"
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
        smoke = _smoke(root, timeout)
        if isinstance(smoke, Problem):
            result.problems.append(smoke)
        else:
            result.smoke = smoke
    return result
