"""The WFDB reader against the maintained ``wfdb`` package: real records, every format,
range reads, and damaged input (which must only ever be a RejectedFile)."""

from __future__ import annotations

import functools
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import wfdb as wfdb_ref  # the maintained reader, a test dependency only
import wfdb.io._header as wfdb_ref_header
from conftest import SHARED_ECG
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scorer import leads, wfdb, wfdb_header
from scorer.errors import RejectedFile

WFDB_DIR = SHARED_ECG / "wfdb"
PTBXL_DIR = SHARED_ECG.parent / "ptbxl" / "records500"
MV = {"mV": 1.0, "uV": 1e-3, "V": 1e3}
PHI = "JOHN DOE MRN 123456"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _headers() -> list[Path]:
    if not WFDB_DIR.is_dir():
        return []
    found = sorted(WFDB_DIR.rglob("*.hea"))
    # The segment headers of 041s are read through its master header.
    return [p for p in found if p.parent == WFDB_DIR or p.stem == p.parent.name]


def assert_same_as_wfdb(recording, path: Path) -> None:
    """Every channel we read equals wfdb's physical values (converted to mV), to the bit
    after float32 rounding; NaN where wfdb has NaN."""
    ref = wfdb_ref.rdrecord(str(path), smooth_frames=False)
    assert recording.leads is not None
    for j, name in enumerate(recording.leads):
        i = ref.sig_name.index(name)
        assert recording.fs == pytest.approx(ref.fs * ref.samps_per_frame[i])
        expected = (ref.e_p_signal[i] * MV[ref.units[i]]).astype(np.float32)
        np.testing.assert_array_equal(recording.signal[:, j], expected)


@pytest.mark.parametrize("hea", _headers(), ids=lambda p: p.stem)
def test_every_shared_record_reads_as_wfdb_reads_it(hea: Path) -> None:
    recording = None
    try:
        recording = wfdb.read_record(_files(hea.parent), hea.name)
    except RejectedFile as e:
        # FLAC storage is the one thing refused, with what to do about it.
        assert hea.stem == "mixedsignals"
        assert e.code == "wfdb_format_not_supported"
        assert "format 516 (FLAC-compressed)" in e.reason and "format 16" in e.reason
        return
    assert recording.format == "wfdb"
    assert_same_as_wfdb(recording, hea.with_suffix(""))


def test_shared_records_keep_the_ecg_channels_as_documented(shared_ecg: Path) -> None:
    """Non-voltage channels (PLETH in NU, ABP in mmHg) and channels at another rate than
    the leads are dropped; the ECG keeps its own rate."""
    folder = shared_ecg / "wfdb"
    expected = {
        "a103l": (["II", "V"], 250),
        "v102s": (["II", "V"], 250),
        "03700181": (["MCL1"], 500),  # ABP, RESP at 125 Hz dropped
        "041s/041s": (["III", "I", "V"], 500),  # multi-segment, concatenated
        "s0010_re": (
            [*"i ii iii avr avl avf v1 v2 v3 v4 v5 v6".split(), *"vx vy vz".split()],  # noqa: SIM905
            1000,
        ),
    }
    for name, (names, fs) in expected.items():
        path = folder / f"{name}.hea"
        recording = wfdb.read_record(_files(path.parent), path.name)
        assert (recording.leads, recording.fs) == (names, fs)
    rec = wfdb.read_record(_files(folder / "041s"), "041s.hea")
    assert rec.signal.shape == (8000, 3) and rec.metadata == {"recorded_at": "1994-10-26T08:26:04"}


class _DictSpecs:
    """wfdb's header field specs as dicts: wfdb reads its pandas spec tables cell by cell,
    ~30 ms a header, which would make 500 records take 15 s instead of 2 s. Same cells."""

    def __init__(self, frame) -> None:
        self.index = list(frame.index)
        self._cells = frame.to_dict("index")
        self.loc = self

    def __getitem__(self, key: tuple[str, str]) -> object:
        return self._cells[key[0]][key[1]]


def test_every_ptbxl_record_reads_as_wfdb_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    if not PTBXL_DIR.is_dir():
        pytest.skip(f"PTB-XL records not found at {PTBXL_DIR}")
    monkeypatch.setattr(wfdb_ref_header, "SIGNAL_SPECS", _DictSpecs(wfdb_ref_header.SIGNAL_SPECS))
    monkeypatch.setattr(wfdb_ref_header, "RECORD_SPECS", _DictSpecs(wfdb_ref_header.RECORD_SPECS))
    headers = sorted(PTBXL_DIR.rglob("*.hea"))
    assert len(headers) == 500
    for hea in headers:
        dat = hea.with_suffix(".dat")
        recording = wfdb.read_record(
            {hea.name: hea.read_bytes(), dat.name: dat.read_bytes()}, hea.name
        )
        ref = wfdb_ref.rdrecord(str(hea.with_suffix("")))
        assert recording.leads == ref.sig_name and recording.fs == ref.fs == 500
        np.testing.assert_array_equal(recording.signal, ref.p_signal.astype(np.float32))


# -- every format, written by wfdb or packed by hand ---------------------------------------

BITS = {8: 8, 16: 16, 24: 24, 32: 32, 61: 16, 80: 8, 160: 16, 212: 12, 310: 10, 311: 10}
SPF = [2, 1, 2]  # multi-frame: the leads at 2 samples per frame, plus one at 1


def _digital(fmt: int, n: int, seed: int = 1) -> list[np.ndarray]:
    """Digital samples per signal spanning the format's range, one invalid value each."""
    rng = np.random.default_rng(seed)
    lo, hi = -(2 ** (BITS[fmt] - 1)), 2 ** (BITS[fmt] - 1) - 1
    if fmt == 8:  # differences must fit 8 bits
        return [np.cumsum(rng.integers(-120, 120, n * s)) + 7 for s in SPF]
    sigs = [rng.integers(lo + 1, hi + 1, n * s) for s in SPF]
    for k, sig in enumerate(sigs):
        sig[3 + k] = lo  # WFDB's invalid sample value: NaN
        sig[-1] = hi
    return sigs


def _pack(fmt: int, flat: np.ndarray) -> bytes:
    """Interleaved samples as WFDB stores them, for the formats wfdb cannot write."""
    if fmt == 8:  # already differences
        return flat.astype(np.int8).tobytes()
    if fmt == 61:
        return flat.astype(">i2").tobytes()
    if fmt == 160:
        return (flat + 32768).astype("<u2").tobytes()
    blocks = np.zeros(-(-flat.size // 3) * 3, np.int64)
    blocks[: flat.size] = flat & 0x3FF
    s0, s1, s2 = blocks[0::3], blocks[1::3], blocks[2::3]
    if fmt == 310:
        w0 = (s0 << 1) | ((s2 & 0x1F) << 11)
        w1 = (s1 << 1) | ((s2 >> 5) << 11)
        return np.stack([w0, w1], axis=1).astype("<u2").tobytes()
    assert fmt == 311
    return (s0 | (s1 << 10) | (s2 << 20)).astype("<u4").tobytes()


def write_record(folder: Path, fmt: int, n: int = 101, offset: int = 0) -> Path:
    """A 3-signal multi-frame record (I and V2 at 2 samples per frame, RESP at 1) in ``fmt``,
    in mV, uV and V with baselines, ``offset`` junk bytes before the samples; returns the
    header's path. wfdb writes the formats it can; the others are packed here."""
    sigs = _digital(fmt, n)
    name, leads_ = f"r{fmt}", ["I", "RESP", "V2"]
    units, gains, baselines = ["mV", "uV", "V"], [200.0, 10.0, 1000.0], [0, 5, -3]
    if fmt in (16, 24, 32, 80, 212):
        wfdb_ref.wrsamp(
            name, fs=250, units=units, sig_name=leads_, e_d_signal=sigs, samps_per_frame=SPF,
            fmt=[str(fmt)] * 3, adc_gain=gains, baseline=baselines, write_dir=str(folder),
        )  # fmt: skip
    else:
        if fmt == 8:  # first differences, each signal from its initial value (its first sample)
            sigs = [np.diff(s, prepend=s[0]) for s in sigs]
        frames = [s.reshape(n, spf) for s, spf in zip(sigs, SPF, strict=True)]
        flat = np.concatenate(frames, axis=1).reshape(-1)
        (folder / f"{name}.dat").write_bytes(_pack(fmt, flat))
        inits = [int(s[0]) for s in _digital(fmt, n)] if fmt == 8 else [0, 0, 0]
        lines = [f"{name} 3 250 {n}"] + [
            f"{name}.dat {fmt}x{spf} {g}({b})/{u} {BITS[fmt]} 0 {init} 0 0 {lead}"
            for spf, g, b, u, init, lead in zip(
                SPF, gains, baselines, units, inits, leads_, strict=True
            )
        ]
        (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    if offset:  # as .mat files have: a prefix before the samples, skipped by "+offset"
        dat, hea = folder / f"{name}.dat", folder / f"{name}.hea"
        dat.write_bytes(b"\xa5" * offset + dat.read_bytes())
        lines = hea.read_text().splitlines()
        for k, line in enumerate(lines[1:], 1):
            file_name, spec, rest = line.split(" ", 2)
            lines[k] = f"{file_name} {spec}+{offset} {rest}"
        hea.write_text("\n".join(lines) + "\n")
    return folder / f"{name}.hea"


@pytest.mark.parametrize("fmt", sorted(BITS))
def test_every_format_reads_as_wfdb_reads_it(tmp_path: Path, fmt: int) -> None:
    hea = write_record(tmp_path, fmt)
    recording = wfdb.read_record(_files(tmp_path), hea.name)
    # I and V2 at 2 samples per frame are the leads; RESP at 1 sample per frame is dropped.
    assert recording.leads == ["I", "V2"] and recording.fs == 500
    assert_same_as_wfdb(recording, hea.with_suffix(""))
    # And both equal the digital values written: lead I is in mV at gain 200, baseline 0.
    lead_i = _digital(fmt, 101)[0]
    invalid = (lead_i == -(2 ** (BITS[fmt] - 1))) & (fmt != 8)
    expected = np.where(invalid, np.nan, lead_i / 200.0).astype(np.float32)
    np.testing.assert_array_equal(recording.signal[:, 0], expected)
    assert np.isnan(recording.signal[:, 0]).any() == (fmt != 8)


@pytest.mark.parametrize("fmt", [16, 212, 311])
def test_byte_offset_skips_a_prefix(tmp_path: Path, fmt: int) -> None:
    hea = write_record(tmp_path, fmt, offset=24)
    recording = wfdb.read_record(_files(tmp_path), hea.name)
    assert_same_as_wfdb(recording, hea.with_suffix(""))


def test_skew_delays_a_signal_and_pads_with_nan(tmp_path: Path) -> None:
    """Skew k: the signal's sample of frame i is stored in frame i + k; past the end, NaN."""
    sig = np.random.default_rng(0).integers(-2000, 2000, (50, 3))
    wfdb_ref.wrsamp(
        "sk", fs=500, units=["mV"] * 3, sig_name=["I", "II", "V2"], d_signal=sig,
        fmt=["212"] * 3, adc_gain=[200.0] * 3, baseline=[0] * 3, write_dir=str(tmp_path),
    )  # fmt: skip
    hea = tmp_path / "sk.hea"
    hea.write_text(
        hea.read_text().replace(
            f"212 200.0(0)/mV 12 0 {sig[0, 2]}", f"212:3 200.0(0)/mV 12 0 {sig[0, 2]}"
        )
    )
    recording = wfdb.read_record(_files(tmp_path), hea.name)
    assert_same_as_wfdb(recording, hea.with_suffix(""))
    np.testing.assert_array_equal(recording.signal[:47, 2], (sig[3:, 2] / 200.0).astype(np.float32))
    assert np.isnan(recording.signal[47:, 2]).all()

    # With 2 samples per frame a skew of 3 frames is 6 samples (wfdb 4.3.1 pads only 3
    # with NaN and leaves 3 zeros, so this is checked against the unskewed record).
    hea = write_record(tmp_path, 212)
    plain = wfdb.read_record(_files(tmp_path), hea.name).signal
    lines = hea.read_text().splitlines()
    lines[3] = lines[3].replace("212x2", "212x2:3")  # V2 is 3 frames late in the file
    hea.write_text("\n".join(lines) + "\n")
    skewed = wfdb.read_record(_files(tmp_path), hea.name).signal
    np.testing.assert_array_equal(skewed[:-6, 1], plain[6:, 1])
    assert np.isnan(skewed[-6:, 1]).all()
    np.testing.assert_array_equal(skewed[:, 0], plain[:, 0])


def test_mat_signal_file_from_wfdb2mat(
    tmp_path: Path, shared_ecg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wfdb's wfdb_to_mat (like WFDB's wfdb2mat) writes RECm.mat and RECm.hea, whose byte
    offset skips the MAT-file header; a103l.mat in the shared data is the older v4 layout."""
    from wfdb.io.convert.matlab import wfdb_to_mat

    monkeypatch.chdir(tmp_path)
    wfdb_to_mat(str(shared_ecg / "wfdb" / "100"), sampto=20_000)
    files = _files(tmp_path)
    assert sorted(files) == ["100m.hea", "100m.mat"]
    recording = wfdb.read_record(files, "100m.hea")
    assert_same_as_wfdb(recording, tmp_path / "100m")
    assert recording.signal.shape == (20_000, 2)


def test_flac_written_by_wfdb_is_refused_with_what_to_do(tmp_path: Path) -> None:
    sig = np.random.default_rng(0).integers(-1000, 1000, (500, 2))
    wfdb_ref.wrsamp(
        "flac", fs=500, units=["mV", "mV"], sig_name=["I", "II"], d_signal=sig,
        fmt=["516", "516"], adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(tmp_path),
    )  # fmt: skip
    with pytest.raises(RejectedFile, match=r"format 516 \(FLAC-compressed\).*format 16") as e:
        wfdb.read_record(_files(tmp_path), "flac.hea")
    assert e.value.code == "wfdb_format_not_supported"


# -- range reads ---------------------------------------------------------------------------


def read_by_ranges(plan: wfdb.Plan, files: dict[str, bytes], start: int, stop: int):
    ranges = plan.byte_ranges(start, stop)
    chunks = {name: files[name][b0:b1] for name, (b0, b1) in ranges.items()}
    return plan.read(chunks, start, stop)


def _plan(files: dict[str, bytes], header_name: str) -> wfdb.Plan:
    header = wfdb_header.parse_header(files[header_name])
    segments = {}
    if header.segments:
        segments = {
            s.name: wfdb_header.parse_header(files[s.header_file])
            for s in header.segments
            if s.header_file
        }
    return wfdb.plan(header, {k: len(v) for k, v in files.items()}, segments)


RANGES = [(0, 1), (0, 101), (1, 2), (1, 4), (2, 7), (3, 100), (50, 51), (99, 101), (100, 101)]


@pytest.mark.parametrize("fmt", sorted(BITS))
def test_range_reads_equal_slices_of_the_whole(tmp_path: Path, fmt: int) -> None:
    """Frames [a, b) read from just their bytes equal the same rows of a whole read, for
    every format: 212 and 310/311 pack samples across byte boundaries (an odd number of
    samples per frame here), format 8 sums differences from the start."""
    hea = write_record(tmp_path, fmt)
    files = _files(tmp_path)
    whole = wfdb.read_record(files, hea.name).signal
    plan = _plan(files, hea.name)
    for a, b in RANGES:
        part = read_by_ranges(plan, files, a, b).signal
        np.testing.assert_array_equal(part, whole[a * 2 : b * 2], err_msg=f"frames {a}..{b}")
        (b0, b1) = plan.byte_ranges(a, b)[hea.stem + ".dat"]
        if fmt != 8:  # a range holds its own frames, not the whole file
            assert b1 - b0 <= (b - a + 1) * 5 * 4


def test_range_reads_across_segments_and_with_skew(tmp_path: Path, shared_ecg: Path) -> None:
    files = _files(shared_ecg / "wfdb" / "041s")
    plan = _plan(files, "041s.hea")
    whole = wfdb.read_record(files, "041s.hea").signal
    for a, b in [(0, 2000), (999, 1001), (1000, 1500), (3, 997), (1999, 2000)]:
        part = read_by_ranges(plan, files, a, b).signal
        np.testing.assert_array_equal(part, whole[a * 4 : b * 4])
    assert set(plan.byte_ranges(0, 10)) == {"041s01.dat"}
    assert set(plan.byte_ranges(995, 1005)) == {"041s01.dat", "041s02.dat"}

    hea = write_record(tmp_path, 212)
    lines = hea.read_text().splitlines()
    lines[1] = lines[1].replace("212x2", "212x2:5")
    hea.write_text("\n".join(lines) + "\n")
    files = _files(tmp_path)
    plan = _plan(files, hea.name)
    whole = wfdb.read_record(files, hea.name).signal
    for a, b in RANGES:
        np.testing.assert_array_equal(
            read_by_ranges(plan, files, a, b).signal, whole[a * 2 : b * 2]
        )


def test_variable_layout_multi_segment_record(tmp_path: Path) -> None:
    """A layout header names the signals; segments hold them in another order, in other
    formats and gains, or lack one (NaN)."""
    rng = np.random.default_rng(5)
    wfdb_ref.wrsamp(
        "seg1", fs=360, units=["mV"] * 3, sig_name=["I", "II", "V2"],
        d_signal=rng.integers(-500, 500, (100, 3)), fmt=["16"] * 3, adc_gain=[200.0] * 3,
        baseline=[0] * 3, write_dir=str(tmp_path),
    )  # fmt: skip
    wfdb_ref.wrsamp(
        "seg2", fs=360, units=["mV", "mV"], sig_name=["V2", "I"],
        d_signal=rng.integers(-500, 500, (80, 2)), fmt=["212"] * 2, adc_gain=[100.0] * 2,
        baseline=[5] * 2, write_dir=str(tmp_path),
    )  # fmt: skip
    layout = ["layout 3 360 0"] + [f"~ 0 200/mV 16 0 0 0 0 {lead}" for lead in ("I", "II", "V2")]
    (tmp_path / "layout.hea").write_text("\n".join(layout) + "\n")
    (tmp_path / "multi.hea").write_text("multi/3 3 360 180\nlayout 0\nseg1 100\nseg2 80\n")
    files = _files(tmp_path)
    recording = wfdb.read_record(files, "multi.hea")
    assert recording.leads == ["I", "II", "V2"] and recording.signal.shape == (180, 3)
    assert np.isnan(recording.signal).sum(axis=0).tolist() == [0, 80, 0]
    ref = wfdb_ref.rdrecord(str(tmp_path / "multi"))
    np.testing.assert_array_equal(recording.signal, ref.p_signal.astype(np.float32))
    assert wfdb_header.needed_files(wfdb_header.parse_header(files["multi.hea"])) == [
        "layout.hea",
        "seg1.hea",
        "seg2.hea",
    ]
    plan = _plan(files, "multi.hea")
    for a, b in [(0, 180), (90, 160), (99, 101), (100, 101), (150, 180)]:
        part = read_by_ranges(plan, files, a, b).signal
        np.testing.assert_array_equal(part, recording.signal[a:b])

    # A null segment, or one with none of the ECG signals, is a gap: no bytes back it, and
    # preparation would refuse any gap over 0.1 s. A huge one allocates nothing.
    (tmp_path / "multi.hea").write_text(
        "multi/4 3 360\nlayout 0\nseg1 100\n~ 999999999999\nseg2 80\n"
    )
    with pytest.raises(
        RejectedFile, match="segment 3 of the multi-segment record holds no ECG"
    ) as e:
        wfdb.read_record(_files(tmp_path), "multi.hea")
    assert e.value.code == "wfdb_gap"
    (tmp_path / "seg3.hea").write_text("seg3 1 360 50\nseg3.dat 16 200/mV 16 0 0 0 0 PLETH\n")
    (tmp_path / "seg3.dat").write_bytes(bytes(100))
    (tmp_path / "multi.hea").write_text("multi/4 3 360\nlayout 0\nseg1 100\nseg3 50\nseg2 80\n")
    with pytest.raises(RejectedFile, match=r"segment 3 .* \(a gap of 50 frames, 0\.1 s\)") as e:
        wfdb.read_record(_files(tmp_path), "multi.hea")


def test_plan_tells_length_rate_and_leads_before_reading(shared_ecg: Path) -> None:
    hea = shared_ecg / "wfdb" / "100.hea"
    plan = wfdb.plan(wfdb_header.parse_header(hea.read_bytes()), {"100.dat": 1_950_000})
    assert (plan.n_frames, plan.fs, plan.leads, plan.duration_s) == (
        650_000,
        360,
        ["MLII", "V5"],
        650_000 / 360,
    )
    assert wfdb_header.needed_files(wfdb_header.parse_header(hea.read_bytes())) == ["100.dat"]
    master = wfdb_header.parse_header((shared_ecg / "wfdb" / "041s" / "041s.hea").read_bytes())
    assert wfdb_header.needed_files(master) == ["041s01.hea", "041s02.hea"]
    ptb = wfdb_header.parse_header((shared_ecg / "wfdb" / "s0010_re.hea").read_bytes())
    assert wfdb_header.needed_files(ptb) == ["s0010_re.dat", "s0010_re.xyz"]


# -- damaged input -------------------------------------------------------------------------


def _record_100(shared_ecg: Path) -> dict[str, bytes]:
    folder = shared_ecg / "wfdb"
    return {
        "100.hea": (folder / "100.hea").read_bytes(),
        "100.dat": (folder / "100.dat").read_bytes(),
    }


def test_truncated_signal_file_is_refused_before_reading(shared_ecg: Path) -> None:
    files = _record_100(shared_ecg)
    files["100.dat"] = files["100.dat"][:1000]
    with pytest.raises(RejectedFile, match="holds 333 frames but the header declares 650,000") as e:
        wfdb.read_record(files, "100.hea")
    assert e.value.code == "truncated"


def test_missing_signal_file_is_named(shared_ecg: Path) -> None:
    files = _record_100(shared_ecg)
    del files["100.dat"]
    with pytest.raises(RejectedFile, match=r"signal file 100\.dat is missing") as e:
        wfdb.read_record(files, "100.hea")
    assert e.value.code == "missing_files"


def test_a_chunk_shorter_than_its_range_is_refused(shared_ecg: Path) -> None:
    files = _record_100(shared_ecg)
    plan = _plan(files, "100.hea")
    b0, b1 = plan.byte_ranges(10, 20)["100.dat"]
    with pytest.raises(RejectedFile, match="ends early") as e:
        plan.read({"100.dat": files["100.dat"][b0 : b1 - 1]}, 10, 20)
    assert e.value.code == "truncated"


def test_a_huge_claimed_length_allocates_nothing(shared_ecg: Path) -> None:
    files = _record_100(shared_ecg)
    files["100.hea"] = files["100.hea"].replace(b"360 650000", b"360 1000000000000")
    tracemalloc.start()
    try:
        with pytest.raises(RejectedFile, match="the file was cut short") as e:
            wfdb.read_record(files, "100.hea")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.code == "truncated" and peak < 1 << 20


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b"", "no record line"),
        (b"# only a comment\n", "no record line"),
        (b"rec x 360\n", "line 1 is not"),
        (b"rec 1 abc\n", "line 1 is not|not a number"),
        (b"rec 1 -5 100\nrec.dat 16 200 16 0 0 0 0 II\n", "line 1 is not|positive"),
        (b"rec 2 360 100\nrec.dat 16 200 16 0 0 0 0 II\n", "declares 2 signals but 1"),
        (b"rec 1 360 100\n../etc/passwd 16 200 16 0 0 0 0 II\n", "no folders"),
        (b"rec 1 360 100\nrec.dat 16x0 200 16 0 0 0 0 II\n", "samples per frame is outside"),
        (b"rec 1 360 100\nrec.dat 16 2e999 16 0 0 0 0 II\n", "not a finite number"),
        (b"rec 1 360 100\nrec.dat 16 200(abc) 16 0 0 0 0 II\n", "gain field"),
        (b"rec 1 360 100\nrec.dat 16 200 16 zero 0 0 0 II\n", "ADC zero is not an integer"),
        (b"rec 1 360 100 10:00:00 31/02/2020\nrec.dat 16 200 16 0 0 0 0 II\n", "base date"),
        (b"rec 1 360 100 10:00:00 01/01/9999\nrec.dat 16 200 16 0 0 0 0 II\n", "1900 and 2100"),
        (b"rec 1 360 100 25:61:00\nrec.dat 16 200 16 0 0 0 0 II\n", "base time"),
        (b"rec 999 360 100\n", "outside 0..256"),
        (b"rec/3 2 360 100\nseg1 50\n", "declares 3 segments but 1"),
        (b"rec\x00 1 360\n", "NUL"),
    ],
)
def test_malformed_headers_say_what_is_wrong(header: bytes, match: str) -> None:
    with pytest.raises(RejectedFile, match=match) as e:
        wfdb_header.parse_header(header)
    assert e.value.code == "bad_wfdb_header"


def test_reasons_never_quote_header_text() -> None:
    """Comments, descriptions and values carry patient data in real files: a reason names
    line numbers and fields, never their text."""
    bad_headers = [
        f"# {PHI}\nrec 1 360 100\nrec.dat 16 {PHI} 16 0 0 0 0 II\n",
        f"rec 1 360 100\nrec.dat 16 200/{PHI.replace(' ', '_')} 16 0 0 0 0 {PHI}\n",
        f"rec 1 360 100\nrec.dat 16 200 16 0 0 0 0 {PHI}\n",  # a missing lead
        f"rec 1 360 100 {PHI}\n",
        f"{PHI.replace(' ', '_')} 1 360 5000\nrec.dat 16 200 16 0 0 0 0 {PHI}\n",
    ]
    for text in bad_headers:
        files = {"rec.hea": text.encode(), "rec.dat": bytes(400)}
        with pytest.raises(RejectedFile) as e:
            recording = wfdb.read_record(files, "rec.hea")
            leads.select_leads(recording.signal, recording.leads, ("I", "II", "V2"))
        for word in PHI.split():
            assert word not in e.value.reason


@functools.cache
def _damage_cases(shared_ecg: Path) -> list[tuple[str, dict[str, bytes]]]:
    """Real records, signal files cut to 30-40 kB so that each example stays fast."""
    folder = shared_ecg / "wfdb"

    def record(*names: str, folder: Path = folder) -> dict[str, bytes]:
        return {
            n: (folder / n).read_bytes()[: None if n.endswith(".hea") else 30_000] for n in names
        }

    return [
        ("100.hea", record("100.hea", "100.dat")),
        ("03700181.hea", record("03700181.hea", "03700181.dat")),
        ("041s.hea", _files(folder / "041s")),
        ("s0010_re.hea", record("s0010_re.hea", "s0010_re.dat", "s0010_re.xyz")),
    ]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_damaged_records_only_ever_raise_rejected_file(
    shared_ecg: Path, data: st.DataObject
) -> None:
    """Truncations and bit flips of real headers and signal files: a Recording or a
    RejectedFile, nothing else (no IndexError, no MemoryError, no ValueError)."""
    header_name, files = data.draw(st.sampled_from(_damage_cases(shared_ecg)))
    files = dict(files)
    name = data.draw(st.sampled_from(sorted(files)))
    content = bytearray(files[name])
    if data.draw(st.booleans()) and content:
        del content[data.draw(st.integers(0, len(content) - 1)) :]
    for _ in range(data.draw(st.integers(0, 8))):
        if content:
            at = data.draw(st.integers(0, len(content) - 1))
            content[at] ^= 1 << data.draw(st.integers(0, 7))
    files[name] = bytes(content)
    try:
        recording = wfdb.read_record(files, header_name)
    except RejectedFile as e:
        assert e.reason and e.code
        return
    assert recording.signal.dtype == np.float32 and recording.signal.ndim == 2


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("0123456789 ./:x+-()e#\nabcI~_")), max_size=200))
def test_random_header_text_only_ever_raises_rejected_file(text: str) -> None:
    try:
        header = wfdb_header.parse_header(text.encode())
        recording = wfdb.plan(header, {name: 1000 for name in wfdb_header.needed_files(header)})
    except RejectedFile:
        return
    assert recording.n_frames >= 0
