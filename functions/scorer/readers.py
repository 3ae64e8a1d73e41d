"""Readers: the bytes of one uploaded object -> a :class:`Recording` (contract 2), in bounded
memory.

Formats come from the file extension; the content is sniffed only to say what a misnamed
file really holds. Every problem with the file raises :class:`RejectedFile` with a reason
the uploader can act on, including any error the decoders raise on corrupt bytes (a zlib
error in an .npz member, a tokenizer error in a damaged .npy header...): bytes can never
be a system fault. Nothing here is ever unpickled (``allow_pickle=False``).

Memory: before decoding anything large, each reader works out what the file decodes to
(shape and dtype from the .npy header, rows and columns counted in the CSV or JSON bytes)
and refuses (``too_large_in_memory``) a file whose reading and preparing would need more
than ``memory_budget_bytes`` (:func:`peak_bytes`). Decoding then stays within the estimate:
arrays are read in chunks straight into float32, only the model's leads are kept when the
file names its leads, and CSV/JSON numbers are parsed by NumPy chunk by chunk, never one
Python object per value. docs/memory.md has the figures.

Reasons never quote the file (cells, header text, lead names, metadata values, array
names): they name a line, column or field and say what is expected.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from scorer.errors import RejectedFile
from scorer.leads import canonical
from scorer.prepare import prepare_bytes
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
# Metadata keys a file may carry, and the spellings accepted for them.
META_ALIASES = {
    "sampling_rate_hz": "sampling_rate_hz",
    "sampling_rate": "sampling_rate_hz",
    "sample_rate": "sampling_rate_hz",
    "sample_rate_hz": "sampling_rate_hz",
    "sampling_frequency": "sampling_rate_hz",
    "fs": "sampling_rate_hz",
    "fs_hz": "sampling_rate_hz",
    "leads": "leads",
    "recorded_at": "recorded_at",
    "record_id": "record_id",
    "patient_ref": "patient_ref",
    "site": "site",
    "device": "device",
}
TEXT_META = ("recorded_at", "record_id", "patient_ref", "site", "device")
MAX_CHANNELS = 64

MIB = 2**20
# What reading and preparing one file may add to the process, the file's bytes included.
# Default: 512 MiB at 1024 MB MemorySize, less ~128 MiB for the interpreter, NumPy, boto3
# and Powertools (importing scorer.app measures 84 MiB). The function passes its own.
MEMORY_BUDGET_BYTES = 384 * MIB
LOWEST_RATE_HZ = 100.0  # prepare.MIN_RATE_HZ: a file that states no rate is costed at it
CHUNK_BYTES = MIB  # arrays and text are decoded this much at a time
# Working memory of the chunked decoders besides their output: a chunk as bytes, as str
# and as StringIO (4 bytes per character), NumPy's parse of it, masks (tests measure it).
DECODE_BYTES = 24 * MIB
MAX_LINE_BYTES = 64 * 1024  # one CSV line or JSON row; 64 leads of numbers need ~2 KB
MAX_NPZ_MEMBERS = 1024  # each zip entry costs memory to list, before any is read
MAX_META_MEMBER_BYTES = 64 * 1024  # an .npz metadata array holds one value or lead names
MAX_JSON_FIELDS_BYTES = MIB  # JSON besides "signals" becomes Python objects: keep it small
MAX_SIGNALS_KEYS = 8  # "signals" keys looked at (each costs a scan of up to a chunk)


@dataclass(frozen=True)
class Limits:
    """What the caller will do with the recording, for the memory estimate."""

    budget_bytes: int = MEMORY_BUDGET_BYTES
    model_leads: tuple[str, ...] | None = None
    model_rate_hz: float | None = None
    metadata_rate_hz: float | None = None


def reject(reason: str, code: str) -> RejectedFile:
    return RejectedFile(reason, code)


def check_size(size_bytes: int, max_bytes: int) -> None:
    """Refuse a file before reading it (the size comes from S3's ContentLength)."""
    if size_bytes == 0:
        raise reject("the file is empty (0 bytes); upload the recording again", "empty_file")
    if size_bytes > max_bytes:
        raise reject(
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
        raise reject(
            f"{LATER[ext]} files ({ext}) are not supported yet; convert the recording to "
            f"one of {accepted}",
            "format_not_supported_yet",
        )
    if not ext:
        raise reject(f"the file name has no extension; name it with one of {accepted}", "no_ext")
    named = f" '{ext}'" if ext in KNOWN_OTHER else " (the file name's ending)"
    raise reject(f"unsupported file type{named}; accepted: {accepted}", "unsupported_ext")


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
    return reject(f"the file is named .{fmt} but holds {what}{fix}", "wrong_content")


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
        raise reject("the file is empty (0 bytes); upload the recording again", "empty_file")
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
        raise reject(CORRUPT[fmt], f"bad_{fmt}") from e


CORRUPT = {
    "json": "the .json file is corrupt (it cannot be decoded); export and upload it again",
    "csv": "the .csv file is corrupt (it cannot be decoded); export and upload it again",
    "npy": "the .npy file is corrupt (it cannot be decoded); save it again with numpy.save",
    "npz": "the .npz file is corrupt (an array in it cannot be decoded); save it again with "
    "numpy.savez",
}


# -- memory --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What a file decodes to, known before decoding it."""

    rows: int
    channels: int  # in the file
    kept: int  # channels kept in the Recording
    prepared: int  # leads prepare will copy and resample (see select)
    fs: float | None  # as the file states it, if it does before decoding
    work_bytes: int = DECODE_BYTES  # the decoder's own memory besides the signal
    work_per_row: int = 0  # ... and per row (a CSV's float64 time column)


def peak_bytes(plan: _Plan, file_bytes: int, limits: Limits) -> int:
    """Estimated peak of reading (and, given the model's rate, preparing) one file."""
    need = file_bytes + plan.work_bytes + plan.rows * (4 * plan.kept + plan.work_per_row)
    if limits.model_rate_hz and plan.prepared:
        fs = plan.fs or limits.metadata_rate_hz
        need += prepare_bytes(plan.rows, plan.prepared, fs, limits.model_rate_hz)
    return need


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def _count(n: float) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k" if n >= 1e4 else f"{n:.0f}"


def check_memory(plan: _Plan, file_bytes: int, limits: Limits) -> None:
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
        f"the file would need about {_size(need)} of memory to read and prepare "
        f"({plan.kept} channels x {_count(plan.rows)} samples); the limit is "
        f"{_size(limits.budget_bytes)}: split the recording into files of at most "
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
    raise reject(reason, "too_large_in_memory")


# -- shared checks -------------------------------------------------------------------------


def check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype.kind not in "iuf":
        kinds = {"b": "booleans", "c": "complex numbers", "O": "Python objects"}
        held = kinds.get(dtype.kind, "values that are not numbers")
        raise reject(f"{what} holds {held}; it must hold numbers (mV)", "not_numeric")


def check_shape(shape: tuple[int, ...], what: str) -> tuple[int, int]:
    """(rows, channels) of a [T, C] array (or [N, W, C] windows, joined), or RejectedFile."""
    if len(shape) == 1:
        raise reject(
            f"{what} is 1-D ({shape[0]} values); expected [samples, channels], one column per lead",
            "wrong_shape",
        )
    if len(shape) not in {2, 3}:
        raise reject(
            f"{what} has {len(shape)} dimensions; expected [samples, channels]", "wrong_shape"
        )
    # The endpoint's own batch format [N, 2000, C]: consecutive windows of one recording.
    rows, cols = math.prod(shape[:-1]), shape[-1]
    if rows * cols == 0:
        raise reject(f"{what} holds no samples", "no_samples")
    if rows <= 16 < cols:
        raise reject(
            f"{what} has shape [{rows}, {cols}], which looks like [channels, samples]; "
            "send [samples, channels] (transpose it)",
            "transposed",
        )
    if cols > MAX_CHANNELS:
        raise reject(
            f"{what} has {cols} channels; at most {MAX_CHANNELS} are accepted", "wrong_shape"
        )
    return rows, cols


def parse_rate(value: Any, where: str) -> float:
    if isinstance(value, bool):
        value = None
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise reject(
            f"{where} is not a positive number of samples per second (e.g. 500)", "bad_rate"
        )
    return rate


def _stated_rate(raw: dict[str, Any], where: str) -> float | None:
    return parse_rate(raw["sampling_rate_hz"], where) if "sampling_rate_hz" in raw else None


def _text_meta(raw: dict[str, Any], where: str) -> dict[str, str]:
    meta: dict[str, str] = {}
    for name in TEXT_META:
        value = raw.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise reject(f"{where} '{name}' must be a string", "bad_metadata")
        text = str(value).strip()
        if text:
            meta[name] = text[:256]
    return meta


def lead_names(value: Any, channels: int, where: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise reject(f"{where} 'leads' must be a list of lead names", "bad_leads")
    names = [v.strip() for v in value]
    if len(names) != channels:
        raise reject(
            f"{where} names {len(names)} leads but the signal has {channels} channels", "bad_leads"
        )
    return names


def select(names: list[str] | None, channels: int, limits: Limits) -> tuple[list[int], int]:
    """(channels to keep, leads prepare will copy and resample). Kept: the model's leads when
    the file names each of them once, else all (prepare then names what is missing or
    twice). Prepared: none when prepare must refuse first (too few channels, a model lead
    missing or named twice), else the model's (every channel without them)."""
    everything = list(range(channels))
    if limits.model_leads is None:
        return everything, channels
    if channels < len(limits.model_leads):
        return everything, 0
    if names is None:
        return everything, len(limits.model_leads)
    keys = [canonical(name) for name in names]  # as prepare's select_leads matches them
    wanted = {canonical(lead) for lead in limits.model_leads}
    named = [k for k in keys if k is not None]
    if len(set(named)) != len(named) or not wanted <= set(named):
        return everything, 0
    return [j for j, k in enumerate(keys) if k in wanted], len(wanted)


def _recording(
    signal: np.ndarray,
    fs: float | None,
    names: list[str] | None,
    keep: list[int],
    fmt: str,
    **rest: Any,
) -> Recording:
    kept = [names[j] for j in keep] if names is not None else None
    dropped = names is not None and len(keep) < len(names)
    return Recording(signal, fs, kept, fmt, leads_in_file=names if dropped else None, **rest)


# -- arrays (.npy, .npz members) -----------------------------------------------------------


@dataclass(frozen=True)
class _ArrayHeader:
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int  # bytes before the values


def _array_header(stream: IO[bytes]) -> _ArrayHeader | None:
    """The header of an .npy (from its first byte), or None when it is not one."""
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            return None
    except Exception:  # a damaged header
        return None
    if any(n < 0 for n in shape):
        return None
    return _ArrayHeader(tuple(int(n) for n in shape), bool(fortran), dtype, stream.tell())


def _read_values(stream: IO[bytes], header: _ArrayHeader, keep: list[int]) -> np.ndarray:
    """The array after its header as float32 [rows, len(keep)], read a chunk at a time."""
    shape, dtype, item = header.shape, header.dtype, header.dtype.itemsize
    rows, cols = math.prod(shape[:-1]), shape[-1]
    out = np.empty((rows, len(keep)), np.float32)
    every = keep == list(range(cols))

    def take(count: int) -> np.ndarray:
        raw = stream.read(count * item)
        if len(raw) != count * item:
            raise EOFError("the array's values end early")
        return np.frombuffer(raw, dtype)

    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused later
        if not header.fortran:
            step = max(1, CHUNK_BYTES // (cols * item))
            for r0 in range(0, rows, step):
                block = take(min(step, rows - r0) * cols).reshape(-1, cols)
                out[r0 : r0 + len(block)] = block if every else block[:, keep]
        elif len(shape) == 2:  # column after column
            step = max(1, CHUNK_BYTES // item)
            where = {c: i for i, c in enumerate(keep)}
            for c in range(cols):
                for r0 in range(0, rows, step):
                    block = take(min(step, rows - r0))
                    if c in where:
                        out[r0 : r0 + len(block), where[c]] = block
        else:  # [N, W, C] in Fortran order: a channel is W x N, window index fastest
            where = {c: i for i, c in enumerate(keep)}
            for c in range(cols):
                block = take(rows)
                if c in where:
                    out[:, where[c]] = block.reshape(shape[1], shape[0]).T.ravel()
    return out


def _array_plan(header: _ArrayHeader, keep: list[int], prepared: int, fs: float | None) -> _Plan:
    rows, cols = math.prod(header.shape[:-1]), header.shape[-1]
    # [N, W, C] in Fortran order is read a whole channel at a time, and reordered (a copy).
    whole_channel = header.fortran and len(header.shape) == 3
    per_row = 2 * header.dtype.itemsize if whole_channel else 0
    return _Plan(rows, cols, len(keep), prepared, fs, work_per_row=per_row)


def read_npy(data: bytes, limits: Limits) -> Recording:
    """A [T, C] (or [N, W, C]) numeric array; no metadata travels in an .npy."""
    stream = io.BytesIO(data)
    header = _array_header(stream)
    if header is None:
        raise reject("the .npy file is truncated or corrupt; save it again", "bad_npy")
    if header.dtype.hasobject:
        raise reject(
            "the .npy array holds Python objects, which are never unpickled; "
            "save a numeric array, e.g. numpy.save(path, signal.astype('float32'))",
            "npy_object",
        )
    # The header's shape must account for the bytes exactly: a damaged header could
    # otherwise claim far more than the file holds.
    if math.prod(header.shape) * header.dtype.itemsize != len(data) - header.offset:
        raise reject("the .npy file is truncated or corrupt; save it again", "bad_npy")
    what = "the .npy array"
    check_dtype(header.dtype, what)
    _, cols = check_shape(header.shape, what)
    keep, prepared = select(None, cols, limits)
    check_memory(_array_plan(header, keep, prepared, None), len(data), limits)
    signal = _read_values(stream, header, keep)
    return Recording(signal, None, None, "npy", {}, header.shape, bare=True)


SIGNAL_NAMES = ("signals", "signal", "ecg", "data", "x")


def read_npz(data: bytes, limits: Limits) -> Recording:
    """Arrays ``signals`` [T, C], optional ``sampling_rate_hz``/``fs`` and ``leads`` (str).

    Only the members used are decompressed, the signal a chunk at a time, each no further
    than its declared size (zipfile stops there), which must match its .npy header.
    """
    # Every entry of the zip's directory becomes an object when the archive is opened.
    if data.count(b"PK\x01\x02") > MAX_NPZ_MEMBERS:
        raise reject(
            f"the .npz archive holds more than {MAX_NPZ_MEMBERS} entries; save only the "
            "signal and its metadata (numpy.savez(path, signals=x, sampling_rate_hz=500))",
            "bad_npz",
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise reject("the .npz archive is truncated or corrupt; save it again", "bad_npz") from e
    with archive:
        infos = {}
        for info in archive.infolist():  # np.load names a member without its .npy
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            infos[name.lower()] = info
        if not infos:
            raise reject("the .npz archive holds no arrays; save the signal in it", "npz_empty")
        for info in infos.values():
            if info.compress_type not in {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}:
                # bzip2/lzma members decompress without a bound per read; numpy never writes them.
                raise reject(
                    "the .npz archive uses a compression numpy does not write; save it with "
                    "numpy.savez or numpy.savez_compressed",
                    "bad_npz",
                )
        chosen = next((n for n in SIGNAL_NAMES if n in infos), None)
        if chosen is None:
            if len(infos) != 1:
                raise reject(
                    f"the .npz holds {len(infos)} arrays but none is named 'signals' (or "
                    f"{', '.join(SIGNAL_NAMES[1:])}); name the signal array 'signals'",
                    "npz_no_signals",
                )
            chosen = next(iter(infos))
        raw: dict[str, Any] = {}
        for low, info in infos.items():
            key = META_ALIASES.get(low)
            if key is not None and low != chosen:
                raw[key] = _npz_meta(archive, info, low)
        fs = _stated_rate(raw, "the .npz sampling_rate_hz")
        what = "the .npz signal array"
        with archive.open(infos[chosen]) as stream:
            header = _array_header(stream)
            if header is None:
                raise reject(
                    f"{what} is corrupt or not a NumPy array; save it again with numpy.savez",
                    "bad_npz",
                )
            if header.dtype.hasobject:
                raise reject(
                    f"{what} holds Python objects, which are never unpickled; save numbers "
                    "as numeric arrays and names as numpy string arrays",
                    "npz_object",
                )
            size = math.prod(header.shape) * header.dtype.itemsize
            if size != infos[chosen].file_size - header.offset:
                raise reject("the .npz archive is truncated or corrupt; save it again", "bad_npz")
            check_dtype(header.dtype, what)
            _, cols = check_shape(header.shape, what)
            names = lead_names(raw["leads"], cols, "the .npz") if "leads" in raw else None
            keep, prepared = select(names, cols, limits)
            check_memory(_array_plan(header, keep, prepared, fs), len(data), limits)
            signal = _read_values(stream, header, keep)
    meta = _text_meta(raw, "the .npz array")
    return _recording(signal, fs, names, keep, "npz", metadata=meta, stored_shape=header.shape)


def _npz_meta(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Any:
    """One metadata member: a single value, or a 1-D array of lead names."""
    if info.file_size > MAX_META_MEMBER_BYTES:
        raise reject(
            f"the .npz array '{name}' holds {info.file_size:,} bytes; a metadata array "
            "holds one value (or the lead names)",
            "bad_metadata",
        )
    content = archive.read(info)  # zipfile stops at the declared size
    if not content.startswith(b"\x93NUMPY"):
        raise reject(f"the .npz array '{name}' is not a NumPy array", "bad_npz")
    try:
        value = np.load(io.BytesIO(content), allow_pickle=False)
    except ValueError as e:
        raise reject(
            f"the .npz array '{name}' holds Python objects, which are never unpickled; "
            "save numbers as numeric arrays and names as numpy string arrays",
            "npz_object",
        ) from e
    if name == "leads":
        if value.dtype.kind not in "US" or value.ndim != 1:
            raise reject("the .npz array 'leads' must be a 1-D array of names", "bad_leads")
        return [str(v) for v in value.tolist()]
    if value.size != 1:
        raise reject(f"the .npz array '{name}' must hold one value", "bad_metadata")
    return value.reshape(()).item()


# -- numbers in text (CSV rows, JSON "signals" rows) ---------------------------------------


class _BadLine(Exception):
    """A line of numbers that cannot be read: its number (1-based, in the text given to
    :func:`_parse_table`) and the 1-based column of the bad cell, or its field count."""

    def __init__(self, line: int, column: int | None = None, fields: int | None = None) -> None:
        super().__init__(line, column, fields)
        self.line, self.column, self.fields = line, column, fields


@dataclass(frozen=True)
class _Table:
    """How to turn lines of delimited numbers into the signal (and time) columns."""

    columns: int  # fields per line
    keep: list[int]  # the lead columns kept, in order
    factors: np.ndarray  # float64 per kept column, to mV
    time: int | None = None  # the time column, if any
    time_factor: float = 1.0  # to seconds
    delimiter: str = ","
    gaps: bool = True  # empty, NA and null cells are gaps (CSV); JSON has only null


# null/NA cells (one token between delimiters, maybe quoted): checked by _gap_token.
_GAP_TOKEN = {
    d: re.compile(rf'[nN](?:[uU][lL][lL]|[aA])(?="?[ ]*(?:{re.escape(d)}|\r?$))', re.M)
    for d in (",", ";", "\t")
}


_BLANK_LINE = re.compile(r"^[ \t]+(?=\r?$)", re.M)


def _gaps_to_nan(text: str, delimiter: str) -> str:
    """Empty, null and NA cells -> nan, which NumPy reads (str.replace and one regex:
    ~30 ms per MiB, where a per-cell Python loop would take seconds and a list per row)."""
    d = delimiter
    if d == "\t":  # a line of blanks is no row, though tabs would be cells
        text = _BLANK_LINE.sub("", text)
    for _ in range(2):  # ",,," needs two passes: the replacement consumes the delimiter
        text = text.replace(d + d, d + "nan" + d)
    text = text.replace("\n" + d, "\nnan" + d).replace(d + "\n", d + "nan\n")
    text = text.replace(d + "\r\n", d + "nan\r\n")
    if text.startswith(d):
        text = "nan" + text
    if text.endswith(d):
        text += "nan"

    def token(match: re.Match[str]) -> str:
        before = match.string[match.start() - 1] if match.start() else "\n"
        return "nan" if before in f'{d}\n "' else match.group(0)

    return _GAP_TOKEN[d].sub(token, text)


def _loadtxt(text: str, table: _Table) -> np.ndarray | None:
    """NumPy's C parser on whole lines; None if it refuses them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            values = np.loadtxt(
                io.StringIO(text, newline=None),
                delimiter=table.delimiter,
                comments="#",
                quotechar='"',
                ndmin=2,
                dtype=np.float64,
            )
    except ValueError:
        return None
    if values.size == 0:
        return np.empty((0, table.columns))
    return values if values.shape[1] == table.columns else None


def _parse_slowly(text: str, table: _Table) -> np.ndarray:
    """Line by line in Python, for a chunk NumPy refused: finds the bad line (_BadLine) or
    takes what NumPy does not (e.g. a line of blanks). Bounded: one chunk at a time."""
    gap_tokens = {"", "nan", "na", "null"} if table.gaps else {"nan"}
    values = np.empty((text.count("\n") + 1, table.columns))  # <= 4 bytes of it per byte
    n = 0
    for offset, line in enumerate(text.split("\n")):
        body = line.split("#", 1)[0].rstrip("\r")
        if not body.strip():
            continue
        fields = next(csv.reader([body], delimiter=table.delimiter))
        if len(fields) != table.columns:
            raise _BadLine(offset + 1, fields=len(fields))
        for j, cell in enumerate(fields):
            cell = cell.strip()
            try:
                values[n, j] = math.nan if cell.lower() in gap_tokens else float(cell)
            except ValueError as e:
                raise _BadLine(offset + 1, column=j + 1) from e
        n += 1
    return values[:n]


def _parse_lines(chunk: bytes, table: _Table) -> np.ndarray:
    """Whole lines -> float64 [rows, columns]: NumPy first, then with gaps made nan, then
    Python (which names the bad line)."""
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _BadLine(chunk.count(b"\n", 0, e.start) + 1) from e
    if not table.gaps and "null" in text:  # JSON's only gap
        text = text.replace("null", "nan ")
    values = _loadtxt(text, table)
    if values is None and table.gaps:
        values = _loadtxt(_gaps_to_nan(text, table.delimiter), table)
    return values if values is not None else _parse_slowly(text, table)


def _whole_lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut blocks of text at line ends; a line longer than MAX_LINE_BYTES is refused
    (as _BadLine, numbered from the start)."""
    pending, line = b"", 0
    for block in blocks:
        pending += block
        cut = pending.rfind(b"\n") + 1
        if cut == 0:
            if len(pending) > MAX_LINE_BYTES:
                raise _BadLine(line + 1, fields=-1)
            continue
        chunk, pending = pending[:cut], pending[cut:]
        yield chunk
        line += chunk.count(b"\n")
    if len(pending) > MAX_LINE_BYTES:
        raise _BadLine(line + 1, fields=-1)
    if pending:
        yield pending


def _parse_table(
    blocks: Iterable[bytes], table: _Table, max_rows: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Lines of numbers -> (float32 [rows, kept] in mV, float64 time column in seconds),
    parsed a chunk at a time into arrays of ``max_rows`` allocated once. Raises _BadLine
    with line numbers counted from the first block."""
    signal = np.empty((max_rows, len(table.keep)), np.float32)
    times = np.empty(max_rows) if table.time is not None else None
    n, line = 0, 0
    for chunk in _whole_lines(blocks):
        try:
            values = _parse_lines(chunk, table)
        except _BadLine as bad:
            raise _BadLine(line + bad.line, bad.column, bad.fields) from bad
        rows = len(values)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, refused later
            signal[n : n + rows] = values[:, table.keep] * table.factors
        if times is not None and table.time is not None:
            times[n : n + rows] = values[:, table.time] * table.time_factor
        n += rows
        line += chunk.count(b"\n")
    return signal[:n], None if times is None else times[:n]


def _blocks(data: bytes, start: int, end: int) -> Iterator[bytes]:
    for i in range(start, end, CHUNK_BYTES):
        yield data[i : min(i + CHUNK_BYTES, end)]


# -- JSON ----------------------------------------------------------------------------------

_SIGNALS = re.compile(rb'"signals"\s*:\s*\[')
# Stands for the "signals" array, parsed apart, in the rest of the document.
_PLACEHOLDER, _PLACEHOLDER_VALUE = b'"\\u0000signals"', "\x00signals"


def read_json(data: bytes, limits: Limits) -> Recording:
    """``{"signals": [T, C] | [N, 2000, C], "sampling_rate_hz"?, "leads"?, ...}``.

    The "signals" array is found in the bytes and parsed apart (NumPy, a chunk at a time);
    the rest of the document, small, goes to the json module.
    """
    span = _find_signals(data)
    rest = data if span is None else data[: span.start] + _PLACEHOLDER + data[span.end :]
    if span is None and len(rest) > MAX_JSON_FIELDS_BYTES:
        if _SIGNALS.search(data):
            raise _bad_signals(None)
        raise reject(
            'expected a JSON object with a "signals" array of [samples, channels] numbers',
            "no_signals",
        )
    if len(rest) > MAX_JSON_FIELDS_BYTES:
        raise reject(
            f'the JSON holds {_size(len(rest))} besides "signals"; the other fields (rate, '
            f"leads, metadata) may hold at most {_size(MAX_JSON_FIELDS_BYTES)}: remove the "
            "large ones",
            "too_large_in_memory",
        )
    doc = _json_fields(rest, data, span)
    if not isinstance(doc, dict) or "signals" not in doc:
        raise reject(
            'expected a JSON object with a "signals" array of [samples, channels] numbers',
            "no_signals",
        )
    raw = {META_ALIASES.get(k.strip().lower(), k): v for k, v in doc.items() if isinstance(k, str)}
    fs = _stated_rate(raw, '"sampling_rate_hz"')
    what = '"signals"'
    if span is not None and doc["signals"] == _PLACEHOLDER_VALUE:
        shape = span.shape(data)
        rows, cols = check_shape(shape, what)
        names = lead_names(raw["leads"], cols, "the JSON") if "leads" in raw else None
        keep, prepared = select(names, cols, limits)
        # The other fields as Python objects: up to ~30 bytes per byte of JSON.
        plan = _Plan(rows, cols, len(keep), prepared, fs, DECODE_BYTES + 30 * len(rest))
        check_memory(plan, len(data), limits)
        table = _Table(cols, keep, np.ones(len(keep)), gaps=False)
        try:
            signal, _ = _parse_table(span.lines(data), table, rows)
        except _BadLine as bad:
            raise _bad_signals(bad) from bad
        if len(signal) != rows:  # an empty row ("[]") among the others
            raise _bad_signals(None)
    else:  # "signals" given twice, or not an array: small, the json module parsed it
        try:
            array = np.asarray(raw["signals"], dtype=np.float64)
        except (ValueError, TypeError) as e:
            raise _bad_signals(None) from e
        shape = array.shape
        rows, cols = check_shape(shape, what)
        names = lead_names(raw["leads"], cols, "the JSON") if "leads" in raw else None
        keep, _ = select(names, cols, limits)
        with np.errstate(over="ignore"):
            signal = array.reshape(rows, cols)[:, keep].astype(np.float32)
    meta = _text_meta(raw, "the JSON field")
    bare = set(doc) == {"signals"}
    return _recording(signal, fs, names, keep, "json", metadata=meta, stored_shape=shape, bare=bare)


def _bad_signals(bad: _BadLine | None) -> RejectedFile:
    where = f"row {bad.line} of " if bad is not None else ""
    if bad is not None and bad.column is not None:
        where = f"row {bad.line}, value {bad.column} of "
    return reject(
        f'{where}"signals" is not a [samples, channels] array of numbers: every row the '
        "same length, numbers or null only (no strings or nested objects)",
        "bad_signals",
    )


def _json_fields(rest: bytes, data: bytes, span: _Span | None) -> Any:
    """The document with "signals" stood in for, parsed; errors located in ``data``."""
    try:
        text = rest.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise reject("the file is not UTF-8 text, so it cannot be JSON", "not_utf8") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        line, column = e.lineno, e.colno
        if span is not None:  # after the array: count its lines and columns back in
            cut = text.index(_PLACEHOLDER.decode()) + len(_PLACEHOLDER)
            if e.pos >= cut:
                line += data.count(b"\n", span.start, span.end)
                if text.count("\n", cut, e.pos) == 0:  # on the line where the array ends
                    column = e.pos - cut + span.end - data.rfind(b"\n", 0, span.end)
        hint = " (the file ends early: was the upload cut short?)" if e.pos >= len(text) - 1 else ""
        raise reject(
            f"not valid JSON: {e.msg} at line {line}, column {column}{hint}", "bad_json"
        ) from e


@dataclass(frozen=True)
class _Span:
    """The "signals" array in the bytes: [start, end), its depth and what it holds."""

    start: int
    end: int
    depth: int  # 1: [..], 2: [[..]], 3: [[[..]]]
    rows: int  # innermost arrays
    values: int  # numbers (or nulls)

    def shape(self, data: bytes) -> tuple[int, ...]:
        if self.depth == 1:
            return (self.values,)
        if self.depth > 3:
            return (0,) * self.depth  # refused by check_shape for its dimensions
        if self.rows == 0 or self.values % self.rows:
            raise _bad_signals(None)
        cols = self.values // self.rows
        if self.depth == 2:
            return (self.rows, cols)
        windows, rows = self._windows(data)
        return (windows, rows, cols)

    def _windows(self, data: bytes) -> tuple[int, int]:
        """(windows, rows in each) of a 3-deep array, checked equal a chunk at a time."""
        windows, rows, last_end, each = 0, 0, 0, -1
        for _, _, closes, depth in _bracket_chunks(data, self.start, self.end):
            row_close = closes & (depth == 2)
            ends = np.cumsum(row_close)[np.flatnonzero(closes & (depth == 1))] + rows
            sizes = np.diff(ends, prepend=last_end)
            if sizes.size:
                each = int(sizes[0]) if each < 0 else each
                if (sizes != each).any():
                    raise _bad_signals(None)
                windows, last_end = windows + sizes.size, int(ends[-1])
            rows += int(row_close.sum())
        if windows == 0 or each * windows != self.rows:
            raise _bad_signals(None)
        return windows, each

    def lines(self, data: bytes) -> Iterator[bytes]:
        """The array as text with one row per line: brackets and the commas between rows
        become spaces, each innermost closing bracket a newline."""
        for buf, opens, closes, depth in _bracket_chunks(data, self.start, self.end):
            out = buf.copy()
            out[(buf == 9) | (buf == 10) | (buf == 13)] = 32
            out[opens | closes | ((buf == 44) & (depth < self.depth))] = 32
            out[closes & (depth == self.depth - 1)] = 10
            yield out.tobytes()


def _bracket_chunks(
    data: bytes, start: int, end: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(bytes, '[' mask, ']' mask, depth after each byte) of data[start:end], by chunks."""
    carry = 0
    for i in range(start, end, CHUNK_BYTES):
        buf = np.frombuffer(data, np.uint8, min(CHUNK_BYTES, end - i), i)
        opens, closes = buf == 91, buf == 93
        depth = np.cumsum(opens.astype(np.int32) - closes, dtype=np.int32) + carry
        carry = int(depth[-1])
        yield buf, opens, closes, depth


def _find_signals(data: bytes) -> _Span | None:
    """The "signals" array: the first array of numbers under that key that leaves the rest
    of the document small (a nested "signals" may come first), else the largest seen."""
    chosen, pos = None, 0
    for _ in range(MAX_SIGNALS_KEYS):
        found = _SIGNALS.search(data, pos)
        if found is None:
            break
        span = _signals_span(data, found.end() - 1)
        if span is None:
            pos = found.end()
            continue
        if len(data) - (span.end - span.start) <= MAX_JSON_FIELDS_BYTES:
            return span
        if chosen is None or span.end - span.start > chosen.end - chosen.start:
            chosen = span
        pos = span.end
    return chosen


def _signals_span(data: bytes, start: int) -> _Span | None:
    """Where the array that starts at ``start`` ends, and its structure, checked without
    building it; None when it holds strings or objects, RejectedFile when it is malformed
    or never ends."""
    max_depth, end = 0, -1
    closes_at = np.zeros(66, np.int64)  # closing brackets by the depth they return to
    commas_at = np.zeros(66, np.int64)
    stray_at = np.zeros(66, np.int64)  # bytes other than brackets, commas, blanks, by depth
    for chunk_start, (buf, _, closes, depth) in zip(
        range(start, len(data), CHUNK_BYTES), _bracket_chunks(data, start, len(data)), strict=True
    ):
        zero = np.flatnonzero(depth == 0)
        if zero.size:  # the array ends in this chunk
            n = int(zero[0]) + 1
            buf, closes, depth = buf[:n], closes[:n], depth[:n]
            end = chunk_start + n
        if (buf == 34).any() or (buf == 123).any():  # a string or an object inside
            return None
        max_depth = max(max_depth, int(depth.max()))
        if max_depth > 64:
            raise _bad_signals(None)
        closes_at += np.bincount(depth[closes], minlength=66)[:66]
        commas_at += np.bincount(depth[buf == 44], minlength=66)[:66]
        blank = (buf == 32) | (buf == 9) | (buf == 10) | (buf == 13)
        other = ~(blank | (buf == 91) | (buf == 93) | (buf == 44))
        stray_at += np.bincount(depth[other], minlength=66)[:66]
        if end >= 0:
            break
    if end < 0:
        raise reject(
            'not valid JSON: the "signals" array is never closed (the file ends early: was '
            "the upload cut short?)",
            "bad_json",
        )
    rows = int(closes_at[max_depth - 1]) if max_depth > 1 else 1
    values = int(commas_at[max_depth]) + rows if stray_at[max_depth] else 0
    # Numbers outside the innermost arrays, or separators that do not separate rows.
    if stray_at[:max_depth].any() or (max_depth > 1 and commas_at[:max_depth].sum() != rows - 1):
        raise _bad_signals(None)
    return _Span(start, end, max_depth, rows, values)


# -- CSV -----------------------------------------------------------------------------------

_UNIT = re.compile(r"^(?P<base>.*?)(?:\s*[\(\[](?P<u1>[^\)\]]*)[\)\]]|_(?P<u2>[a-zµμ]+))$", re.I)
VOLT_UNITS = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}
TIME_UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "seconds": 1.0, "ms": 1e-3, "us": 1e-6}
TIME_NAMES = {"time", "t", "times", "timestamp", "seconds", "sec", "elapsed", "elapsed_time"}
INDEX_NAMES = {"sample", "samples", "index", "idx", "n", "sample_no", "sample_number", "#"}


@dataclass
class _Column:
    name: str
    kind: str  # lead | time | index
    factor: float  # to mV for leads, to seconds for time


def _column(header: str, number: int) -> _Column:
    name = header.strip().strip('"').strip("'").strip()
    match = _UNIT.match(name)
    base, unit = name, ""
    if match:
        unit = (match.group("u1") or match.group("u2") or "").strip().lower()
        if unit in VOLT_UNITS or unit in TIME_UNITS or match.group("u1") is not None:
            base = match.group("base").strip()
        else:
            unit = ""
    low = base.lower()
    if low in TIME_NAMES or low.startswith("time_") or (not low and unit in TIME_UNITS):
        return _Column(base or "time", "time", TIME_UNITS.get(unit, 1.0))
    if low in {"time_ms", "ms"}:
        return _Column(base, "time", 1e-3)
    if low in INDEX_NAMES:
        return _Column(base, "index", 1.0)
    if unit and unit not in VOLT_UNITS:
        raise reject(
            f"column {number} of the header has a unit that is not a voltage; leads must be "
            "in mV, uV or V (e.g. II_mV, II (uV))",
            "bad_unit",
        )
    return _Column(base, "lead", VOLT_UNITS.get(unit, 1.0))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _line_text(data: bytes, start: int, end: int) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, start) + 1  # counted only when it is needed
        raise reject(f"line {lineno} is not UTF-8 text; export the CSV as UTF-8", "not_utf8") from e


def _comment(line: str, meta: dict[str, str]) -> None:
    """``# key: value`` (or ``# key = value``) into meta when the key is one we know."""
    key, sep, value = line.strip().lstrip("#").partition(":")
    if not sep:
        key, sep, value = line.strip().lstrip("#").partition("=")
    norm = re.sub(r"[^a-z0-9]+", "_", key.strip().lower()).strip("_")
    if sep and norm in META_ALIASES:
        meta[META_ALIASES[norm]] = value.strip()


def _comments_after(data: bytes, start: int, meta: dict[str, str]) -> None:
    """Comment lines among the rows (a '#' with only blanks before it on its line)."""
    at = data.find(b"#", start)
    while at >= 0:
        line_start = data.rfind(b"\n", 0, at) + 1
        line_end = data.find(b"\n", at)
        line_end = len(data) if line_end < 0 else line_end
        if not data[line_start:at].strip():
            _comment(_line_text(data, line_start, line_end), meta)
        at = data.find(b"#", line_end)


def read_csv(data: bytes, limits: Limits) -> Recording:
    """One column per lead, optional time/sample columns and ``# key: value`` comment lines."""
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    meta_raw: dict[str, str] = {}
    # The head, line by line (comments, blank lines, the header); the rows go to NumPy.
    lineno, header_at, end = 0, -1, pos
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        lineno += 1
        if end - pos > MAX_LINE_BYTES:
            raise reject(
                f"line {lineno} is longer than {MAX_LINE_BYTES // 1024} KB; expected a header "
                "and one row of numbers per line, one column per lead",
                "csv_ragged",
            )
        stripped = _line_text(data, pos, end).strip()
        if stripped.startswith("#"):
            _comment(stripped, meta_raw)
        elif stripped:
            header_at = pos
            break
        pos = end + 1
    if header_at < 0:
        raise reject("the CSV holds no header and no data rows", "csv_empty")
    header = _line_text(data, header_at, end).strip()
    after_header = end + 1
    if data.find(b"#", after_header) >= 0:
        _comments_after(data, after_header, meta_raw)

    delimiter = max((",", ";", "\t"), key=header.count)
    cells = next(csv.reader([header], delimiter=delimiter))
    if all(_is_number(c.strip()) for c in cells):
        names: list[str] | None = None  # no header: unnamed channels, data from this line
        columns = [_Column(f"column {j + 1}", "lead", 1.0) for j in range(len(cells))]
        body, first_lineno = header_at, lineno
    else:
        columns = [_column(c, j + 1) for j, c in enumerate(cells)]
        body, first_lineno = after_header, lineno + 1
        names = [c.name for c in columns if c.kind == "lead"]
    if sum(c.kind == "time" for c in columns) > 1:
        raise reject("the CSV has more than one time column", "bad_time")
    leads = [j for j, c in enumerate(columns) if c.kind == "lead"]
    if not leads:
        raise reject("the CSV has no lead columns (only time or sample columns)", "no_leads")
    if names is None and "leads" in meta_raw:
        names = lead_names(meta_raw["leads"].split(","), len(leads), "the comment line")
    fs = _stated_rate(meta_raw, "the comment line sampling_rate_hz")
    time_col = next((j for j, c in enumerate(columns) if c.kind == "time"), None)

    max_rows = data.count(b"\n", body) + 1  # lines left: an upper bound on the rows
    check_shape((max_rows, len(leads)), "the CSV")
    keep, prepared = select(names, len(leads), limits)
    per_row = 8 if time_col is not None else 0  # the time column, float64
    check_memory(
        _Plan(max_rows, len(leads), len(keep), prepared, fs, work_per_row=per_row),
        len(data),
        limits,
    )
    table = _Table(
        columns=len(columns),
        keep=[leads[i] for i in keep],
        factors=np.array([columns[leads[i]].factor for i in keep]),
        time=time_col,
        time_factor=columns[time_col].factor if time_col is not None else 1.0,
        delimiter=delimiter,
    )
    try:
        signal, times = _parse_table(_blocks(data, body, len(data)), table, max_rows)
    except _BadLine as bad:
        raise _bad_line(bad, first_lineno - 1, len(columns)) from bad
    if len(signal) == 0:
        raise reject("the CSV has a header but no data rows", "csv_no_rows")
    check_shape(signal.shape, "the CSV")

    if times is not None:
        from_time = _rate_from_time(times)
        if fs is not None and abs(fs - from_time) > 0.01 * fs:
            raise reject(  # the stated rate is not repeated: it is a value from the file
                f"the comment line's sampling rate and the time column ({from_time:g} Hz) "
                "disagree; fix one of them",
                "bad_rate",
            )
        fs = fs or from_time
    meta = _text_meta(meta_raw, "the comment")
    return _recording(signal, fs, names, keep, "csv", metadata=meta)


def _bad_line(bad: _BadLine, before: int, columns: int) -> RejectedFile:
    line = before + bad.line
    if bad.fields == -1:
        return reject(
            f"line {line} is longer than {MAX_LINE_BYTES // 1024} KB; expected one row of "
            "numbers per line, one column per lead",
            "csv_ragged",
        )
    if bad.fields is not None:
        return reject(
            f"line {line} has {bad.fields} fields but the header has {columns}", "csv_ragged"
        )
    if bad.column is None:
        return reject(f"line {line} is not UTF-8 text; export the CSV as UTF-8", "not_utf8")
    return reject(
        f"line {line}, column {bad.column}: the cell is not a number; every cell must be a "
        "number (in the column's unit, mV unless the header names another) or empty for a gap",
        "csv_not_a_number",
    )


def _rate_from_time(t: np.ndarray) -> float:
    """The rate of an evenly spaced time column (checked a chunk at a time: no copies)."""
    if t.size < 2:
        raise reject("the file holds a single row; a recording needs many samples", "too_short")
    fs = float((t.size - 1) / (t[-1] - t[0])) if t[-1] != t[0] else math.nan
    step = CHUNK_BYTES // 8
    for i in range(0, t.size, step):
        part = t[i : i + step + 1]
        if np.isnan(part).any():
            raise reject("the time column has empty cells; fill it or remove it", "bad_time")
        if not (np.diff(part) > 0).all():
            raise reject("the time column does not increase row by row", "bad_time")
        grid = t[0] + np.arange(i, i + part.size) / fs
        if np.abs(part - grid).max() > 0.5 / fs:
            raise reject(
                "the time column is not evenly spaced (missing rows or jitter); "
                "export the recording at a fixed sampling rate",
                "bad_time",
            )
    # 999.98 Hz from rounded time stamps is 1000 Hz.
    return float(round(fs)) if abs(fs - round(fs)) < 1e-3 * fs else fs
