"""argparse value types the command-line tools share: counts, probabilities, times."""

from __future__ import annotations

import argparse
from datetime import datetime

from ecg_scorer import times


def positive(text: str) -> int:
    """An integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def probability(text: str) -> float:
    """A number between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def time(text: str) -> datetime:
    """An ISO 8601 time or an age before now (``times.parse_time``), for ``type=``."""
    try:
        return times.parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
