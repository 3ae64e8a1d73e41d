"""Device formats through the whole handler (issue 10): WFDB records whose parts arrive as
separate uploads in any order, a .zip of one record, EDF/BDF, and Holter-length recordings
fanned out in chunks and aggregated into one item.

The handler's own orders (chunks, second looks) go to the scoring queue; here a capturing
SQS client keeps them so each test delivers them as Lambda would, in any order, twice.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import edfio
import numpy as np
import pytest
from scorer import fanout, schema
from scorer.window_results import WindowResults
from scorer_helpers import (
    BUCKET,
    FakeRuntime,
    all_items,
    ecg_like,
    item_for,
    run_batch,
    sqs_event,
    upload,
)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
WFDB_DIR = SHARED / "ecg" / "wfdb"
PTBXL_DIR = SHARED / "ptbxl" / "records500" / "00000"


class Orders:
    """An SQS client that keeps what the handler sends itself (and says it was sent)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []  # (body, delay)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        self.sent += [(e["MessageBody"], int(e.get("DelaySeconds", 0))) for e in Entries]
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    def take(self) -> list[str]:
        bodies = [body for body, _ in self.sent]
        self.sent = []
        return bodies


def deliver(app: Any, aws: Any, bodies: list[str], runtime: Any, orders: Orders) -> dict:
    """The handler's own messages, delivered as one batch."""
    event = {
        "Records": [
            {"messageId": f"order-{i}", "body": body, "eventSource": "aws:sqs"}
            for i, body in enumerate(bodies)
        ]
    }
    aws.sqs = orders
    return run_batch(app, aws, event, runtime)


def drain(app: Any, aws: Any, bodies: list[str], runtime: Any, orders: Orders) -> None:
    """Deliver orders, then what the handler passes on to other invocations, until none."""
    while bodies:
        assert deliver(app, aws, bodies, runtime, orders) == {"batchItemFailures": []}
        bodies = orders.take()


def handle(app: Any, aws: Any, records: list[dict], runtime: Any, orders: Orders) -> dict:
    aws.sqs = orders
    return run_batch(app, aws, sqs_event([[r] for r in records]), runtime)


def _put_record(aws: Any, folder: str, files: dict[str, bytes], order: list[str]) -> list[dict]:
    return [upload(aws, f"{folder}/{name}", files[name]) for name in order]


def _wfdb_files(stem: str, directory: Path = WFDB_DIR) -> dict[str, bytes]:
    """A record's header and every file it names."""
    if not directory.is_dir():
        pytest.skip(f"real WFDB records not found at {directory}")
    from scorer import wfdb_header

    header = (directory / f"{stem}.hea").read_bytes()
    names = [f"{stem}.hea", *wfdb_header.needed_files(wfdb_header.parse_header(header))]
    return {name: (directory / name).read_bytes() for name in names}


@pytest.mark.parametrize("header_first", [True, False])
def test_a_wfdb_record_is_scored_once_whichever_part_arrives_last(
    app, aws, header_first: bool
) -> None:  # type: ignore[no-untyped-def]
    files = _wfdb_files("s0010_re")  # PTB: 15 leads at 1000 Hz incl. i, ii, v2; .dat + .xyz
    names = sorted(files, key=lambda n: (n.endswith(".hea") != header_first, n))
    folder = "incoming/ptb/lab-1"
    runtime, orders = FakeRuntime(), Orders()
    # Parts arrive one batch at a time, then every part's event is delivered again.
    for name in names:
        record = _put_record(aws, folder, files, [name])
        assert handle(app, aws, record, runtime, orders) == {"batchItemFailures": []}
    # The two parts that found the record incomplete look again later (a safety net for
    # parts that never come); by then the record is scored and the looks do nothing.
    looks = orders.take()
    assert len(looks) == 2
    assert deliver(app, aws, looks, runtime, orders) == {"batchItemFailures": []}
    items = all_items(aws.dynamodb)
    assert [i["key"] for i in items] == [f"{folder}/s0010_re.hea"]
    item = items[0]
    assert item["status"] == "SCORED" and item["format"] == "wfdb"
    assert item["windows"] == 4 and item["sampling_rate_hz"] == 1000
    assert len(runtime.calls) == 1  # scored once, not once per part
    assert orders.take() == []  # nothing waits any more


def test_a_record_whose_parts_never_arrive_is_rejected_naming_them(app, aws) -> None:  # type: ignore[no-untyped-def]
    files = _wfdb_files("100")  # MIT-BIH: MLII and V5, 30 min
    runtime, orders = FakeRuntime(), Orders()
    record = _put_record(aws, "incoming/mit/holter-1", files, ["100.hea"])
    assert handle(app, aws, record, runtime, orders) == {"batchItemFailures": []}
    for look in range(1, app.MAX_LOOKS + 1):
        (body,) = orders.take()
        assert json.loads(body)["attempt"] == look
        assert orders.sent == [] and item_for(aws.dynamodb, "incoming/mit/holter-1/100.hea") is None
        assert deliver(app, aws, [body], runtime, orders) == {"batchItemFailures": []}
    item = item_for(aws.dynamodb, "incoming/mit/holter-1/100.hea")
    assert item is not None and item["reason_code"] == "wfdb_incomplete"
    assert "100.dat did not arrive within 60 minutes" in item["reason"]


def test_a_record_with_leads_to_derive_or_missing_says_so(app, aws) -> None:  # type: ignore[no-untyped-def]
    files = _wfdb_files("100")  # MLII (II) and V5: no I, no V2
    runtime, orders = FakeRuntime(), Orders()
    record = _put_record(aws, "incoming/mit/holter-1", files, ["100.dat", "100.hea"])
    handle(app, aws, record, runtime, orders)
    item = item_for(aws.dynamodb, "incoming/mit/holter-1/100.hea")
    assert item is not None and item["status"] == "REJECTED"
    assert item["reason"].startswith("missing leads I, V2: found standard leads II, V5;")


def test_a_zip_of_one_record_is_read_and_annotation_files_are_left(app, aws) -> None:  # type: ignore[no-untyped-def]
    files = _wfdb_files("s0010_re")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"s0010_re/{name}", data)
    runtime, orders = FakeRuntime(), Orders()
    zipped = upload(aws, "incoming/ptb/lab-1/s0010_re.zip", buffer.getvalue())
    notes = upload(aws, "incoming/ptb/lab-1/s0010_re.atr", b"\x00\x01annotations")
    assert handle(app, aws, [zipped, notes], runtime, orders) == {"batchItemFailures": []}
    items = all_items(aws.dynamodb)
    assert [(i["key"], i["status"]) for i in items] == [
        ("incoming/ptb/lab-1/s0010_re.zip", "SCORED")
    ]


def _edf(signal: np.ndarray, fs: float, names: list[str], bdf: bool = False) -> bytes:
    kind = edfio.BdfSignal if bdf else edfio.EdfSignal
    signals = [
        kind(
            signal[:, j] * 1000,
            fs,
            label=name,
            physical_dimension="uV",
            physical_range=(-32768, 32767),
        )
        for j, name in enumerate(names)
    ]
    return (edfio.Bdf if bdf else edfio.Edf)(signals).to_bytes()


def test_ptbxl_records_as_wfdb_and_as_edf_score_identically(app, aws) -> None:  # type: ignore[no-untyped-def]
    """PTB-XL records uploaded as WFDB parts (.dat first for half of them) and as an EDF
    written from the same samples: one item each, the same probabilities within 1e-4.

    Every 10th record by default (50); ECG_ALL_RECORDS=1 runs all 500 (3 min here)."""
    if not PTBXL_DIR.is_dir():
        pytest.skip(f"PTB-XL records not found at {PTBXL_DIR}")
    from scorer import wfdb

    stems = sorted(p.stem for p in PTBXL_DIR.glob("*.hea"))
    stems = stems if os.environ.get("ECG_ALL_RECORDS") else stems[::10]
    runtime, orders = FakeRuntime(), Orders()
    for start in range(0, len(stems), 50):
        records = []
        for n, stem in enumerate(stems[start : start + 50]):
            hea, dat = (
                (PTBXL_DIR / f"{stem}.hea").read_bytes(),
                (PTBXL_DIR / f"{stem}.dat").read_bytes(),
            )
            parts = {f"{stem}.hea": hea, f"{stem}.dat": dat}
            order = [f"{stem}.dat", f"{stem}.hea"] if n % 2 else [f"{stem}.hea", f"{stem}.dat"]
            records += _put_record(aws, "incoming/ptbxl/cart-1", parts, order)
            read = wfdb.read_record(parts, f"{stem}.hea")
            assert read.leads is not None
            edf = _edf(read.signal.astype(np.float64), 500.0, read.leads)
            records.append(upload(aws, f"incoming/ptbxl/cart-1/{stem}.edf", edf))
        assert handle(app, aws, records, runtime, orders) == {"batchItemFailures": []}
        deliver(app, aws, orders.take(), runtime, orders)
    for stem in stems:
        as_wfdb = item_for(aws.dynamodb, f"incoming/ptbxl/cart-1/{stem}.hea")
        as_edf = item_for(aws.dynamodb, f"incoming/ptbxl/cart-1/{stem}.edf")
        assert as_wfdb is not None and as_edf is not None, stem
        assert as_wfdb["status"] == as_edf["status"], stem
        if as_wfdb["status"] == "SCORED":
            a = [float(p) for p in as_wfdb["window_probabilities"] if p is not None]
            b = [float(p) for p in as_edf["window_probabilities"] if p is not None]
            np.testing.assert_allclose(a, b, atol=1e-4)
        else:
            assert as_wfdb["reason_code"] == as_edf["reason_code"], stem
    assert len(all_items(aws.dynamodb)) == 2 * len(stems)  # the .dat parts make no item


# Every record in ../shared/data/ecg/wfdb, and what it must end as (one item, the header's).
SHARED_RECORDS = {
    "100": ("REJECTED", "missing_leads"),  # MLII, V5
    "s0010_re": ("SCORED", None),  # 15 leads incl. i, ii, v2
    "test01_00s": ("REJECTED", "too_short"),  # 8 s
    "a103l": ("REJECTED", "missing_leads"),  # II, V, PLETH
    "v102s": ("REJECTED", "missing_leads"),  # II, V, PLETH, RESP
    "03700181": ("REJECTED", "missing_leads"),  # MCL1, ABP, RESP
    "mixedsignals": ("REJECTED", "wfdb_format_not_supported"),  # FLAC-compressed
    "041s/041s": ("REJECTED", "missing_leads"),  # multi-segment: III, I, V; V is not V2
}


@pytest.mark.parametrize("header_last", [False, True])
def test_every_shared_wfdb_record_ends_as_one_item_with_a_reason(
    app, aws, header_last: bool
) -> None:  # type: ignore[no-untyped-def]
    if not WFDB_DIR.is_dir():
        pytest.skip(f"real WFDB records not found at {WFDB_DIR}")
    runtime, orders = FakeRuntime(), Orders()
    expected = {}
    for path, outcome in SHARED_RECORDS.items():
        folder, stem = path.rsplit("/", 1) if "/" in path else ("", path)
        directory = WFDB_DIR / folder if folder else WFDB_DIR
        files = dict(_wfdb_files(stem, directory))
        from scorer import wfdb_header

        header = wfdb_header.parse_header(files[f"{stem}.hea"])
        for segment in header.segments or ():  # a master header: its segments' files too
            if segment.header_file:
                seg_header = (directory / segment.header_file).read_bytes()
                files[segment.header_file] = seg_header
                for name in wfdb_header.needed_files(wfdb_header.parse_header(seg_header)):
                    files[name] = (directory / name).read_bytes()
        names = sorted(files, key=lambda n: (n == f"{stem}.hea") == header_last)
        key_folder = f"incoming/physionet/{stem.lower()}"
        records = _put_record(aws, key_folder, files, names)
        assert handle(app, aws, records, runtime, orders) == {"batchItemFailures": []}
        expected[f"{key_folder}/{stem}.hea"] = outcome
    deliver(app, aws, orders.take(), runtime, orders)  # the looks of parts before headers
    items = {i["key"]: i for i in all_items(aws.dynamodb)}
    assert set(items) == set(expected)  # parts and segment headers make no item of their own
    for key, (status, code) in expected.items():
        item = items[key]
        assert item["status"] == status, (key, item.get("reason"))
        if code is not None:
            assert item["reason_code"] == code and len(item["reason"]) > 20, key


@pytest.fixture
def short_chunks(monkeypatch):  # type: ignore[no-untyped-def]
    """Chunks of 6 windows (a minute) so a 5-minute recording fans out into 5."""
    monkeypatch.setattr(fanout, "CHUNK_WINDOWS", 6)


def test_a_long_recording_fans_out_and_ends_as_one_item(
    app, aws, short_chunks, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(app, "CHUNKS_PER_INVOCATION", 2)
    levels = list(np.round(np.linspace(0.05, 0.95, 30), 3))  # one level per 10-s window
    signal = ecg_like(300, 250, levels=levels)
    key = "incoming/holter/patch-7/day.edf"
    runtime, orders = FakeRuntime(), Orders()
    assert handle(
        app, aws, [upload(aws, key, _edf(signal, 250.0, ["I", "II", "V2"]))], runtime, orders
    ) == {"batchItemFailures": []}
    assert runtime.calls == [] and item_for(aws.dynamodb, key) is None  # only fanned out
    chunk_orders = orders.take()
    assert len(chunk_orders) == 5
    # Delivered out of order, one of them twice: chunks are a set.
    shuffled = [chunk_orders[i] for i in (3, 0, 4, 0, 2)]
    assert deliver(app, aws, shuffled, runtime, orders) == {"batchItemFailures": []}
    # Two chunks scored by this invocation; the others go back to the queue in groups of two,
    # each group visible later than the one before (separate batches, side by side).
    delays = [delay for _, delay in orders.sent]
    assert delays == [0, 0, app.PASS_ON_STEP_S]
    passed_on = orders.take()
    assert len(runtime.calls) == 1 and len(runtime.calls[0]) == 2 * 6
    drain(app, aws, passed_on, runtime, orders)
    assert item_for(aws.dynamodb, key) is None  # chunk 1 is still missing
    assert deliver(app, aws, [chunk_orders[1]], runtime, orders) == {"batchItemFailures": []}
    item = item_for(aws.dynamodb, key)
    assert item is not None and item["status"] == "SCORED" and item["windows"] == 30
    uri = item["windows_s3_uri"]
    assert uri.startswith(f"s3://{BUCKET}/results/holter/patch-7/")
    body = aws.s3.get_object(Bucket=BUCKET, Key=uri.split("/", 3)[3])["Body"].read()
    results, _ = WindowResults.from_npz(body)
    assert results.start_s.tolist() == [10.0 * i for i in range(30)]
    np.testing.assert_allclose(results.probability, levels, atol=0.02)
    assert float(item["probability"]) == pytest.approx(max(results.probability))
    # A chunk delivered again after the file is whole changes nothing and is not scored again.
    calls = len(runtime.calls)
    assert deliver(app, aws, [chunk_orders[2]], runtime, orders) == {"batchItemFailures": []}
    assert len(all_items(aws.dynamodb)) == 1 and len(runtime.calls) == calls


def test_a_reupload_restarts_its_job_and_the_old_chunks_stop(app, aws, short_chunks) -> None:  # type: ignore[no-untyped-def]
    key = "incoming/holter/patch-7/day.edf"
    runtime, orders = FakeRuntime(), Orders()
    old = _edf(ecg_like(120, 250, levels=[0.1]), 250.0, ["I", "II", "V2"])
    handle(app, aws, [upload(aws, key, old)], runtime, orders)
    old_orders = orders.take()
    new = _edf(ecg_like(120, 250, levels=[0.8]), 250.0, ["I", "II", "V2"])
    handle(app, aws, [upload(aws, key, new)], runtime, orders)
    new_orders = orders.take()
    calls = len(runtime.calls)
    drain(app, aws, old_orders + new_orders, runtime, orders)
    scored = sum(len(windows) for windows in runtime.calls[calls:])
    assert scored == 12  # the new upload's 120 s; the old upload's chunks are not scored
    item = item_for(aws.dynamodb, key)
    assert item is not None and float(item["probability"]) == pytest.approx(0.8, abs=0.02)
    job = aws.dynamodb.get_item(
        TableName=app.SETTINGS.predictions_table,
        Key={
            schema.PK: {"S": schema.file_pk(BUCKET, key)},
            schema.SK: {"S": f"JOB#{app.SETTINGS.model_version}"},
        },
    )["Item"]
    assert len(job["done"]["NS"]) == len(new_orders)


def test_a_chunk_whose_part_is_gone_rejects_the_file(app, aws, short_chunks) -> None:  # type: ignore[no-untyped-def]
    key = "incoming/holter/patch-7/gone.edf"
    runtime, orders = FakeRuntime(), Orders()
    record = upload(aws, key, _edf(ecg_like(180, 250), 250.0, ["I", "II", "V2"]))
    handle(app, aws, [record], runtime, orders)
    chunk_orders = orders.take()
    # The version the job was planned on is deleted before its chunks are read.
    version = record["s3"]["object"]["versionId"]
    aws.s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)
    drain(app, aws, chunk_orders, runtime, orders)
    item = item_for(aws.dynamodb, key)
    assert item is not None and item["status"] == "REJECTED" and item["reason_code"] == "gone"
