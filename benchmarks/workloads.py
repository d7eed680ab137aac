"""The overnight workflows and steps the scenarios run.

They live in an importable module (not in `__main__`) so their references are stable: the
resume scenario builds a run in one process and finishes it in another, which must import
`benchmarks.workloads:long_then_wait` to replay it.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from overnight import Context, step, workflow


@step(effect="pure")
async def inc(x: int) -> int:
    """The trivial step of the chains: no I/O, so its cost is the engine's own."""
    return x + 1


@workflow
async def chain(ctx: Context, n: int) -> int:
    """Scenarios 1-2: n trivial steps awaited one after another."""
    x = 0
    for _ in range(n):
        x = await inc(x)
    return x


@step(effect="pure")
async def branch_step(i: int) -> int:
    """Scenario 3: one branch, standing in for a 50 ms model call."""
    await asyncio.sleep(0.05)
    return i


@workflow
async def fanout(ctx: Context, k: int) -> int:
    """Scenario 3: k branches at once (no concurrency limit), then the join."""
    results = await ctx.map(branch_step, range(k))
    return len(results)


@step(effect="pure")
async def slow_inc(x: int) -> int:
    """Scenario 4: a step standing in for a 20 ms model call."""
    await asyncio.sleep(0.02)
    return x + 1


@workflow
async def five_steps(ctx: Context, steps: int) -> int:
    """Scenario 4: a short chain of 20 ms steps (one of 1,000 concurrent runs)."""
    x = 0
    for _ in range(steps):
        x = await slow_inc(x)
    return x


@workflow
async def long_then_wait(ctx: Context, n: int) -> int:
    """Scenario 5: a 10,000-entry journal, then a wait; the signal makes it replay everything."""
    x = 0
    for _ in range(n):
        x = await inc(x)
    await ctx.wait_signal("go")
    return x


@step(effect="pure")
async def stamp(i: int) -> list[Any]:
    """PostgreSQL takeover: a 20 ms step that says which process ran it, and when."""
    await asyncio.sleep(0.02)
    return [os.getpid(), time.time()]


@workflow
async def stamped_chain(ctx: Context, n: int) -> int:
    """PostgreSQL takeover: a long chain of `stamp` steps (the run a killed worker held)."""
    for i in range(n):
        await stamp(i)
    return n


@step(effect="pure")
async def clock() -> float:
    """PostgreSQL claim latency: when the step ran."""
    return time.time()


@workflow
async def first_step_time(ctx: Context) -> float:
    """PostgreSQL claim latency: returns when its first step ran."""
    return await clock()


@workflow
async def waits_for_go(ctx: Context) -> Any:
    """PostgreSQL memory: a run suspended on a signal (it lives only in the store)."""
    return await ctx.wait_signal("go")
