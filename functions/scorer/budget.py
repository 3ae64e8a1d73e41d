"""The invocation's time budget: each call's worst case, and retries that fit in what is left.

Every blocking call has a worst case: its client's connect plus read timeout (app.py builds
the clients from these numbers). An attempt starts only when the time left covers that
worst case plus a reserve for what must still happen after it, so the Lambda is never
killed mid-batch: whatever cannot be done in time goes back to the queue (TransientError).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from scorer.errors import TransientError

ENDPOINT_CONNECT_S = 5.0
ENDPOINT_READ_S = 62.0  # a serverless container must answer within 60 s; 2 s for the network
ENDPOINT_ATTEMPT_S = ENDPOINT_CONNECT_S + ENDPOINT_READ_S
DYNAMODB_CONNECT_S = 2.0
DYNAMODB_READ_S = 5.0  # a PutItem answers in milliseconds; 5 s means something is wrong
DYNAMODB_ATTEMPT_S = DYNAMODB_CONNECT_S + DYNAMODB_READ_S
S3_CONNECT_S = 3.0
S3_READ_S = 10.0  # per socket read of the body
S3_ATTEMPTS = 2  # botocore's own retry for S3 (standard mode), capped so the worst case is known
S3_BACKOFF_S = 1.0  # botocore standard mode waits at most 1 s before its first retry
S3_READ_WORST_S = S3_ATTEMPTS * (S3_CONNECT_S + S3_READ_S) + S3_BACKOFF_S

ANSWER_RESERVE_S = 2.0  # building the answer and flushing metrics
# Endpoint calls and S3 reads stop this far before the timeout: the rest is for storing the
# results (one slow write plus the normal ones) and answering.
SAFETY_MARGIN_S = DYNAMODB_ATTEMPT_S + ANSWER_RESERVE_S + 1.0
STORE_MARGIN_S = ANSWER_RESERVE_S  # table writes may use that reserve, up to the answer's

# Retry policy: exponential backoff with full jitter, within the Lambda's time budget.
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 8.0

T = TypeVar("T")


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class Budget:
    """The time this invocation may still spend: remaining time minus a reserve.

    ``sleep`` is injectable so tests can run a long retry sequence in no time (their fake
    context's clock advances when it sleeps).
    """

    def __init__(
        self,
        context: LambdaContextLike,
        margin_s: float = SAFETY_MARGIN_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.context = context
        self.margin_s = margin_s
        self.sleep = sleep

    def remaining_s(self) -> float:
        return self.context.get_remaining_time_in_millis() / 1000 - self.margin_s

    def allows(self, attempt_s: float) -> bool:
        """True when a call that may block ``attempt_s`` seconds still fits."""
        return self.remaining_s() >= attempt_s


def retry(
    call: Callable[[], T],
    budget: Budget,
    attempt_s: float,
    on_retry: Callable[[TransientError, int, float], None] | None = None,
    max_failures: Mapping[type[TransientError], int] | None = None,
) -> T:
    """Run ``call``; on TransientError wait (full jitter) and try again while time remains.

    Hand-rolled rather than botocore's retries because each attempt must fit the Lambda's
    remaining time. An attempt starts only when the budget covers ``attempt_s``, the call's
    worst case (connect + read timeout). Other errors pass straight through. When the budget
    cannot cover another wait and attempt, or an error kind has failed ``max_failures[kind]``
    times, the last TransientError is raised: the message goes back to the queue.
    """
    attempt = 0
    failures: Counter[type[TransientError]] = Counter()
    while True:
        if not budget.allows(attempt_s):
            raise TransientError("no time left in this invocation to try")
        try:
            return call()
        except TransientError as error:
            for kind, limit in (max_failures or {}).items():
                if isinstance(error, kind):
                    failures[kind] += 1
                    if failures[kind] >= limit:
                        raise
            delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))  # noqa: S311
            if not budget.allows(attempt_s + delay):
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(error, attempt, delay)
            budget.sleep(delay)
