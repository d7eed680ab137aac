"""The reference crash workload: one workflow that touches every durability mechanism.

`REFERENCE` is what `overnight.testing.crash` kills and resumes in the crash tests and in
`make bench`. The workflow, in order:

1. draws `ctx.now()`, `ctx.random()` and `ctx.uuid()` (journaled decisions);
2. `ctx.gather`s `BRANCHES` branches; each runs `fetch` (pure, sleeps a random time) and then
   `save_part` (keyed: applies its effect under `current_step().idempotency_key`), so the
   branches finish in a different order every run and their entries share group commits;
3. calls `flaky` (pure), which fails its first two invocations and then succeeds, with a
   `RetryPolicy` of short delays; it counts invocations in the ledger, because a count kept in
   memory would not survive the kills;
4. `ctx.sleep`s 0.1-0.3 s (length drawn with `ctx.random()`): longer than the engine's
   `inline_wait_seconds` (0.15 s) the run suspends and is woken by the store, shorter it
   sleeps in memory;
5. calls `record_drawn` (keyed), which applies the drawn now/random/uuid to the ledger: the
   ledger keeps the values first drawn, and the run's output (built from the journaled values,
   not from the step's result) must carry the same ones;
6. waits for the signal `go` (the runner sends it before or after the run reaches the wait);
7. calls `book` (reconcilable: applies under its idempotency key; its lookup asks the ledger);
8. calls `charge` (unsafe: applies an effect the service does not dedupe; in doubt, the run
   parks and the runner resolves it the way a person would, by asking the ledger);
9. calls `summarize` (pure) and returns `{"det": ..., "drawn": {...}}`: `det` is the same in
   every run with the same input; `drawn` holds the journaled now/random/uuid.

Every step body first reports `invoke()` to the ledger (`overnight.testing.ledger`), so the test
sees every execution of every step, in any process. Non-pure steps run in this order, which
makes the n-th hit of `after_intent`/`after_effect` name a step: hits 1-3 are the branches'
`save_part` (in random order), 4 is `record_drawn`, 5 `book`, 6 `charge`.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from ..context import Context
from ..step import Found, LookupAnswer, NotFound, RetryPolicy, current_step, step
from ..workflow import workflow
from .crash.workload import Workload
from .ledger import default_client

BRANCHES = 3
SIGNAL = "go"
SIGNAL_PAYLOAD = "yes"
FLAKY_FAILURES = 2
"""`flaky` fails this many invocations (counted by the ledger), then succeeds."""


@step(effect="pure")
async def fetch(i: int, seed: int) -> int:
    """A pure computation that takes a random time."""
    await default_client().invoke()
    await asyncio.sleep(random.uniform(0.0, 0.06))
    return (seed * 31 + i * 7) % 1000


@step(effect="keyed")
async def save_part(i: int, value: int) -> str:
    """Keyed effect: the ledger dedupes it by the step's idempotency key."""
    ledger = default_client()
    await ledger.invoke()
    await asyncio.sleep(random.uniform(0.0, 0.03))
    await ledger.apply(current_step().idempotency_key, {"part": i, "value": value})
    return f"part{i}={value}"


async def _branch(i: int, seed: int) -> str:
    return await save_part(i, await fetch(i, seed))


@step(
    effect="pure",
    retry=RetryPolicy(max_attempts=FLAKY_FAILURES + 3, initial_delay=0.05, backoff=1.0, jitter=0),
)
async def flaky(seed: int) -> int:
    """Fails its first FLAKY_FAILURES invocations (counted outside the process), then succeeds."""
    count = await default_client().invoke()
    if count <= FLAKY_FAILURES:
        raise ConnectionError(f"transient failure #{count}")
    return seed * 2


@step(effect="keyed")
async def record_drawn(now: str, rnd: float, uid: str) -> dict[str, Any]:
    """Applies the journaled now/random/uuid: the ledger keeps the values first seen."""
    ledger = default_client()
    await ledger.invoke()
    drawn = {"now": now, "random": rnd, "uuid": uid}
    await ledger.apply(current_step().idempotency_key, drawn)
    return drawn


@step(effect="reconcilable")
async def book(answer: str) -> str:
    """Reconcilable effect: applied under the idempotency key, found again by `lookup`."""
    ledger = default_client()
    await ledger.invoke()
    await asyncio.sleep(random.uniform(0.0, 0.02))
    booking = f"booked:{answer}"
    await ledger.apply(current_step().idempotency_key, booking)
    return booking


@book.lookup
async def _lookup_booking(idempotency_key: str, answer: str) -> LookupAnswer:
    found = await default_client().lookup(idempotency_key)
    return NotFound() if found is None else Found(found.value)


@step(effect="unsafe")
async def charge(booking: str) -> str:
    """Unsafe effect: the service does not dedupe it (the ledger key only lets tests count)."""
    ledger = default_client()
    await ledger.invoke()
    await asyncio.sleep(random.uniform(0.0, 0.02))
    charged = f"charged:{booking}"
    await ledger.apply(f"{current_step().run_id}/charge", charged)
    return charged


@step(effect="pure")
async def summarize(parts: list[str], flaky_result: int, answer: str, charged: str) -> str:
    """Pure: combine everything deterministic."""
    await default_client().invoke()
    return f"{','.join(parts)};flaky={flaky_result};answer={answer};{charged}"


@workflow
async def reference_workflow(ctx: Context, seed: int) -> dict[str, Any]:
    """The reference workload's workflow (see the module docstring)."""
    now, rnd, uid = ctx.now(), ctx.random(), ctx.uuid()
    parts = await ctx.gather(*(_branch(i, seed) for i in range(BRANCHES)))
    flaky_result = await flaky(seed)
    await ctx.sleep(0.1 + 0.2 * ctx.random())
    drawn: dict[str, Any] = {"now": now.isoformat(), "random": rnd, "uuid": str(uid)}
    await record_drawn(now.isoformat(), rnd, str(uid))
    answer = await ctx.wait_signal(SIGNAL)
    booking = await book(answer)
    charged = await charge(booking)
    summary = await summarize(parts, flaky_result, answer, charged)
    return {"det": summary, "drawn": drawn}


def _deterministic(output: Any) -> Any:
    return output["det"]


def _drawn(output: Any) -> Any:
    return output["drawn"]


REFERENCE = Workload(
    ref=f"{__name__}:REFERENCE",
    workflow=reference_workflow,
    input=7,
    steps=(fetch, save_part, flaky, record_drawn, book, charge, summarize),
    signal=(SIGNAL, SIGNAL_PAYLOAD),
    engine_options={
        "lease_seconds": 1.0,
        "heartbeat_seconds": 0.1,
        "poll_seconds": 0.05,
        "inline_wait_seconds": 0.15,
    },
    deterministic=_deterministic,
    drawn=_drawn,
    drawn_step="record_drawn#1",
)
"""The reference workload (see the module docstring)."""
