"""A worker that takes back its own run after its lease expired (found with the PostgreSQL store,
shown here on the memory store: it does not depend on the store)."""

from __future__ import annotations

import asyncio

from overnight import Context, Engine, step, workflow
from overnight.store import MemoryStore

RUNNING: list[int] = [0, 0]
"""Invocations of `blocks_first` running now, and the most ever running at once."""
GATE: dict[str, asyncio.Event] = {}


@step(effect="keyed")
async def blocks_first() -> str:
    RUNNING[0] += 1
    RUNNING[1] = max(RUNNING[1], RUNNING[0])
    try:
        if "entered" not in GATE or not GATE["entered"].is_set():
            GATE.setdefault("entered", asyncio.Event()).set()
            await GATE["release"].wait()
            return "first"
        return "again"
    finally:
        RUNNING[0] -= 1


@workflow
async def calls_blocks_first(ctx: Context) -> str:
    return await blocks_first()


async def test_a_worker_that_reclaims_its_own_run_stops_the_old_execution_first() -> None:
    RUNNING[:] = [0, 0]
    GATE.clear()
    GATE["release"] = asyncio.Event()
    engine = Engine(MemoryStore(), lease_seconds=0.3, heartbeat_seconds=60, poll_seconds=0.05)
    async with engine:
        try:
            handle = await engine.start(calls_blocks_first)
            assert await handle.result(timeout=10) == "again"  # the same worker took it back
            assert RUNNING[1] == 1, "the first execution was still running the step"
        finally:
            GATE["release"].set()  # let an orphaned execution end, or closing waits for it
