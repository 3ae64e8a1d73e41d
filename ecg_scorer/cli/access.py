"""``ecg-scorer policy`` and ``presign``: give a site's devices and analysts access to that
site and nothing more.

``policy`` prints an IAM policy (``ecg_scorer.tenants``) for the stack's own bucket and table;
``presign`` prints a URL (or a form) a device without AWS credentials uploads with, and the
headers it must send.
"""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from botocore.config import Config
from botocore.exceptions import ClientError
from scorer import keys

from ecg_scorer import tenants
from ecg_scorer.cli.context import CLIENT_CONFIG, CliError, Context
from ecg_scorer.cli.upload import metadata_of

# Signature Version 4: what every region accepts (SigV2 URLs are refused by most).
SIGV4 = CLIENT_CONFIG.merge(Config(signature_version="s3v4"))


def cmd_policy(ctx: Context, out: TextIO) -> int:
    args = ctx.args
    bucket = ctx.name("bucket")
    if args.kind == "uploader":
        partition = ctx.client("s3").meta.partition
        policy = tenants.uploader_policy(bucket, args.site, args.device, partition)
    else:
        table = ctx.client("dynamodb").describe_table(TableName=ctx.name("table"))["Table"]
        arn = str(table["TableArn"])
        sites = list(dict.fromkeys(args.site))  # in the order given, once each
        policy = tenants.analyst_policy(arn, bucket, sites, partition=arn.split(":")[1])
    out.write(json.dumps(policy, indent=2) + "\n")
    return 0


def cmd_presign(ctx: Context, out: TextIO) -> int:
    args = ctx.args
    expires_s = int(args.expires.total_seconds())
    if expires_s > tenants.MAX_PRESIGN_S:
        raise ValueError("--expires is at most 7d: S3 refuses presigned requests valid longer")
    if args.file is None and not args.post:
        raise ValueError("name the FILE to upload (a URL for it), or pass --post (a form)")
    tenants.check_names(args.site, args.device)
    metadata = metadata_of(args.metadata)
    bucket = ctx.name("bucket")
    s3 = ctx.session.client("s3", region_name=bucket_region(ctx, bucket), config=SIGV4)
    expires_at = datetime.now(UTC).replace(microsecond=0) + args.expires
    if args.post:
        post = tenants.presigned_post(
            s3, bucket, args.site, args.device, expires_s, args.max_bytes, metadata
        )
        request = {"method": "POST", "url": post["url"], "fields": post["fields"]}
        request["max_bytes"] = args.max_bytes
    else:
        name = Path(args.file).name
        url = tenants.presigned_put(s3, bucket, args.site, args.device, name, expires_s, metadata)
        key = keys.incoming_key(args.site, args.device, name)
        request = {"method": "PUT", "url": url, "key": key}
        request["headers"] = tenants.metadata_headers(metadata)
    request["expires_at"] = f"{expires_at:%Y-%m-%dT%H:%M:%SZ}"
    if args.format == "json":
        out.write(json.dumps(request, indent=2) + "\n")
    else:
        out.write(request_text(request))
        print(how_to_send(request, args.file), file=sys.stderr)
    return 0


def bucket_region(ctx: Context, bucket: str) -> str | None:
    """The bucket's own region: a SigV4 URL signed for another region is refused. The
    session's region when the bucket cannot be asked (no s3:ListBucket)."""
    try:
        found = ctx.client("s3").head_bucket(Bucket=bucket)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in {"404", "NoSuchBucket"}:
            raise CliError(
                f"bucket {bucket} not found (check --bucket, ECG_SCORER_BUCKET or --stack)"
            ) from e
        region = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return region.get("x-amz-bucket-region") or ctx.session.region_name
    return found.get("BucketRegion") or ctx.session.region_name


def request_text(request: dict[str, Any]) -> str:
    """The request as lines: ``METHOD URL``, then the PUT's headers (``name: value``) or
    the POST's form fields (``name=value``), which the device must send as they are."""
    lines = [f"{request['method']} {request['url']}"]
    lines += [f"{name}: {value}" for name, value in request.get("headers", {}).items()]
    lines += [f"{name}={value}" for name, value in request.get("fields", {}).items()]
    return "\n".join(lines) + "\n"


def how_to_send(request: dict[str, Any], file: str | None) -> str:
    """What to tell whoever sets the device up, with a curl line that works."""
    path = shlex.quote(file or "FILE")
    until = f"valid until {request['expires_at']}"
    if request["method"] == "PUT":
        headers = "".join(f" -H {shlex.quote(f'{h}: {v}')}" for h, v in request["headers"].items())
        signed = " with the headers shown (they are signed: S3 refuses the upload without them)"
        return (
            f"PUT the file's bytes as the body to the URL{signed if headers else ''}; "
            f"{until}, for {request['key']} only:\n"
            f"  curl --fail -T {path}{headers} {shlex.quote(request['url'])}"
        )
    fields = "".join(f" -F {shlex.quote(f'{n}={v}')}" for n, v in request["fields"].items())
    return (
        "POST a multipart/form-data form to the URL: the fields shown as they are, then the "
        f"file as the last field, named file (1 to {request['max_bytes']} bytes); it is stored "
        f"under its own name in the device's folder; {until}, for any number of files:\n"
        f"  curl --fail{fields} -F file=@{path} {shlex.quote(request['url'])}"
    )
