"""Queries for the access patterns of contract 3, each a DynamoDB Query (never a Scan).

Plain functions over a boto3 DynamoDB client and a table name, so the CLI, the local demo and
tests share them. Items come back as plain dicts (numbers as Decimal), in the order analysts
read them. Time ranges are half-open: ``since <= recorded_at < until``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from scorer import schema

Item = dict[str, Any]

_deserializer = TypeDeserializer()
_serializer = TypeSerializer()

# Attributes that exist for the table's keys, not for people.
KEY_ATTRIBUTES = frozenset(
    {schema.PK, schema.SK} | {a for pair in schema.INDEXES.values() for a in pair}
)


def _decode(raw: dict[str, Any]) -> Item:
    return {k: _deserializer.deserialize(v) for k, v in raw.items()}


def paged_query(client: Any, page_size: int | None = None, **request: Any) -> Iterator[Item]:
    """Run one Query to the end, page by page (boto3's paginator follows LastEvaluatedKey)."""
    config = {"PageSize": page_size} if page_size else {}
    for page in client.get_paginator("query").paginate(**request, PaginationConfig=config):
        for raw in page.get("Items", []):
            yield _decode(raw)


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


def devices(client: Any, table: str, site: str | None = None) -> list[tuple[str, str]]:
    """(site, device) of every device that has sent a file, or of one site's, sorted."""
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
    return [(item["site"], item["device"]) for item in paged_query(client, **request)]


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


def export(
    client: Any,
    table: str,
    since: datetime,
    until: datetime,
    page_size: int | None = None,
) -> Iterator[Item]:
    """Pattern 5: every full result in [since, until), oldest first.

    Every registered device's results merged by time, plus the rejected files that name no
    device (they are in no device's index); each index entry's full item is then read from
    the table in batches.
    """
    _check_range(since, until)
    per_device: list[Iterable[Item]] = [
        device_results(client, table, site, device, since, until, page_size, newest_first=False)
        for site, device in devices(client, table)
    ]
    deviceless = (  # in no device's index: rejected before its site and device were known
        item
        for item in reversed(list(rejected(client, table, since, until, page_size)))
        if not (item.get("site") and item.get("device"))
    )
    entries = heapq.merge(*per_device, deviceless, key=_at)
    return full_items(client, table, entries)


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
            item = _decode(raw)
            found[(item[schema.PK], item[schema.SK])] = item
        pending = page.get("UnprocessedKeys") or {}
    # An item deleted between the index read and now is left out.
    ordered = (found.get((e[schema.PK], e[schema.SK])) for e in entries)
    return [item for item in ordered if item is not None]


def public(item: Item) -> Item:
    """The item without the attributes that only serve as table keys."""
    return {k: v for k, v in item.items() if k not in KEY_ATTRIBUTES}
