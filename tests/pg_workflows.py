"""Workflows the PostgreSQL store tests run."""

from __future__ import annotations

import time
from typing import Any

from overnight import Context, step, workflow


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
