"""Bare-asyncio floors: what the same work costs with no framework at all.

  python -m benchmarks.floor chain --n 1000 --reps 7
  python -m benchmarks.floor fanout --k 10000
  python -m benchmarks.floor concurrent --runs 1000 --steps 5 --latency-ms 20

Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .common import cpu, current_rss_mb, emit, median, now, peak_rss_mb


async def _inc(x: int) -> int:
    return x + 1


async def _noop() -> None:
    return None


async def chain_floor(n: int, reps: int) -> dict[str, Any]:
    """The chain with plain coroutines: an awaited call, a loop turn, and a task per step."""
    out: dict[str, Any] = {"scenario": "floor_chain", "n": n, "reps": reps}

    async def await_coroutine() -> float:
        t, x = now(), 0
        for _ in range(n):
            x = await _inc(x)
        return now() - t

    async def sleep0() -> float:
        t = now()
        for _ in range(n):
            await asyncio.sleep(0)
        return now() - t

    async def task_each() -> float:
        t, x = now(), 0
        for _ in range(n):
            x = await asyncio.create_task(_inc(x))
        return now() - t

    for name, fn in (
        ("await_coroutine", await_coroutine),
        ("sleep0_loop_turn", sleep0),
        ("create_task_and_await", task_each),
    ):
        await fn()  # warm-up
        ts = [await fn() for _ in range(reps)]
        out[name + "_us"] = median(ts) / n * 1e6
    return out


async def fanout_floor(k: int, latency_s: float) -> dict[str, Any]:
    base = current_rss_mb()
    t, c = now(), cpu()
    res = await asyncio.gather(*(asyncio.sleep(latency_s, "ok") for _ in range(k)))
    wall, dc = now() - t, cpu() - c
    assert len(res) == k
    return {
        "scenario": "floor_fanout",
        "k": k,
        "latency_ms": latency_s * 1e3,
        "wall_s": wall,
        "overhead_us_per_branch": (wall - latency_s) / k * 1e6,
        "cpu_s": dc,
        "baseline_rss_mb": base,
        "peak_rss_mb": peak_rss_mb(),
    }


async def concurrent_floor(runs: int, steps: int, latency_s: float) -> dict[str, Any]:
    async def one_run() -> float:
        t0 = now()
        for _ in range(steps):
            await asyncio.sleep(latency_s)
        return now() - t0

    base = current_rss_mb()
    t, c = now(), cpu()
    lat = await asyncio.gather(*(one_run() for _ in range(runs)))
    wall, dc = now() - t, cpu() - c
    lat.sort()
    return {
        "scenario": "floor_concurrent",
        "runs": runs,
        "steps": steps,
        "latency_ms": latency_s * 1e3,
        "wall_s": wall,
        "runs_per_s": runs / wall,
        "cpu_s": dc,
        "run_latency_p50_ms": lat[len(lat) // 2] * 1e3,
        "run_latency_p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)] * 1e3,
        "baseline_rss_mb": base,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["chain", "fanout", "concurrent"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--k", type=int, default=10000)
    ap.add_argument("--latency-ms", type=float, default=None)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    if a.what == "chain":
        emit(asyncio.run(chain_floor(a.n, a.reps)))
    elif a.what == "fanout":
        emit(asyncio.run(fanout_floor(a.k, (a.latency_ms or 50.0) / 1e3)))
    else:
        emit(asyncio.run(concurrent_floor(a.runs, a.steps, (a.latency_ms or 20.0) / 1e3)))


if __name__ == "__main__":
    main()
