"""deploy_model.py package and check: a deterministic archive, and archives that must be refused.

The archives here hold a tiny CNN1DLSTM (random weights, same code as the real model) so the
tests do not wait for `make model`; two check the committed demo model (models/demo).
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecg_scorer.deploy import ToolError
from ecg_scorer.deploy.archive import (
    ARCHIVE_MTIME,
    REQUIRED_MEMBERS,
    _member_problems,
    check_archive,
    package,
    sha256_file,
)
from ecg_scorer.deploy.cli import main

REPO = Path(__file__).resolve().parent.parent
MODEL_CODE = REPO / "model_code"
MODEL_DIR = REPO / "models" / "demo"  # the committed demo model
TINY_ARCH = {
    "in_channels": 3,
    "conv_channels": [4, 8],
    "kernel_sizes": [5, 5],
    "strides": [2, 1],
    "pools": [4, 4],
    "lstm_hidden": 8,
    "lstm_layers": 1,
    "bidirectional": False,
    "dropout": 0.0,
}
CONFIG = {
    "model_version": "cnn1d_lstm_ecg_v1",
    "window_samples": 2000,
    "channels": 3,
    "leads": ["I", "II", "V2"],
    "sampling_rate_hz": 200,
    "units": "mV",
    "normalisation": {"method": "zscore", "scope": "per window, per lead"},
    "threshold": 0.5,
    "max_windows_per_request": 256,
    "architecture": TINY_ARCH,
}
_SAVE_TINY = """
import json, sys, torch
from model import CNN1DLSTM
config = json.loads(sys.argv[2])
torch.manual_seed(0)
torch.save(CNN1DLSTM(**config["architecture"]).state_dict(), sys.argv[1] + "/model.pth")
with open(sys.argv[1] + "/config.json", "w") as f:
    json.dump(config, f)
"""


def make_model_dir(path: Path, config: dict | None = None) -> Path:
    """Write model.pth + config.json of a tiny network, in a subprocess (model_code flat)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", _SAVE_TINY, str(path), json.dumps(config or CONFIG)],
        env={**os.environ, "PYTHONPATH": str(MODEL_CODE)},
        check=True,
    )
    return path


def make_code_dir(path: Path) -> Path:
    """model_code's handler and model, plus requirements.txt (written if model_code lacks it)."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("inference.py", "model.py"):
        (path / name).write_bytes((MODEL_CODE / name).read_bytes())
    requirements = MODEL_CODE / "requirements.txt"
    (path / "requirements.txt").write_text(
        requirements.read_text() if requirements.is_file() else "# nothing to add\n"
    )
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model_dir, code_dir) of the tiny model."""
    root = tmp_path_factory.mktemp("tiny")
    return make_model_dir(root / "model"), make_code_dir(root / "code")


@pytest.fixture(scope="session")
def tiny_archive(tiny_model: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("archive") / "model.tar.gz"
    package(tiny_model[0], out, tiny_model[1])
    return out


def members_of(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {
            info.name: tar.extractfile(info).read()  # type: ignore[union-attr]
            for info in tar.getmembers()
            if info.isfile()
        }


def write_tar(path: Path, add: Callable[[tarfile.TarFile], None]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        add(tar)
    return path


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_all(tar: tarfile.TarFile, members: dict[str, bytes]) -> None:
    for name, data in sorted(members.items()):
        add_file(tar, name, data)


def test_package_holds_exactly_the_five_members_with_fixed_metadata(tiny_archive: Path) -> None:
    with tarfile.open(tiny_archive, "r:gz") as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == sorted(REQUIRED_MEMBERS)
    assert {(i.mtime, i.uid, i.gid, i.mode, i.uname, i.gname) for i in infos} == {
        (ARCHIVE_MTIME, 0, 0, 0o644, "", "")
    }


def test_package_gives_the_same_bytes_for_the_same_inputs(
    tiny_model: tuple[Path, Path], tiny_archive: Path, tmp_path: Path
) -> None:
    model_dir, code_dir = tiny_model
    # Touching the inputs changes their mtimes but must not change the archive.
    for path in (*model_dir.iterdir(), *code_dir.iterdir()):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    again = tmp_path / "again.tar.gz"
    sha = package(model_dir, again, code_dir)
    assert again.read_bytes() == tiny_archive.read_bytes()
    assert sha == sha256_file(tiny_archive)


def test_package_changes_sha_when_the_weights_change(
    tiny_model: tuple[Path, Path], tiny_archive: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_bytes((tiny_model[0] / "config.json").read_bytes())
    weights = bytearray((tiny_model[0] / "model.pth").read_bytes())
    weights[-1] ^= 1
    (model_dir / "model.pth").write_bytes(bytes(weights))
    assert package(model_dir, tmp_path / "x.tar.gz", tiny_model[1]) != sha256_file(tiny_archive)


def test_package_without_a_trained_model_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"model\.pth.*make model"):
        package(tmp_path / "nothing", tmp_path / "out.tar.gz", MODEL_CODE)


def test_check_accepts_the_packaged_archive_via_cli(tiny_archive: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "deploy_model.py"), "check", str(tiny_archive)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok ")
    probability = float(proc.stdout.rsplit("smoke probability", 1)[1])
    assert 0.0 <= probability <= 1.0


def _drop(name: str) -> Callable[[dict[str, bytes], tarfile.TarFile], None]:
    def add(members: dict[str, bytes], tar: tarfile.TarFile) -> None:
        for member, data in members.items():
            if member != name:
                add_file(tar, member, data)

    return add


def _plus(extra: Callable[[tarfile.TarFile], None]) -> Callable[..., None]:
    def add(members: dict[str, bytes], tar: tarfile.TarFile) -> None:
        for member, data in members.items():
            add_file(tar, member, data)
        extra(tar)

    return add


def _symlink(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("code/helpers.py")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    tar.addfile(info)


def _device(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("code/dev")
    info.type = tarfile.CHRTYPE
    tar.addfile(info)


@pytest.mark.parametrize(
    ("build", "member", "words"),
    [
        (_drop("code/model.py"), "code/model.py", "missing"),
        (_drop("model.pth"), "model.pth", "missing"),
        (_plus(lambda t: add_file(t, "../evil.py", b"x")), "../evil.py", "escapes"),
        (_plus(lambda t: add_file(t, "/etc/cron.d/x", b"x")), "/etc/cron.d/x", "absolute"),
        (_plus(_symlink), "code/helpers.py", "link"),
        (_plus(_device), "code/dev", "device"),
        (_plus(lambda t: add_file(t, "config.json", b"{}")), "config.json", "twice"),
    ],
    ids=["missing-code", "missing-weights", "dotdot", "absolute", "symlink", "device", "dup"],
)
def test_check_refuses_tampered_archives_naming_the_member(
    tiny_archive: Path, tmp_path: Path, build: Callable[..., None], member: str, words: str
) -> None:
    members = members_of(tiny_archive)
    bad = write_tar(tmp_path / "bad.tar.gz", lambda tar: build(members, tar))
    result = check_archive(bad)
    assert not result.ok
    assert any(p.member == member and words in p.message for p in result.problems), [
        str(p) for p in result.problems
    ]
    assert all(p.fix for p in result.problems)


def test_check_refuses_config_that_does_not_match_the_weights(
    tiny_archive: Path, tmp_path: Path
) -> None:
    members = members_of(tiny_archive)
    config = json.loads(members["config.json"])
    config["architecture"]["lstm_hidden"] = 16  # weights were trained with 8
    members["config.json"] = json.dumps(config).encode()
    bad = write_tar(
        tmp_path / "bad.tar.gz",
        lambda tar: add_all(tar, members),
    )
    proc = subprocess.run(
        [sys.executable, str(REPO / "deploy_model.py"), "check", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: config.json:")
    assert "model.pth" in proc.stderr and "Fix:" in proc.stderr


def test_check_refuses_weights_that_are_not_a_state_dict(
    tiny_archive: Path, tmp_path: Path
) -> None:
    members = members_of(tiny_archive)
    members["model.pth"] = b"not a torch file"
    bad = write_tar(
        tmp_path / "bad.tar.gz",
        lambda tar: add_all(tar, members),
    )
    result = check_archive(bad)
    assert [p.member for p in result.problems] == ["model.pth"]
    assert "weights_only=True" in result.problems[0].message


def test_check_refuses_a_file_that_is_not_an_archive(tmp_path: Path) -> None:
    bad = tmp_path / "model.tar.gz"
    bad.write_bytes(b"PK\x03\x04 a zip")
    result = check_archive(bad)
    assert not result.ok and "gzip" in result.problems[0].message


def test_check_passes_the_committed_model(tmp_path: Path) -> None:
    out = tmp_path / "real.tar.gz"
    package(MODEL_DIR, out, make_code_dir(tmp_path / "code"))
    result = check_archive(out)
    assert result.ok, [str(p) for p in result.problems]
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert result.smoke["model_version"] == config["model_version"]


@pytest.fixture
def real_archive_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, Any]]:
    """The real model's archive, built here, unpacked, its handler imported from code/."""
    out = tmp_path / "real.tar.gz"
    package(MODEL_DIR, out, make_code_dir(tmp_path / "code"))
    unpacked = tmp_path / "unpacked"
    with tarfile.open(out, "r:gz") as tar:
        tar.extractall(unpacked, filter="data")
    monkeypatch.syspath_prepend(str(unpacked / "code"))
    for name in ("inference", "model"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    handler = importlib.import_module("inference")
    assert Path(str(handler.__file__)).parent == unpacked / "code"  # the archive's copy
    yield handler, handler.model_fn(str(unpacked))
    for name in ("inference", "model"):
        sys.modules.pop(name, None)


def _synthetic(kind: str, seed: int) -> list[list[float]]:
    """10 s of a synthetic ECG from model_code/synthetic.py (not part of the archive)."""
    spec = importlib.util.spec_from_file_location(
        "synthetic_for_tests", MODEL_CODE / "synthetic.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    signal = module.synthesize(kind, 10.0, 200.0, ["I", "II", "V2"], np.random.default_rng(seed))
    return signal.tolist()


def test_unpacked_archive_scores_normal_below_anomalous(
    real_archive_handler: tuple[Any, Any],
) -> None:
    handler, model = real_archive_handler

    def score(body: bytes | str, content_type: str) -> Any:
        data = handler.input_fn(body, content_type)
        body, _ = handler.output_fn(handler.predict_fn(data, model), "application/json")
        return json.loads(body)

    normal = score(json.dumps({"signals": _synthetic("normal", 3)}), "application/json")
    anomalous = score(json.dumps({"signals": _synthetic("af", 3)}), "application/json")
    assert set(normal) >= {"prediction", "probability"}
    assert 0.0 <= normal["probability"] < anomalous["probability"] <= 1.0

    buffer = io.BytesIO()
    batch = np.array([_synthetic("normal", 4), _synthetic("tachycardia", 4)], dtype=np.float32)
    np.save(buffer, batch)
    many = score(buffer.getvalue(), "application/x-npy")
    assert isinstance(many, list) and len(many) == 2
    assert many[0]["probability"] < many[1]["probability"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"signals": [[1.0, 2.0, 3.0]]}', "application/json", 400),
        (b'{"signals": [[1.0, 2.0, 3.0]]}', "text/csv", 415),
        (b"", "application/x-npy", 400),
    ],
    ids=["wrong-shape", "content-type", "empty"],
)
def test_unpacked_archive_refuses_bad_requests_with_4xx(
    real_archive_handler: tuple[Any, Any], body: bytes, content_type: str, status: int
) -> None:
    handler, _ = real_archive_handler
    with pytest.raises(handler.RequestError) as info:
        handler.input_fn(body, content_type)
    assert info.value.status_code == status


def test_members_written_by_tar_with_dot_prefix_and_directories_are_accepted() -> None:
    infos = []
    for name in ("./", "./code/", *(f"./{m}" for m in REQUIRED_MEMBERS)):
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE
        infos.append(info)
    assert _member_problems(infos) == []


@pytest.mark.parametrize(
    ("sizes", "member", "words"),
    [
        ({"model.pth": 3 * 2**20}, "model.pth", "over 1 MiB"),
        ({"code/a.py": 600 * 1024, "code/b.py": 600 * 1024}, "model.tar.gz", "over 1 MiB"),
    ],
    ids=["one-member", "in-all"],
)
def test_check_refuses_an_archive_that_unpacks_over_the_limit_before_reading_it(
    tiny_archive: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sizes: dict[str, int],
    member: str,
    words: str,
) -> None:
    members = members_of(tiny_archive)
    members.update({name: bytes(size) for name, size in sizes.items()})  # zeros: tiny gzipped
    bomb = write_tar(tmp_path / "model.tar.gz", lambda tar: add_all(tar, members))
    read: list[str] = []
    extractfile = tarfile.TarFile.extractfile

    def recording(self: tarfile.TarFile, info: Any) -> Any:
        read.append(info.name)
        return extractfile(self, info)

    monkeypatch.setattr(tarfile.TarFile, "extractfile", recording)
    result = check_archive(bomb, max_unpacked_mib=1)
    assert [(Path(p.member).name, words in p.message) for p in result.problems] == [(member, True)]
    assert "--max-unpacked-mib" in result.problems[0].fix
    # Refused from the tar header of the member that crosses the limit, before reading it.
    assert max(sizes) not in read


def test_check_judges_config_keys_with_the_archives_own_model_fn(
    tiny_archive: Path, tmp_path: Path
) -> None:
    members = members_of(tiny_archive)
    config = json.loads(members["config.json"])
    del config["max_windows_per_request"]  # inference.py requires it
    members["config.json"] = json.dumps(config).encode()
    bad = write_tar(tmp_path / "bad.tar.gz", lambda tar: add_all(tar, members))
    result = check_archive(bad)
    assert [p.member for p in result.problems] == ["config.json"]
    message = result.problems[0].message
    assert "lacks max_windows_per_request" in message and "model_fn" in message
    assert "matches model.pth" not in message  # not blamed on the weights


def test_check_help_says_it_runs_the_archives_own_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "runs its model_fn" in text and "check only archives you would deploy" in text
    assert "--max-unpacked-mib" in text


def test_check_refuses_a_model_version_that_cannot_name_files_and_tags(
    tiny_archive: Path, tmp_path: Path
) -> None:
    members = members_of(tiny_archive)
    config = json.loads(members["config.json"])
    config["model_version"] = "v1 final/2"  # names the archive file, the S3 prefix, the tags
    members["config.json"] = json.dumps(config).encode()
    bad = write_tar(tmp_path / "bad.tar.gz", lambda tar: add_all(tar, members))
    result = check_archive(bad)
    assert [p.member for p in result.problems] == ["config.json"]
    assert "model_version 'v1 final/2' is not 1-100 letters" in result.problems[0].message
