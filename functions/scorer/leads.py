"""Which channels are ECG leads (names, units, rates as real files give them), and the
model's leads taken or derived from them.

``canonical`` maps a channel name to one of the twelve standard leads (or ``-aVR``, the
inverted aVR of the Cabrera display) or to None. ``select_leads`` picks the model's leads
from a [T, C] signal, deriving a missing limb lead from two others:

- the six limb leads are all combinations of two: in the basis (I, II), III = II - I
  (Einthoven), aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2 (Goldberger). No two of
  them are collinear, so any two recorded limb leads give the other four exactly.
- chest leads (V1-V6) are each their own electrode: they can never be derived.

Non-standard channel names ("ECG 1", "PLETH", "MCL1", "vx"...) are never echoed in a
reason: they can carry patient data. They are counted instead. MCL1 is a modified chest
lead recorded with other electrodes, not V1, and is not treated as one; nor are C1-C6,
which in EDF polysomnography files are EEG electrodes (C3, C4), not chest leads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from scorer.errors import RejectedFile

LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
CHEST = ("V1", "V2", "V3", "V4", "V5", "V6")
STANDARD = LIMB + CHEST
INVERTED_AVR = "-aVR"

# Each limb lead as (weight of I, weight of II).
_VECTOR = {
    "I": (Fraction(1), Fraction(0)),
    "II": (Fraction(0), Fraction(1)),
    "III": (Fraction(-1), Fraction(1)),
    "aVR": (Fraction(-1, 2), Fraction(-1, 2)),
    "aVL": (Fraction(1), Fraction(-1, 2)),
    "aVF": (Fraction(-1, 2), Fraction(1)),
    INVERTED_AVR: (Fraction(1, 2), Fraction(1, 2)),
}
# Pairs tried first when more than two limb leads are recorded: the most common recordings,
# and for I, II, III the textbook formulas with weights +-1.
_PREFERRED_PAIRS = (("I", "II"), ("II", "III"), ("I", "III"))

_KEYS = {lead.casefold(): lead for lead in STANDARD}
_KEYS |= {"ml" + lead.casefold(): lead for lead in ("I", "II", "III")}  # MIT-BIH's MLII
_KEYS |= {"ml1": "I", "ml2": "II", "ml3": "III"}
_KEYS |= {"d" + lead.casefold(): lead for lead in ("I", "II", "III")}  # DI, DII, DIII
_KEYS[INVERTED_AVR.casefold()] = INVERTED_AVR
_PREFIX = re.compile(r"^(?:lead|ecg|ekg)[\s_:.\-]*")
_UNIT_SUFFIX = re.compile(r"(?:[\s_]+|\s*[(\[])(?:mv|uv|µv|μv|nv|v)[)\]]?$")


# Millivolts per unit, for the unit spellings headers use (EDF, WFDB, CSV suffixes).
MV_PER_UNIT = {
    "mv": 1.0,
    "millivolt": 1.0,
    "millivolts": 1.0,
    "uv": 1e-3,
    "µv": 1e-3,
    "μv": 1e-3,
    "microvolt": 1e-3,
    "microvolts": 1e-3,
    "nv": 1e-6,
    "v": 1e3,
    "volt": 1e3,
    "volts": 1e3,
}


def mv_per_unit(unit: str) -> float | None:
    """The factor taking values in ``unit`` to mV, or None when it is no voltage."""
    return MV_PER_UNIT.get(unit.strip().casefold())


def canonical(name: str | None) -> str | None:
    """The standard lead a channel name means ('MLII' -> 'II', 'ECG_v2 ' -> 'V2'), or None."""
    if not isinstance(name, str):
        return None
    key = name.strip().casefold()
    key = _UNIT_SUFFIX.sub("", key)
    for _ in range(2):  # "ECG Lead II"
        key = _PREFIX.sub("", key, count=1)
    key = key.strip().replace(" ", "")
    return _KEYS.get(key)


class Selection(NamedTuple):
    """The model's leads, in the model's order, and the ones computed from others."""

    signal: np.ndarray  # float32 [T, len(model_leads)], a new array the caller may modify
    derived: list[str]


def _recipe(lead: str, found: dict[str, int]) -> list[tuple[float, int]] | None:
    """Weights and columns giving a limb lead from two recorded limb leads, or None."""
    limb = [name for name in found if name in _VECTOR]
    pairs = [p for p in _PREFERRED_PAIRS if p[0] in found and p[1] in found]
    pairs += [(a, b) for i, a in enumerate(limb) for b in limb[i + 1 :]]
    for a, b in pairs:
        (a1, a2), (b1, b2) = _VECTOR[a], _VECTOR[b]
        det = a1 * b2 - a2 * b1
        if det == 0:  # a lead and its inverse
            continue
        t1, t2 = _VECTOR[lead]
        # Solve t = x * a + y * b (Cramer's rule, exact in fractions).
        x = (t1 * b2 - t2 * b1) / det
        y = (a1 * t2 - a2 * t1) / det
        return [(float(w), found[name]) for w, name in ((x, a), (y, b)) if w != 0]
    return None


def _listing(found: Sequence[str], others: int) -> str:
    parts = []
    if found:
        parts.append("standard lead" + ("s " if len(found) > 1 else " ") + ", ".join(found))
    if others:
        parts.append(f"{others} other channel" + ("s" if others > 1 else ""))
    return " and ".join(parts) if parts else "no channels"


def select_leads(
    signal: np.ndarray, names: Sequence[str | None] | None, model_leads: Sequence[str]
) -> Selection:
    """Take (or derive) ``model_leads`` from ``signal`` [T, C] whose channels are ``names``.

    Unnamed channels (``names`` None) are taken in order when there are exactly as many as
    the model needs. Raises RejectedFile ``missing_leads``, ``duplicate_leads`` or
    ``unnamed_channels`` with a reason that names standard leads only.
    """
    needed = ", ".join(model_leads)
    if names is None:
        if signal.shape[1] != len(model_leads):
            raise RejectedFile(
                f"the file has {signal.shape[1]} unnamed channel(s); the model needs "
                f"{len(model_leads)} leads ({needed}): name the leads, or send exactly "
                f"{len(model_leads)} channels in the order {needed}",
                "unnamed_channels",
            )
        return Selection(signal.astype(np.float32), [])  # a copy: prepare works in place
    if len(names) != signal.shape[1]:
        raise ValueError(f"{len(names)} names for {signal.shape[1]} channels")
    found: dict[str, int] = {}
    duplicates: list[str] = []
    others = 0
    for column, name in enumerate(names):
        lead = canonical(name)
        if lead is None:
            others += 1
        elif lead in found:
            duplicates.append(lead)
        else:
            found[lead] = column
    if duplicates:
        twice = ", ".join(sorted(set(duplicates), key=_order))
        raise RejectedFile(
            f"lead {twice} appears more than once (channel names that mean the same lead, "
            "e.g. 'II' and 'MLII'); keep one channel per lead",
            "duplicate_leads",
        )
    out = np.empty((signal.shape[0], len(model_leads)), np.float32)
    derived, missing = [], []
    for j, wanted in enumerate(model_leads):
        lead = canonical(wanted)
        if lead is None:
            raise ValueError(f"model lead {wanted!r} is not a standard lead")
        if lead in found:
            out[:, j] = signal[:, found[lead]]
            continue
        recipe = _recipe(lead, found) if lead in _VECTOR else None
        if recipe is None:
            missing.append(lead)
            continue
        total = np.zeros(signal.shape[0])  # summed in float64, one lead at a time
        for weight, column in recipe:
            total += weight * signal[:, column]
        out[:, j] = total
        derived.append(lead)
    if missing:
        listed = sorted(found, key=_order)
        raise RejectedFile(
            f"missing lead{'s' if len(missing) > 1 else ''} {', '.join(missing)}: found "
            f"{_listing(listed, others)}; the model needs {needed} (names match case-"
            "insensitively, e.g. 'ii', 'MLII', 'ECG II'; a missing limb lead I, II, III, "
            "aVR, aVL or aVF is derived from any two others; V1-V6 cannot be derived)",
            "missing_leads",
        )
    return Selection(out, derived)


def ecg_channels(names: Sequence[str | None], rates: Sequence[float]) -> list[int]:
    """The channels to read from a record whose channels have different rates.

    Every channel at the rate of the standard leads is kept (other ECG channels at that
    rate count in a missing-lead reason); channels at other rates (blood pressure,
    respiration, plethysmogram...) are dropped. Standard leads at different rates: a
    RejectedFile, as resampling each to one rate is the device's or exporter's job. No
    standard lead at all: the fastest channels are kept, as ECG is sampled fastest.
    """
    if len(set(rates)) <= 1:
        return list(range(len(rates)))
    lead_rates: dict[str, float] = {}
    for name, rate in zip(names, rates, strict=True):
        lead = canonical(name)
        if lead is not None:
            lead_rates.setdefault(lead, rate)
    if len(set(lead_rates.values())) > 1:
        listed = ", ".join(
            f"{lead} at {rate:g} Hz" for lead, rate in sorted(lead_rates.items(), key=_by_lead)
        )
        raise RejectedFile(
            f"the leads are recorded at different rates ({listed}); export the ECG leads at "
            "one sampling rate",
            "mixed_rates",
        )
    keep = next(iter(lead_rates.values())) if lead_rates else max(rates)
    return [i for i, rate in enumerate(rates) if rate == keep]


def _by_lead(item: tuple[str, float]) -> int:
    return _order(item[0])


def _order(lead: str) -> int:
    return STANDARD.index(lead) if lead in STANDARD else len(STANDARD)
