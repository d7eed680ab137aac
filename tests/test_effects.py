"""In-doubt steps are resolved by their effect class, never blindly repeated.

A step is put in doubt here the way a crash does it: its intent is committed, its body is
interrupted (a worker that runs out of drain time), and another engine resumes the run.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from overnight import (
    Context,
    Engine,
    Found,
    NotFound,
    RunParkedError,
    Unknown,
    UserError,
    current_step,
    step,
    workflow,
)
from overnight.step import LookupAnswer
from overnight.store import Store

from .helpers import until_status

INVOKED: Counter[str] = Counter()
KEYS: list[str] = []
# Fresh per test (an Event belongs to one event loop): "entered" the body, and "release" it.
GATE: dict[str, asyncio.Event] = {}
LOOKUP: dict[str, LookupAnswer] = {}


async def _effect(name: str) -> int:
    INVOKED[name] += 1
    KEYS.append(current_step().idempotency_key)
    if INVOKED[name] == 1:
        GATE["entered"].set()
        await GATE["release"].wait()  # never set: the first invocation is interrupted
    return 42


@step(effect="pure")
async def pure_effect() -> int:
    return await _effect("pure")


@step(effect="keyed")
async def keyed_effect() -> int:
    return await _effect("keyed")


@step(effect="reconcilable")
async def reconcilable_effect() -> int:
    return await _effect("reconcilable")


@reconcilable_effect.lookup
async def _lookup(idempotency_key: str) -> LookupAnswer:
    KEYS.append(f"lookup:{idempotency_key}")
    return LOOKUP["answer"]


@step  # declares nothing: unsafe
async def unsafe_effect() -> int:
    return await _effect("unsafe")


def _workflow_for(effect: Callable[[], object]) -> object:
    @workflow(name=f"calls_{effect.__name__}")
    async def calls(ctx: Context) -> object:
        return await effect()  # type: ignore[misc]

    return calls


WORKFLOWS = {
    name: _workflow_for(fn)
    for name, fn in [
        ("pure", pure_effect),
        ("keyed", keyed_effect),
        ("reconcilable", reconcilable_effect),
        ("unsafe", unsafe_effect),
    ]
}


async def interrupt_inside_step(factory: Callable[[], Store], name: str) -> None:
    """Start the run and interrupt it while the step's body runs (intent committed, no done)."""
    INVOKED.clear()
    KEYS.clear()
    GATE.update(entered=asyncio.Event(), release=asyncio.Event())
    wf = WORKFLOWS[name]
    engine = Engine(factory(), workflows=[wf], drain_seconds=0.05, poll_seconds=0.02)  # type: ignore[list-item]
    async with engine:
        await engine.start(wf, run_id="doubt")  # type: ignore[arg-type]
        await asyncio.wait_for(GATE["entered"].wait(), 5)
    # Leaving the block drained the worker: the body was cancelled mid-way.
    async with Engine(factory(), worker=False) as reader:  # closed: a PostgreSQL store holds
        kinds = [e.kind for e in await reader.journal("doubt")]  # connections until then
    assert kinds == ([] if name == "pure" else ["intent"]), kinds


async def resume(factory: Callable[[], Store], name: str) -> Engine:
    return Engine(factory(), workflows=[WORKFLOWS[name]], poll_seconds=0.02)  # type: ignore[list-item]


async def test_pure_step_runs_again(store_factory: Callable[[], Store]) -> None:
    await interrupt_inside_step(store_factory, "pure")
    async with await resume(store_factory, "pure") as engine:
        assert await engine.result("doubt", timeout=5) == 42
    assert INVOKED["pure"] == 2


async def test_keyed_step_runs_again_with_the_same_key(store_factory: Callable[[], Store]) -> None:
    await interrupt_inside_step(store_factory, "keyed")
    async with await resume(store_factory, "keyed") as engine:
        assert await engine.result("doubt", timeout=5) == 42
    assert INVOKED["keyed"] == 2
    assert KEYS == ["doubt/keyed_effect#1", "doubt/keyed_effect#1"]


async def test_reconcilable_found_takes_the_lookup_result(
    store_factory: Callable[[], Store],
) -> None:
    await interrupt_inside_step(store_factory, "reconcilable")
    LOOKUP["answer"] = Found(7)
    async with await resume(store_factory, "reconcilable") as engine:
        assert await engine.result("doubt", timeout=5) == 7
    assert INVOKED["reconcilable"] == 1
    assert KEYS == ["doubt/reconcilable_effect#1", "lookup:doubt/reconcilable_effect#1"]


async def test_reconcilable_not_found_runs_again_with_the_same_key(
    store_factory: Callable[[], Store],
) -> None:
    await interrupt_inside_step(store_factory, "reconcilable")
    LOOKUP["answer"] = NotFound()
    async with await resume(store_factory, "reconcilable") as engine:
        assert await engine.result("doubt", timeout=5) == 42
    assert INVOKED["reconcilable"] == 2
    assert KEYS[0] == KEYS[2] == "doubt/reconcilable_effect#1"


async def test_reconcilable_unknown_parks(store_factory: Callable[[], Store]) -> None:
    await interrupt_inside_step(store_factory, "reconcilable")
    LOOKUP["answer"] = Unknown("the ledger is offline")
    async with await resume(store_factory, "reconcilable") as engine:
        with pytest.raises(RunParkedError, match="the ledger is offline"):
            await engine.result("doubt", timeout=5)
    assert INVOKED["reconcilable"] == 1


async def test_unsafe_step_parks_and_is_never_reinvoked(store_factory: Callable[[], Store]) -> None:
    await interrupt_inside_step(store_factory, "unsafe")
    async with await resume(store_factory, "unsafe") as engine:
        with pytest.raises(RunParkedError) as info:
            await engine.result("doubt", timeout=5)
        note = str(info.value.run.note)
        assert "'unsafe_effect#1' (unsafe)" in note
        assert "resolve_step('doubt', 'unsafe_effect#1'" in note
        # A person checks and says it took effect, with its result (validated: it is an int).
        with pytest.raises(UserError, match="does not match its return type"):
            await engine.resolve_step("doubt", "unsafe_effect#1", result="not a number")
        await engine.resolve_step("doubt", "unsafe_effect#1", result=5)
        assert await engine.result("doubt", timeout=5) == 5
    assert INVOKED["unsafe"] == 1


async def test_unsafe_step_resolved_as_retry_runs_again(store_factory: Callable[[], Store]) -> None:
    await interrupt_inside_step(store_factory, "unsafe")
    async with await resume(store_factory, "unsafe") as engine:
        await until_status(engine, "doubt", "parked")
        await engine.resolve_step("doubt", "unsafe_effect#1", retry=True)
        assert await engine.result("doubt", timeout=5) == 42
    assert INVOKED["unsafe"] == 2


async def test_resolve_step_needs_a_parked_step(store_factory: Callable[[], Store]) -> None:
    await interrupt_inside_step(store_factory, "unsafe")
    async with await resume(store_factory, "unsafe") as engine:
        await until_status(engine, "doubt", "parked")
        with pytest.raises(UserError, match="no step 'other#1' waiting for a decision"):
            await engine.resolve_step("doubt", "other#1", retry=True)
        with pytest.raises(UserError, match="exactly one of"):
            await engine.resolve_step("doubt", "unsafe_effect#1")
