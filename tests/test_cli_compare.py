"""ecg-scorer compare against moto: two model versions' results on the same files, paired;
label changes counted, a confusion table, the largest probability changes; csv/jsonl one
row per file."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from cli_helpers import NOW, TABLE, run, run_failing, stored

pytest_plugins = ["cli_fixtures"]  # its fixtures: cli_aws (moto), ddb (the table)

A, B = "cnn1d_lstm_ecg_v1", "cnn1d_lstm_ecg_v2"


@pytest.fixture
def two_versions(ddb: Any) -> None:
    at = NOW - timedelta(days=3)
    # file: (A's probability or reason, B's)
    for name, a, b in [
        ("same.csv", 0.9, 0.8),
        ("flip-up.csv", 0.2, 0.95),
        ("flip-down.csv", 0.7, 0.1),
        ("calm.csv", 0.1, 0.12),
        ("now-rejected.csv", 0.3, "poor signal"),
        ("only-a.csv", 0.6, None),
    ]:
        for version, value in ((A, a), (B, b)):
            if value is None:
                continue
            if isinstance(value, str):
                stored(ddb, name, at, reason=value, model_version=version)
            else:
                stored(ddb, name, at, probability=value, model_version=version)
    stored(ddb, "other-site.csv", at, site="elsewhere", probability=0.9, model_version=B)
    stored(ddb, "v3.csv", at, probability=0.9, model_version="v3")


def test_compare_counts_changes_and_fills_the_confusion_table(two_versions: None) -> None:
    argv = ["compare", "--model-version", A, "--model-version", B, "--table", TABLE]
    summary = json.loads(run(*argv, "--site", "stmarys", "--format", "json"))
    assert summary["files"] == 6 and summary["scored_by_both"] == 5
    assert (summary["only_a"], summary["only_b"]) == (1, 0)
    assert summary["label_changed"] == 3  # flip-up, flip-down, now-rejected
    confusion = summary["confusion"]
    assert confusion["normal"]["anomalous"] == 1
    assert confusion["anomalous"]["normal"] == 1
    assert confusion["anomalous"]["anomalous"] == 1
    assert confusion["normal"]["normal"] == 1
    assert confusion["normal"]["rejected"] == 1
    assert confusion["anomalous"]["missing"] == 1
    largest = [c["key"].rsplit("/", 1)[-1] for c in summary["largest_changes"]]
    assert largest[:2] == ["flip-up.csv", "flip-down.csv"]
    assert summary["largest_changes"][0]["change"] == pytest.approx(0.75)
    # Without --site every registered device counts: the other site's file is only in B.
    everywhere = json.loads(run(*argv, "--format", "json"))
    assert everywhere["files"] == 7 and everywhere["only_b"] == 1


def test_compare_table_and_per_file_rows(two_versions: None) -> None:
    argv = ["compare", "--model-version", A, "--model-version", B, "--table", TABLE]
    text = run(*argv, "--site", "stmarys")
    assert "label changed: 3 of 5" in text
    assert "flip-up.csv" in text and "0.750" in text
    rows = list(csv.DictReader(io.StringIO(run(*argv, "--site", "stmarys", "--format", "csv"))))
    by_file = {r["key"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_file["now-rejected.csv"]["label_b"] == "rejected"
    assert by_file["only-a.csv"]["label_b"] == "missing"
    lines = run(*argv, "--site", "stmarys", "--format", "jsonl").splitlines()
    assert [list(json.loads(line)) for line in lines[:1]] == [list(rows[0])]


def test_compare_needs_two_versions_with_results(
    two_versions: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        run("compare", "--model-version", A, "--table", TABLE)
    assert "give --model-version twice" in capsys.readouterr().err
    err = run_failing(
        capsys, "compare", "--model-version", "x", "--model-version", "y", "--table", TABLE
    )
    assert "no results of x or y" in err
