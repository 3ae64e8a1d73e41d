"""Per-window results of one file (or one chunk of it): start, probability, quality.

Short files keep them in their table item. A long recording's are an ``.npz`` object in S3
beside the table (an item holds at most 400 KB; 48 h is 17,280 windows): each chunk writes
its own until the file is whole, then the file's arrays replace them (``keys.results_key``).
Read back with ``allow_pickle=False``: only numbers and fixed-width strings are stored.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from scorer.prepare import Prepared
from scorer.quality import Problem, Verdict

OK = "ok"


@dataclass
class Summary:
    """What a file's item records about the recording besides its windows."""

    sampling_rate_hz: float
    rate_assumed: bool
    duration_s: float
    leads_found: list[str] | None
    leads_derived: list[str] = field(default_factory=list)
    threshold: float | None = None  # the model's, as the endpoint answered (None: no call)


@dataclass
class WindowResults:
    """One row per window, in recording order.

    ``probability`` is NaN for a window that was not scored; ``quality`` is ``ok`` or the
    window's fault code, and ``problems`` its faults as ``lead:code:detail`` joined by ``;``.
    """

    start_s: np.ndarray  # float64 [N]
    probability: np.ndarray  # float64 [N], NaN where unusable
    quality: np.ndarray  # str [N]
    problems: np.ndarray  # str [N]

    def __len__(self) -> int:
        return int(self.start_s.size)

    @property
    def usable(self) -> np.ndarray:
        return np.asarray(self.quality == OK, bool)

    def verdicts(self) -> list[Verdict]:
        out = []
        for text in self.problems:
            problems = []
            for one in filter(None, str(text).split(";")):
                lead, code, detail = one.split(":", 2)
                problems.append(Problem(lead, code, detail))
            out.append(Verdict(tuple(problems)))
        return out

    @classmethod
    def of(cls, prepared: Prepared, probabilities: Sequence[float]) -> WindowResults:
        """A prepared file's windows and the probabilities of its usable ones, in order."""
        answers = iter(probabilities)
        per_window = [next(answers) if v.usable else np.nan for v in prepared.verdicts]
        if next(answers, None) is not None:
            raise ValueError("more probabilities than usable windows")
        return cls(
            np.asarray(prepared.window_starts_s, np.float64),
            np.asarray(per_window, np.float64),
            np.array([v.code or OK for v in prepared.verdicts], dtype=str),
            np.array(
                [
                    ";".join(f"{p.lead}:{p.code}:{p.detail}" for p in v.problems)
                    for v in prepared.verdicts
                ],
                dtype=str,
            ),
        )

    def to_npz(self, summary: Summary | None = None) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            start_s=self.start_s,
            probability=self.probability,
            quality=self.quality.astype(str),
            problems=self.problems.astype(str),
            summary=np.array(json.dumps(asdict(summary) if summary else None)),
        )
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> tuple[WindowResults, Summary | None]:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            results = cls(npz["start_s"], npz["probability"], npz["quality"], npz["problems"])
            summary = json.loads(str(npz["summary"])) if "summary" in npz.files else None
        return results, Summary(**summary) if summary else None

    @classmethod
    def join(cls, parts: Sequence[WindowResults]) -> WindowResults:
        return cls(
            np.concatenate([p.start_s for p in parts]),
            np.concatenate([p.probability for p in parts]),
            np.concatenate([p.quality.astype(str) for p in parts]),
            np.concatenate([p.problems.astype(str) for p in parts]),
        )


def _problems(verdict: Verdict) -> str:
    return ";".join(f"{p.lead}:{p.code}:{p.detail}" for p in verdict.problems)


def summary_of(prepared: Prepared, threshold: float | None) -> Summary:
    return Summary(
        sampling_rate_hz=prepared.sampling_rate_hz,
        rate_assumed=prepared.rate_assumed,
        duration_s=prepared.duration_s,
        leads_found=prepared.leads_found,
        leads_derived=prepared.leads_derived,
        threshold=threshold,
    )
