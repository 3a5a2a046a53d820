"""Shared pieces of the benchmarks: result rows, percentiles, the results table."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """One line of the results table. `met` is None for informational rows."""

    figure: str
    ours: float
    anchor: float | None
    unit: str
    goal: str
    met: bool | None
    anchor_label: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    id: str = ""  # stable key of the row in results.json (e.g. `ack_p99_ms`)

    @property
    def ratio(self) -> float | None:
        """ours / anchor, when both are meaningful."""
        if self.anchor is None or self.anchor == 0:
            return None
        return self.ours / self.anchor

    def as_json(self) -> dict[str, Any]:
        """JSON-able form (with the ratio)."""
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt(value: float | None, unit: str = "") -> str:
    """Compact number with its unit."""
    if value is None:
        return "—"
    if value == 0:
        text = "0"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def met_text(met: bool | None) -> str:
    """yes / NO / info."""
    return "info" if met is None else ("yes" if met else "NO")


def table(rows: Sequence[Row]) -> str:
    """The markdown table: figure, ours, anchor, ratio, goal, met?"""
    lines = ["| figure | ours | anchor | ratio | goal | met? |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        anchor = fmt(row.anchor, row.unit)
        if row.anchor_label:
            anchor = f"{anchor} ({row.anchor_label})"
        ratio = fmt(row.ratio) if row.ratio is not None else "—"
        lines.append(f"| {row.figure} | {fmt(row.ours, row.unit)} | {anchor} | {ratio} | "
                     f"{row.goal} | {met_text(row.met)} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info
