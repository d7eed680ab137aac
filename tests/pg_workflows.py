"""Workflows the PostgreSQL store tests run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from overnight import Context, current_step, step, workflow


@step(effect="pure")
async def clock() -> float:
    return time.time()


@workflow
async def stamps(ctx: Context) -> float:
    """Returns when its first step ran: how soon a worker picked the run up."""
    return await clock()


@workflow
async def waits_then_stamps(ctx: Context) -> tuple[Any, float]:
    got = await ctx.wait_signal("go")
    return got, await clock()


GATE: dict[str, asyncio.Event] = {}
"""Fresh per test: "entered" is set by the first invocation of `slow_once`, which then waits for
"release"; later invocations return at once."""
CALLS: list[str] = []


@step(effect="keyed")
async def slow_once() -> str:
    CALLS.append(current_step().idempotency_key)
    if len(CALLS) == 1:
        GATE["entered"].set()
        await GATE["release"].wait()
        return "first worker"
    return "second worker"


@workflow
async def calls_slow_once(ctx: Context) -> str:
    return await slow_once()


@step(effect="pure")
async def outlives_the_lease(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@workflow
async def runs_longer_than_its_lease(ctx: Context, seconds: float) -> str:
    return await outlives_the_lease(seconds)
