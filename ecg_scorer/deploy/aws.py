"""AWS plumbing: the boto3 session and clients, error codes, tags read back, the image URI.

The session comes from boto3's standard configuration. boto3 and the SageMaker SDK are
imported only when a command needs them: `--help`, package and check never do, and
``import sagemaker`` alone costs seconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ecg_scorer.deploy import ToolError

VARIANT = "AllTraffic"
FRAMEWORK_VERSION = "2.0.0"
PY_VERSION = "py310"
# Serverless has no instance type; any CPU type selects the CPU image.
CPU_INSTANCE_FOR_IMAGE = "ml.m5.xlarge"
REGION_ADVICE = (
    "set AWS_DEFAULT_REGION or a region in your profile (aws configure; AWS_PROFILE); "
    "this boto3 does not read AWS_REGION"
)


def new_session() -> Any:
    import boto3

    return boto3.session.Session()


@dataclass
class Aws:
    """boto3 clients made from the standard configuration (tests hand in their own)."""

    session: Any
    region: str
    _clients: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> Aws:
        session = new_session()
        if not session.region_name:
            raise ToolError(f"no AWS region configured: {REGION_ADVICE}")
        return cls(session=session, region=session.region_name)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]

    def has_credentials(self) -> bool:
        """Whether boto3's credential chain finds any (without calling AWS to try them)."""
        return self.session is not None and self.session.get_credentials() is not None


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    return ClientError


def not_found(exc: Exception) -> bool:
    """SageMaker answers ValidationException 'Could not find ...' for missing resources."""
    code = error_code(exc)
    text = str(exc).lower()
    return code in ("ValidationException", "ResourceNotFound", "404", "NoSuchKey", "NotFound") and (
        "could not find" in text or "not found" in text or code in ("404", "NoSuchKey", "NotFound")
    )


def exists(call: Callable[[], Any]) -> Any:
    """``call()``, or None when what it describes does not exist."""
    try:
        return call()
    except client_error() as exc:
        if not_found(exc):
            return None
        raise


def tag_dict(sm: Any, arn: str) -> dict[str, str]:
    """A SageMaker resource's tags as a dict."""
    tags: dict[str, str] = {}
    for page in sm.get_paginator("list_tags").paginate(ResourceArn=arn):
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
    return tags


def default_bucket(region: str, account: str) -> str:
    """The SageMaker SDK's default bucket name."""
    return f"sagemaker-{region}-{account}"


def resolve_image_uri(region: str, override: str | None = None) -> str:
    """The PyTorch 2.0.0 / py310 CPU inference image, from the installed SageMaker SDK.

    sagemaker 3.x keeps ``image_uris`` in ``sagemaker.core``; 2.x at ``sagemaker.image_uris``.
    The lookup reads the SDK's own tables: it needs no credentials.
    """
    if override:
        return override
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    try:
        from sagemaker.core import image_uris  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from sagemaker import image_uris  # type: ignore[no-redef,unused-ignore]
        except ImportError as exc:
            raise ToolError(
                "the SageMaker SDK is not installed: pip install 'ecg-scorer[deploy]' "
                "(or sagemaker<3), or pass --image-uri <account>.dkr.ecr.<region>.amazonaws.com/"
                "pytorch-inference:2.0.0-cpu-py310"
            ) from exc
    try:
        return str(
            image_uris.retrieve(
                framework="pytorch",
                region=region,
                version=FRAMEWORK_VERSION,
                py_version=PY_VERSION,
                instance_type=CPU_INSTANCE_FOR_IMAGE,
                image_scope="inference",
            )
        )
    except ValueError as exc:
        raise ToolError(
            f"no PyTorch {FRAMEWORK_VERSION} inference image known for {region}: {exc}; "
            "pass --image-uri"
        ) from exc
