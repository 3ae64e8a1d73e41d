"""Per-window results of one file (or one chunk of it): start, probability, quality.

Short files keep them in their table item. A long recording's are an ``.npz`` object in S3
beside the table (an item holds at most 400 KB; 48 h is 17,280 windows): each chunk writes
its own until the file is whole, then the file's arrays replace them (``keys.results_key``).
Read back with ``allow_pickle=False``: only numbers and fixed-width strings are stored.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OK = "ok"


@dataclass
class WindowResults:
    """One row per window, in recording order.

    ``probability`` is NaN for a window that was not scored; ``quality`` is ``ok`` or the
    window's fault code, and ``problems`` its faults as ``lead:code:detail`` joined by ``;``
    (what a REJECTED reason is written from when no window of a long file is usable).
    """

    start_s: np.ndarray  # float64 [N]
    probability: np.ndarray  # float64 [N], NaN where unusable
    quality: np.ndarray  # str [N]
    problems: np.ndarray  # str [N]

    def __len__(self) -> int:
        return int(self.start_s.size)

    @property
    def usable(self) -> np.ndarray:
        return self.quality == OK

    def to_npz(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            start_s=self.start_s,
            probability=self.probability,
            quality=self.quality.astype(str),
            problems=self.problems.astype(str),
        )
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> WindowResults:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return cls(npz["start_s"], npz["probability"], npz["quality"], npz["problems"])

    @classmethod
    def join(cls, parts: Sequence[WindowResults]) -> WindowResults:
        return cls(
            np.concatenate([p.start_s for p in parts]),
            np.concatenate([p.probability for p in parts]),
            np.concatenate([p.quality.astype(str) for p in parts]),
            np.concatenate([p.problems.astype(str) for p in parts]),
        )
