"""The whole handler on SQS batches, with moto for S3 and DynamoDB and the endpoint faked
(FakeRuntime passed in, or botocore's Stubber on the module's own client)."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from bad_files import bad_files
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from conftest import MODEL_DIR
from scorer import schema
from scorer.config import load_settings
from scorer.errors import ConfigError
from scorer_helpers import (
    BUCKET,
    ENV,
    MODEL_VERSION,
    FakeContext,
    FakeRuntime,
    FlakyDynamo,
    InProcessEndpoint,
    all_items,
    client_error,
    create_table,
    csv_bytes,
    ecg_like,
    item_for,
    json_bytes,
    load_event,
    npy_bytes,
    npz_bytes,
    run_batch,
    sqs_event,
    upload,
)

TWELVE = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _ten_files() -> list[tuple[str, bytes, list[float], dict[str, str]]]:
    """(key, bytes, lead-I level of each window, S3 metadata): every accepted format."""
    lv = iter(np.round(np.linspace(0.05, 0.95, 21), 3).tolist())

    def levels(n: int) -> list[float]:
        return [next(lv) for _ in range(n)]

    files = []
    a = levels(1)
    files.append(
        (
            "incoming/site-a/dev-1/seed.json",
            json_bytes({"signals": ecg_like(10, 200, levels=a).tolist()}),
            a,
            {},
        )
    )
    b = levels(3)
    seed_batch = ecg_like(30, 200, levels=b).reshape(3, 2000, 3)
    files.append(
        (
            "incoming/site-a/dev-1/seed batch.json",
            json_bytes({"signals": seed_batch.tolist()}),
            b,
            {},
        )
    )
    c = levels(2)
    rich = ecg_like(20, 500, leads=("V2", "I", "II"), levels=c)
    files.append(
        (
            "incoming/site-a/dev-2/rich.json",
            json_bytes(
                {
                    "signals": rich.tolist(),
                    "sampling_rate_hz": 500,
                    "leads": ["V2", "I", "II"],
                    "recorded_at": "2026-11-26T22:15:00+01:00",
                    "patient_ref": "PATIENT-SECRET-42",
                    "record_id": "R-3",
                }
            ),
            c,
            {},
        )
    )
    d = levels(2)
    timed = ecg_like(20, 1000, levels=d)
    files.append(
        (
            "incoming/site-a/dev-2/timed.csv",
            csv_bytes(
                "time_s,i_mV,ii_mV,v2_mV", np.column_stack([np.arange(len(timed)) / 1000, timed])
            ),
            d,
            {},
        )
    )
    e = levels(2)
    files.append(
        (
            "incoming/site-b/dev-3/microvolts.csv",
            csv_bytes(
                "I (uV),II (uV),V2 (uV)",
                ecg_like(20, 250, levels=e) * 1000,
                "# sampling_rate_hz: 250\n# record_id: R-5\n",
            ),
            e,
            {},
        )
    )
    f = levels(1)
    files.append(
        (
            "incoming/site-b/dev-3/headerless.csv",
            csv_bytes(
                "", ecg_like(10, 200, levels=f), "# sampling_rate_hz: 200\n# leads: I, II, V2\n"
            ).replace(b"\n\n", b"\n", 1),
            f,
            {},
        )
    )
    g = levels(2)
    # The endpoint's own batch format [N, 2000, 3]: taken at 200 Hz without a rate.
    plain = ecg_like(20, 200, levels=g).reshape(2, 2000, 3)
    files.append(("incoming/site-b/dev-4/plain.npy", npy_bytes(plain), g, {}))
    h = levels(2)
    files.append(
        (
            "incoming/meta.npy",
            npy_bytes(ecg_like(20, 360, leads=("II", "V2", "I"), levels=h).astype(np.float32)),
            h,
            {"sampling-rate-hz": "360", "leads": "II,V2,I", "site": "site-z", "device": "dev-4"},
        )
    )
    i = levels(3)
    files.append(
        (
            "incoming/site-c/dev-5/twelve.npz",
            npz_bytes(
                signals=ecg_like(30, 500, leads=TWELVE, levels=i),
                fs=np.array(500),
                leads=np.array(TWELVE),
            ),
            i,
            {},
        )
    )
    j = levels(3)
    files.append(
        (
            "incoming/site-c/dev-5/tail.npz",
            npz_bytes(signals=ecg_like(25, 200, levels=j), sampling_rate_hz=np.array(200.0)),
            j,
            {},
        )
    )
    return files


def test_ten_files_in_all_formats_are_scored_with_one_endpoint_call(app, aws) -> None:  # type: ignore[no-untyped-def]
    files = _ten_files()
    event = sqs_event([[upload(aws, key, data, **meta)] for key, data, _, meta in files])
    runtime = FakeRuntime()
    response = run_batch(app, aws, event, runtime)

    assert response == {"batchItemFailures": []}
    assert len(runtime.calls) == 1 and len(runtime.calls[0]) == 21
    for key, _, levels, _ in files:
        item = item_for(aws.dynamodb, key)
        assert item is not None and item["status"] == "SCORED", (key, item)
        probabilities = [float(p) for p in item["window_probabilities"]]
        # A last window overlapping the one before mixes two levels: only the others compare.
        full = sum(float(t) % 10 == 0 for t in item["window_start_s"])
        assert probabilities[:full] == pytest.approx(levels[:full], abs=0.02), key
        assert float(item["probability"]) == max(probabilities)
        assert item["model_version"] == MODEL_VERSION and item["endpoint"] == ENV["ENDPOINT_NAME"]
    rich = item_for(aws.dynamodb, "incoming/site-a/dev-2/rich.json")
    assert (
        rich["recorded_at"] == "2026-11-26T21:15:00.000Z" and rich["recorded_at_source"] == "file"
    )  # type: ignore[index]
    assert rich["patient_ref"] == "PATIENT-SECRET-42" and rich["leads_found"] == ["V2", "I", "II"]  # type: ignore[index]
    meta = item_for(aws.dynamodb, "incoming/meta.npy")
    assert meta["site"] == "site-z" and meta["device_key"] == "site-z/dev-4"  # type: ignore[index]
    assert meta["sampling_rate_hz"] == 360  # type: ignore[index]
    tail = item_for(aws.dynamodb, "incoming/site-c/dev-5/tail.npz")
    assert tail["windows"] == 3 and tail["window_start_s"] == [0, 10, 15]  # type: ignore[index]
    seed = item_for(aws.dynamodb, "incoming/site-a/dev-1/seed.json")
    assert seed["sampling_rate_assumed"] is True and seed["recorded_at_source"] == "upload"  # type: ignore[index]


def _retarget(event: dict, aws: Any, data: dict[str, bytes]) -> dict:
    """Upload each object a sample event names and put the real version id into the event."""
    event = copy.deepcopy(event)
    for message in event["Records"]:
        body = json.loads(message["body"])
        for record in body["Records"]:
            bucket, encoded = record["s3"]["bucket"]["name"], record["s3"]["object"]["key"]
            from urllib.parse import unquote_plus

            key = unquote_plus(encoded)
            if bucket not in {b["Name"] for b in aws.s3.list_buckets()["Buckets"]}:
                aws.s3.create_bucket(Bucket=bucket)
                aws.s3.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
                )
            put = aws.s3.put_object(Bucket=bucket, Key=key, Body=data[key])
            record["s3"]["object"]["versionId"] = put["VersionId"]
            record["s3"]["object"]["size"] = len(data[key])
        message["body"] = json.dumps(body)
    return event


def _answer(probabilities: list[float]) -> dict:
    answers = [
        {
            "prediction": p,
            "probability": p,
            "label": "normal",
            "threshold": 0.5,
            "model_version": MODEL_VERSION,
        }
        for p in probabilities
    ]
    raw = json.dumps(answers[0] if len(answers) == 1 else answers).encode()
    return {"Body": StreamingBody(io.BytesIO(raw), len(raw)), "ContentType": "application/json"}


@pytest.fixture
def log(app):  # type: ignore[no-untyped-def]
    """What the handler logs (the Logger keeps the stream it first saw, so point it here)."""
    stream = io.StringIO()
    previous = app.logger.registered_handler.setStream(stream)
    yield stream
    app.logger.registered_handler.setStream(previous)


def test_lambda_handler_decodes_the_key_of_the_sample_event(app, aws, log, capsys) -> None:  # type: ignore[no-untyped-def]
    key = "incoming/site-a/holter-01/morning run (1).csv"
    data = csv_bytes(
        "time_s,I,II,V2",
        np.column_stack([np.arange(2000) / 200, ecg_like(10, 200)]),
        "# patient_ref: PATIENT-SECRET-42\n",
    )
    event = _retarget(load_event("sqs_s3_put_encoded_key.json"), aws, {key: data})
    with Stubber(app.SAGEMAKER_RUNTIME) as stub:
        stub.add_response(
            "invoke_endpoint",
            _answer([0.12]),
            {
                "EndpointName": ENV["ENDPOINT_NAME"],
                "ContentType": "application/x-npy",
                "Accept": "application/json",
                "Body": ANY,
            },
        )
        response = app.lambda_handler(event, FakeContext())
        stub.assert_no_pending_responses()
    assert response == {"batchItemFailures": []}
    bucket = json.loads(event["Records"][0]["body"])["Records"][0]["s3"]["bucket"]["name"]
    item = item_for(aws.dynamodb, key, bucket=bucket)
    assert item is not None and float(item["probability"]) == pytest.approx(0.12)
    logs = log.getvalue()
    # Correlation by the file's hash: the key itself (names can carry patient data) never.
    assert schema.file_hash(bucket, key) in logs and "morning run" not in logs
    assert "PATIENT-SECRET-42" not in logs  # never a patient reference
    assert '"FilesScored"' in capsys.readouterr().out  # metrics were flushed (EMF on stdout)


def test_sample_put_event_with_two_records_in_one_message(app, aws) -> None:  # type: ignore[no-untyped-def]
    data = {
        "incoming/site-a/holter-01/rec-0001.csv": csv_bytes(
            "time_s,I,II,V2", np.column_stack([np.arange(2000) / 200, ecg_like(10, 200)])
        ),
        "incoming/site-a/holter-02/rec-0002.json": json_bytes(
            {"signals": ecg_like(10, 200).tolist()}
        ),
        "incoming/site-b/patch-07/rec-0003.npy": npy_bytes(ecg_like(10, 200)),
    }
    event = _retarget(load_event("sqs_s3_put.json"), aws, data)
    runtime = FakeRuntime()
    assert run_batch(app, aws, event, runtime) == {"batchItemFailures": []}
    assert len(runtime.calls) == 1 and len(all_items(aws.dynamodb)) == 3


def test_test_events_and_other_keys_are_ignored(app, aws) -> None:  # type: ignore[no-untyped-def]
    event = load_event("sqs_s3_test_event.json")
    outside = upload(
        aws, "results/site-a/dev-1/x.json", json_bytes({"signals": ecg_like(10, 200).tolist()})
    )
    removed = copy.deepcopy(outside)
    removed["eventName"] = "ObjectRemoved:Delete"
    event["Records"] += sqs_event([[outside], [removed]])["Records"]
    runtime = FakeRuntime()
    assert run_batch(app, aws, event, runtime) == {"batchItemFailures": []}
    assert runtime.calls == [] and all_items(aws.dynamodb) == []


def test_bad_files_are_rejected_and_the_batch_succeeds(app, aws) -> None:  # type: ignore[no-untyped-def]
    corpus = bad_files(app.SETTINGS.max_file_bytes)
    assert len(corpus) >= 25
    good_key = "incoming/site-a/dev-1/good.json"
    records = [[upload(aws, f"incoming/site-a/dev-1/{bad.name}", bad.data)] for bad in corpus]
    records.append([upload(aws, good_key, json_bytes({"signals": ecg_like(10, 200).tolist()}))])
    runtime = FakeRuntime()
    assert run_batch(app, aws, sqs_event(records), runtime) == {"batchItemFailures": []}
    for bad in corpus:
        item = item_for(aws.dynamodb, f"incoming/site-a/dev-1/{bad.name}")
        assert item is not None, bad.name
        assert item["status"] == "REJECTED" and item["reason_code"] == bad.code, (
            bad.name,
            item.get("reason"),
        )
        assert bad.phrase.lower() in item["reason"].lower(), (bad.name, item["reason"])
    assert item_for(aws.dynamodb, good_key)["status"] == "SCORED"  # type: ignore[index]
    assert len(runtime.calls) == 1  # the bad files never reached the endpoint
    versions = aws.s3.list_object_versions(Bucket=BUCKET)
    # S3 untouched: every upload still there, nothing deleted
    assert len(versions["Versions"]) == len(records) and "DeleteMarkers" not in versions


def test_real_recordings(app, aws, shared_ecg) -> None:  # type: ignore[no-untyped-def]
    names = sorted(p.name for p in (shared_ecg / "csv").glob("*.csv"))
    records = [
        [upload(aws, f"incoming/ptb/lab-1/{n}", (shared_ecg / "csv" / n).read_bytes())]
        for n in names
    ]
    runtime = FakeRuntime()
    assert run_batch(app, aws, sqs_event(records), runtime) == {"batchItemFailures": []}
    assert len(runtime.calls) == 1
    ptb = item_for(aws.dynamodb, "incoming/ptb/lab-1/ptbdb_s0010_re_i_ii_v2_38s_1000hz.csv")
    assert ptb is not None and ptb["status"] == "SCORED"
    # 38.4 s -> 7680 samples at 200 Hz: 3 full windows + a 1680-sample tail, which contract 2
    # covers with a 4th window on the recording's last 10 s.
    assert ptb["windows"] == 4 and ptb["window_start_s"] == [0, 10, 20, Decimal("28.4")]
    assert ptb["sampling_rate_hz"] == 1000 and ptb["leads_found"] == ["i", "ii", "v2"]
    for name, found in [
        ("mimicdb_041s_III_I_V_16s_500hz.csv", "V2: found standard leads I, III and 1 other"),
        ("ptbdb_s0010_re_vxvyvz_10s_1000hz.csv", "I, II, V2: found 3 other channels"),
    ]:
        item = item_for(aws.dynamodb, f"incoming/ptb/lab-1/{name}")
        assert item is not None and item["status"] == "REJECTED"
        assert f"{found}" in item["reason"] and "the model needs I, II, V2" in item["reason"]
        assert "vx" not in item["reason"]  # channel names are never quoted


def _one_file_batch(aws: Any, n: int = 2) -> dict:
    return sqs_event(
        [
            [
                upload(
                    aws,
                    f"incoming/site-a/dev-1/f{i}.json",
                    json_bytes({"signals": ecg_like(10, 200, levels=[0.1 * (i + 1)]).tolist()}),
                )
            ]
            for i in range(n)
        ]
    )


def test_endpoint_throttling_is_retried(app, aws) -> None:  # type: ignore[no-untyped-def]
    runtime = FakeRuntime(
        faults=[
            client_error("ThrottlingException", 400),
            client_error("ModelError", 424, OriginalStatusCode=500),
        ]
    )
    context = FakeContext()
    assert run_batch(app, aws, _one_file_batch(aws), runtime, context) == {"batchItemFailures": []}
    assert len(runtime.calls) == 3 and len(context.slept) == 2
    assert len(all_items(aws.dynamodb)) == 2


def test_messages_go_back_when_the_time_budget_runs_out(app, aws) -> None:  # type: ignore[no-untyped-def]
    event = _one_file_batch(aws)
    bad = bad_files(app.SETTINGS.max_file_bytes)[0]
    event["Records"] += sqs_event([[upload(aws, "incoming/site-a/dev-1/" + bad.name, bad.data)]])[
        "Records"
    ]
    event["Records"][-1]["messageId"] = "msg-bad"
    runtime = FakeRuntime(faults=[client_error("ThrottlingException", 400)] * 10_000)
    context = FakeContext(remaining_ms=150_000)
    response = run_batch(app, aws, event, runtime, context)
    # The two good files go back to the queue; the bad file's REJECTED item is stored.
    assert response == {
        "batchItemFailures": [{"itemIdentifier": "msg-000"}, {"itemIdentifier": "msg-001"}]
    }
    assert [i["status"] for i in all_items(aws.dynamodb)] == ["REJECTED"]
    assert len(runtime.calls) > 3 and context.remaining_ms >= 10_000


@pytest.mark.parametrize(
    "runtime",
    [
        FakeRuntime(faults=[client_error("ValidationError", 400)]),
        FakeRuntime(faults=[client_error("AccessDeniedException", 403)]),
        FakeRuntime(model_version="cnn1d_lstm_ecg_v0"),
    ],
    ids=["endpoint-missing", "access-denied", "wrong-model-version"],
)
def test_system_faults_send_every_message_back(app, aws, runtime) -> None:  # type: ignore[no-untyped-def]
    response = run_batch(app, aws, _one_file_batch(aws), runtime)
    assert len(response["batchItemFailures"]) == 2
    assert len(runtime.calls) == 1 and all_items(aws.dynamodb) == []


def test_a_model_refusal_sends_the_messages_back_and_rejects_no_file(app, aws, capsys) -> None:  # type: ignore[no-untyped-def]
    # A 4xx means the request does not fit the deployed model (e.g. another window length):
    # no file is at fault, so none may be REJECTED; they wait for the fix in the queue / DLQ.
    runtime = FakeRuntime()
    runtime.refuse = {0.2}
    response = run_batch(app, aws, _one_file_batch(aws, 3), runtime)
    assert len(response["batchItemFailures"]) == 3
    assert all_items(aws.dynamodb) == [] and len(runtime.calls) == 1
    app.metrics.flush_metrics()
    assert '"SystemFaults"' in capsys.readouterr().out  # the alarm's metric


def test_a_file_that_crashes_the_model_does_not_take_its_neighbours(app, aws) -> None:  # type: ignore[no-untyped-def]
    runtime = FakeRuntime()
    runtime.crash = {0.2}
    response = run_batch(app, aws, _one_file_batch(aws, 3), runtime)
    # f1 (level 0.2) goes back to the queue alone; f0 and f2 are scored.
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-001"}]}
    statuses = {i["key"]: i["status"] for i in all_items(aws.dynamodb)}
    assert statuses == {
        "incoming/site-a/dev-1/f0.json": "SCORED",
        "incoming/site-a/dev-1/f2.json": "SCORED",
    }


class HangingRuntime:
    """Each call blocks for the module client's whole connect + read timeout, then fails:
    the worst case a deployed function can meet."""

    def __init__(self, app: Any, context: FakeContext):
        config = app.SAGEMAKER_RUNTIME.meta.config
        self.hang_s = config.connect_timeout + config.read_timeout
        self.context = context
        self.calls = 0

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import ReadTimeoutError

        self.calls += 1
        self.context.sleep(self.hang_s)
        raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker.us-east-1.amazonaws.com")


@pytest.mark.parametrize("timeout_s", [300, 120, 90, 30])
def test_a_hanging_endpoint_never_outlasts_the_function_timeout(app, aws, timeout_s) -> None:  # type: ignore[no-untyped-def]
    context = FakeContext(remaining_ms=timeout_s * 1000)
    runtime = HangingRuntime(app, context)
    response = run_batch(app, aws, _one_file_batch(aws, 2), runtime, context)
    # Lambda was not killed mid-batch: the answer came back in time, every file is reported
    # for a retry (transient), nothing lost and nothing stored half-way.
    assert context.remaining_ms >= 2_000
    assert len(response["batchItemFailures"]) == 2 and all_items(aws.dynamodb) == []


class CountingS3:
    def __init__(self, client: Any):
        self.client, self.reads = client, 0

    def get_object(self, **kwargs: Any) -> Any:
        self.reads += 1
        return self.client.get_object(**kwargs)


def test_no_file_is_read_without_time_for_the_read(app, aws) -> None:  # type: ignore[no-untyped-def]
    event = _one_file_batch(aws, 2)
    s3 = CountingS3(aws.s3)
    context = FakeContext(remaining_ms=20_000)
    clients = app.Clients(s3, aws.dynamodb, FakeRuntime())
    response = app.process_batch(event, context, clients, app.SETTINGS, sleep=context.sleep)
    assert s3.reads == 0 and len(response["batchItemFailures"]) == 2


def test_table_throttling_is_retried_then_reported(app, aws) -> None:  # type: ignore[no-untyped-def]
    event = _one_file_batch(aws)
    assert run_batch(
        app, aws, event, FakeRuntime(), dynamodb=FlakyDynamo(aws.dynamodb, failures=3)
    ) == {"batchItemFailures": []}
    assert len(all_items(aws.dynamodb)) == 2
    aws.dynamodb.delete_table(TableName=ENV["PREDICTIONS_TABLE"])
    create_table(aws.dynamodb)
    context = FakeContext(remaining_ms=100_000)
    response = run_batch(
        app, aws, event, FakeRuntime(), context, dynamodb=FlakyDynamo(aws.dynamodb, failures=10_000)
    )
    assert len(response["batchItemFailures"]) == 2 and all_items(aws.dynamodb) == []


def test_redelivery_writes_nothing_twice(app, aws) -> None:  # type: ignore[no-untyped-def]
    event = _one_file_batch(aws, 1)
    run_batch(app, aws, event, FakeRuntime())
    first = all_items(aws.dynamodb)
    assert run_batch(app, aws, event, FakeRuntime()) == {"batchItemFailures": []}
    assert all_items(aws.dynamodb) == first  # same single item, scored_at unchanged


def test_an_older_upload_event_arriving_late_does_not_overwrite(app, aws) -> None:  # type: ignore[no-untyped-def]
    key = "incoming/site-a/dev-1/same.json"
    old = upload(aws, key, json_bytes({"signals": ecg_like(10, 200, levels=[0.2]).tolist()}))
    new = upload(aws, key, json_bytes({"signals": ecg_like(10, 200, levels=[0.8]).tolist()}))
    assert new["s3"]["object"]["sequencer"] > old["s3"]["object"]["sequencer"]
    run_batch(app, aws, sqs_event([[new]]), FakeRuntime())
    run_batch(app, aws, sqs_event([[old]]), FakeRuntime())
    items = all_items(aws.dynamodb)
    assert len(items) == 1
    assert items[0]["version_id"] == new["s3"]["object"]["versionId"]
    assert float(items[0]["probability"]) == pytest.approx(0.8, abs=0.02)


def test_a_message_that_is_no_s3_event_goes_back(app, aws) -> None:  # type: ignore[no-untyped-def]
    event = _one_file_batch(aws, 1)
    junk = copy.deepcopy(event["Records"][0])
    junk["messageId"], junk["body"] = "junk", "not json"
    event["Records"].append(junk)
    assert run_batch(app, aws, event, FakeRuntime()) == {
        "batchItemFailures": [{"itemIdentifier": "junk"}]
    }
    assert len(all_items(aws.dynamodb)) == 1


def test_a_missing_setting_is_named() -> None:
    env = {k: v for k, v in ENV.items() if k != "ENDPOINT_NAME"}
    with pytest.raises(ConfigError, match="ENDPOINT_NAME"):
        load_settings(env)
    with pytest.raises(ConfigError, match="WINDOW_SAMPLES"):
        load_settings({**ENV, "WINDOW_SAMPLES": "many"})


def test_the_same_event_twice_in_one_batch_gives_one_item(app, aws) -> None:  # type: ignore[no-untyped-def]
    record = upload(aws, "incoming/site-a/dev-1/twice.npy", npy_bytes(ecg_like(10, 200)))
    runtime = FakeRuntime()
    assert run_batch(app, aws, sqs_event([[record], [record]]), runtime) == {
        "batchItemFailures": []
    }
    # Scored once: the second event of the same upload waits for nothing and costs nothing.
    assert len(runtime.calls) == 1 and len(runtime.calls[0]) == 1
    assert len(all_items(aws.dynamodb)) == 1


def test_a_malformed_record_fails_only_its_message(app, aws) -> None:  # type: ignore[no-untyped-def]
    event = _one_file_batch(aws, 1)
    broken = copy.deepcopy(event["Records"][0])
    broken["messageId"] = "broken"
    broken["body"] = json.dumps(
        {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}
    )
    event["Records"].append(broken)
    assert run_batch(app, aws, event, FakeRuntime()) == {
        "batchItemFailures": [{"itemIdentifier": "broken"}]
    }
    assert len(all_items(aws.dynamodb)) == 1


def test_the_real_model_handler_scores_what_the_lambda_sends(
    app, aws, monkeypatch, shared_ecg
) -> None:  # type: ignore[no-untyped-def]
    model_dir = MODEL_DIR
    monkeypatch.syspath_prepend("model_code")
    inference = pytest.importorskip("inference")
    endpoint = InProcessEndpoint(inference, str(model_dir))
    name = "ptbdb_s0010_re_i_ii_v2_38s_1000hz.csv"
    records = [
        [upload(aws, f"incoming/ptb/lab-1/{name}", (shared_ecg / "csv" / name).read_bytes())],
        [
            upload(
                aws,
                "incoming/site-a/dev-1/seed.json",
                json_bytes({"signals": ecg_like(20, 200).reshape(2, 2000, 3).tolist()}),
            )
        ],
    ]
    assert run_batch(app, aws, sqs_event(records), endpoint) == {"batchItemFailures": []}
    assert endpoint.calls == 1
    items = all_items(aws.dynamodb)
    assert sorted(i["windows"] for i in items) == [2, 4]
    for item in items:
        assert item["status"] == "SCORED" and item["model_version"] == MODEL_VERSION
        assert all(0 <= p <= 1 for p in item["window_probabilities"])
        assert item["label"] in {"anomalous", "normal"}


def test_results_scored_before_an_endpoint_outage_are_still_stored(app, aws) -> None:  # type: ignore[no-untyped-def]
    three_per_call = dataclasses.replace(app.SETTINGS, max_payload_bytes=3 * 24_000 + 128)
    event = _one_file_batch(aws, 4)  # calls: [f0, f1, f2], then [f3]
    runtime = FakeRuntime(faults=[None] + [client_error("ThrottlingException", 400)] * 10_000)
    context = FakeContext(remaining_ms=150_000)
    table = FlakyDynamo(aws.dynamodb, failures=3)  # and the first writes are throttled too
    response = run_batch(app, aws, event, runtime, context, dynamodb=table, settings=three_per_call)
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-003"}]}
    assert sorted(i["key"][-7:] for i in all_items(aws.dynamodb)) == [
        "f0.json",
        "f1.json",
        "f2.json",
    ]
    assert context.remaining_ms >= 2_000  # the writes used the reserve, not the last seconds


def test_long_batches_are_scored_in_rounds_of_full_calls(app, aws) -> None:  # type: ignore[no-untyped-def]
    # 2 windows per call (small payload limit), 4 calls per round: 8 windows a round.
    settings = dataclasses.replace(app.SETTINGS, max_payload_bytes=2 * 24_000 + 256)
    keys = [f"incoming/site-a/dev-1/r{i}.npy" for i in range(6)]
    event = sqs_event(
        [[upload(aws, key, npy_bytes(ecg_like(30, 200).reshape(3, 2000, 3)))] for key in keys]
    )
    runtime = FakeRuntime()
    assert run_batch(app, aws, event, runtime, settings=settings) == {"batchItemFailures": []}
    # 18 windows: a round of 9 (three files) then one of 9: every call full but a round's last.
    assert [len(call) for call in runtime.calls] == [2, 2, 2, 2, 1] * 2
    assert {item["status"] for item in all_items(aws.dynamodb)} == {"SCORED"}


def test_once_the_endpoint_stops_later_rounds_make_no_call(app, aws) -> None:  # type: ignore[no-untyped-def]
    settings = dataclasses.replace(app.SETTINGS, max_payload_bytes=2 * 24_000 + 256)
    keys = [f"incoming/site-a/dev-1/s{i}.npy" for i in range(6)]
    event = sqs_event(
        [[upload(aws, key, npy_bytes(ecg_like(30, 200).reshape(3, 2000, 3)))] for key in keys]
    )
    runtime = FakeRuntime(faults=[client_error("ValidationError", 400)])  # endpoint missing
    response = run_batch(app, aws, event, runtime, settings=settings)
    assert len(response["batchItemFailures"]) == 6 and all_items(aws.dynamodb) == []
    assert len(runtime.calls) == 1
