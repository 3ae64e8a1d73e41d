"""Queries for the access patterns of contract 3, each a DynamoDB Query (never a Scan).

Plain functions over a boto3 DynamoDB client and a table name, so the CLI, the local demo and
tests share them. Items come back as plain dicts (numbers as Decimal), in the order analysts
read them. Time ranges are half-open: ``since <= recorded_at < until``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from scorer import schema

Item = dict[str, Any]

_deserializer = TypeDeserializer()
_serializer = TypeSerializer()

# Attributes that exist for the table's keys or its conditional write, not for people.
KEY_ATTRIBUTES = frozenset(
    {schema.PK, schema.SK, "s3_sequencer_sortable"}
    | {a for pair in schema.INDEXES.values() for a in pair}
)
# Recording times the pipeline stores (scorer.uploads.parse_time): "all time" for a query.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)


def decode_item(raw: dict[str, Any]) -> Item:
    """One item as DynamoDB's low-level API returns it -> a plain dict (numbers as Decimal)."""
    return {k: _deserializer.deserialize(v) for k, v in raw.items()}


def paged_query(client: Any, page_size: int | None = None, **request: Any) -> Iterator[Item]:
    """Run one Query to the end, page by page (boto3's paginator follows LastEvaluatedKey)."""
    config = {"PageSize": page_size} if page_size else {}
    for page in client.get_paginator("query").paginate(**request, PaginationConfig=config):
        for raw in page.get("Items", []):
            yield decode_item(raw)


def _range_query(
    client: Any,
    table: str,
    index: str,
    partition: str,
    since: datetime,
    until: datetime,
    newest_first: bool,
    page_size: int | None,
    extra_filter: tuple[str, dict[str, Any]] | None = None,
) -> Iterator[Item]:
    hash_attr, range_attr = schema.INDEXES[index]
    # at_key is "<ISO time>#<file hash>": every item recorded at `since` sorts after the bare
    # time, every item recorded at `until` after its bare time too, so BETWEEN is [since, until).
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": index,
        "KeyConditionExpression": "#h = :h AND #r BETWEEN :lo AND :hi",
        "ExpressionAttributeNames": {"#h": hash_attr, "#r": range_attr},
        "ExpressionAttributeValues": {
            ":h": {"S": partition},
            ":lo": {"S": schema.iso_utc(since)},
            ":hi": {"S": schema.iso_utc(until)},
        },
        "ScanIndexForward": not newest_first,
    }
    if extra_filter:
        expression, values = extra_filter
        request["FilterExpression"] = expression
        request["ExpressionAttributeValues"].update(
            {k: _serializer.serialize(v) for k, v in values.items()}
        )
    return paged_query(client, page_size, **request)


def _check_range(since: datetime, until: datetime) -> None:
    if since >= until:
        raise ValueError(f"empty time range: since {since:%Y-%m-%dT%H:%M:%SZ} is not before until")


def file_results(client: Any, table: str, bucket: str, key: str) -> list[Item]:
    """Pattern 1: every model version's result for one file."""
    return list(
        paged_query(
            client,
            TableName=table,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": schema.PK},
            ExpressionAttributeValues={":pk": {"S": schema.file_pk(bucket, key)}},
        )
    )


def registry(client: Any, table: str, site: str | None = None) -> list[Item]:
    """The registry items (site, device, first_seen) of every device that has sent a file,
    or of one site's, sorted by site and device."""
    request: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "#pk = :pk",
        "ExpressionAttributeNames": {"#pk": schema.PK},
        "ExpressionAttributeValues": {":pk": {"S": schema.REGISTRY_PK}},
    }
    if site is not None:
        request["KeyConditionExpression"] += " AND begins_with(#sk, :site)"
        request["ExpressionAttributeNames"]["#sk"] = schema.SK
        request["ExpressionAttributeValues"][":site"] = {"S": f"{site}/"}
    return list(paged_query(client, **request))


def devices(client: Any, table: str, site: str | None = None) -> list[tuple[str, str]]:
    """(site, device) of every device that has sent a file, or of one site's, sorted."""
    return [(item["site"], item["device"]) for item in registry(client, table, site)]


def device_results(
    client: Any,
    table: str,
    site: str,
    device: str,
    since: datetime,
    until: datetime,
    page_size: int | None = None,
    newest_first: bool = True,
) -> Iterator[Item]:
    """Pattern 2: one device's results in [since, until), newest first."""
    _check_range(since, until)
    partition = schema.device_key(site, device)
    return _range_query(
        client, table, schema.BY_DEVICE, partition, since, until, newest_first, page_size
    )


def site_results(
    client: Any,
    table: str,
    site: str,
    since: datetime,
    until: datetime,
    page_size: int | None = None,
) -> Iterator[Item]:
    """Pattern 2: a site's results in [since, until), newest first: its devices merged."""
    _check_range(since, until)
    per_device = [
        device_results(client, table, site, device, since, until, page_size)
        for _, device in devices(client, table, site)
    ]
    return heapq.merge(*per_device, key=_at, reverse=True)


def _at(item: Item) -> str:
    return str(item[schema.INDEXES[schema.BY_DEVICE][1]])


def _outcome_days(
    client: Any,
    table: str,
    index: str,
    since: datetime,
    until: datetime,
    page_size: int | None,
    extra_filter: tuple[str, dict[str, Any]] | None = None,
) -> Iterator[Item]:
    """One sparse outcome index in [since, until), newest day first, newest first in a day."""
    for day in schema.days(since, until):
        partition = schema.day(datetime.combine(day, time(), UTC))
        yield from _range_query(
            client, table, index, partition, since, until, True, page_size, extra_filter
        )


def anomalies(
    client: Any,
    table: str,
    since: datetime,
    until: datetime,
    min_probability: float | None = None,
    page_size: int | None = None,
) -> list[Item]:
    """Pattern 3: anomalous results in [since, until), most probable first (then newest)."""
    _check_range(since, until)
    extra = None
    if min_probability is not None:
        extra = ("probability >= :minp", {":minp": Decimal(str(min_probability))})
    found = _outcome_days(client, table, schema.BY_ANOMALY_DAY, since, until, page_size, extra)
    # Items arrive newest first, and sorted() is stable: equal probabilities stay newest first.
    return sorted(found, key=lambda item: item.get("probability", Decimal(0)), reverse=True)


def rejected(
    client: Any,
    table: str,
    since: datetime,
    until: datetime,
    page_size: int | None = None,
) -> Iterator[Item]:
    """Pattern 4: rejected files in [since, until), newest first."""
    _check_range(since, until)
    return _outcome_days(client, table, schema.BY_REJECTED_DAY, since, until, page_size)


def entries(
    client: Any,
    table: str,
    since: datetime,
    until: datetime,
    site: str | None = None,
    device: str | None = None,
    page_size: int | None = None,
    extra_filter: tuple[str, dict[str, Any]] | None = None,
    deviceless: bool = True,
) -> Iterator[Item]:
    """Index entries (the list columns) of every result in [since, until), oldest first.

    One device, a site's devices, or every registered device plus (``deviceless``) the
    rejected files that name no device: they are in no device's index.
    """
    _check_range(since, until)
    if device is not None and site is None:
        raise ValueError("a device needs its site (--site)")
    chosen = [(site, device)] if site and device else devices(client, table, site)
    streams: list[Iterable[Item]] = [
        _range_query(
            client,
            table,
            schema.BY_DEVICE,
            schema.device_key(s, d),
            since,
            until,
            False,
            page_size,
            extra_filter,
        )
        for s, d in chosen
    ]
    if site is None and deviceless:
        rejected_newest_first = _outcome_days(
            client, table, schema.BY_REJECTED_DAY, since, until, page_size, extra_filter
        )
        streams.append(
            item
            for item in reversed(list(rejected_newest_first))
            if not (item.get("site") and item.get("device"))
        )
    return heapq.merge(*streams, key=_at)


def export(
    client: Any,
    table: str,
    since: datetime,
    until: datetime,
    page_size: int | None = None,
) -> Iterator[Item]:
    """Pattern 5: every full result in [since, until), oldest first.

    Every registered device's results merged by time, plus the rejected files that name no
    device; each index entry's full item is then read from the table in batches.
    """
    return full_items(client, table, entries(client, table, since, until, page_size=page_size))


DEVICELESS_SEARCH = timedelta(days=31)


def find_hash(
    client: Any,
    table: str,
    file_hash: str,
    since: datetime = EARLIEST,
    until: datetime | None = None,
    site: str | None = None,
    device: str | None = None,
) -> list[Item]:
    """Index entries of the file whose hash (``schema.file_hash``, the end of at_key) is
    ``file_hash``: one Query per device, filtered server-side, never a Scan.

    Rejected files that name no device sit in one partition per day: they are searched
    over at most the range's last 31 days.
    """
    until = until or datetime.now(UTC)
    wanted = f"#{file_hash.strip().lower()}"
    by_hash = ("contains(at_key, :hash)", {":hash": wanted})
    found = list(
        entries(client, table, since, until, site, device, extra_filter=by_hash, deviceless=False)
    )
    if site is None:
        recent = max(since, until - DEVICELESS_SEARCH)
        rejected_days = _outcome_days(
            client, table, schema.BY_REJECTED_DAY, recent, until, None, by_hash
        )
        found += [item for item in rejected_days if not (item.get("site") and item.get("device"))]
    return [item for item in found if str(item.get("at_key", "")).endswith(wanted)]


BATCH_GET_MAX = 100  # DynamoDB's BatchGetItem limit


def full_items(client: Any, table: str, entries: Iterable[Item]) -> Iterator[Item]:
    """The table's full item for each index entry, in the entries' order."""
    batch: list[Item] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == BATCH_GET_MAX:
            yield from _batch_get(client, table, batch)
            batch = []
    if batch:
        yield from _batch_get(client, table, batch)


def _batch_get(client: Any, table: str, entries: list[Item]) -> list[Item]:
    keys = [{schema.PK: {"S": e[schema.PK]}, schema.SK: {"S": e[schema.SK]}} for e in entries]
    found: dict[tuple[str, str], Item] = {}
    pending: dict[str, Any] = {table: {"Keys": keys}}
    while pending:
        page = client.batch_get_item(RequestItems=pending)
        for raw in page.get("Responses", {}).get(table, []):
            item = decode_item(raw)
            found[(item[schema.PK], item[schema.SK])] = item
        pending = page.get("UnprocessedKeys") or {}
    # An item deleted between the index read and now is left out.
    ordered = (found.get((e[schema.PK], e[schema.SK])) for e in entries)
    return [item for item in ordered if item is not None]


def public(item: Item) -> Item:
    """The item without the attributes that only serve as table keys; the S3 event's
    sequencer shown as ``s3_sequencer`` (stored once, in the conditional write's form)."""
    shown = {k: v for k, v in item.items() if k not in KEY_ATTRIBUTES}
    if "s3_sequencer_sortable" in item:
        shown["s3_sequencer"] = item["s3_sequencer_sortable"]
    return shown
