"""Where should the SQLite group committer run: on the event loop, or in a thread?

  python -m benchmarks.committer

Measures the latency of one durable commit (WAL, synchronous=FULL) as a workflow sees it, with
the commit done on the event loop or handed to a single committer thread, first on an idle
loop and then on a loop kept busy by other coroutines (as under many concurrent runs). The
thread overlaps the fsync with Python work, but its result has to come back through the busy
loop and the GIL. Prints one JSON line (medians and p90s in µs).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from typing import Any

from .common import emit, median, workdir


def _fresh(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    return conn


def _commit(conn: sqlite3.Connection, i: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES (?)", (i,))
    conn.execute("COMMIT")


async def _busy(stop: asyncio.Event) -> None:
    while not stop.is_set():
        sum(range(2000))  # tens of µs of Python work per loop turn, like a step's bookkeeping
        await asyncio.sleep(0)


async def _measure(mode: str, busy_tasks: int, n: int) -> dict[str, Any]:
    conn = _fresh(str(workdir() / f"committer-{mode}-{busy_tasks}.db"))
    pool = concurrent.futures.ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    others = [asyncio.create_task(_busy(stop)) for _ in range(busy_tasks)]
    latencies = []
    for i in range(n):
        t = time.perf_counter()
        if mode == "loop":
            _commit(conn, i)
            await asyncio.sleep(0)  # the waiting step resumes on the next loop turn
        else:
            await loop.run_in_executor(pool, _commit, conn, i)
        latencies.append((time.perf_counter() - t) * 1e6)
    stop.set()
    await asyncio.gather(*others)
    pool.shutdown()
    conn.close()
    latencies.sort()
    return {"median_us": median(latencies), "p90_us": latencies[int(n * 0.9)]}


async def _all(n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"scenario": "committer", "commits": n}
    for busy in (0, 20):
        for mode in ("loop", "thread"):
            out[f"{mode}_busy{busy}"] = await _measure(mode, busy, n)
    return out


def main() -> None:
    emit(asyncio.run(_all(300)))


if __name__ == "__main__":
    main()
