"""Lead names as files spell them, derived limb leads, and reasons without patient data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_ECG
from scorer import leads
from scorer.errors import RejectedFile
from scorer.leads import canonical, ecg_channels, select_leads
from scorer.wfdb import read_record

MODEL = ("I", "II", "V2")
PHI = "Jane Roe 1957-03-02"


@pytest.mark.parametrize(
    ("name", "lead"),
    [
        ("I", "I"),
        ("ii", "II"),
        (" III ", "III"),
        ("MLII", "II"),
        ("ML2", "II"),
        ("mlI", "I"),
        ("Lead II", "II"),
        ("LEAD_II", "II"),
        ("ECG II", "II"),
        ("ECG_II", "II"),
        ("ECG-V2", "V2"),
        ("EKG aVF", "aVF"),
        ("ECG Lead V5", "V5"),
        ("II_mV", "II"),
        ("V2 (mV)", "V2"),
        ("V2 [uV]", "V2"),
        ("DI", "I"),
        ("DII", "II"),
        ("DIII", "III"),
        ("V2 ", "V2"),
        ("v6", "V6"),
        ("AVR", "aVR"),
        ("aVL", "aVL"),
        ("avf", "aVF"),
        ("-aVR", "-aVR"),
    ],
)
def test_aliases_real_files_use(name: str, lead: str) -> None:
    assert canonical(name) == lead


@pytest.mark.parametrize(
    "name",
    ["ECG 1", "ECG1", "CH1", "PLETH", "RESP", "ABP", "MCL1", "V", "vx", "C3", "V7", "", None],
)
def test_anonymous_and_other_channels_are_no_standard_lead(name: str | None) -> None:
    assert canonical(name) is None


def test_leads_are_taken_by_name_in_the_model_order() -> None:
    signal = np.arange(40, dtype=np.float32).reshape(10, 4)
    selection = select_leads(signal, ["V2", "Lead I", "PLETH", "mlii"], MODEL)
    np.testing.assert_array_equal(selection.signal, signal[:, [1, 3, 0]])
    assert selection.derived == [] and selection.signal.dtype == np.float32


def test_unnamed_channels_are_taken_in_order_when_exactly_as_many() -> None:
    signal = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    np.testing.assert_array_equal(select_leads(signal, None, MODEL).signal, signal)
    with pytest.raises(RejectedFile, match="2 unnamed channel") as e:
        select_leads(signal[:, :2], None, MODEL)
    assert e.value.code == "unnamed_channels"


# In the (I, II) basis: the hand formulas, each lead from I and II.
FORMULAS = {
    "I": lambda i, ii: i,
    "II": lambda i, ii: ii,
    "III": lambda i, ii: ii - i,
    "aVR": lambda i, ii: -(i + ii) / 2,
    "aVL": lambda i, ii: i - ii / 2,
    "aVF": lambda i, ii: ii - i / 2,
}


@pytest.mark.parametrize("pair", [(a, b) for a in leads.LIMB for b in leads.LIMB if a < b])
def test_any_two_limb_leads_give_the_other_four(pair: tuple[str, str]) -> None:
    rng = np.random.default_rng(1)
    i, ii = rng.normal(size=(2, 500))
    signal = np.stack([FORMULAS[pair[0]](i, ii), FORMULAS[pair[1]](i, ii), rng.normal(size=500)], 1)
    selection = select_leads(signal, [pair[0], pair[1], "V2"], leads.LIMB)
    assert sorted(selection.derived) == sorted(set(leads.LIMB) - set(pair))
    for j, lead in enumerate(leads.LIMB):
        np.testing.assert_allclose(selection.signal[:, j], FORMULAS[lead](i, ii), atol=1e-12)


def test_einthoven_by_hand_formula_exactly() -> None:
    rng = np.random.default_rng(2)
    ii, iii, v2 = rng.normal(size=(3, 100)).astype(np.float32)
    selection = select_leads(np.stack([ii, iii, v2], 1), ["II", "III", "V2"], MODEL)
    assert selection.derived == ["I"]
    # Summed in float64, stored as float32 like every lead prepare works on.
    expected = (ii.astype(np.float64) - iii).astype(np.float32)
    np.testing.assert_array_equal(selection.signal[:, 0], expected)


def test_inverted_avr_gives_avr() -> None:
    x = np.random.default_rng(3).normal(size=(100, 2))
    selection = select_leads(x, ["-aVR", "II"], ("aVR", "I"))
    np.testing.assert_array_equal(selection.signal[:, 0], (-x[:, 0]).astype(np.float32))
    assert selection.derived == ["aVR", "I"]
    np.testing.assert_allclose(selection.signal[:, 1], 2 * x[:, 0] - x[:, 1])  # I = -2 aVR - II


def test_derived_leads_match_recorded_ones_on_ptbxl() -> None:
    """PTB-XL records all six limb leads (in 1 uV steps): deriving each from I and II, or I
    from II and III, gives the recorded lead within that rounding."""
    folder = SHARED_ECG.parent / "ptbxl" / "records500" / "00000"
    if not folder.is_dir():
        pytest.skip(f"PTB-XL records not found at {folder}")
    for hea in sorted(folder.glob("*.hea"))[:50]:
        dat = hea.with_suffix(".dat")
        rec = read_record({hea.name: hea.read_bytes(), dat.name: dat.read_bytes()}, hea.name)
        assert rec.leads is not None
        recorded = select_leads(rec.signal, rec.leads, leads.LIMB).signal
        only_ii_iii = [n if canonical(n) in ("II", "III", "V2") else "x" for n in rec.leads]
        derived_i = select_leads(rec.signal, only_ii_iii, MODEL)
        assert derived_i.derived == ["I"]
        np.testing.assert_allclose(derived_i.signal[:, 0], recorded[:, 0], atol=1.0001e-3)
        only_i_ii = [n if canonical(n) in ("I", "II") else "x" for n in rec.leads]
        derived = select_leads(rec.signal, only_i_ii, leads.LIMB)
        assert derived.derived == ["III", "aVR", "aVL", "aVF"]
        np.testing.assert_allclose(derived.signal, recorded, atol=1.5001e-3)


def test_missing_chest_lead_names_standard_leads_and_counts_others() -> None:
    names = ["I", "II", "III", PHI, "ECG 2 " + PHI]
    with pytest.raises(RejectedFile) as e:
        select_leads(np.zeros((10, 5)), names, MODEL)
    assert e.value.code == "missing_leads"
    assert e.value.reason.startswith(
        "missing lead V2: found standard leads I, II, III and 2 other channels; "
        "the model needs I, II, V2"
    )
    assert "V1-V6 cannot be derived" in e.value.reason
    for word in PHI.split():
        assert word not in e.value.reason


def test_one_limb_lead_is_not_enough_to_derive() -> None:
    with pytest.raises(RejectedFile, match="missing lead I: found standard leads II, V2 and"):
        select_leads(np.zeros((10, 3)), ["II", "V2", "MCL1"], MODEL)
    with pytest.raises(RejectedFile, match="missing leads I, II, V2: found 3 other channels"):
        select_leads(np.zeros((10, 3)), ["ECG 1", "ECG 2", "ECG 3"], MODEL)


def test_duplicated_lead_is_refused_naming_the_standard_lead_only() -> None:
    with pytest.raises(RejectedFile, match="lead II appears more than once") as e:
        select_leads(np.zeros((10, 4)), ["I", "Lead ii", "ECG_II", "V2"], MODEL)
    assert e.value.code == "duplicate_leads"
    assert "Lead ii" not in e.value.reason and "ECG_II" not in e.value.reason


def test_multi_rate_keeps_the_leads_rate_and_drops_the_rest() -> None:
    assert ecg_channels(["I", "II", "ABP", "V2"], [500, 500, 125, 500]) == [0, 1, 3]
    assert ecg_channels(["II", "III", "V", "Resp"], [250, 250, 250, 62.5]) == [0, 1, 2]
    assert ecg_channels(["MCL1", "ABP", "RESP"], [500, 125, 125]) == [0]  # fastest
    assert ecg_channels(["I", "II"], [500, 500]) == [0, 1]
    with pytest.raises(RejectedFile, match=r"I at 500 Hz, II at 250 Hz") as e:
        ecg_channels(["I", "II", PHI], [500, 250, 500])
    assert e.value.code == "mixed_rates" and "Jane" not in e.value.reason


def test_real_records_the_issue_named(shared_ecg: Path) -> None:
    """3 of 5 real records could not be scored for lead names: now MIT-BIH's MLII, PTB's
    lower-case names and 041s's I/III (II derived) give the model's leads where they exist."""
    folder = shared_ecg / "wfdb"

    def files(*names: str, sub: str = "") -> dict[str, bytes]:
        return {n: (folder / sub / n).read_bytes() for n in names}

    ptb = read_record(files("s0010_re.hea", "s0010_re.dat", "s0010_re.xyz"), "s0010_re.hea")
    assert select_leads(ptb.signal, ptb.leads, MODEL).derived == []
    mimic = read_record(files("041s.hea", "041s01.hea", "041s01.dat", "041s02.hea",
                              "041s02.dat", sub="041s"), "041s.hea")  # fmt: skip
    with pytest.raises(RejectedFile, match="missing lead V2: found standard leads I, III and 1"):
        select_leads(mimic.signal, mimic.leads, MODEL)
    assert select_leads(mimic.signal, mimic.leads, ("I", "II", "III")).derived == ["II"]
    mitdb = read_record(files("100.hea", "100.dat"), "100.hea")
    with pytest.raises(RejectedFile, match="missing leads I, V2: found standard leads II, V5"):
        select_leads(mitdb.signal, mitdb.leads, MODEL)
