"""Endpoint client: packing into few calls, the two response shapes, retries within the
time budget, isolating a file that crashes the model, and system faults (any 4xx)."""

from __future__ import annotations

import io
import json

import boto3
import numpy as np
import pytest
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from scorer.budget import ENDPOINT_ATTEMPT_S, SAFETY_MARGIN_S, Budget
from scorer.endpoint import MAX_CRASHES, ModelCrashed, score_files, windows_per_call
from scorer.errors import SystemFault, TransientError
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
    per_call = windows_per_call(SETTINGS.max_payload_bytes, SETTINGS.window_bytes)
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
    context = FakeContext(remaining_ms=120_000)
    outcome = score_files(
        runtime, SETTINGS, {"a": _windows([0.3]), "b": _windows([0.4])}, _budget(context)
    )
    assert set(outcome.failed) == {"a", "b"} and not outcome.scores
    assert isinstance(outcome.failed["a"], TransientError)
    assert 5 < len(runtime.calls) < 1000  # it tried several times, then gave up
    # and stopped while a slow attempt plus the reserve for storing results still fit
    assert context.remaining_ms >= (ENDPOINT_ATTEMPT_S + SAFETY_MARGIN_S) * 1000


class HangingRuntime(FakeRuntime):
    """Every call blocks for the client's whole connect + read timeout, then times out."""

    def __init__(self, context: FakeContext):
        super().__init__()
        self.context = context
        self.started_with_ms: list[float] = []

    def invoke_endpoint(self, **kwargs: object) -> dict:
        self.started_with_ms.append(self.context.remaining_ms)
        self.context.sleep(ENDPOINT_ATTEMPT_S)
        raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")


@pytest.mark.parametrize("remaining_s", [300, 150, 80, 76, 30])
def test_an_attempt_starts_only_when_its_worst_case_fits(remaining_s: float) -> None:
    context = FakeContext(remaining_ms=remaining_s * 1000)
    runtime = HangingRuntime(context)
    outcome = score_files(runtime, SETTINGS, {"a": _windows([0.3])}, _budget(context))
    assert isinstance(outcome.failed["a"], TransientError)
    needed_ms = (ENDPOINT_ATTEMPT_S + SAFETY_MARGIN_S) * 1000
    assert all(left >= needed_ms for left in runtime.started_with_ms)
    # However long each call blocked, the reserve for storing and answering is intact.
    assert context.remaining_ms >= SAFETY_MARGIN_S * 1000
    fits = remaining_s >= ENDPOINT_ATTEMPT_S + SAFETY_MARGIN_S
    assert (len(runtime.started_with_ms) > 0) == fits


def test_a_file_that_crashes_the_model_is_isolated_and_the_others_are_scored() -> None:
    runtime = FakeRuntime()
    runtime.crash = {0.333}
    files = {"good1": _windows([0.1]), "bad": _windows([0.2, 0.333]), "good2": _windows([0.9, 0.8])}
    outcome = score_files(runtime, SETTINGS, files, _budget(FakeContext()))
    assert set(outcome.scores) == {"good1", "good2"}
    assert outcome.scores["good2"].probabilities == pytest.approx([0.9, 0.8], abs=1e-6)
    # The poison file goes back to the queue (transient), never REJECTED
    assert set(outcome.failed) == {"bad"} and isinstance(outcome.failed["bad"], ModelCrashed)
    # the batch MAX_CRASHES times, then each file alone once
    assert len(runtime.calls) == MAX_CRASHES + 3


def test_later_calls_go_ahead_after_a_poison_file() -> None:
    two_per_call = settings(MAX_PAYLOAD_BYTES=str(2 * 24_000 + 128))
    runtime = FakeRuntime()
    runtime.crash = {0.333}
    files = {
        "a": _windows([0.1]),
        "bad": _windows([0.333]),  # calls: [a, bad], then [c, d]
        "c": _windows([0.3]),
        "d": _windows([0.4]),
    }
    outcome = score_files(runtime, two_per_call, files, _budget(FakeContext()))
    assert set(outcome.scores) == {"a", "c", "d"} and set(outcome.failed) == {"bad"}


def test_when_every_file_crashes_alone_the_endpoint_is_failing() -> None:
    runtime = FakeRuntime(faults=[client_error("ModelError", 424, OriginalStatusCode=500)] * 100)
    files = {"a": _windows([0.1]), "b": _windows([0.2]), "c": _windows([0.3])}
    outcome = score_files(runtime, SETTINGS, files, _budget(FakeContext()))
    assert set(outcome.failed) == {"a", "b", "c"}
    assert all(isinstance(e, TransientError) for e in outcome.failed.values())
    assert len(runtime.calls) == MAX_CRASHES + 3  # no further call after that


def test_throttling_is_about_the_endpoint_and_is_never_split_by_file() -> None:
    runtime = FakeRuntime(faults=[client_error("ThrottlingException", 400)] * 10_000)
    context = FakeContext(remaining_ms=120_000)
    files = {"a": _windows([0.1]), "b": _windows([0.2])}
    outcome = score_files(runtime, SETTINGS, files, _budget(context))
    assert set(outcome.failed) == {"a", "b"}
    assert all(len(call) == 2 for call in runtime.calls)  # always the whole batch


@pytest.mark.parametrize("status", [400, 404, 413, 415, 422])
def test_every_4xx_from_the_model_is_a_system_fault_never_a_rejected_file(status: int) -> None:
    # E.g. WINDOW_SAMPLES or MODEL_LEADS do not match the deployed model: rejecting files
    # for it would lose every upload; the messages must go back (and to the DLQ) instead.
    refused = client_error(
        "ModelError", 424, OriginalStatusCode=status, OriginalMessage="expected [N, 2500, 3]"
    )
    runtime = FakeRuntime(faults=[refused])
    files = {"a": _windows([0.1]), "b": _windows([0.2, 0.3])}
    outcome = score_files(runtime, SETTINGS, files, _budget(FakeContext()))
    assert set(outcome.failed) == {"a", "b"} and not outcome.scores
    assert all(isinstance(e, SystemFault) for e in outcome.failed.values())
    assert "expected [N, 2500, 3]" in str(outcome.failed["a"])
    assert len(runtime.calls) == 1  # not retried, not split file by file


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
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            http_status_code=424,
            modeled_fields={"OriginalStatusCode": 500, "OriginalMessage": "worker died"},
            expected_params=expected,
        )
        stub.add_response(
            "invoke_endpoint", _body([{**answer, "model_version": MODEL_VERSION}] * 2), expected
        )
        stub.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelError",
            http_status_code=424,
            modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": "bad shape"},
            expected_params=expected,
        )
        context = FakeContext()
        first = score_files(
            client, SETTINGS, {"a": _windows([0.2]), "b": _windows([0.2])}, _budget(context)
        )
        second = score_files(client, SETTINGS, {"c": _windows([0.2])}, _budget(context))
        stub.assert_no_pending_responses()
    # A 5xx from the container is retried; a 4xx is a system fault, not the file's.
    assert first.scores["b"].probabilities == [0.2] and first.retries == 1
    assert isinstance(second.failed["c"], SystemFault) and "bad shape" in str(second.failed["c"])
