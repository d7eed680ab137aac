"""Agent scenarios: one long conversation, and many short agents at once.

  python -m benchmarks.agents conversation --store sqlite --turns 200 --reps 3
  python -m benchmarks.agents conversation --store memory --turns 200 --reps 7
  python -m benchmarks.agents many --store memory --runs 1000 --turns 3 --latency-ms 50

A conversation of T turns is one `Agent` run inside a workflow: T model calls, the first T - 1
of which each ask for one call of the `add` tool (`workloads.ToolLoopModel`, the script of the
LangGraph side's fake chat model). `conversation` runs with zero model latency, so its time per
turn is the engine's and the agent loop's own: every model call journaled as a durable keyed
step (its request committed first), every tool call as a pure step with its gate decision, the
history as a hash chain of blobs. The timer covers `engine.start` plus `handle.result()`, on a
fresh store per repetition. Store growth is measured like the chain's (`benchmarks/chain.py`):
SQLite file size after folding the WAL into it, minus the empty store. One more run, untimed,
probes the store when model call 1, w + 1 and T - w + 1 start (w = min(50, T // 4); everything
before is committed then: the durability barrier) and after the run, to compare the bytes the
first w turns added with the bytes the last w added: flat if the history is stored once.

`many` starts `--runs` conversations of `--turns` turns at once (a model with `--latency-ms`
per call), awaits them all, and reports wall time and peak RSS: one measured batch per process,
like `benchmarks/concurrent.py`. Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
from typing import Any

from .common import (
    batch_figures,
    checkpointed_bytes,
    cpu,
    current_rss_mb,
    emit,
    fsync_probe,
    median,
    now,
    peak_rss_mb,
    turn_profile,
    workdir,
)


def probe_points(turns: int) -> tuple[int, int, int, int]:
    """(w, and the model calls before which the store is read: 1, w + 1, T - w + 1)."""
    w = max(1, min(50, turns // 4))
    return w, 1, w + 1, turns - w + 1


def growth_profile(
    sizes: dict[int, tuple[int, int]], final: tuple[int, int], turns: int
) -> dict[str, Any]:
    """Bytes per turn over the first w and the last w turns, from the probe readings: store
    growth (file size) and payload (entries and blobs, or checkpoints and writes)."""
    w, first, after_w, last = probe_points(turns)
    out: dict[str, Any] = {"window_turns": w}
    for i, name in enumerate(("bytes", "payload_bytes")):
        head = (sizes[after_w][i] - sizes[first][i]) / w
        tail = (final[i] - sizes[last][i]) / w
        out[f"{name}_per_turn_first"] = head
        out[f"{name}_per_turn_last"] = tail
    return out


def _payload_sqlite(path: str) -> int:
    """Bytes of journal entries and blobs (what the store holds, without SQLite's pages)."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(length(data)), 0) FROM entries)"
            " + (SELECT coalesce(sum(length(data)), 0) FROM blobs)"
        ).fetchone()
    finally:
        conn.close()
    return int(row[0])


def _payload_memory(store: Any) -> int:
    entries = sum(len(e.data) for journal in store._journals.values() for e in journal)
    return entries + sum(len(b) for b in store._blobs.values())


async def _one(store: str, path: str, turns: int, probe: bool) -> dict[str, Any]:
    """One conversation on a fresh store: timed, or (probe) with the store read along the way."""
    from overnight import Engine

    from .workloads import conversation, tool_agent

    model: Any = tool_agent(turns, 0.0).model
    engine = Engine("memory://" if store == "memory" else f"sqlite:///{path}")
    await engine.open()
    eng_store: Any = engine.store

    def size() -> tuple[int, int]:
        if store == "memory":
            payload = _payload_memory(eng_store)
            return payload, payload
        return checkpointed_bytes(path), _payload_sqlite(path)

    sizes: dict[int, tuple[int, int]] = {}
    points = probe_points(turns)[1:]
    if probe:
        model.on_call = lambda k: sizes.__setitem__(k, size()) if k in points else None
    empty = size()
    commits = getattr(eng_store, "commits", 0)
    model.call_times.clear()
    t, c = now(), cpu()
    handle = await engine.start(conversation, {"turns": turns, "latency_s": 0.0})
    output = await handle.result()
    t_end = now()
    wall, dc = t_end - t, cpu() - c
    model.on_call = None
    assert output == f"done after {turns - 1} tool calls", output
    assert len(model.call_times) == turns
    out = {
        "wall": wall,
        "cpu": dc,
        "commits": getattr(eng_store, "commits", 0) - commits,
        "entries": len(await engine.journal(handle.run_id)),
        **turn_profile(model.call_times, t_end),
    }
    if store == "memory":
        final = size()
    await engine.close()
    if store == "sqlite":
        final = size()
    out["growth"] = final[0] - empty[0]
    out["payload"] = final[1] - empty[1]
    if probe:
        out.update(growth_profile(sizes, final, turns))
    return out


async def conversation(store: str, turns: int, reps: int) -> dict[str, Any]:
    probes = [fsync_probe()] if store == "sqlite" else []
    runs = []
    with tempfile.TemporaryDirectory(dir=workdir()) as d:
        await _one(store, os.path.join(d, "warmup.db"), 3, False)
        for rep in range(reps):  # a fresh store (database file) for every repetition
            runs.append(await _one(store, os.path.join(d, f"talk{rep}.db"), turns, False))
        probed = await _one(store, os.path.join(d, "probed.db"), turns, True)
    if store == "sqlite":
        probes.append(fsync_probe())
    wall = median([r["wall"] for r in runs])
    out: dict[str, Any] = {
        "scenario": "agent_conversation",
        "store": store,
        "turns": turns,
        "reps": reps,
        "wall_s": wall,
        "wall_all_s": [r["wall"] for r in runs],
        "us_per_turn": wall / turns * 1e6,
        "cpu_us_per_turn": median([r["cpu"] for r in runs]) / turns * 1e6,
        "us_per_turn_first_quarter": median([r["us_per_turn_first_quarter"] for r in runs]),
        "us_per_turn_last_quarter": median([r["us_per_turn_last_quarter"] for r in runs]),
        "journal_entries": runs[-1]["entries"],
        "store_bytes_per_turn": median([r["growth"] for r in runs]) / turns,
        "payload_bytes_per_turn": median([r["payload"] for r in runs]) / turns,
        **{k: probed[k] for k in probed if k.endswith(("_first", "_last", "window_turns"))},
        "peak_rss_mb": peak_rss_mb(),
    }
    if store == "sqlite":
        out["commits_per_run"] = median([r["commits"] for r in runs])
        out["db_bytes"] = int(median([r["growth"] for r in runs]))
        out["fsync_probe_us_per_commit"] = probes
        out["fsync_probe_us"] = sum(probes) / len(probes)
    return out


async def many(store: str, runs: int, turns: int, latency_s: float) -> dict[str, Any]:
    from overnight import Engine

    from .workloads import conversation, tool_agent

    spec = {"turns": turns, "latency_s": latency_s}
    expected = f"done after {turns - 1} tool calls"
    model: Any = tool_agent(turns, latency_s).model
    with tempfile.TemporaryDirectory(dir=workdir()) as d:
        url = "memory://" if store == "memory" else f"sqlite:///{os.path.join(d, 'agents.db')}"
        engine = Engine(url)
        engine.max_concurrent_runs = max(engine.max_concurrent_runs, runs)
        async with engine:
            assert await engine.run(conversation, spec) == expected  # warm-up
            base = current_rss_mb()
            model.call_times.clear()

            async def wait(handle: Any) -> float:
                assert await handle.result() == expected
                return now() - t

            t, c = now(), cpu()
            handles = await asyncio.gather(*(engine.start(conversation, spec) for _ in range(runs)))
            latencies = sorted(await asyncio.gather(*(wait(h) for h in handles)))
            wall, dc = now() - t, cpu() - c
            calls = len(model.call_times)
    return {
        "scenario": "agents_many",
        "store": store,
        "runs": runs,
        "turns": turns,
        "model_calls": calls,
        "latency_ms": latency_s * 1e3,
        "ideal_wall_s": turns * latency_s,
        **batch_figures(
            runs=runs, units=turns, unit="turn", wall=wall, cpu_s=dc, latencies=latencies, base=base
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["conversation", "many"])
    ap.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    ap.add_argument("--turns", type=int, default=None, help="model calls per conversation")
    ap.add_argument("--reps", type=int, default=None, help="conversation: timed repetitions")
    ap.add_argument("--runs", type=int, default=1000, help="many: agents at once")
    ap.add_argument("--latency-ms", type=float, default=50.0, help="many: per model call")
    a = ap.parse_args()
    if a.scenario == "conversation":
        reps = a.reps or (7 if a.store == "memory" else 3)
        emit(asyncio.run(conversation(a.store, a.turns or 200, reps)))
    else:
        emit(asyncio.run(many(a.store, a.runs, a.turns or 3, a.latency_ms / 1e3)))


if __name__ == "__main__":
    main()
