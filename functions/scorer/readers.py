"""Readers: the bytes of one uploaded object -> a :class:`Recording` (contract 2), by the
format its key names, in bounded memory.

Formats come from the file extension; the content is sniffed only to say what a misnamed
file really holds. Every problem with the file raises :class:`RejectedFile` with a reason
the uploader can act on, including any error the decoders raise on corrupt bytes (a zlib
error in an .npz member, a tokenizer error in a damaged .npy header...): bytes can never
be a system fault. Nothing here is ever unpickled (``allow_pickle=False``).

Each format has its module (read_arrays, read_json, read_csv, over read_checks and
number_table); each refuses, before decoding, a file whose reading and preparing would not
fit the memory budget (decode_memory). Reasons never quote the file (cells, header text,
lead names, metadata values, array names): they name a line, column or field and say what
is expected.
"""

from __future__ import annotations

from collections.abc import Sequence

from scorer.decode_memory import MEMORY_BUDGET_BYTES, Limits
from scorer.errors import RejectedFile
from scorer.read_arrays import read_npy, read_npz
from scorer.read_csv import read_csv
from scorer.read_json import read_json
from scorer.recording import Recording

SUPPORTED = {".json": "json", ".csv": "csv", ".npy": "npy", ".npz": "npz"}
LATER = {
    ".hea": "WFDB",
    ".dat": "WFDB",
    ".atr": "WFDB",
    ".xyz": "WFDB",
    ".mat": "WFDB",
    ".edf": "EDF",
    ".bdf": "EDF",
}
# Extensions named back in a reason; any other is not repeated (a file name may hold PHI).
KNOWN_OTHER = {".txt", ".tsv", ".xml", ".pdf", ".xls", ".xlsx", ".gz", ".zip", ".tar", ".bz2"}
KNOWN_OTHER |= {".7z", ".h5", ".hdf5", ".parquet", ".pkl", ".pickle", ".dcm", ".scp", ".ecg"}


def check_size(size_bytes: int, max_bytes: int) -> None:
    """Refuse a file before reading it (the size comes from S3's ContentLength)."""
    if size_bytes == 0:
        raise RejectedFile("the file is empty (0 bytes); upload the recording again", "empty_file")
    if size_bytes > max_bytes:
        raise RejectedFile(
            f"the file is {size_bytes:,} bytes, above the limit of {max_bytes:,} bytes; "
            "split the recording into shorter files",
            "too_large",
        )


def file_format(key: str) -> str:
    """The format named by the key's extension, or RejectedFile saying what is accepted."""
    name = key.rsplit("/", 1)[-1]
    ext = ("." + name.rsplit(".", 1)[-1].lower()) if "." in name else ""
    if ext in SUPPORTED:
        return SUPPORTED[ext]
    accepted = ", ".join(SUPPORTED)
    if ext in LATER:
        raise RejectedFile(
            f"{LATER[ext]} files ({ext}) are not supported yet; convert the recording to "
            f"one of {accepted}",
            "format_not_supported_yet",
        )
    if not ext:
        raise RejectedFile(
            f"the file name has no extension; name it with one of {accepted}", "no_ext"
        )
    named = f" '{ext}'" if ext in KNOWN_OTHER else " (the file name's ending)"
    raise RejectedFile(f"unsupported file type{named}; accepted: {accepted}", "unsupported_ext")


def sniff(data: bytes) -> str:
    """What the bytes look like: npy, npz, pickle, gzip, edf, json, text or binary."""
    head = data[:512]
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "npz"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "pickle"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"0       ") and len(data) >= 256:
        return "edf"
    try:
        # A multi-byte character may be cut at byte 512: ignore the tail only.
        text = head.decode("utf-8-sig") if len(data) <= 512 else head[:508].decode("utf-8-sig")
    except UnicodeDecodeError:
        return "binary"
    if "\x00" in text:
        return "binary"
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return "json"
    return "text"


DESCRIBE = {
    "npy": ("a NumPy .npy array", ".npy"),
    "npz": ("a zip / NumPy .npz archive", ".npz"),
    "pickle": ("a Python pickle, which is never loaded", None),
    "gzip": ("gzip-compressed data", None),
    "edf": ("what looks like an EDF recording (not supported yet)", None),
    "json": ("JSON text", ".json"),
    "text": ("plain text", ".csv"),
    "binary": ("binary data that is not a known ECG format", None),
}


def _wrong_content(fmt: str, found: str) -> RejectedFile:
    what, ext = DESCRIBE[found]
    fix = f"; rename it to {ext}" if ext else f"; upload a {fmt.upper()} file"
    if found == "pickle":
        fix = "; save arrays with numpy.save (never pickle)"
    if found == "gzip":
        fix = "; upload the uncompressed file"
    return RejectedFile(f"the file is named .{fmt} but holds {what}{fix}", "wrong_content")


def read_recording(
    data: bytes,
    key: str,
    *,
    model_leads: Sequence[str] | None = None,
    model_rate_hz: float | None = None,
    metadata_rate_hz: float | None = None,
    memory_budget_bytes: int = MEMORY_BUDGET_BYTES,
) -> Recording:
    """Read one object's bytes as the format its key names.

    Parameters
    ----------
    model_leads
        The leads the model takes: when the file names its leads and holds all of them
        (each once), only those channels are kept (``Recording.leads_in_file`` lists all).
    model_rate_hz
        The model's rate: with it, the estimate includes what ``prepare`` will need to
        resample the recording (without it, reading only).
    metadata_rate_hz
        The rate the upload's S3 metadata states, used to cost a file that states none
        itself (otherwise it is costed at the lowest accepted rate, 100 Hz).
    memory_budget_bytes
        What reading and preparing this file may add to the process, the file's bytes
        included; a file whose estimate is larger is refused (``too_large_in_memory``).
    """
    fmt = file_format(key)
    if not data:
        raise RejectedFile("the file is empty (0 bytes); upload the recording again", "empty_file")
    found = sniff(data)
    expected = {"json": {"json", "text"}, "csv": {"text"}, "npy": {"npy"}, "npz": {"npz"}}[fmt]
    if found not in expected:
        raise _wrong_content(fmt, found)
    limits = Limits(
        memory_budget_bytes,
        tuple(model_leads) if model_leads else None,
        model_rate_hz,
        metadata_rate_hz,
    )
    reader = {"json": read_json, "csv": read_csv, "npy": read_npy, "npz": read_npz}[fmt]
    try:
        return reader(data, limits)
    except RejectedFile:
        raise
    except Exception as e:  # whatever the decoders raise on damaged bytes
        # zlib.error, tokenize.TokenError, struct.error, RecursionError, MemoryError...: the
        # file is damaged, which only a new upload can fix; never a fault of the system.
        raise RejectedFile(CORRUPT[fmt], f"bad_{fmt}") from e


CORRUPT = {
    "json": "the .json file is corrupt (it cannot be decoded); export and upload it again",
    "csv": "the .csv file is corrupt (it cannot be decoded); export and upload it again",
    "npy": "the .npy file is corrupt (it cannot be decoded); save it again with numpy.save",
    "npz": "the .npz file is corrupt (an array in it cannot be decoded); save it again with "
    "numpy.savez",
}
