"""DynamoDB write units per file: items built by the Lambda's own readers and store, priced
against the table and indexes template.yaml declares; the five access patterns still find them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws
from scorer import intake, schema, store
from scorer.budget import Budget
from scorer.errors import RejectedFile
from scorer.uploads import FileFacts, FileRef
from scorer.window_results import WindowResults, summary_of
from scorer_helpers import FakeContext, settings

from ecg_scorer import query
from ecg_scorer.local import sam_template
from ecg_scorer.local.samples import load_synthetic
from ecg_scorer.write_units import KB, Layout, item_size

TABLE = "predictions-write-units"
# A bucket as template.yaml names it in us-east-1 and a key as devices write them: names are
# stored (twice: pk, bucket and key) and indexed, so their length decides the item's size.
BUCKET = "ecg-ingest-123456789012-us-east-1-0a1b2c3d"
LONGEST_BUCKET = "ecg-ingest-123456789012-ap-southeast-2-0a1b2c3d"  # 47 characters
KEY = "incoming/clinic-a/holter-01/2026-11-27T03-21-07Z_rec-000123.json"
SETTINGS = settings(PREDICTIONS_TABLE=TABLE)
UPLOADED = datetime(2026, 11, 27, 3, 21, 9, tzinfo=UTC)
LAYOUT = Layout.of(sam_template.table_definition(sam_template.load_template(), TABLE))


def _ref(key: str = KEY, bucket: str = BUCKET) -> FileRef:
    return FileRef(
        bucket,
        key,
        "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",  # S3 version ids are 32 characters
        "d41d8cd98f00b204e9800998ecf8427e",
        61_234,
        "0066E1B9C2D6A70001",
        UPLOADED,
    )


def _upload(kind: str, seconds: float = 10.0) -> bytes:
    """A recording as a device sends it: JSON with leads, rate, time and ids."""
    syn = load_synthetic()
    signal = syn.synthesize(kind, seconds, 200.0, ["I", "II", "V2"], np.random.default_rng(3))
    doc = {
        "signals": np.round(signal, 4).tolist(),
        "leads": ["I", "II", "V2"],
        "sampling_rate_hz": 200,
        "recorded_at": "2026-11-27T03:21:07Z",
        "record_id": "rec-000123",
        "patient_ref": "PT-0004711",
    }
    return json.dumps(doc).encode()


def _facts(key: str = KEY) -> FileFacts:
    """Site, device and format as the Lambda reads them from the key."""
    facts = FileFacts()
    intake.check_name(_ref(key), facts, SETTINGS)
    return facts


def scored(
    kind: str, probability: float, seconds: float = 10.0, key: str = KEY, bucket: str = BUCKET
) -> dict:
    """A SCORED item as the Lambda writes it: the upload read and cut by intake, the model's
    probability for each window, the item built by store."""
    facts = _facts(key)
    prepared = intake.prepare_file(
        _ref(key, bucket), facts, intake.Whole(_upload(kind, seconds), {}), SETTINGS
    )
    # A realistic spread of six-digit probabilities around the file's own.
    probabilities = [probability - 0.013_579 * i for i in range(len(prepared.windows))]
    results = WindowResults.of(prepared, probabilities)
    return store.scored_item(
        _ref(key, bucket),
        facts,
        results,
        summary_of(prepared, 0.5),
        SETTINGS,
        UPLOADED + timedelta(seconds=2),
    )


def rejected(key: str = KEY) -> dict:
    """A REJECTED item with the reason the Lambda gives a 4-s recording (or a key without
    site and device)."""
    facts = _facts(key)
    with pytest.raises(RejectedFile) as caught:
        intake.prepare_file(_ref(key), facts, intake.Whole(_upload("normal", 4.0), {}), SETTINGS)
    return store.rejected_item(_ref(key), facts, caught.value, SETTINGS, UPLOADED)


def test_a_normal_ten_second_file_costs_two_write_units() -> None:
    item = scored("normal", 0.123_456)
    assert item["outcome"] == "NORMAL" and item["windows"] == 1
    charged = LAYOUT.write_units(item)
    # The table and the device's index, each under 1 KB; the sparse indexes never see it.
    assert charged == {"table": 1, schema.BY_DEVICE: 1}
    assert item_size(item) <= KB
    by_device = LAYOUT.entry(item, schema.BY_DEVICE)
    assert by_device is not None
    assert "window_probabilities" not in by_device and "etag" not in by_device


def test_an_anomalous_file_adds_one_unit_for_the_anomalies_index() -> None:
    item = scored("af", 0.987_654)
    assert item["outcome"] == "ANOMALOUS"
    assert LAYOUT.write_units(item) == {"table": 1, schema.BY_DEVICE: 1, schema.BY_ANOMALY_DAY: 1}


def test_a_rejected_file_costs_three_units_and_none_without_a_device_index() -> None:
    item = rejected()
    assert item["reason_code"] == "too_short" and "probability" not in item
    assert LAYOUT.write_units(item) == {"table": 1, schema.BY_DEVICE: 1, schema.BY_REJECTED_DAY: 1}
    # A file outside incoming/<site>/<device>/ names no device: the table and rejected index.
    deviceless = rejected(key="incoming/rec-4.json")
    assert LAYOUT.write_units(deviceless) == {"table": 1, schema.BY_REJECTED_DAY: 1}


def test_the_longest_reason_stays_within_two_units_per_index() -> None:
    # store keeps at most 1,000 characters of a reason, and the indexes project it.
    item = rejected()
    item["reason"] = "x" * 1000
    charged = LAYOUT.write_units(item)
    assert charged == {"table": 2, schema.BY_DEVICE: 2, schema.BY_REJECTED_DAY: 2}


@pytest.mark.parametrize(
    ("seconds", "table_units"),
    [(60.0, 1), (600.0, 2)],  # 6 windows; 60 windows, the most an item keeps inline
)
def test_longer_files_cost_more_in_the_table_only(seconds: float, table_units: int) -> None:
    item = scored("normal", 0.2, seconds)
    assert LAYOUT.write_units(item) == {"table": table_units, schema.BY_DEVICE: 1}


def test_two_units_hold_for_keys_up_to_64_bytes_whatever_the_bucket() -> None:
    # With the longest bucket name and a patient and record id, a key of 64 bytes still fits
    # 1 KB; one of 96 does not. The key is stored twice (in pk and as key) and the bucket
    # twice: docs/scale.md has the limits and what would lift them.
    folder = "incoming/st-marys-cardiology/holter-0042/"

    def key(length: int) -> str:
        return folder + "r" * (length - len(folder) - 5) + ".json"

    fits = scored("normal", 0.1, key=key(64), bucket=LONGEST_BUCKET)
    assert LAYOUT.write_units(fits) == {"table": 1, schema.BY_DEVICE: 1}
    too_long = scored("normal", 0.1, key=key(96), bucket=LONGEST_BUCKET)
    assert LAYOUT.write_units(too_long) == {"table": 2, schema.BY_DEVICE: 1}


def test_the_entry_is_what_dynamodb_returns_from_the_index() -> None:
    """The computed index entry matches what the index holds (moto honours the projection)."""
    item = scored("af", 0.91)
    with mock_aws():
        client = _table_with([item])
        for index in (schema.BY_DEVICE, schema.BY_ANOMALY_DAY):
            partition = schema.INDEXES[index][0]
            found = client.query(
                TableName=TABLE,
                IndexName=index,
                KeyConditionExpression="#p = :p",
                ExpressionAttributeNames={"#p": partition},
                ExpressionAttributeValues={":p": {"S": item[partition]}},
            )["Items"]
            assert [query.decode_item(raw) for raw in found] == [LAYOUT.entry(item, index)]


def _table_with(items: list[dict[str, Any]]) -> Any:
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(**sam_template.table_definition(sam_template.load_template(), TABLE))
    context = FakeContext()
    budget = Budget(context, sleep=context.sleep)
    for item in items:
        if item.get("site") and item.get("device"):
            store.register_device(
                client, TABLE, item["site"], item["device"], UPLOADED, budget, set()
            )
        assert store.put_item(client, TABLE, item, budget)
    return client


def test_the_five_access_patterns_find_the_lean_items() -> None:
    normal = scored("normal", 0.1, key=KEY.replace("rec-000123", "rec-1"))
    anomalous = scored("af", 0.9, key=KEY.replace("rec-000123", "rec-2"))
    refused = rejected(key=KEY.replace("rec-000123", "rec-3"))
    deviceless = rejected(key="incoming/rec-4.json")
    since, until = UPLOADED - timedelta(days=1), UPLOADED + timedelta(days=1)
    with mock_aws():
        client = _table_with([normal, anomalous, refused, deviceless])
        # 1. one file
        (found,) = query.file_results(client, TABLE, BUCKET, anomalous["key"])
        assert found["window_probabilities"] == [Decimal("0.9")]
        # 2. one device, one site (newest first; all three share a recording time)
        site, device = normal["site"], normal["device"]
        listed = list(query.device_results(client, TABLE, site, device, since, until))
        assert {e["key"] for e in listed} == {normal["key"], anomalous["key"], refused["key"]}
        assert all("probability" in e for e in listed if e["status"] == "SCORED")
        assert len(list(query.site_results(client, TABLE, site, since, until))) == 3
        # 3. anomalies, most probable first: only the anomalous file is in that index
        assert [e["key"] for e in query.anomalies(client, TABLE, since, until)] == [
            anomalous["key"]
        ]
        # 4. rejected: with and without a device, the reason in the list
        rejects = list(query.rejected(client, TABLE, since, until))
        assert {e["key"] for e in rejects} == {refused["key"], deviceless["key"]}
        assert {e["reason_code"]: e["reason"] for e in rejects} == {
            "too_short": refused["reason"],
            "no_site_device": deviceless["reason"],
        }
        # 5. export: every full item, per-window figures included
        exported = list(query.export(client, TABLE, since, until))
        assert len(exported) == 4
        assert {e["key"]: e.get("window_probabilities") for e in exported}[normal["key"]] == [
            Decimal("0.1")
        ]
