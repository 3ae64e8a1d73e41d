"""A recording on standard ECG paper (25 mm/s, 10 mm/mV; 1 mm and 5 mm grid) with each
window's probability as a strip under the trace, drawn with matplotlib into PNG files.

Each row is one window's length (10 s for the demo model) with the leads stacked; under it,
the windows that row covers, coloured by probability, unusable ones hatched grey with their
quality code. Above the rows, one overview bar per window of the whole recording. Long
recordings show the rows holding the most probable windows, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg  # files only: no pyplot state
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ecg_scorer.report.data import USABLE, Trace, Window

MM_PER_S = 25.0
MM_PER_MV = 10.0
LEAD_MM = 30.0  # band per lead: +-1.5 mV around its baseline
STRIP_MM = 9.0  # the probability strip under each row
MAX_ROWS = 6
MINOR = "#f6c9c9"  # ECG paper: 1 mm lines
MAJOR = "#e07a7a"  # 5 mm lines
TRACE = "#111111"
UNUSABLE = "#9a9a9a"
DPI = 150
COLORMAP = "RdYlGn_r"


@dataclass
class Drawn:
    rows_shown: int
    rows_total: int


def _paper(ax: Axes, width_mm: float, height_mm: float) -> None:
    for step, colour, lw in ((1.0, MINOR, 0.4), (5.0, MAJOR, 0.8)):
        xs = np.arange(0.0, width_mm + 1e-6, step)
        ys = np.arange(0.0, height_mm + 1e-6, step)
        lines = [((x, 0.0), (x, height_mm)) for x in xs] + [((0.0, y), (width_mm, y)) for y in ys]
        ax.add_collection(LineCollection(lines, colors=colour, linewidths=lw, zorder=1))
    ax.set_xlim(0, width_mm)
    ax.set_ylim(0, height_mm)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(MAJOR)


def _colour(p: float | None, colormap: object) -> object:
    return UNUSABLE if p is None else colormap(p)  # type: ignore[operator]


def rows_to_show(windows: list[Window], rows_total: int, row_s: float) -> list[int]:
    """Every row when they fit, else the rows of the most probable windows, in time order."""
    if rows_total <= MAX_ROWS:
        return list(range(rows_total))
    best: dict[int, float] = {}
    for w in windows:
        row = min(int(w.start_s // row_s), rows_total - 1)
        best[row] = max(best.get(row, -1.0), -1.0 if w.probability is None else w.probability)
    ranked = sorted(best, key=lambda r: best[r], reverse=True)[:MAX_ROWS]
    return sorted(ranked)


def draw(
    trace: Trace,
    windows: list[Window],
    threshold: float,
    title: str,
    png: Path,
    window_s: float,
    thumbnail: Path | None = None,
) -> Drawn:
    """Write the report figure to ``png`` (and a small first-row picture to ``thumbnail``),
    one model window (``window_s``) per row."""
    colormap = matplotlib.colormaps[COLORMAP]
    # Not the gap between window starts: the last window overlaps the one before it, so a
    # 12-s file's two windows start 2 s apart.
    row_s = min(window_s, trace.duration_s) if trace.duration_s > 0 else window_s
    rows_total = max(1, int(np.ceil(trace.duration_s / row_s - 1e-9)))
    rows = rows_to_show(windows, rows_total, row_s)
    width_mm = row_s * MM_PER_S
    lead_count = trace.signal.shape[1]
    row_mm = lead_count * LEAD_MM
    overview_mm, gap_mm, margin_mm = 28.0, 6.0, 18.0
    height_mm = margin_mm + overview_mm + len(rows) * (row_mm + STRIP_MM + gap_mm) + gap_mm
    fig = Figure(figsize=((width_mm + 2 * margin_mm) / 25.4, height_mm / 25.4), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.suptitle(title, x=margin_mm / (width_mm + 2 * margin_mm), ha="left", fontsize=9)

    def axes(top_mm: float, h_mm: float) -> Axes:
        w_total = width_mm + 2 * margin_mm
        return fig.add_axes(
            (
                margin_mm / w_total,
                1 - (top_mm + h_mm) / height_mm,
                width_mm / w_total,
                h_mm / height_mm,
            )
        )

    # Overview: every window of the whole recording.
    ov = axes(margin_mm, overview_mm - 8)
    for w in windows:
        p = w.probability
        ov.add_patch(
            Rectangle(
                (w.start_s, 0),
                row_s,
                1.0 if p is None else max(p, 0.01),
                facecolor=_colour(p, colormap),
                edgecolor="white",
                hatch="///" if p is None else None,
                linewidth=0.3,
            )
        )
    ov.axhline(threshold, color="#333333", linestyle="--", linewidth=0.6)
    ov.set_xlim(0, max(trace.duration_s, row_s))
    ov.set_ylim(0, 1)
    ov.set_ylabel("p", fontsize=7)
    ov.tick_params(labelsize=6)
    ov.set_title(
        f"anomaly probability per window (dashed: threshold {threshold:g}); "
        f"seconds from the recording's start",
        fontsize=7,
        loc="left",
    )

    top = margin_mm + overview_mm
    t = np.arange(trace.signal.shape[0]) / trace.rate_hz
    for row in rows:
        start_s = row * row_s
        ax = axes(top, row_mm)
        _paper(ax, width_mm, row_mm)
        inside = (t >= start_s) & (t <= start_s + row_s)
        for lead in range(lead_count):
            baseline = row_mm - (lead + 0.5) * LEAD_MM
            y = baseline + trace.signal[inside, lead] * MM_PER_MV
            ax.plot((t[inside] - start_s) * MM_PER_S, y, color=TRACE, linewidth=0.6, zorder=3)
            ax.text(1.5, baseline + LEAD_MM * 0.3, trace.leads[lead], fontsize=7, zorder=4)
        ax.text(
            width_mm,
            row_mm + 1.0,
            f"{start_s:.0f}-{start_s + row_s:.0f} s   25 mm/s   10 mm/mV",
            fontsize=6,
            ha="right",
        )
        _strip(axes(top + row_mm, STRIP_MM), windows, start_s, row_s, width_mm, colormap)
        top += row_mm + STRIP_MM + gap_mm
    fig.savefig(png, dpi=DPI, facecolor="white")
    if thumbnail is not None:
        _thumbnail(trace, rows[0] * row_s, row_s, thumbnail)
    return Drawn(len(rows), rows_total)


def _strip(
    ax: Axes, windows: list[Window], start_s: float, row_s: float, width_mm: float, colormap: object
) -> None:
    """The windows of one row as coloured cells with their probability (or quality code);
    a window overlapping the one before sits in a lower lane."""
    ax.set_xlim(0, width_mm)
    ax.set_ylim(0, STRIP_MM)
    ax.set_xticks([])
    ax.set_yticks([])
    previous_end = -1.0
    for w in windows:
        end = w.start_s + row_s
        lane = 1 if w.start_s < previous_end - 1e-6 else 0
        previous_end = end
        if end <= start_s or w.start_s >= start_s + row_s:
            continue
        x0 = (max(w.start_s, start_s) - start_s) * MM_PER_S
        x1 = (min(end, start_s + row_s) - start_s) * MM_PER_S
        h = STRIP_MM / 2
        y0 = STRIP_MM - h * (lane + 1)
        unusable = w.probability is None or w.quality != USABLE
        ax.add_patch(
            Rectangle(
                (x0, y0),
                x1 - x0,
                h,
                facecolor=_colour(w.probability, colormap),
                edgecolor="white",
                hatch="///" if unusable else None,
                linewidth=0.5,
            )
        )
        label = w.quality if w.probability is None else f"p={w.probability:.2f}"
        if w.probability is not None and w.quality != USABLE:
            label += f" ({w.quality})"
        dark = w.probability is not None and not 0.2 < w.probability < 0.8
        ax.text(
            (x0 + x1) / 2,
            y0 + h / 2,
            label,
            fontsize=6,
            ha="center",
            va="center",
            color="white" if dark else "black",  # readable on the colour map's dark ends
        )


def _thumbnail(trace: Trace, start_s: float, row_s: float, path: Path) -> None:
    """The second lead (II for the demo model) of one row on ECG paper, small."""
    lead = 1 if trace.signal.shape[1] > 1 else 0
    width_mm, height_mm = row_s * MM_PER_S, LEAD_MM
    fig = Figure(figsize=(width_mm / 25.4 / 2.5, height_mm / 25.4 / 2.5), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    _paper(ax, width_mm, height_mm)
    t = np.arange(trace.signal.shape[0]) / trace.rate_hz
    inside = (t >= start_s) & (t <= start_s + row_s)
    y = height_mm / 2 + trace.signal[inside, lead] * MM_PER_MV
    ax.plot((t[inside] - start_s) * MM_PER_S, y, color=TRACE, linewidth=0.6, zorder=3)
    fig.savefig(path, dpi=DPI, facecolor="white")
