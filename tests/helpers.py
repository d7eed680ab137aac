"""Small waiting helpers: tests wait on observable state, never on fixed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from overnight import Engine, RunRecord


async def until_status(
    engine: Engine,
    run_id: str,
    status: str,
    *,
    timeout: float = 5.0,
    after: Callable[[RunRecord], bool] | None = None,
) -> RunRecord:
    """Poll until the run has `status` (and `after(record)` holds); fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        record = await engine.get_run(run_id)
        if record.status == status and (after is None or after(record)):
            return record
        if loop.time() > deadline:
            raise AssertionError(f"run {run_id!r} stayed {record.status!r}; expected {status!r}")
        await asyncio.sleep(0.01)
