"""`python -m bench --figure N`: only that figure's rows are replaced; the others stay as the
last run wrote them, in figure order (nothing is measured here)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import merged
from bench.common import Row


def _row(figure: str, ours: float, id: str) -> Row:
    return Row(figure, ours, 1.0, "ms", "—", None, id=id)


def test_one_figure_replaces_only_its_own_rows(tmp_path: Path) -> None:
    previous = tmp_path / "results.json"
    old = [_row("1. ack latency p99 (ms)", 500.0, "ack_p99_ms"),
           _row("2. cloud requests", 143.0, "cloud"), _row("3. Slack 429s", 0.0, "s429")]
    previous.write_text(json.dumps({
        "generated": "2026-11-29 00:37 UTC",
        "rows": [{**r.as_json()} for r in old],
        "raw": {"seconds": {"1": 26.5, "2": 144.2}, "2": {"kept": True}, "1": {"old": 1}}}))
    new = [_row("1. ack latency p99 (ms)", 30.0, "ack_p99_ms"),
           _row("1. floor: do-nothing Starlette p99 (ms)", 8.0, "ack_floor_p99_ms")]
    rows, raw, header = merged(new, {"seconds": {"1": 11.0}}, ("1",), previous=previous)
    assert [(r.id, r.ours) for r in rows] == [("ack_p99_ms", 30.0), ("ack_floor_p99_ms", 8.0),
                                              ("cloud", 143.0), ("s429", 0.0)]
    assert raw["seconds"] == {"1": 11.0, "2": 144.2} and raw["2"] == {"kept": True}
    assert "1" not in raw and set(raw["runs"]) == {"1"}
    assert "figure(s) 1 re-run" in header and "2026-11-29 00:37 UTC" in header
