"""ecg-scorer against moto: each access pattern returns what the Lambda stored, in order,
within the time bounds, across pages; export parses back; redrive and upload move real
messages and objects; mistakes get a clear message."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.stub import Stubber
from moto import mock_aws
from scorer import store
from scorer.config import load_settings
from scorer.endpoint import FileScore
from scorer.errors import RejectedFile
from scorer.prepare import Prepared

from ecg_scorer import cli
from ecg_scorer.local import sam_template

TABLE = "predictions-test"
BUCKET = "ingest-test"
NOW = datetime.now(UTC).replace(microsecond=0)
# The Lambda's settings (as template.yaml sets them) that the store's items record.
LAMBDA_ENV = {
    "PREDICTIONS_TABLE": TABLE,
    "ENDPOINT_NAME": "cnn1d-lstm-ecg-v1",
    "MODEL_VERSION": "cnn1d_lstm_ecg_v1",
    "MODEL_LEADS": "I,II,V2",
    "MODEL_SAMPLING_RATE_HZ": "200",
    "WINDOW_SAMPLES": "2000",
    "MAX_FILE_BYTES": "26214400",
    "MAX_PAYLOAD_BYTES": "4000000",
    "POWERTOOLS_SERVICE_NAME": "ecg-scorer",
    "POWERTOOLS_METRICS_NAMESPACE": "EcgScorer",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "ECG_SCORER_TABLE",
        "ECG_SCORER_BUCKET",
        "ECG_SCORER_QUEUE_URL",
        "ECG_SCORER_DLQ_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


@pytest.fixture
def ddb(aws: None) -> Any:
    """PredictionsTable created the way the local stack creates it (from template.yaml)."""
    client = boto3.client("dynamodb")
    client.create_table(**sam_template.table_definition(sam_template.load_template(), TABLE))
    return client


def stored(
    ddb: Any,
    key: str,
    at: datetime,
    site: str = "stmarys",
    device: str = "holter-7",
    probability: float | None = 0.1,
    reason: str | None = None,
    model_version: str = "cnn1d_lstm_ecg_v1",
) -> dict[str, Any]:
    """Put one item built by the Lambda's own store (so a change there reaches these tests)."""
    full_key = f"incoming/{site}/{device}/{key}"
    ref = store.FileRef(
        bucket=BUCKET,
        key=full_key,
        version_id="v-1",
        etag='"abc"',
        size_bytes=1234,
        sequencer="0055AED6DCD90281E5",
        uploaded_at=at,
    )
    facts = store.FileFacts(site=site, device=device, format="csv")
    settings = load_settings({**LAMBDA_ENV, "MODEL_VERSION": model_version})
    scored_at = at + timedelta(seconds=3)
    if reason is not None:
        item = store.rejected_item(
            ref, facts, RejectedFile(reason, "test_reason"), settings, scored_at
        )
    else:
        assert probability is not None
        prepared = Prepared(
            windows=np.zeros((2, 2000, 3), dtype=np.float32),
            last_window_padded=False,
            sampling_rate_hz=200.0,
            rate_assumed=False,
            leads_found=["I", "II", "V2"],
            duration_s=20.0,
        )
        score = FileScore(probabilities=[probability, 0.05], threshold=0.5)
        item = store.scored_item(ref, facts, prepared, score, settings, scored_at)
    serializer = TypeSerializer()
    ddb.put_item(TableName=TABLE, Item={k: serializer.serialize(v) for k, v in item.items()})
    return item


def run(*argv: str) -> str:
    out = io.StringIO()
    assert cli.main(list(argv), out=out) == 0
    return out.getvalue()


def run_json(*argv: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(run(*argv, "--format", "json", "--table", TABLE))
    return result


def keys(rows: list[dict[str, Any]]) -> list[str]:
    return [r["key"].rsplit("/", 1)[-1] for r in rows]


def test_result_shows_every_model_version_of_one_file(ddb: Any) -> None:
    stored(ddb, "a.csv", NOW - timedelta(hours=1), probability=0.2)
    stored(ddb, "a.csv", NOW - timedelta(hours=1), probability=0.9, model_version="v2")
    stored(ddb, "b.csv", NOW - timedelta(hours=1))
    uri = f"s3://{BUCKET}/incoming/stmarys/holter-7/a.csv"
    rows = run_json("result", uri)
    assert {(r["model_version"], r["probability"]) for r in rows} == {
        ("cnn1d_lstm_ecg_v1", 0.2),
        ("v2", 0.9),
    }
    assert not {"pk", "sk", "at_key", "outcome_day"} & set(rows[0])
    # bucket/key without the scheme is the same file; the table view lists each field.
    text = run("result", uri.removeprefix("s3://"), "--table", TABLE)
    assert "probability" in text and "0.900" in text and "0.200" in text


def test_device_results_are_newest_first_within_the_range(ddb: Any) -> None:
    for hours, name in [(30, "old.csv"), (20, "h20.csv"), (2, "h2.csv"), (10, "h10.csv")]:
        stored(ddb, name, NOW - timedelta(hours=hours))
    stored(ddb, "other.csv", NOW - timedelta(hours=1), device="holter-8")
    rows = run_json("device", "stmarys", "holter-7")
    assert keys(rows) == ["h2.csv", "h10.csv", "h20.csv"]
    rows = run_json("device", "stmarys", "holter-7", "--since", "2d", "--until", "5h")
    assert keys(rows) == ["h10.csv", "h20.csv", "old.csv"]


def test_since_is_inclusive_and_until_exclusive(ddb: Any) -> None:
    start = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    stored(ddb, "at-start.csv", start)
    stored(ddb, "at-end.csv", start + timedelta(hours=1))
    rows = run_json(
        "site", "stmarys", "--since", "2026-03-01T08:00Z", "--until", "2026-03-01T09:00Z"
    )
    assert keys(rows) == ["at-start.csv"]


def test_site_results_cover_all_its_devices_only(ddb: Any) -> None:
    stored(ddb, "a.csv", NOW - timedelta(hours=3), device="d1")
    stored(ddb, "b.csv", NOW - timedelta(hours=2), device="d2")
    stored(ddb, "c.csv", NOW - timedelta(hours=1), site="elsewhere")
    rows = run_json("site", "stmarys")
    assert keys(rows) == ["b.csv", "a.csv"]
    assert {r["device"] for r in rows} == {"d1", "d2"}


def test_anomalies_are_most_probable_first_across_days(ddb: Any) -> None:
    stored(ddb, "p70.csv", NOW - timedelta(days=2, hours=1), probability=0.7)
    stored(ddb, "p99.csv", NOW - timedelta(days=1, hours=1), probability=0.99)
    stored(ddb, "p80.csv", NOW - timedelta(hours=1), probability=0.8, site="other")
    stored(ddb, "normal.csv", NOW - timedelta(hours=2), probability=0.3)
    stored(ddb, "bad.csv", NOW - timedelta(hours=2), reason="too short")
    stored(ddb, "p95-old.csv", NOW - timedelta(days=9), probability=0.95)
    assert keys(run_json("anomalies", "--since", "3d")) == ["p99.csv", "p80.csv", "p70.csv"]
    assert keys(run_json("anomalies", "--since", "3d", "--min-probability", "0.75")) == [
        "p99.csv",
        "p80.csv",
    ]
    assert keys(run_json("anomalies", "--since", "3d", "--limit", "1")) == ["p99.csv"]


def test_rejected_lists_the_reasons_newest_first(ddb: Any) -> None:
    stored(ddb, "short.csv", NOW - timedelta(hours=5), reason="recording is 4 s, needs 10 s")
    stored(ddb, "leads.csv", NOW - timedelta(hours=1), reason="missing lead V2; found I, II")
    stored(ddb, "fine.csv", NOW - timedelta(hours=1), probability=0.9)
    rows = run_json("rejected")
    assert [(k, r["reason"]) for k, r in zip(keys(rows), rows, strict=True)] == [
        ("leads.csv", "missing lead V2; found I, II"),
        ("short.csv", "recording is 4 s, needs 10 s"),
    ]
    table = run("rejected", "--table", TABLE)
    assert "missing lead V2; found I, II" in table and "2 results" in table


def test_results_are_paged_through(ddb: Any) -> None:
    for n in range(23):
        stored(ddb, f"f{n:02}.csv", NOW - timedelta(minutes=10 + n), probability=0.6 + n / 100)
    rows = run_json("device", "stmarys", "holter-7", "--page-size", "4")
    assert keys(rows) == [f"f{n:02}.csv" for n in range(23)]
    rows = run_json("anomalies", "--page-size", "5")
    assert len(rows) == 23 and rows[0]["probability"] == 0.82


@pytest.fixture
def export_items(ddb: Any) -> list[dict[str, Any]]:
    day = datetime(2026, 5, 10, tzinfo=UTC)
    return [
        stored(ddb, "n.csv", day + timedelta(hours=1), probability=0.1),
        stored(ddb, "a.csv", day + timedelta(hours=5), probability=0.9),
        stored(ddb, "r.csv", day + timedelta(hours=30), reason="empty file"),
        stored(ddb, "later.csv", day + timedelta(days=5), probability=0.2),
    ]


def test_export_jsonl_parses_back_oldest_first(
    export_items: list[dict[str, Any]], tmp_path: Path
) -> None:
    out = tmp_path / "export.jsonl"
    run(
        "export",
        "--table",
        TABLE,
        "--since",
        "2026-05-10",
        "--until",
        "2026-05-12",
        "--out",
        str(out),
        "--page-size",
        "1",
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert keys(rows) == ["n.csv", "a.csv", "r.csv"]
    assert rows[1]["window_probabilities"] == [0.9, 0.05]
    assert rows[2]["status"] == "REJECTED" and rows[2]["reason"] == "empty file"
    assert not list(tmp_path.glob("*.partial"))


def test_export_csv_parses_back(export_items: list[dict[str, Any]]) -> None:
    text = run(
        "export",
        "--table",
        TABLE,
        "--since",
        "2026-05-10",
        "--until",
        "2026-05-12",
        "--format",
        "csv",
    )
    rows = list(csv.DictReader(io.StringIO(text)))
    assert keys(rows) == ["n.csv", "a.csv", "r.csv"]
    assert [r["status"] for r in rows] == ["SCORED", "SCORED", "REJECTED"]
    assert float(rows[1]["probability"]) == pytest.approx(0.9)
    assert json.loads(rows[1]["window_probabilities"]) == [0.9, 0.05]
    assert rows[0]["recorded_at"] == "2026-05-10T01:00:00.000Z"


def queues() -> tuple[Any, str, str]:
    sqs = boto3.client("sqs")
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName="scoring")["QueueUrl"]
    return sqs, queue, dlq


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", []):
        got.extend(batch)
    return got


def test_redrive_moves_every_dlq_message_and_says_how_many(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sqs, queue, dlq = queues()
    for n in range(13):
        sqs.send_message(
            QueueUrl=dlq,
            MessageBody=json.dumps(
                {"Records": [{"s3": {"object": {"key": f"incoming/s/d/{n}.csv"}}}]}
            ),
            MessageAttributes={"attempt": {"DataType": "Number", "StringValue": str(n)}},
        )
    monkeypatch.setenv("ECG_SCORER_DLQ_URL", dlq)
    monkeypatch.setenv("ECG_SCORER_QUEUE_URL", queue)
    assert (
        run("redrive", "--method", "loop", "--wait-seconds", "0")
        == "moved 13 messages from the DLQ to the scoring queue\n"
    )
    moved = drain(sqs, queue)
    assert sorted(
        json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"] for m in moved
    ) == sorted(f"incoming/s/d/{n}.csv" for n in range(13))
    assert {m["MessageAttributes"]["attempt"]["StringValue"] for m in moved} == {
        str(n) for n in range(13)
    }
    assert drain(sqs, dlq) == []


def test_redrive_stops_at_max_messages(aws: None) -> None:
    sqs, queue, dlq = queues()
    for n in range(7):
        sqs.send_message(QueueUrl=dlq, MessageBody=str(n))
    out = run(
        "redrive",
        "--dlq-url",
        dlq,
        "--queue-url",
        queue,
        "--max-messages",
        "3",
        "--wait-seconds",
        "0",
    )
    # Against AWS's endpoint (moto in-process) auto still loops: a move task cannot stop at 3.
    assert out.startswith("moved 3 messages")
    assert len(drain(sqs, queue)) == 3


def test_upload_puts_the_file_where_the_pipeline_reads(aws: None, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    ecg = tmp_path / "rec 1.csv"
    ecg.write_text("I,II,V2\n0.1,0.2,0.3\n")
    out = run(
        "upload",
        str(ecg),
        "--site",
        "stmarys",
        "--device",
        "holter-7",
        "--bucket",
        BUCKET,
        "--metadata",
        "recorded_at=2026-05-10T01:00:00Z",
    )
    key = "incoming/stmarys/holter-7/rec 1.csv"
    assert out == f"uploaded {ecg.stat().st_size} bytes to s3://{BUCKET}/{key}\n"
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"] == {"recorded_at": "2026-05-10T01:00:00Z"}
    # The sample values never reach the terminal.
    assert "0.1" not in out


def test_upload_refuses_a_site_that_would_leave_the_prefix(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ecg = tmp_path / "x.csv"
    ecg.write_text("I\n1\n")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["upload", str(ecg), "--site", "../x", "--device", "d", "--bucket", BUCKET])
    assert exit_.value.code == 2
    assert "bad site '../x'" in capsys.readouterr().err


def test_names_come_from_the_stack_outputs(ddb: Any) -> None:
    stored(ddb, "a.csv", NOW - timedelta(hours=1), probability=0.9)
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"PredictionsTableName": {"Value": TABLE}},
    }
    boto3.client("cloudformation").create_stack(StackName="ecg", TemplateBody=json.dumps(template))
    out = run("anomalies", "--stack", "ecg", "--format", "json")
    assert keys(json.loads(out)) == ["a.csv"]


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01", "24x"])
def test_a_bad_time_is_a_usage_error(
    aws: None, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["anomalies", "--table", TABLE, "--since", bad])
    assert exit_.value.code == 2
    assert f"bad time '{bad}'" in capsys.readouterr().err


def test_an_empty_range_is_a_usage_error(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["rejected", "--table", TABLE, "--since", "1h", "--until", "2h"])
    assert "must be before" in capsys.readouterr().err


def test_an_unknown_table_is_named_as_such(ddb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["site", "stmarys", "--table", "no-such-table"], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert err.startswith("ecg-scorer: table not found") and "--table" in err


def test_a_missing_table_name_says_where_to_give_it(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["rejected"], out=io.StringIO()) == 1
    assert "pass --table, set ECG_SCORER_TABLE, or pass --stack" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("90m", NOW - timedelta(minutes=90)),
        ("now", NOW),
        ("2026-11-27", datetime(2026, 11, 27, tzinfo=UTC)),
        ("2026-11-27T08:30:00Z", datetime(2026, 11, 27, 8, 30, tzinfo=UTC)),
        ("2026-11-27T09:30:00+01:00", datetime(2026, 11, 27, 8, 30, tzinfo=UTC)),
    ],
)
def test_times_are_iso_or_ages(text: str, expected: datetime) -> None:
    assert cli.parse_time(text, NOW) == expected


def test_a_failed_export_leaves_no_file(ddb: Any, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    argv = ["export", "--table", "no-such-table", "--format", "csv", "--out", str(out)]
    assert cli.main(argv, out=io.StringIO()) == 1
    assert list(tmp_path.iterdir()) == []


def test_auto_redrive_uses_the_sqs_move_task_only_on_aws() -> None:
    assert cli.runs_on_aws(boto3.client("sqs", region_name="eu-west-1"))
    assert not cli.runs_on_aws(boto3.client("sqs", endpoint_url="http://127.0.0.1:4566"))


def stubbed_move_task(final: dict[str, Any]) -> tuple[Any, Stubber]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    stub = Stubber(sqs)
    dlq_arn = "arn:aws:sqs:us-east-1:123456789012:dlq"
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:q"
    for arn, url in ((dlq_arn, "https://sqs/dlq"), (queue_arn, "https://sqs/q")):
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {"QueueArn": arn}},
            {"QueueUrl": url, "AttributeNames": ["QueueArn"]},
        )
    stub.add_response(
        "start_message_move_task",
        {"TaskHandle": "h-1"},
        {"SourceArn": dlq_arn, "DestinationArn": queue_arn},
    )
    running = {"Status": "RUNNING", "ApproximateNumberOfMessagesMoved": 4, "TaskHandle": "h-1"}
    for task in (running, final):
        stub.add_response(
            "list_message_move_tasks",
            {"Results": [task]},
            {"SourceArn": dlq_arn, "MaxResults": 1},
        )
    stub.activate()
    return sqs, stub


def test_move_task_redrive_waits_and_reports_the_count() -> None:
    sqs, stub = stubbed_move_task({"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 13})
    waits: list[float] = []
    moved = cli.redrive_move_task(sqs, "https://sqs/dlq", "https://sqs/q", sleep=waits.append)
    assert moved == 13
    assert waits == [2.0]
    stub.assert_no_pending_responses()


def test_a_failed_move_task_says_why() -> None:
    failed = {"Status": "FAILED", "ApproximateNumberOfMessagesMoved": 6, "FailureReason": "Denied"}
    sqs, _ = stubbed_move_task(failed)
    with pytest.raises(cli.CliError, match="stopped after moving 6: Denied"):
        cli.redrive_move_task(sqs, "https://sqs/dlq", "https://sqs/q", sleep=lambda _: None)


def test_move_task_cannot_stop_at_a_count(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["redrive", "--dlq-url", "d", "--queue-url", "q", "--method", "move-task"]
    with pytest.raises(SystemExit):
        cli.main([*argv, "--max-messages", "3"])
    assert "--max-messages needs --method loop" in capsys.readouterr().err


def test_result_for_an_unscored_file_says_so(ddb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["result", f"{BUCKET}/incoming/s/d/missing.csv", "--table", TABLE]
    assert cli.main(argv, out=io.StringIO()) == 1
    assert "no result for s3://ingest-test/incoming/s/d/missing.csv" in capsys.readouterr().err


def test_list_output_as_csv_parses_back(ddb: Any) -> None:
    stored(ddb, "a.csv", NOW - timedelta(hours=2), probability=0.75)
    stored(ddb, "b.csv", NOW - timedelta(hours=1), reason="no lead named V2")
    text = run("site", "stmarys", "--table", TABLE, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["key"], r["status"], r["probability"], r["reason"]) for r in rows] == [
        ("incoming/stmarys/holter-7/b.csv", "REJECTED", "", "no lead named V2"),
        ("incoming/stmarys/holter-7/a.csv", "SCORED", "0.750", ""),
    ]
