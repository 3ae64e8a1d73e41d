"""Run the whole pipeline on this machine: ``python -m ecg_scorer.local.demo [run|up|down]``.

``run`` (``make demo``): start the local stack, write the sample files, upload them through
S3, wait until each has a result in the table (or sits in the dead-letter queue), print one
line per file, stop everything. Exits 1 if a file is unaccounted for.

``up`` (``make local-up``): start the stack in the background and print how to drop files
in and query them; ``down`` (``make local-down``) stops it. State lives in ``build/local/``.

Everything is wired with environment variables only (``AWS_ENDPOINT_URL`` for moto,
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` for the local endpoint, placeholder credentials), so
the Lambda handler, the endpoint handler and the query tool run exactly as deployed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote_plus

import boto3
from boto3.dynamodb.types import TypeDeserializer
from scorer import schema

from ecg_scorer.local import samples as sample_files
from ecg_scorer.local import stack as local_stack
from ecg_scorer.local.stack import INGEST_PREFIX, REPO, LocalStack

BUILD = REPO / "build"
WORK_DIR = BUILD / "local"
ARCHIVE = REPO / "sagemaker_models" / "cnn1d_lstm_ecg_v1_sagemaker.tar.gz"
MODEL_DIR = BUILD / "model"
CODE_DIR = REPO / "model_code"
# A failed message comes back after this many seconds (the template's 900 s would outlast
# any demo); 5 receives later it is in the DLQ.
DEMO_VISIBILITY_TIMEOUT_S = 20


def say(message: str) -> None:
    print(message, flush=True)


class Progress:
    """Steps with elapsed time; a line that rewrites itself on a terminal."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.tty = sys.stdout.isatty()
        self._last = ""

    def step(self, message: str) -> None:
        self.done_line()
        say(f"[{time.monotonic() - self.started:5.1f}s] {message}")

    def update(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:5.1f}s]   {message}"
        if self.tty:
            print("\r" + line.ljust(len(self._last)), end="", flush=True)
            self._last = line
        elif message != self._last:
            say(line)
            self._last = message

    def done_line(self) -> None:
        if self.tty and self._last:
            print(flush=True)
        self._last = ""


# ---------------------------------------------------------------------------------------------
# the model the endpoint serves


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
        return target, target / "code", f"{_shown(archive)} (unpacked)"
    return MODEL_DIR, CODE_DIR, f"{_shown(MODEL_DIR)} with model_code/"


# ---------------------------------------------------------------------------------------------
# uploads and results


@dataclass
class FileResult:
    sample: sample_files.Sample
    key: str
    item: dict[str, Any] | None = None
    in_dlq: bool = False

    @property
    def accounted(self) -> bool:
        return self.item is not None or self.in_dlq

    @property
    def status(self) -> str:
        if self.item is not None:
            return str(self.item.get("status", "?"))
        return "IN DLQ" if self.in_dlq else "MISSING"

    def matches_expectation(self) -> bool:
        expect = self.sample.expect
        if self.item is None:
            return False
        if expect == sample_files.REJECTED:
            return self.status == "REJECTED"
        if expect == sample_files.SCORED:
            return self.status == "SCORED"
        return self.status == "SCORED" and self.item.get("label") == expect


def upload(s3: Any, bucket: str, root: Path, samples: Sequence[sample_files.Sample]) -> list[str]:
    """Upload each sample file to incoming/<site>/<device>/<file>, as a device would."""
    keys = []
    for sample in samples:
        key = INGEST_PREFIX + sample.path
        s3.upload_file(str(root / sample.path), bucket, key)
        keys.append(key)
    return keys


def dlq_keys(sqs: Any, dlq_url: str) -> set[tuple[str, str]]:
    """(bucket, key) of every S3 event in the dead-letter queue (read, left in place)."""
    found: set[tuple[str, str]] = set()
    seen: set[str] = set()
    while True:
        messages = sqs.receive_message(
            QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=2, WaitTimeSeconds=0
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return found
        for message in fresh:
            seen.add(message["MessageId"])
            try:
                records = json.loads(message["Body"]).get("Records", [])
            except (ValueError, AttributeError):
                continue
            for record in records:
                s3 = record.get("s3", {})
                bucket = s3.get("bucket", {}).get("name", "")
                found.add((bucket, unquote_plus(s3.get("object", {}).get("key", ""))))


def find_item(ddb: Any, table: str, bucket: str, key: str, model_version: str) -> dict | None:
    got = ddb.get_item(
        TableName=table,
        Key={"pk": {"S": schema.file_pk(bucket, key)}, "sk": {"S": schema.model_sk(model_version)}},
        ConsistentRead=True,
    ).get("Item")
    if got is None:
        return None
    deserialize = TypeDeserializer().deserialize
    return {k: deserialize(v) for k, v in got.items()}


def wait_for_results(
    stack: LocalStack,
    results: list[FileResult],
    timeout_s: float,
    progress: Progress | None = None,
) -> None:
    """Poll the table (and the DLQ) until every file is accounted for or time runs out."""
    ddb = boto3.client("dynamodb")
    sqs = boto3.client("sqs")
    bucket = stack.resources.bucket
    version = stack.lambda_settings.environment["MODEL_VERSION"]
    deadline = time.monotonic() + timeout_s
    last_dlq_check = 0.0
    while True:
        for result in results:
            if result.item is None:
                result.item = find_item(ddb, stack.resources.table, bucket, result.key, version)
        if time.monotonic() - last_dlq_check > 2.0:
            in_dlq = dlq_keys(sqs, stack.resources.dead_letter_queue_url)
            for result in results:
                result.in_dlq = result.item is None and (bucket, result.key) in in_dlq
            last_dlq_check = time.monotonic()
        counts = {s: sum(r.status == s for r in results) for s in ("SCORED", "REJECTED", "IN DLQ")}
        waiting = sum(not r.accounted for r in results)
        if progress is not None:
            progress.update(
                f"{counts['SCORED']} scored, {counts['REJECTED']} rejected, "
                f"{counts['IN DLQ']} in DLQ, {waiting} waiting"
            )
        if waiting == 0 or time.monotonic() > deadline:
            if progress is not None:
                progress.done_line()
            return
        if stack.poller_proc is not None and stack.poller_proc.poll() is not None:
            if progress is not None:
                progress.done_line()
            raise RuntimeError(
                f"the poller stopped (exit {stack.poller_proc.returncode}):\n"
                + local_stack.tail(stack.log_dir / "poller.log")
            )
        time.sleep(0.5)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal | float):  # probabilities; counts are int below
        return f"{float(value):.3f}"
    return str(value)


def results_table(results: Sequence[FileResult]) -> str:
    """One line per file: file, device, status, probability, label, windows, expected, reason."""
    header = ("file", "device", "status", "prob", "label", "windows", "expected", "reason")
    rows = []
    for r in results:
        item = r.item or {}
        reason = item.get("reason") or ("" if r.item else "no result in the table")
        expected = r.sample.expect + ("" if r.matches_expectation() or not r.item else " (!)")
        rows.append(
            (
                r.sample.path.split("/", 2)[2],
                f"{r.sample.site}/{r.sample.device}",
                r.status,
                _cell(item.get("probability")),
                _cell(item.get("label")),
                _cell(None if item.get("windows") is None else int(item["windows"])),
                expected,
                _cell(reason),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    widths[-1] = len(header[-1])  # the reason is last and not padded
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# modes


def isolate_from_aws() -> None:
    """Make sure nothing this process does can reach AWS: no profile, no per-service
    endpoint, only the local stack's placeholder keys and region."""
    for name in list(os.environ):
        if name in local_stack.DROP_FROM_ENV or name.startswith("AWS_ENDPOINT_URL"):
            os.environ.pop(name)
    os.environ.update(local_stack.local_env())


def use_stack_env(stack: LocalStack) -> None:
    """Point this process's AWS SDK at the stack."""
    isolate_from_aws()
    os.environ.update(stack.client_env())


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so `finally` blocks stop what was started."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(args: argparse.Namespace) -> int:
    progress = Progress()
    model_dir, code_dir, where = model_source(args.archive, args.work_dir, args.model_dir)
    progress.step(f"model: {where}")
    progress.step("writing sample files")
    # Its own directory, so a demo never disturbs a stack left running by `up`.
    run_dir = args.work_dir / "demo"
    sample_dir = run_dir / "samples"
    shutil.rmtree(sample_dir, ignore_errors=True)
    samples = sample_files.write_samples(sample_dir)
    progress.step(f"  {len(samples)} files in {_shown(sample_dir)}")
    progress.step("starting moto (S3, SQS, DynamoDB), the local endpoint and the poller")
    stack: LocalStack | None = None
    with stop_on_signals():
        try:
            stack = local_stack.start(
                model_dir,
                code_dir,
                run_dir,
                visibility_timeout_s=args.visibility_timeout,
            )
            use_stack_env(stack)
            progress.step(
                f"  moto {stack.resources.moto_url}, endpoint {stack.endpoint_name} at "
                f"{stack.endpoint_url}, logs in {_shown(stack.log_dir)}/"
            )
            progress.step(f"uploading to s3://{stack.resources.bucket}/{INGEST_PREFIX}")
            keys = upload(boto3.client("s3"), stack.resources.bucket, sample_dir, samples)
            results = [FileResult(s, k) for s, k in zip(samples, keys, strict=True)]
            progress.step("waiting for every file to be scored, rejected or dead-lettered")
            wait_for_results(stack, results, args.timeout, progress)
        except KeyboardInterrupt:
            progress.done_line()
            say("interrupted; stopping the local stack")
            return 130
        finally:
            if stack is not None:
                stack.stop()
    progress.step("stopped the local stack")
    say("")
    say(results_table(results))
    say("")
    missing = [r for r in results if not r.accounted]
    surprises = [r for r in results if r.accounted and not r.matches_expectation()]
    say(
        f"{len(results)} files: {sum(r.status == 'SCORED' for r in results)} scored, "
        f"{sum(r.status == 'REJECTED' for r in results)} rejected, "
        f"{sum(r.in_dlq for r in results)} in the DLQ, {len(missing)} unaccounted for; "
        f"{time.monotonic() - progress.started:.1f} s"
    )
    if surprises:
        say(f"{len(surprises)} result(s) differ from what the sample was made to be (marked (!))")
    if missing:
        say(f"not every file has a result: see the logs in {_shown(run_dir / 'logs')}/")
        return 1
    return 0


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
    return [f"export {k}={v}" for k, v in local_stack.client_env(state).items()]


def _shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def instructions(state: dict[str, Any], pid: int, work_dir: Path) -> str:
    moto, bucket, prefix = state["moto_url"], state["bucket"], state["ingest_prefix"]
    rel = _shown(work_dir / "env.sh")
    return "\n".join(
        [
            f"Local stack running (pid {pid}); logs in {state['logs']}",
            f"  S3, SQS, DynamoDB (moto): {moto}",
            f"  SageMaker runtime:        {state['endpoint_url']} (endpoint "
            f"{state['endpoint_name']})",
            f"  bucket {bucket}, table {state['table']}",
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
            f"{_shown(work_dir / 'samples')}/SITE/DEVICE/FILE)",
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
    model_dir, code_dir, _ = model_source(args.archive, work_dir, args.model_dir)
    stopping = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    stack = local_stack.start(
        model_dir, code_dir, work_dir / "stack", visibility_timeout_s=args.visibility_timeout
    )
    try:
        state = stack.describe()
        (work_dir / "env.sh").write_text("\n".join(env_lines(state)) + "\n", encoding="utf-8")
        (work_dir / "stack.pid").write_text(str(os.getpid()), encoding="utf-8")
        tmp = work_dir / "stack.json.tmp"
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        tmp.replace(work_dir / "stack.json")
        while not stopping:
            for name, proc in (("endpoint", stack.endpoint_proc), ("poller", stack.poller_proc)):
                if proc is not None and proc.poll() is not None:
                    say(f"{name} exited with {proc.returncode}; stopping the stack")
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
        if args.model_dir:
            command += ["--model-dir", str(args.model_dir)]
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
                say(f"the local stack did not start:\n{local_stack.tail(log, 30)}")
                return 1
            if time.monotonic() > deadline:
                local_stack.stop_process(proc)
                say(f"the local stack did not start in {args.timeout:.0f} s:")
                say(local_stack.tail(log))
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


def write_sample_files(args: argparse.Namespace) -> int:
    out = args.work_dir / "samples"
    shutil.rmtree(out, ignore_errors=True)
    written = sample_files.write_samples(out)
    for sample in written:
        say(f"{out / sample.path}  ({sample.what}; expect {sample.expect})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ecg_scorer.local.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "mode", nargs="?", default="run", choices=("run", "up", "down", "serve", "samples")
    )
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help="model.tar.gz to serve")
    parser.add_argument(
        "--model-dir", type=Path, help="serve this model.pth + config.json with model_code/ instead"
    )
    parser.add_argument(
        "--timeout", type=float, default=240.0, help="seconds to wait for results (or start-up)"
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=None,
        help=f"queue visibility timeout, s (run: {DEMO_VISIBILITY_TIMEOUT_S}; up: the template's)",
    )
    args = parser.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    isolate_from_aws()
    if args.mode == "run":
        args.visibility_timeout = args.visibility_timeout or DEMO_VISIBILITY_TIMEOUT_S
        try:
            return run_demo(args)
        except KeyboardInterrupt:
            return 130
        except (RuntimeError, FileNotFoundError) as e:  # a part did not start or stopped
            say(f"demo failed: {e}")
            return 1
    return {"up": up, "down": down, "serve": serve, "samples": write_sample_files}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
