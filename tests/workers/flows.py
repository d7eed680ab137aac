"""Workflows imported by reference (`tests.workers.flows:...`) in worker subprocesses.

Steps append to a log file named by `OVERNIGHT_TEST_LOG`, so a test can count invocations
outside the process that made them.
"""

from __future__ import annotations

import asyncio
import os
import signal

from overnight import Context, step, workflow


def log(line: str) -> None:
    """Append a line to the test's log file (O_APPEND: atomic for short lines)."""
    fd = os.open(os.environ["OVERNIGHT_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@step(effect="keyed")
async def slow_step(i: int, seconds: float) -> int:
    log(f"start {i}")
    await asyncio.sleep(seconds)
    log(f"end {i}")
    return i


@workflow
async def slow_steps(ctx: Context, spec: dict[str, float]) -> list[int]:
    return [await slow_step(i, spec["seconds"]) for i in range(int(spec["n"]))]


@workflow
async def endless(ctx: Context) -> None:
    i = 0
    while True:
        i += 1
        await slow_step(i, 0.05)


@step(effect="pure")
async def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@workflow
async def kills_its_worker(ctx: Context) -> None:
    await die()
