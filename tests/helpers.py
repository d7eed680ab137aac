"""Small waiting helpers: tests wait on observable state, never on fixed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from overnight import Engine, RunNotFoundError, RunRecord


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
        try:
            record: RunRecord | None = await engine.get_run(run_id)
        except RunNotFoundError:  # not started yet (e.g. a child its parent is about to start)
            record = None
        if record is not None and record.status == status and (after is None or after(record)):
            return record
        if loop.time() > deadline:
            now = "did not exist" if record is None else f"stayed {record.status!r}"
            raise AssertionError(f"run {run_id!r} {now}; expected {status!r}")
        await asyncio.sleep(0.01)
