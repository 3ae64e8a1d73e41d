"""Child processes of the local stack: start one in its own session with its log and
ready file, wait until it is ready (or show its log's tail), stop it and its children."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from ecg_scorer.local import HOST, REPO


def free_port() -> int:
    """A free loopback port (the endpoint's port must be known before the poller starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], ready_file: Path, log: Path, timeout: float) -> dict:
    """Wait for a child to write its ready file; fail with its log's tail if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists():
            return dict(json.loads(ready_file.read_text(encoding="utf-8")))
        if proc.poll() is not None:
            raise RuntimeError(f"{log.stem} exited with {proc.returncode}:\n{tail(log)}")
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"{log.stem} not ready after {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The whole session (spawn() starts one per child), so no grandchild outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def spawn(
    args: list[str], env: Mapping[str, str], log: Path, ready_file: Path
) -> subprocess.Popen[bytes]:
    """A child in its own session (so Ctrl-C reaches only the parent, which stops it)."""
    ready_file.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args, "--ready-file", str(ready_file)],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )


def session_rss_bytes(pid: int) -> int:
    """Resident memory of every process in ``pid``'s session (Linux /proc): a child started
    by `spawn` with all it started, even those reparented away from it (TorchServe's Java)."""
    try:
        session = os.getsid(pid)
    except ProcessLookupError:
        return 0
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
            # Fields after the command name (which may hold spaces) start at state.
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == session:
                total += int((entry / "statm").read_text(encoding="ascii").split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total
