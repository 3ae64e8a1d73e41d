"""Where a command's resources are (flags, then the stack's outputs, then the environment),
its AWS clients, and what to tell the user when AWS says no.

AWS access is boto3's standard configuration: profile, role, ``AWS_DEFAULT_REGION`` (the
installed boto3 does not read ``AWS_REGION``), ``AWS_ENDPOINT_URL`` for the local stack.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from ecg_scorer import query

# resource -> (CloudFormation output of template.yaml, environment variable, flag)
RESOURCES = {
    "table": ("PredictionsTableName", "ECG_SCORER_TABLE", "--table"),
    "bucket": ("IngestBucketName", "ECG_SCORER_BUCKET", "--bucket"),
    "queue_url": ("ScoringQueueUrl", "ECG_SCORER_QUEUE_URL", "--queue-url"),
    "dlq_url": ("DeadLetterQueueUrl", "ECG_SCORER_DLQ_URL", "--dlq-url"),
}
# A stopped local stack should fail in seconds, not after botocore's long retry ladder.
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=60, retries={"mode": "standard"})
REGION_ADVICE = (
    "pass --region, set AWS_DEFAULT_REGION (boto3 does not read AWS_REGION), "
    "or give the profile a region (aws configure)"
)
LOCAL_ADVICE = (
    "is the local stack running? start it with `make local-up` and export the variables it "
    "prints; against AWS, unset AWS_ENDPOINT_URL"
)


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 1."""


@dataclass
class Context:
    """One command's arguments, AWS session and resource names."""

    args: argparse.Namespace
    session: Any = None
    _outputs: dict[str, str] | None = field(default=None, repr=False)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = boto3.session.Session(region_name=getattr(self.args, "region", None))

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, config=CLIENT_CONFIG)
        return self._clients[service]

    def time_range(self) -> tuple[datetime, datetime]:
        """``[--since, --until)`` of recording time; no --since means all time. ValueError
        (a usage mistake) when the range is empty."""
        since = self.args.since or query.EARLIEST
        if since >= self.args.until:
            raise ValueError(f"--since must be before --until ({since:%Y-%m-%dT%H:%M:%SZ} is not)")
        return since, self.args.until

    def stack_outputs(self) -> dict[str, str]:
        if self._outputs is None:
            try:
                described = self.client("cloudformation").describe_stacks(StackName=self.args.stack)
            except ClientError as e:
                raise CliError(f"stack {self.args.stack!r}: {message(e)}") from e
            stack = described["Stacks"][0]
            self._outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        return self._outputs

    def name(self, resource: str) -> str:
        """The resource's name, or CliError saying the three ways to give it."""
        found = self.maybe_name(resource)
        if found is None:
            _, env, flag = RESOURCES[resource]
            raise CliError(
                f"which {resource.replace('_', ' ')}? pass {flag}, set {env}, or pass --stack"
            )
        return found

    def maybe_name(self, resource: str) -> str | None:
        output, env, _ = RESOURCES[resource]
        value = getattr(self.args, resource, None)
        if value:
            return str(value)
        if getattr(self.args, "stack", None):
            outputs = self.stack_outputs()
            if output not in outputs:
                raise CliError(f"stack {self.args.stack!r} has no output {output}")
            return outputs[output]
        return os.environ.get(env) or None


def message(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".rstrip(": ")


def explain(error: Exception, args: argparse.Namespace) -> str | None:
    """One line for a failure the user can act on; None for a bug (shown as a traceback)."""
    if isinstance(error, CliError):
        return str(error)
    if isinstance(error, NoCredentialsError):
        return (
            "no AWS credentials found: configure a profile or role (aws configure); for the "
            "local stack export the variables `make local-up` prints"
        )
    if isinstance(error, NoRegionError):
        return f"no AWS region: {REGION_ADVICE}"
    if isinstance(error, EndpointConnectionError):
        where = os.environ.get("AWS_ENDPOINT_URL")
        if where:
            return f"cannot reach AWS_ENDPOINT_URL={where}: {LOCAL_ADVICE}"
        return f"{error}: check the network and the region ({REGION_ADVICE})"
    if isinstance(error, ClientError):
        return _client_error(error)
    if isinstance(error, S3UploadFailedError):
        return f"upload failed: {error} (check --bucket, ECG_SCORER_BUCKET or --stack)"
    if isinstance(error, BotoCoreError):
        return str(error)
    return None


def _client_error(error: ClientError) -> str:
    code = error.response.get("Error", {}).get("Code", "")
    if code == "ResourceNotFoundException" and error.operation_name in {
        "Query",
        "BatchGetItem",
        "GetItem",
    }:
        return (
            f"table not found: {message(error)} (check --table, ECG_SCORER_TABLE or --stack, "
            f"the region and AWS_ENDPOINT_URL)"
        )
    if code in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}:
        return f"queue not found: {message(error)} (check --dlq-url / --queue-url or --stack)"
    if code == "NoSuchBucket":
        return f"bucket not found: {message(error)} (check --bucket, ECG_SCORER_BUCKET or --stack)"
    if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
        return (
            f"{error.operation_name}: {message(error)} (the profile or role lacks this permission)"
        )
    if code in {"UnrecognizedClientException", "InvalidClientTokenId", "ExpiredToken"}:
        return f"{message(error)}: the credentials are not valid here (profile, region, endpoint?)"
    return f"{error.operation_name}: {message(error)}"
