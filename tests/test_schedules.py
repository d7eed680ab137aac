"""Durable schedules through the engine: ticks computed in a time zone, the catch-up policies,
pause and resume, clear errors, the tick handed to the workflow, the worker firing ticks on its
own, and several engines racing on the same due ticks with exactly one run per tick."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections import Counter
from typing import Any

import pytest

from overnight import Context, Engine, ScheduleNotFoundError, UserError, WorkflowImportError
from overnight import schedule as sched
from overnight.store.base import ScheduleRecord
from overnight.store.postgres import PostgresStore
from overnight.store.sqlite import SqliteStore
from overnight.workflow import workflow


@workflow
async def report(ctx: Context, input: dict[str, Any]) -> dict[str, Any]:
    at = ctx.scheduled_at
    return {"input": input, "tick": None if at is None else at.isoformat(), "run": ctx.run_id}


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


def record(cron: str, next_due: float, catch_up: Any = "one", tz: str = "UTC") -> ScheduleRecord:
    return ScheduleRecord(
        name="s",
        cron=cron,
        timezone=tz,
        workflow="m:w",
        input=b"null",
        catch_up=catch_up,
        paused=False,
        next_due=next_due,
        created_at=0.0,
        updated_at=0.0,
    )


# -- (a) ticks and catch-up policies, on a made-up clock --------------------------------------


def test_ticks_are_computed_in_the_schedules_time_zone_and_stored_as_utc() -> None:
    # 06:00 in Paris is 05:00 UTC in winter and 04:00 UTC in summer (DST).
    winter = sched.next_tick("0 6 * * *", "Europe/Paris", utc(2026, 1, 10, 12))
    summer = sched.next_tick("0 6 * * *", "Europe/Paris", utc(2026, 7, 10, 12))
    assert winter == utc(2026, 1, 11, 5)
    assert summer == utc(2026, 7, 11, 4)
    assert sched.latest_tick("0 6 * * *", "Europe/Paris", utc(2026, 1, 11, 5)) == winter
    assert sched.tick_run_id("nightly", winter) == "sched:nightly:2026-01-11T05:00:00Z"


def test_a_tick_found_on_time_starts_under_every_policy() -> None:
    tick = utc(2026, 1, 1, 10)
    for policy in ("skip", "one", "all"):
        plan = sched.plan(record("0 * * * *", tick, policy), tick + 2)
        assert (plan.ticks, plan.next_due, plan.missed) == ([tick], utc(2026, 1, 1, 11), 0)


def test_catch_up_policies_for_ticks_missed_while_down() -> None:
    """Down from 09:30 to 15:20 with an hourly schedule: ticks 10:00 to 15:00 were missed."""
    first, now = utc(2026, 1, 1, 10), utc(2026, 1, 1, 15, 20)
    hours = [utc(2026, 1, 1, h) for h in range(10, 16)]
    skip = sched.plan(record("0 * * * *", first, "skip"), now)
    one = sched.plan(record("0 * * * *", first, "one"), now)
    every = sched.plan(record("0 * * * *", first, "all"), now)
    assert (skip.ticks, skip.missed) == ([], 6)
    assert (one.ticks, one.missed) == ([hours[-1]], 5)
    assert (every.ticks, every.missed) == (hours, 0)
    assert skip.next_due == one.next_due == every.next_due == utc(2026, 1, 1, 16)


def test_skip_still_starts_a_tick_within_the_grace_period() -> None:
    first = utc(2026, 1, 1, 10)
    plan = sched.plan(record("*/15 * * * *", first, "skip"), first + 15 * 60 + 30)
    assert (plan.ticks, plan.missed) == ([first + 15 * 60], 1)


def test_all_is_bounded_to_the_latest_ticks() -> None:
    first = utc(2026, 1, 1)
    now = first + 500 * 60 + 10  # 501 minutely ticks are due
    plan = sched.plan(record("* * * * *", first, "all"), now)
    assert len(plan.ticks) == sched.MAX_CATCH_UP
    assert plan.ticks[-1] == first + 500 * 60
    assert plan.ticks == [first + (401 + i) * 60 for i in range(sched.MAX_CATCH_UP)]
    assert (plan.missed, plan.counted) == (401, True)
    # Down so long that counting every tick would hold the worker up: a lower bound.
    long = sched.plan(record("* * * * * *", first, "all"), first + 86400)
    assert long.ticks[-1] == first + 86400
    assert (len(long.ticks), long.counted) == (sched.MAX_CATCH_UP, False)
    assert long.missed == sched.COUNT_LIMIT - sched.MAX_CATCH_UP


# -- (b) the engine, on every store -------------------------------------------------------------


async def test_add_list_pause_resume_remove(engine: Engine) -> None:
    before = time.time()
    added = await engine.add_schedule(
        "nightly", "0 6 * * *", report, {"to": "ops"}, timezone="Europe/Paris", catch_up="all"
    )
    assert (added.workflow, added.catch_up, added.paused) == (report.ref, "all", False)
    assert added.next_due == sched.next_tick("0 6 * * *", "Europe/Paris", added.created_at)
    assert added.next_due is not None
    assert added.next_due > before
    assert [s.name for s in await engine.list_schedules()] == ["nightly"]
    paused = await engine.pause_schedule("nightly")
    assert (paused.paused, paused.next_due) == (True, None)
    assert await engine.fire_schedules(now=time.time() + 86400 * 30) == []
    resumed = await engine.resume_schedule("nightly")
    assert resumed.paused is False
    assert resumed.next_due == sched.next_tick("0 6 * * *", "Europe/Paris", resumed.updated_at)
    await engine.remove_schedule("nightly")
    assert await engine.list_schedules() == []
    assert await engine.list_runs() == []


async def test_a_tick_runs_the_workflow_with_its_input_and_tick(engine: Engine) -> None:
    added = await engine.add_schedule("minutely", "* * * * *", report, {"n": 1})
    # As if the worker had been down for three minutes (policy `one`: the latest tick runs).
    now = time.time()
    await engine.store.put_schedule(dataclasses.replace(added, next_due=added.next_due - 240))  # type: ignore[operator]
    fired = await engine.fire_schedules(now=now)
    tick = sched.latest_tick("* * * * *", "UTC", now)
    expected_id = sched.tick_run_id("minutely", tick)
    assert [r.id for r in fired] == [expected_id]
    out = await engine.result(expected_id, timeout=10)
    assert out == {
        "input": {"n": 1},
        "tick": dt.datetime.fromtimestamp(tick, dt.UTC).isoformat(),
        "run": expected_id,
    }
    after = await engine.get_schedule("minutely")
    assert after.next_due == tick + 60
    assert await engine.fire_schedules(now=now) == []  # nothing more is due


async def test_pause_stops_ticks(engine: Engine) -> None:
    added = await engine.add_schedule("p", "* * * * *", report, {})
    await engine.pause_schedule("p")
    assert added.next_due is not None
    assert await engine.fire_schedules(now=added.next_due + 3600) == []
    assert await engine.list_runs() == []


async def test_mistakes_are_refused_with_what_to_do(engine: Engine) -> None:
    with pytest.raises(
        UserError,
        match=r"cron expression '61 \* \* \* \*' is not valid \(.*"
        r"out of range\); give 5 fields.*e\.g\. '0 6 \* \* 1-5'",
    ):
        await engine.add_schedule("x", "61 * * * *", report)
    with pytest.raises(
        UserError, match="time zone 'Europe/Pari' is unknown; did you mean 'Europe/Paris'"
    ):
        await engine.add_schedule("x", "0 6 * * *", report, timezone="Europe/Pari")
    with pytest.raises(WorkflowImportError, match=r"'tests\.nowhere:flow' does not import"):
        await engine.add_schedule("x", "0 6 * * *", "tests.nowhere:flow")
    with pytest.raises(
        UserError, match="catch-up policy 'some' is unknown; use one of skip, one, all"
    ):
        await engine.add_schedule("x", "0 6 * * *", report, catch_up="some")
    with pytest.raises(UserError, match="schedule name 'a b' is not allowed"):
        await engine.add_schedule("a b", "0 6 * * *", report)
    for call in (
        engine.pause_schedule,
        engine.resume_schedule,
        engine.remove_schedule,
        engine.get_schedule,
    ):
        with pytest.raises(ScheduleNotFoundError, match="no schedule named 'ghost'"):
            await call("ghost")
    assert await engine.list_schedules() == []


async def test_the_worker_fires_ticks_by_itself(engine: Engine) -> None:
    """Every second, policy `all`: every tick from the first to the last fired has a run."""
    await engine.add_schedule("sec", "* * * * * *", report, {}, catch_up="all")
    deadline = time.monotonic() + 10
    while len(await engine.list_runs()) < 2:
        assert time.monotonic() < deadline, "the worker fired no ticks"
        await asyncio.sleep(0.05)
    await engine.pause_schedule("sec")
    runs = await engine.list_runs()
    ticks = sorted(int(dt.datetime.fromisoformat(r.id.split(":", 2)[2]).timestamp()) for r in runs)
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    for run in runs:
        await engine.result(run.id, timeout=10)


# -- (c) many engines racing on the same due ticks ---------------------------------------------


async def race(engines: list[Engine], rounds: int) -> list[str]:
    """Every engine fires at the same moments; the ids of the runs each says it fired."""
    fired: list[str] = []
    for i in range(rounds):
        now = time.time() + i * 0.25
        results = await asyncio.gather(*(e.fire_schedules(now=now) for e in engines))
        fired.extend(r.id for result in results for r in result)
    return fired


async def check_one_run_per_tick(engines: list[Engine]) -> None:
    first = engines[0]
    for name, policy in (("a", "all"), ("b", "all"), ("c", "one")):
        added = await first.add_schedule(name, "* * * * *", report, {}, catch_up=policy)
        assert added.next_due is not None
        # Down for twenty minutes: 20 ticks due for `all`, 1 for `one`.
        await first.store.put_schedule(dataclasses.replace(added, next_due=added.next_due - 1200))
    fired = await race(engines, rounds=4)
    counts = Counter(fired)
    assert all(n == 1 for n in counts.values()), counts.most_common(3)  # no tick fired twice
    by_schedule = Counter(run_id.split(":")[1] for run_id in counts)
    assert by_schedule == {"a": 20, "b": 20, "c": 1}
    assert sorted(r.id for r in await first.list_runs(limit=1000)) == sorted(counts)


async def test_postgres_engines_racing_start_one_run_per_tick(postgres_url: str) -> None:
    engines = [Engine(PostgresStore(postgres_url), worker=False) for _ in range(3)]
    for e in engines:
        await e.open()
    try:
        await check_one_run_per_tick(engines)
    finally:
        for e in engines:
            await e.close()


async def test_sqlite_engines_racing_start_one_run_per_tick(tmp_path: Any) -> None:
    path = str(tmp_path / "runs.db")
    engines = [Engine(SqliteStore(path), worker=False) for _ in range(3)]
    for e in engines:
        await e.open()
    try:
        await check_one_run_per_tick(engines)
    finally:
        for e in engines:
            await e.close()


async def test_three_postgres_workers_run_each_tick_once(postgres_url: str) -> None:
    """Three engines with their worker loops, every second, policy `all`: every tick from the
    first to the last has one run, executed once, and no worker fired a tick another fired."""
    engines = [
        Engine(PostgresStore(postgres_url), poll_seconds=0.05, lease_seconds=5, drain_seconds=5)
        for _ in range(3)
    ]
    fired: list[str] = []
    for e in engines:
        original = e.store.fire_schedule

        async def counting(*args: Any, _fire: Any = original, **kwargs: Any) -> Any:
            result = await _fire(*args, **kwargs)
            fired.extend(r.id for r in result or [])
            return result

        e.store.fire_schedule = counting  # type: ignore[method-assign]
        await e.open()
    try:
        await engines[0].add_schedule("sec", "* * * * * *", report, {}, catch_up="all")
        deadline = time.monotonic() + 10
        while len(await engines[0].list_runs()) < 3:
            assert time.monotonic() < deadline, "the workers fired no ticks"
            await asyncio.sleep(0.05)
        await engines[0].pause_schedule("sec")
        runs = await engines[0].list_runs()
        for run in runs:
            await engines[0].result(run.id, timeout=10)
        runs = await engines[0].list_runs()
    finally:
        for e in engines:
            await e.close()
    assert sorted(fired) == sorted(r.id for r in runs)  # each tick fired by one worker, once
    assert all(r.attempts == 1 for r in runs)
    ticks = sorted(int(dt.datetime.fromisoformat(r.id.split(":", 2)[2]).timestamp()) for r in runs)
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))


async def test_a_store_from_before_schedules_is_migrated(tmp_path: Any) -> None:
    """A SQLite file at schema 1 (runs, no schedules) gains the schedules table; runs stay."""
    import sqlite3

    from overnight.store import sqlite_schema

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(sqlite_schema.MIGRATIONS[0])
    conn.execute(f"PRAGMA application_id = {sqlite_schema.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    async with Engine(f"sqlite:///{path}") as engine:
        handle = await engine.start(report, {"n": 0}, run_id="old")
        assert (await handle.result(timeout=10))["tick"] is None
        await engine.add_schedule("new", "0 6 * * *", report, {})
        assert [s.name for s in await engine.list_schedules()] == ["new"]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    conn.close()
