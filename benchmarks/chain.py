"""Scenarios 1-2: a chain of n trivial steps in one workflow, in memory and durable on SQLite.

  python -m benchmarks.chain memory --n 1000 --reps 7
  python -m benchmarks.chain sqlite --n 1000 --reps 3 [--strict]

Timers cover `engine.run(...)` only: starting the run, claiming it, every step with its journal
entry, and recording the output (the engine and its store are opened before). Each prints one
JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
from typing import Any

from .common import (
    checkpointed_bytes,
    cpu,
    db_bytes,
    emit,
    fsync_probe,
    median,
    now,
    peak_rss_mb,
    per_step,
    workdir,
)


async def chain_memory(n: int, reps: int) -> dict[str, Any]:
    from overnight import Engine

    from .workloads import chain

    async with Engine("memory://") as engine:
        assert await engine.run(chain, n) == n  # warm-up
        ts, cs = [], []
        for _ in range(reps):
            t, c = now(), cpu()
            handle = await engine.start(chain, n)
            result = await handle.result()
            ts.append(now() - t)
            cs.append(cpu() - c)
            assert result == n
        # The journal is really there: one `done` entry per step plus the output.
        entries = len(await engine.journal(handle.run_id))
    return {
        "scenario": "chain_memory",
        "n": n,
        "reps": reps,
        **per_step(ts, cs, n),
        "journal_entries": entries,
        "peak_rss_mb": peak_rss_mb(),
    }


async def _one_sqlite_run(path: str, n: int, strict: bool) -> dict[str, Any]:
    from overnight import Engine

    from .workloads import chain

    engine = Engine(f"sqlite:///{path}", strict=strict)
    await engine.open()
    empty = checkpointed_bytes(path)  # the schema alone, subtracted from the growth
    store: Any = engine.store
    commits = store.commits
    t, c = now(), cpu()
    handle = await engine.start(chain, n)
    result = await handle.result()
    wall, dc = now() - t, cpu() - c
    assert result == n
    commits = store.commits - commits
    with_wal = db_bytes(path)
    await engine.close()
    size = checkpointed_bytes(path)
    conn = sqlite3.connect(path)
    rows = {
        table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("entries", "blobs", "runs")
    }
    conn.close()
    return {
        "wall": wall,
        "cpu": dc,
        "commits": commits,
        "with_wal": with_wal,
        "size": size,
        "empty": empty,
        "rows": rows,
    }


async def chain_sqlite(n: int, reps: int, strict: bool) -> dict[str, Any]:
    probe_before = fsync_probe()
    runs = []
    with tempfile.TemporaryDirectory(dir=workdir()) as d:
        for rep in range(reps + 1):  # rep 0 warms up; every rep gets a fresh database file
            one = await _one_sqlite_run(os.path.join(d, f"chain{rep}.db"), n, strict)
            if rep:
                runs.append(one)
    probe_after = fsync_probe()
    wall = median([r["wall"] for r in runs])
    growth = median([r["size"] - r["empty"] for r in runs])
    return {
        "scenario": "chain_sqlite",
        "mode": "strict" if strict else "default",
        "n": n,
        "reps": reps,
        "wall_s": wall,
        "wall_all_s": [r["wall"] for r in runs],
        "us_per_step": wall / n * 1e6,
        "cpu_us_per_step": median([r["cpu"] for r in runs]) / n * 1e6,
        "commits_per_run": median([r["commits"] for r in runs]),
        "db_bytes_with_wal_before_close": int(median([r["with_wal"] for r in runs])),
        "db_bytes": int(median([r["size"] for r in runs])),
        "db_bytes_empty": int(median([r["empty"] for r in runs])),
        "store_bytes_per_step": growth / n,
        "rows": runs[-1]["rows"],
        "fsync_probe_us_per_commit": [probe_before, probe_after],
        "fsync_probe_us": (probe_before + probe_after) / 2,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store", choices=["memory", "sqlite"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--strict", action="store_true")
    a = ap.parse_args()
    if a.store == "memory":
        emit(asyncio.run(chain_memory(a.n, a.reps or 7)))
    else:
        emit(asyncio.run(chain_sqlite(a.n, a.reps or 3, a.strict)))


if __name__ == "__main__":
    main()
