"""The local stack end to end, as `make demo` runs it: files uploaded through S3 travel the
queue and the poller to the SAM-built function on Python 3.12, which scores them through
TorchServe and the SageMaker toolkit into DynamoDB; every file is accounted for; a re-upload
is scored again; a message that keeps failing lands in the DLQ after 5 receives and
`ecg-scorer redrive` replays it once fixed; the query tool returns what was stored. Servers
listen on 127.0.0.1 only; nothing reaches AWS."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from scorer import endpoint as scorer_endpoint
from scorer.errors import SystemFault
from scorer_helpers import ecg_like

from ecg_scorer import cli
from ecg_scorer.local import (
    demo,
    processes,
    samples,
    stack,
)

REPO = Path(__file__).resolve().parent.parent
RESULT_TIMEOUT_S = 180.0
JSON = "application/json"


# ------------------------------------------------------------------ the running stack


@pytest.fixture(scope="module")
def running() -> Iterator[stack.LocalStack]:
    """The stack as `make demo` runs it: the packaged model under the SageMaker toolkit and
    TorchServe, the `sam build` artifact on Python 3.12. No fallback here: a machine without
    them fails, naming what to install (`make test` builds what it can)."""
    if not stack.ARCHIVE.is_file():
        pytest.fail(f"{stack.ARCHIVE} missing: make {stack.shown(stack.ARCHIVE)} (make test does)")
    work = REPO / "build" / "test-local-stack"
    shutil.rmtree(work, ignore_errors=True)  # fresh logs: a test reads the poller's
    # Shorter than the template's, so a failed message comes back within the test's patience;
    # longer than a Holter chunk's invocation on a loaded machine, or a message still being
    # handled would be delivered again (and again, to the DLQ). The DLQ test sets its own.
    local = stack.start(stack.ARCHIVE, work, visibility_timeout_s=120)
    if local.parts.notices:
        local.stop()
        pytest.fail("the local stack fell back: " + " ".join(local.parts.notices))
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in local.client_env().items():
                mp.setenv(name, value)
            yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def uploaded(running: stack.LocalStack) -> list[demo.FileResult]:
    """Every demo sample (with the real recordings when present) uploaded and waited for."""
    root = running.work_dir / "samples"
    written = samples.write_samples(root)
    keys = demo.upload(boto3.client("s3"), running.resources.bucket, root, written)
    results = [demo.FileResult(s, k) for s, k in zip(written, keys, strict=True)]
    demo.wait_for_results(running, results, RESULT_TIMEOUT_S)
    return results


def run_cli(*argv: str) -> str:
    out = io.StringIO()
    assert cli.main(list(argv), out=out) == 0
    return out.getvalue()


@pytest.mark.slow
def test_files_are_scored_by_torchserve_and_the_sam_built_function_on_python_312(
    running: stack.LocalStack, uploaded: list[demo.FileResult]
) -> None:
    scored = [r for r in uploaded if r.item is not None and r.item["status"] == "SCORED"]
    assert len(scored) >= 10
    # The function ran from the sam build artifact, on the template's runtime.
    ready = json.loads((running.work_dir / "poller.ready").read_text(encoding="utf-8"))
    assert ready["python"].startswith("3.12.")
    assert running.parts.function.code_dir == REPO / ".aws-sam" / "build" / "ScoreFunction"
    assert (running.parts.function.code_dir / "numpy").is_dir()  # its own packages, not ours
    # Its endpoint calls were answered by TorchServe (its access log), every worker READY.
    assert running.model_server is not None
    assert {w["status"] for w in running.model_server.workers()} == {"READY"}
    access = (running.model_server.log_dir / "access_log.log").read_text(encoding="utf-8")
    assert access.count('"POST /invocations HTTP/1.1" 200') >= 1  # a batch of 100 fits one call


@pytest.mark.slow
def test_every_uploaded_file_ends_scored_or_rejected(uploaded: list[demo.FileResult]) -> None:
    missing = [r.key for r in uploaded if r.item is None]
    assert missing == []
    for r in uploaded:
        assert r.item is not None
        if r.sample.expect == samples.REJECTED:
            assert r.item["status"] == "REJECTED", r.key
            assert len(r.item["reason"]) > 10, r.key
        else:
            assert r.item["status"] == "SCORED", (r.key, r.item.get("reason"))
            assert 0.0 <= float(r.item["probability"]) <= 1.0
            assert r.item["windows"] >= 1
        assert (r.item["site"], r.item["device"]) == (r.sample.site, r.sample.device)


@pytest.mark.slow
def test_device_formats_end_as_one_item_per_recording(uploaded: list[demo.FileResult]) -> None:
    """WFDB parts share their header's item; the 24-h EDF Holter, read in hour-long chunks by
    separate invocations, is one item of 8,640 windows."""
    by_key = {r.key: r for r in uploaded}
    holter = by_key["incoming/ward-c/holter-5/holter_24h.edf"]
    assert holter.item is not None and holter.item["status"] == "SCORED"
    assert holter.item["windows"] == 24 * 360
    assert str(holter.item["windows_s3_uri"]).startswith("s3://")
    parts = [r for r in uploaded if r.sample.part_of is not None]
    if not parts:
        pytest.skip("real WFDB recordings not found beside the repo")
    for part in parts:
        header = by_key[demo.INGEST_PREFIX + part.sample.part_of]
        assert part.item is not None and part.item == header.item  # one record, one item
    zipped = by_key["incoming/physionet/zip/s0010_re.zip"]
    assert zipped.item is not None and zipped.item["status"] == "SCORED"


@pytest.mark.slow
def test_query_tool_returns_what_was_stored(
    running: stack.LocalStack, uploaded: list[demo.FileResult]
) -> None:
    items = {r.item_key: r.item for r in uploaded if r.item is not None}
    bucket = running.resources.bucket

    def keys(output: str) -> list[str]:
        return [row["key"] for row in json.loads(output)]

    # 1. one file
    key, item = next((k, i) for k, i in items.items() if i["status"] == "SCORED")
    shown = json.loads(run_cli("result", f"s3://{bucket}/{key}", "--format", "json"))
    assert [(r["key"], r["probability"]) for r in shown] == [(key, float(item["probability"]))]

    # 2. a device's and a site's results, newest first
    device = [k for k, i in items.items() if i["device_key"] == "ward-b/monitor-07"]
    got = keys(run_cli("device", "ward-b", "monitor-07", "--since", "2d", "--format", "json"))
    assert sorted(got) == sorted(device)
    at = [items[k]["at_key"] for k in got]
    assert at == sorted(at, reverse=True)
    site = [k for k, i in items.items() if i["site"] == "clinic-a"]
    got = keys(run_cli("site", "clinic-a", "--since", "2d", "--format", "json"))
    assert sorted(got) == sorted(site)

    # 3. anomalies, most probable first
    anomalous = [k for k, i in items.items() if i.get("outcome") == "ANOMALOUS"]
    got = keys(run_cli("anomalies", "--since", "2d", "--format", "json"))
    assert sorted(got) == sorted(anomalous)
    probabilities = [float(items[k]["probability"]) for k in got]
    assert probabilities == sorted(probabilities, reverse=True)

    # 4. rejected files
    rejected = [k for k, i in items.items() if i["status"] == "REJECTED"]
    got = keys(run_cli("rejected", "--since", "2d", "--format", "json"))
    assert sorted(got) == sorted(rejected)

    # 5. export of the range
    lines = run_cli("export", "--since", "2d", "--format", "jsonl").splitlines()
    exported = {json.loads(line)["key"] for line in lines}
    assert exported >= set(items)


@pytest.mark.slow
def test_local_endpoint_answers_and_fails_like_sagemaker(running: stack.LocalStack) -> None:
    runtime = boto3.client("sagemaker-runtime")
    body = io.BytesIO()
    np.save(body, np.zeros((2, 2000, 3), dtype=np.float32))
    answer = runtime.invoke_endpoint(
        EndpointName=running.endpoint_name,
        Body=body.getvalue(),
        ContentType="application/x-npy",
        Accept="application/json",
    )
    scores = json.loads(answer["Body"].read())
    assert len(scores) == 2
    assert {s["model_version"] for s in scores} == {
        running.lambda_settings.environment["MODEL_VERSION"]
    }

    # The toolkit labels a bare body with the Accept header; output_fn names its type.
    answer = runtime.invoke_endpoint(
        EndpointName=running.endpoint_name,
        Body=body.getvalue(),
        ContentType="application/x-npy",
        Accept="text/csv, application/json",
    )
    assert answer["ContentType"] == "application/json"

    # The container's 4xx: ModelError 424 with its status and message, without the traceback
    # the toolkit appends; scorer.endpoint reads it as a refusal of our request.
    for content_type, payload, status, words in [
        ("application/json", b"{not json", 400, "not valid JSON"),
        ("text/plain", b"x", 415, "application/x-npy"),
    ]:
        with pytest.raises(runtime.exceptions.ModelError) as bad:
            runtime.invoke_endpoint(
                EndpointName=running.endpoint_name, Body=payload, ContentType=content_type
            )
        assert bad.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
        assert bad.value.response["OriginalStatusCode"] == status
        assert words in bad.value.response["OriginalMessage"]
        assert "Traceback" not in bad.value.response["OriginalMessage"]
        assert isinstance(scorer_endpoint.classify(bad.value), SystemFault)

    with pytest.raises(runtime.exceptions.ValidationError, match="exceeds"):
        runtime.invoke_endpoint(
            EndpointName=running.endpoint_name,
            Body=b"0" * (4 * 1024 * 1024 + 1),
            ContentType="application/x-npy",
        )

    with pytest.raises(runtime.exceptions.ValidationError, match="not found"):
        runtime.invoke_endpoint(
            EndpointName="no-such-endpoint", Body=b"{}", ContentType="application/json"
        )


def _dlq_depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


@pytest.mark.slow
def test_failing_file_reaches_the_dlq_after_5_receives_and_redrive_scores_it(
    running: stack.LocalStack, tmp_path: Path
) -> None:
    sqs = boto3.client("sqs")
    s3 = boto3.client("s3")
    queue, dlq = running.resources.queue_url, running.resources.dead_letter_queue_url
    redrive = json.loads(
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    assert redrive["maxReceiveCount"] == 5
    assert _dlq_depth(sqs, dlq) == 0
    log_path = running.log_dir / "poller.log"
    seen = log_path.stat().st_size  # what the poller logged before this test

    source = tmp_path / "seed.json"
    signal = ecg_like(10, 200)
    source.write_text(json.dumps({"signals": signal.round(4).tolist()}), encoding="utf-8")
    key = "incoming/dlq-site/dlq-device/seed.json"

    # A system error: the function is configured with an endpoint that does not exist.
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "1"})
    running.restart_poller({"ENDPOINT_NAME": "no-such-endpoint"}, batching_window_s=0)
    try:
        s3.upload_file(str(source), running.resources.bucket, key)
        deadline = time.monotonic() + 90
        while _dlq_depth(sqs, dlq) == 0:
            assert time.monotonic() < deadline, processes.tail(running.log_dir / "poller.log")
            time.sleep(0.5)
    finally:
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "10"})
        running.restart_poller()

    version = running.lambda_settings.environment["MODEL_VERSION"]
    ddb = boto3.client("dynamodb")
    assert (
        demo.find_item(ddb, running.resources.table, running.resources.bucket, key, version) is None
    )
    assert (running.resources.bucket, key) in demo.dlq_keys(sqs, dlq)
    # The handler saw the message exactly maxReceiveCount times before SQS dead-lettered it.
    with log_path.open(encoding="utf-8") as f:
        f.seek(seen)
        log = f.read()
    retried = [
        i for ids in re.findall(r"left for retry: \[([^\]]*)\]", log) for i in ids.split(",") if i
    ]
    assert len(set(retried)) == 1
    assert len(retried) == 5

    time.sleep(2.5)  # let the peek above (visibility 2 s) expire, so redrive sees the message
    assert "moved 1 message" in run_cli("redrive")
    result = demo.FileResult(samples.Sample("dlq-site/dlq-device/seed.json", "scored", ""), key)
    demo.wait_for_results(running, [result], RESULT_TIMEOUT_S)
    assert result.item is not None
    assert result.item["status"] == "SCORED"
    assert _dlq_depth(sqs, dlq) == 0


@pytest.mark.slow
def test_a_reupload_of_the_same_key_is_scored_again(
    running: stack.LocalStack, uploaded: list[demo.FileResult]
) -> None:
    """S3 events carry the object's version and a growing sequencer, as on AWS: the second
    upload's result replaces the first (the function's conditional write lets it)."""
    by_name = {Path(r.key).name: r for r in uploaded}
    normal, af = by_name["seed_normal.json"], by_name["seed_af.json"]
    assert normal.item is not None and af.item is not None
    # Told apart by what the model said of each, not by their synthetic labels: the demo
    # model learned from real ECGs and need not agree with the generator.
    assert normal.item["probability"] != af.item["probability"]
    root = running.work_dir / "samples"
    s3 = boto3.client("s3")
    s3.upload_file(str(root / af.sample.path), running.resources.bucket, normal.key)
    version = running.lambda_settings.environment["MODEL_VERSION"]
    ddb = boto3.client("dynamodb")
    bucket, table = running.resources.bucket, running.resources.table
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    item = normal.item
    while item["version_id"] == normal.item["version_id"]:
        assert time.monotonic() < deadline, "the re-upload was never scored"
        time.sleep(0.5)
        item = demo.find_item(ddb, table, bucket, normal.key, version) or item
    assert item["probability"] == af.item["probability"]
    assert item["s3_sequencer_sortable"] > normal.item["s3_sequencer_sortable"]


@pytest.mark.slow
def test_local_up_leaves_the_stack_running_until_down(tmp_path: Path) -> None:
    if not stack.ARCHIVE.is_file():
        pytest.fail(f"{stack.ARCHIVE} missing: make {stack.shown(stack.ARCHIVE)} (make test does)")
    base = [sys.executable, "-m", "ecg_scorer.local.demo"]
    # The light endpoint: one real model server at a time is enough for the test suite.
    flags = ["--work-dir", str(tmp_path), "--archive", str(stack.ARCHIVE), "--light-endpoint"]
    up = subprocess.run(
        [*base, "up", *flags], capture_output=True, text=True, timeout=180, cwd=REPO, check=False
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((tmp_path / "stack.json").read_text(encoding="utf-8"))
        assert f"s3://{state['bucket']}/incoming/" in up.stdout
        assert "ecg-scorer upload" in up.stdout
        assert "ecg-scorer anomalies" in up.stdout
        assert "STAND-IN  SageMaker model container" in up.stdout
        s3 = boto3.client("s3", endpoint_url=state["moto_url"])
        assert state["bucket"] in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        pid = int((tmp_path / "stack.pid").read_text(encoding="utf-8"))
    finally:
        down = subprocess.run(
            [*base, "down", *flags], capture_output=True, text=True, timeout=60, cwd=REPO
        )
    assert down.returncode == 0, down.stdout + down.stderr
    assert not (tmp_path / "stack.json").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
