"""Shared fixtures. Fake credentials and a region are set before anything imports boto3, so
no test can reach real AWS or the EC2 metadata address."""

import os

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SECURITY_TOKEN="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
    POWERTOOLS_SERVICE_NAME="ecg-scorer",
    POWERTOOLS_METRICS_NAMESPACE="EcgScorer",
    POWERTOOLS_TRACE_DISABLED="true",
)
for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(name, None)

import importlib  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import boto3  # noqa: E402
import pytest  # noqa: E402
from moto import mock_aws  # noqa: E402
from scorer_helpers import BUCKET, ENV, QUEUE, create_table  # noqa: E402

from ecg_scorer.local.aws import atomic_item_updates  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_ECG = REPO.parent / "shared" / "data" / "ecg"
MODEL_DIR = REPO / "models" / "demo"  # the committed demo model


@pytest.fixture
def shared_ecg() -> Path:
    """The real PhysioNet recordings beside the repo; tests that need them skip without them."""
    if not SHARED_ECG.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_ECG}")
    return SHARED_ECG


MODEL_CODE = REPO / "model_code"
# model_code's modules import each other flat (`from model import CNN1DLSTM`), as they do
# with code/ on sys.path in the container.
MODEL_CODE_MODULES = ("model", "inference", "synthetic", "train_data", "train", "model_card")


def _forget_model_code() -> None:
    for name in MODEL_CODE_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def model_code(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    """model_code's modules (``.model``, ``.synthetic``, ``.train_data``, ``.train``...), imported
    fresh with model_code/ on sys.path and forgotten afterwards, so no test sees another's."""
    _forget_model_code()
    monkeypatch.syspath_prepend(str(MODEL_CODE))
    yield types.SimpleNamespace(
        **{name: importlib.import_module(name) for name in MODEL_CODE_MODULES}
    )
    _forget_model_code()


# -- the scoring Lambda over moto (S3 bucket, PredictionsTable) ------------------------------


@pytest.fixture
def aws(monkeypatch):  # type: ignore[no-untyped-def]
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    atomic_item_updates()  # the handler's write pool updates job items from threads
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        sqs.create_queue(QueueName=QUEUE)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        create_table(dynamodb)
        yield SimpleNamespace(s3=s3, dynamodb=dynamodb, sqs=sqs)


@pytest.fixture
def app(aws):  # type: ignore[no-untyped-def]
    """The handler module, imported inside the mock (its clients are module-level)."""
    import scorer.app

    module = importlib.reload(scorer.app)
    module.metrics.clear_metrics()  # process_batch alone adds metrics that nothing flushes
    yield module
    module.metrics.clear_metrics()
