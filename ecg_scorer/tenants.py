"""Tenants stay in their lane: per-site IAM policies for uploaders and analysts, and presigned
uploads for devices without AWS credentials.

A site (hospital) may put files only under ``incoming/<its site>/`` and read nothing; an
analyst may be limited to some sites. The Lambda backs this up: a file under one site's
folder can never claim another site (intake.py, ``site_mismatch``).
"""

from __future__ import annotations

from typing import Any

from scorer import keys, schema

POLICY_VERSION = "2012-10-17"


def uploader_policy(bucket: str, site: str, partition: str = "aws") -> dict[str, Any]:
    """An identity policy for one site's uploaders: PutObject under its prefix, nothing else.

    Multipart uploads (large Holter files) need the same right on their parts, and
    AbortMultipartUpload to clean up; no read, list or delete anywhere.
    """
    _check_site(site)
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "UploadUnderOwnSite",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": f"arn:{partition}:s3:::{bucket}/{keys.prefix(site)}*",
            }
        ],
    }


def analyst_policy(
    table_arn: str, bucket: str, sites: list[str], partition: str = "aws"
) -> dict[str, Any]:
    """An identity policy for analysts limited to ``sites``.

    - results of the sites' devices through the device index (its partition key is
      ``<site>/<device>``) and full items from the table (its partition key is
      ``FILE#<bucket>/incoming/<site>/...``), both bounded by ``dynamodb:LeadingKeys``;
    - the registry of devices (partition ``REGISTRY``: names every site's devices, no
      patient data), which site listings start from;
    - the sites' recordings in S3, for reports.

    The anomaly and rejected indexes hold every site's items, so they are not granted:
    such analysts list anomalies and rejections per site or device.
    """
    for site in sites:
        _check_site(site)
    if not sites:
        raise ValueError("name at least one site")
    device_keys = [f"{schema.device_key(site, '')}*" for site in sites]
    file_keys = [f"{schema.file_pk(bucket, keys.prefix(site))}*" for site in sites]
    read = ["dynamodb:Query"]
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "SiteResultsByDevice",
                "Effect": "Allow",
                "Action": read,
                "Resource": f"{table_arn}/index/{schema.BY_DEVICE}",
                "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": device_keys}},
            },
            {
                "Sid": "SiteFullResults",
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
                "Resource": table_arn,
                "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": file_keys}},
            },
            {
                "Sid": "DeviceRegistry",
                "Effect": "Allow",
                "Action": read,
                "Resource": table_arn,
                "Condition": {
                    "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [schema.REGISTRY_PK]}
                },
            },
            {
                "Sid": "SiteRecordings",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": [
                    f"arn:{partition}:s3:::{bucket}/{keys.prefix(site)}*" for site in sites
                ],
            },
        ],
    }


def presigned_put(s3: Any, bucket: str, site: str, device: str, name: str, expires_s: int) -> str:
    """A URL a device can PUT one file to (``curl -T file URL``), valid ``expires_s``."""
    key = keys.incoming_key(site, device, name)
    url: str = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
    )
    return url


def presigned_post(
    s3: Any, bucket: str, site: str, device: str, expires_s: int, max_bytes: int
) -> dict[str, Any]:
    """A form a device can POST any number of files with, each under its own folder
    ``incoming/<site>/<device>/`` and at most ``max_bytes``, until it expires."""
    prefix = keys.prefix(site, device)
    post: dict[str, Any] = s3.generate_presigned_post(
        bucket,
        prefix + "${filename}",
        Conditions=[["starts-with", "$key", prefix], ["content-length-range", 1, max_bytes]],
        ExpiresIn=expires_s,
    )
    return post


def _check_site(site: str) -> None:
    if not keys.valid_name(site):
        raise ValueError(f"a site must be {keys.NAME_RULE}")
