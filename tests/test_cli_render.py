"""What ecg-scorer, the local demo and deploy_model.py share to show things and read flags:
tables and aligned rows (ecg_scorer.render), the progress line, durations and times."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime, timedelta

import pytest

from ecg_scorer import args, render, times


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_timed_progress_line_in_a_log_prints_only_when_its_key_changes() -> None:
    out, clock = io.StringIO(), Clock()
    progress = render.Progress(out=out, clock=clock, timed=True)
    progress.step("starting")
    for seconds, state in [(1, "Creating"), (2, "Creating"), (3, "InService")]:
        clock.now = 100.0 + seconds
        progress.line(f"endpoint: {state} ({seconds}s)", key=state)
    progress.finish()
    assert out.getvalue().splitlines() == [
        "[  0.0s] starting",
        "[  1.0s] endpoint: Creating (1s)",
        "[  3.0s] endpoint: InService (3s)",
    ]


def test_on_a_terminal_the_progress_line_is_redrawn_in_place() -> None:
    out, clock = Terminal(), Clock()
    progress = render.Progress(out=out, clock=clock)
    progress.line("Creating (1s)", key="Creating")
    progress.line("Creating (2s)", key="Creating")  # the same state, a new clock: redrawn
    progress.line("Creating (2s)", key="Creating")  # nothing new: not drawn again
    progress.finish()
    progress.step("done")
    assert out.getvalue() == "\rCreating (1s)\rCreating (2s)\ndone\n"


def test_aligned_rows_pad_fixed_columns_and_keep_the_last_as_it_is() -> None:
    rows = [("ok", "role", "arn:aws:iam::1:role/x"), ("FAIL", "bucket", "")]
    lines = render.aligned(rows, [4, 8])
    assert lines == ["ok   role     arn:aws:iam::1:role/x", "FAIL bucket   "]
    assert render.aligned([("state", "InService")], [10], indent="  ") == ["  state      InService"]


def test_a_ruled_table_underlines_its_header_and_wraps_the_last_column() -> None:
    rows = [{"file": "a.csv", "reason": "the recording lasts 4.0 s; send at least 10 s of it"}]
    text = render.table(rows, ["file", "reason"], width=34, headers={"file": "file"}, rule=True)
    assert text.splitlines() == [
        "file   REASON",
        "-----  ------",
        "a.csv  the recording lasts 4.0 s;",
        "       send at least 10 s of it",
    ]


def test_durations_and_ages_read_the_same_way() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert times.parse_duration("15m") == timedelta(minutes=15)
    assert times.parse_duration(" 1.5H ") == timedelta(hours=1.5)
    assert times.parse_time("2w", now) == now - times.parse_duration("2w")
    with pytest.raises(ValueError, match="bad duration 'soon': use a number and a unit"):
        times.parse_duration("soon")
    with pytest.raises(argparse.ArgumentTypeError, match="not longer than zero"):
        args.duration("0s")
    with pytest.raises(argparse.ArgumentTypeError, match="must be at least 1, not 0"):
        args.positive("0")
