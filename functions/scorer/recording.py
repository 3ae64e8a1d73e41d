"""One recording as read from any file format: the type readers produce and prepare takes.

The ground floor of reading: the format readers (readers, wfdb, edf) build it, prepare
consumes it; this module imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Recording:
    """One recording as read from a file, before any model-specific preparation."""

    signal: np.ndarray  # float32 [T, C], in mV; NaN where the file had gaps
    fs: float | None  # samples per second, None when the file does not say
    leads: list[str] | None  # names of the signal's channels as written, None when unnamed
    format: str  # json | csv | npy | npz | wfdb | edf | bdf
    metadata: dict[str, str] = field(default_factory=dict)  # record_id, patient_ref, ...
    # The array's shape as stored ([2000, 3], [N, 2000, 3], [T, C]...) and whether the file
    # held nothing but it (an .npy, or JSON with "signals" alone): together they tell the
    # endpoint's own request format, the only one taken at the model's rate without a rate.
    stored_shape: tuple[int, ...] = ()
    bare: bool = False
    # Every lead the file names, when only the model's were kept in `signal` (model_leads).
    leads_in_file: list[str] | None = None
