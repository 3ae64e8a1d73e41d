"""ecg-scorer's finding commands against moto: each access pattern returns what the Lambda
stored, in order, within the time bounds, across pages; nothing is hidden (full reasons,
"showing N of M", why a range is empty); every format has the same columns; export parses
back; mistakes get a clear message that says what to do."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from cli_helpers import (
    BUCKET,
    NOW,
    TABLE,
    keys,
    run,
    run_failing,
    run_json,
    stored,
)
from scorer import schema

from ecg_scorer import cli, times

pytest_plugins = ["cli_fixtures"]  # its fixtures: cli_aws (moto), ddb (the table)


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
    cli_aws: None, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["anomalies", "--table", TABLE, "--since", bad])
    assert exit_.value.code == 2
    assert f"bad time '{bad}'" in capsys.readouterr().err


def test_an_empty_range_is_a_usage_error(cli_aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["rejected", "--table", TABLE, "--since", "1h", "--until", "2h"])
    assert "must be before" in capsys.readouterr().err


def test_an_unknown_table_is_named_as_such(ddb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["site", "stmarys", "--table", "no-such-table"], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert err.startswith("ecg-scorer: table not found") and "--table" in err


def test_a_missing_table_name_says_where_to_give_it(
    cli_aws: None, capsys: pytest.CaptureFixture[str]
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
    assert times.parse_time(text, NOW) == expected


def test_a_failed_export_leaves_no_file(ddb: Any, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    argv = ["export", "--table", "no-such-table", "--format", "csv", "--out", str(out)]
    assert cli.main(argv, out=io.StringIO()) == 1
    assert list(tmp_path.iterdir()) == []


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


# ------------------------------------------------------------------ nothing hidden


def test_a_long_reason_wraps_and_is_never_cut(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = (
        "the file has 2 unnamed channel(s); the model needs 3 leads (I, II, V2): name the "
        "leads, or send exactly 3 channels in the order I, II, V2"
    )
    stored(ddb, "x.csv", NOW - timedelta(hours=1), reason=reason)
    monkeypatch.setenv("COLUMNS", "120")
    text = run("rejected", "--table", TABLE)
    lines = text.splitlines()
    assert all(len(line) <= 120 for line in lines)
    assert " ".join(" ".join(lines).split()).count("send exactly 3 channels in the order I, II, V2")
    assert "…" not in text


def test_a_limit_says_how_many_exist(ddb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for n in range(7):
        stored(ddb, f"f{n}.csv", NOW - timedelta(minutes=10 + n))
    text = run("device", "stmarys", "holter-7", "--table", TABLE, "--limit", "3")
    assert text.rstrip().endswith("showing 3 of 7 (use --limit)")
    rows = run_json("device", "stmarys", "holter-7", "--limit", "3")
    assert len(rows) == 3
    assert "showing 3 of 7 (use --limit)" in capsys.readouterr().err
    assert run("device", "stmarys", "holter-7", "--table", TABLE).rstrip().endswith("7 results")


def test_an_empty_range_says_it_is_about_recording_time_and_counts_uploads(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    # Uploaded now, recorded a week ago: not in --since 1d, which is about recording time.
    s3.put_object(Bucket=BUCKET, Key="incoming/stmarys/holter-7/old.csv", Body=b"I\n1\n")
    stored(ddb, "old.csv", NOW - timedelta(days=7), uploaded_at=NOW)
    capsys.readouterr()
    argv = ["device", "stmarys", "holter-7", "--table", TABLE, "--since", "1d"]
    assert run(*argv) == "0 results\n"
    assert "the range is the recording's time (recorded_at)" in capsys.readouterr().err
    run(*argv, "--bucket", BUCKET)
    err = capsys.readouterr().err
    assert err.startswith("0 results for recording time in [")
    assert "1 uploaded in range under s3://ingest-test/incoming/stmarys/holter-7/" in err
    assert keys(run_json("device", "stmarys", "holter-7", "--since", "8d")) == ["old.csv"]


def test_every_format_has_the_same_columns(ddb: Any) -> None:
    stored(ddb, "a.csv", NOW - timedelta(hours=2), probability=0.75)
    stored(ddb, "b.csv", NOW - timedelta(hours=1), reason="no lead named V2")
    for command in (["site", "stmarys"], ["export"]):
        argv = [*command, "--table", TABLE]
        header = next(csv.reader(io.StringIO(run(*argv, "--format", "csv"))))
        jsonl = [json.loads(line) for line in run(*argv, "--format", "jsonl").splitlines()]
        array = json.loads(run(*argv, "--format", "json"))
        assert len(jsonl) == len(array) == 2
        assert [list(row) for row in jsonl] == [header, header]
        assert [list(row) for row in array] == [header, header]
    assert {"reason_code", "duration_s", "sampling_rate_assumed", "file_hash"} <= set(header)


def test_export_has_a_column_for_everything_the_store_writes(ddb: Any) -> None:
    from ecg_scorer import query
    from ecg_scorer.cli import listing

    scored = stored(ddb, "a.csv", NOW - timedelta(hours=2), probability=0.75)
    rejected = stored(ddb, "b.csv", NOW - timedelta(hours=1), reason="no lead named V2")
    for item in (scored, rejected):
        assert set(query.public(item)) <= set(listing.EXPORT_COLUMNS)


def test_result_takes_a_bare_key_in_the_configured_bucket(
    ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored(ddb, "a.csv", NOW - timedelta(hours=1), probability=0.9)
    monkeypatch.setenv("ECG_SCORER_BUCKET", BUCKET)
    rows = run_json("result", "incoming/stmarys/holter-7/a.csv")
    assert [(r["bucket"], r["key"]) for r in rows] == [(BUCKET, "incoming/stmarys/holter-7/a.csv")]


def test_result_tells_not_scored_yet_from_no_such_object(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    waiting = "incoming/stmarys/holter-7/waiting.csv"
    s3.put_object(Bucket=BUCKET, Key=waiting, Body=b"I\n1\n")
    err = run_failing(capsys, "result", waiting, "--bucket", BUCKET, "--table", TABLE)
    assert "was uploaded at" in err and "not scored yet" in err
    assert schema.file_hash(BUCKET, waiting) in err  # what the logs call it
    err = run_failing(capsys, "result", f"{BUCKET}/incoming/s/d/none.csv", "--table", TABLE)
    assert err.startswith("ecg-scorer: no such object: s3://ingest-test/incoming/s/d/none.csv")


def test_sites_and_devices_come_from_the_registry(ddb: Any) -> None:
    stored(ddb, "a.csv", NOW - timedelta(hours=3), device="d1")
    stored(ddb, "b.csv", NOW - timedelta(hours=2), device="d2")
    stored(ddb, "c.csv", NOW - timedelta(hours=1), site="elsewhere", device="d1")
    sites = run_json("sites")
    assert [(s["site"], s["devices"]) for s in sites] == [("elsewhere", 1), ("stmarys", 2)]
    assert [(d["site"], d["device"]) for d in run_json("devices", "stmarys")] == [
        ("stmarys", "d1"),
        ("stmarys", "d2"),
    ]
    assert run("devices", "--table", TABLE).rstrip().endswith("3 devices")


def test_resolve_finds_the_file_behind_a_log_hash(ddb: Any) -> None:
    stored(ddb, "a.csv", NOW - timedelta(days=400))  # old recordings are found too
    stored(ddb, "b.csv", NOW - timedelta(hours=1))
    nowhere = "incoming/lost.csv"  # rejected before a site and device were known
    stored(
        ddb,
        "",
        NOW - timedelta(hours=1),
        site=None,
        device=None,
        reason="no site",
        full_key=nowhere,
    )
    for key in ("incoming/stmarys/holter-7/a.csv", nowhere):
        rows = run_json("resolve", schema.file_hash(BUCKET, key))
        assert [(r["bucket"], r["key"]) for r in rows] == [(BUCKET, key)]


def test_resolve_looks_in_the_bucket_for_files_never_scored(
    ddb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    key = "incoming/stmarys/holter-7/in-the-dlq.csv"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"I\n1\n")
    file_hash = schema.file_hash(BUCKET, key)
    err = run_failing(capsys, "resolve", file_hash, "--table", TABLE)
    assert "give --bucket to search the bucket too" in err
    rows = run_json("resolve", file_hash, "--bucket", BUCKET)
    assert [(r["key"], r["status"]) for r in rows] == [(key, "NOT SCORED")]


def test_a_stopped_local_stack_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ecg_scorer.local.stack import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    err = run_failing(capsys, "anomalies", "--table", TABLE)
    assert "cannot reach AWS_ENDPOINT_URL=http://127.0.0.1:" in err
    assert "make local-up" in err


def test_region_advice_names_what_boto3_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    err = run_failing(capsys, "anomalies", "--table", TABLE)
    assert "no AWS region" in err and "AWS_DEFAULT_REGION" in err
    assert "boto3 does not read AWS_REGION" in err


def test_a_bad_time_shows_the_commands_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["device", "s", "d", "--since", "last tuesday"])
    err = capsys.readouterr().err
    assert err.startswith("usage: ecg-scorer device")
    assert "bad time 'last tuesday'" in err
