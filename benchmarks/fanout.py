"""Scenario 3: one workflow fans out to k branches that each await 50 ms, then joins.

  python -m benchmarks.fanout --store memory --k 10000
  python -m benchmarks.fanout --store sqlite --k 10000

`ctx.map(branch_step, range(k))` with no concurrency limit: all k branches are in flight at once.
One measured run per process, so `ru_maxrss` is the peak of that run alone; the driver starts a
fresh process per repetition. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from typing import Any

from .common import cpu, current_rss_mb, emit, now, peak_rss_mb, workdir

LATENCY_S = 0.05  # fixed by `workloads.branch_step`


async def fanout(store: str, k: int) -> dict[str, Any]:
    from overnight import Engine

    from .workloads import fanout as fanout_workflow

    with tempfile.TemporaryDirectory(dir=workdir()) as d:
        url = "memory://" if store == "memory" else f"sqlite:///{os.path.join(d, 'fanout.db')}"
        async with Engine(url) as engine:
            assert await engine.run(fanout_workflow, 2) == 2  # warm the code paths (tiny)
            base = current_rss_mb()
            t, c = now(), cpu()
            result = await engine.run(fanout_workflow, k)
            wall, dc = now() - t, cpu() - c
            assert result == k
    return {
        "scenario": "fanout",
        "store": store,
        "k": k,
        "concurrency_limit": None,
        "latency_ms": LATENCY_S * 1e3,
        "wall_s": wall,
        "overhead_us_per_branch": (wall - LATENCY_S) / k * 1e6,
        "cpu_s": dc,
        "cpu_us_per_branch": dc / k * 1e6,
        "baseline_rss_mb": base,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    ap.add_argument("--k", type=int, default=10000)
    a = ap.parse_args()
    emit(asyncio.run(fanout(a.store, a.k)))


if __name__ == "__main__":
    main()
