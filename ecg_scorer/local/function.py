"""One execution environment of the Lambda function: a process of the runtime's Python running
the function's code, with the template's MemorySize and Timeout enforced as Lambda enforces them.

The process runs `bootstrap` (the runtime's loop) with ``LAMBDA_TASK_ROOT`` at the code: the
``sam build`` artifact, or ``functions/`` when it is the fallback (see `stack.function_code`).
It imports the handler once (the cold start) and stays warm between invocations. Lambda's
limits, locally:

- Timeout: an invocation still running at the deadline is stopped; the process is killed and
  the next invocation starts a fresh one ("Task timed out after N seconds").
- MemorySize: a watchdog samples the resident memory of the process and its children every
  20 ms, during the cold start and each invocation, and kills the process the moment it is
  over the limit, as Lambda kills an environment that runs out of memory ("Runtime exited
  with error: signal: killed"). A spike shorter than one sample can pass unseen; address-space
  limits (RLIMIT_AS) are not used because numpy and OpenBLAS reserve far more address space
  than they touch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("ecg_scorer.local.function")

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
MEMORY_SAMPLE_S = 0.02
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class FunctionCode:
    """What runs as the function: the interpreter, the code folder and the handler."""

    python: Path
    code_dir: Path
    handler: str
    description: str  # said in the demo's output: which code, which Python
    is_artifact: bool  # the `sam build` artifact on the template's runtime


@dataclass
class Invocation:
    """How one invocation ended, as the Lambda service sees it."""

    response: Any = None
    error: str | None = None  # a function error: the handler raised, timed out or was killed
    duration_ms: float = 0.0
    max_memory_mb: float = 0.0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants (Linux /proc)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/statm", encoding="ascii") as f:
                total += int(f.read().split()[1]) * _PAGE
            with open(f"/proc/{current}/task/{current}/children", encoding="ascii") as f:
                pending.extend(int(child) for child in f.read().split())
        except (OSError, ValueError, IndexError):
            continue  # it just exited
    return total


@dataclass
class FunctionRuntime:
    """A function execution environment: started on first use, reused while warm."""

    code: FunctionCode
    env: dict[str, str]  # the function's environment (template variables, AWS_LAMBDA_*)
    memory_mb: int
    log_file: Path | None = None  # the function's output, as CloudWatch Logs would hold it
    init_timeout_s: float = 120.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _sock: socket.socket | None = field(default=None, repr=False)
    _reader: Any = field(default=None, repr=False)
    python_version: str = ""

    def start(self) -> None:
        """Start the process and wait for the handler's import; RuntimeError if it fails."""
        self.stop()
        ours, theirs = socket.socketpair()
        env = dict(self.env)
        env.update(
            {
                "LAMBDA_TASK_ROOT": str(self.code.code_dir),
                "_HANDLER": self.code.handler,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
                "PYTHONUNBUFFERED": "1",
            }
        )
        out: TextIO | int = subprocess.DEVNULL
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_file.open("a", encoding="utf-8")
        try:
            self._proc = subprocess.Popen(
                [str(self.code.python), str(BOOTSTRAP), str(theirs.fileno())],
                env=env,
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.code.code_dir,
                start_new_session=True,  # killed as a group, children included
            )
        finally:
            theirs.close()
            if not isinstance(out, int):
                out.close()
        self._sock = ours
        self._reader = ours.makefile("rb")
        reply, _, killed = self._wait_reply(self.init_timeout_s)
        if reply is None:
            self.stop()
            why = killed or f"did not initialise within {self.init_timeout_s:.0f} s"
            raise RuntimeError(f"handler {self.code.handler}: {why}")
        if "init_error" in reply:
            self.stop()
            raise RuntimeError(
                f"handler {self.code.handler} failed to initialise: {reply['init_error']}\n"
                f"{reply.get('trace', '')}"
            )
        self.python_version = str(reply.get("python", ""))

    def invoke(self, event: dict[str, Any], timeout_s: float) -> Invocation:
        """Run the handler on one event; stop it at ``timeout_s`` or over the memory size."""
        started = time.monotonic()
        if self._proc is None or self._proc.poll() is not None:
            try:
                self.start()
            except RuntimeError as e:
                return Invocation(error=str(e))
        assert self._sock is not None
        try:
            self._sock.sendall(
                json.dumps({"event": event, "timeout_s": timeout_s}).encode() + b"\n"
            )
        except OSError:
            self.stop()
            return Invocation(error="Runtime exited before the invocation")
        reply, peak, killed = self._wait_reply(timeout_s)
        duration_ms = (time.monotonic() - started) * 1000
        peak_mb = peak / 2**20
        if reply is None:
            code = self._proc.poll() if self._proc is not None else None
            self.stop()  # Lambda stops the function and resets its environment
            if killed:
                error = killed
            elif code is not None:
                error = f"Runtime exited with error: exit status {code}"
            else:
                error = f"Task timed out after {timeout_s:.2f} seconds"
            return Invocation(error=error, duration_ms=duration_ms, max_memory_mb=peak_mb)
        if "error" in reply:
            log.error("handler raised; the whole batch returns to the queue\n%s", reply["trace"])
            return Invocation(
                error=str(reply["error"]), duration_ms=duration_ms, max_memory_mb=peak_mb
            )
        return Invocation(
            response=reply.get("response"), duration_ms=duration_ms, max_memory_mb=peak_mb
        )

    def _wait_reply(self, timeout_s: float) -> tuple[dict[str, Any] | None, int, str | None]:
        """(reply or None, peak resident bytes, why it was killed) within ``timeout_s``."""
        # Locals: stop() may run on another thread (shutdown) and forget the process.
        proc, sock, reader = self._proc, self._sock, self._reader
        assert proc is not None and sock is not None and reader is not None
        limit = self.memory_mb * 2**20
        deadline = time.monotonic() + timeout_s
        peak = 0
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                rss = tree_rss_bytes(proc.pid)
                peak = max(peak, rss)
                if rss > limit:
                    self.stop()
                    return (
                        None,
                        peak,
                        f"Runtime exited with error: signal: killed (memory used "
                        f"{rss / 2**20:.0f} MB > MemorySize {self.memory_mb} MB)",
                    )
                if selector.select(min(MEMORY_SAMPLE_S, max(0.0, deadline - time.monotonic()))):
                    try:
                        line = reader.readline()
                    except (OSError, ValueError):  # closed by stop()
                        return None, peak, None
                    if not line:  # the process closed the socket: it exited
                        proc.wait(timeout=5)
                        return None, peak, None
                    return json.loads(line), peak, None
                if proc.poll() is not None:
                    return None, peak, None
        return None, peak, None

    def stop(self) -> None:
        """Kill the process (and its children) if running, and forget it."""
        proc, sock, reader = self._proc, self._sock, self._reader
        self._proc = self._sock = self._reader = None
        if reader is not None:
            reader.close()
        if sock is not None:
            sock.close()
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
