"""Lay out the deploy commands' text: aligned rows, and a progress line.

The progress line rewrites itself on a terminal and prints only changes elsewhere (logs, CI).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def rows(table: Iterable[Sequence[Any]], widths: Sequence[int], indent: str = "") -> list[str]:
    """One line per row: cell i left-aligned in ``widths[i]`` characters, the last as it is."""
    lines = []
    for row in table:
        cells = [f"{cell!s:<{width}}" for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append(indent + " ".join([*cells, str(row[-1])]))
    return lines


class Progress:
    """One status line: redrawn in place on a terminal, printed when its ``key`` changes
    otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = getattr(out, "isatty", lambda: False)()
        self.last: str | None = None

    def update(self, line: str, key: str) -> None:
        if self.tty:
            self.out.write("\r" + line.ljust(70))
        elif key != self.last:
            self.out.write(line + "\n")
        self.out.flush()
        self.last = key

    def end(self) -> None:
        """Leave the line (on a terminal the cursor is still on it)."""
        if self.tty:
            self.out.write("\n")
