"""Times people type on a command line: ISO 8601, an age before now ("90m", "7d"), or a
duration ("15m")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
HELP = "ISO 8601 (2026-11-27, 2026-11-27T08:30Z; no zone means UTC) or an age: 90m, 24h, 7d, 2w"
DURATION_HELP = "a number and a unit: 30s, 15m, 2h, 7d, 1w"


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``2h``, ``7d``, ``1w`` (a number may have decimals); ValueError
    says what is expected."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(f"bad duration {text!r}: use {DURATION_HELP}")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (naive means UTC), ``now``, or an age before ``now``; always UTC.

    ValueError says what was wrong and what is expected.
    """
    now = now or datetime.now(UTC)
    value = text.strip()
    if value.lower() == "now":
        return now
    if _DURATION.fullmatch(value.lower()):
        return now - parse_duration(value)
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
