"""SageMaker runtime client: every window of an SQS batch in as few InvokeEndpoint calls as
the payload limit allows (application/x-npy float32), with retries, fault isolation and a
check of the model version that answered.

Errors, by type (botocore's own retries are off, so this loop is the one that counts):

- ThrottlingException, ModelNotReadyException (serverless cold start), 5xx, connection errors
  and timeouts: TransientError, retried with backoff and full jitter within the Lambda's
  remaining time; an attempt starts only when its worst case (connect + read timeout) fits.
- ModelError whose container answered 5xx (or gave no status): ModelCrashed, a TransientError
  retried at most MAX_CRASHES times. A window may crash the container, so when a call with
  several files keeps crashing, each file is sent alone: the files that pass are scored, the
  one that still crashes goes back to the queue, and the later calls go ahead.
- ModelError whose container answered 4xx: SystemFault. prepare.py sends only what the
  endpoint accepts (finite float32 mV, |value| <= 1e6, [N, window, leads]), so a refusal
  means our request does not fit the deployed model (WINDOW_SAMPLES, MODEL_LEADS, payload
  size, content type): no file is at fault, none is REJECTED; the messages go back (then to
  the DLQ) and the SystemFaults alarm fires.
- ValidationError (e.g. endpoint not found), AccessDenied, anything else: SystemFault.
- A response that breaks the contract (not JSON, wrong count, other model_version): SystemFault.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from scorer.budget import ENDPOINT_ATTEMPT_S, Budget, retry
from scorer.config import Settings
from scorer.errors import ScorerError, SystemFault, TransientError, error_code, from_boto

logger = Logger(child=True)

CONTENT_TYPE = "application/x-npy"
MAX_WINDOWS_PER_REQUEST = 256  # config.json max_windows_per_request of the model
NPY_HEADER_BYTES = 128  # np.save's v1.0 header for a float32 [N, 2000, 3] array
MAX_CRASHES = 3  # a call whose container fails this often is split file by file


class ModelCrashed(TransientError):
    """The model container answered 5xx: it may be a passing fault, or a window crashing it."""


@dataclass
class FileScore:
    """The endpoint's answer for one file's windows, in order."""

    probabilities: list[float]
    threshold: float


@dataclass
class ScoreOutcome:
    """Per file id: scored, or failed (transient / system)."""

    scores: dict[str, FileScore] = field(default_factory=dict)
    failed: dict[str, ScorerError] = field(default_factory=dict)
    stopped: ScorerError | None = None  # why calls stopped early (later calls would fail too)
    calls: int = 0
    retries: int = 0
    bytes_sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def windows_per_call(max_payload_bytes: int, window_bytes: int) -> int:
    """Windows in one application/x-npy request under the payload limit."""
    by_payload = (max_payload_bytes - NPY_HEADER_BYTES) // window_bytes
    return max(1, min(MAX_WINDOWS_PER_REQUEST, by_payload))


def to_npy(windows: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(windows, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def classify(error: Exception) -> Exception:
    """Map a botocore error to our kinds (by type and error code, never by message)."""
    if isinstance(error, ClientError) and error_code(error)[0] == "ModelError":
        original = error.response.get("OriginalStatusCode")
        if isinstance(original, int) and 400 <= original < 500:
            # prepare.py sends only what the endpoint accepts: a refusal means our request
            # does not fit the deployed model (window, leads, size, content type). The
            # container's message says what it expected; it quotes no samples.
            detail = str(error.response.get("OriginalMessage", ""))[:300]
            return SystemFault(
                f"the model container refused the request (HTTP {original}: {detail}); "
                "check WINDOW_SAMPLES, MODEL_LEADS and MAX_PAYLOAD_BYTES against the "
                "deployed model's config.json"
            )
        return ModelCrashed(f"model container error (status {original})")
    return from_boto(error, "from the endpoint") or error


@dataclass(frozen=True)
class Answer:
    """The endpoint's answer for one window (contract 1), checked."""

    probability: float
    threshold: float
    label: str
    model_version: str


class WrongModel(SystemFault):
    """The endpoint serves another model version than the one expected."""


def parse_response(body: bytes, count: int, model_version: str) -> list[Answer]:
    """One checked answer per window; the body holds one object for one window, a list for
    more. SystemFault when it breaks the contract, WrongModel for another model version."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise SystemFault("the endpoint answered with something that is not JSON") from e
    items = [doc] if isinstance(doc, dict) else doc
    if not isinstance(items, list) or len(items) != count:
        got = len(items) if isinstance(items, list) else type(items).__name__
        raise SystemFault(f"the endpoint returned {got} results for {count} windows")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise SystemFault("the endpoint returned a result that is not an object")
        version = item.get("model_version")
        if version != model_version:
            raise WrongModel(f"the endpoint runs model {version!r}, not {model_version!r}")
        try:
            probability = float(item["probability"])
            threshold = float(item.get("threshold", 0.5))
        except (KeyError, TypeError, ValueError) as e:
            raise SystemFault("the endpoint returned a result without a probability") from e
        if not (0.0 <= probability <= 1.0 and math.isfinite(threshold)):
            raise SystemFault(f"the endpoint returned probability {probability!r}")
        label = str(item.get("label") or ("anomalous" if probability > threshold else "normal"))
        out.append(Answer(probability, threshold, label, version))
    return out


class _Caller:
    """One InvokeEndpoint with retries; counts calls, retries, bytes and latency."""

    def __init__(self, client: Any, settings: Settings, budget: Budget, outcome: ScoreOutcome):
        self.client, self.settings, self.budget, self.outcome = client, settings, budget, outcome

    def _once(self, body: bytes, count: int) -> list[Answer]:
        started = time.perf_counter()
        self.outcome.calls += 1
        self.outcome.bytes_sent += len(body)
        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.settings.endpoint_name,
                ContentType=CONTENT_TYPE,
                Accept="application/json",
                Body=body,
            )
            raw = response["Body"].read()
        except Exception as e:
            mapped = classify(e)
            if mapped is e:
                raise
            raise mapped from e
        finally:
            self.outcome.latencies_ms.append((time.perf_counter() - started) * 1000)
        return parse_response(raw, count, self.settings.model_version)

    def __call__(self, windows: np.ndarray, max_crashes: int = MAX_CRASHES) -> list[Answer]:
        body = to_npy(windows)

        def on_retry(error: TransientError, attempt: int, delay: float) -> None:
            self.outcome.retries += 1
            logger.warning(
                "endpoint call failed, retrying",
                extra={"error": str(error), "attempt": attempt, "delay_s": round(delay, 3)},
            )

        return retry(
            lambda: self._once(body, len(windows)),
            self.budget,
            ENDPOINT_ATTEMPT_S,
            on_retry,
            {ModelCrashed: max_crashes},
        )


def score_files(
    client: Any,
    settings: Settings,
    files: dict[str, np.ndarray],
    budget: Budget,
) -> ScoreOutcome:
    """Score every file's windows ([N, window, C] each) in as few calls as fit the payload.

    Windows of all files are joined in order and cut into calls of at most
    :func:`windows_per_call` windows; a long file may span calls. A call whose container
    keeps crashing (5xx) is split file by file (:func:`_isolate`) and the later calls go
    ahead. When a call fails for good otherwise (throttling or time budget spent, a system
    fault), its files and all files of later calls are marked failed and no further call is
    made.
    """
    outcome = ScoreOutcome()
    ids = [fid for fid, w in files.items() if len(w)]
    if not ids:
        return outcome
    joined = np.concatenate([files[fid] for fid in ids])
    owner = np.repeat(np.arange(len(ids)), [len(files[fid]) for fid in ids])
    probs = np.full(len(joined), np.nan)
    thresholds: dict[str, float] = {}
    call = _Caller(client, settings, budget, outcome)
    step = windows_per_call(settings.max_payload_bytes, settings.window_bytes)
    for start in range(0, len(joined), step):
        # A file that already failed (its part of an earlier call) is not sent again.
        rows = np.arange(start, min(start + step, len(joined)))
        rows = rows[[ids[int(owner[r])] not in outcome.failed for r in rows]]
        if not rows.size:
            continue
        chunk_owners = [int(i) for i in np.unique(owner[rows])]
        try:
            try:
                result = call(joined[rows])
            except ModelCrashed as crash:
                if len(chunk_owners) == 1:
                    outcome.failed[ids[chunk_owners[0]]] = crash
                    logger.warning("model container failed on one file; it will be retried")
                    continue
                _isolate(call, joined, owner, ids, chunk_owners, rows, probs, thresholds, outcome)
                continue
            for row, answer in zip(rows, result, strict=True):
                probs[row] = answer.probability
                thresholds[ids[int(owner[row])]] = answer.threshold
        except (TransientError, SystemFault) as error:
            outcome.stopped = error
            logger.error("scoring stopped", extra={"error": str(error)})
            break

    for i, fid in enumerate(ids):
        if fid in outcome.failed:
            continue
        p = probs[owner == i]
        if np.isnan(p).any():  # not every window scored: scoring stopped before its turn
            outcome.failed[fid] = outcome.stopped or SystemFault("windows left unscored")
            continue
        outcome.scores[fid] = FileScore([float(v) for v in p], thresholds[fid])
    return outcome


def _isolate(
    call: _Caller,
    joined: np.ndarray,
    owner: np.ndarray,
    ids: list[str],
    chunk_owners: list[int],
    rows: np.ndarray,
    probs: np.ndarray,
    thresholds: dict[str, float],
    outcome: ScoreOutcome,
) -> None:
    """A call with several files kept crashing the container: send each file's part alone.

    A file whose part passes is scored; one that still crashes alone fails (transient: its
    message goes back to the queue, and after 5 receives to the DLQ) so it cannot take its
    neighbours with it. When every file crashes alone the endpoint itself is failing: that
    is raised like any transient error and stops the scoring. Throttling, timeouts and
    system faults on the way are raised too.
    """
    logger.warning("model container keeps failing; scoring the call's files one by one")
    crashed: dict[str, ModelCrashed] = {}
    for i in chunk_owners:
        fid = ids[i]
        own = rows[owner[rows] == i]
        try:
            # The group already used its retries: one crash alone is enough.
            result = call(joined[own], max_crashes=1)
        except ModelCrashed as crash:
            crashed[fid] = crash
            continue
        for row, answer in zip(own, result, strict=True):
            probs[row] = answer.probability
            thresholds[fid] = answer.threshold
    if len(crashed) == len(chunk_owners):
        raise TransientError("the model container fails on every file alone")
    outcome.failed.update(crashed)
    logger.warning("files that crash the model container", extra={"files": len(crashed)})
