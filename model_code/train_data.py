"""Read training data (PTB-XL, a labels.csv folder, synthetic) into model windows by recording.

``--data`` of train.py names one of three sources (:func:`load_dataset`):

- a PTB-XL folder (``ptbxl_database.csv`` and ``records500/``): real 12-lead ECGs, anomalous
  = not ``NORM`` at likelihood 100; folds 1-8 train, fold 9 validates (calibration and
  threshold), fold 10 tests, as the database's authors recommend;
- ``synthetic``: synthetic ECGs (``synthetic.py``), half sinus rhythm, half anomalies, with
  validation and test sets drawn from separate random streams;
- a folder with ``labels.csv`` (header ``file,label``; label ``0``/``1`` or
  ``normal``/``anomalous``; ``file`` relative to the folder) and the recordings it names, in
  any format the scoring Lambda accepts. Recordings, not windows, are split 70/15/15 into
  training, validation and test, so no recording is scored on windows it was trained on.

Real recordings go through the Lambda's own code (its readers, ``scorer.wfdb`` for PTB-XL,
then ``scorer.prepare.prepare``): same lead matching, gap filling, resampling, windows (the
last one ending at the recording's end) and signal-quality verdicts, so the model is trained
on inputs prepared exactly as they will be served. Windows the Lambda would not send to the
model are left out; a PTB-XL record it would reject (``poor_signal_quality``) is skipped and
counted, a user file it would reject stops training. Each window takes its recording's
label; a recording's probability is the maximum over its usable windows, as the Lambda
stores it.
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The Lambda's own reader and preparation (functions/scorer, installed in the dev venv), so
# a model trained here sees its files exactly as the Lambda will serve them. This module and
# train.py run only in the dev venv; the container's code (inference.py, model.py) never
# imports scorer.
from scorer.errors import RejectedFile
from scorer.prepare import Prepared, prepare
from scorer.readers import read_recording
from scorer.recording import Recording
from scorer.wfdb import read_record
from scorer.wfdb_header import needed_files, parse_header
from tqdm import tqdm

from synthetic import ANOMALY_KINDS, NORMAL, synthesize_batch

WINDOW = 2000
FS = 200
LEADS = ["I", "II", "V2"]
LABEL_WORDS = {"0": 0, "1": 1, "normal": 0, "anomalous": 1, "abnormal": 1, "anomaly": 1}
MAX_PROBLEMS_SHOWN = 20  # a folder of mostly bad files lists the first ones and a count
PTBXL_INDEX = "ptbxl_database.csv"
PTBXL_NORMAL = "NORM"  # normal = this SCP statement at likelihood 100
PTBXL_TRAIN_FOLDS = range(1, 9)
PTBXL_VALIDATION_FOLD = 9
PTBXL_TEST_FOLD = 10


class DataError(ValueError):
    """The ``--data`` source does not hold what train.py accepts."""


@dataclasses.dataclass
class Split:
    """Windows of some recordings; each window carries its recording's label."""

    x: np.ndarray  # float32 [N, window, leads], raw mV
    y: np.ndarray  # float32 [N], 1 = anomalous
    recording: np.ndarray  # int [N]: index of the window's recording within the split
    kinds: list[str] | None = None  # synthetic kind of each window

    @classmethod
    def of(cls, recordings: Sequence[np.ndarray], labels: Sequence[int]) -> Split:
        """Stack the windows of ``recordings`` (``[n_i, window, leads]`` each)."""
        return cls(
            x=np.concatenate(recordings).astype(np.float32, copy=False),
            y=np.concatenate(
                [
                    np.full(len(r), lab, np.float32)
                    for r, lab in zip(recordings, labels, strict=True)
                ]
            ),
            recording=np.concatenate([np.full(len(r), i) for i, r in enumerate(recordings)]),
        )

    @classmethod
    def synthetic(cls, n: int, rng: np.random.Generator) -> Split:
        """``n`` synthetic windows, each its own recording."""
        x, y, kinds = synthetic_set(n, rng)
        return cls(x=x.astype(np.float32), y=y, recording=np.arange(n), kinds=kinds)

    def per_recording(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each recording's label and the maximum of ``values`` over its windows (the
        Lambda stores a file's maximum)."""
        n = int(self.recording.max()) + 1
        top = np.full(n, -np.inf)
        np.maximum.at(top, self.recording, values)
        label = np.zeros(n)
        label[self.recording] = self.y
        return label, top


@dataclasses.dataclass
class Dataset:
    """Training, validation and test recordings from one source."""

    source: str  # "ptbxl", "synthetic" or "custom": part of the model version
    description: str
    train: Split
    validation: Split
    test: Split
    test_name: str
    facts: dict[str, Any]  # recorded in config.json's training section


def synthetic_set(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Balanced synthetic windows: ``n // 2`` normal, the rest spread over anomaly kinds."""
    n_norm = n // 2
    kinds = [NORMAL] * n_norm + [ANOMALY_KINDS[i % len(ANOMALY_KINDS)] for i in range(n - n_norm)]
    order = rng.permutation(n)
    kinds = [kinds[i] for i in order]
    x = synthesize_batch(kinds, WINDOW / FS, FS, LEADS, rng)
    y = np.array([k != NORMAL for k in kinds], dtype=np.float32)
    return x, y, kinds


def prepare_windows(recording: Recording) -> Prepared:
    """A recording cut into model windows exactly as the Lambda serves it, each window with
    the Lambda's signal-quality verdict (``Prepared.usable``)."""
    return prepare(recording, tuple(LEADS), FS, WINDOW)


def overlaps_the_one_before(prepared: Prepared) -> bool:
    """Whether the last window ends at the recording's end and overlaps the window before."""
    starts = prepared.window_starts_s
    return len(starts) > 1 and starts[-1] - starts[-2] < WINDOW / FS


# ------------------------------------------------------------------------------ PTB-XL
def read_wfdb(path: Path) -> Recording:
    """One WFDB record (``path`` without extension) read by the Lambda's own WFDB reader."""
    header_name = path.name + ".hea"
    files = {header_name: path.with_suffix(".hea").read_bytes()}
    for name in needed_files(parse_header(files[header_name])):
        files[name] = (path.parent / name).read_bytes()
    return read_record(files, header_name)


def ptbxl_label(scp_codes: str) -> int:
    """1 (anomalous) unless the record's SCP statements give NORM likelihood 100."""
    codes = ast.literal_eval(scp_codes)  # a dict literal, e.g. "{'NORM': 100.0, 'SR': 0.0}"
    return int(float(codes.get(PTBXL_NORMAL, 0.0)) != 100.0)


def load_ptbxl(folder: Path) -> Dataset:
    """PTB-XL records (500 Hz) split by ``strat_fold``: 1-8 train, 9 validation, 10 test."""
    index = folder / PTBXL_INDEX
    with index.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    parts: dict[str, tuple[list[np.ndarray], list[int]]] = {
        "train": ([], []),
        "validation": ([], []),
        "test": ([], []),
    }
    dropped = rejected = 0
    for row in tqdm(rows, desc="reading PTB-XL", unit="record", mininterval=bar_interval()):
        fold = int(row["strat_fold"])
        part = (
            "validation"
            if fold == PTBXL_VALIDATION_FOLD
            else "test"
            if fold == PTBXL_TEST_FOLD
            else "train"
        )
        path = folder / row["filename_hr"]
        if not path.with_suffix(".hea").is_file():
            raise DataError(f"{PTBXL_INDEX} names {row['filename_hr']}, not found in {folder}")
        try:
            prepared = prepare_windows(read_wfdb(path))
        except RejectedFile as e:
            if e.code == "poor_signal_quality":  # the Lambda would never score it either
                rejected += 1
                continue
            raise DataError(f"{row['filename_hr']}: {e.reason}") from e
        keep = prepared.usable  # the model never sees a window the Lambda would not send
        dropped += int((~keep).sum())
        parts[part][0].append(prepared.windows[keep])
        parts[part][1].append(ptbxl_label(row["scp_codes"]))
    splits = {name: Split.of(*part) for name, part in parts.items()}
    return Dataset(
        source="ptbxl",
        description=(
            f"PTB-XL ({len(rows)} records, 500 Hz; anomalous = not {PTBXL_NORMAL} at 100), "
            "folds 1-8 train, 9 validation, 10 test"
        ),
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        test_name=f"PTB-XL fold {PTBXL_TEST_FOLD}",
        facts={
            "unusable_windows_skipped": dropped,
            "records_rejected_poor_signal_quality": rejected,
        },
    )


# ------------------------------------------------------------------- user recordings
def _parse_label(value: str, where: str) -> int:
    key = value.strip().lower()
    if key not in LABEL_WORDS:
        raise DataError(f"{where}: label {value.strip()[:20]!r} is not 0/1 or normal/anomalous")
    return LABEL_WORDS[key]


def _training_reason(error: RejectedFile) -> str:
    """The Lambda's reason, except where train.py offers its own fix (matched by code)."""
    if error.code == "no_rate":
        # The Lambda's reason is about uploads (S3 metadata); here --data-fs is the fix.
        return (
            "the file does not state its sampling rate: pass --data-fs RATE for such files "
            "(to be scored, the file or its S3 upload metadata must state it)"
        )
    return error.reason


def prepare_file(path: Path, data_fs: float | None) -> Prepared:
    """One training file read and cut into windows exactly as the Lambda serves it.

    ``data_fs`` is the rate of a file that does not state its own; a stated rate wins.
    Raises :class:`RejectedFile` when the Lambda would reject the file.
    """
    recording = read_recording(path.read_bytes(), path.name)
    if recording.fs is None and data_fs is not None:
        recording = dataclasses.replace(recording, fs=data_fs)
    return prepare_windows(recording)


def load_user_data(
    folder: Path, data_fs: float | None = None
) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Windows per recording (``[n_i, 2000, 3]`` each), one label per recording, and how
    many recordings end with a window overlapping the one before.

    Every row of labels.csv is checked before training starts, so one run lists every
    file to fix.
    """
    labels_path = folder / "labels.csv"
    if not labels_path.is_file():
        raise DataError(f"{labels_path} not found; it needs the header 'file,label'")
    with labels_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"file", "label"} <= set(reader.fieldnames):
            raise DataError(f"{labels_path.name}: header must contain 'file' and 'label'")
        entries = list(reader)
    recordings: list[np.ndarray] = []
    labels: list[int] = []
    overlapping = 0
    problems: list[str] = []
    for line, entry in enumerate(entries, start=2):
        name = (entry["file"] or "").strip()
        where = f"{labels_path.name} line {line}"
        path = (folder / name).resolve()
        try:
            label = _parse_label(entry["label"] or "", where)
            if not name or not path.is_relative_to(folder.resolve()) or not path.is_file():
                raise DataError(f"{where}: file not found inside {folder}")
            prepared = prepare_file(path, data_fs)
        except DataError as e:
            problems.append(str(e))
            continue
        except RejectedFile as e:
            problems.append(f"{where}: {name}: {_training_reason(e)}")
            continue
        keep = prepared.usable  # the model never sees a window the Lambda would not send
        recordings.append(prepared.windows[keep])
        labels.append(label)
        overlapping += int(overlaps_the_one_before(prepared) and keep[-1])
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        raise DataError(
            f"{len(problems)} of {len(entries)} rows of {labels_path.name} cannot be used; "
            "fix or remove them:\n  "
            + "\n  ".join(shown)
            + (f"\n  ... and {more} more" if more else "")
        )
    y = np.array(labels)
    if len(recordings) < 10 or y.min() == y.max():
        raise DataError(
            f"{labels_path.name}: need at least 10 recordings with both labels; "
            f"found {len(recordings)} ({int(y.sum())} anomalous)"
        )
    return recordings, y, overlapping


def user_split(
    recordings: list[np.ndarray], y: np.ndarray, rng: np.random.Generator, share: float = 0.15
) -> tuple[Split, Split, Split]:
    """Train, validation and test by recording, stratified: ``share`` of each label (at
    least one recording) validates, as many test, the rest trains."""
    parts: list[list[int]] = [[], [], []]
    for label in (0, 1):
        ids = rng.permutation(np.flatnonzero(y == label)).tolist()
        k = max(1, round(share * len(ids)))
        parts[1] += ids[:k]
        parts[2] += ids[k : 2 * k]
        parts[0] += ids[2 * k :]
    train, validation, test = (
        Split.of([recordings[i] for i in sorted(p)], [int(y[i]) for i in sorted(p)]) for p in parts
    )
    return train, validation, test


def synthetic_dataset(seed: int, train_size: int = 8000, held_out_size: int = 2000) -> Dataset:
    """Synthetic windows; validation and test come from separate random streams."""
    return Dataset(
        source="synthetic",
        description="synthetic (synthetic.py): normal vs " + ", ".join(ANOMALY_KINDS),
        train=Split.synthetic(train_size, np.random.default_rng([seed, 1])),
        validation=Split.synthetic(held_out_size, np.random.default_rng([seed, 3])),
        test=Split.synthetic(held_out_size, np.random.default_rng([seed, 2])),
        test_name="synthetic held-out",
        facts={},
    )


def load_dataset(args: argparse.Namespace, rng: np.random.Generator) -> Dataset:
    """The source ``--data`` names (see the module docstring)."""
    data = str(args.data)
    if data == "synthetic":
        return synthetic_dataset(args.seed, args.train_size, args.held_out_size)
    folder = Path(data)
    if (folder / PTBXL_INDEX).is_file():
        return load_ptbxl(folder)
    if not folder.is_dir():
        raise DataError(
            f"--data {data}: no such folder; give 'synthetic', a PTB-XL folder (with "
            f"{PTBXL_INDEX}) or a folder with labels.csv"
        )
    recordings, labels, overlapping = load_user_data(folder, args.data_fs)
    train, validation, test = user_split(recordings, labels, rng)
    windows = sum(len(r) for r in recordings)
    print(
        f"{len(recordings)} recordings, {windows} windows "
        f"({overlapping} of them overlapping the window before)"
    )
    return Dataset(
        source="custom",
        description=f"user recordings ({len(recordings)} files)",
        train=train,
        validation=validation,
        test=test,
        test_name="held-out recordings",
        facts={"overlapping_windows": overlapping},
    )


def bar_interval() -> float:
    """How often a progress bar redraws (seconds)."""
    # In a log (CI, make demo piped) redraw every 15 s instead of filling it with bars.
    return 0.1 if sys.stderr.isatty() else 15.0
