"""A corpus of files the scorer must refuse, each with the reason code it must give and a
phrase the reason must hold (what a person needs to fix it)."""

from __future__ import annotations

import functools
import io
import json
import pickle
import zipfile
from dataclasses import dataclass

import numpy as np
from scorer_helpers import ecg_like


@dataclass
class BadFile:
    name: str
    data: bytes
    code: str
    phrase: str


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _npz_compressed(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _corrupt_member(data: bytes) -> bytes:
    """Flip bytes inside the deflated member: the zip is intact, zlib fails on the data."""
    damaged = bytearray(data)
    for i in range(200, 260):
        damaged[i] ^= 0xFF
    return bytes(damaged)


def npz_expanding(rows: int, columns: int, size: int = 0) -> bytes:
    """An .npz whose uint8 zeros deflate ~200x: a small upload that declares a huge array
    (a zip bomb), written a MiB at a time. With ``size``, a stored array of noise brings
    the file to about that many bytes."""
    buffer = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (rows, columns)}
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("signals.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            zeros, left = bytes(2**20), rows * columns
            while left:
                member.write(zeros[: min(left, len(zeros))])
                left -= min(left, len(zeros))
        if size:
            noise = np.random.default_rng(0).integers(0, 255, size - buffer.tell() - 4096)
            archive.writestr("noise.npy", _npy(noise.astype(np.uint8)), zipfile.ZIP_STORED)
    return buffer.getvalue()


def _csv(header: str, rows: np.ndarray, comments: str = "") -> bytes:
    lines = [comments + header] + [",".join(f"{v:.4f}" for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


@functools.cache  # the zip bomb takes a second to deflate
def bad_files(max_file_bytes: int) -> list[BadFile]:
    good = ecg_like(12, 200)  # I, II, V2 at 200 Hz, 12 s: fine on its own
    good_json = json.dumps({"signals": good.tolist(), "sampling_rate_hz": 200}).encode()
    timed = np.column_stack([np.arange(len(good)) / 200, good])
    with_gap = timed.copy()
    with_gap[400:700, 2] = np.nan  # 1.5 s gap in lead II
    gap_csv = "time_s,I,II,V2\n" + "\n".join(
        ",".join("" if np.isnan(v) else f"{v:.4f}" for v in row) for row in with_gap
    )
    strings_csv = _csv("time_s,I,II,V2\n", timed).decode().splitlines()
    strings_csv[7] = "0.030,0.1,abc,0.2"
    ragged_csv = _csv("time_s,I,II,V2\n", timed).decode().splitlines()
    ragged_csv[9] = "0.040,0.1,0.2"
    jitter = timed.copy()
    jitter[500:, 0] += 0.5  # half a second missing from the time column
    empty_zip = io.BytesIO()
    with zipfile.ZipFile(empty_zip, "w"):
        pass
    objects = np.empty(2, dtype=object)
    objects[:] = [good[:10], "x"]
    huge = np.zeros((max_file_bytes // 12 + 10, 3), dtype=np.float32)
    return [
        BadFile("truncated.json", good_json[: len(good_json) // 2], "bad_json", "ends early"),
        BadFile("not_json.json", b"hello, this is not json", "bad_json", "not valid json"),
        BadFile("no_signals.json", b'{"data": [[1, 2, 3]]}', "no_signals", '"signals"'),
        BadFile("ragged.json", b'{"signals": [[1, 2, 3], [1, 2]]}', "bad_signals", "same"),
        BadFile("strings.json", b'{"signals": [["a", "b", "c"]]}', "bad_signals", "no strings"),
        BadFile(
            "one_d.json",
            json.dumps({"signals": good[:, 0].tolist()}).encode(),
            "wrong_shape",
            "1-d",
        ),
        BadFile(
            "transposed.json",
            json.dumps({"signals": good.T.tolist()}).encode(),
            "transposed",
            "transpose",
        ),
        BadFile(
            "too_short.json",
            json.dumps({"signals": good[:1000].tolist(), "sampling_rate_hz": 200}).encode(),
            "too_short",
            "at least 10 s",
        ),
        BadFile(
            "nan_only.json",
            json.dumps({"signals": [[None, None, None]] * 2400, "fs": 200}).encode(),
            "nan_only",
            "no values",
        ),
        BadFile(
            "flat.json",
            json.dumps({"signals": [[0.0, 0.0, 0.0]] * 2400, "fs": 200}).encode(),
            "poor_signal_quality",
            "are flat",
        ),
        BadFile(
            "bad_rate.json",
            json.dumps({"signals": good.tolist(), "sampling_rate_hz": -5}).encode(),
            "bad_rate",
            "positive",
        ),
        BadFile(
            "bad_time.json",
            json.dumps({"signals": good.tolist(), "recorded_at": "yesterday"}).encode(),
            "bad_recorded_at",
            "iso 8601",
        ),
        BadFile("zero_bytes.csv", b"", "empty_file", "empty"),
        BadFile("header_only.csv", b"time_s,I,II,V2\n", "csv_no_rows", "no data rows"),
        BadFile("comments_only.csv", b"# sampling_rate_hz: 500\n", "csv_empty", "no header"),
        BadFile(
            "strings.csv", ("\n".join(strings_csv) + "\n").encode(), "csv_not_a_number", "line 8"
        ),
        BadFile("ragged.csv", ("\n".join(ragged_csv) + "\n").encode(), "csv_ragged", "line 10"),
        BadFile(
            "missing_leads.csv", _csv("time_s,III,aVR,V5\n", timed), "missing_leads", "model needs"
        ),
        BadFile("no_rate.csv", _csv("I,II,V2\n", good), "no_rate", "sampling rate"),
        BadFile("long_gap.csv", gap_csv.encode(), "poor_signal_quality", "gap of missing samples"),
        BadFile("uneven_time.csv", _csv("time_s,I,II,V2\n", jitter), "bad_time", "evenly"),
        BadFile(
            "inf.csv",
            _csv("time_s,I,II,V2\n", np.where(timed == timed[50, 1], np.inf, timed)),
            "infinite",
            "infinite",
        ),
        BadFile("binary_junk.csv", bytes(range(256)) * 8, "wrong_content", "binary"),
        BadFile(
            "npy_named.csv", _npy(good.astype(np.float32)), "wrong_content", "rename it to .npy"
        ),
        BadFile("json_named.npy", good_json, "wrong_content", "rename it to .json"),
        BadFile("pickled.npy", pickle.dumps(good), "wrong_content", "pickle"),
        BadFile("objects.npy", _npy(objects, allow_pickle=True), "npy_object", "python objects"),
        BadFile("one_d.npy", _npy(good[:, 0]), "wrong_shape", "1-d"),
        BadFile("truncated.npy", _npy(good)[:1000], "bad_npy", "truncated"),
        BadFile("complex.npy", _npy(good.astype(np.complex64)), "not_numeric", "complex"),
        BadFile(
            "five_channels.npz",
            _npz(signals=np.tile(good, (1, 2))[:, :5], fs=np.array(200)),
            "unnamed_channels",
            "name the leads",
        ),
        # Not the endpoint's own format ([2000, 3] / [N, 2000, 3]) and no rate: never guessed.
        BadFile("no_rate.npy", _npy(good), "no_rate", "sampling-rate-hz"),
        BadFile("no_rate.npz", _npz(signals=good), "no_rate", "array 'sampling_rate_hz'"),
        BadFile(
            "no_rate.json",
            json.dumps({"signals": good.tolist(), "leads": ["I", "II", "V2"]}).encode(),
            "no_rate",
            '"sampling_rate_hz"',
        ),
        BadFile(
            "counts.json",
            json.dumps({"signals": (good * 1e7).tolist(), "sampling_rate_hz": 200}).encode(),
            "not_mv",
            "must be in mv",
        ),
        BadFile(
            "corrupt.npz",
            _corrupt_member(_npz_compressed(signals=good)),
            "bad_npz",
            "corrupt",
        ),
        BadFile("too_large.npy", _npy(huge), "too_large", "limit"),
        # 400 MB as float32 from a 0.5 MB upload: refused from the member's header, unread.
        BadFile("expanding.npz", npz_expanding(34_000_000, 3), "too_large_in_memory", "limit"),
        BadFile("empty.npz", empty_zip.getvalue(), "npz_empty", "no arrays"),
        BadFile("unnamed.npz", _npz(a=good, b=good), "npz_no_signals", "'signals'"),
        BadFile(
            "object_leads.npz",
            _npz(signals=good, leads=np.array(["I", "II", "V2"], dtype=object)),
            "npz_object",
            "python objects",
        ),
        BadFile("truncated.npz", _npz(signals=good)[:300], "bad_npz", "corrupt"),
        # Read header first by the Lambda's intake (scorer.records), not by readers.
        BadFile("record.hea", b"100 2 360 650000\n", "bad_wfdb_header", "0 signal lines follow"),
        BadFile("record.edf", b"0       " + b" " * 300, "bad_edf_header", "number of signals"),
        BadFile("notes.txt", b"I,II,V2\n1,2,3\n", "unsupported_ext", "accepted"),
        BadFile("no_extension", good_json, "no_ext", "extension"),
        BadFile("upload.csv.gz", b"\x1f\x8b\x08\x00", "unsupported_ext", ".gz"),
    ]
