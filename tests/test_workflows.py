"""The durable-function API: steps, structural keys, replay, waits, children, failures."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Callable

import orjson
import pydantic
import pytest

from overnight import (
    ChildFailed,
    Context,
    Engine,
    RetryPolicy,
    RunCancelledError,
    RunFailedError,
    RunParkedError,
    StepFailed,
    UserError,
    current_step,
    step,
    workflow,
)
from overnight._engine import codec
from overnight.store import Store

from .helpers import until_status

CALLS: list[str] = []


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


class Report(pydantic.BaseModel):
    title: str
    when: dt.datetime
    colour: Colour
    points: list[Point]
    blob: bytes


@step(effect="pure")
async def double(x: int) -> int:
    CALLS.append(f"double({x})")
    return x * 2


@step(effect="pure")
async def make_report(title: str) -> Report:
    CALLS.append(f"make_report({title})")
    return Report(
        title=title,
        when=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        colour=Colour.BLUE,
        points=[Point(1, 2.5)],
        blob=b"\x00\xff",
    )


@workflow
async def doubles(ctx: Context, n: int) -> list[int]:
    return [await double(i) for i in range(n)]


async def test_run_returns_output_and_journals_structural_keys(engine: Engine) -> None:
    assert await engine.run(doubles, 3, run_id="d1") == [0, 2, 4]
    keys = [(e.key, e.kind) for e in await engine.journal("d1")]
    assert keys == [
        ("double#1", "done"),
        ("double#2", "done"),
        ("double#3", "done"),
        ("", "output"),
    ]


async def test_starting_an_existing_id_returns_that_run(engine: Engine) -> None:
    first = await engine.start(doubles, 2, run_id="same")
    second = await engine.start(doubles, 5, run_id="same")
    assert (first.created, second.created) == (True, False)
    assert await second.result() == [0, 2]


@workflow
async def waits_then_reports(ctx: Context, title: str) -> tuple[Report, Report]:
    report = await make_report(title)
    await ctx.wait_signal("go")
    again = await make_report(title + "!")
    return report, again


async def test_replayed_step_returns_equal_value_of_same_type(engine: Engine) -> None:
    CALLS.clear()
    handle = await engine.start(waits_then_reports, "t", run_id="r1")
    await until_status(engine, "r1", "waiting")
    await engine.signal("r1", "go")
    first, second = await handle.result()
    # make_report('t') ran once: the resumed execution replayed it from the journal.
    assert CALLS == ["make_report(t)", "make_report(t!)"]
    assert type(first) is Report
    assert first.points == [Point(1, 2.5)]
    assert type(first.points[0]) is Point
    assert first.colour is Colour.BLUE
    assert first.blob == b"\x00\xff"
    assert second.title == "t!"


@workflow
async def fan_out(ctx: Context, n: int) -> list[int]:
    async def branch(i: int) -> int:
        a = await double(i)
        return await double(a)

    return await ctx.gather(*(branch(i) for i in range(n)))


async def test_gather_keys_branches_by_invocation_order(engine: Engine) -> None:
    assert await engine.run(fan_out, 3, run_id="g") == [0, 4, 8]
    keys = sorted(e.key for e in await engine.journal("g") if e.kind == "done")
    assert keys == [f"gather#1/{i}/double#{j}" for i in range(3) for j in (1, 2)]


@workflow
async def mapped(ctx: Context, n: int) -> list[int]:
    return await ctx.map(double, range(n), concurrency=2)


async def test_map_with_concurrency_limit(engine: Engine) -> None:
    assert await engine.run(mapped, 5, run_id="m") == [0, 2, 4, 6, 8]
    keys = sorted(e.key for e in await engine.journal("m") if e.kind == "done")
    assert keys == [f"map#1/{i}/double#1" for i in range(5)]


@workflow
async def nondeterministic_values(ctx: Context) -> tuple[dt.datetime, float, uuid.UUID]:
    values = (ctx.now(), ctx.random(), ctx.uuid())
    await ctx.wait_signal("go")
    again = (ctx.now(), ctx.random(), ctx.uuid())
    assert again != values
    return values


async def test_now_random_uuid_are_journaled(engine: Engine) -> None:
    handle = await engine.start(nondeterministic_values, run_id="nd")
    await until_status(engine, "nd", "waiting")
    index = await engine.replay_index("nd")
    recorded = [s.entries[0][1]["value"] for k, s in index.records.items() if "#1" in k]
    await engine.signal("nd", "go")
    now, rand, uid = await handle.result()
    assert isinstance(now, dt.datetime)
    assert isinstance(uid, uuid.UUID)
    assert [now.isoformat(), rand, str(uid)] == [
        recorded[0]["$dt"][0],
        recorded[1],
        recorded[2]["$uuid"],
    ]


@workflow
async def signals_in_order(ctx: Context) -> list[str]:
    return [await ctx.wait_signal("msg") for _ in range(3)]


async def test_signals_queue_in_arrival_order_and_dedupe_by_id(engine: Engine) -> None:
    handle = await engine.start(signals_in_order, run_id="s")
    assert await engine.signal("s", "msg", "a", signal_id="1")
    assert not await engine.signal("s", "msg", "a-again", signal_id="1")
    await engine.signal("s", "msg", "b", signal_id="2")
    await engine.signal("s", "msg", "c", signal_id="3")
    assert await handle.result() == ["a", "b", "c"]


@workflow
async def signal_or_timeout(ctx: Context) -> str:
    try:
        return str(await ctx.wait_signal("answer", timeout=0.05))
    except TimeoutError:
        return "timed out"


async def test_signal_wait_times_out_deterministically(engine: Engine) -> None:
    assert await engine.run(signal_or_timeout, run_id="to") == "timed out"
    kinds = [e.kind for e in await engine.journal("to")]
    assert kinds == ["timer", "decision", "output"]


@workflow
async def sleeper(ctx: Context, seconds: float) -> str:
    await ctx.sleep(seconds)
    return "woke"


async def test_long_sleep_releases_the_worker_and_wakes_on_time(store: object) -> None:
    async with Engine(store, poll_seconds=0.02, inline_wait_seconds=0.0) as engine:  # type: ignore[arg-type]
        handle = await engine.start(sleeper, 0.3, run_id="z")
        record = await until_status(engine, "z", "waiting")
        assert record.owner is None
        assert record.due_at is not None
        assert await handle.result(timeout=5) == "woke"


@step(effect="pure", retry=RetryPolicy(max_attempts=3, initial_delay=0.01))
async def flaky(tag: str) -> str:
    CALLS.append(tag)
    if CALLS.count(tag) < 3:
        raise ConnectionError(f"try {CALLS.count(tag)}")
    return "ok"


@step(effect="pure", retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
async def always_fails() -> None:
    raise ValueError("nope")


@workflow
async def retrying(ctx: Context, tag: str) -> str:
    return await flaky(tag)


@workflow
async def giving_up(ctx: Context) -> str:
    try:
        await always_fails()
    except StepFailed as exc:
        return f"{exc.error_type} after {exc.attempts}"
    return "unreachable"


async def test_retry_policy_retries_then_succeeds(engine: Engine) -> None:
    CALLS.clear()
    assert await engine.run(retrying, "x", run_id="retry") == "ok"
    kinds = [e.kind for e in await engine.journal("retry")]
    assert kinds == ["failed", "failed", "done", "output"]


async def test_step_failure_is_catchable_as_step_failed(engine: Engine) -> None:
    assert await engine.run(giving_up, run_id="gu") == "ValueError after 2"


@workflow
async def failing(ctx: Context) -> None:
    raise RuntimeError("boom")


async def test_failed_run_raises_run_failed_with_the_partial_run(engine: Engine) -> None:
    with pytest.raises(RunFailedError) as info:
        await engine.run(failing, run_id="f")
    assert info.value.error_type == "RuntimeError"
    assert info.value.run.status == "failed"


@workflow
async def parent(ctx: Context, n: int) -> list[int]:
    return await ctx.child(doubles, n)


@workflow
async def parent_of_failure(ctx: Context) -> str:
    try:
        await ctx.child(failing)
    except ChildFailed as exc:
        return exc.status
    return "unreachable"


async def test_child_runs(engine: Engine) -> None:
    assert await engine.run(parent, 2, run_id="p") == [0, 2]
    child = await engine.get_run("p/child:doubles#1")
    assert child.parent_id == "p"
    assert child.status == "completed"
    assert await engine.run(parent_of_failure, run_id="pf") == "failed"


@workflow
async def waits_for_word(ctx: Context) -> str:
    return str(await ctx.wait_signal("word"))


@workflow
async def grandparent(ctx: Context) -> str:
    return await ctx.child(middle)


@workflow
async def middle(ctx: Context) -> str:
    return await ctx.child(waits_for_word)


@workflow
async def busy_parent(ctx: Context) -> list[str]:
    """Starts a child, then works on a step while the child waits (the parent stays held)."""
    child = await ctx.start_child(waits_for_word)
    await slow_step()
    return [await child.result()]


@step(effect="pure")
async def slow_step() -> None:
    await asyncio.sleep(30)


async def test_cancelling_a_waiting_parent_cancels_its_descendants(engine: Engine) -> None:
    await engine.start(grandparent, run_id="g")
    leaf = "g/child:middle#1/child:waits_for_word#1"
    await until_status(engine, leaf, "waiting")
    await engine.cancel("g")
    for run_id in ("g", "g/child:middle#1", leaf):
        await until_status(engine, run_id, "cancelled")


async def test_cancelling_a_parent_a_worker_holds_cancels_its_child(engine: Engine) -> None:
    await engine.start(busy_parent, run_id="b")
    await until_status(engine, "b/child:waits_for_word#1", "waiting")
    await until_status(engine, "b", "running")
    await engine.cancel("b")
    await until_status(engine, "b", "cancelled")
    await until_status(engine, "b/child:waits_for_word#1", "cancelled")


async def test_a_finished_child_stays_finished_when_its_parent_is_cancelled(engine: Engine) -> None:
    await engine.start(busy_parent, run_id="f")
    await until_status(engine, "f/child:waits_for_word#1", "waiting")
    await engine.signal("f/child:waits_for_word#1", "word", "done")
    await until_status(engine, "f/child:waits_for_word#1", "completed")
    await engine.cancel("f")
    await until_status(engine, "f", "cancelled")
    assert (await engine.get_run("f/child:waits_for_word#1")).status == "completed"


async def test_cancel_running_run_is_not_swallowed_by_except_exception(engine: Engine) -> None:
    @workflow
    async def stubborn(ctx: Context) -> str:
        try:
            await ctx.sleep(0.5)
        except Exception:
            return "swallowed"
        return "finished"

    engine.register(stubborn)
    handle = await engine.start(stubborn, run_id="c")
    await until_status(engine, "c", "running")
    await engine.cancel("c")
    with pytest.raises(RunCancelledError):
        await handle.result(timeout=5)


async def test_cancel_waiting_run_ends_it_at_once(engine: Engine) -> None:
    await engine.start(signals_in_order, run_id="cw")
    await until_status(engine, "cw", "waiting")
    record = await engine.cancel("cw")
    assert record.status == "cancelled"


@step(effect="keyed")
async def keyed_step() -> str:
    info = current_step()
    return info.idempotency_key


@workflow
async def uses_key(ctx: Context) -> str:
    return await keyed_step()


async def test_idempotency_key_is_run_and_step_key(engine: Engine) -> None:
    assert await engine.run(uses_key, run_id="k") == "k/keyed_step#1"


async def test_step_outside_workflow_is_a_plain_call() -> None:
    assert await double(21) == 42


async def test_current_step_outside_step_is_clear_error() -> None:
    with pytest.raises(UserError, match="inside a running step"):
        current_step()


@workflow
async def uses_asyncio_gather(ctx: Context) -> list[int]:
    async def two(i: int) -> int:
        await double(i)
        return await double(i)

    return list(await asyncio.gather(two(1), two(2)))


async def test_durable_calls_from_foreign_tasks_are_refused(engine: Engine) -> None:
    with pytest.raises(RunFailedError, match=r"ctx\.gather"):
        await engine.run(uses_asyncio_gather, run_id="ag")


@step(effect="pure", timeout=0.05, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
async def too_slow() -> None:
    await asyncio.sleep(5)


@workflow
async def times_out(ctx: Context) -> str:
    try:
        await too_slow()
    except StepFailed as exc:
        return f"{exc.error_type} x{exc.attempts}"
    return "unreachable"


async def test_step_timeout_is_a_failed_attempt(engine: Engine) -> None:
    assert await engine.run(times_out, run_id="slow") == "TimeoutError x2"


BIG = "x" * 10_000


@step(effect="pure")
async def big(i: int) -> str:
    return BIG


@workflow
async def bigs(ctx: Context) -> int:
    values = [await big(i) for i in range(3)]
    return sum(len(v) for v in values)


async def test_large_payloads_are_stored_once_by_content(engine: Engine) -> None:
    assert await engine.run(bigs, run_id="big") == 30_000
    outs = [orjson.loads(e.data)["out"] for e in await engine.journal("big") if e.kind == "done"]
    digests = {out["$blob"] for out in outs}
    assert len(digests) == 1  # three entries, one blob
    assert codec.loads(await engine.store.get_blob(digests.pop())) == BIG


@step(effect="pure")
async def tagged(tag: str, seconds: float) -> str:
    CALLS.append(tag)
    await asyncio.sleep(seconds)
    return tag


@workflow
async def racing(ctx: Context) -> tuple[int, str]:
    winner = await ctx.first_completed(tagged("slow", 1.0), tagged("fast", 0.0))
    await ctx.wait_signal("go")
    return winner  # type: ignore[return-value]


async def test_first_completed_journals_the_winner_and_replays_only_it(engine: Engine) -> None:
    CALLS.clear()
    handle = await engine.start(racing, run_id="race")
    await until_status(engine, "race", "waiting")
    await engine.signal("race", "go")
    assert await handle.result() == (1, "fast")
    assert CALLS == ["slow", "fast"]  # the resumed execution ran neither again
    decisions = [orjson.loads(e.data) for e in await engine.journal("race") if e.kind == "decision"]
    assert decisions == [{"winner": 1}]


@workflow
async def scoped(ctx: Context) -> list[int]:
    out = []
    for agent in range(2):
        with ctx.scope("research"):
            out.append(await double(agent))
            out.append(await double(agent + 10))
    return out


async def test_scopes_nest_keys(engine: Engine) -> None:
    assert await engine.run(scoped, run_id="sc") == [0, 20, 2, 22]
    keys = [e.key for e in await engine.journal("sc") if e.kind == "done"]
    assert keys == [
        "research#1/double#1",
        "research#1/double#2",
        "research#2/double#1",
        "research#2/double#2",
    ]


FLIPS: list[bool] = []


@workflow
async def not_deterministic(ctx: Context) -> str:
    # Reads state outside the journal: a replay may take another path.
    FLIPS.append(not FLIPS[-1] if FLIPS else True)
    if FLIPS[-1]:
        await double(1)
    else:
        await make_report("other")
    await ctx.wait_signal("go")
    return "done"


async def test_nondeterministic_workflow_is_parked_with_a_clear_message(engine: Engine) -> None:
    FLIPS.clear()
    handle = await engine.start(not_deterministic, run_id="nd2")
    await until_status(engine, "nd2", "waiting")
    await engine.signal("nd2", "go")
    expected = "now calls 'make_report#1' where the journal recorded 'double#1'"
    with pytest.raises(RunParkedError, match=expected):
        await handle.result(timeout=5)


@step(effect="pure", retry=RetryPolicy(max_attempts=3, initial_delay=0.3, jitter=0))
async def fails_once(tag: str) -> str:
    CALLS.append(tag)
    if CALLS.count(tag) == 1:
        raise ConnectionError("first try fails")
    return "recovered"


@workflow
async def backs_off(ctx: Context) -> str:
    return await fails_once("b")


async def test_crash_during_backoff_resumes_the_backoff(
    store_factory: Callable[[], Store],
) -> None:
    CALLS.clear()
    async with Engine(store_factory(), inline_wait_seconds=0, poll_seconds=0.02) as engine:
        await engine.start(backs_off, run_id="bo")
        record = await until_status(engine, "bo", "waiting")
        failed = [orjson.loads(e.data) for e in await engine.journal("bo")]
    assert failed[0]["attempt"] == 1
    assert record.due_at == pytest.approx(failed[0]["retry_at"])
    # A new engine (the old one is gone) resumes the backoff: attempt 2, not attempt 1 again.
    async with Engine(store_factory(), poll_seconds=0.02) as engine:
        assert await engine.result("bo", timeout=5) == "recovered"
        kinds = [e.kind for e in await engine.journal("bo")]
    assert kinds == ["failed", "done", "output"]
    assert CALLS == ["b", "b"]
