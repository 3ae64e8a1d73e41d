"""Every ecg-scorer command against the running local stack: files uploaded by the CLI travel
the real queue, poller, Lambda and local endpoint; the CLI then finds, lists, resolves,
exports, draws, re-scores and compares what the Lambda stored. Loopback only."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cli_helpers import ecg_npz, pixels, run, share_near
from scorer import schema

from ecg_scorer import query
from ecg_scorer.local import stack
from ecg_scorer.report import figure

REPO = Path(__file__).resolve().parent.parent
RESULT_TIMEOUT_S = 180.0
FILES = {  # below incoming/: what each becomes
    "ward-c/mon-1/rec-a.npz": 35.0,
    "ward-c/mon-1/day2/rec-b.npz": 20.0,
    "ward-c/mon-1/short.npz": 4.0,  # rejected: shorter than one window
    "ward-d/mon-9/rec-c.npz": 12.0,
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def running() -> Iterator[stack.LocalStack]:
    if not stack.ARCHIVE.is_file():
        pytest.skip(
            f"no packaged model at {stack.ARCHIVE}: run `make {stack.shown(stack.ARCHIVE)}`"
        )
    work = REPO / "build" / "test-cli-local"
    shutil.rmtree(work, ignore_errors=True)
    # The CLI is what is tested here: the light endpoint serves the same archive.
    local = stack.start(stack.ARCHIVE, work, visibility_timeout_s=10, light_endpoint=True)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in local.client_env().items():
                mp.setenv(name, value)
            yield local
    finally:
        local.stop()


def wait_for(table: str, bucket: str, keys: list[str], version: str | None = None) -> dict:
    ddb = boto3.client("dynamodb")
    deadline = time.monotonic() + RESULT_TIMEOUT_S
    found: dict[str, dict[str, Any]] = {}
    while len(found) < len(keys):
        assert time.monotonic() < deadline, f"no result for {set(keys) - set(found)}"
        for key in keys:
            items = [
                i
                for i in query.file_results(ddb, table, bucket, key)
                if version is None or i["model_version"] == version
            ]
            if items:
                found[key] = items[0]
        time.sleep(0.5)
    return found


@pytest.fixture(scope="module")
def uploaded(running: stack.LocalStack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ecg")
    for path, seconds in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(ecg_npz(seconds))
    out = run("upload", str(root / "ward-c" / "mon-1"), "--site", "ward-c", "--device", "mon-1")
    assert out.startswith("uploaded 3 files")
    run("upload", str(root / "ward-d/mon-9/rec-c.npz"), "--site", "ward-d", "--device", "mon-9")
    keys = [f"incoming/{path}" for path in FILES]
    return wait_for(running.resources.table, running.resources.bucket, keys)


def test_uploaded_files_are_found_by_every_finding_command(
    running: stack.LocalStack, uploaded: dict[str, dict[str, Any]]
) -> None:
    short = uploaded["incoming/ward-c/mon-1/short.npz"]
    assert short["status"] == "REJECTED"
    scored = [k for k, i in uploaded.items() if i["status"] == "SCORED"]
    assert len(scored) == 3

    shown = json.loads(run("result", scored[0], "--format", "json"))  # a bare key
    assert [r["key"] for r in shown] == [scored[0]]
    device = json.loads(run("device", "ward-c", "mon-1", "--format", "json"))
    assert sorted(r["key"] for r in device) == sorted(k for k in uploaded if "ward-c" in k)
    site = json.loads(run("site", "ward-d", "--format", "json"))
    assert [r["key"] for r in site] == ["incoming/ward-d/mon-9/rec-c.npz"]
    rejected = run("rejected", "--since", "2d")
    assert short["reason"].split()[0] in rejected and "short.npz" in rejected
    anomalies = json.loads(run("anomalies", "--since", "2d", "--format", "json"))
    assert {r["key"] for r in anomalies} == {
        k for k, i in uploaded.items() if i.get("outcome") == "ANOMALOUS"
    }
    sites = json.loads(run("sites", "--format", "json"))
    assert {"ward-c", "ward-d"} <= {s["site"] for s in sites}
    devices = json.loads(run("devices", "ward-c", "--format", "json"))
    assert [(d["site"], d["device"]) for d in devices] == [("ward-c", "mon-1")]
    lines = run("export", "--since", "2d", "--format", "jsonl").splitlines()
    exported = {json.loads(line)["key"]: json.loads(line) for line in lines}
    assert set(uploaded) <= set(exported)
    assert exported[scored[0]]["window_probabilities"]


def test_a_hash_in_the_lambdas_log_resolves_to_its_file(
    running: stack.LocalStack, uploaded: dict[str, dict[str, Any]]
) -> None:
    log = (running.log_dir / "poller.log").read_text(encoding="utf-8")
    hashes = set(re.findall(r'"file": ?"([0-9a-f]{16})"', log))
    assert hashes, "the Lambda logged no file hash"
    bucket = running.resources.bucket
    by_hash = {schema.file_hash(bucket, key): key for key in uploaded}
    assert set(by_hash) <= hashes
    for file_hash, key in by_hash.items():
        rows = json.loads(run("resolve", file_hash, "--format", "json"))
        assert [r["key"] for r in rows] == [key]
    for key in uploaded:
        assert key not in log  # the log itself never names the file


def test_report_draws_a_stored_file(
    running: stack.LocalStack, uploaded: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    out = run("report", "incoming/ward-c/mon-1/rec-a.npz", "--out", str(tmp_path))
    page = pixels(Path(out.split()[1]).with_suffix(".png"))
    assert share_near(page, figure.MINOR) > 0.05  # ECG paper
    assert share_near(page, figure.TRACE, 40) > 0.002  # the leads the model saw


def test_rescore_scores_old_files_beside_other_versions_and_compare_reads_both(
    running: stack.LocalStack, uploaded: dict[str, dict[str, Any]]
) -> None:
    table, bucket = running.resources.table, running.resources.bucket
    version = running.lambda_settings.environment["MODEL_VERSION"]
    ddb = boto3.client("dynamodb")
    key = "incoming/ward-d/mon-9/rec-c.npz"
    before = uploaded[key]
    # As if rec-c had been scored only by an older model: its current result is not there...
    ddb.delete_item(
        TableName=table,
        Key={schema.PK: {"S": before[schema.PK]}, schema.SK: {"S": before[schema.SK]}},
    )
    # ...and the older model's result is.
    old = {**before, schema.SK: schema.model_sk("old_v0"), "model_version": "old_v0"}
    old.update(probability=before["probability"] * 0 + 1 - before["probability"])
    from boto3.dynamodb.types import TypeSerializer

    serialize = TypeSerializer().serialize
    ddb.put_item(TableName=table, Item={k: serialize(v) for k, v in old.items()})

    assert run("rescore", "--site", "ward-d", "--dry-run") == (
        f"would send 1 file under s3://{bucket}/incoming/ward-d/\n"
    )
    out = run("rescore", "--site", "ward-d")
    assert out.startswith(f"sent 1 file under s3://{bucket}/incoming/ward-d/")
    again = wait_for(table, bucket, [key], version)[key]
    assert again["probability"] == before["probability"]  # same model, same file
    versions = {i["model_version"] for i in query.file_results(ddb, table, bucket, key)}
    assert versions == {version, "old_v0"}

    # Re-scoring files the deployed version already scored changes nothing.
    a = "incoming/ward-c/mon-1/rec-a.npz"
    run("rescore", "--prefix", "ward-c/mon-1/rec-a")
    time.sleep(8)
    assert query.file_results(ddb, table, bucket, a)[0]["scored_at"] == uploaded[a]["scored_at"]

    summary = json.loads(
        run(
            "compare",
            "--model-version",
            "old_v0",
            "--model-version",
            version,
            "--site",
            "ward-d",
            "--format",
            "json",
        )
    )
    assert summary["scored_by_both"] == 1
    change = summary["largest_changes"][0]["change"]
    assert change == pytest.approx(float(before["probability"]) - float(old["probability"]))
