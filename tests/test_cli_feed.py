"""ecg-scorer's commands that feed the pipeline, against moto: upload (files and folders),
redrive (the DLQ back to the queue) and rescore (stored files through the queue again, as
S3 notifications the Lambda's own event parser reads back)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cli_helpers import BUCKET, run

from ecg_scorer import cli
from ecg_scorer.cli import context, redrive

pytest_plugins = ["cli_fixtures"]  # its fixtures: cli_aws (moto), ddb (the table)


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
    cli_aws: None, monkeypatch: pytest.MonkeyPatch
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


def test_redrive_stops_at_max_messages(cli_aws: None) -> None:
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


def test_upload_puts_the_file_where_the_pipeline_reads(cli_aws: None, tmp_path: Path) -> None:
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
    cli_aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ecg = tmp_path / "x.csv"
    ecg.write_text("I\n1\n")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["upload", str(ecg), "--site", "../x", "--device", "d", "--bucket", BUCKET])
    assert exit_.value.code == 2
    assert "site must be 1-64 letters" in capsys.readouterr().err


def test_auto_redrive_uses_the_sqs_move_task_only_on_aws() -> None:
    assert redrive.runs_on_aws(boto3.client("sqs", region_name="eu-west-1"))
    assert not redrive.runs_on_aws(boto3.client("sqs", endpoint_url="http://127.0.0.1:4566"))


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
    moved = redrive.redrive_move_task(sqs, "https://sqs/dlq", "https://sqs/q", sleep=waits.append)
    assert moved == 13
    assert waits == [2.0]
    stub.assert_no_pending_responses()


def test_a_failed_move_task_says_why() -> None:
    failed = {"Status": "FAILED", "ApproximateNumberOfMessagesMoved": 6, "FailureReason": "Denied"}
    sqs, _ = stubbed_move_task(failed)
    with pytest.raises(context.CliError, match="stopped after moving 6: Denied"):
        redrive.redrive_move_task(sqs, "https://sqs/dlq", "https://sqs/q", sleep=lambda _: None)


def test_move_task_cannot_stop_at_a_count(
    cli_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["redrive", "--dlq-url", "d", "--queue-url", "q", "--method", "move-task"]
    with pytest.raises(SystemExit):
        cli.main([*argv, "--max-messages", "3"])
    assert "--max-messages needs --method loop" in capsys.readouterr().err


def test_upload_takes_a_folder_recursively_and_counts(cli_aws: None, tmp_path: Path) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for name in ("a.csv", "day1/b.json", "day1/deeper/c.npy", ".DS_Store", ".hidden/x.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"0123456789")
    out = run("upload", str(tmp_path), "--site", "s1", "--device", "d1", "--bucket", BUCKET)
    assert out == f"uploaded 3 files (30 bytes) to s3://{BUCKET}/incoming/s1/d1/\n"
    listed = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "incoming/s1/d1/a.csv",
        "incoming/s1/d1/day1/b.json",
        "incoming/s1/d1/day1/deeper/c.npy",
    ]


def test_upload_of_a_missing_path_is_a_usage_error(
    cli_aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["upload", str(tmp_path / "nope"), "--site", "s", "--device", "d"])
    assert exit_.value.code == 2
    assert "no such file or folder" in capsys.readouterr().err


# ------------------------------------------------------------------ rescore


@pytest.fixture
def bucket_and_queue(cli_aws: None) -> tuple[Any, Any, str]:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for name in ("incoming/s1/d1/a b.csv", "incoming/s1/d1/c.csv", "incoming/s1/d2/e.csv"):
        s3.put_object(Bucket=BUCKET, Key=name, Body=b"I,II,V2\n1,2,3\n")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/x.csv", Body=b"not incoming")
    sqs = boto3.client("sqs")
    return s3, sqs, sqs.create_queue(QueueName="scoring")["QueueUrl"]


def rescore(*argv: str, state: Path) -> str:
    return run("rescore", "--bucket", BUCKET, "--state", str(state), *argv)


def test_rescore_sends_what_the_lambda_reads_as_uploads(
    bucket_and_queue: tuple[Any, Any, str], tmp_path: Path
) -> None:
    from scorer import events

    s3, sqs, queue = bucket_and_queue
    state = tmp_path / "state.json"
    assert rescore("--site", "s1", "--dry-run", state=state) == (
        f"would send 3 files under s3://{BUCKET}/incoming/s1/\n"
    )
    assert drain(sqs, queue) == []
    out = rescore("--site", "s1", "--queue-url", queue, state=state)
    assert out.startswith(f"sent 3 files under s3://{BUCKET}/incoming/s1/ to the scoring queue")
    # The Lambda's own event parser reads each message back as one upload, version and all.
    event = {
        "Records": [
            {"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"}
            for m in drain(sqs, queue)
        ]
    }
    refs = [ref for message in events.messages(event) for ref in message.refs]
    assert all(m.problem is None for m in events.messages(event))
    assert sorted(r.key for r in refs) == [
        "incoming/s1/d1/a b.csv",
        "incoming/s1/d1/c.csv",
        "incoming/s1/d2/e.csv",
    ]
    for ref in refs:
        head = s3.head_object(Bucket=BUCKET, Key=ref.key)
        assert ref.version_id == head["VersionId"]
        assert ref.size_bytes == head["ContentLength"]
        assert ref.etag == head["ETag"].strip('"')
        assert ref.sequencer is None  # the store's "first write wins" condition applies
    assert not state.exists()  # finished: the next run starts over


def test_rescore_resumes_after_the_last_batch_sent(
    bucket_and_queue: tuple[Any, Any, str], tmp_path: Path
) -> None:
    s3, sqs, queue = bucket_and_queue
    for n in range(25):
        s3.put_object(Bucket=BUCKET, Key=f"incoming/s2/d/{n:02}.csv", Body=b"x")
    state = tmp_path / "state.json"
    calls = 0
    real_send = sqs.send_message_batch

    def failing_third(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("network gone")
        return real_send(**kwargs)

    from ecg_scorer.cli import context as cli_context

    original = cli_context.Context.client

    def client(self: Any, service: str) -> Any:
        made = original(self, service)
        if service == "sqs":
            made.send_message_batch = failing_third
        return made

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli_context.Context, "client", client)
        with pytest.raises(RuntimeError, match="network gone"):
            cli.main(
                [
                    "rescore",
                    "--site",
                    "s2",
                    "--bucket",
                    BUCKET,
                    "--queue-url",
                    queue,
                    "--state",
                    str(state),
                ]
            )
    assert json.loads(state.read_text())["sent"] == 20
    out = rescore("--site", "s2", "--queue-url", queue, state=state)
    assert out.startswith("resuming after 20 sent")
    assert "sent 5 files" in out and "(25 in all)" in out
    sent = sorted(
        json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"] for m in drain(sqs, queue)
    )
    assert sent == [f"incoming/s2/d/{n:02}.csv" for n in range(25)]


def test_rescore_waits_while_the_queue_is_full(
    bucket_and_queue: tuple[Any, Any, str], tmp_path: Path
) -> None:
    from ecg_scorer import render
    from ecg_scorer.cli import rescore as rescore_module

    s3, sqs, queue = bucket_and_queue
    for n in range(30):
        s3.put_object(Bucket=BUCKET, Key=f"incoming/s3/d/{n:02}.csv", Body=b"x")
    selection = rescore_module.Selection(BUCKET, "incoming/s3/", None, None)
    state = rescore_module.State(tmp_path / "state.json", selection)
    depths: list[int] = []

    def lambda_consumes(seconds: float) -> None:  # while we wait, the Lambda takes 10
        depths.append(rescore_module.queued(sqs, queue))
        for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    sent = rescore_module.rescore(
        s3,
        sqs,
        queue,
        selection,
        state,
        "us-east-1",
        max_queued=12,
        progress=render.Progress(),
        total=30,
        sleep=lambda_consumes,
    )
    assert sent == 30
    assert depths and max(depths) <= 12  # never more than max_queued waiting
