"""The deploy_model.py command line: each command's flags, flag values, and main().

One small function per command adds its flags; main() runs the command and turns errors
into one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ecg_scorer import args as types
from ecg_scorer import times
from ecg_scorer.deploy import ToolError, commands
from ecg_scorer.deploy.archive import CONFIG, DEFAULT_CODE_DIR, DEFAULT_MODEL_DIR, MAX_UNPACKED_MIB
from ecg_scorer.deploy.identity import ARCHIVE_DIR, PREFIX_ROOT
from ecg_scorer.deploy.invoke import JSON, MAX_REQUEST_BYTES, NPY
from ecg_scorer.deploy.preflight import ROLE_ENV
from ecg_scorer.deploy.rollout import SERVERLESS_MEMORY_MB

DESCRIPTION = (
    "Package, check, deploy, invoke, watch and remove the ECG model on SageMaker Serverless "
    "Inference."
)
EPILOG = (
    "AWS credentials and region come from boto3's standard configuration (AWS_PROFILE, "
    f"AWS_DEFAULT_REGION, ...). The execution role comes from --role or {ROLE_ENV}."
)
DEFAULT_ENDPOINT = "cnn1d-lstm-ecg-v1"
DEFAULT_ARCHIVE = f"{ARCHIVE_DIR}/<model_version>_sagemaker.tar.gz"
Subparsers = Any  # argparse's _SubParsersAction, private in typeshed


# ----------------------------------------------------------------------------------------------
# flag values


def memory(text: str) -> int:
    value = int(text)
    if value not in SERVERLESS_MEMORY_MB:
        raise argparse.ArgumentTypeError(
            f"{text}: serverless memory is one of {', '.join(map(str, SERVERLESS_MEMORY_MB))} MB"
        )
    return value


class _Deprecated(argparse.Action):
    """A former spelling of a flag: still works, says which one to use."""

    def __init__(self, *args: Any, replacement: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replacement = replacement

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
        option_string: str | None = None,
    ) -> None:  # fmt: skip
        print(f"warning: {option_string} is deprecated; use {self.replacement}", file=sys.stderr)
        setattr(namespace, self.dest, values)


# ----------------------------------------------------------------------------------------------
# flags shared by several commands


def _endpoint_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--endpoint-name",
        default=DEFAULT_ENDPOINT,
        help=f"SageMaker endpoint name (default {DEFAULT_ENDPOINT})",
    )


def _role_bucket(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", help=f"SageMaker execution role ARN (default: ${ROLE_ENV})")
    p.add_argument(
        "--bucket", help="S3 bucket for the model archive (default sagemaker-<region>-<account>)"
    )
    p.add_argument(
        "--max-concurrency",
        type=types.positive,
        default=10,
        help="serverless MaxConcurrency, checked against the account quota (default 10)",
    )


def _unpack_limit(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-unpacked-mib",
        type=types.positive,
        default=MAX_UNPACKED_MIB,
        help="refuse an archive whose members unpack to more than this many MiB, in all "
        f"or one member, checked before reading them (default {MAX_UNPACKED_MIB})",
    )


def _packaging(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-dir",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="folder with model.pth and config.json from training (default models/demo)",
    )
    p.add_argument(
        "--code-dir",
        type=Path,
        default=DEFAULT_CODE_DIR,
        help="folder with inference.py, model.py, requirements.txt (default model_code/)",
    )


# ----------------------------------------------------------------------------------------------
# one function per command


def _package(sub: Subparsers) -> None:
    p = sub.add_parser("package", help="build the model archive (deterministic)")
    _packaging(p)
    p.add_argument(
        "--out",
        type=Path,
        help=f"archive to write (default {DEFAULT_ARCHIVE}, the version from the model's {CONFIG})",
    )
    p.set_defaults(func=commands.cmd_package)


def _check(sub: Subparsers) -> None:
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
    _unpack_limit(p)
    p.set_defaults(func=commands.cmd_check)


def _preflight(sub: Subparsers) -> None:
    p = sub.add_parser("preflight", help="check credentials, role, bucket and quota")
    _role_bucket(p)
    p.set_defaults(func=commands.cmd_preflight)


def _deploy(sub: Subparsers) -> None:
    p = sub.add_parser("deploy", help="package, check, upload and create or update the endpoint")
    _endpoint_flag(p)
    _role_bucket(p)
    _packaging(p)
    _unpack_limit(p)
    p.add_argument(
        "--archive",
        type=Path,
        help=f"archive to deploy as it is (default: --model-dir packaged to {DEFAULT_ARCHIVE})",
    )
    p.add_argument(
        "--prefix",
        help="S3 key prefix; the archive goes to <prefix>/<sha256>/model.tar.gz "
        f"(default {PREFIX_ROOT}/<model_version>)",
    )
    p.add_argument(
        "--memory",
        type=memory,
        default=3072,
        help="serverless memory in MB: 1024, 2048, 3072, 4096, 5120 or 6144 (default 3072)",
    )
    p.add_argument(
        "--provisioned-concurrency",
        type=types.positive,
        help="serverless ProvisionedConcurrency (warm containers, billed while idle)",
    )
    p.add_argument(
        "--image-uri",
        help="container image (default: the SageMaker SDK's PyTorch 2.0.0 py310 CPU image)",
    )
    p.add_argument(
        "--create-bucket", action="store_true", help="create the bucket if it does not exist"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, change nothing (without credentials: the plan from the archive "
        "and the flags, and what could not be checked)",
    )
    p.add_argument("--no-wait", action="store_true", help="return once the change is submitted")
    p.add_argument(
        "--timeout", type=float, default=1800, help="seconds to wait for InService (default 1800)"
    )
    p.add_argument(
        "--poll", type=float, default=15, help="seconds between status polls (default 15)"
    )
    p.set_defaults(func=commands.cmd_deploy)


def _invoke(sub: Subparsers) -> None:
    p = sub.add_parser("invoke", help="score an ECG file on an endpoint")
    p.add_argument("file", type=Path, help="ECG file: seed JSON, .npy windows, or a recording")
    p.add_argument(
        "--endpoint-name",
        default=DEFAULT_ENDPOINT,
        help="endpoint name or runtime URL https://runtime.sagemaker.<region>.amazonaws.com/"
        f"endpoints/<name>/invocations (default {DEFAULT_ENDPOINT})",
    )
    p.add_argument(
        "--endpoint",
        dest="endpoint_name",
        action=_Deprecated,
        replacement="--endpoint-name",
        help=argparse.SUPPRESS,
    )
    p.add_argument(
        "--content-type",
        choices=("auto", JSON, NPY),
        default="auto",
        help="request format (default: JSON for seed JSON files, application/x-npy for "
        "everything else)",
    )
    p.add_argument(
        "--batch",
        type=types.positive,
        help="at most this many windows per request (default: as many as fit in a "
        f"{MAX_REQUEST_BYTES}-byte request body, the serverless payload limit)",
    )
    p.add_argument(
        "--model-config",
        type=Path,
        help="the model's config.json, model folder or archive, for the leads, rate, window "
        f"and model version to expect (default {DEFAULT_MODEL_DIR / CONFIG}, else the one "
        f"archive in {ARCHIVE_DIR}/)",
    )
    p.add_argument("--json", action="store_true", help="print the results as one JSON list")
    p.set_defaults(func=commands.cmd_invoke)


def _status(sub: Subparsers) -> None:
    p = sub.add_parser("status", help="endpoint state, configuration and recent metrics")
    _endpoint_flag(p)
    p.add_argument(
        "--minutes", type=types.positive, default=60, help="metrics window in minutes (default 60)"
    )
    p.set_defaults(func=commands.cmd_status)


def _logs(sub: Subparsers) -> None:
    p = sub.add_parser("logs", help="CloudWatch log lines of the endpoint")
    _endpoint_flag(p)
    p.add_argument(
        "--since",
        type=types.time,
        default="1h",
        help=f"start (default 1h): {times.HELP}",
    )
    p.add_argument("--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    p.add_argument(
        "--poll", type=float, default=5, help="seconds between polls with --follow (default 5)"
    )
    p.set_defaults(func=commands.cmd_logs)


def _delete(sub: Subparsers) -> None:
    p = sub.add_parser("delete", help="delete the endpoint, its configs and models")
    _endpoint_flag(p)
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
    p.set_defaults(func=commands.cmd_delete)


COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _package,
    _check,
    _preflight,
    _deploy,
    _invoke,
    _status,
    _logs,
    _delete,
)


def build_parser() -> argparse.ArgumentParser:
    """The argparse CLI; every flag has help."""
    parser = argparse.ArgumentParser(prog="deploy_model.py", description=DESCRIPTION, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
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
