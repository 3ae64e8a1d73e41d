"""NumPy files -> a Recording: an .npy array, or the arrays of an .npz archive, read a chunk
at a time straight into float32, never unpickled (``allow_pickle=False``).

The header says the shape and dtype before any value is read, so the memory check comes
first; only the model's leads are kept when an .npz names its leads.
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from scorer import decode_memory, read_checks  # CHUNK_BYTES, looked up when used: tests shrink it
from scorer.decode_memory import DecodePlan, Limits, check_memory
from scorer.errors import RejectedFile
from scorer.recording import Recording

MAX_NPZ_MEMBERS = 1024  # each zip entry costs memory to list, before any is read
MAX_META_MEMBER_BYTES = 64 * 1024  # an .npz metadata array holds one value or lead names


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
            step = max(1, decode_memory.CHUNK_BYTES // (cols * item))
            for r0 in range(0, rows, step):
                block = take(min(step, rows - r0) * cols).reshape(-1, cols)
                out[r0 : r0 + len(block)] = block if every else block[:, keep]
        elif len(shape) == 2:  # column after column
            step = max(1, decode_memory.CHUNK_BYTES // item)
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


def _array_plan(
    header: _ArrayHeader, keep: list[int], prepared: int, fs: float | None
) -> DecodePlan:
    rows, cols = math.prod(header.shape[:-1]), header.shape[-1]
    # [N, W, C] in Fortran order is read a whole channel at a time, and reordered (a copy).
    whole_channel = header.fortran and len(header.shape) == 3
    per_row = 2 * header.dtype.itemsize if whole_channel else 0
    return DecodePlan(rows, cols, len(keep), prepared, fs, work_per_row=per_row)


def read_npy(data: bytes, limits: Limits) -> Recording:
    """A [T, C] (or [N, W, C]) numeric array; no metadata travels in an .npy."""
    stream = io.BytesIO(data)
    header = _array_header(stream)
    if header is None:
        raise RejectedFile("the .npy file is truncated or corrupt; save it again", "bad_npy")
    if header.dtype.hasobject:
        raise RejectedFile(
            "the .npy array holds Python objects, which are never unpickled; "
            "save a numeric array, e.g. numpy.save(path, signal.astype('float32'))",
            "npy_object",
        )
    # The header's shape must account for the bytes exactly: a damaged header could
    # otherwise claim far more than the file holds.
    if math.prod(header.shape) * header.dtype.itemsize != len(data) - header.offset:
        raise RejectedFile("the .npy file is truncated or corrupt; save it again", "bad_npy")
    what = "the .npy array"
    read_checks.check_dtype(header.dtype, what)
    _, cols = read_checks.check_shape(header.shape, what)
    keep, prepared = read_checks.select(None, cols, limits)
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
        raise RejectedFile(
            f"the .npz archive holds more than {MAX_NPZ_MEMBERS} entries; save only the "
            "signal and its metadata (numpy.savez(path, signals=x, sampling_rate_hz=500))",
            "bad_npz",
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise RejectedFile(
            "the .npz archive is truncated or corrupt; save it again", "bad_npz"
        ) from e
    with archive:
        infos = {}
        for info in archive.infolist():  # np.load names a member without its .npy
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            infos[name.lower()] = info
        if not infos:
            raise RejectedFile(
                "the .npz archive holds no arrays; save the signal in it", "npz_empty"
            )
        for info in infos.values():
            if info.compress_type not in {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}:
                # bzip2/lzma members decompress without a bound per read; numpy never writes them.
                raise RejectedFile(
                    "the .npz archive uses a compression numpy does not write; save it with "
                    "numpy.savez or numpy.savez_compressed",
                    "bad_npz",
                )
        chosen = next((n for n in SIGNAL_NAMES if n in infos), None)
        if chosen is None:
            if len(infos) != 1:
                raise RejectedFile(
                    f"the .npz holds {len(infos)} arrays but none is named 'signals' (or "
                    f"{', '.join(SIGNAL_NAMES[1:])}); name the signal array 'signals'",
                    "npz_no_signals",
                )
            chosen = next(iter(infos))
        raw: dict[str, Any] = {}
        for low, info in infos.items():
            key = read_checks.META_ALIASES.get(low)
            if key is not None and low != chosen:
                raw[key] = _npz_meta(archive, info, low)
        fs = read_checks.stated_rate(raw, "the .npz sampling_rate_hz")
        what = "the .npz signal array"
        with archive.open(infos[chosen]) as stream:
            header = _array_header(stream)
            if header is None:
                raise RejectedFile(
                    f"{what} is corrupt or not a NumPy array; save it again with numpy.savez",
                    "bad_npz",
                )
            if header.dtype.hasobject:
                raise RejectedFile(
                    f"{what} holds Python objects, which are never unpickled; save numbers "
                    "as numeric arrays and names as numpy string arrays",
                    "npz_object",
                )
            size = math.prod(header.shape) * header.dtype.itemsize
            if size != infos[chosen].file_size - header.offset:
                raise RejectedFile(
                    "the .npz archive is truncated or corrupt; save it again", "bad_npz"
                )
            read_checks.check_dtype(header.dtype, what)
            _, cols = read_checks.check_shape(header.shape, what)
            names = (
                read_checks.lead_names(raw["leads"], cols, "the .npz") if "leads" in raw else None
            )
            keep, prepared = read_checks.select(names, cols, limits)
            check_memory(_array_plan(header, keep, prepared, fs), len(data), limits)
            signal = _read_values(stream, header, keep)
    meta = read_checks.text_meta(raw, "the .npz array")
    return read_checks.build_recording(
        signal, fs, names, keep, "npz", metadata=meta, stored_shape=header.shape
    )


def _npz_meta(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Any:
    """One metadata member: a single value, or a 1-D array of lead names."""
    if info.file_size > MAX_META_MEMBER_BYTES:
        raise RejectedFile(
            f"the .npz array '{name}' holds {info.file_size:,} bytes; a metadata array "
            "holds one value (or the lead names)",
            "bad_metadata",
        )
    content = archive.read(info)  # zipfile stops at the declared size
    if not content.startswith(b"\x93NUMPY"):
        raise RejectedFile(f"the .npz array '{name}' is not a NumPy array", "bad_npz")
    try:
        value = np.load(io.BytesIO(content), allow_pickle=False)
    except ValueError as e:
        raise RejectedFile(
            f"the .npz array '{name}' holds Python objects, which are never unpickled; "
            "save numbers as numeric arrays and names as numpy string arrays",
            "npz_object",
        ) from e
    if name == "leads":
        if value.dtype.kind not in "US" or value.ndim != 1:
            raise RejectedFile("the .npz array 'leads' must be a 1-D array of names", "bad_leads")
        return [str(v) for v in value.tolist()]
    if value.size != 1:
        raise RejectedFile(f"the .npz array '{name}' must hold one value", "bad_metadata")
    return value.reshape(()).item()
