"""The local stack's pieces without the stack: the template reader, the Lambda event and
batch rules, the function's execution environments (timeout, memory size, concurrency), the
runtime API's error mapping, the fallbacks, the samples and the demo's table."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from moto import mock_aws
from scorer import config as scorer_config
from scorer import endpoint as scorer_endpoint
from scorer import schema
from scorer.errors import SystemFault

from ecg_scorer.local import (
    artifacts,
    demo,
    poller,
    runtime_api,
    sam_template,
    samples,
    stack,
)
from ecg_scorer.local.function import FunctionCode, FunctionRuntime
from ecg_scorer.local.runtime_api import TIMED_OUT, ModelAnswer

REPO = Path(__file__).resolve().parent.parent
RESULT_TIMEOUT_S = 180.0
JSON = "application/json"


# ------------------------------------------------------------------ no servers


def test_lambda_gets_every_variable_it_requires_from_template_and_model_config() -> None:
    template = sam_template.load_template()
    resources = sam_template.Resources(
        moto_url="http://127.0.0.1:1",
        bucket="b",
        queue_url="http://127.0.0.1:1/123456789012/q",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:q",
        dead_letter_queue_url="http://127.0.0.1:1/123456789012/dlq",
        dead_letter_queue_arn="arn:aws:sqs:us-east-1:123456789012:dlq",
        table="t",
    )
    model_config = {
        "model_version": "m_v9",
        "leads": ["I", "II", "V2"],
        "sampling_rate_hz": 200,
        "window_samples": 2000,
    }
    settings = sam_template.lambda_settings(
        template, sam_template.LocalNames(), resources, model_config, "ep"
    )

    loaded = scorer_config.load_settings(settings.environment)
    assert loaded.predictions_table == "t"
    assert loaded.endpoint_name == "ep"
    assert loaded.model_version == "m_v9"
    assert loaded.model_leads == ("I", "II", "V2")
    assert settings.report_batch_item_failures
    assert settings.batch_size >= 1
    assert settings.max_concurrency >= 2  # the smallest MaximumConcurrency Lambda accepts


def test_local_table_has_the_template_keys_and_schema_indexes() -> None:
    definition = sam_template.table_definition(sam_template.load_template(), "t")
    indexes = {
        i["IndexName"]: tuple(k["AttributeName"] for k in i["KeySchema"])
        for i in definition["GlobalSecondaryIndexes"]
    }
    assert indexes == schema.INDEXES
    assert [k["AttributeName"] for k in definition["KeySchema"]] == [schema.PK, schema.SK]


def test_sqs_records_read_like_lambda_events() -> None:
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh-1",
        "Body": '{"Records": []}',
        "MD5OfBody": "d41d8cd98f00b204e9800998ecf8427e",
        "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000000"},
        "MessageAttributes": {"trace": {"StringValue": "x", "DataType": "String"}},
    }
    arn = "arn:aws:sqs:us-east-1:123456789012:q"
    event = SQSEvent({"Records": [poller.sqs_record(message, arn, "us-east-1")]})
    record = next(iter(event.records))

    assert record.message_id == "m-1"
    assert record.receipt_handle == "rh-1"
    assert record.attributes.approximate_receive_count == "3"
    assert record.message_attributes["trace"].string_value == "x"
    assert record.event_source == "aws:sqs"
    assert record.event_source_arn == arn
    assert record.aws_region == "us-east-1"
    assert record.md5_of_body == message["MD5OfBody"]


@pytest.mark.parametrize(
    ("response", "kept"),
    [
        ({"batchItemFailures": []}, set()),
        (None, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b", "c"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b", "c"}),
        ({"batchItemFailures": "b"}, {"a", "b", "c"}),
    ],
)
def test_batch_item_failures_follow_lambda_rules(response: Any, kept: set[str]) -> None:
    assert poller.failed_ids(response, {"a", "b", "c"}) == kept


def test_without_python_312_the_function_falls_back_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(artifacts, "LAMBDA_VENV", tmp_path / "no-venv")
    parts = artifacts.find_parts(sam_template.load_template(), light_endpoint=True)
    assert not parts.function.is_artifact
    assert parts.function.code_dir == REPO / "functions"
    assert any("NOT the deployed function" in n and "python3.12" in n for n in parts.notices)
    lines = artifacts.what_runs(parts, "5")
    assert lines[0].startswith("STAND-IN") and lines[1].startswith("STAND-IN")


TOOLKIT_ERROR = (
    b"body is not valid JSON: Expecting value\n"
    b"Traceback (most recent call last):\n"
    b'  File "/srv/sagemaker_inference/transformer.py", line 142, in transform\n'
    b"RequestError: (400, 'body is not valid JSON')\n"
)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (ModelAnswer(400, TOOLKIT_ERROR), "body is not valid JSON: Expecting value"),
        (ModelAnswer(413, b""), "Request Entity Too Large"),  # TorchServe's own limit
        (ModelAnswer(0, TIMED_OUT.encode()), TIMED_OUT),
    ],
)
def test_container_errors_reach_the_caller_without_tracebacks(
    answer: ModelAnswer, message: str
) -> None:
    assert runtime_api.original_message(answer) == message


@pytest.mark.slow
def test_runtime_api_turns_container_errors_into_model_errors() -> None:
    answers = iter([ModelAnswer(400, TOOLKIT_ERROR), ModelAnswer(0, TIMED_OUT.encode())])
    server = runtime_api.make_server("ep", lambda body, ctype, accept: next(answers), stack.HOST)
    runtime_api.serve_in_thread(server)
    try:
        client = boto3.client(
            "sagemaker-runtime",
            endpoint_url=f"http://{stack.HOST}:{server.server_address[1]}",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        errors = []
        for _ in range(2):
            with pytest.raises(client.exceptions.ModelError) as caught:
                client.invoke_endpoint(EndpointName="ep", Body=b"{}", ContentType=JSON)
            errors.append(caught.value)
    finally:
        server.shutdown()
        server.server_close()
    refused, timed_out = errors
    assert refused.response["OriginalStatusCode"] == 400
    assert "Traceback" not in refused.response["Message"]
    assert isinstance(scorer_endpoint.classify(refused), SystemFault)  # our request, not data
    assert timed_out.response["OriginalStatusCode"] == 0
    assert isinstance(scorer_endpoint.classify(timed_out), scorer_endpoint.ModelCrashed)


_HANDLER_MODULE = """
import os, time

def handler(event, context):
    for record in event["Records"]:
        kind, _, arg = record["body"].partition(":")
        if kind == "slow":  # say where it runs, then outlast any test's timeout
            with open(arg, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(600)
        if kind == "hog":  # touch this many MB, and hold them longer than a sample
            hog = bytearray(int(arg) * 2**20)
            for i in range(0, len(hog), 4096):
                hog[i] = 1
            time.sleep(0.3)
        if kind == "span":  # take a while, then note when it ran
            start = time.time()
            time.sleep(1.5)
            with open(arg, "a") as f:
                f.write(f"{start} {time.time()}\\n")
    return {"batchItemFailures": []}
"""
MEMORY_MB = 256


def _test_function(code_dir: Path) -> FunctionRuntime:
    """An execution environment running the test handler above on the dev venv's Python."""
    (code_dir / "poller_test_handler.py").write_text(_HANDLER_MODULE, encoding="utf-8")
    code = FunctionCode(Path(sys.executable), code_dir, "poller_test_handler.handler", "", False)
    env = {"PATH": os.environ["PATH"], "AWS_LAMBDA_FUNCTION_NAME": "fn"}
    return FunctionRuntime(code, env, MEMORY_MB)


@pytest.fixture
def function_runtime(tmp_path: Path) -> Iterator[FunctionRuntime]:
    runtime = _test_function(tmp_path)
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


def _in_flight(sqs: Any, url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attrs[names[0]]), int(attrs[names[1]])


@pytest.mark.slow
def test_a_batch_over_the_timeout_is_stopped_and_left_whole_in_the_queue(
    function_runtime: FunctionRuntime, tmp_path: Path
) -> None:
    marker = tmp_path / "slow.pid"
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
        for body in ("fast-1", f"slow:{marker}", "fast-2"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        local = poller.Poller(sqs, url, function_runtime, timeout_s=2.0, wait_seconds=0)

        outcome = local.poll_once()
        assert outcome is not None
        assert (outcome.received, outcome.deleted, len(outcome.failed)) == (3, 0, 3)
        assert outcome.error is not None and "timed out" in outcome.error
        # Nothing deleted: all three wait out the visibility timeout, then come back.
        assert _in_flight(sqs, url) == (0, 3)
        # The handler was stopped, not left running in the background.
        with pytest.raises(ProcessLookupError):
            os.kill(int(marker.read_text(encoding="utf-8")), 0)

        # The next batch gets a fresh environment and is handled as usual.
        sqs.send_message(QueueUrl=url, MessageBody="fast-3")
        again = local.poll_once()
        assert again is not None
        assert (again.received, again.deleted, again.failed, again.error) == (1, 1, [], None)
        assert _in_flight(sqs, url) == (0, 3)


@pytest.mark.slow
def test_a_function_over_its_memory_size_is_killed_and_its_batch_kept(
    function_runtime: FunctionRuntime,
) -> None:
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
        for body in ("fast-1", f"hog:{2 * MEMORY_MB}"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        local = poller.Poller(sqs, url, function_runtime, timeout_s=60.0, wait_seconds=0)

        outcome = local.poll_once()
        assert outcome is not None
        assert (outcome.received, outcome.deleted) == (2, 0)
        assert outcome.error is not None and "signal: killed" in outcome.error
        assert f"MemorySize {MEMORY_MB} MB" in outcome.error

        # Within the limit, the same handler runs in a fresh environment.
        sqs.send_message(QueueUrl=url, MessageBody=f"hog:{MEMORY_MB // 4}")
        again = local.poll_once()
        assert again is not None and again.error is None and again.deleted == 1
        assert again.max_memory_mb > MEMORY_MB // 4


@pytest.mark.slow
def test_batches_run_side_by_side_up_to_the_maximum_concurrency(tmp_path: Path) -> None:
    spans = tmp_path / "spans.txt"
    pool = []
    for n in range(2):
        (tmp_path / str(n)).mkdir()
        pool.append(_test_function(tmp_path / str(n)))
    with mock_aws():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        for _ in range(4):
            sqs.send_message(QueueUrl=url, MessageBody=f"span:{spans}")
        local = poller.Poller(sqs, url, pool[0], timeout_s=60.0, batch_size=1, wait_seconds=0)
        deadline = time.monotonic() + 60

        def until_done() -> bool:
            left = sum(_in_flight(sqs, url))
            return left > 0 and time.monotonic() < deadline

        try:
            local.run(pool, keep_going=until_done)
        finally:
            for runtime in pool:
                runtime.stop()
    runs = [tuple(map(float, line.split())) for line in spans.read_text().splitlines()]
    assert len(runs) == 4
    # Two environments: two invocations at a time, never three.
    moments = sorted({t for run in runs for t in run})
    running = [sum(start <= t < end for start, end in runs) for t in moments]
    assert max(running) == 2


def test_samples_cover_every_format_and_bad_files(tmp_path: Path) -> None:
    written = samples.write_samples(tmp_path, shared=tmp_path / "absent")
    suffixes = {Path(s.path).suffix for s in written if s.expect != samples.REJECTED}
    assert suffixes == {".json", ".csv", ".npy", ".npz"}
    assert {s.expect for s in written} >= {samples.NORMAL, samples.ANOMALOUS, samples.REJECTED}
    for sample in written:
        assert (tmp_path / sample.path).is_file()
        assert len(sample.path.split("/")) == 3  # site/device/file, as below incoming/


def test_demo_table_names_every_file_and_why_it_has_no_score() -> None:
    rejected = demo.FileResult(
        samples.Sample("s/d/short.json", samples.REJECTED, ""),
        "incoming/s/d/short.json",
        item={"status": "REJECTED", "reason": "the recording lasts 4.0 s"},
    )
    scored = demo.FileResult(
        samples.Sample("s/d/af.csv", samples.ANOMALOUS, ""),
        "incoming/s/d/af.csv",
        item={"status": "SCORED", "probability": Decimal("0.25"), "label": "normal", "windows": 2},
    )
    dead = demo.FileResult(samples.Sample("s/d/x.npy", samples.NORMAL, ""), "k", in_dlq=True)
    missing = demo.FileResult(samples.Sample("s/d/y.npy", samples.NORMAL, ""), "k2")
    lines = demo.results_table([rejected, scored, dead, missing]).splitlines()

    assert "the recording lasts 4.0 s" in lines[2]
    assert "0.250" in lines[3] and "anomalous (!)" in lines[3]  # the model missed it
    assert "IN DLQ" in lines[4]
    assert "MISSING" in lines[5] and "no result in the table" in lines[5]
    assert [r.accounted for r in (rejected, scored, dead, missing)] == [True, True, True, False]
