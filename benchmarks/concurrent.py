"""Scenario 4: 1,000 concurrent runs of a 5-step chain, 20 ms per step.

  python -m benchmarks.concurrent --store memory --runs 1000 --steps 5
  python -m benchmarks.concurrent --store sqlite --runs 1000 --steps 5

All runs are started with `engine.start(...)` (concurrently, so a durable store can commit the
starts together, as a server taking 1,000 requests would), then every result is awaited. The
timer covers both. The engine's `max_concurrent_runs` is raised to `runs` if it is lower, so the
worker may hold every run at once. One measured batch per process; prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from typing import Any

from .common import batch_figures, cpu, current_rss_mb, emit, now, workdir

LATENCY_S = 0.02  # fixed by `workloads.slow_inc`


async def concurrent(store: str, runs: int, steps: int) -> dict[str, Any]:
    from overnight import Engine

    from .workloads import five_steps

    with tempfile.TemporaryDirectory(dir=workdir()) as d:
        url = "memory://" if store == "memory" else f"sqlite:///{os.path.join(d, 'runs.db')}"
        engine = Engine(url)
        engine.max_concurrent_runs = max(engine.max_concurrent_runs, runs)
        async with engine:
            assert await engine.run(five_steps, steps) == steps  # warm-up
            base = current_rss_mb()

            async def wait(handle: Any) -> float:
                assert await handle.result() == steps
                return now() - t

            t, c = now(), cpu()
            handles = await asyncio.gather(*(engine.start(five_steps, steps) for _ in range(runs)))
            started = now() - t
            latencies = sorted(await asyncio.gather(*(wait(h) for h in handles)))
            wall, dc = now() - t, cpu() - c
    return {
        "scenario": "concurrent",
        "store": store,
        "runs": runs,
        "steps": steps,
        "latency_ms": LATENCY_S * 1e3,
        "max_concurrent_runs": engine.max_concurrent_runs,
        "all_started_s": started,
        "ideal_wall_s": steps * LATENCY_S,
        **batch_figures(
            runs=runs, units=steps, unit="step", wall=wall, cpu_s=dc, latencies=latencies, base=base
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    emit(asyncio.run(concurrent(a.store, a.runs, a.steps)))


if __name__ == "__main__":
    main()
