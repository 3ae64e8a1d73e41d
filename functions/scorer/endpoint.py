"""SageMaker runtime client: every window of an SQS batch in as few InvokeEndpoint calls as
the payload limit allows (application/x-npy float32), with retries, fault isolation and a
check of the model version that answered.

Errors, by type (botocore's own retries are off, so this loop is the one that counts):

- ThrottlingException, ModelNotReadyException (serverless cold start), 5xx, ModelError whose
  container answered 5xx, connection errors and timeouts: TransientError, retried with
  backoff and full jitter within the Lambda's remaining time.
- ModelError whose container answered 4xx: the request was refused. With several files in
  the call, each file is sent alone to find the one at fault; that file is REJECTED.
  413 (too large) and 415 (content type) are about our request, not a file: SystemFault.
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
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from scorer.config import Settings
from scorer.errors import Budget, RejectedFile, ScorerError, SystemFault, TransientError, retry

logger = Logger(child=True)

CONTENT_TYPE = "application/x-npy"
MAX_WINDOWS_PER_REQUEST = 256  # config.json max_windows_per_request of the model
NPY_HEADER_BYTES = 128  # np.save's v1.0 header for a float32 [N, 2000, 3] array
TRANSIENT_CODES = {
    "ThrottlingException",
    "ModelNotReadyException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
    "InternalFailureException",
    "InternalDependencyException",
    "RequestTimeout",
    "RequestTimeoutException",
}


# Container statuses that say our request, not a file in it, is wrong.
SYSTEM_STATUSES = {413, 415}


class ModelRefused(Exception):
    """The model container answered 4xx: something in the request's windows it will not take."""


@dataclass
class FileScore:
    """The endpoint's answer for one file's windows, in order."""

    probabilities: list[float]
    threshold: float


@dataclass
class ScoreOutcome:
    """Per file id: scored, rejected by the model, or failed (transient / system)."""

    scores: dict[str, FileScore] = field(default_factory=dict)
    rejected: dict[str, RejectedFile] = field(default_factory=dict)
    failed: dict[str, ScorerError] = field(default_factory=dict)
    calls: int = 0
    retries: int = 0
    bytes_sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def windows_per_call(settings: Settings) -> int:
    by_payload = (settings.max_payload_bytes - NPY_HEADER_BYTES) // settings.window_bytes
    return max(1, min(MAX_WINDOWS_PER_REQUEST, by_payload))


def to_npy(windows: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(windows, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def classify(error: Exception) -> Exception:
    """Map a botocore error to our kinds (by type and error code, never by message)."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code == "ModelError":
            original = error.response.get("OriginalStatusCode")
            if original in SYSTEM_STATUSES:
                # Too large / wrong content type: our packing or settings disagree with the
                # endpoint; no file is at fault.
                return SystemFault(f"the model container answered HTTP {original}")
            if isinstance(original, int) and 400 <= original < 500:
                detail = str(error.response.get("OriginalMessage", ""))[:300]
                return ModelRefused(f"HTTP {original}: {detail}".strip())
            return TransientError(f"model container error (status {original})")
        if code in TRANSIENT_CODES or status >= 500:
            return TransientError(f"{code or 'HTTP ' + str(status)} from the endpoint")
        return SystemFault(f"{code or 'HTTP ' + str(status)} from InvokeEndpoint")
    if isinstance(error, BotoConnectionError | HTTPClientError):
        return TransientError(f"{type(error).__name__} calling the endpoint")
    if isinstance(error, BotoCoreError):
        return SystemFault(f"{type(error).__name__} calling the endpoint")
    return error


def parse_response(body: bytes, count: int, model_version: str) -> list[tuple[float, float]]:
    """(probability, threshold) per window; one object for one window, a list for more."""
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
            raise SystemFault(
                f"the endpoint runs model {version!r}, but MODEL_VERSION is {model_version!r}"
            )
        try:
            probability = float(item["probability"])
            threshold = float(item.get("threshold", 0.5))
        except (KeyError, TypeError, ValueError) as e:
            raise SystemFault("the endpoint returned a result without a probability") from e
        if not (0.0 <= probability <= 1.0 and math.isfinite(threshold)):
            raise SystemFault(f"the endpoint returned probability {probability!r}")
        out.append((probability, threshold))
    return out


class _Caller:
    """One InvokeEndpoint with retries; counts calls, retries, bytes and latency."""

    def __init__(self, client: Any, settings: Settings, budget: Budget, outcome: ScoreOutcome):
        self.client, self.settings, self.budget, self.outcome = client, settings, budget, outcome

    def _once(self, body: bytes, count: int) -> list[tuple[float, float]]:
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

    def __call__(self, windows: np.ndarray) -> list[tuple[float, float]]:
        body = to_npy(windows)

        def on_retry(error: TransientError, attempt: int, delay: float) -> None:
            self.outcome.retries += 1
            logger.warning(
                "endpoint call failed, retrying",
                extra={"error": str(error), "attempt": attempt, "delay_s": round(delay, 3)},
            )

        return retry(lambda: self._once(body, len(windows)), self.budget, on_retry)


def score_files(
    client: Any,
    settings: Settings,
    files: dict[str, np.ndarray],
    budget: Budget,
) -> ScoreOutcome:
    """Score every file's windows ([N, window, C] each) in as few calls as fit the payload.

    Windows of all files are joined in order and cut into calls of at most
    :func:`windows_per_call` windows; a long file may span calls. When a call fails for
    good (transient budget spent, or a system fault), its files and all files of later
    calls are marked failed and no further call is made.
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
    step = windows_per_call(settings)

    for start in range(0, len(joined), step):
        stop = min(start + step, len(joined))
        chunk_owners = [int(i) for i in np.unique(owner[start:stop])]
        pending = [ids[i] for i in chunk_owners if ids[i] not in outcome.rejected]
        try:
            try:
                result = call(joined[start:stop])
                for k, (p, t) in enumerate(result):
                    probs[start + k] = p
                    thresholds[ids[int(owner[start + k])]] = t
            except ModelRefused as refused:
                _isolate(
                    call,
                    joined,
                    owner,
                    ids,
                    chunk_owners,
                    start,
                    stop,
                    probs,
                    thresholds,
                    outcome,
                    refused,
                )
        except (TransientError, SystemFault) as error:
            later = [ids[int(i)] for i in np.unique(owner[start:])]
            for fid in dict.fromkeys(pending + later):
                if fid not in outcome.rejected:
                    outcome.failed[fid] = error
            logger.error("scoring stopped", extra={"error": str(error), "files": len(later)})
            break

    for i, fid in enumerate(ids):
        if fid in outcome.rejected or fid in outcome.failed:
            continue
        p = probs[owner == i]
        outcome.scores[fid] = FileScore([float(v) for v in p], thresholds[fid])
    return outcome


def _isolate(
    call: _Caller,
    joined: np.ndarray,
    owner: np.ndarray,
    ids: list[str],
    chunk_owners: list[int],
    start: int,
    stop: int,
    probs: np.ndarray,
    thresholds: dict[str, float],
    outcome: ScoreOutcome,
    refused: ModelRefused,
) -> None:
    """The model refused a call: send each file's part alone; refused parts reject their file."""
    for i in chunk_owners:
        fid = ids[i]
        rows = np.flatnonzero(owner[start:stop] == i) + start
        if len(chunk_owners) == 1:
            reason: ModelRefused | None = refused
        else:
            try:
                result = call(joined[rows])
                reason = None
            except ModelRefused as own:
                reason = own
        if reason is not None:
            outcome.rejected[fid] = RejectedFile(
                f"the model endpoint refused this file's windows ({reason}); check the "
                "signal values",
                "model_refused",
            )
            continue
        for row, (p, t) in zip(rows, result, strict=True):
            probs[row] = p
            thresholds[fid] = t
