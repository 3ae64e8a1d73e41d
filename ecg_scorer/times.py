"""Times people type on a command line: ISO 8601 or an age before now ("90m", "7d")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
HELP = "ISO 8601 (2026-11-27, 2026-11-27T08:30Z; no zone means UTC) or an age: 90m, 24h, 7d, 2w"


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (naive means UTC), ``now``, or an age before ``now``; always UTC.

    ValueError says what was wrong and what is expected.
    """
    now = now or datetime.now(UTC)
    value = text.strip()
    if value.lower() == "now":
        return now
    age = _AGE.fullmatch(value.lower())
    if age:
        return now - timedelta(**{_AGE_UNITS[age.group(2)]: float(age.group(1))})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"bad time {text!r}: use {HELP}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def time_range(since: str, until: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``[since, until)`` from two typed times; ValueError when it is empty."""
    now = now or datetime.now(UTC)
    start, end = parse_time(since, now), parse_time(until, now)
    if start >= end:
        raise ValueError(f"--since ({since}) must be before --until ({until})")
    return start, end
