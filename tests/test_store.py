"""Store: items per contract 3 / schema.py, written once per event, never over a newer one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import numpy as np
import pytest
from botocore.exceptions import ReadTimeoutError
from moto import mock_aws
from scorer import schema
from scorer.budget import DYNAMODB_ATTEMPT_S, Budget
from scorer.errors import RejectedFile, SystemFault, TransientError
from scorer.prepare import Prepared
from scorer.quality import Verdict
from scorer.store import (
    put_item,
    rejected_item,
    scored_item,
    sortable_sequencer,
)
from scorer.uploads import FileFacts, FileRef
from scorer.window_results import WindowResults, summary_of
from scorer_helpers import (
    TABLE,
    FakeContext,
    FlakyDynamo,
    all_items,
    create_table,
    item_for,
    settings,
)

SETTINGS = settings()
KEY = "incoming/site-a/holter-01/rec.csv"
UPLOADED = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


@pytest.fixture
def dynamodb():  # type: ignore[no-untyped-def]
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client)
        yield client


def _ref(sequencer: str | None = "0066E1B9C2D6A70001") -> FileRef:
    return FileRef("ecg-ingest-test", KEY, "v1", "etag1", 1234, sequencer, UPLOADED)


def _scored(
    probabilities: list[float], sequencer: str | None = "0066E1B9C2D6A70001", **facts: object
) -> dict:
    starts = [10.0 * i for i in range(len(probabilities))]
    prepared = Prepared(
        np.zeros((len(probabilities), 2000, 3), np.float32),
        starts,
        1000.0,
        False,
        ["i", "ii", "v2"],
        38.4,
        verdicts=[Verdict()] * len(probabilities),
    )
    results = WindowResults.of(prepared, probabilities)
    return scored_item(
        _ref(sequencer),
        FileFacts(site="site-a", device="holter-01", format="csv", **facts),  # type: ignore[arg-type]
        results,
        summary_of(prepared, 0.5),
        SETTINGS,
        datetime(2026, 11, 27, 3, 1, tzinfo=UTC),
    )


def _budget(remaining_ms: float = 60_000) -> Budget:
    context = FakeContext(remaining_ms=remaining_ms)
    return Budget(context, sleep=context.sleep)


def test_sequencers_of_different_lengths_compare_after_right_padding() -> None:
    # AWS: right-pad the shorter with zeros, then compare lexicographically.
    assert sortable_sequencer("0A1") > sortable_sequencer("0A0FF")
    assert sortable_sequencer("0066e1b9c2d6a70002") > sortable_sequencer("0066E1B9C2D6A70001")
    assert sortable_sequencer("0A1") == sortable_sequencer("0A100")


def test_scored_item_layout(dynamodb) -> None:  # type: ignore[no-untyped-def]
    recorded = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)
    item = _scored([0.2, 0.91, 0.4, 0.1], patient_ref="P-7", record_id="R-1", recorded_at=recorded)
    assert put_item(dynamodb, TABLE, item, _budget())
    stored = item_for(dynamodb, KEY)
    assert stored is not None
    assert (
        stored["status"] == "SCORED"
        and stored["outcome"] == "ANOMALOUS"
        and stored["label"] == "anomalous"
    )
    assert stored["probability"] == Decimal("0.91")
    assert stored["window_probabilities"] == [
        Decimal("0.2"),
        Decimal("0.91"),
        Decimal("0.4"),
        Decimal("0.1"),
    ]
    assert stored["windows"] == 4
    assert stored["window_start_s"] == [Decimal("0"), Decimal("10"), Decimal("20"), Decimal("30")]
    assert (
        stored["recorded_at"] == "2026-11-26T23:30:00.000Z"
        and stored["recorded_at_source"] == "file"
    )
    assert stored["uploaded_at"] == "2026-11-27T03:00:00.000Z"
    assert stored["anomaly_day"] == "2026-11-26" and "rejected_day" not in stored
    assert stored["at_key"] == "2026-11-26T23:30:00.000Z#" + schema.file_hash(
        "ecg-ingest-test", KEY
    )
    assert stored["device_key"] == "site-a/holter-01" and stored["site"] == "site-a"
    assert stored["patient_ref"] == "P-7" and stored["record_id"] == "R-1"
    assert stored["leads_found"] == ["i", "ii", "v2"] and stored["sampling_rate_hz"] == Decimal(
        "1000.0"
    )
    # The access patterns find it through the indexes schema.py declares.
    by_device = dynamodb.query(
        TableName=TABLE,
        IndexName=schema.BY_DEVICE,
        KeyConditionExpression="device_key = :d AND at_key BETWEEN :a AND :b",
        ExpressionAttributeValues={
            ":d": {"S": "site-a/holter-01"},
            ":a": {"S": "2026-11-26"},
            ":b": {"S": "2026-11-27"},
        },
    )
    assert by_device["Count"] == 1
    anomalies = dynamodb.query(
        TableName=TABLE,
        IndexName=schema.BY_ANOMALY_DAY,
        KeyConditionExpression="anomaly_day = :o",
        ExpressionAttributeValues={":o": {"S": "2026-11-26"}},
    )
    assert anomalies["Count"] == 1


def test_rejected_item_holds_the_reason(dynamodb) -> None:  # type: ignore[no-untyped-def]
    rejection = RejectedFile(
        "missing lead(s) V2: leads found: I, II; leads needed: I, II, V2", "missing_leads"
    )
    item = rejected_item(
        _ref(), FileFacts(site="site-a", device="holter-01"), rejection, SETTINGS, UPLOADED
    )
    assert put_item(dynamodb, TABLE, item, _budget())
    stored = item_for(dynamodb, KEY)
    assert stored is not None
    assert stored["status"] == "REJECTED" and stored["rejected_day"] == "2026-11-27"
    assert "anomaly_day" not in stored
    assert (
        stored["reason"].startswith("missing lead(s) V2")
        and stored["reason_code"] == "missing_leads"
    )
    assert "probability" not in stored and "label" not in stored
    assert stored["recorded_at_source"] == "upload"


def test_redelivered_event_writes_nothing_new(dynamodb) -> None:  # type: ignore[no-untyped-def]
    assert put_item(dynamodb, TABLE, _scored([0.2]), _budget())
    again = _scored([0.2])
    again["scored_at"] = "2026-11-27T09:00:00.000Z"
    assert not put_item(dynamodb, TABLE, again, _budget())
    items = all_items(dynamodb)
    assert len(items) == 1 and items[0]["scored_at"] == "2026-11-27T03:01:00.000Z"


def test_older_event_never_overwrites_a_newer_result(dynamodb) -> None:  # type: ignore[no-untyped-def]
    assert put_item(dynamodb, TABLE, _scored([0.9], sequencer="0066E1B9C2D6A70009"), _budget())
    assert not put_item(dynamodb, TABLE, _scored([0.1], sequencer="0066E1B9C2D6A70008"), _budget())
    assert item_for(dynamodb, KEY)["probability"] == Decimal("0.9")  # type: ignore[index]
    # A newer upload of the same key replaces it, even with a shorter sequencer string.
    assert put_item(dynamodb, TABLE, _scored([0.3], sequencer="0066E1B9C2D6A7001"), _budget())
    assert item_for(dynamodb, KEY)["probability"] == Decimal("0.3")  # type: ignore[index]


def test_without_a_sequencer_the_first_result_stays(dynamodb) -> None:  # type: ignore[no-untyped-def]
    assert put_item(dynamodb, TABLE, _scored([0.6], sequencer=None), _budget())
    assert not put_item(dynamodb, TABLE, _scored([0.1], sequencer=None), _budget())
    assert len(all_items(dynamodb)) == 1


def test_throttled_writes_are_retried(dynamodb) -> None:  # type: ignore[no-untyped-def]
    flaky = FlakyDynamo(dynamodb, failures=2)
    assert put_item(flaky, TABLE, _scored([0.2]), _budget())
    assert flaky.attempts == 3 and len(all_items(dynamodb)) == 1


def test_throttling_past_the_budget_is_transient(dynamodb) -> None:  # type: ignore[no-untyped-def]
    flaky = FlakyDynamo(dynamodb, failures=10_000)
    with pytest.raises(TransientError):
        put_item(flaky, TABLE, _scored([0.2]), _budget(remaining_ms=30_000))
    assert 2 < flaky.attempts < 10_000 and all_items(dynamodb) == []


class SlowDynamo:
    """Every PutItem hangs until the client's read timeout, then fails (the worst case)."""

    def __init__(self, context: FakeContext, hang_s: float):
        self.context, self.hang_s, self.attempts = context, hang_s, 0

    def put_item(self, **kwargs: object) -> None:
        self.attempts += 1
        self.context.sleep(self.hang_s)
        raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


def test_a_write_starts_only_when_its_worst_case_fits() -> None:
    # 20 s left, 10 s kept for answering: one 7-s attempt fits, a second one does not.
    context = FakeContext(remaining_ms=20_000)
    slow = SlowDynamo(context, hang_s=DYNAMODB_ATTEMPT_S)
    with pytest.raises(TransientError):
        put_item(slow, TABLE, _scored([0.2]), Budget(context, sleep=context.sleep))
    assert slow.attempts == 1
    assert context.remaining_ms >= 10_000  # the reserve was never touched
    context = FakeContext(remaining_ms=16_000)  # 6 s to spend: not even one attempt
    slow = SlowDynamo(context, hang_s=DYNAMODB_ATTEMPT_S)
    with pytest.raises(TransientError, match="no time left"):
        put_item(slow, TABLE, _scored([0.2]), Budget(context, sleep=context.sleep))
    assert slow.attempts == 0


def test_missing_table_is_a_system_fault(dynamodb) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemFault):
        put_item(dynamodb, "no-such-table", _scored([0.2]), _budget())


def test_a_day_long_recording_fits_one_item() -> None:
    rng = np.random.default_rng(0)
    item = _scored(list(rng.random(8640)))  # 24 h of 10-s windows, the longest accepted
    size = len(json.dumps(item, default=str).encode())
    assert size < 400_000 / 2
