"""Queries for the access patterns of contract 3, each a DynamoDB Query (never a Scan).

Plain functions over a boto3 DynamoDB client and a table name, so the CLI, the local demo and
tests share them. Items come back as plain dicts (numbers as Decimal), in the order analysts
read them. Time ranges are half-open: ``since <= recorded_at < until``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time
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
    """Run one Query to the end, following LastEvaluatedKey page by page."""
    if page_size:
        request["Limit"] = page_size
    while True:
        page = client.query(**request)
        for raw in page.get("Items", []):
            yield _decode(raw)
        last = page.get("LastEvaluatedKey")
        if not last:
            return
        request["ExclusiveStartKey"] = last


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
    # at_key is "<ISO time>#<file>": every item recorded at `since` sorts after the bare
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


def _day_partition(outcome: schema.Outcome, day: date) -> str:
    return schema.outcome_day(outcome, datetime.combine(day, time(), UTC))


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


def index_results(
    client: Any,
    table: str,
    index: str,
    partition: str,
    since: datetime,
    until: datetime,
    page_size: int | None = None,
) -> Iterator[Item]:
    """Pattern 2: one partition of a time-sorted index in [since, until), newest first.

    A device's results: ``index=schema.BY_DEVICE, partition=schema.device_key(site, device)``;
    a site's: ``index=schema.BY_SITE, partition=site``.
    """
    _check_range(since, until)
    return _range_query(client, table, index, partition, since, until, True, page_size)


def _outcome_days(
    client: Any,
    table: str,
    outcome: schema.Outcome,
    since: datetime,
    until: datetime,
    page_size: int | None,
    extra_filter: tuple[str, dict[str, Any]] | None = None,
) -> Iterator[Item]:
    """One outcome's items in [since, until), newest day first, newest first within a day."""
    for day in schema.days(since, until):
        partition = _day_partition(outcome, day)
        yield from _range_query(
            client,
            table,
            schema.BY_OUTCOME_DAY,
            partition,
            since,
            until,
            True,
            page_size,
            extra_filter,
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
    found = _outcome_days(client, table, schema.Outcome.ANOMALOUS, since, until, page_size, extra)
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
    return _outcome_days(client, table, schema.Outcome.REJECTED, since, until, page_size)


def export(
    client: Any,
    table: str,
    since: datetime,
    until: datetime,
    page_size: int | None = None,
) -> Iterator[Item]:
    """Pattern 5: every result in [since, until), oldest first, one UTC day in memory at a time."""
    _check_range(since, until)
    for day in reversed(list(schema.days(since, until))):
        per_outcome: list[Iterable[Item]] = []
        for outcome in schema.Outcome:
            partition = _day_partition(outcome, day)
            per_outcome.append(
                _range_query(
                    client,
                    table,
                    schema.BY_OUTCOME_DAY,
                    partition,
                    since,
                    until,
                    False,
                    page_size,
                )
            )
        # Each outcome's query is already in at_key order: merge them instead of sorting.
        sort_attr = schema.INDEXES[schema.BY_OUTCOME_DAY][1]
        yield from heapq.merge(*per_outcome, key=lambda item: item[sort_attr])


def public(item: Item) -> Item:
    """The item without the attributes that only serve as table keys."""
    return {k: v for k, v in item.items() if k not in KEY_ATTRIBUTES}
