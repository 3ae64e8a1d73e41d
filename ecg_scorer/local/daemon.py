"""Keep the local stack running in the background (``make local-up`` / ``make local-down``):
a detached process serves it until SIGTERM; its pid, state and shell variables live in
``build/local/`` (``stack.pid``, ``stack.json``, ``env.sh``)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from ecg_scorer.local import REPO, aws
from ecg_scorer.local import stack as local_stack
from ecg_scorer.local.processes import stop_process, tail
from ecg_scorer.local.stack import shown


def say(message: str) -> None:
    print(message, flush=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_pid(work_dir: Path) -> int | None:
    pid_file = work_dir / "stack.pid"
    if not pid_file.is_file():
        return None
    pid = int(pid_file.read_text(encoding="utf-8").strip() or 0)
    return pid if pid and _pid_alive(pid) else None


def env_lines(state: dict[str, Any]) -> list[str]:
    return [f"export {k}={v}" for k, v in aws.client_env(state).items()]


def instructions(state: dict[str, Any], pid: int, work_dir: Path) -> str:
    moto, bucket, prefix = state["moto_url"], state["bucket"], state["ingest_prefix"]
    rel = shown(work_dir / "env.sh")
    return "\n".join(
        [
            f"Local stack running (pid {pid}); logs in {state['logs']}",
            f"  S3, SQS, DynamoDB (moto): {moto}",
            f"  SageMaker runtime:        {state['endpoint_url']} (endpoint "
            f"{state['endpoint_name']})",
            f"  bucket {bucket}, table {state['table']}",
            *[f"  {line}" for line in state.get("runs", [])],
            *[f"  !!! {notice}" for notice in state.get("notices", [])],
            "",
            f"Point your shell at it (placeholder credentials, local only):  source {rel}",
            "  (and put ecg-scorer on PATH:  source .venv/bin/activate)",
            *[f"  {line}" for line in env_lines(state)],
            "",
            "Drop files in (site and device come from the key):",
            f"  aws s3 cp FILE s3://{bucket}/{prefix}SITE/DEVICE/ --endpoint-url {moto}",
            "  (or with the variables set, without --endpoint-url)",
            "  ecg-scorer upload FILE --site SITE --device DEVICE",
            "  sample files: .venv/bin/python -m ecg_scorer.local.demo samples  (writes "
            f"{shown(work_dir / 'samples')}/SITE/DEVICE/FILE)",
            "",
            "Query (with the variables above set):",
            f"  ecg-scorer result s3://{bucket}/{prefix}SITE/DEVICE/FILE",
            "  ecg-scorer device SITE DEVICE --since 7d",
            "  ecg-scorer site SITE --since 7d",
            "  ecg-scorer anomalies --since 7d",
            "  ecg-scorer rejected --since 7d",
            "  ecg-scorer export --since 7d --format csv --out results.csv",
            "  ecg-scorer redrive        (dead-letter queue -> scoring queue)",
            "",
            "Stop it: make local-down",
        ]
    )


def serve(args: argparse.Namespace) -> int:
    """The background process of `up`: run the stack until SIGTERM (from `down`)."""
    work_dir: Path = args.work_dir
    stopping = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    stack = local_stack.start(
        args.archive,
        work_dir / "stack",
        visibility_timeout_s=args.visibility_timeout,
        light_endpoint=args.light_endpoint,
    )
    try:
        state = stack.describe()
        (work_dir / "env.sh").write_text("\n".join(env_lines(state)) + "\n", encoding="utf-8")
        (work_dir / "stack.pid").write_text(str(os.getpid()), encoding="utf-8")
        tmp = work_dir / "stack.json.tmp"
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        tmp.replace(work_dir / "stack.json")
        while not stopping:
            if stack.endpoint_exit_code() is not None:
                say(f"the model server exited with {stack.endpoint_exit_code()}; stopping")
                stopping = True
            if stack.poller_proc is not None and stack.poller_proc.poll() is not None:
                say(f"the poller exited with {stack.poller_proc.returncode}; stopping")
                stopping = True
            time.sleep(0.5)
    finally:
        stack.stop()
        for name in ("stack.pid", "stack.json", "env.sh"):
            (work_dir / name).unlink(missing_ok=True)
    return 0


def up(args: argparse.Namespace) -> int:
    work_dir: Path = args.work_dir
    pid = _running_pid(work_dir)
    if pid is None:
        (work_dir / "stack.json").unlink(missing_ok=True)
        log = work_dir / "stack" / "logs" / "stack.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "ecg_scorer.local.demo", "serve"]
        command += ["--work-dir", str(work_dir), "--archive", str(args.archive)]
        if args.light_endpoint:
            command.append("--light-endpoint")
        if args.visibility_timeout:
            command += ["--visibility-timeout", str(args.visibility_timeout)]
        say("starting the local stack in the background ...")
        with log.open("ab") as out:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this command and the terminal's Ctrl-C
                cwd=REPO,
            )
        deadline = time.monotonic() + args.timeout
        while not (work_dir / "stack.json").is_file():
            if proc.poll() is not None:
                say(f"the local stack did not start:\n{tail(log, 30)}")
                return 1
            if time.monotonic() > deadline:
                stop_process(proc)
                say(f"the local stack did not start in {args.timeout:.0f} s:")
                say(tail(log))
                return 1
            time.sleep(0.2)
        pid = proc.pid
    state = json.loads((work_dir / "stack.json").read_text(encoding="utf-8"))
    say(instructions(state, pid, work_dir))
    return 0


def down(args: argparse.Namespace) -> int:
    work_dir: Path = args.work_dir
    pid = _running_pid(work_dir)
    if pid is None:
        say("no local stack running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    for name in ("stack.pid", "stack.json", "env.sh"):
        (work_dir / name).unlink(missing_ok=True)
    say(f"local stack (pid {pid}) stopped")
    return 0
