"""The LangGraph side of every scenario, adapted from the peer measurements (same parameters).

  python -m benchmarks.langgraph_peer chain             --n 1000 --reps 7
  python -m benchmarks.langgraph_peer chain_sqlite      --n 1000 --reps 3 --durability sync
  python -m benchmarks.langgraph_peer fanout            --k 10000
  python -m benchmarks.langgraph_peer concurrent        --runs 1000 --steps 5
  python -m benchmarks.langgraph_peer concurrent_sqlite --runs 1000 --steps 5 --durability async
  python -m benchmarks.langgraph_peer idle

Needs the `bench` extra (langgraph, langgraph-checkpoint-sqlite, aiosqlite). The chain's node is
as trivial as overnight's step (it returns count + 1 and never yields to the event loop); the
fan-out and concurrency nodes sleep 50 ms and 20 ms like overnight's steps. Timers cover
`ainvoke()` only, not building and compiling the graph (reported as `compile_s`). Each prints one
JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import sqlite3
import tempfile
import uuid
from contextlib import AsyncExitStack
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

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
    per_step,
    pkg_version,
    workdir,
)


def versions() -> dict[str, Any]:
    return {
        "framework": "langgraph",
        "langgraph": pkg_version("langgraph"),
        "langgraph-checkpoint": pkg_version("langgraph-checkpoint"),
        "langgraph-checkpoint-sqlite": pkg_version("langgraph-checkpoint-sqlite"),
        "aiosqlite": pkg_version("aiosqlite"),
    }


class ChainState(TypedDict):
    count: int


def build_chain(n: int, latency_s: float) -> StateGraph[Any]:
    """n distinct nodes in a line; each adds one (after sleeping `latency_s`, if any)."""

    async def trivial(state: ChainState) -> dict[str, Any]:
        return {"count": state["count"] + 1}

    async def sleeping(state: ChainState) -> dict[str, Any]:
        await asyncio.sleep(latency_s)
        return {"count": state["count"] + 1}

    b = StateGraph(ChainState)
    for i in range(n):
        b.add_node(f"n{i}", sleeping if latency_s else trivial)
    b.add_edge(START, "n0")
    for i in range(n - 1):
        b.add_edge(f"n{i}", f"n{i + 1}")
    b.add_edge(f"n{n - 1}", END)
    return b


async def chain(n: int, reps: int) -> dict[str, Any]:
    t = now()
    g = build_chain(n, 0).compile()
    compile_s = now() - t
    cfg: Any = {"recursion_limit": n + 10}
    assert (await g.ainvoke({"count": 0}, cfg))["count"] == n  # warm-up
    ts, cs = [], []
    for _ in range(reps):
        t, c = now(), cpu()
        res = await g.ainvoke({"count": 0}, cfg)
        ts.append(now() - t)
        cs.append(cpu() - c)
        assert res["count"] == n
    return {
        **versions(),
        "scenario": "chain",
        "n": n,
        "reps": reps,
        "compile_s": compile_s,
        **per_step(ts, cs, n),
        "peak_rss_mb": peak_rss_mb(),
    }


async def chain_sqlite(n: int, reps: int, durability: str) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    builder = build_chain(n, 0)
    probe_before = fsync_probe()
    ts, cs, sizes, growth, rows = [], [], [], [], []
    with tempfile.TemporaryDirectory(dir=workdir()) as d:
        for rep in range(reps + 1):  # rep 0 warms up; every rep gets a fresh database file
            path = os.path.join(d, f"ckpt{rep}.sqlite")
            async with AsyncSqliteSaver.from_conn_string(path) as saver:
                g = builder.compile(checkpointer=saver)
                await saver.setup()
                empty = checkpointed_bytes(path)
                cfg: Any = {"recursion_limit": n + 10, "configurable": {"thread_id": "t"}}
                t, c = now(), cpu()
                res = await g.ainvoke({"count": 0}, cfg, durability=durability)  # type: ignore[arg-type]
                dt, dc = now() - t, cpu() - c
                assert res["count"] == n
            size = checkpointed_bytes(path)
            if rep == 0:
                continue
            ts.append(dt)
            cs.append(dc)
            sizes.append(size)
            growth.append(size - empty)
            conn = sqlite3.connect(path)
            rows.append(
                {
                    table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                    for table in ("checkpoints", "writes")
                }
            )
            conn.close()
    probe_after = fsync_probe()
    return {
        **versions(),
        "scenario": "chain_sqlite",
        "durability": durability,
        "n": n,
        "reps": reps,
        **per_step(ts, cs, n),
        "db_bytes": int(median(sizes)),
        "store_bytes_per_step": median(growth) / n,
        "rows": rows[-1],
        "fsync_probe_us_per_commit": [probe_before, probe_after],
        "fsync_probe_us": (probe_before + probe_after) / 2,
        "peak_rss_mb": peak_rss_mb(),
    }


class FanState(TypedDict):
    k: int
    results: Annotated[list[str], operator.add]
    joined: int


def build_fanout(latency_s: float) -> Any:
    """plan -> Send("worker") x k -> join: LangGraph's map-reduce idiom."""

    async def plan(state: FanState) -> dict[str, Any]:
        return {}

    def route(state: FanState) -> list[Send]:
        return [Send("worker", {"i": i}) for i in range(state["k"])]

    async def worker(arg: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(latency_s)
        return {"results": ["ok"]}

    async def join(state: FanState) -> dict[str, Any]:
        return {"joined": len(state["results"])}

    b = StateGraph(FanState)
    b.add_node("plan", plan)
    b.add_node("worker", worker)  # type: ignore[type-var]
    b.add_node("join", join)
    b.add_edge(START, "plan")
    b.add_conditional_edges("plan", route, ["worker"])
    b.add_edge("worker", "join")
    b.add_edge("join", END)
    return b.compile()


async def fanout(k: int, latency_s: float) -> dict[str, Any]:
    g = build_fanout(latency_s)
    await g.ainvoke({"k": 2, "results": [], "joined": 0})  # warm the code paths (tiny)
    base = current_rss_mb()
    t, c = now(), cpu()
    res = await g.ainvoke({"k": k, "results": [], "joined": 0})
    wall, dc = now() - t, cpu() - c
    assert res["joined"] == k, res["joined"]
    return {
        **versions(),
        "scenario": "fanout",
        "k": k,
        "latency_ms": latency_s * 1e3,
        "wall_s": wall,
        "overhead_us_per_branch": (wall - latency_s) / k * 1e6,
        "cpu_s": dc,
        "cpu_us_per_branch": dc / k * 1e6,
        "baseline_rss_mb": base,
        "peak_rss_mb": peak_rss_mb(),
    }


async def concurrent(
    runs: int, steps: int, latency_s: float, sqlite_durability: str | None
) -> dict[str, Any]:
    """`runs` concurrent ainvoke()s of a `steps`-node chain; optionally on one shared saver."""
    async with AsyncExitStack() as stack:
        saver = None
        probe = None
        if sqlite_durability:
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            probe = fsync_probe()
            d = stack.enter_context(tempfile.TemporaryDirectory(dir=workdir()))
            saver = await stack.enter_async_context(
                AsyncSqliteSaver.from_conn_string(os.path.join(d, "c.sqlite"))
            )
            await saver.setup()
        g = build_chain(steps, latency_s).compile(checkpointer=saver)
        kw: Any = {"durability": sqlite_durability} if saver else {}

        def cfg() -> Any:
            return {"configurable": {"thread_id": str(uuid.uuid4())}} if saver else {}

        await g.ainvoke({"count": 0}, cfg(), **kw)  # warm-up
        base = current_rss_mb()

        async def one() -> float:
            r = await g.ainvoke({"count": 0}, cfg(), **kw)
            assert r["count"] == steps
            return now() - t

        t, c = now(), cpu()
        lat = sorted(await asyncio.gather(*(one() for _ in range(runs))))
        wall, dc = now() - t, cpu() - c
    return {
        **versions(),
        "scenario": "concurrent_sqlite" if saver else "concurrent",
        "durability": sqlite_durability,
        "fsync_probe_us": probe,
        "runs": runs,
        "steps": steps,
        "latency_ms": latency_s * 1e3,
        "ideal_wall_s": steps * latency_s,
        **batch_figures(
            runs=runs, units=steps, unit="step", wall=wall, cpu_s=dc, latencies=lat, base=base
        ),
    }


async def idle() -> dict[str, Any]:
    """RSS with LangGraph imported and a 5-node graph compiled, nothing running."""
    g = build_chain(5, 0).compile()
    assert (await g.ainvoke({"count": 0}))["count"] == 5
    return {**versions(), "scenario": "idle", "idle_rss_mb": current_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "scenario",
        choices=["chain", "chain_sqlite", "fanout", "concurrent", "concurrent_sqlite", "idle"],
    )
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--durability", choices=["sync", "async", "exit"], default=None)
    ap.add_argument("--k", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    if a.scenario == "chain":
        r = asyncio.run(chain(a.n, a.reps or 7))
    elif a.scenario == "chain_sqlite":
        r = asyncio.run(chain_sqlite(a.n, a.reps or 3, a.durability or "sync"))
    elif a.scenario == "fanout":
        r = asyncio.run(fanout(a.k, 0.05))
    elif a.scenario == "concurrent":
        r = asyncio.run(concurrent(a.runs, a.steps, 0.02, None))
    elif a.scenario == "concurrent_sqlite":
        r = asyncio.run(concurrent(a.runs, a.steps, 0.02, a.durability or "async"))
    else:
        r = asyncio.run(idle())
    emit(r)


if __name__ == "__main__":
    main()
