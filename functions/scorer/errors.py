"""One exception type per kind of failure; the handler maps them by type, never by message text.

| type            | about           | what the handler does                                      |
|-----------------|-----------------|------------------------------------------------------------|
| RejectedFile    | the file        | REJECTED item with the reason; the message succeeds         |
| TransientError  | the moment      | retried within the time budget, then the message goes back |
| SystemFault     | our system      | the message goes back (and to the DLQ); an alarm fires     |
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Protocol, TypeVar


class ScorerError(Exception):
    """Base of the three kinds below."""


class RejectedFile(ScorerError):
    """The file itself can never be scored as it is: the reason says what to change.

    Parameters
    ----------
    reason
        Words a person who uploaded the file can act on; stored on the REJECTED item. It may
        quote a short piece of the file, so it goes to the table, never to the logs.
    code
        A short, stable category (``csv_not_a_number``, ``missing_leads``...) that is safe to
        log and to count.
    """

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class TransientError(ScorerError):
    """Worth trying again later: throttling, a cold endpoint, a 5xx, a timeout."""


class SystemFault(ScorerError):
    """Permanent, but about our system, not the file: endpoint missing, access denied,
    an endpoint that answers outside its contract. Retrying will not help until someone
    fixes it; the file must not be REJECTED for it."""


class ConfigError(SystemFault):
    """A required setting is missing or malformed; raised at start, naming the setting."""


# -- retry policy: exponential backoff with full jitter, within the Lambda's time budget ---

T = TypeVar("T")

BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 8.0
SAFETY_MARGIN_S = 10.0  # the endpoint stops retrying here: the rest is for storing results
STORE_MARGIN_S = 2.0  # table writes may use that reserve, up to this close to the timeout
MIN_ATTEMPT_S = 1.0  # no new attempt with less than this left


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class Budget:
    """The time this invocation may still spend waiting: remaining time minus a margin.

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


def retry(
    call: Callable[[], T],
    budget: Budget,
    on_retry: Callable[[TransientError, int, float], None] | None = None,
) -> T:
    """Run ``call``; on TransientError wait (full jitter) and try again while time remains.

    Other errors pass straight through. When the budget cannot cover another wait and
    attempt, the last TransientError is raised: the message goes back to the queue.
    """
    attempt = 0
    while True:
        if budget.remaining_s() < MIN_ATTEMPT_S:
            raise TransientError("no time left in this invocation to try")
        try:
            return call()
        except TransientError as error:
            delay = random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))  # noqa: S311
            if budget.remaining_s() - delay < MIN_ATTEMPT_S:
                raise
            attempt += 1
            if on_retry is not None:
                on_retry(error, attempt, delay)
            budget.sleep(delay)
