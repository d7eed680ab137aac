"""Schedules: put (create or replace), read, list, remove, pause and resume, the due ones, and
firing: a compare-and-set on the schedule as read that moves it on and creates the tick's runs in
one transaction, so two workers firing the same read create one run per tick, and a schedule
paused, replaced or removed since it was read fires nothing.
"""

from __future__ import annotations

import dataclasses

import pytest

from overnight.errors import ScheduleNotFoundError
from overnight.store.base import NewRun, ScheduleRecord, Store

from .support import T, claim, get, new_run


def schedule(
    name: str = "nightly", *, next_due: float | None = T + 60, created: float = T
) -> ScheduleRecord:
    return ScheduleRecord(
        name=name,
        cron="* * * * *",
        timezone="Europe/Paris",
        workflow="tests.example:flow",
        input=b'{"n":1}',
        catch_up="one",
        paused=False,
        next_due=next_due,
        created_at=created,
        updated_at=created,
    )


def tick_run(name: str, tick: float) -> NewRun:
    return new_run(f"sched:{name}:{tick}")


class ScheduleTests:
    """Schedules, as the control plane and the workers see them."""

    async def test_put_get_list_and_remove(self, store: Store, other: Store) -> None:
        assert await store.list_schedules() == []
        assert await store.get_schedule("nightly") is None
        put = await store.put_schedule(schedule("nightly"))
        assert put == schedule("nightly")
        await store.put_schedule(schedule("hourly", next_due=T + 5))
        assert await other.get_schedule("nightly") == schedule("nightly")
        assert [s.name for s in await other.list_schedules()] == ["hourly", "nightly"]
        assert await store.remove_schedule("nightly") is True
        assert await store.remove_schedule("nightly") is False
        assert [s.name for s in await other.list_schedules()] == ["hourly"]

    async def test_put_replaces_and_keeps_created_at(self, store: Store) -> None:
        await store.put_schedule(schedule(created=T))
        changed = dataclasses.replace(
            schedule(created=T + 9, next_due=T + 100), cron="0 6 * * *", input=b"null"
        )
        stored = await store.put_schedule(changed)
        assert stored == dataclasses.replace(changed, created_at=T)
        assert await store.get_schedule("nightly") == stored

    async def test_records_are_copies(self, store: Store) -> None:
        await store.put_schedule(schedule())
        got = await store.get_schedule("nightly")
        assert got is not None
        got.paused, got.next_due = True, None
        (listed,) = await store.list_schedules()
        listed.cron = "changed"
        assert await store.get_schedule("nightly") == schedule()

    async def test_due_schedules_are_the_unpaused_ones_due_earliest_first(
        self, store: Store
    ) -> None:
        await store.put_schedule(schedule("b", next_due=T + 10))
        await store.put_schedule(schedule("a", next_due=T + 10))
        await store.put_schedule(schedule("early", next_due=T + 1))
        await store.put_schedule(schedule("later", next_due=T + 50))
        await store.put_schedule(dataclasses.replace(schedule("paused"), paused=True))
        due = await store.due_schedules(now=T + 10, limit=10)
        assert [s.name for s in due] == ["early", "a", "b"]
        assert [s.name for s in await store.due_schedules(now=T + 10, limit=2)] == ["early", "a"]
        assert await store.due_schedules(now=T, limit=10) == []

    async def test_pause_and_resume(self, store: Store, other: Store) -> None:
        await store.put_schedule(schedule(next_due=T + 1))
        paused = await store.pause_schedule("nightly", paused=True, next_due=None, now=T + 2)
        assert (paused.paused, paused.next_due, paused.updated_at) == (True, None, T + 2)
        assert await other.get_schedule("nightly") == paused
        assert await store.due_schedules(now=T + 1e6, limit=10) == []
        resumed = await store.pause_schedule("nightly", paused=False, next_due=T + 60, now=T + 3)
        assert (resumed.paused, resumed.next_due, resumed.updated_at) == (False, T + 60, T + 3)
        assert [s.name for s in await store.due_schedules(now=T + 60, limit=10)] == ["nightly"]

    async def test_pausing_an_unknown_schedule_is_refused(self, store: Store) -> None:
        with pytest.raises(ScheduleNotFoundError, match="'ghost'"):
            await store.pause_schedule("ghost", paused=True, next_due=None, now=T)
        assert await store.list_schedules() == []

    async def test_fire_moves_the_schedule_on_and_creates_the_runs_together(
        self, store: Store, other: Store
    ) -> None:
        await store.put_schedule(schedule(next_due=T + 60))
        (due,) = await store.due_schedules(now=T + 61, limit=10)
        runs = [tick_run("nightly", T + 60)]
        fired = await store.fire_schedule(due, next_due=T + 120, runs=runs, now=T + 61)
        assert fired is not None
        assert [(r.id, r.status, r.due_at) for r in fired] == [
            ("sched:nightly:1000060.0", "queued", T + 61)
        ]
        after = await other.get_schedule("nightly")
        assert after is not None
        assert (after.next_due, after.updated_at, after.created_at) == (T + 120, T + 61, T)
        assert (await get(other, "sched:nightly:1000060.0")).input == runs[0].input
        assert [r.id for r in await claim(other, now=T + 61)] == ["sched:nightly:1000060.0"]
        assert await store.due_schedules(now=T + 119, limit=10) == []

    async def test_fire_creates_one_run_per_tick_in_order(self, store: Store) -> None:
        await store.put_schedule(schedule(next_due=T))
        (due,) = await store.due_schedules(now=T + 200, limit=10)
        runs = [tick_run("nightly", T + i * 60) for i in range(3)]
        fired = await store.fire_schedule(due, next_due=T + 240, runs=runs, now=T + 200)
        assert [r.id for r in fired or []] == [r.id for r in runs]
        assert {r.id for r in await store.list_runs()} == {r.id for r in runs}

    async def test_a_fire_with_no_runs_only_moves_the_schedule_on(self, store: Store) -> None:
        await store.put_schedule(schedule(next_due=T))
        (due,) = await store.due_schedules(now=T + 500, limit=10)
        assert await store.fire_schedule(due, next_due=T + 540, runs=[], now=T + 500) == []
        assert (await store.get_schedule("nightly")).next_due == T + 540  # type: ignore[union-attr]
        assert await store.list_runs() == []

    async def test_two_workers_firing_the_same_read_create_one_run(
        self, store: Store, other: Store
    ) -> None:
        await store.put_schedule(schedule(next_due=T + 60))
        (mine,) = await store.due_schedules(now=T + 60, limit=10)
        (theirs,) = await other.due_schedules(now=T + 60, limit=10)
        runs = [tick_run("nightly", T + 60)]
        first = await store.fire_schedule(mine, next_due=T + 120, runs=runs, now=T + 60)
        second = await other.fire_schedule(theirs, next_due=T + 120, runs=runs, now=T + 60.5)
        assert [r.id for r in first or []] == ["sched:nightly:1000060.0"]
        assert second is None
        assert [r.id for r in await store.list_runs()] == ["sched:nightly:1000060.0"]
        assert (await store.get_schedule("nightly")).updated_at == T + 60  # type: ignore[union-attr]

    async def test_a_schedule_changed_since_it_was_read_does_not_fire(self, store: Store) -> None:
        await store.put_schedule(schedule("paused", next_due=T))
        await store.put_schedule(schedule("replaced", next_due=T))
        await store.put_schedule(schedule("removed", next_due=T))
        read = {s.name: s for s in await store.due_schedules(now=T + 1, limit=10)}
        await store.pause_schedule("paused", paused=True, next_due=None, now=T + 1)
        await store.put_schedule(
            dataclasses.replace(schedule("replaced", next_due=T), updated_at=T + 1)
        )
        await store.remove_schedule("removed")
        for name, before in read.items():
            fired = await store.fire_schedule(
                before, next_due=T + 60, runs=[tick_run(name, T)], now=T + 2
            )
            assert fired is None, name
        assert await store.list_runs() == []
        assert (await store.get_schedule("replaced")).next_due == T  # type: ignore[union-attr]

    async def test_fire_returns_an_existing_run_of_the_same_id(self, store: Store) -> None:
        """A tick's run id is deterministic: one already there (started by hand, or by a fire
        whose schedule was put again since) is returned, not duplicated."""
        await store.create_run(tick_run("nightly", T), now=T - 5)
        await store.put_schedule(schedule(next_due=T))
        (due,) = await store.due_schedules(now=T, limit=10)
        fired = await store.fire_schedule(
            due, next_due=T + 60, runs=[tick_run("nightly", T)], now=T
        )
        assert [(r.id, r.created_at) for r in fired or []] == [("sched:nightly:1000000.0", T - 5)]
        assert len(await store.list_runs()) == 1
