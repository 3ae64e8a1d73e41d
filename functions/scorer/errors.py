"""One exception type per kind of failure; the handler maps them by type, never by message text.

| type            | about           | what the handler does                                      |
|-----------------|-----------------|------------------------------------------------------------|
| RejectedFile    | the file        | REJECTED item with the reason; the message succeeds         |
| TransientError  | the moment      | retried within the time budget, then the message goes back |
| SystemFault     | our system      | the message goes back (and to the DLQ); an alarm fires     |

Budgets and retries are in budget.py; this module only says what kind an error is.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError


class ScorerError(Exception):
    """Base of the three kinds below."""


class RejectedFile(ScorerError):
    """The file itself can never be scored as it is: the reason says what to change.

    Parameters
    ----------
    reason
        Words a person who uploaded the file can act on; stored on the REJECTED item. It says
        which field, line or lead is wrong and what is expected, and never quotes the file's
        content, header text or metadata values (they can carry patient data).
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


# Error codes that mean "not now" for S3, DynamoDB and the SageMaker runtime.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "TransactionConflictException",
        "ModelNotReadyException",
        "InternalFailure",
        "InternalFailureException",
        "InternalDependencyException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def error_code(error: ClientError) -> tuple[str, int]:
    """(AWS error code, HTTP status) of a ClientError."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def from_boto(error: Exception, doing: str) -> ScorerError | None:
    """The kind of a botocore error met while ``doing`` (e.g. "reading from S3"), by type and
    error code, never by message; None when it is not a botocore error.

    Callers look at the codes that mean something particular to them first (a missing
    object, a failed condition, a model error).
    """
    if isinstance(error, ClientError):
        code, status = error_code(error)
        label = code or f"HTTP {status}"
        if code in TRANSIENT_CODES or status >= 500:
            return TransientError(f"{label} {doing}")
        return SystemFault(f"{label} {doing}")
    if isinstance(error, BotoConnectionError | HTTPClientError):  # incl. connect/read timeouts
        return TransientError(f"{type(error).__name__} {doing}")
    if isinstance(error, BotoCoreError):
        return SystemFault(f"{type(error).__name__} {doing}")
    return None
