"""``ecg-scorer compare``: two model versions' results on the same files: how many changed
label, a confusion table, the largest probability changes.

Reads index entries only (the list columns hold status, label and probability): one Query
per device over the range, filtered to the two versions server-side.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TextIO

from ecg_scorer import query, render
from ecg_scorer.cli.context import CliError, Context

LABELS = ("anomalous", "normal", "rejected", "missing")
FILE_COLUMNS = (
    "recorded_at",
    "site",
    "device",
    "bucket",
    "key",
    "label_a",
    "probability_a",
    "label_b",
    "probability_b",
    "change",
)


@dataclass
class Comparison:
    version_a: str
    version_b: str
    files: list[dict[str, Any]] = field(default_factory=list)  # one row per file (FILE_COLUMNS)

    @property
    def both(self) -> list[dict[str, Any]]:
        return [f for f in self.files if "missing" not in (f["label_a"], f["label_b"])]

    def confusion(self) -> dict[str, dict[str, int]]:
        counts = Counter((f["label_a"], f["label_b"]) for f in self.files)
        return {a: {b: counts[(a, b)] for b in LABELS} for a in LABELS}

    def changed(self) -> int:
        return sum(f["label_a"] != f["label_b"] for f in self.both)

    def largest(self, top: int) -> list[dict[str, Any]]:
        moved = [f for f in self.both if f["change"] is not None]
        return sorted(moved, key=lambda f: abs(f["change"]), reverse=True)[:top]

    def summary(self, top: int) -> dict[str, Any]:
        return {
            "model_version_a": self.version_a,
            "model_version_b": self.version_b,
            "files": len(self.files),
            "scored_by_both": len(self.both),
            "only_a": sum(f["label_b"] == "missing" for f in self.files),
            "only_b": sum(f["label_a"] == "missing" for f in self.files),
            "label_changed": self.changed(),
            "confusion": self.confusion(),
            "largest_changes": [render.row_values(f, FILE_COLUMNS) for f in self.largest(top)],
        }


def _label(item: dict[str, Any] | None) -> str:
    if item is None:
        return "missing"
    if item.get("status") == "REJECTED":
        return "rejected"
    return str(item.get("label") or "missing")


def _probability(item: dict[str, Any] | None) -> float | None:
    value = None if item is None else item.get("probability")
    return float(value) if isinstance(value, Decimal | int | float) else None


def compare(entries: Iterable[dict[str, Any]], version_a: str, version_b: str) -> Comparison:
    """Pair each file's two results (the entries hold both versions, any order)."""
    by_file: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for item in entries:
        file = (str(item.get("bucket")), str(item.get("key")))
        by_file.setdefault(file, {})[str(item.get("model_version"))] = item
    result = Comparison(version_a, version_b)
    for (bucket, key), versions in by_file.items():
        a, b = versions.get(version_a), versions.get(version_b)
        if a is None and b is None:
            continue
        either = a or b or {}
        pa, pb = _probability(a), _probability(b)
        result.files.append(
            {
                "recorded_at": either.get("recorded_at"),
                "site": either.get("site"),
                "device": either.get("device"),
                "bucket": bucket,
                "key": key,
                "label_a": _label(a),
                "probability_a": pa,
                "label_b": _label(b),
                "probability_b": pb,
                "change": None if pa is None or pb is None else round(pb - pa, 6),
            }
        )
    return result


def cmd_compare(ctx: Context, out: TextIO) -> int:
    args = ctx.args
    if len(args.model_version) != 2 or args.model_version[0] == args.model_version[1]:
        raise ValueError("give --model-version twice, with two different versions (A, then B)")
    version_a, version_b = args.model_version
    since, until = ctx.time_range()
    versions = ("model_version IN (:va, :vb)", {":va": version_a, ":vb": version_b})
    found = query.entries(
        ctx.client("dynamodb"),
        ctx.name("table"),
        since,
        until,
        args.site,
        args.device,
        args.page_size,
        extra_filter=versions,
    )
    result = compare(found, version_a, version_b)
    if not result.files:
        raise CliError(
            f"no results of {version_a} or {version_b} in the range (recording time); "
            "widen --since, or check the versions with `ecg-scorer result`"
        )
    if args.format in {"csv", "jsonl"}:
        render.write_rows(result.files, FILE_COLUMNS, args.format, out)
    elif args.format == "json":
        out.write(json.dumps(result.summary(args.top), indent=2) + "\n")
    else:
        out.write(summary_text(result, args.top))
    return 0


def summary_text(result: Comparison, top: int) -> str:
    s = result.summary(top)
    lines = [
        f"A = {result.version_a}, B = {result.version_b}: {render.plural(s['files'], 'file')}, "
        f"{s['scored_by_both']} with both results "
        f"({s['only_a']} only A, {s['only_b']} only B)",
        f"label changed: {s['label_changed']} of {s['scored_by_both']}",
        "",
    ]
    rows = [{"A \\ B": a, **{b: s["confusion"][a][b] for b in LABELS}} for a in LABELS]
    lines.append(render.table(rows, ("A \\ B", *LABELS), headers={"A \\ B": "A \\ B"}))
    if s["largest_changes"]:
        lines.append(f"largest probability changes (top {top}):")
        lines.append(render.table(s["largest_changes"], FILE_COLUMNS[3:]))
    return "\n".join(lines)
