"""Cancel and control, the two ways to act on a run from outside: a cancel ends at once a run no
worker holds (queued, waiting, parked, or with an expired lease) and only flags a running one,
waking a parent that waits for it; control appends entries to a run no live lease holds and
requeues it. Both fence out the previous owner; neither touches an ended run.
"""

from __future__ import annotations

import orjson
import pytest

from overnight.errors import RunNotFoundError, StaleLeaseError, UserError
from overnight.store.base import Store, Wait

from .support import (
    LEASE,
    T,
    claim,
    entry,
    finish,
    get,
    journal,
    new_run,
    rejects_stale_append,
    start_running,
    suspend,
    write,
)


class ControlTests:
    """Cancelling runs and controlling them."""

    # -- cancellation ---------------------------------------------------------------------------

    async def test_cancel_of_a_run_no_worker_holds_is_immediate(self, store: Store) -> None:
        waiting = await start_running(store, "waiting", now=T)
        await suspend(store, waiting, "waiting", Wait(timer=T + 100), now=T)
        parked = await start_running(store, "parked", now=T)
        await suspend(store, parked, "parked", None, note="help", now=T)
        await store.create_run(new_run("queued"), now=T)

        for run_id in ("queued", "waiting", "parked"):
            before = await get(store, run_id)
            record = await store.request_cancel(run_id, now=T + 5)
            assert record.status == "cancelled"
            assert (record.due_at, record.owner, record.updated_at) == (None, None, T + 5)
            assert record.epoch == before.epoch + 1
            assert record.error is not None
            assert orjson.loads(record.error)["type"] == "RunCancelled"
            assert await get(store, run_id) == record
            output = (await journal(store, run_id))[-1]
            assert output.kind == "output"
            assert orjson.loads(output.data)["status"] == "cancelled"
        assert await claim(store, now=T + 1e6) == []

    async def test_cancel_appends_its_output_after_the_journal(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await write(store, lease, [entry(0), entry(1)])
        await suspend(store, lease, "waiting", Wait(timer=T + 100), now=T)
        await store.request_cancel("r1", now=T + 1)
        assert [(e.seq, e.kind) for e in await journal(store, "r1")] == [
            (0, "done"),
            (1, "done"),
            (2, "output"),
        ]

    async def test_cancel_of_a_running_run_only_flags_it(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        record = await store.request_cancel("r1", now=T + 1)
        assert (record.status, record.owner, record.cancel_requested) == ("running", "w1", True)
        assert record.epoch == lease.epoch
        assert (await get(store, "r1")).cancel_requested is True
        assert await journal(store, "r1") == []
        # The worker learns it at its next renewal and ends the run itself.
        renewal = await store.renew([lease], now=T + 2, lease_seconds=LEASE)
        assert renewal.cancel == {"r1"}
        store.append(lease, [entry(0, "", "output")], {})
        await finish(store, lease, "cancelled", result=None, error=b"{}", now=T + 3)
        run = await get(store, "r1")
        assert (run.status, run.cancel_requested) == ("cancelled", False)

    async def test_cancel_of_a_run_whose_lease_expired_is_immediate(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        record = await store.request_cancel("r1", now=T + LEASE)
        assert record.status == "cancelled"
        assert record.epoch == lease.epoch + 1
        await rejects_stale_append(store, lease, [entry(0)])
        with pytest.raises(StaleLeaseError):
            await finish(store, lease, now=T + LEASE)
        assert (await get(store, "r1")).status == "cancelled"

    async def test_a_cancel_flagged_before_the_worker_suspends_is_not_lost(
        self, store: Store
    ) -> None:
        """The worker suspends before its next renewal tells it about the cancel request."""
        for i, (status_, wait) in enumerate(
            [
                ("waiting", Wait(signals=("go",))),
                ("waiting", Wait(timer=T + 1e6)),
                ("parked", None),
                ("queued", Wait(timer=T + 1e6)),
            ]
        ):
            run_id = f"r{i}"
            lease = await start_running(store, run_id, now=T)
            await store.request_cancel(run_id, now=T + 1)
            await write(store, lease, [entry(0)])
            await suspend(store, lease, status_, wait, note="n", now=T + 2)
            run = await get(store, run_id)
            assert run.status == "cancelled", (status_, wait)
            assert run.due_at is None
            assert run.cancel_requested is False
            assert [e.kind for e in await journal(store, run_id)] == ["done", "output"]
        assert await claim(store, now=T + 2e6) == []

    async def test_cancel_wakes_a_parent_waiting_for_the_child(self, store: Store) -> None:
        parent = await start_running(store, "parent", now=T)
        await store.create_run(new_run("child", parent_id="parent"), now=T)
        await suspend(store, parent, "waiting", Wait(children=("child",)), now=T)
        await store.request_cancel("child", now=T + 4)
        assert (await get(store, "parent")).due_at == T + 4

    async def test_cancel_of_an_ended_run_changes_nothing(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await finish(store, lease, now=T + 1)
        before = await get(store, "r1")
        assert await store.request_cancel("r1", now=T + 2) == before
        assert await get(store, "r1") == before
        assert await journal(store, "r1") == []

    async def test_cancel_of_an_unknown_run_raises(self, store: Store) -> None:
        with pytest.raises(RunNotFoundError):
            await store.request_cancel("nope", now=T)

    # -- control --------------------------------------------------------------------------------

    async def test_control_appends_to_an_unowned_run_and_requeues_it(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await write(store, lease, [entry(0, "pay#1", "intent")])
        await suspend(store, lease, "parked", None, note="pay#1 is in doubt", now=T + 1)
        record = await store.control(
            "r1", [("pay#1", "control", b'{"action":"retry"}'), ("", "control", b"{}")], now=T + 2
        )
        assert (record.status, record.due_at, record.owner, record.note) == (
            "queued",
            T + 2,
            None,
            None,
        )
        assert record.epoch == lease.epoch + 1
        assert record.updated_at == T + 2
        assert await get(store, "r1") == record
        assert [(e.seq, e.key, e.kind, e.data) for e in await journal(store, "r1")][1:] == [
            (1, "pay#1", "control", b'{"action":"retry"}'),
            (2, "", "control", b"{}"),
        ]
        claimed = await claim(store, now=T + 2)
        assert [r.id for r in claimed] == ["r1"]
        assert claimed[0].recoveries == 0

    async def test_control_of_a_waiting_run_with_no_entries_requeues_it(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await suspend(store, lease, "waiting", Wait(timer=T + 100), now=T)
        record = await store.control("r1", [], now=T + 1)
        assert (record.status, record.due_at) == ("queued", T + 1)
        assert await journal(store, "r1") == []

    async def test_control_refuses_a_run_held_by_a_live_lease(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        with pytest.raises(UserError, match="r1"):
            await store.control("r1", [("", "control", b"{}")], now=T + 1)
        run = await get(store, "r1")
        assert (run.status, run.owner, run.epoch) == ("running", "w1", lease.epoch)
        assert await journal(store, "r1") == []
        await write(store, lease, [entry(0)])  # the owner is unaffected

    async def test_control_refuses_an_ended_run(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await finish(store, lease, now=T)
        with pytest.raises(UserError, match="r1"):
            await store.control("r1", [("", "control", b"{}")], now=T + 1)
        assert (await get(store, "r1")).status == "completed"
        assert await journal(store, "r1") == []
        with pytest.raises(RunNotFoundError):
            await store.control("nope", [], now=T)

    async def test_control_retries_a_dead_run_with_its_recoveries_reset(self, store: Store) -> None:
        await start_running(store, "r1", owner="w1", now=T)
        await claim(store, "w2", now=T + LEASE, max_recoveries=1)  # takeover 1: allowed
        await claim(store, "w3", now=T + 3 * LEASE, max_recoveries=1)  # takeover 2: dead
        assert (await get(store, "r1")).status == "dead"
        record = await store.control("r1", [], now=T + 4 * LEASE)
        assert (record.status, record.recoveries, record.error) == ("queued", 0, None)
        assert record.due_at == T + 4 * LEASE
        assert [r.id for r in await claim(store, "w4", now=T + 4 * LEASE)] == ["r1"]

    async def test_control_fences_the_previous_owner(self, store: Store) -> None:
        old = await start_running(store, "r1", now=T)
        await write(store, old, [entry(0)])
        record = await store.control("r1", [("", "control", b"{}")], now=T + LEASE)  # expired
        assert record.epoch == old.epoch + 1
        await rejects_stale_append(store, old, [entry(2)])
        with pytest.raises(StaleLeaseError):
            await store.commit(old)
        with pytest.raises(StaleLeaseError):
            await suspend(store, old, "parked", None, now=T + LEASE)
        assert (await get(store, "r1")).status == "queued"
        assert [e.kind for e in await journal(store, "r1")] == ["done", "control"]
