"""Readers: every accepted format gives the same Recording; every bad file a clear reason."""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import resource
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from bad_files import bad_files, npz_expanding
from scorer import decode_memory, read_arrays
from scorer import prepare as prepare_module
from scorer.errors import RejectedFile
from scorer.prepare import prepare, prepare_bytes
from scorer.readers import check_size, read_recording, sniff
from scorer.recording import Recording
from scorer_helpers import ENV, ecg_like

MAX_BYTES = int(ENV["MAX_FILE_BYTES"])
SIGNAL = ecg_like(12, 500)
LEADS = ("I", "II", "V2")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_seed_json_single_window_is_read_at_the_model_rate() -> None:
    seed = ecg_like(10, 200)
    recording = read_recording(json.dumps({"signals": seed.tolist()}).encode(), "a/b.json")
    assert recording.signal.shape == (2000, 3)
    assert recording.signal.dtype == np.float32
    assert recording.fs is None and recording.leads is None  # prepare assumes the model's rate


def test_seed_json_batch_of_windows_becomes_one_recording() -> None:
    windows = ecg_like(30, 200).reshape(3, 2000, 3)
    recording = read_recording(json.dumps({"signals": windows.tolist()}).encode(), "x.json")
    np.testing.assert_allclose(recording.signal, windows.reshape(-1, 3), atol=1e-6)


def test_rich_json_carries_rate_leads_and_metadata() -> None:
    doc = {
        "signals": SIGNAL[:, ::-1].tolist(),
        "sampling_rate_hz": 500,
        "leads": ["V2", "II", "I"],
        "recorded_at": "2026-11-26T08:00:00Z",
        "record_id": "R-1",
        "patient_ref": "P-42",
        "device": "holter-9",
        "firmware": "ignored",
    }
    recording = read_recording(json.dumps(doc).encode(), "x.json")
    assert recording.fs == 500
    assert recording.leads == ["V2", "II", "I"]
    assert recording.metadata == {
        "recorded_at": "2026-11-26T08:00:00Z",
        "record_id": "R-1",
        "patient_ref": "P-42",
        "device": "holter-9",
    }


def test_csv_with_units_time_column_and_comments() -> None:
    t = np.arange(len(SIGNAL)) / 500
    rows = "\n".join(
        f"{ti:.4f},{a * 1000:.1f},{b:.4f},{c:.4f}" for ti, (a, b, c) in zip(t, SIGNAL, strict=True)
    )
    text = "# record_id: R-7\n# patient_ref: P-1\n\ntime (s),I_uV,ii (mV),V2 [mV]\n" + rows
    recording = read_recording(text.encode(), "x.csv")
    assert recording.fs == 500  # from the time column
    assert recording.leads == ["I", "ii", "V2"]
    assert recording.metadata == {"record_id": "R-7", "patient_ref": "P-1"}
    np.testing.assert_allclose(recording.signal, SIGNAL, atol=1e-3)  # uV became mV


def test_csv_rate_from_comment_and_semicolons() -> None:
    rows = "\n".join(";".join(f"{v:.4f}" for v in row) for row in SIGNAL)
    recording = read_recording(f"# Sampling rate: 500\nI;II;V2\n{rows}".encode(), "x.csv")
    assert recording.fs == 500 and recording.leads == ["I", "II", "V2"]


def test_csv_comment_and_time_column_must_agree() -> None:
    t = np.arange(len(SIGNAL)) / 500
    rows = "\n".join(
        ",".join(f"{v:.4f}" for v in (ti, *row)) for ti, row in zip(t, SIGNAL, strict=True)
    )
    with pytest.raises(RejectedFile, match=r"the time column \(500 Hz\) disagree"):
        read_recording(
            f"# fs: 250\ntime_ms,I,II,V2\n{rows}".encode().replace(b"time_ms", b"t"), "x.csv"
        )


def test_csv_empty_cells_become_nan() -> None:
    text = "time_s,I,II,V2\n0.000,1,2,3\n0.005,,2,3\n0.010,1,2,3\n"
    recording = read_recording(text.encode(), "x.csv")
    assert np.isnan(recording.signal[1, 0]) and recording.fs == 200


def test_npy_and_npz() -> None:
    npy = read_recording(_npy(SIGNAL.astype(np.float64)), "x.npy")
    assert npy.signal.shape == SIGNAL.shape and npy.fs is None and npy.leads is None
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        signals=SIGNAL,
        fs=np.array(500.0),
        leads=np.array(["I", "II", "V2"]),
        site=np.array("s1"),
    )
    npz = read_recording(buffer.getvalue(), "x.npz")
    assert npz.fs == 500 and npz.leads == ["I", "II", "V2"] and npz.metadata == {"site": "s1"}


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"\x93NUMPY\x01\x00", "npy"),
        (b"PK\x03\x04rest", "npz"),
        (b"\x80\x04\x95", "pickle"),
        (b'  {"signals": []}', "json"),
        (b"I,II,V2\n", "text"),
        (bytes(range(256)), "binary"),
    ],
)
def test_sniff(data: bytes, looks_like: str) -> None:
    assert sniff(data) == looks_like


# recorded_at is checked by the handler, where file and S3 metadata meet (test_handler).
# What readers decode (recorded_at is checked by the Lambda's intake; WFDB and EDF are read
# header first by scorer.records).
FILE_LEVEL = [
    bad
    for bad in bad_files(MAX_BYTES)
    if bad.code != "bad_recorded_at" and not bad.name.endswith((".hea", ".edf"))
]


@pytest.mark.parametrize("bad", FILE_LEVEL, ids=lambda b: b.name)
def test_bad_file_is_refused_with_an_actionable_reason(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RejectedFile) as caught:
        check_size(len(bad.data), MAX_BYTES)
        recording = read_recording(bad.data, f"incoming/s/d/{bad.name}")
        prepare(recording, ("I", "II", "V2"), 200.0, 2000)
    assert caught.value.code == bad.code, caught.value.reason
    assert bad.phrase.lower() in caught.value.reason.lower()


def test_real_csv_files_read(shared_ecg) -> None:  # type: ignore[no-untyped-def]
    found = {}
    for path in sorted((shared_ecg / "csv").glob("*.csv")):
        recording = read_recording(path.read_bytes(), path.name)
        found[path.name] = (recording.signal.shape, recording.fs, recording.leads)
    assert found == {
        "mimicdb_041s_III_I_V_16s_500hz.csv": ((8000, 3), 500.0, ["III", "I", "V"]),
        "ptbdb_s0010_re_i_ii_v2_38s_1000hz.csv": ((38400, 3), 1000.0, ["i", "ii", "v2"]),
        "ptbdb_s0010_re_vxvyvz_10s_1000hz.csv": ((10000, 3), 1000.0, ["vx", "vy", "vz"]),
    }


def _valid_files() -> dict[str, bytes]:
    signal = ecg_like(12, 250).astype(np.float32)
    compressed, stored = io.BytesIO(), io.BytesIO()
    np.savez_compressed(compressed, signals=signal, fs=np.array(250.0), leads=np.array(LEADS))
    np.savez(stored, signals=signal, fs=np.array(250.0))
    rows = "\n".join(f"{i / 250:.4f},{a:.4f},{b:.4f},{c:.4f}" for i, (a, b, c) in enumerate(signal))
    return {
        "x.npy": _npy(signal),
        "compressed.npz": compressed.getvalue(),
        "stored.npz": stored.getvalue(),
        "x.json": json.dumps(
            {"signals": signal.round(4).tolist(), "sampling_rate_hz": 250, "leads": list(LEADS)}
        ).encode(),
        "x.csv": f"# record_id: r1\ntime_s,I_mV,II_mV,V2_mV\n{rows}\n".encode(),
    }


@pytest.mark.parametrize("name", ["x.npy", "compressed.npz", "stored.npz", "x.json", "x.csv"])
def test_damaged_bytes_are_a_rejected_file_never_a_system_fault(name: str) -> None:
    """Single-byte corruptions (seeded) and truncations of a valid file: whatever the
    decoders raise (zlib.error, tokenize.TokenError, ...), the outcome is a Recording or
    a RejectedFile, never another exception, which would send the file to the DLQ."""
    data = _valid_files()[name]
    rng = np.random.default_rng(20261127)
    # Bytes near the start (headers, zip local header) more often: that is where it breaks.
    offsets = np.concatenate(
        [rng.integers(0, min(len(data), 600), 200), rng.integers(0, len(data), 200)]
    )
    cases = [(int(o), int(rng.integers(1, 256))) for o in offsets]
    outcomes: dict[str, int] = {}
    for offset, flip in cases:
        damaged = bytearray(data)
        damaged[offset] ^= flip
        for candidate in (bytes(damaged), bytes(damaged[: offset + 1])):
            try:
                read_recording(candidate, f"incoming/s/d/{name}")
                outcomes["read"] = outcomes.get("read", 0) + 1
            except RejectedFile as rejected:
                outcomes[rejected.code] = outcomes.get(rejected.code, 0) + 1
    assert sum(outcomes.values()) == 2 * len(cases)
    assert len(outcomes) > 1  # the corruptions did break something


# -- leads kept ----------------------------------------------------------------------------

TWELVE = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _twelve_lead_files() -> dict[str, bytes]:
    signal = np.tile(ecg_like(12, 250), (1, 4)).astype(np.float32)  # I, II, V2 repeated
    buffer = io.BytesIO()
    np.savez_compressed(buffer, signals=signal, fs=np.array(250.0), leads=np.array(TWELVE))
    rows = "\n".join(",".join(f"{v:.4f}" for v in row) for row in signal)
    doc = {"signals": signal.round(4).tolist(), "fs": 250, "leads": TWELVE}
    return {
        "x.npz": buffer.getvalue(),
        "x.csv": f"# fs: 250\n{','.join(TWELVE)}\n{rows}\n".encode(),
        "x.json": json.dumps(doc).encode(),
    }


@pytest.mark.parametrize("name", ["x.npz", "x.csv", "x.json"])
def test_only_the_model_leads_are_kept_and_prepare_gives_the_same_windows(name: str) -> None:
    data = _twelve_lead_files()[name]
    everything = read_recording(data, name)
    kept = read_recording(data, name, model_leads=LEADS, model_rate_hz=200.0)
    assert everything.signal.shape[1] == 12 and everything.leads == TWELVE
    assert kept.signal.shape == (everything.signal.shape[0], 3)
    assert kept.leads == ["I", "II", "V2"] and kept.leads_in_file == TWELVE
    np.testing.assert_array_equal(
        prepare(kept, LEADS, 200.0, 2000).windows, prepare(everything, LEADS, 200.0, 2000).windows
    )


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (["I", "II", "ii", "V2"], "a lead named twice: prepare names it"),
        (["I", "II", "V5", "V6"], "V2 missing: prepare names what is missing"),
    ],
)
def test_all_leads_are_kept_when_prepare_must_say_what_is_wrong(names: list[str], why: str) -> None:
    rows = "\n".join(",".join(f"{v:.4f}" for v in (*row, row[0])) for row in SIGNAL)
    data = f"# fs: 500\n{','.join(names)}\n{rows}\n".encode()
    recording = read_recording(data, "x.csv", model_leads=LEADS)
    assert recording.leads == names and recording.leads_in_file is None, why


def test_the_lowest_rate_costed_is_the_lowest_prepare_accepts() -> None:
    assert decode_memory.LOWEST_RATE_HZ == prepare_module.MIN_RATE_HZ


# -- memory --------------------------------------------------------------------------------


def test_a_file_that_would_not_fit_is_refused_before_decoding_saying_how_to_split_it() -> None:
    data = _twelve_lead_files()["x.npz"]  # 3000 rows x 12 leads at 250 Hz
    with pytest.raises(RejectedFile) as caught:
        read_recording(data, "x.npz", model_rate_hz=200.0, memory_budget_bytes=25 * 2**20)
    reason = caught.value.reason
    assert caught.value.code == "too_large_in_memory"
    assert "12 channels x 3000 samples" in reason and "the limit is 25 MB" in reason
    assert "split the recording into files of at most" in reason and "min at its rate" in reason
    # Named leads: with the model's leads known, only 3 of 12 are kept, and it fits.
    read_recording(
        data, "x.npz", model_leads=LEADS, model_rate_hz=200, memory_budget_bytes=60 * 2**20
    )


def test_a_file_without_a_rate_is_costed_at_the_lowest_rate_unless_s3_states_one() -> None:
    data = _npy(ecg_like(1800, 500).astype(np.float32))  # 30 min, 900 k samples, 3 leads
    options = {"model_leads": LEADS, "model_rate_hz": 200.0, "memory_budget_bytes": 100 * 2**20}
    with pytest.raises(RejectedFile, match="costed at 100 Hz"):
        read_recording(data, "x.npy", **options)  # type: ignore[arg-type]
    read_recording(data, "x.npy", metadata_rate_hz=500.0, **options)  # type: ignore[arg-type]


def test_a_file_prepare_must_refuse_is_not_costed_as_prepared() -> None:
    """One unnamed channel where the model needs three: prepare says so, copying nothing;
    the estimate must not refuse the file for memory it will never use."""
    data = _npy(np.ones((1_000_000, 1), np.float32))
    options = {"model_leads": LEADS, "model_rate_hz": 200.0, "memory_budget_bytes": 40 * 2**20}
    recording = read_recording(data, "x.npy", metadata_rate_hz=500.0, **options)  # type: ignore[arg-type]
    recording.fs = 500.0
    with pytest.raises(RejectedFile) as caught:
        prepare(recording, LEADS, 200.0, 2000)
    assert caught.value.code == "unnamed_channels"


@pytest.mark.parametrize("rows", [200_000, 1_600_000])
@pytest.mark.parametrize("fs", [100, 200, 250, 360, 500, 1000, 5000])
def test_prepare_bytes_bounds_what_prepare_allocates(fs: int, rows: int) -> None:
    """The estimate holds prepare.py to its count (tracemalloc sees NumPy's buffers): never
    below what prepare allocates, nor so far above it that files are refused for nothing."""
    signal = ecg_like(rows / fs, fs).astype(np.float32)  # an ECG, so quality checks run too
    signal[1000:1010] = np.nan  # gap filling runs too
    recording = Recording(signal, float(fs), list(LEADS), "npy")
    tracemalloc.start()
    try:
        prepare(recording, LEADS, 200.0, 2000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = prepare_bytes(rows, 3, fs, 200.0)
    # Never below; above by at most a quarter, plus the fixed working arrays (filter blocks,
    # the quality checks' batch) that dominate only small files.
    assert peak <= estimate <= 1.25 * peak + 32 * 2**20


@functools.cache
def _cap_files(cap: int) -> dict[str, tuple[bytes, int, int]]:
    """Files near ``cap`` bytes for each decoder: (bytes, rows, per-row bytes besides the
    float32 signal) — 8 for a CSV's time column."""
    rng = np.random.default_rng(5)
    ints = rng.integers(-900, 900, (cap // 6, 3)).astype(np.int16)
    stored, fortran = io.BytesIO(), np.asfortranarray(ints.astype(np.float32)[: cap // 12])
    np.savez(stored, signals=ints, fs=np.array(500.0))
    null_rows = b"".join(b"1,null,3\n" if i % 997 == 0 else b"4,5,\n" for i in range(cap // 6))
    timed = b"".join(b"%.3f,1,2\n" % (i / 500) for i in range(cap // 14))
    json_rows = b"[1.5,null,-3],[4,5e-1,6]," * (cap // 26)
    return {
        "int16.npy": (_npy(ints), len(ints), 0),
        "fortran.npy": (_npy(fortran), len(fortran), 0),
        "stored.npz": (stored.getvalue(), len(ints), 0),
        "nulls.csv": (b"# fs: 500\nI,II,V2\n" + null_rows, null_rows.count(b"\n") + 1, 0),
        "time.csv": (b"t,I,II\n" + timed, timed.count(b"\n") + 1, 8),
        "rows.json": (b'{"fs":500,"signals":[' + json_rows + b"[0,0,0]]}", cap // 26 * 2 + 1, 0),
    }


@pytest.mark.parametrize(
    "name", ["int16.npy", "fortran.npy", "stored.npz", "nulls.csv", "time.csv", "rows.json"]
)
def test_decoders_stay_within_their_estimate(name: str) -> None:
    """What a reader allocates (tracemalloc) is its Recording's signal, allocated once for the
    rows the estimate counted, plus at most DECODE_BYTES of working memory."""
    data, rows, per_row = _cap_files(2 * 2**20)[name]  # two chunks or more
    tracemalloc.start()
    try:
        recording = read_recording(data, name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    channels = recording.signal.shape[1]
    assert peak <= rows * (4 * channels + per_row) + decode_memory.DECODE_BYTES
    assert peak >= rows * 4 * channels  # the signal was traced: the bound means something


# Address space of the child: python + numpy + scorer map ~100 MiB at start with one OpenBLAS
# thread (more threads reserve more: hence OPENBLAS_NUM_THREADS=1), so 640 MiB leaves ~540
# MiB for one file. RLIMIT_AS counts every mapping, touched or not, so it bounds RSS from
# above: a reader that tried to hold more fails with MemoryError instead of passing.
ADDRESS_SPACE_LIMIT = 640 * 2**20
PEAK_RSS_TARGET = 512 * 2**20  # issue 9: at 1024 MB MemorySize
BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_memory.py"


@functools.cache
def _worst_files(cap: int) -> dict[str, bytes]:
    """Files at the cap that cost main's readers 0.6-2.6 GB: the most rows a file of this size
    holds, a null cell that sent main to a Python parser, a member that expands 6.5x."""
    rng = np.random.default_rng(4)  # 5,000 rows of 3 mV values, a null in one, repeated
    pool = [",".join(f"{v:.2f}" for v in rng.normal(0, 0.5, 3)) for _ in range(5000)]
    pool[2500] = "0.12,null,-0.40"
    block = ("\n".join(pool) + "\n").encode()
    realistic = block * (cap // len(block) + 1)
    realistic = realistic[: realistic.rfind(b"\n", 0, cap - 30) + 1]
    short = (b"1,2,3\n" * 499 + b"7,null,9\n") * (cap // 3004 - 2)
    return {
        "expanding.npz": npz_expanding(int(6.5 * cap) // 3, 3, size=cap),
        "uint8.npy": _npy(np.tile(np.arange(9, dtype=np.uint8).reshape(3, 3), (cap // 9 - 50, 1))),
        "nulls.csv": b"# fs: 500\nI,II,V2\n" + realistic,
        "short.csv": b"# fs: 500\nI,II,V2\n" + short,
        "column.csv": b"# fs: 500\nII\n1\nnull\n" + b"1\n2\n" * (cap // 4 - 8),
        "column.json": b'{"fs": 500, "signals": [' + b"[1],[2]," * (cap // 8 - 4) + b"[3]]}",
    }


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["expanding.npz", "uint8.npy", "nulls.csv", "short.csv", "column.csv", "column.json"]
)
def test_worst_files_at_the_cap_fit_the_budget(name: str, tmp_path: Path) -> None:
    """A fresh process reads and prepares one worst-case file at the 25 MiB cap under an
    address-space limit (the benchmark's child, as the Lambda does it); the outcome is
    windows or a RejectedFile, never MemoryError, and the peak RSS stays under 512 MiB."""
    data = _worst_files(26_214_400)[name]
    assert len(data) <= 26_214_400
    path = tmp_path / name
    path.write_bytes(data)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    # An .npy's rate and leads come from S3 metadata: a low rate (upsampled), under 24 h.
    rate, leads = ("120", ",".join(LEADS)) if name.endswith(".npy") else ("", "")
    done = subprocess.run(
        [sys.executable, str(BENCH), "--child", str(path), name, rate, leads],
        env=env,
        preexec_fn=_limit_address_space,  # the test process has no threads to deadlock
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outcome"] != "MemoryError"
    assert result["outcome"].endswith("windows") or result["outcome"] in {
        "too_large_in_memory",
        "unnamed_channels",
        "missing_leads",
        "poor_signal_quality",  # these files hold random numbers, not ECGs: read all the same
    }, result
    assert result["peak"] < PEAK_RSS_TARGET, result


# -- no patient data in reasons ------------------------------------------------------------

PHI = ("Jane Doe", "MRN 12345678", "DOB 1961-02-03")
PHI_PIECES = ("jane", "12345678", "1961-02-03", "mrn")  # any of them, case-insensitive


def _npz_of(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _phi_files() -> list[tuple[str, bytes, str | None]]:
    """(key, bytes, the code the readers give, None when they accept the file): PHI in
    every field a file or its name can carry, each case failing on that field if any."""
    jane, mrn, dob = PHI
    rows = "\n".join(",".join(f"{v:.4f}" for v in row) for row in SIGNAL[:300])
    signals = SIGNAL[:300].round(4).tolist()
    bigger = SIGNAL.round(3).tolist() * 40  # 120,000 rows: the chunked JSON path
    bigger[70_000][1] = jane  # type: ignore[call-overload]
    phi_meta = {"site": jane, "device": mrn, "patient_ref": mrn, "record_id": dob}
    numbers = np.ones((300, 3), np.float32)
    text = np.array(PHI)
    return [
        # CSV: cells, header names and units, comments of every kind, bytes that are not UTF-8
        ("a.csv", f"I,II,V2\n{rows}\n0.1,{jane},0.2\n".encode(), "csv_not_a_number"),
        ("a.csv", f"I,II,V2\n{rows}\n{mrn},{dob}\n".encode(), "csv_ragged"),
        ("a.csv", f"I,II ({jane}),V2\n{rows}\n".encode(), "bad_unit"),
        ("a.csv", f"I,V2 [{mrn}]\n".encode(), "bad_unit"),
        ("a.csv", f"{jane},{mrn},{dob}\n".encode(), "csv_no_rows"),
        ("a.csv", f"# sampling_rate_hz: {dob}\nI,II,V2\n{rows}\n".encode(), "bad_rate"),
        ("a.csv", f"# leads: {jane}, {mrn}\n{rows}\n".encode(), "bad_leads"),
        ("a.csv", f"{jane}\n{rows}\n".replace("\n", "\r\n", 1).encode(), "csv_ragged"),
        # (beyond the first 512 bytes, which are sniffed: binary there is wrong_content)
        ("a.csv", f"I,II,V2\n{rows}\n0.1,J\xe4ne Doe,0.2\n".encode("latin-1"), "not_utf8"),
        ("a.csv", f"I,II,V2\n{rows}\n# site: J\xe4ne Doe\n".encode("latin-1"), "not_utf8"),
        ("a.csv", f"{jane},{mrn},{dob}\n{rows}\n".encode(), None),  # lead names: read
        (
            "a.csv",
            "".join(f"# {k}: {v}\n" for k, v in {**phi_meta, "recorded_at": dob}.items()).encode()
            + f"I,II,V2\n{rows}\n".encode(),
            None,  # metadata is the item's own; recorded_at is checked by the handler
        ),
        # JSON: samples, rate, leads, metadata of the wrong type, syntax, keys, large files
        ("a.json", json.dumps({"signals": [[1, jane, 3]]}).encode(), "bad_signals"),
        ("a.json", json.dumps({"signals": jane}).encode(), "bad_signals"),
        ("a.json", json.dumps({"signals": bigger, "fs": 500}).encode(), "bad_signals"),
        ("a.json", json.dumps({"signals": signals, "fs": dob}).encode(), "bad_rate"),
        ("a.json", json.dumps({"signals": signals, "leads": [jane, mrn]}).encode(), "bad_leads"),
        ("a.json", json.dumps({"signals": signals, "site": {"n": jane}}).encode(), "bad_metadata"),
        ("a.json", json.dumps({"signals": signals, "patient_ref": [mrn]}).encode(), "bad_metadata"),
        ("a.json", f'{{"signals": [[1, 2, 3]], "name": {jane}}}'.encode(), "bad_json"),
        ("a.json", f'{{"name": {mrn}, "signals": [[1, 2, 3]]}}'.encode(), "bad_json"),
        ("a.json", f'{{"signals": [[1, 2, 3]], "name": "{dob}"'.encode(), "bad_json"),
        ("a.json", f'{{"signals": {signals}, "n": "J\xe4ne"}}'.encode("latin-1"), "not_utf8"),
        (
            "a.json",
            json.dumps({"signals": signals, jane: mrn, **phi_meta, "recorded_at": dob}).encode(),
            None,
        ),
        # NPY: dtypes that name things (field names, strings)
        ("a.npy", _npy(np.zeros(5, dtype=[(jane, "f4"), (mrn, "f4")])), "not_numeric"),
        ("a.npy", _npy(np.array([PHI, PHI])), "not_numeric"),
        # NPZ: array names, strings, rate, leads, metadata arrays
        ("a.npz", _npz_of(**{jane: numbers, mrn: numbers}), "npz_no_signals"),
        ("a.npz", _npz_of(**{dob: numbers[:, 0]}), "wrong_shape"),
        ("a.npz", _npz_of(**{jane: text}), "not_numeric"),
        ("a.npz", _npz_of(signals=numbers, fs=np.array(dob)), "bad_rate"),
        ("a.npz", _npz_of(signals=numbers, leads=text[:2]), "bad_leads"),
        ("a.npz", _npz_of(signals=numbers, site=text), "bad_metadata"),
        ("a.npz", _npz_of(signals=numbers, patient_ref=np.array([mrn] * 3000)), "bad_metadata"),
        (
            "a.npz",
            _npz_of(
                signals=numbers,
                leads=text,
                recorded_at=np.array(dob),
                **{k: np.array(v) for k, v in phi_meta.items()},
                **{jane: text},
            ),
            None,
        ),
        # The file's name
        (f"incoming/s/d/{jane}.{mrn}", b"I,II,V2\n1,2,3\n", "unsupported_ext"),
        (f"incoming/s/d/{dob} {jane}", b"I,II,V2\n1,2,3\n", "no_ext"),
    ]


@pytest.mark.parametrize(
    ("key", "data", "code"),
    _phi_files(),
    ids=[f"{i}-{c}" for i, (_, _, c) in enumerate(_phi_files())],
)
def test_reasons_never_quote_patient_data(key: str, data: bytes, code: str | None) -> None:
    """Names, MRNs and birth dates planted in cells, headers, comments, metadata, lead names,
    array names and file names: the file is refused for that field (or read, where the
    field is the item's own), and the reason names the field, never its content."""
    if code is None:
        read_recording(data, key)
        return
    with pytest.raises(RejectedFile) as caught:
        read_recording(data, key)
    reason = caught.value.reason
    assert caught.value.code == code, reason
    assert not [piece for piece in PHI_PIECES if piece in reason.lower()], reason


# -- the chunked parsers read what a line-by-line parser reads -----------------------------


def _reference_csv(text: str, delimiter: str) -> np.ndarray:
    """The CSV rule, one cell at a time: blank and comment lines skipped, empty, NaN, NA and
    null cells are gaps, everything else a float."""
    rows = []
    for line in text.split("\n"):
        body = line.split("#", 1)[0].rstrip("\r")
        if body.strip():
            cells = next(csv.reader([body], delimiter=delimiter))
            gap = {"", "nan", "na", "null"}
            rows.append([math.nan if c.strip().lower() in gap else float(c) for c in cells])
    return np.array(rows, dtype=np.float64)


def _random_csv(rng: np.random.Generator) -> tuple[bytes, str, int]:
    delimiter = str(rng.choice([",", ";", "\t"]))
    columns = int(rng.integers(1, 5))
    gaps = ["", "NaN", "nan", "NA", "na", "null", "NULL", "Null", " null ", "  ", '""']
    numbers = ["{:.3f}", "{:g}", "{:.2e}", "{:.0f}", " {:.4f} ", '"{:.1f}"', "{:+.2f}"]
    lines = [delimiter.join(f"L{j}" for j in range(columns))]
    for _ in range(int(rng.integers(50, 400))):
        roll = rng.random()
        if roll < 0.03:
            lines.append(str(rng.choice(["", "   ", "# a comment, with: text", "\t"])))
            continue
        cells = [
            str(rng.choice(gaps)) if rng.random() < 0.08 else str(rng.choice(numbers)).format(v)
            for v in rng.normal(0, 100, columns)
        ]
        if columns > 1 and all(c.strip() in {"", '""'} for c in cells):
            cells[0] = "1"  # a line of only empty cells is read as a blank line by neither
        line = delimiter.join(cells)
        lines.append(line + (" # note" if rng.random() < 0.02 else ""))
    newline = "\r\n" if rng.random() < 0.3 else "\n"
    text = newline.join(lines) + (newline if rng.random() < 0.8 else "")
    return f"# fs: 500{newline}{text}".encode(), delimiter, columns


@pytest.mark.parametrize("chunk", [37, 2**20])
def test_csv_parser_reads_what_the_cell_by_cell_rule_reads(chunk: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(decode_memory, "CHUNK_BYTES", chunk)  # lines cut by every chunk boundary
    rng = np.random.default_rng(20261202 + chunk)
    for _ in range(40):
        data, delimiter, columns = _random_csv(rng)
        text = data.decode()
        expected = _reference_csv(text.split("\n", 2)[2], delimiter)  # after comment, header
        recording = read_recording(data, "x.csv")
        assert recording.signal.shape == expected.shape == (len(expected), columns)
        np.testing.assert_array_equal(recording.signal, expected.astype(np.float32))


def _random_json(rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    columns, rows = int(rng.integers(1, 5)), int(rng.integers(1, 300))
    values: list = np.round(rng.normal(0, 10, (rows, columns)), 3).tolist()
    for row in values:
        for j in range(columns):
            roll = rng.random()
            row[j] = (
                None
                if roll < 0.03
                else math.nan
                if roll < 0.04
                else int(row[j])
                if roll < 0.2
                else row[j]
            )
    if rng.random() < 0.3 and rows % 3 == 0:  # the endpoint's own [N, W, C]
        signals: list = [values[i : i + rows // 3] for i in range(0, rows, rows // 3)]
    else:
        signals = values
    doc: dict = {"signals": signals}
    if rng.random() < 0.5:  # other fields, before or after, with brackets and the key's name
        others = {"note": 'a "signals": [1, 2] ]] [[', "meta": {"signals": [["x"]]}, "fs": 500}
        doc = {**others, **doc} if rng.random() < 0.5 else {**doc, **others}
    indent = rng.choice([None, 0, 2])
    text = json.dumps(doc, indent=None if indent is None else int(indent))
    expected = np.array(
        [[math.nan if v is None else v for v in row] for row in values], dtype=np.float64
    )
    return text.encode(), expected


@pytest.mark.parametrize("chunk", [29, 2**20])
def test_json_parser_reads_what_the_json_module_reads(chunk: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(decode_memory, "CHUNK_BYTES", chunk)
    rng = np.random.default_rng(20261203 + chunk)
    for _ in range(40):
        data, expected = _random_json(rng)
        recording = read_recording(data, "x.json")
        assert recording.stored_shape == np.asarray(json.loads(data)["signals"], float).shape
        np.testing.assert_array_equal(recording.signal, expected.astype(np.float32))


def test_json_signals_given_twice_takes_the_last_as_the_json_module_does() -> None:
    data = b'{"signals": [[1, 2, 3]], "fs": 500, "signals": [[4, 5, 6], [7, 8, 9]]}'
    np.testing.assert_array_equal(read_recording(data, "x.json").signal, [[4, 5, 6], [7, 8, 9]])


@pytest.mark.parametrize("chunk", [7, 2**20])
def test_json_windows_must_all_hold_the_same_rows(chunk: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(decode_memory, "CHUNK_BYTES", chunk)
    row = [1.5, -2, 3]
    equal = json.dumps({"signals": [[row] * 4] * 3}).encode()
    assert read_recording(equal, "x.json").stored_shape == (3, 4, 3)
    unequal = json.dumps({"signals": [[row] * 4, [row] * 5, [row] * 3]}).encode()
    with pytest.raises(RejectedFile) as caught:
        read_recording(unequal, "x.json")
    assert caught.value.code == "bad_signals" and "same length" in caught.value.reason


@pytest.mark.parametrize("chunk", [23, 2**20])
def test_damaged_json_signals_are_refused_unless_still_valid(chunk: int, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Brackets, commas, quotes and braces inserted, replaced or deleted inside "signals":
    whatever the json module still reads is read the same; the rest is a RejectedFile."""
    monkeypatch.setattr(decode_memory, "CHUNK_BYTES", chunk)
    rng = np.random.default_rng(7)
    windows = np.round(rng.normal(0, 1, (2, 6, 3)), 2)
    base = json.dumps({"fs": 500, "signals": windows.tolist(), "site": "s"}).encode()
    start, end = base.index(b"[["), base.index(b"]]],") + 3
    outcomes: dict[str, int] = {}
    structure = [i for i in range(start, end) if base[i] in b"[], "]
    for _ in range(600):
        how = int(rng.integers(3))  # insert anywhere; replace or delete a bracket, comma, blank
        at = int(rng.integers(start, end)) if how == 1 else int(rng.choice(structure))
        symbol = bytes([int(rng.choice(list(b'[],:"{} n')))])
        damaged = base[:at] + (symbol if how < 2 else b"") + base[at + (how != 1) :]
        try:
            reference = np.asarray(json.loads(damaged)["signals"], dtype=np.float64)
            valid = reference.ndim in {2, 3} and reference.size > 0
        except (ValueError, TypeError):
            valid = False
        try:
            recording = read_recording(damaged, "x.json")
        except RejectedFile as rejected:
            assert not valid, (damaged, rejected.reason)
            outcomes[rejected.code] = outcomes.get(rejected.code, 0) + 1
            continue
        assert valid, damaged
        expected = reference.reshape(-1, reference.shape[-1]).astype(np.float32)
        np.testing.assert_array_equal(recording.signal, expected)
        outcomes["read"] = outcomes.get("read", 0) + 1
    assert {"read", "bad_json", "bad_signals"} <= set(outcomes), outcomes


# -- arrays --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        np.asfortranarray(SIGNAL.astype(">f8")),  # column-major, big-endian
        np.asfortranarray(SIGNAL.reshape(2, 3000, 3).astype(np.int16)),  # [N, W, C] column-major
        SIGNAL.reshape(2, 3000, 3).astype(np.float16),
        (SIGNAL * 1000).astype(">i4"),
    ],
    ids=["fortran-f8", "fortran-windows", "float16-windows", "big-endian-i4"],
)
def test_any_layout_and_dtype_reads_as_numpy_loads_it(array: np.ndarray) -> None:
    data = _npy(array)
    recording = read_recording(data, "x.npy")
    expected = np.load(io.BytesIO(data)).astype(np.float32).reshape(-1, 3)
    np.testing.assert_array_equal(recording.signal, expected)
    assert recording.stored_shape == array.shape


def test_npz_refuses_compressions_numpy_never_writes_and_too_many_entries() -> None:
    bz = io.BytesIO()
    with zipfile.ZipFile(bz, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("signals.npy", _npy(SIGNAL))  # bzip2 is not bounded per read
    with pytest.raises(RejectedFile, match="compression numpy does not write"):
        read_recording(bz.getvalue(), "x.npz")
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as archive:
        for i in range(read_arrays.MAX_NPZ_MEMBERS + 1):
            archive.writestr(f"a{i}.npy", b"")
    with pytest.raises(RejectedFile, match="more than 1024 entries"):
        read_recording(many.getvalue(), "x.npz")


def test_npz_member_whose_size_disagrees_with_its_header_is_refused_unread() -> None:
    data = bytearray(_npz_of(signals=SIGNAL.astype(np.float32), fs=np.array(500.0)))
    # The header claims twice the rows: the member's declared size no longer matches it.
    at = data.index(b"(6000, 3)")
    data[at : at + 9] = b"(9999, 3)"
    with pytest.raises(RejectedFile) as caught:
        read_recording(bytes(data), "x.npz")
    assert caught.value.code == "bad_npz" and "corrupt" in caught.value.reason
