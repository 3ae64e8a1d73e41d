"""The local stack: the whole pipeline on one machine, with no AWS account.

moto's server stands in for S3, SQS and DynamoDB (`aws`), built from template.yaml
(`sam_template`); a small HTTP server speaks the SageMaker runtime ``InvokeEndpoint`` API over
the real ``model_code/inference.py`` (`endpoint`); a poller hands SQS batches to the
unchanged Lambda handler (`poller`). `stack` starts and stops the pieces, `demo` runs them
end to end (``make demo``) and `daemon` leaves them running (``make local-up``).
"""

from __future__ import annotations

import logging
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"  # loopback only: the local stack never listens on other interfaces


def log_to_stderr(logger: logging.Logger, name: str) -> None:
    """Send a local tool's own lines to stderr, without configuring the root logger (which
    the code under test configures as it does in its real runtime)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
