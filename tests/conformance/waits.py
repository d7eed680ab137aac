"""Waits and wake-ups: what a suspended run (waiting, parked or queued) is due at, parents woken
by a child that ends, and signals: sent durably, deduplicated by id, listed after a cursor, waking
a run that waits for them.
"""

from __future__ import annotations

import pytest

from overnight.errors import RunNotFoundError
from overnight.store.base import Store, Wait

from .support import LEASE, T, claim, finish, get, lease_of, new_run, start_running, suspend


class WaitTests:
    """Suspending runs, waking them up, and signals."""

    # -- suspending -----------------------------------------------------------------------------

    async def test_waiting_with_a_timer_is_due_at_the_timer(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await suspend(store, lease, "waiting", Wait(timer=T + 60, signals=("go",)), now=T + 1)
        run = await get(store, "r1")
        assert (run.status, run.owner, run.due_at, run.updated_at) == (
            "waiting",
            None,
            T + 60,
            T + 1,
        )
        assert run.waiting is not None
        assert await claim(store, now=T + 59) == []
        claimed = await claim(store, now=T + 60)
        assert [r.id for r in claimed] == ["r1"]
        assert (claimed[0].epoch, claimed[0].attempts, claimed[0].recoveries) == (2, 2, 0)

    async def test_waiting_for_nothing_yet_has_no_due_at(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await suspend(store, lease, "waiting", Wait(signals=("go",), children=("c",)), now=T)
        assert (await get(store, "r1")).due_at is None
        assert await claim(store, now=T + 1e6) == []

    async def test_a_signal_already_past_the_cursor_makes_a_wait_due_at_once(
        self, store: Store
    ) -> None:
        lease = await start_running(store, "r1", now=T)
        seen = await store.send_signal("r1", "go", b"1", "s1", now=T)
        assert seen is not None
        await store.send_signal("r1", "other", b"2", "s2", now=T)
        # The run looked at `seen` already, and waits for "go" only: no wake-up.
        await suspend(store, lease, "waiting", Wait(signals=("go",), signal_cursor=seen.seq), now=T)
        assert (await get(store, "r1")).due_at is None

        # A signal that arrived while the run was running, after its cursor: due at once.
        lease = await start_running(store, "r2", now=T)
        looked = await store.send_signal("r2", "go", b"1", "s1", now=T + 1)
        fresh = await store.send_signal("r2", "go", b"2", "s2", now=T + 2)
        assert looked is not None
        assert fresh is not None
        wait = Wait(timer=T + 500, signals=("go",), signal_cursor=looked.seq)
        await suspend(store, lease, "waiting", wait, now=T + 3)
        assert (await get(store, "r2")).due_at == T + 3
        assert [r.id for r in await claim(store, now=T + 3)] == ["r2"]

    async def test_a_child_already_ended_makes_a_wait_due_at_once(self, store: Store) -> None:
        parent = await start_running(store, "parent", now=T)
        child = await start_running(store, "child", now=T, parent_id="parent")
        await finish(store, child, now=T + 1)
        await suspend(store, parent, "waiting", Wait(children=("child",)), now=T + 2)
        run = await get(store, "parent")
        assert (run.status, run.due_at) == ("waiting", T + 2)

    async def test_parked_has_no_due_at(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await suspend(store, lease, "parked", None, note="step x is in doubt", now=T + 1)
        run = await get(store, "r1")
        assert (run.status, run.due_at, run.owner, run.note) == (
            "parked",
            None,
            None,
            "step x is in doubt",
        )
        assert await claim(store, now=T + 1e6) == []

    async def test_queued_is_due_now_or_at_the_timer(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await suspend(store, lease, "queued", None, now=T + 1)
        run = await get(store, "r1")
        assert (run.status, run.due_at, run.owner) == ("queued", T + 1, None)
        lease = lease_of((await claim(store, now=T + 1))[0])
        await suspend(store, lease, "queued", Wait(timer=T + 30), note="cannot import", now=T + 2)
        run = await get(store, "r1")
        assert (run.status, run.due_at, run.note) == ("queued", T + 30, "cannot import")
        assert await claim(store, now=T + 29) == []
        assert [r.id for r in await claim(store, now=T + 30)] == ["r1"]

    # -- a child that ends wakes its waiting parent ---------------------------------------------

    async def test_finish_wakes_a_parent_waiting_for_that_child(self, store: Store) -> None:
        parent = await start_running(store, "parent", now=T)
        child = await start_running(store, "child", now=T, parent_id="parent")
        await start_running(store, "sibling", now=T, parent_id="parent")
        await suspend(store, parent, "waiting", Wait(children=("child",)), now=T + 1)
        assert (await get(store, "parent")).due_at is None
        assert await claim(store, now=T + 2) == []

        await finish(store, child, now=T + 5)
        parent_run = await get(store, "parent")
        assert (parent_run.status, parent_run.due_at) == ("waiting", T + 5)
        assert [r.id for r in await claim(store, "w2", now=T + 5)] == ["parent"]

    async def test_finish_does_not_wake_a_parent_waiting_for_something_else(
        self, store: Store
    ) -> None:
        parent = await start_running(store, "parent", now=T)
        child = await start_running(store, "child", now=T, parent_id="parent")
        await suspend(store, parent, "waiting", Wait(timer=T + 100, signals=("go",)), now=T + 1)
        await finish(store, child, now=T + 5)
        assert (await get(store, "parent")).due_at == T + 100

    # -- signals --------------------------------------------------------------------------------

    async def test_send_signal_is_durable_and_listed(self, store: Store, other: Store) -> None:
        await store.create_run(new_run("r1"), now=T)
        signal = await store.send_signal("r1", "go", b'{"x":1}', "sig-1", now=T + 1)
        assert signal is not None
        assert (signal.run_id, signal.name, signal.signal_id, signal.payload) == (
            "r1",
            "go",
            "sig-1",
            b'{"x":1}',
        )
        assert signal.created_at == T + 1
        assert signal.seq >= 1
        assert await store.signals("r1", "go") == [signal]
        assert await other.signals("r1", "go") == [signal]
        assert await store.signals("r1", "stop") == []
        assert await store.signals("unknown", "go") == []

    async def test_send_signal_dedupes_by_signal_id(self, store: Store) -> None:
        await store.create_run(new_run("r1"), now=T)
        await store.create_run(new_run("r2"), now=T)
        first = await store.send_signal("r1", "go", b"1", "same", now=T)
        assert first is not None
        assert await store.send_signal("r1", "go", b"2", "same", now=T) is None
        assert await store.send_signal("r1", "other", b"3", "same", now=T) is None
        assert await store.send_signal("r2", "go", b"4", "same", now=T) is not None  # per run
        assert await store.signals("r1", "go") == [first]
        assert await store.signals("r1", "other") == []

    async def test_send_signal_to_an_unknown_run_raises(self, store: Store) -> None:
        with pytest.raises(RunNotFoundError):
            await store.send_signal("nope", "go", b"1", "s1", now=T)
        await store.create_run(new_run("r1"), now=T)
        assert await store.send_signal("r1", "go", b"1", "s1", now=T) is not None

    async def test_signals_are_oldest_first_after_a_cursor(self, store: Store) -> None:
        await store.create_run(new_run("r1"), now=T)
        sent = []
        for i in range(6):
            name = "go" if i % 2 == 0 else "other"
            signal = await store.send_signal("r1", name, str(i).encode(), f"s{i}", now=T + i)
            assert signal is not None
            sent.append(signal)
        seqs = [s.seq for s in sent]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 6
        gos = [s for s in sent if s.name == "go"]
        assert await store.signals("r1", "go") == gos
        assert await store.signals("r1", "go", after_seq=0) == gos
        assert await store.signals("r1", "go", after_seq=gos[0].seq) == gos[1:]
        assert await store.signals("r1", "go", after_seq=gos[-1].seq) == []
        assert [s.payload for s in await store.signals("r1", "other")] == [b"1", b"3", b"5"]

    async def test_a_signal_wakes_a_run_waiting_for_its_name(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await suspend(store, lease, "waiting", Wait(timer=T + 100, signals=("go", "also")), now=T)
        await store.send_signal("r1", "unrelated", b"0", "s0", now=T + 1)
        assert (await get(store, "r1")).due_at == T + 100
        await store.send_signal("r1", "also", b"1", "s1", now=T + 2)
        assert (await get(store, "r1")).due_at == T + 2
        assert [r.id for r in await claim(store, now=T + 2)] == ["r1"]

    async def test_a_signal_does_not_move_a_running_or_queued_run(self, store: Store) -> None:
        await store.create_run(new_run("queued"), now=T + 5)
        await start_running(store, "running", now=T)
        await store.send_signal("queued", "go", b"1", "s1", now=T + 10)
        await store.send_signal("running", "go", b"1", "s1", now=T + 10)
        assert (await get(store, "queued")).due_at == T + 5
        assert (await get(store, "running")).due_at == T + LEASE
