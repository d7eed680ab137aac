"""Claims and leases: which runs a claim hands out (due ones, earliest first, never one to two
owners), lease renewal, takeover of a run whose lease expired, and a run that has been taken over
too often becoming `dead`.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from overnight.errors import StaleLeaseError
from overnight.store.base import Lease, Store, Wait

from .support import (
    LEASE,
    T,
    claim,
    finish,
    get,
    lease_of,
    new_run,
    start_running,
    status,
    suspend,
    take_over,
)


class LeaseTests:
    """Claiming runs, renewing leases, takeovers and dead runs."""

    # -- claiming -------------------------------------------------------------------------------

    async def test_claim_hands_out_only_due_runs(self, store: Store) -> None:
        await store.create_run(new_run("now"), now=T)
        await store.create_run(new_run("later"), now=T + 10)
        claimed = await claim(store, "w1", now=T + 5)
        assert [r.id for r in claimed] == ["now"]
        run = claimed[0]
        assert run.status == "running"
        assert run.owner == "w1"
        assert (run.epoch, run.attempts, run.recoveries) == (1, 1, 0)
        assert run.due_at == T + 5 + LEASE
        assert run.updated_at == T + 5
        assert await store.get_run("now") == run
        assert await claim(store, "w1", now=T + 9) == []
        assert [r.id for r in await claim(store, "w1", now=T + 10)] == ["later"]

    async def test_claim_hands_out_the_earliest_due_runs_first(self, store: Store) -> None:
        await store.create_run(new_run("b"), now=T + 2)
        await store.create_run(new_run("c"), now=T + 3)
        await store.create_run(new_run("a"), now=T + 1)
        order = [(await claim(store, now=T + 5, limit=1))[0].id for _ in range(3)]
        assert order == ["a", "b", "c"]

    async def test_claim_respects_limit(self, store: Store) -> None:
        for i in range(5):
            await store.create_run(new_run(f"r{i}"), now=T)
        assert len(await claim(store, now=T, limit=2)) == 2
        assert len(await claim(store, now=T, limit=0)) == 0
        assert len(await claim(store, now=T, limit=10)) == 3
        assert await claim(store, now=T, limit=10) == []
        assert await store.count_runs() == {"running": 5}

    async def test_claim_never_hands_a_run_to_two_owners(self, store: Store, other: Store) -> None:
        for i in range(40):
            await store.create_run(new_run(f"r{i:02}"), now=T)
        batches = await asyncio.gather(
            claim(store, "a", now=T, limit=15),
            claim(other, "b", now=T, limit=15),
            claim(store, "c", now=T, limit=15),
            claim(other, "d", now=T, limit=15),
        )
        ids = [r.id for batch in batches for r in batch]
        assert sorted(ids) == [f"r{i:02}" for i in range(40)]  # each exactly once
        for batch in batches:
            for record in batch:
                stored = await get(store, record.id)
                assert (stored.owner, stored.epoch) == (record.owner, 1)

    async def test_a_running_run_is_not_claimable_before_its_lease_expires(
        self, store: Store
    ) -> None:
        await start_running(store, "r1", now=T)
        assert await claim(store, "w2", now=T + LEASE - 1) == []
        assert (await get(store, "r1")).owner == "w1"

    async def test_an_expired_lease_makes_the_run_claimable_and_counts_a_recovery(
        self, store: Store
    ) -> None:
        first = await start_running(store, "r1", now=T)
        claimed = await claim(store, "w2", now=T + LEASE)  # due_at <= now: expired
        assert [r.id for r in claimed] == ["r1"]
        run = claimed[0]
        assert run.owner == "w2"
        assert run.epoch == first.epoch + 1
        assert (run.attempts, run.recoveries) == (2, 1)
        assert run.due_at == T + 2 * LEASE

    async def test_a_run_past_max_recoveries_becomes_dead(self, store: Store) -> None:
        await store.create_run(new_run("parent"), now=T)
        parent = lease_of((await claim(store, "p", now=T))[0])
        await start_running(store, "child", owner="w1", now=T, parent_id="parent")
        await suspend(store, parent, "waiting", Wait(children=("child",)), now=T)
        assert (await get(store, "parent")).due_at is None

        assert [r.id for r in await claim(store, "w2", now=T + LEASE, max_recoveries=1)] == [
            "child"
        ]
        await store.create_run(new_run("fresh"), now=T + 3 * LEASE)
        now = T + 4 * LEASE
        # The child's second takeover is one too many: it dies, and does not take the slot of
        # the limit: the other due run is handed out instead.
        claimed = await claim(store, "w3", now=now, limit=1, max_recoveries=1)
        assert [r.id for r in claimed] == ["fresh"]
        child = await get(store, "child")
        assert child.status == "dead"
        assert (child.owner, child.due_at) == (None, None)
        assert child.recoveries == 2
        assert child.epoch == 3  # bumped: the last worker's lease is stale
        assert child.error is not None
        assert orjson.loads(child.error)["type"] == "RunDead"
        assert (await get(store, "parent")).due_at == now  # the waiting parent is woken
        assert [r.id for r in await claim(store, "w3", now=now)] == ["parent"]

    async def test_max_recoveries_zero_kills_at_the_first_takeover(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        assert await claim(store, "w2", now=T + LEASE, max_recoveries=0) == []
        assert await status(store, "r1") == "dead"
        with pytest.raises(StaleLeaseError):
            await finish(store, lease, now=T + LEASE)

    async def test_a_takeover_keeps_the_cancel_request(self, store: Store) -> None:
        await start_running(store, "r1", now=T)
        await store.request_cancel("r1", now=T + 1)
        [record] = await claim(store, "w2", now=T + LEASE)
        assert (record.id, record.cancel_requested, record.recoveries) == ("r1", True, 1)

    # -- renewing leases ------------------------------------------------------------------------

    async def test_renew_extends_leases(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        renewal = await store.renew([lease], now=T + 20, lease_seconds=LEASE)
        assert (renewal.lost, renewal.cancel) == (set(), set())
        assert (await get(store, "r1")).due_at == T + 20 + LEASE
        assert await claim(store, "w2", now=T + LEASE + 10) == []
        assert [r.id for r in await claim(store, "w2", now=T + 20 + LEASE)] == ["r1"]

    async def test_renew_reports_lost_leases(self, store: Store) -> None:
        old = await start_running(store, "r1", now=T)
        new = await take_over(store, "r1", owner="w2", now=T + LEASE)
        await store.create_run(new_run("done"), now=T)
        done = lease_of((await claim(store, "w1", now=T + LEASE))[0])
        await finish(store, done, now=T + LEASE)
        gone = Lease("never-created", "w1", 1)

        renewal = await store.renew([old, done, gone], now=T + LEASE + 1, lease_seconds=LEASE)
        assert renewal.lost == {"r1", "done", "never-created"}
        assert renewal.cancel == set()
        assert (await get(store, "r1")).due_at == T + 2 * LEASE  # a lost lease extends nothing
        renewal = await store.renew([new], now=T + LEASE + 1, lease_seconds=LEASE)
        assert renewal.lost == set()
        assert (await get(store, "r1")).due_at == T + 2 * LEASE + 1

    async def test_renew_reports_cancel_requests(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await store.create_run(new_run("r2"), now=T)
        other = lease_of((await claim(store, now=T))[0])
        record = await store.request_cancel("r1", now=T + 1)
        assert record.status == "running"
        assert record.cancel_requested is True
        renewal = await store.renew([lease, other], now=T + 2, lease_seconds=LEASE)
        assert renewal.cancel == {"r1"}
        assert renewal.lost == set()
