"""Endpoint client: packing into few calls, the two response shapes, retries within the
time budget, isolating a file the model refuses, and system faults."""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pytest
from botocore.exceptions import ConnectTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from scorer.endpoint import score_files, windows_per_call
from scorer.errors import Budget, SystemFault, TransientError
from scorer_helpers import MODEL_VERSION, FakeContext, FakeRuntime, client_error, settings

SETTINGS = settings()


def _windows(levels: list[float]) -> np.ndarray:
    """One window per level; the fake model answers each window's level."""
    t = np.arange(2000) / 200
    wave = 0.5 * np.sin(2 * np.pi * 1.2 * t)
    return np.stack([np.column_stack([wave + lv, wave + 2, wave + 3]) for lv in levels]).astype(
        np.float32
    )


def _budget(context: FakeContext) -> Budget:
    return Budget(context, sleep=context.sleep)


def test_all_files_go_in_one_call_when_they_fit() -> None:
    files = {f"f{i}": _windows([0.1 * i, 0.1 * i + 0.05]) for i in range(10)}
    runtime = FakeRuntime()
    outcome = score_files(runtime, SETTINGS, files, _budget(FakeContext()))
    assert len(runtime.calls) == 1 and outcome.calls == 1
    for i in range(10):
        assert outcome.scores[f"f{i}"].probabilities == pytest.approx(
            [0.1 * i, 0.1 * i + 0.05], abs=1e-6
        )
        assert outcome.scores[f"f{i}"].threshold == 0.5
    assert outcome.bytes_sent == 20 * 2000 * 3 * 4 + 128


def test_windows_are_split_by_the_payload_limit_and_a_file_may_span_calls() -> None:
    per_call = windows_per_call(SETTINGS)
    assert per_call == (4 * 1024 * 1024 - 64 * 1024 - 128) // 24000  # 172 windows of 24 kB
    levels = [round((i % 90) / 100, 2) for i in range(400)]
    files = {"long": _windows(levels[:300]), "short": _windows(levels[300:])}
    runtime = FakeRuntime()
    outcome = score_files(runtime, SETTINGS, files, _budget(FakeContext()))
    assert [len(c) for c in runtime.calls] == [per_call, per_call, 400 - 2 * per_call]
    assert outcome.bytes_sent <= 3 * SETTINGS.max_payload_bytes
    assert outcome.scores["long"].probabilities == pytest.approx(levels[:300], abs=1e-6)
    assert outcome.scores["short"].probabilities == pytest.approx(levels[300:], abs=1e-6)


def test_one_window_gets_the_single_object_response() -> None:
    outcome = score_files(FakeRuntime(), SETTINGS, {"one": _windows([0.7])}, _budget(FakeContext()))
    assert outcome.scores["one"].probabilities == pytest.approx([0.7], abs=1e-6)


@pytest.mark.parametrize(
    "fault",
    [
        client_error("ThrottlingException", 400),
        client_error("ModelNotReadyException", 429),
        client_error("ServiceUnavailable", 503),
        client_error("InternalFailure", 500),
        client_error("ModelError", 424, OriginalStatusCode=503, OriginalMessage="worker died"),
        ConnectTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com"),
    ],
    ids=["throttling", "not-ready", "503", "500", "model-5xx", "connect-timeout"],
)
def test_transient_faults_are_retried_with_backoff(fault: Exception) -> None:
    runtime = FakeRuntime(faults=[fault, fault])
    context = FakeContext()
    outcome = score_files(runtime, SETTINGS, {"a": _windows([0.3])}, _budget(context))
    assert outcome.scores["a"].probabilities == pytest.approx([0.3], abs=1e-6)
    assert len(runtime.calls) == 3 and outcome.retries == 2
    assert len(context.slept) == 2 and all(0 <= s <= 0.4 for s in context.slept)  # full jitter


def test_retries_stop_when_the_time_budget_runs_out() -> None:
    throttled = [client_error("ThrottlingException", 400) for _ in range(1000)]
    runtime = FakeRuntime(faults=throttled)
    context = FakeContext(remaining_ms=40_000)  # 30 s to spend after the 10 s safety margin
    outcome = score_files(
        runtime, SETTINGS, {"a": _windows([0.3]), "b": _windows([0.4])}, _budget(context)
    )
    assert set(outcome.failed) == {"a", "b"} and not outcome.scores
    assert isinstance(outcome.failed["a"], TransientError)
    assert 5 < len(runtime.calls) < 1000  # it tried several times, then gave up
    assert context.remaining_ms >= 10_000  # and never ate into the safety margin


def test_a_file_the_model_refuses_is_isolated_and_rejected() -> None:
    runtime = FakeRuntime()
    runtime.refuse = {0.333}
    files = {"good1": _windows([0.1]), "bad": _windows([0.2, 0.333]), "good2": _windows([0.9, 0.8])}
    outcome = score_files(runtime, SETTINGS, files, _budget(FakeContext()))
    assert set(outcome.scores) == {"good1", "good2"}
    assert outcome.scores["good2"].probabilities == pytest.approx([0.9, 0.8], abs=1e-6)
    assert outcome.rejected["bad"].code == "model_refused"
    assert "HTTP 400" in outcome.rejected["bad"].reason
    assert len(runtime.calls) == 1 + 3  # the batch, then each file alone


@pytest.mark.parametrize(
    "fault",
    [
        client_error("ValidationError", 400),
        client_error("AccessDeniedException", 403),
        client_error("ModelError", 424, OriginalStatusCode=413, OriginalMessage="too large"),
        client_error("ModelError", 424, OriginalStatusCode=415, OriginalMessage="content type"),
    ],
    ids=["endpoint-not-found", "access-denied", "payload-too-large", "content-type"],
)
def test_system_faults_are_not_retried(fault: Exception) -> None:
    runtime = FakeRuntime(faults=[fault])
    outcome = score_files(runtime, SETTINGS, {"a": _windows([0.3])}, _budget(FakeContext()))
    assert isinstance(outcome.failed["a"], SystemFault) and len(runtime.calls) == 1


def test_another_model_version_is_a_system_fault() -> None:
    runtime = FakeRuntime(model_version="cnn1d_lstm_ecg_v0")
    outcome = score_files(runtime, SETTINGS, {"a": _windows([0.3])}, _budget(FakeContext()))
    assert isinstance(outcome.failed["a"], SystemFault)
    assert "cnn1d_lstm_ecg_v0" in str(outcome.failed["a"])


def _body(doc: object) -> dict:
    raw = json.dumps(doc).encode()
    return {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": "application/json"}


def test_real_client_request_and_modeled_errors() -> None:
    """botocore's Stubber checks our request against the service model and builds the
    ModelError exactly as the SDK parses it (OriginalStatusCode as a top-level field)."""
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    answer = {"prediction": 0.2, "probability": 0.2, "label": "normal", "threshold": 0.5}
    expected = {
        "EndpointName": SETTINGS.endpoint_name,
        "ContentType": "application/x-npy",
        "Accept": "application/json",
        "Body": ANY,
    }
    with Stubber(client) as stub:
        for _ in range(2):  # the pair, then "a" alone
            stub.add_client_error(
                "invoke_endpoint",
                service_error_code="ModelError",
                http_status_code=424,
                modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": "bad shape"},
                expected_params=expected,
            )
        stub.add_response(
            "invoke_endpoint", _body({**answer, "model_version": MODEL_VERSION}), expected
        )
        outcome = score_files(
            client, SETTINGS, {"a": _windows([0.2]), "b": _windows([0.2])}, _budget(FakeContext())
        )
        stub.assert_no_pending_responses()
    # The pair was refused; alone, "a" was refused again and "b" was scored.
    assert outcome.rejected["a"].reason.startswith("the model endpoint refused")
    assert "bad shape" in outcome.rejected["a"].reason
    assert outcome.scores["b"].probabilities == [0.2]
