"""Code that changed under a run: detected on resume, parked with the key and the difference."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from overnight import Context, Engine, RunParkedError, Workflow, step, workflow
from overnight.store import Store

from .helpers import until_status

CALLS: Counter[str] = Counter()


@step(effect="pure")
async def a(x: int) -> int:
    CALLS[f"a({x})"] += 1
    return x


@step(effect="pure")
async def b() -> str:
    CALLS["b"] += 1
    return "b"


@step(effect="pure")
async def c() -> str:
    CALLS["c"] += 1
    return "c"


@workflow
async def original(ctx: Context) -> list[object]:
    out: list[object] = [await a(1), await b()]
    await ctx.wait_signal("go")
    return out


@workflow
async def renamed(ctx: Context) -> list[object]:
    out: list[object] = [await a(1), await c()]
    await ctx.wait_signal("go")
    return out


@workflow
async def inserted(ctx: Context) -> list[object]:
    out: list[object] = [await a(1), await c(), await b()]
    await ctx.wait_signal("go")
    return out


@workflow
async def removed(ctx: Context) -> list[object]:
    out: list[object] = [await a(1)]
    await ctx.wait_signal("go")
    return out


@workflow
async def argument_changed(ctx: Context) -> list[object]:
    out: list[object] = [await a(2), await b()]
    await ctx.wait_signal("go")
    return out


async def branch(i: int) -> int:
    return await a(i)


@workflow
async def fan_out_two(ctx: Context) -> list[object]:
    out = await ctx.gather(branch(1), branch(2))
    await ctx.wait_signal("go")
    return out


@workflow
async def fan_out_three(ctx: Context) -> list[object]:
    out = await ctx.gather(branch(1), branch(2), branch(3))
    await ctx.wait_signal("go")
    return out


def same_ref(
    new: Workflow[object, object], old: Workflow[object, object]
) -> Workflow[object, object]:
    """Deploy `new` as the code behind `old`'s reference (what a code change looks like)."""
    clone = workflow(new.fn)
    clone.ref = old.ref
    return clone


async def start_waiting(factory: Callable[[], Store], wf: Workflow[object, object]) -> None:
    async with Engine(factory(), workflows=[wf], poll_seconds=0.02) as engine:
        await engine.start(wf, run_id="r")
        await until_status(engine, "r", "waiting")


async def resume_with(
    factory: Callable[[], Store], new: Workflow[object, object], old: Workflow[object, object]
) -> str:
    async with Engine(factory(), workflows=[same_ref(new, old)], poll_seconds=0.02) as engine:
        await engine.signal("r", "go")
        with pytest.raises(RunParkedError) as info:
            await engine.result("r", timeout=5)
        return str(info.value.run.note)


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (renamed, "the code now calls 'c#1' where the journal recorded 'b#1'"),
        (inserted, "the code now calls 'c#1' where the journal recorded 'b#1'"),
        (removed, "the code now calls 'signal:go#1' where the journal recorded 'b#1'"),
        (
            argument_changed,
            "step 'a#1' is called with a different input than recorded: "
            "recorded [[1],{}], now [[2],{}]",
        ),
    ],
)
async def test_changed_code_parks_naming_key_and_difference(
    store_factory: Callable[[], Store], new: Workflow[object, object], expected: str
) -> None:
    await start_waiting(store_factory, original)
    note = await resume_with(store_factory, new, original)
    assert expected in note


async def test_changed_gather_width_parks(store_factory: Callable[[], Store]) -> None:
    await start_waiting(store_factory, fan_out_two)
    note = await resume_with(store_factory, fan_out_three, fan_out_two)
    assert "'gather#1' had 2 branches when recorded and has 3 now" in note


@workflow
async def records_then_waits(ctx: Context) -> None:
    await ctx.wait_signal("go")
    await a(7)
    await ctx.wait_signal("again")


@workflow
async def forgot_the_tail(ctx: Context) -> None:
    await ctx.wait_signal("go")


async def test_removed_call_at_the_end_parks_when_the_run_finishes(
    store_factory: Callable[[], Store],
) -> None:
    async with Engine(store_factory(), workflows=[records_then_waits], poll_seconds=0.02) as e:
        await e.start(records_then_waits, run_id="t")
        await until_status(e, "t", "waiting")
        await e.signal("t", "go")
        await until_status(e, "t", "waiting", after=lambda r: r.attempts >= 2)
    clone = same_ref(forgot_the_tail, records_then_waits)
    async with Engine(store_factory(), workflows=[clone], poll_seconds=0.02) as e:
        await e.signal("t", "again")
        with pytest.raises(RunParkedError, match="'a#1', which the code no longer calls"):
            await e.result("t", timeout=5)


async def test_accepting_changes_keeps_recorded_results_and_runs_new_keys(
    store_factory: Callable[[], Store],
) -> None:
    CALLS.clear()
    await start_waiting(store_factory, original)
    await resume_with(store_factory, renamed, original)
    async with Engine(store_factory(), workflows=[same_ref(renamed, original)]) as engine:
        await engine.accept_changes("r")
        assert await engine.result("r", timeout=5) == [1, "c"]
    # a(1) was recorded before the change and kept; c() is new and ran; b() is orphaned.
    assert Counter({"a(1)": 1, "b": 1, "c": 1}) == CALLS


@workflow
async def before_patch(ctx: Context) -> str:
    await a(1)
    await ctx.wait_signal("go")
    return "old"


@workflow
async def with_patch(ctx: Context) -> str:
    if ctx.patched("greeting"):
        await c()
    await a(1)
    await ctx.wait_signal("go")
    return "new" if ctx.patched("greeting") else "old"


async def test_patched_branches_old_runs_one_way_and_new_runs_the_other(
    store_factory: Callable[[], Store],
) -> None:
    await start_waiting(store_factory, before_patch)
    patched = same_ref(with_patch, before_patch)
    async with Engine(store_factory(), workflows=[patched], poll_seconds=0.02) as engine:
        await engine.signal("r", "go")
        assert await engine.result("r", timeout=5) == "old"
        fresh = await engine.start(patched, run_id="fresh")
        await until_status(engine, "fresh", "waiting")
        await engine.signal("fresh", "go")
        assert await fresh.result(timeout=5) == "new"
        keys = [e.key for e in await engine.journal("fresh")]
        assert keys[:2] == ["patched:greeting", "c#1"]
