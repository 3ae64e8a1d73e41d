"""Run one ``ecg-scorer`` command and turn what AWS says into one line that says what to do.

The command's module is imported only once its arguments parsed (``--help`` stays fast).
Exit status: 0 done, 1 AWS or the data said no (one line naming what to check), 2 a usage
mistake (with the command's own usage).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ecg_scorer.cli.parser import build_parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    module, _, function = args.run.partition(":")
    command = getattr(importlib.import_module(f"ecg_scorer.cli.{module}"), function)

    from ecg_scorer.cli import context  # boto3 and botocore: only once a command runs

    try:
        ctx = context.Context(args)
        return int(command(ctx, out))
    except ValueError as e:  # a usage mistake found after parsing: the command's own usage
        args.parser.error(str(e))
    except BrokenPipeError:
        # `ecg-scorer export | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
    except Exception as e:
        message = context.explain(e, args)
        if message is None:
            raise
        print(f"ecg-scorer: {message}", file=sys.stderr)
    return 1


def run(argv: Sequence[str] | None = None) -> Any:
    """The console script: exit with main's status."""
    sys.exit(main(argv))
