"""What decoding one file will cost in memory, and the refusal of a file over the budget.

Before decoding anything large, each format reader works out what the file decodes to
(shape and dtype from the .npy header, rows and columns counted in the CSV or JSON bytes)
as a :class:`DecodePlan`; :func:`check_memory` refuses (``too_large_in_memory``) a file
whose reading and preparing would need more than the budget (:func:`peak_bytes`). Decoding
then stays within the estimate: arrays are read in chunks straight into float32, only the
model's leads are kept when the file names its leads, and CSV/JSON numbers are parsed by
NumPy chunk by chunk, never one Python object per value. docs/memory.md has the figures.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scorer.errors import RejectedFile
from scorer.prepare import prepare_bytes

MIB = 2**20
# What reading and preparing one file may add to the process, the file's bytes included.
# Default: 512 MiB at 1024 MB MemorySize, less ~128 MiB for the interpreter, NumPy, boto3
# and Powertools (importing scorer.app measures 84 MiB). The function passes its own.
MEMORY_BUDGET_BYTES = 384 * MIB
LOWEST_RATE_HZ = 100.0  # prepare.MIN_RATE_HZ: a file that states no rate is costed at it
# Arrays and text are decoded this much at a time. The readers look it up here when they
# run (decode_memory.CHUNK_BYTES), so a test can shrink it for all of them.
CHUNK_BYTES = MIB
# Working memory of the chunked decoders besides their output: a chunk as bytes, as str
# and as StringIO (4 bytes per character), NumPy's parse of it, masks (tests measure it).
DECODE_BYTES = 24 * MIB


@dataclass(frozen=True)
class Limits:
    """What the caller will do with the recording, for the memory estimate."""

    budget_bytes: int = MEMORY_BUDGET_BYTES
    model_leads: tuple[str, ...] | None = None
    model_rate_hz: float | None = None
    metadata_rate_hz: float | None = None


@dataclass(frozen=True)
class DecodePlan:
    """What a file decodes to, known before decoding it."""

    rows: int
    channels: int  # in the file
    kept: int  # channels kept in the Recording
    prepared: int  # leads prepare will copy and resample (see select)
    fs: float | None  # as the file states it, if it does before decoding
    work_bytes: int = DECODE_BYTES  # the decoder's own memory besides the signal
    work_per_row: int = 0  # ... and per row (a CSV's float64 time column)


def peak_bytes(plan: DecodePlan, file_bytes: int, limits: Limits) -> int:
    """Estimated peak of reading (and, given the model's rate, preparing) one file."""
    need = file_bytes + plan.work_bytes + plan.rows * (4 * plan.kept + plan.work_per_row)
    if limits.model_rate_hz and plan.prepared:
        fs = plan.fs or limits.metadata_rate_hz
        need += prepare_bytes(plan.rows, plan.prepared, fs, limits.model_rate_hz)
    return need


def size_text(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def _count(n: float) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k" if n >= 1e4 else f"{n:.0f}"


def check_memory(plan: DecodePlan, file_bytes: int, limits: Limits) -> None:
    """Refuse, before decoding, a file whose estimate exceeds the budget."""
    need = peak_bytes(plan, file_bytes, limits)
    if need <= limits.budget_bytes:
        return
    # The estimate grows linearly with the rows: how many would have fit.
    fixed = peak_bytes(dataclasses.replace(plan, rows=0), file_bytes, limits)
    fit = max(0, int((limits.budget_bytes - fixed) / ((need - fixed) / plan.rows)))
    fs = plan.fs or limits.metadata_rate_hz
    longest = f" ({fit / fs / 60:.0f} min at its rate)" if fs else ""
    reason = (
        f"the file would need about {size_text(need)} of memory to read and prepare "
        f"({plan.kept} channels x {_count(plan.rows)} samples); the limit is "
        f"{size_text(limits.budget_bytes)}: split the recording into files of at most "
        f"{_count(fit)} samples{longest}"
    )
    if limits.model_leads and plan.kept > len(limits.model_leads):
        needed = ", ".join(limits.model_leads)
        reason += f", or send only the leads {needed} (named, so the others can be skipped)"
    if not fs and limits.model_rate_hz:
        reason += (
            f"; no sampling rate was given, so it was costed at {LOWEST_RATE_HZ:g} Hz, the "
            "worst case: a stated rate (file or S3 metadata) may let it fit"
        )
    raise RejectedFile(reason, "too_large_in_memory")
