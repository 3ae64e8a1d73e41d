"""``ecg-scorer``: the analysts' command line (find, look, export, compare, re-score, upload).

One module per reason to change: ``parser`` (the flags), ``main`` (dispatch and error
lines), ``context`` (where resources are), ``listing`` (queries shown or exported),
``report`` (ECG pictures), ``compare``, ``rescore``, ``upload``, ``redrive``.
"""

from __future__ import annotations

from ecg_scorer.cli.main import main

__all__ = ["main"]
