"""Readers: every accepted format gives the same Recording; every bad file a clear reason."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from bad_files import bad_files
from scorer.errors import RejectedFile
from scorer.prepare import prepare
from scorer.readers import check_size, read_recording, sniff
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
    with pytest.raises(RejectedFile, match="says 250 Hz but the time column says 500 Hz"):
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
FILE_LEVEL = [bad for bad in bad_files(MAX_BYTES) if bad.code != "bad_recorded_at"]


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
