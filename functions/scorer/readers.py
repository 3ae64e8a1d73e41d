"""Readers: the bytes of one uploaded object -> a :class:`Recording` (contract 2).

Formats come from the file extension; the content is sniffed only to say what a misnamed
file really holds. Every problem with the file raises :class:`RejectedFile` with a reason
the uploader can act on, including any error the decoders raise on corrupt bytes (a zlib
error in an .npz member, a tokenizer error in a damaged .npy header...): bytes can never
be a system fault. Nothing here is ever unpickled (``allow_pickle=False``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scorer.errors import RejectedFile

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
# An .npz is a zip: refuse members that would expand far beyond the upload size cap.
NPZ_EXPANSION_LIMIT = 8


@dataclass
class Recording:
    """One recording as read from a file, before any model-specific preparation."""

    signal: np.ndarray  # float32 [T, C], in mV; NaN where the file had gaps
    fs: float | None  # samples per second, None when the file does not say
    leads: list[str] | None  # as written in the file, None when unnamed
    format: str  # json | csv | npy | npz
    metadata: dict[str, str] = field(default_factory=dict)  # record_id, patient_ref, ...
    # The array's shape as stored ([2000, 3], [N, 2000, 3], [T, C]...) and whether the file
    # held nothing but it (an .npy, or JSON with "signals" alone): together they tell the
    # endpoint's own request format, the only one taken at the model's rate without a rate.
    stored_shape: tuple[int, ...] = ()
    bare: bool = False


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
    raise reject(f"unsupported file type '{ext}'; accepted: {accepted}", "unsupported_ext")


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


def read_recording(data: bytes, key: str) -> Recording:
    """Read one object's bytes as the format its key names."""
    fmt = file_format(key)
    if not data:
        raise reject("the file is empty (0 bytes); upload the recording again", "empty_file")
    found = sniff(data)
    expected = {"json": {"json", "text"}, "csv": {"text"}, "npy": {"npy"}, "npz": {"npz"}}[fmt]
    if found not in expected:
        raise _wrong_content(fmt, found)
    reader = {"json": read_json, "csv": read_csv, "npy": read_npy, "npz": read_npz}[fmt]
    try:
        return reader(data)
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


# -- shared checks -------------------------------------------------------------------------


def as_signal(array: np.ndarray, what: str) -> np.ndarray:
    """Check the array is numeric [T, C] (or [N, W, C] windows, joined) and make it float32."""
    if array.dtype.kind not in "iuf":
        kinds = {"b": "booleans", "c": "complex numbers", "O": "Python objects"}
        held = kinds.get(array.dtype.kind, f"{array.dtype} values")
        raise reject(f"{what} holds {held}; it must hold numbers (mV)", "not_numeric")
    if array.ndim == 3:
        # The endpoint's own batch format [N, 2000, C]: consecutive windows of one recording.
        array = array.reshape(-1, array.shape[2])
    if array.ndim == 1:
        raise reject(
            f"{what} is 1-D ({array.shape[0]} values); expected [samples, channels], "
            "one column per lead",
            "wrong_shape",
        )
    if array.ndim != 2:
        raise reject(
            f"{what} has {array.ndim} dimensions; expected [samples, channels]", "wrong_shape"
        )
    if array.size == 0:
        raise reject(f"{what} holds no samples", "no_samples")
    rows, cols = array.shape
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
    with np.errstate(over="ignore"):  # beyond float32 range becomes inf, rejected later
        return np.ascontiguousarray(array, dtype=np.float32)


def parse_rate(value: Any, where: str) -> float:
    if isinstance(value, bool):
        value = None
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = math.nan
    if not (math.isfinite(rate) and rate > 0):
        raise reject(
            f"{where} {value!r} is not a positive number of samples per second", "bad_rate"
        )
    return rate


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


# -- JSON ----------------------------------------------------------------------------------


def read_json(data: bytes) -> Recording:
    """``{"signals": [T, C] | [N, 2000, C], "sampling_rate_hz"?, "leads"?, ...}``."""
    try:
        text = data.decode("utf-8-sig")
        doc = json.loads(text)
    except UnicodeDecodeError as e:
        raise reject("the file is not UTF-8 text, so it cannot be JSON", "not_utf8") from e
    except json.JSONDecodeError as e:
        hint = " (the file ends early: was the upload cut short?)" if e.pos >= len(text) - 1 else ""
        raise reject(
            f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}{hint}", "bad_json"
        ) from e
    if not isinstance(doc, dict) or "signals" not in doc:
        raise reject(
            'expected a JSON object with a "signals" array of [samples, channels] numbers',
            "no_signals",
        )
    raw = {META_ALIASES.get(k.strip().lower(), k): v for k, v in doc.items() if isinstance(k, str)}
    try:
        array = np.asarray(raw["signals"], dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise reject(
            '"signals" must be a [samples, channels] array of numbers: every row the same '
            "length, no strings or nested objects",
            "bad_signals",
        ) from e
    signal = as_signal(array, '"signals"')
    fs = (
        parse_rate(raw["sampling_rate_hz"], '"sampling_rate_hz"')
        if "sampling_rate_hz" in raw
        else None
    )
    leads = lead_names(raw["leads"], signal.shape[1], "the JSON") if "leads" in raw else None
    meta = _text_meta(raw, "the JSON field")
    return Recording(signal, fs, leads, "json", meta, tuple(array.shape), set(doc) == {"signals"})


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


def _column(header: str) -> _Column:
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
        raise reject(f"column '{name}' has unit '{unit}'; leads must be in mV, uV or V", "bad_unit")
    return _Column(base, "lead", VOLT_UNITS.get(unit, 1.0))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_rows(body: str, first_lineno: int, delimiter: str, columns: list[_Column]) -> np.ndarray:
    """Parse the data rows; empty cells become NaN, anything else that is no number is named."""
    try:
        # Fast path: numpy's C parser for the common, clean file (no Python loop per row).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            return np.loadtxt(
                io.StringIO(body), delimiter=delimiter, dtype=np.float64, ndmin=2, comments="#"
            )
    except ValueError:
        pass
    rows = []
    for offset, line in enumerate(body.splitlines()):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        lineno = first_lineno + offset
        fields = next(csv.reader([line], delimiter=delimiter))
        if len(fields) != len(columns):
            raise reject(
                f"line {lineno} has {len(fields)} fields but the header has {len(columns)}",
                "csv_ragged",
            )
        row = []
        for j, cell in enumerate(fields):
            cell = cell.strip()
            if cell == "" or cell.lower() in {"nan", "na", "null"}:
                row.append(math.nan)
                continue
            try:
                row.append(float(cell))
            except ValueError as e:
                raise reject(
                    f"line {lineno}, column '{columns[j].name}': {cell[:20]!r} is not a number",
                    "csv_not_a_number",
                ) from e
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))


def _rate_from_time(t: np.ndarray) -> float:
    if np.isnan(t).any():
        raise reject("the time column has empty cells; fill it or remove it", "bad_time")
    steps = np.diff(t)
    if steps.size == 0:
        raise reject("the file holds a single row; a recording needs many samples", "too_short")
    if not (steps > 0).all():
        raise reject("the time column does not increase row by row", "bad_time")
    fs = float(steps.size / (t[-1] - t[0]))
    grid = t[0] + np.arange(t.size) / fs
    if np.abs(t - grid).max() > 0.5 / fs:
        raise reject(
            "the time column is not evenly spaced (missing rows or jitter); "
            "export the recording at a fixed sampling rate",
            "bad_time",
        )
    # 999.98 Hz from rounded time stamps is 1000 Hz.
    return float(round(fs)) if abs(fs - round(fs)) < 1e-3 * fs else fs


def _comment(line: str, meta: dict[str, str]) -> None:
    """``# key: value`` (or ``# key = value``) into meta when the key is one we know."""
    key, sep, value = line.strip().lstrip("#").partition(":")
    if not sep:
        key, sep, value = line.strip().lstrip("#").partition("=")
    norm = re.sub(r"[^a-z0-9]+", "_", key.strip().lower()).strip("_")
    if sep and norm in META_ALIASES:
        meta[META_ALIASES[norm]] = value.strip()


_COMMENT_LINE = re.compile(r"^[ \t]*#.*$", re.M)


def read_csv(data: bytes) -> Recording:
    """One column per lead, optional time/sample columns and ``# key: value`` comment lines."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise reject("the file is not UTF-8 text, so it cannot be CSV", "not_utf8") from e
    meta_raw: dict[str, str] = {}
    # Walk the head only (comments, blank lines, the header); the rows go to numpy in one piece.
    pos, lineno, header_at = 0, 0, -1
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        lineno += 1
        stripped = text[pos:end].strip()
        if stripped.startswith("#"):
            _comment(stripped, meta_raw)
        elif stripped:
            header_at = pos
            break
        pos = end + 1
    if header_at < 0:
        raise reject("the CSV holds no header and no data rows", "csv_empty")
    header = text[header_at:end]
    after_header = end + 1
    if "#" in text[after_header:]:
        for match in _COMMENT_LINE.finditer(text, after_header):
            _comment(match.group(0), meta_raw)

    delimiter = max((",", ";", "\t"), key=header.count)
    cells = next(csv.reader([header.strip()], delimiter=delimiter))
    if all(_is_number(c.strip()) for c in cells):
        names: list[str] | None = None  # no header: unnamed channels, data from this line
        columns = [_Column(f"column {j + 1}", "lead", 1.0) for j in range(len(cells))]
        body, first_lineno = text[header_at:], lineno
    else:
        columns = [_column(c) for c in cells]
        body, first_lineno = text[after_header:], lineno + 1
        names = [c.name for c in columns if c.kind == "lead"]
    if sum(c.kind == "time" for c in columns) > 1:
        raise reject("the CSV has more than one time column", "bad_time")

    table = _parse_rows(body, first_lineno, delimiter, columns)
    if table.size == 0:
        raise reject("the CSV has a header but no data rows", "csv_no_rows")
    if table.shape[1] != len(columns):
        raise reject(
            f"the rows have {table.shape[1]} fields but the header has {len(columns)}", "csv_ragged"
        )
    lead_idx = [j for j, c in enumerate(columns) if c.kind == "lead"]
    if not lead_idx:
        raise reject("the CSV has no lead columns (only time or sample columns)", "no_leads")
    signal = table[:, lead_idx]
    factors = np.array([columns[j].factor for j in lead_idx])
    if (factors != 1.0).any():
        signal = signal * factors

    fs = None
    time_idx = [j for j, c in enumerate(columns) if c.kind == "time"]
    if time_idx:
        fs = _rate_from_time(table[:, time_idx[0]] * columns[time_idx[0]].factor)
    if "sampling_rate_hz" in meta_raw:
        stated = parse_rate(meta_raw["sampling_rate_hz"], "the comment line sampling_rate_hz")
        if fs is not None and abs(stated - fs) > 0.01 * stated:
            raise reject(
                f"the comment line says {stated:g} Hz but the time column says {fs:g} Hz; "
                "fix one of them",
                "bad_rate",
            )
        fs = stated
    if names is None and "leads" in meta_raw:
        names = lead_names(
            [n for n in meta_raw["leads"].split(",")], len(lead_idx), "the comment line"
        )
    return Recording(
        as_signal(signal, "the CSV"), fs, names, "csv", _text_meta(meta_raw, "the comment")
    )


# -- NPY / NPZ -----------------------------------------------------------------------------


def _npy_header(data: bytes) -> tuple[tuple[int, ...], np.dtype, int] | None:
    """(shape, dtype, header length) of an .npy, read without loading it (None if unreadable)."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            return None
    except Exception:  # a damaged header: np.load below says what is wrong
        return None
    return tuple(int(n) for n in shape), dtype, stream.tell()


def read_npy(data: bytes) -> Recording:
    """A [T, C] (or [N, W, C]) numeric array; no metadata travels in an .npy."""
    header = _npy_header(data)
    if header is not None and header[1].hasobject:
        raise reject(
            "the .npy array holds Python objects, which are never unpickled; "
            "save a numeric array, e.g. numpy.save(path, signal.astype('float32'))",
            "npy_object",
        )
    if header is not None:
        # The header's shape must account for the bytes exactly: a damaged header could
        # otherwise make np.load allocate far more than the file holds.
        shape, dtype, offset = header
        if math.prod(shape) * dtype.itemsize != len(data) - offset:
            raise reject("the .npy file is truncated or corrupt; save it again", "bad_npy")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise reject("the .npy file is truncated or corrupt; save it again", "bad_npy") from e
    array = np.asarray(array)
    signal = as_signal(array, "the .npy array")
    return Recording(signal, None, None, "npy", {}, tuple(array.shape), bare=True)


SIGNAL_NAMES = ("signals", "signal", "ecg", "data", "x")


def read_npz(data: bytes) -> Recording:
    """Arrays ``signals`` [T, C], optional ``sampling_rate_hz``/``fs`` and ``leads`` (str)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as e:
        raise reject("the .npz archive is truncated or corrupt; save it again", "bad_npz") from e
    if not infos:
        raise reject("the .npz archive holds no arrays; save the signal in it", "npz_empty")
    expanded = sum(i.file_size for i in infos)
    if expanded > NPZ_EXPANSION_LIMIT * max(len(data), 1_000_000):
        raise reject(f"the .npz expands to {expanded / 1e6:.0f} MB; that is too large", "too_large")
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise reject("the .npz archive is truncated or corrupt; save it again", "bad_npz") from e

    def member(name: str) -> np.ndarray:
        try:
            return np.asarray(npz[name])
        except ValueError as e:
            raise reject(
                f"the .npz array '{name}' holds Python objects, which are never unpickled; "
                "save numbers as numeric arrays and names as numpy string arrays",
                "npz_object",
            ) from e
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise reject(f"the .npz array '{name}' is corrupt", "bad_npz") from e

    with npz:
        files = {name.lower(): name for name in npz.files}
        chosen = next((files[n] for n in SIGNAL_NAMES if n in files), None)
        if chosen is None:
            if len(files) != 1:
                raise reject(
                    f"the .npz holds arrays {sorted(npz.files)} but none is named 'signals'",
                    "npz_no_signals",
                )
            chosen = npz.files[0]
        stored = member(chosen)
        stored_shape = tuple(stored.shape)
        signal = as_signal(stored, f"the .npz array '{chosen}'")
        raw: dict[str, Any] = {}
        for low, name in files.items():
            key = META_ALIASES.get(low)
            if key is None or name == chosen:
                continue
            value = member(name)
            if key == "leads":
                if value.dtype.kind not in "US" or value.ndim != 1:
                    raise reject("the .npz array 'leads' must be a 1-D array of names", "bad_leads")
                raw[key] = [str(v) for v in value.tolist()]
            elif value.size == 1:
                raw[key] = value.reshape(()).item()
            else:
                raise reject(f"the .npz array '{name}' must hold one value", "bad_metadata")
    fs = (
        parse_rate(raw["sampling_rate_hz"], "the .npz sampling_rate_hz")
        if "sampling_rate_hz" in raw
        else None
    )
    leads = lead_names(raw["leads"], signal.shape[1], "the .npz") if "leads" in raw else None
    meta = _text_meta(raw, "the .npz array")
    return Recording(signal, fs, leads, "npz", meta, stored_shape)
