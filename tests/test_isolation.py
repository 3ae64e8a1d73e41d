"""One file, one outcome: whatever one file or one message holds, it cannot fail the others of
its batch, and nothing it carries reaches the logs or another file's result (issue 9)."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scorer import schema
from scorer_helpers import (
    MODEL_VERSION,
    TABLE,
    FakeRuntime,
    all_items,
    ecg_like,
    item_for,
    json_bytes,
    npy_bytes,
    run_batch,
    sqs_event,
    upload,
)

PHI = ("Jane Doe", "MRN 87654321", "1961-02-03")
_serial = iter(range(10**9))  # unique keys across hypothesis examples


def _ecg_json(**meta: Any) -> bytes:
    return json_bytes({"signals": ecg_like(10, 200).tolist(), "sampling_rate_hz": 200, **meta})


def _outcomes(aws: Any, keys: list[str]) -> dict[str, str]:
    found = {}
    for key in keys:
        item = item_for(aws.dynamodb, key)
        found[key] = "none" if item is None else item["status"]
    return found


def test_dates_that_overflow_reject_their_file_not_the_batch(app, aws) -> None:  # type: ignore[no-untyped-def]
    # D1: these parse, then overflowed when the item was built and took the batch to the DLQ.
    odd = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "1850-06-01T00:00:00Z"]
    files = {
        f"incoming/site-a/dev-1/odd-{i}.json": _ecg_json(recorded_at=d) for i, d in enumerate(odd)
    }
    files |= {f"incoming/site-a/dev-1/fine-{i}.json": _ecg_json() for i in range(7)}
    event = sqs_event([[upload(aws, key, data)] for key, data in files.items()])

    assert run_batch(app, aws, event, FakeRuntime()) == {"batchItemFailures": []}
    for key in files:
        item = item_for(aws.dynamodb, key)
        assert item is not None, key
        if "odd" in key:
            assert item["status"] == "REJECTED" and item["reason_code"] == "bad_recorded_at"
            assert "between 1900 and 2100" in item["reason"] and "9999" not in item["reason"]
        else:
            assert item["status"] == "SCORED"


def test_an_unexpected_error_with_one_file_sends_back_only_its_message(
    app, aws, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    keys = [f"incoming/site-a/dev-1/f{i}.npy" for i in range(4)]
    event = sqs_event([[upload(aws, key, npy_bytes(ecg_like(10, 200)))] for key in keys])
    real = app.store.scored_item

    def breaks_on_f2(ref: Any, *args: Any) -> dict[str, Any]:
        if ref.key.endswith("f2.npy"):
            raise OverflowError("a bug in building the item")
        return real(ref, *args)

    monkeypatch.setattr(app.store, "scored_item", breaks_on_f2)
    assert run_batch(app, aws, event, FakeRuntime()) == {
        "batchItemFailures": [{"itemIdentifier": "msg-002"}]
    }
    assert _outcomes(aws, keys) == {
        keys[0]: "SCORED",
        keys[1]: "SCORED",
        keys[2]: "none",
        keys[3]: "SCORED",
    }


def test_an_unexpected_error_scoring_still_stores_the_rejected_files(app, aws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    good = upload(aws, "incoming/site-a/dev-1/good.npy", npy_bytes(ecg_like(10, 200)))
    bad = upload(aws, "incoming/site-a/dev-1/short.npy", npy_bytes(ecg_like(2, 200)))

    def broken(*args: Any) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(app.endpoint, "score_files", broken)
    response = run_batch(app, aws, sqs_event([[good], [bad]]), FakeRuntime())
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-000"}]}
    assert item_for(aws.dynamodb, "incoming/site-a/dev-1/short.npy")["status"] == "REJECTED"  # type: ignore[index]


def test_keys_of_every_legal_length_get_an_item(app, aws) -> None:  # type: ignore[no-untyped-def]
    # D3: S3 keys may be 1,024 bytes; the index sort key once held the key and overflowed.
    head = "incoming/site-a/dev-1/"
    longest = head + "é" * ((1024 - len(head) - 4) // 2) + ".npy"
    assert len(longest.encode()) <= 1024
    event = sqs_event([[upload(aws, longest, npy_bytes(ecg_like(10, 200)))]])
    assert run_batch(app, aws, event, FakeRuntime()) == {"batchItemFailures": []}
    item = item_for(aws.dynamodb, longest)
    assert item is not None and item["key"] == longest and item["status"] == "SCORED"
    assert len(item["at_key"].encode()) <= 64
    found = aws.dynamodb.query(
        TableName=TABLE,
        IndexName=schema.BY_DEVICE,
        KeyConditionExpression="device_key = :d",
        ExpressionAttributeValues={":d": {"S": "site-a/dev-1"}},
    )
    assert found["Count"] == 1


@pytest.mark.parametrize(
    "records",
    [
        ["not a record"],
        [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"object": {"key": 7}}}],
        [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": None}],
        [None, 3, []],
    ],
)
def test_a_malformed_record_sends_back_only_its_message(app, aws, records: list[Any]) -> None:  # type: ignore[no-untyped-def]
    # D6: such records raised out of the event parsing and failed the whole batch.
    good = upload(aws, "incoming/site-a/dev-1/good.npy", npy_bytes(ecg_like(10, 200)))
    event = sqs_event([[good], records])
    assert run_batch(app, aws, event, FakeRuntime()) == {
        "batchItemFailures": [{"itemIdentifier": "msg-001"}]
    }
    assert [item["status"] for item in all_items(aws.dynamodb)] == ["SCORED"]


def test_site_and_device_from_the_key_are_checked_like_metadata(app, aws) -> None:  # type: ignore[no-untyped-def]
    key = "incoming/Jane Doe/dev-1/rec.npy"
    event = sqs_event([[upload(aws, key, npy_bytes(ecg_like(10, 200)))]])
    assert run_batch(app, aws, event, FakeRuntime()) == {"batchItemFailures": []}
    item = item_for(aws.dynamodb, key)
    assert item is not None and item["reason_code"] == "bad_site"
    assert "Jane" not in item["reason"] and "given by the key" in item["reason"]


@pytest.fixture
def captured(app):  # type: ignore[no-untyped-def]
    """Every log line the handler writes, as text."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(app.logger.registered_formatter.format(record))

    keep = Keep()
    app.logger.addHandler(keep)
    yield lines
    app.logger.removeHandler(keep)


def test_patient_data_reaches_neither_logs_nor_reasons(app, aws, captured) -> None:  # type: ignore[no-untyped-def]
    """PHI in the key, the S3 metadata and the file's own metadata fields (D7)."""
    name, mrn, dob = PHI
    uploads = [
        (f"incoming/site-a/dev-1/{name} {mrn}.npy", npy_bytes(ecg_like(10, 200)), {}),
        (f"incoming/site-a/dev-1/{dob}.npy", npy_bytes(ecg_like(10, 200)), {"site": name}),
        ("incoming/site-a/dev-1/d.json", _ecg_json(recorded_at=f"{dob} {name}"), {}),
        ("incoming/site-a/dev-1/e.json", _ecg_json(site=mrn), {}),
        ("incoming/site-a/dev-1/f.json", _ecg_json(device=f"{name}/{dob}"), {}),
        ("incoming/site-a/dev-1/g.json", _ecg_json(patient_ref=mrn, record_id=name), {}),
        ("incoming/site-a/dev-1/h.npy", npy_bytes(ecg_like(10, 200)), {"recorded-at": dob + "x"}),
    ]
    event = sqs_event([[upload(aws, key, data, **meta)] for key, data, meta in uploads])
    assert run_batch(app, aws, event, FakeRuntime()) == {"batchItemFailures": []}
    items = all_items(aws.dynamodb)
    assert len(items) == len(uploads) and captured
    reasons = " ".join(item.get("reason", "") for item in items)
    logs = "\n".join(captured)
    for text in (name, mrn, dob, "Jane", "87654321"):
        assert text not in logs, text
        assert text not in reasons, text
    # The item's own fields keep what the file said (the table is where it belongs).
    g = item_for(aws.dynamodb, "incoming/site-a/dev-1/g.json")
    assert g["patient_ref"] == mrn and g["record_id"] == name  # type: ignore[index]


_MARK = "Zq9"  # planted in every random value: it must never come back in a reason
_text = st.text(min_size=0, max_size=40).map(lambda t: _MARK + t)
_metadata = st.fixed_dictionaries(
    {},
    optional={
        "recorded_at": st.one_of(
            _text, st.datetimes().map(lambda d: d.isoformat()), st.integers(), st.none()
        ),
        "site": st.one_of(_text, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,70}", fullmatch=True)),
        "device": st.one_of(_text, st.integers()),
        "sampling_rate_hz": st.one_of(
            st.floats(allow_nan=True, allow_infinity=True), _text, st.integers(), st.booleans()
        ),
        "leads": st.one_of(st.lists(_text, max_size=4), _text, st.lists(st.integers())),
        "patient_ref": st.one_of(_text, st.integers(), st.lists(st.integers(), max_size=2)),
        "record_id": _text,
    },
)
_s3_metadata = st.dictionaries(
    st.sampled_from(["site", "device", "recorded-at", "sampling-rate-hz", "leads"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(
        lambda t: _MARK + t
    ),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(meta=_metadata, s3_meta=_s3_metadata)
def test_random_metadata_always_ends_in_one_outcome_and_is_never_echoed(
    app, aws, meta: dict[str, Any], s3_meta: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    key = f"incoming/site-a/dev-1/fuzz-{next(_serial)}.json"
    record = upload(aws, key, _ecg_json(**meta), **s3_meta)
    response = run_batch(app, aws, sqs_event([[record]]), FakeRuntime())
    assert response == {"batchItemFailures": []}
    item = item_for(aws.dynamodb, key)
    assert item is not None and item["status"] in {"SCORED", "REJECTED"}
    assert _MARK not in item.get("reason", "")


_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
_s3_like = st.fixed_dictionaries(
    {
        "eventSource": st.sampled_from(["aws:s3", "aws:sqs", 3]),
        "eventName": st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete", None]),
        "s3": st.one_of(
            _json_value,
            st.fixed_dictionaries(
                {
                    "bucket": _json_value,
                    "object": st.dictionaries(st.text(max_size=10), _json_value),
                }
            ),
        ),
    }
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    bodies=st.lists(
        st.one_of(
            st.text(max_size=50),
            _json_value.map(json.dumps),
            st.lists(st.one_of(_s3_like, _json_value), max_size=3).map(
                lambda r: json.dumps({"Records": r})
            ),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_random_sqs_messages_never_fail_the_good_one(app, aws, bodies: list[str]) -> None:  # type: ignore[no-untyped-def]
    key = f"incoming/site-a/dev-1/good-{next(_serial)}.npy"
    good = sqs_event([[upload(aws, key, npy_bytes(ecg_like(10, 200)))]])["Records"][0]
    event = {"Records": [good]}
    for i, body in enumerate(bodies):
        message = copy.deepcopy(good)
        message["messageId"], message["body"] = f"random-{i}", body
        event["Records"].append(message)
    response = run_batch(app, aws, event, FakeRuntime())
    failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
    assert good["messageId"] not in failed
    assert item_for(aws.dynamodb, key)["model_version"] == MODEL_VERSION  # type: ignore[index]
    assert np.all([m.startswith("random-") for m in failed])


def test_a_file_cannot_claim_another_sites_results(app, aws) -> None:  # type: ignore[no-untyped-def]
    # A site's uploaders may write only under incoming/<their site>/ (tenancy): metadata
    # naming another site must not put the result into that site's index.
    data = _ecg_json(site="site-b")
    other = upload(aws, "incoming/site-a/dev-1/claims-b.json", data)
    s3_claim = upload(
        aws, "incoming/site-a/dev-1/s3-claims-b.npy", npy_bytes(ecg_like(10, 200)), site="site-b"
    )
    same = upload(aws, "incoming/site-a/dev-1/same.json", _ecg_json(site="site-a"))
    assert run_batch(app, aws, sqs_event([[other], [s3_claim], [same]]), FakeRuntime()) == {
        "batchItemFailures": []
    }
    for key in ("claims-b.json", "s3-claims-b.npy"):
        item = item_for(aws.dynamodb, f"incoming/site-a/dev-1/{key}")
        assert item["reason_code"] == "site_mismatch" and item["site"] == "site-a"  # type: ignore[index]
    assert item_for(aws.dynamodb, "incoming/site-a/dev-1/same.json")["status"] == "SCORED"  # type: ignore[index]
