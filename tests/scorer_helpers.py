"""Shared helpers for the scoring Lambda's tests: sample events, a fake Lambda context, a
fake SageMaker runtime, synthetic ECG-like signals and the moto table built from
template.yaml (the same path the local stack takes)."""

from __future__ import annotations

import copy
import io
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import numpy as np
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from scorer import schema
from scorer.config import Settings, load_settings

from ecg_scorer.local.sam_template import load_template, table_definition

EVENTS = Path(__file__).resolve().parent.parent / "events"
BUCKET = "ecg-ingest-test"
TABLE = "PredictionsTable-test"
QUEUE = "scoring-test"
QUEUE_URL = f"https://sqs.us-east-1.amazonaws.com/123456789012/{QUEUE}"  # as moto names it
# The shipped demo model's version, so the real model's answers pass the version check.
MODEL_VERSION = json.loads(
    (Path(__file__).resolve().parent.parent / "models" / "demo" / "config.json").read_text()
)["model_version"]
ENV = {
    "PREDICTIONS_TABLE": TABLE,
    "SCORING_QUEUE_URL": QUEUE_URL,
    "ENDPOINT_NAME": "ecg-cnn1d-lstm-serverless",
    "MODEL_VERSION": MODEL_VERSION,
    "MODEL_LEADS": "I,II,V2",
    "MODEL_SAMPLING_RATE_HZ": "200",
    "WINDOW_SAMPLES": "2000",
    "MAX_FILE_BYTES": "3000000",
    "MAX_RECORDING_BYTES": str(4 * 2**30),
    "MAX_PAYLOAD_BYTES": str(4 * 1024 * 1024 - 64 * 1024),
    "POWERTOOLS_SERVICE_NAME": "ecg-scorer",
    "POWERTOOLS_METRICS_NAMESPACE": "EcgScorer",
    "LOG_LEVEL": "INFO",
}


def settings(**overrides: str) -> Settings:
    return load_settings({**ENV, **overrides})


def load_event(name: str) -> dict[str, Any]:
    """One of events/*.json, as `sam local invoke -e` would pass it."""
    return json.loads((EVENTS / name).read_text())


_sequencer = itertools.count(0x0066E1B9C2D6A70000)


def next_sequencer() -> str:
    return f"{next(_sequencer):018X}"


def s3_record(
    key: str,
    *,
    size: int,
    bucket: str = BUCKET,
    version_id: str | None = None,
    etag: str = "0123456789abcdef0123456789abcdef",
    sequencer: str | None = None,
    event_time: str = "2026-11-27T03:00:00.000Z",
) -> dict[str, Any]:
    """An S3 ObjectCreated:Put record shaped like the sample event, key URL-encoded as S3 does."""
    body = json.loads(load_event("sqs_s3_put.json")["Records"][0]["body"])
    record = copy.deepcopy(body["Records"][0])
    record["eventTime"] = event_time
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    obj = record["s3"]["object"]
    obj.update(key=quote_plus(key, safe="/"), size=size, eTag=etag)
    obj["sequencer"] = sequencer or next_sequencer()
    if version_id:
        obj["versionId"] = version_id
    else:
        obj.pop("versionId", None)
    return record


def sqs_event(messages: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """An SQS batch; each message body is an S3 notification holding the given records."""
    template = load_event("sqs_s3_put.json")["Records"][0]
    records = []
    for i, s3_records in enumerate(messages):
        message = copy.deepcopy(template)
        message["messageId"] = f"msg-{i:03d}"
        message["body"] = json.dumps({"Records": s3_records})
        records.append(message)
    return {"Records": records}


@dataclass
class FakeContext:
    """LambdaContext stand-in whose clock only moves when the code sleeps."""

    remaining_ms: float = 300_000
    function_name: str = "ScoreFunction"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ScoreFunction"
    aws_request_id: str = "52fdfc07-2182-454f-963f-5f0f9a621d72"
    slept: list[float] = field(default_factory=list)

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_ms)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.remaining_ms -= seconds * 1000


def client_error(
    code: str, status: int, operation: str = "InvokeEndpoint", **extra: Any
) -> ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": f"{code} (test)"},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


def lead_one_median(windows: np.ndarray) -> list[float]:
    """The fake model: a window's probability is the median of its first lead (lead I),
    clipped to [0, 1], so tests can put a known probability into each window."""
    return [float(np.clip(np.median(w[:, 0]), 0.0, 1.0)) for w in windows]


class FakeRuntime:
    """A sagemaker-runtime client: checks the request as the endpoint would and answers per
    contract 1 (one object for one window, a list for more). ``faults`` are raised first."""

    def __init__(
        self, faults: list[Exception | None] | None = None, model_version: str = MODEL_VERSION
    ):
        self.faults = list(faults or [])
        self.model_version = model_version
        self.calls: list[np.ndarray] = []
        self.refuse: set[float] = set()  # windows whose lead-I median is in here get a 400
        self.crash: set[float] = set()  # ... and these crash the container (500)

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["ContentType"] == "application/x-npy"
        windows = np.load(io.BytesIO(kwargs["Body"]), allow_pickle=False)
        self.calls.append(windows)
        if self.faults:
            fault = self.faults.pop(0)  # None: answer this call normally
            if fault is not None:
                raise fault
        assert windows.dtype == np.float32 and windows.shape[1:] == (2000, 3)
        probabilities = lead_one_median(windows)
        if any(round(p, 3) in self.refuse for p in probabilities):
            raise client_error(
                "ModelError", 424, OriginalStatusCode=400, OriginalMessage="signals hold NaN"
            )
        if any(round(p, 3) in self.crash for p in probabilities):
            raise client_error(
                "ModelError", 424, OriginalStatusCode=500, OriginalMessage="worker died"
            )
        answers = [
            {
                "prediction": p,
                "probability": p,
                "label": "anomalous" if p > 0.5 else "normal",
                "threshold": 0.5,
                "model_version": self.model_version,
            }
            for p in probabilities
        ]
        raw = json.dumps(answers[0] if len(answers) == 1 else answers).encode()
        return {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": "application/json"}


def ecg_like(
    seconds: float,
    fs: float,
    leads: tuple[str, ...] = ("I", "II", "V2"),
    levels: list[float] | None = None,
    qrs: float = 1.5,
) -> np.ndarray:
    """[T, C] mV: a 1.2 Hz wave (whole periods in every 10-s window, so its median is 0)
    with a QRS-like spike per beat, on a baseline that steps every 10 s through ``levels``
    in lead I. Other leads sit higher (II +2, V2 +3, others +4) so a lead mix-up shows in the
    fake model's answer.

    The spikes (20 ms down then 20 ms up, at each downward zero crossing of the wave) give
    the windows the QRS complexes signal quality looks for; the down half takes samples that
    were above the median and the up half as many that were below, so a window's median
    stays its level."""
    t = np.arange(round(seconds * fs)) / fs
    levels = levels or [0.25]
    base = np.asarray(levels)[np.minimum((t // 10).astype(int), len(levels) - 1)]
    offsets = {"i": 0.0, "ii": 2.0, "v2": 3.0}
    wave = np.sin(2 * np.pi * 1.2 * t)
    down = np.flatnonzero((wave[:-1] > 0) & (wave[1:] <= 0)) + 1
    n = max(1, round(0.02 * fs))
    beat = np.zeros_like(t)
    for j in down[(down >= n) & (down + n <= t.size)]:
        beat[j - n : j], beat[j : j + n] = -qrs, qrs
    phases = {"i": 0.0, "ii": 1.0, "v2": 2.0}  # by name: lead I's wave is always `wave`
    columns = [
        0.5 * np.sin(2 * np.pi * 1.2 * t + phases.get(name.lower(), 3.0))
        + beat
        + base
        + offsets.get(name.lower(), 4.0)
        for name in leads
    ]
    return np.stack(columns, axis=1)


def create_table(dynamodb: Any, name: str = TABLE) -> None:
    """PredictionsTable as template.yaml defines it, built by the local stack's own code."""
    dynamodb.create_table(**table_definition(load_template(), name))


_deserializer = TypeDeserializer()


def all_items(dynamodb: Any, table: str = TABLE) -> list[dict[str, Any]]:
    """Every file's result item, not the device registry or long recordings' jobs (a test
    may scan; the product never does)."""
    items = dynamodb.scan(TableName=table)["Items"]
    decoded = [{k: _deserializer.deserialize(v) for k, v in item.items()} for item in items]
    return [item for item in decoded if item[schema.SK].startswith("MODEL#")]


def item_for(dynamodb: Any, key: str, bucket: str = BUCKET) -> dict[str, Any] | None:
    response = dynamodb.get_item(
        TableName=TABLE,
        Key={
            schema.PK: {"S": schema.file_pk(bucket, key)},
            schema.SK: {"S": schema.model_sk(MODEL_VERSION)},
        },
    )
    if "Item" not in response:
        return None
    return {k: _deserializer.deserialize(v) for k, v in response["Item"].items()}


class FlakyDynamo:
    """A DynamoDB client whose first ``failures`` put_item calls are throttled."""

    def __init__(self, client: Any, failures: int):
        self.client, self.failures, self.attempts = client, failures, 0

    def put_item(self, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise client_error("ProvisionedThroughputExceededException", 400, "PutItem")
        return self.client.put_item(**kwargs)


def upload(
    aws: Any, key: str, data: bytes, bucket: str = BUCKET, **metadata: str
) -> dict[str, Any]:
    """Put the object; return the S3 event record that S3 would send for it."""
    put = aws.s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata)
    return s3_record(
        key, size=len(data), bucket=bucket, version_id=put["VersionId"], etag=put["ETag"].strip('"')
    )


def run_batch(
    app: Any,
    aws: Any,
    event: dict,
    runtime: Any,
    context: FakeContext | None = None,
    dynamodb: Any = None,
    settings: Any = None,
) -> dict:
    """The handler's whole batch with moto's S3 and table and the given endpoint client."""
    context = context or FakeContext()
    clients = app.Clients(aws.s3, dynamodb or aws.dynamodb, runtime, aws.sqs)
    return app.process_batch(event, context, clients, settings or app.SETTINGS, sleep=context.sleep)


def json_bytes(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def csv_bytes(header: str, table: np.ndarray, comments: str = "") -> bytes:
    rows = "\n".join(",".join(f"{v:.5f}" for v in row) for row in table)
    return f"{comments}{header}\n{rows}\n".encode()


class InProcessEndpoint:
    """The real model_code/inference.py and the trained demo model behind the runtime API:
    what the serverless container would run, minus the HTTP server."""

    def __init__(self, inference: Any, model_dir: str):
        self.inference = inference
        self.model = inference.model_fn(model_dir)
        self.calls = 0

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        batch = self.inference.input_fn(kwargs["Body"], kwargs["ContentType"])
        answer, _ = self.inference.output_fn(
            self.inference.predict_fn(batch, self.model), kwargs["Accept"]
        )
        raw = answer.encode()
        return {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": "application/json"}
