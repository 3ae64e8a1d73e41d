"""The EDF/EDF+/BDF reader against edfio's own read of files edfio wrote: values, units,
rates, annotations, range reads, dates, and damaged input."""

from __future__ import annotations

import datetime as dt
import functools
import io
import tracemalloc

import edfio  # writes the files and is the reference reader; a test dependency only
import numpy as np
import pytest
from conftest import SHARED_ECG
from hypothesis import given, settings
from hypothesis import strategies as st
from scorer import edf, wfdb
from scorer.errors import RejectedFile

PTBXL_DIR = SHARED_ECG.parent / "ptbxl" / "records500" / "00000"
PATIENT = edfio.Patient(code="MRN4711", sex="F", birthdate=dt.date(1957, 3, 2), name="Jane_Roe")
PHI = ("MRN4711", "Jane", "Roe", "1957", "MAR")


def ecg_signals(kind=edfio.EdfSignal, seconds: int = 20, unit: str = "uV", fs: int = 500):
    rng = np.random.default_rng(0)
    scale = {"uV": 1000.0, "mV": 1.0, "V": 1e-3}[unit]
    return [
        kind(rng.normal(0, 0.5, fs * seconds) * scale, fs, label=label, physical_dimension=unit)
        for label in ("ECG I", "ECG II", "ECG V2")
    ]


def edf_bytes(signals, bdf: bool = False, **kwargs) -> bytes:
    return (edfio.Bdf if bdf else edfio.Edf)(signals, **kwargs).to_bytes()


def assert_same_as_edfio(recording, data: bytes) -> None:
    ref = (edfio.read_bdf if data[:1] == b"\xff" else edfio.read_edf)(io.BytesIO(data))
    assert recording.leads is not None
    for j, label in enumerate(recording.leads):
        signal = ref.get_signal(label)
        factor = {"uV": 1e-3, "mV": 1.0, "V": 1e3}[signal.physical_dimension]
        assert recording.fs == signal.sampling_frequency
        np.testing.assert_array_equal(
            recording.signal[:, j], (signal.data * factor).astype(np.float32)
        )


@pytest.mark.parametrize("unit", ["uV", "mV", "V"])
def test_edf_in_any_voltage_unit_reads_as_edfio_reads_it_in_mv(unit: str) -> None:
    data = edf_bytes(ecg_signals(unit=unit))
    recording = edf.read_edf(data)
    assert recording.format == "edf" and recording.leads == ["ECG I", "ECG II", "ECG V2"]
    assert recording.signal.shape == (10_000, 3) and recording.signal.dtype == np.float32
    assert 0.2 < float(np.std(recording.signal)) < 1.0  # mV whatever the file's unit
    assert_same_as_edfio(recording, data)


def test_bdf_24_bit_reads_as_edfio_reads_it() -> None:
    data = edf_bytes(ecg_signals(edfio.BdfSignal, unit="mV"), bdf=True)
    recording = edf.read_edf(data)
    assert recording.format == "bdf"
    assert_same_as_edfio(recording, data)
    # 24 bits resolve a 1 mV range to ~0.1 nV where 16 bits give ~30 nV.
    truth = ecg_signals(edfio.BdfSignal, unit="mV")[0].data
    assert np.abs(recording.signal[:, 0] - truth).max() < 1e-6


def test_annotations_are_ignored_and_edf_plus_c_reads() -> None:
    notes = [edfio.EdfAnnotation(1.5, 2.0, "arousal"), edfio.EdfAnnotation(9, None, "event")]
    for bdf, kind in ((False, edfio.EdfSignal), (True, edfio.BdfSignal)):
        data = edf_bytes(ecg_signals(kind), bdf=bdf, annotations=notes)
        assert data[192:197] in (b"EDF+C", b"BDF+C")
        recording = edf.read_edf(data)
        assert recording.leads == ["ECG I", "ECG II", "ECG V2"]
        assert_same_as_edfio(recording, data)


def test_signals_at_another_rate_or_unit_are_dropped() -> None:
    rng = np.random.default_rng(1)
    signals = [
        *ecg_signals(),
        edfio.EdfSignal(rng.normal(size=25 * 20), 25, label="Resp", physical_dimension="Ohm"),
        edfio.EdfSignal(rng.normal(size=100 * 20), 100, label="EEG", physical_dimension="uV"),
        edfio.EdfSignal(rng.normal(size=500 * 20), 500, label="SpO2", physical_dimension="%"),
    ]
    data = edf_bytes(signals)
    recording = edf.read_edf(data)
    assert recording.leads == ["ECG I", "ECG II", "ECG V2"] and recording.fs == 500
    assert_same_as_edfio(recording, data)


def test_leads_at_different_rates_are_refused() -> None:
    rng = np.random.default_rng(2)
    signals = [
        edfio.EdfSignal(rng.normal(size=500 * 4), 500, label="I", physical_dimension="mV"),
        edfio.EdfSignal(rng.normal(size=250 * 4), 250, label="II", physical_dimension="mV"),
    ]
    with pytest.raises(RejectedFile, match="I at 500 Hz, II at 250 Hz") as e:
        edf.read_edf(edf_bytes(signals))
    assert e.value.code == "mixed_rates"


def test_a_lead_in_no_voltage_unit_is_refused() -> None:
    signal = edfio.EdfSignal(np.zeros(1000), 500, label="ECG II", physical_dimension="mmHg")
    with pytest.raises(RejectedFile, match=r"signal 1 \(II\) is not in a voltage unit") as e:
        edf.read_edf(edf_bytes([signal]))
    assert e.value.code == "bad_unit"


def test_edf_plus_d_is_refused_with_what_to_do() -> None:
    data = bytearray(edf_bytes(ecg_signals(), annotations=[edfio.EdfAnnotation(1, None, "x")]))
    data[192:197] = b"EDF+D"
    with pytest.raises(RejectedFile, match=r"EDF\+D \(discontinuous.*export it as EDF\+C") as e:
        edf.read_edf(bytes(data))
    assert e.value.code == "edf_discontinuous"


def test_ptbxl_record_as_edf_reads_as_its_wfdb_read() -> None:
    """What the issue's acceptance needs (WFDB and EDF score identically): a PTB-XL record
    exported as EDF the way a device would (uV, 16 bits) gives the WFDB values within 1e-4 mV."""
    if not PTBXL_DIR.is_dir():
        pytest.skip(f"PTB-XL records not found at {PTBXL_DIR}")
    for hea in sorted(PTBXL_DIR.glob("*.hea"))[::25]:
        dat = hea.with_suffix(".dat")
        record = wfdb.read_record(
            {hea.name: hea.read_bytes(), dat.name: dat.read_bytes()}, hea.name
        )
        assert record.leads is not None
        signals = [
            edfio.EdfSignal(
                record.signal[:, j].astype(np.float64) * 1000,
                500,
                label=name,
                physical_dimension="uV",
                physical_range=(-32768, 32767),
            )
            for j, name in enumerate(record.leads)
        ]
        recording = edf.read_edf(edf_bytes(signals))
        assert recording.leads == record.leads and recording.fs == record.fs
        np.testing.assert_allclose(recording.signal, record.signal, rtol=0, atol=1e-4)


# -- range reads ---------------------------------------------------------------------------


@pytest.mark.parametrize("bdf", [False, True])
def test_range_reads_equal_slices_of_the_whole(bdf: bool) -> None:
    rng = np.random.default_rng(3)
    kind = edfio.BdfSignal if bdf else edfio.EdfSignal
    signals = [
        kind(rng.normal(size=500 * 30), 500, label="I", physical_dimension="mV"),
        kind(rng.normal(size=32 * 30), 32, label="Resp", physical_dimension="Ohm"),
        kind(rng.normal(size=500 * 30), 500, label="V2", physical_dimension="uV"),
    ]
    data = edf_bytes(signals, bdf=bdf, annotations=[edfio.EdfAnnotation(3, None, "x")])
    whole = edf.read_edf(data).signal
    plan = edf.plan(edf.parse_header(data[: edf.header_size(data[:256])]), len(data))
    assert plan.n_frames == 30 and plan.samples_per_frame == 500
    for a, b in [(0, 1), (0, 30), (1, 2), (7, 19), (29, 30), (5, 5)]:
        first, end = plan.byte_range(a, b)
        assert end - first == (b - a) * plan.record_bytes
        part = plan.read(data[first:end], a, b).signal
        np.testing.assert_array_equal(part, whole[a * 500 : b * 500])


# -- header fields -------------------------------------------------------------------------


def _with_field(data: bytes, start: int, text: str, width: int) -> bytes:
    return data[:start] + text.ljust(width).encode("latin-1") + data[start + width :]


@pytest.mark.parametrize(
    ("legacy", "plus", "expected"),
    [
        ("02.01.85", "", "1985-01-02"),
        ("02.01.99", "", "1999-01-02"),
        ("02.01.00", "", "2000-01-02"),
        ("02.01.84", "", "2084-01-02"),
        ("02.01.yy", "Startdate 02-JAN-2091 X X X", "2091-01-02"),  # after 2084, EDF+ only
        ("02.01.30", "Startdate 02-JAN-2030 X X X", "2030-01-02"),
        ("01.01.85", "Startdate X X X X", None),  # anonymised: 01.01.85 is a placeholder
    ],
)
def test_start_date_rules(legacy: str, plus: str, expected: str | None) -> None:
    data = edf_bytes(ecg_signals(seconds=10))
    data = _with_field(_with_field(data, 168, legacy, 8), 176, "13.14.15", 8)
    data = _with_field(data, 88, plus, 80)
    metadata = {"recorded_at": f"{expected}T13:14:15"} if expected else {}
    assert edf.read_edf(data).metadata == metadata


def test_patient_and_recording_identification_never_leave_the_header() -> None:
    recording_id = edfio.Recording(
        startdate=dt.date(2030, 1, 2), hospital_administration_code="Roe"
    )
    data = edf_bytes(ecg_signals(seconds=10), patient=PATIENT, recording=recording_id)
    recording = edf.read_edf(data)
    assert recording.metadata == {"recorded_at": "2030-01-02T00:00:00"}
    # Damage everything else: no reason may quote the identification fields.
    for start, width in [(176, 8), (184, 8), (236, 8), (244, 8), (252, 4)]:
        damaged = _with_field(data, start, "Jane Roe"[:width], width)
        with pytest.raises(RejectedFile) as e:
            edf.read_edf(damaged)
        assert not any(word in e.value.reason for word in PHI)


@pytest.mark.parametrize(
    ("start", "text", "width", "match"),
    [
        (0, "1", 8, "does not start like an EDF file"),
        (184, "300", 8, "header size does not match"),
        (236, "many", 8, "number of data records is not an integer"),
        (236, "-7", 8, "negative"),
        (244, "nan", 8, "not a finite number"),
        (252, "0", 4, r"outside 1\.\.512"),
        (168, "31.02.20", 8, "start date"),
    ],
)
def test_malformed_headers_say_what_is_wrong(start: int, text: str, width: int, match: str) -> None:
    plain = _with_field(edf_bytes(ecg_signals(seconds=2)), 88, "", 80)  # no EDF+ date
    data = _with_field(plain, start, text, width)
    with pytest.raises(RejectedFile, match=match) as e:
        edf.read_edf(data)
    assert e.value.code in ("bad_edf_header", "not_edf")


def test_signal_fields_are_checked() -> None:
    data = edf_bytes(ecg_signals(seconds=2))
    n = 3
    dmin = 256 + 120 * n  # digital minimum of signal 1
    for start, text, match in [
        (dmin, "40000", "digital minimum and maximum"),
        (256 + 104 * n, "abc", "physical minimum is not a number"),
        (256 + 216 * n, "0", "samples per data record is not a positive"),
    ]:
        with pytest.raises(RejectedFile, match=match):
            edf.read_edf(_with_field(data, start, text, 8))


def test_truncated_file_and_lying_record_count_are_refused_without_allocating() -> None:
    data = edf_bytes(ecg_signals(seconds=20))
    with pytest.raises(
        RejectedFile, match="holds 9 complete data records but its header declares 20"
    ) as e:
        edf.read_edf(data[: len(data) // 2 + 100])
    assert e.value.code == "truncated"
    huge = _with_field(data, 236, "99999999", 8)
    tracemalloc.start()
    try:
        with pytest.raises(RejectedFile, match="cut short"):
            edf.read_edf(huge)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()
    with pytest.raises(RejectedFile, match="shorter than an EDF header"):
        edf.read_edf(data[:100])
    with pytest.raises(RejectedFile, match="ends inside its header"):
        edf.read_edf(data[:300])


def test_unknown_record_count_comes_from_the_size() -> None:
    data = _with_field(edf_bytes(ecg_signals(seconds=20)), 236, "-1", 8)
    assert edf.read_edf(data).signal.shape == (10_000, 3)
    with pytest.raises(RejectedFile, match="holds no data records") as e:
        edf.read_edf(_with_field(data, 236, "0", 8))
    assert e.value.code == "no_samples"


@functools.cache
def _fuzz_seeds() -> list[bytes]:
    rng = np.random.default_rng(4)
    ann = [edfio.EdfAnnotation(1, None, "x")]
    mixed = [*ecg_signals(seconds=4), edfio.EdfSignal(rng.normal(size=100), 25, label="Resp")]
    return [
        edf_bytes(ecg_signals(seconds=4)),
        edf_bytes(ecg_signals(edfio.BdfSignal, seconds=4), bdf=True, annotations=ann),
        edf_bytes(mixed, patient=PATIENT),
    ]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_damaged_files_only_ever_raise_rejected_file(data: st.DataObject) -> None:
    content = bytearray(data.draw(st.sampled_from(_fuzz_seeds())))
    if data.draw(st.booleans()):
        del content[data.draw(st.integers(0, len(content) - 1)) :]
    for _ in range(data.draw(st.integers(0, 8))):
        if content:
            # Mostly the header, where a flipped bit changes the most.
            at = data.draw(st.integers(0, min(len(content), 1100) - 1))
            content[at] ^= 1 << data.draw(st.integers(0, 7))
    try:
        recording = edf.read_edf(bytes(content))
    except RejectedFile as e:
        assert e.reason and e.code
        assert not any(word in e.reason for word in PHI)
        return
    assert recording.signal.dtype == np.float32
