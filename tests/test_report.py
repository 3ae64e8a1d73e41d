"""ecg-scorer report against moto: the ECG read from S3 by the Lambda's readers, drawn on
ECG paper with its window probabilities; the pages opened in a real browser (headless
Chromium from Debian's package) and the pictures checked by their pixels."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from cli_helpers import BUCKET, LAMBDA_ENV, NOW, TABLE, ecg_npz, pixels, run, share_near
from scorer import readers, store, uploads
from scorer.budget import Budget
from scorer.config import load_settings
from scorer.prepare import prepare
from scorer.window_results import WindowResults, summary_of
from scorer_helpers import FakeContext

from ecg_scorer.report import figure

pytest_plugins = ["cli_fixtures"]  # its fixtures: cli_aws (moto), ddb (the table)

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def scored(
    ddb: Any,
    name: str,
    probabilities: list[float | None],
    quality: list[str] | None = None,
    seconds: float = 35.0,
    site: str = "stmarys",
) -> dict[str, Any]:
    """Upload a recording and store its result as the Lambda would, windows and all."""
    key = f"incoming/{site}/holter-7/{name}"
    data = ecg_npz(seconds)
    s3 = boto3.client("s3")
    put = s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    settings = load_settings(LAMBDA_ENV)
    prepared = prepare(
        readers.read_recording(data, key),
        settings.model_leads,
        settings.model_sampling_rate_hz,
        settings.window_samples,
    )
    assert len(prepared.window_starts_s) == len(probabilities)
    ref = uploads.FileRef(
        BUCKET, key, put.get("VersionId"), put["ETag"], len(data), None, NOW - timedelta(hours=1)
    )
    facts = uploads.FileFacts(site=site, device="holter-7", format="npz")
    usable = [p if p is not None else 0.0 for p in probabilities]
    results = WindowResults.of(prepared, usable)
    item = store.scored_item(ref, facts, results, summary_of(prepared, 0.5), settings, NOW)
    if quality is not None:  # what the signal-quality check adds: None for unusable windows
        item["window_quality"] = quality
        item["window_probabilities"] = [
            None if p is None else store._decimal(p) for p in probabilities
        ]
    context = FakeContext()
    budget = Budget(context, sleep=context.sleep)
    store.register_device(ddb, TABLE, site, "holter-7", NOW, budget, set())
    assert store.put_item(ddb, TABLE, item, budget)
    return item


@pytest.fixture
def bucket(ddb: Any) -> Any:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return ddb


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: CI must install it (make chromium)")
        pytest.skip("chromium not installed (apt-get install chromium, or make chromium)")
    return found


def browse(chromium: str, url: str, tmp: Path, *what: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "chromium-profile"
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *what, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp,
    )


def report_of(name: str, out_dir: Path) -> Path:
    """Run ``ecg-scorer report`` on a stored file; the page it wrote."""
    key = f"incoming/stmarys/holter-7/{name}"
    out = run("report", key, "--bucket", BUCKET, "--table", TABLE, "--out", str(out_dir))
    return Path(out.split()[1])


def test_report_draws_the_trace_on_ecg_paper_with_unusable_windows_marked(
    bucket: Any, tmp_path: Path
) -> None:
    scored(bucket, "rec.npz", [0.2, None, 0.91, 0.7], ["ok", "flat", "ok", "ok"])
    html = report_of("rec.npz", tmp_path)
    png = html.with_suffix(".png")
    assert html.is_file() and png.is_file()
    assert "rec.npz" not in html.name  # named by the file's hash: keys can carry patient data
    page = pixels(png)
    assert share_near(page, figure.MINOR) > 0.05  # the 1 mm grid
    assert share_near(page, figure.MAJOR, 20) > 0.01  # the 5 mm grid
    assert share_near(page, figure.TRACE, 40) > 0.002  # the leads
    assert share_near(page, figure.UNUSABLE, 10) > 0.001  # the flat window, hatched grey
    text = html.read_text()
    assert "not scored: flat" in text and 'id="outcome">ANOMALOUS' in text
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', text)
    assert "http" not in text.replace("http-equiv", "")  # self-contained: nothing fetched


def test_long_recordings_show_the_most_probable_strips_and_say_so(
    bucket: Any, tmp_path: Path
) -> None:
    probabilities = [0.1] * 12
    probabilities[9] = 0.97
    scored(bucket, "long.npz", probabilities, seconds=120.0)
    text = report_of("long.npz", tmp_path).read_text()
    assert "showing 6 of 12 strips" in text
    windows = [figure.Window(10.0 * n, p, "ok") for n, p in enumerate(probabilities)]
    shown = figure.rows_to_show(windows, 12, 10.0)
    assert len(shown) == 6 and 9 in shown  # the strip of the most probable window is there


@pytest.mark.slow
def test_rows_are_one_model_window_long_whatever_the_last_window_overlaps(
    bucket: Any, tmp_path: Path
) -> None:
    # A 12-s file's two windows start 2 s apart (the last ends at the last sample): its rows,
    # and its thumbnail, still span 10 s of paper, like a 35-s file's.
    scored(bucket, "twelve.npz", [0.2, 0.3], seconds=12.0)
    scored(bucket, "long.npz", [0.2, 0.3, 0.4, 0.5], seconds=35.0)
    short = report_of("twelve.npz", tmp_path / "short")
    long = report_of("long.npz", tmp_path / "long")
    widths = [pixels(page.with_name(page.stem + "-thumb.png")).shape[1] for page in (short, long)]
    assert widths[0] == widths[1]


def test_windows_kept_in_s3_are_drawn_like_inline_ones(bucket: Any, tmp_path: Path) -> None:
    # Past store.INLINE_WINDOWS the Lambda keeps the windows in S3 (WindowResults .npz) and
    # the item points there: the report reads them from that object.
    probabilities = [0.1] * 12
    probabilities[9] = 0.97
    item = scored(bucket, "kept.npz", probabilities, seconds=120.0)
    settings = load_settings(LAMBDA_ENV)
    data = boto3.client("s3").get_object(Bucket=BUCKET, Key=item["key"])["Body"].read()
    prepared = prepare(
        readers.read_recording(data, item["key"]),
        settings.model_leads,
        settings.model_sampling_rate_hz,
        settings.window_samples,
    )
    results_key = "results/stmarys/holter-7/kept.npz"
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=results_key, Body=WindowResults.of(prepared, probabilities).to_npz()
    )
    for name in ("window_probabilities", "window_start_s", "window_quality"):
        item.pop(name, None)
    item["windows_s3_uri"] = f"s3://{BUCKET}/{results_key}"
    serializer = TypeSerializer()
    bucket.put_item(TableName=TABLE, Item={k: serializer.serialize(v) for k, v in item.items()})
    text = report_of("kept.npz", tmp_path).read_text()
    assert "could not be read" not in text
    assert "showing 6 of 12 strips" in text and "0.97" in text


def test_report_page_in_a_real_browser(bucket: Any, tmp_path: Path, chromium: str) -> None:
    scored(bucket, "rec.npz", [0.2, None, 0.91, 0.7], ["ok", "flat", "ok", "ok"])
    html = report_of("rec.npz", tmp_path)
    shot = tmp_path / "shot.png"
    browse(chromium, html.as_uri(), tmp_path, "--window-size=1280,1400", f"--screenshot={shot}")
    page = pixels(shot)
    assert page.std() > 20  # not a blank page
    assert share_near(page, "#c0392b", 8) > 0.0005  # the ANOMALOUS badge
    assert share_near(page, figure.MINOR, 14) > 0.03  # the ECG paper, as the browser drew it
    assert share_near(page, figure.TRACE, 40) > 0.001
    dom = browse(chromium, html.as_uri(), tmp_path, "--dump-dom").stdout
    assert 'id="ecg"' in dom and "not scored: flat" in dom


@pytest.mark.slow
def test_anomalies_index_links_every_report_and_sorts_in_a_real_browser(
    bucket: Any, tmp_path: Path, chromium: str
) -> None:
    for name, p in [("a.npz", 0.81), ("b.npz", 0.97), ("c.npz", 0.66), ("n.npz", 0.2)]:
        scored(bucket, name, [p, 0.1, 0.1, 0.1])
    out_dir = tmp_path / "reports"
    out = run(
        "report",
        "--anomalies",
        "--since",
        "7d",
        "--table",
        TABLE,
        "--bucket",
        BUCKET,
        "--out",
        str(out_dir),
    )
    assert out.startswith("wrote 3 reports and ")
    index = out_dir / "index.html"
    text = index.read_text()
    for page in re.findall(r'href="([^"]+\.html)"', text):
        assert (out_dir / page).is_file()
    for thumb in re.findall(r'src="([^"]+-thumb\.png)"', text):
        assert share_near(pixels(out_dir / thumb), figure.MINOR) > 0.05
    assert len(set(re.findall(r'src="([^"]+-thumb\.png)"', text))) == 3

    dom = browse(chromium, index.as_uri() + "#sort=probability:asc", tmp_path, "--dump-dom").stdout
    order = re.findall(r'<td class="probability" data-sort="[0-9.]+">([0-9.]+)<', dom)
    assert order == ["0.660", "0.810", "0.970"]  # the page's script sorted it in the browser
    assert 'data-sorted-by="probability:asc"' in dom
    shot = tmp_path / "index.png"
    browse(chromium, index.as_uri(), tmp_path, "--window-size=1200,600", f"--screenshot={shot}")
    assert share_near(pixels(shot), figure.MINOR, 14) > 0.005  # the thumbnails were drawn

    limited = run(
        "report",
        "--anomalies",
        "--since",
        "7d",
        "--limit",
        "2",
        "--table",
        TABLE,
        "--bucket",
        BUCKET,
        "--out",
        str(tmp_path / "two"),
    )
    assert "showing 2 of 3 (use --limit)" in limited
