"""Rows of the headline table for scenario 9, the agents (`benchmarks/agents.py` and
`benchmarks/langgraph_agents.py`), in the format of `report.headline`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

FLAT = 1.25
"""Bytes per turn are "flat" if the last window's are at most this many times the first's
(quadratic growth, as in a checkpoint of the whole history per step, gives about 6× at 200
turns with windows of 50)."""

DETAIL_KEYS = (
    "us_per_turn",
    "cpu_us_per_turn",
    "us_per_turn_first_quarter",
    "us_per_turn_last_quarter",
    "store_bytes_per_turn",
    "payload_bytes_per_turn",
    "bytes_per_turn_first",
    "bytes_per_turn_last",
    "payload_bytes_per_turn_first",
    "payload_bytes_per_turn_last",
    "window_turns",
    "journal_entries",
    "model_calls",
)


def agent_rows(r: Any, row: Callable[..., None]) -> None:
    """`r` is a `report.Results`; `row(*cells)` appends a line of the table."""
    from .report import _f, _kb, _ratio

    sizes = r.data.get("sizes", {})
    turns = sizes.get("agent_turns", 200)
    runs, run_turns = sizes.get("agent_runs", 1000), sizes.get("agent_run_turns", 3)
    if not any(sid.startswith(("overnight.agents.", "langgraph.agents.")) for sid in r.s):
        return

    def ms(sid: str, key: str) -> float | None:
        us = r.get(sid, key)
        return None if us is None else us / 1000

    def turn_cell(sid: str) -> str:
        wall, c = ms(sid, "us_per_turn"), ms(sid, "cpu_us_per_turn")
        return "—" if wall is None else f"{_f(wall, 2)} ({_f(c, 2)})"

    def quarters(sid: str) -> str:
        a, b = ms(sid, "us_per_turn_first_quarter"), ms(sid, "us_per_turn_last_quarter")
        return "—" if a is None else f"{_f(a, 2)} → {_f(b, 2)}"

    for store, what in (
        ("memory", "in memory (LangGraph: InMemorySaver, durability sync)"),
        ("sqlite", "durable on SQLite (overnight default mode; LangGraph AsyncSqliteSaver, sync)"),
    ):
        ov, lg = f"overnight.agents.conversation.{store}", f"langgraph.agents.conversation.{store}"
        commits = r.get(ov, "commits_per_run")
        probe = r.get(ov, "fsync_probe_us")
        row(
            f"9. agent conversation of {turns} turns ({turns - 1} tool calls, then an answer; "
            f"0 ms model), {what}: ms/turn wall (CPU)",
            turn_cell(ov) + (f", {_f(commits, 0)} commits" if commits else ""),
            turn_cell(lg),
            _ratio(r.get(ov, "us_per_turn"), r.get(lg, "us_per_turn")),
            "—",
            f"ms/turn, first → last quarter: {quarters(ov)} vs {quarters(lg)}"
            + (f"; fsync probe {_f(probe)} µs" if probe else ""),
        )
    ov, lg = "overnight.agents.conversation.sqlite", "langgraph.agents.conversation.sqlite"
    w = r.get(ov, "window_turns") or r.get(lg, "window_turns") or 50

    def growth(sid: str, prefix: str = "") -> str:
        total = r.get(sid, f"{prefix or 'store_'}bytes_per_turn")
        first = r.get(sid, f"{prefix}bytes_per_turn_first")
        last = r.get(sid, f"{prefix}bytes_per_turn_last")
        if total is None:
            return "—"
        return f"{_kb(total)} ({_kb(first)} → {_kb(last)})"

    # Judged on the payload: the file grows by whole pages, which over a few turns is noise.
    first = r.get(ov, "payload_bytes_per_turn_first")
    last = r.get(ov, "payload_bytes_per_turn_last")
    flat = None if not first or last is None else last <= first * FLAT
    row(
        f"9. store growth per turn of that conversation on SQLite (WAL checkpointed): "
        f"all {turns} turns (first {w} → last {w})",
        growth(ov),
        growth(lg),
        _ratio(r.get(ov, "store_bytes_per_turn"), r.get(lg, "store_bytes_per_turn")),
        f"payload flat (last {w} ≤ {FLAT}× first {w}): "
        + ("not measured" if flat is None else "met" if flat else "**missed**"),
        f"payload per turn: {growth(ov, 'payload_')} vs {growth(lg, 'payload_')}; "
        f"DB {_kb(r.get(ov, 'db_bytes'))} vs {_kb(r.get(lg, 'db_bytes'))}",
    )
    ideal = run_turns * 0.05
    for store, note in (("memory", ""), ("sqlite", " one saver, durability async")):
        ov, lg = f"overnight.agents.many.{store}", f"langgraph.agents.many.{store}"
        wall, lg_wall = r.get(ov, "wall_s"), r.get(lg, "wall_s")
        row(
            f"9. {runs:,} agents at once, {run_turns} turns each × 50 ms model, {store}: "
            "wall s (CPU s)",
            "—" if wall is None else f"{_f(wall, 2)} ({_f(r.get(ov, 'cpu_s'), 2)})",
            "—" if lg_wall is None else f"{_f(lg_wall, 2)} ({_f(r.get(lg, 'cpu_s'), 2)}){note}",
            _ratio(wall, lg_wall),
            "—",
            f"ideal {_f(ideal, 2)} s; CPU per turn {_f(ms(ov, 'cpu_us_per_turn'), 2)} vs "
            f"{_f(ms(lg, 'cpu_us_per_turn'), 2)} ms",
        )
        row(
            f"9. {runs:,} agents at once, {store}: peak RSS MB (baseline)",
            f"{_f(r.get(ov, 'peak_rss_mb'), 0)} ({_f(r.get(ov, 'baseline_rss_mb'), 0)})",
            f"{_f(r.get(lg, 'peak_rss_mb'), 0)} ({_f(r.get(lg, 'baseline_rss_mb'), 0)})",
            _ratio(r.get(ov, "peak_rss_mb"), r.get(lg, "peak_rss_mb")),
            "—",
            "—",
        )
