"""Sample files for the local demo: every supported format, good and bad, synthetic and real.

`write_samples` writes them under ``<out>/<site>/<device>/<file>``, the layout below
``incoming/`` in the ingest bucket, and returns what each one should become:

- synthetic normal and anomalous recordings (``model_code/synthetic.py``) as JSON in the
  endpoint's own format ("seed"), rich JSON with metadata, CSV with unit suffixes, a time
  column and ``# key: value`` comments, NPY and NPZ, at several sampling rates and lead sets
  (extra leads, lower-case names, unnamed columns);
- EDF recordings written here, one of them a 24-h 3-lead Holter (~100 MB, made on the fly,
  never committed) that the pipeline scores in chunks as one file;
- files the Lambda must reject with a reason: too short, a missing lead, no numbers at all,
  a corrupt and a pickled ``.npy``, an unsupported format;
- the real PhysioNet recordings from ``../shared/data/ecg`` when that folder exists: CSV
  excerpts, WFDB records as separate parts (``.hea``, ``.dat``...) and one zipped.

Synthetic recordings are drawn from a fixed seed, so the set is the same on every run.
"""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED_ECG = REPO.parent / "shared" / "data" / "ecg"
MODEL_LEADS = ("I", "II", "V2")
MODEL_FS = 200.0

# What a file should end as. Synthetic files know their truth; a real recording's label is
# whatever the model says, so it is only expected to be scored.
NORMAL = "normal"
ANOMALOUS = "anomalous"
SCORED = "scored"
REJECTED = "rejected"


@dataclass(frozen=True)
class Sample:
    """One file to upload: its path below ``incoming/`` and what it should become."""

    path: str  # "<site>/<device>/<file>"
    expect: str  # NORMAL, ANOMALOUS, SCORED or REJECTED
    what: str  # one line for people: format, rate, leads, why it is there
    part_of: str | None = None  # a WFDB part: the path of its record's header (its item's)

    @property
    def item_path(self) -> str:
        """Whose item tells what became of this file."""
        return self.part_of or self.path

    @property
    def site(self) -> str:
        return self.path.split("/")[0]

    @property
    def device(self) -> str:
        return self.path.split("/")[1]


def load_synthetic() -> ModuleType:
    """``model_code/synthetic.py`` as a module, loaded by path: model_code is not a package
    (it is the model archive's flat code/ dir), and sys.path stays untouched."""
    path = REPO / "model_code" / "synthetic.py"
    spec = importlib.util.spec_from_file_location("ecg_synthetic", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _npz(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _csv(
    signal: np.ndarray,
    fs: float,
    columns: Sequence[str],
    comments: dict[str, str] | None = None,
    time_column: bool = True,
) -> bytes:
    lines = [f"# {k}: {v}" for k, v in (comments or {}).items()]
    header = (["time_s"] if time_column else []) + list(columns)
    lines.append(",".join(header))
    for i, row in enumerate(signal):
        cells = [f"{i / fs:.4f}"] if time_column else []
        cells += [f"{v:.4f}" for v in row]
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode("utf-8")


def edf_bytes(
    signal: np.ndarray, fs: int, leads: Sequence[str], start: datetime, repeat: int = 1
) -> bytes:
    """A plain EDF file (1-s data records, 16-bit, uV) of ``signal`` [T, C] in mV, played
    ``repeat`` times: what a Holter or patch exports. Written with NumPy, not a library, as a
    device would (and a day is a short recording repeated, not 400 MB of floats in memory)."""
    n_records = signal.shape[0] // fs * repeat
    ns = len(leads)
    phys = 10_000.0  # +/-10 mV in uV
    field = lambda text, width: text.ljust(width)[:width]  # noqa: E731
    head = "".join(
        [
            field("0", 8),
            field("X X X X", 80),
            field(
                f"Startdate {start.day:02d}-{start:%b}-{start.year} X X X".upper().replace(
                    "STARTDATE", "Startdate"
                ),
                80,
            ),
            field(f"{start:%d.%m.%y}", 8),
            field(f"{start:%H.%M.%S}", 8),
            field(str(256 * (ns + 1)), 8),
            field("", 44),
            field(str(n_records), 8),
            field("1", 8),
            field(str(ns), 4),
        ]
    )
    columns = [
        [field(f"ECG {lead}", 16) for lead in leads],
        [field("AgAgCl electrode", 80)] * ns,
        [field("uV", 8)] * ns,
        [field(f"{-phys:g}", 8)] * ns,
        [field(f"{phys:g}", 8)] * ns,
        [field("-32768", 8)] * ns,
        [field("32767", 8)] * ns,
        [field("HP:0.05Hz LP:40Hz", 80)] * ns,
        [field(str(fs), 8)] * ns,
        [field("", 32)] * ns,
    ]
    head += "".join("".join(column) for column in columns)
    once = signal[: signal.shape[0] // fs * fs]
    digital = np.clip(np.round(once * 1000 / phys * 32767.5 - 0.5), -32768, 32767)
    records = digital.astype("<i2").reshape(-1, fs, ns).transpose(0, 2, 1)
    return head.encode("ascii") + records.tobytes() * repeat


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _rounded(signal: np.ndarray) -> list[list[float]]:
    return [[round(float(v), 4) for v in row] for row in signal]


def _ago(hours: float) -> str:
    """A recorded-at time this many hours back (so "the last day" queries find the demo's)."""
    moment = datetime.now(UTC) - timedelta(hours=hours)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def synthetic_samples(seed: int = 20261127) -> list[tuple[Sample, bytes]]:
    """Good recordings in every format the Lambda reads, normal and anomalous."""
    syn = load_synthetic()
    rng = np.random.default_rng(seed)

    def make(kind: str, seconds: float, fs: float, leads: Sequence[str]) -> np.ndarray:
        return np.asarray(syn.synthesize(kind, seconds, fs, list(leads), rng), dtype=np.float32)

    def expect(kind: str) -> str:
        return ANOMALOUS if syn.is_anomalous(kind) else NORMAL

    out: list[tuple[Sample, bytes]] = []

    def add(path: str, kind: str, what: str, body: bytes) -> None:
        out.append((Sample(path, expect(kind), f"{kind}: {what}"), body))

    # JSON in the endpoint's own request format: one 10 s window at the model's rate.
    for kind in ("normal", "af"):
        x = make(kind, 10.0, MODEL_FS, MODEL_LEADS)
        add(
            f"clinic-a/holter-01/seed_{kind}.json",
            kind,
            "JSON endpoint format [2000, 3], 200 Hz",
            _json({"signals": _rounded(x)}),
        )
    # Rich JSON: [T, C] with rate, leads and recording metadata.
    for kind, fs, seconds in (("normal", 500.0, 30.0), ("st_elevation", 250.0, 20.0)):
        x = make(kind, seconds, fs, MODEL_LEADS)
        doc = {
            "signals": _rounded(x),
            "sampling_rate_hz": fs,
            "leads": list(MODEL_LEADS),
            "recorded_at": _ago(3),
            "record_id": f"demo-{kind}",
        }
        add(
            f"clinic-a/holter-01/rich_{kind}_{int(fs)}hz.json",
            kind,
            f"JSON with metadata, {int(fs)} Hz, {int(seconds)} s",
            _json(doc),
        )
    # CSV: 12 leads at 500 Hz with unit suffixes, comments and a time column.
    twelve = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    for kind in ("normal", "pvc"):
        x = make(kind, 20.0, 500.0, twelve)
        add(
            f"clinic-a/ecg-cart-3/twelve_lead_{kind}.csv",
            kind,
            "CSV, 12 leads (I_mV ...) at 500 Hz, comments, time column",
            _csv(x, 500.0, [f"{lead}_mV" for lead in twelve], {"sampling_rate_hz": "500"}),
        )
    # CSV with lower-case names at 360 Hz (the MIT-BIH rate), the model's leads reordered.
    leads = ("v2", "ii", "i")
    x = make("tachycardia", 15.0, 360.0, leads)
    add(
        "ward-b/monitor-07/lowercase_tachycardia_360hz.csv",
        "tachycardia",
        "CSV, lower-case leads in another order, 360 Hz",
        _csv(x, 360.0, leads, {"sampling_rate_hz": "360", "recorded_at": _ago(5)}),
    )
    # NPY in the endpoint's own batch format [N, 2000, 3] (unnamed leads in model order): the
    # only NPY taken at the model's 200 Hz without a rate. An .npy [T, C] holds no rate and
    # the demo uploads without S3 metadata, so it would be REJECTED (no_rate).
    for kind in ("normal", "bradycardia"):
        x = make(kind, 30.0, MODEL_FS, MODEL_LEADS)
        add(
            f"ward-b/monitor-07/unnamed_{kind}.npy",
            kind,
            "NPY [3, 2000, 3], the endpoint's batch format, unnamed leads, 200 Hz",
            _npy(x.reshape(-1, 2000, len(MODEL_LEADS))),
        )
    # NPZ: signals with rate and lead names, 1000 Hz.
    for kind in ("normal", "wide_qrs"):
        x = make(kind, 12.0, 1000.0, ("II", "V2", "I", "V5"))
        body = _npz(
            signals=x,
            sampling_rate_hz=np.float64(1000.0),
            leads=np.array(["II", "V2", "I", "V5"]),
        )
        add(
            f"ward-b/patch-12/npz_{kind}_1000hz.npz",
            kind,
            "NPZ with leads and rate, 4 leads at 1000 Hz",
            body,
        )
    return out


def bad_samples(seed: int = 7) -> list[tuple[Sample, bytes]]:
    """Files the Lambda must reject, each with a reason a person can act on."""
    syn = load_synthetic()
    rng = np.random.default_rng(seed)
    out: list[tuple[Sample, bytes]] = []

    def add(path: str, what: str, body: bytes) -> None:
        out.append((Sample(path, REJECTED, what), body))

    short = syn.synthesize("normal", 4.0, MODEL_FS, list(MODEL_LEADS), rng)
    add(
        "clinic-a/holter-01/too_short.json",
        "4 s recording: shorter than one 10 s window",
        _json(
            {"signals": _rounded(short), "sampling_rate_hz": MODEL_FS, "leads": list(MODEL_LEADS)}
        ),
    )
    other = syn.synthesize("normal", 12.0, 500.0, ["I", "aVR", "V5"], rng)
    add(
        "clinic-a/ecg-cart-3/missing_lead_ii.csv",
        "CSV without leads II and V2",
        _csv(other, 500.0, ["I", "aVR", "V5"], {"sampling_rate_hz": "500"}),
    )
    add(
        "ward-b/monitor-07/all_nan.npy",
        "NPY [2, 2000, 3] holding only NaN",
        _npy(np.full((2, 2000, 3), np.nan, dtype=np.float32)),
    )
    add("ward-b/monitor-07/corrupt.npy", "bytes that are not a .npy file", b"\x93NUMPY garbage")
    pickled = _pickled_npy()
    add("ward-b/monitor-07/pickled_objects.npy", "NPY of Python objects (needs pickle)", pickled)
    add("ward-b/patch-12/notes.txt", "not an ECG format", b"patient was resting\n")
    add("ward-b/patch-12/empty.csv", "empty file", b"")
    return out


def _pickled_npy() -> bytes:
    """An object-dtype .npy, which only unpickling could read: the Lambda must refuse it."""
    buf = io.BytesIO()
    np.save(buf, np.array([{"lead": "I"}, None], dtype=object), allow_pickle=True)
    return buf.getvalue()


def real_samples(shared: Path = SHARED_ECG) -> list[tuple[Sample, bytes]]:
    """The real PhysioNet recordings, as the files are (empty when the folder is absent):
    CSV excerpts, WFDB records uploaded part by part, and one record zipped."""
    out: list[tuple[Sample, bytes]] = []
    csv_dir = shared / "csv"
    notes: dict[str, tuple[str, str]] = {
        "ptbdb_s0010_re_i_ii_v2_38s_1000hz.csv": (SCORED, "real PTB i, ii, v2 at 1000 Hz"),
        "mimicdb_041s_III_I_V_16s_500hz.csv": (REJECTED, "real MIMIC III, I, V: no V2"),
        "ptbdb_s0010_re_vxvyvz_10s_1000hz.csv": (REJECTED, "real PTB Frank leads only"),
    }
    if csv_dir.is_dir():
        for path in sorted(csv_dir.glob("*.csv")):
            expect, what = notes.get(path.name, (SCORED, "real recording"))
            out.append((Sample(f"physionet/csv/{path.name}", expect, what), path.read_bytes()))
    wfdb_dir = shared / "wfdb"
    records = {
        "s0010_re": (SCORED, "real PTB record, 15 leads at 1000 Hz (.hea, .dat, .xyz)"),
        "test01_00s": (REJECTED, "real motion-artifact record: 8 s, shorter than a window"),
    }
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        for stem, (expect, what) in records.items():
            header_path = wfdb_dir / f"{stem}.hea"
            if not header_path.is_file():
                continue
            header = f"physionet/wfdb/{stem}.hea"
            out.append((Sample(header, expect, what), header_path.read_bytes()))
            for name in _signal_files(header_path):
                body = (wfdb_dir / name).read_bytes()
                part = Sample(f"physionet/wfdb/{name}", expect, f"a part of {stem}", header)
                out.append((part, body))
                if stem == "s0010_re":
                    archive.writestr(f"{stem}/{name}", body)
            if stem == "s0010_re":
                archive.writestr(f"{stem}/{stem}.hea", header_path.read_bytes())
    if zipped.tell() > 22:  # more than an empty archive
        what = "the PTB record zipped (one record: .hea and its files)"
        out.append((Sample("physionet/zip/s0010_re.zip", SCORED, what), zipped.getvalue()))
    return out


def _signal_files(header: Path) -> list[str]:
    """The files a (single-segment) WFDB header names: its signal lines' first field."""
    lines = [ln for ln in header.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return list(dict.fromkeys(line.split()[0] for line in lines[1:]))


def device_samples(seed: int = 11) -> list[tuple[Sample, bytes]]:
    """EDF files as Holters and patches export them: a 10-minute recording, and a 24-hour
    3-lead Holter at 200 Hz (~100 MB: made here, never committed) that the pipeline reads
    by range in hour-long chunks and scores as one file of 8,640 windows."""
    syn = load_synthetic()
    rng = np.random.default_rng(seed)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    ten_minutes = syn.synthesize("normal", 600.0, 500.0, list(MODEL_LEADS), rng)
    holter_minute = syn.synthesize("normal", 60.0, 200.0, list(MODEL_LEADS), rng)
    return [
        (
            Sample(
                "ward-c/patch-21/ten_minutes.edf", NORMAL, "normal: EDF, 3 leads, 500 Hz, 10 min"
            ),
            edf_bytes(ten_minutes, 500, MODEL_LEADS, start),
        ),
        (
            Sample(
                "ward-c/holter-5/holter_24h.edf",
                SCORED,
                "EDF Holter, 3 leads at 200 Hz, 24 h: scored in 24 chunks as one file",
            ),
            edf_bytes(holter_minute, 200, MODEL_LEADS, start, repeat=24 * 60),
        ),
    ]


def all_samples(shared: Path = SHARED_ECG) -> list[tuple[Sample, bytes]]:
    return synthetic_samples() + device_samples() + bad_samples() + real_samples(shared)


def write_samples(
    out_dir: Path,
    shared: Path = SHARED_ECG,
    make: Callable[[Path], list[tuple[Sample, bytes]]] = all_samples,
) -> list[Sample]:
    """Write every sample under ``out_dir/<site>/<device>/<file>``; return them in order."""
    samples = []
    for sample, body in make(shared):
        path = out_dir / sample.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        samples.append(sample)
    return samples
