"""The workflows the PostgreSQL fault tests run in their worker processes.

Every step body reports `invoke()` to the ledger first, so the test sees every execution of
every step in every process; keyed steps apply their effect through the ledger under
`current_step().idempotency_key`. Step bodies sleep a random time, so that kills land inside
steps, between an effect and its `done`, and between commits.

- `chain`: `steps` steps alternating `mix` (pure) and `book` (keyed); its output is
  `expected_chain(i, steps)` whatever happened to the workers.
- `stalls`: `hold` (keyed) applies its effect and then blocks its worker's event loop, the
  first time it is invoked, for `hold_seconds` (the test stops the worker with SIGSTOP there);
  then `book` (keyed). Its output names the process whose `hold` was journaled.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

from ...context import Context
from ...step import current_step, step
from ...workflow import workflow
from ..ledger import ENV_TAG, default_client

MODULUS = 1_000_003


def mix_value(x: int, k: int) -> int:
    return (x * 31 + k * 7 + 1) % MODULUS


def book_value(x: int, k: int) -> int:
    return (x + 1000 * k + 3) % MODULUS


def expected_chain(i: int, steps: int) -> int:
    """The output of `chain` for run number `i`."""
    x = i
    for k in range(steps):
        x = mix_value(x, k) if k % 2 == 0 else book_value(x, k)
    return x


async def _pause(lo: float, hi: float) -> None:
    if hi > 0:
        await asyncio.sleep(random.uniform(lo, hi))


@step(effect="pure")
async def mix(x: int, k: int, lo: float, hi: float) -> int:
    """Pure: a computation that takes a random time."""
    await default_client().invoke()
    await _pause(lo, hi)
    return mix_value(x, k)


@step(effect="keyed")
async def book(x: int, k: int, lo: float, hi: float) -> int:
    """Keyed: applies its effect under its idempotency key, halfway through its time."""
    ledger = default_client()
    await ledger.invoke()
    await _pause(lo / 2, hi / 2)
    await ledger.apply(current_step().idempotency_key, {"x": x, "k": k})
    await _pause(lo / 2, hi / 2)
    return book_value(x, k)


@workflow
async def chain(ctx: Context, spec: dict[str, Any]) -> int:
    """`spec`: `i` (the run's number), `steps`, `lo` and `hi` (seconds a step takes)."""
    x = int(spec["i"])
    lo, hi = float(spec.get("lo", 0.0)), float(spec.get("hi", 0.0))
    for k in range(int(spec["steps"])):
        x = await (mix(x, k, lo, hi) if k % 2 == 0 else book(x, k, lo, hi))
    return x


@step(effect="keyed")
async def hold(seconds: float) -> str:
    """Keyed: applies its effect, then (first invocation only) blocks the event loop."""
    ledger = default_client()
    count = await ledger.invoke()
    await ledger.apply(current_step().idempotency_key, "held")
    if count == 1:
        # Blocking on purpose: a SIGSTOP that lands here leaves the worker, once continued,
        # with nothing to do but journal this step's done and commit the next intent.
        time.sleep(seconds)  # noqa: ASYNC251
    return os.environ.get(ENV_TAG, "")


@workflow
async def stalls(ctx: Context, spec: dict[str, Any]) -> list[Any]:
    """`spec`: `hold_seconds`. Returns `[tag of the process whose hold was journaled, n]`."""
    held_by = await hold(float(spec["hold_seconds"]))
    return [held_by, await book(1, 1, 0.0, 0.0)]
