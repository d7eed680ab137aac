"""The store conformance suite: what every `Store` backend must do, tested through the protocol.

Subclass `StoreConformance` once per backend and give it a `store_factory` fixture: a callable
returning a new, unopened store on the same data each time it is called (two SQLite stores on one
file, two PostgreSQL stores on one database; a memory store returns itself). `store` is the first
one, opened; `other` is a second one, as another process would see the data.

Time is explicit in the protocol (`now=`), so the tests run on a made-up clock starting at `T`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
import pytest

from overnight.errors import (
    OvernightError,
    RunNotFoundError,
    StaleLeaseError,
    StoreError,
    UserError,
)
from overnight.store import MemoryStore
from overnight.store.base import (
    Entry,
    EntryKind,
    Lease,
    NewRun,
    Renewal,
    RunRecord,
    Signal,
    Store,
    Wait,
)

T = 1_000_000.0
"""The made-up clock's start."""
LEASE = 30.0
MAX_RECOVERIES = 10


def new_run(run_id: str, *, parent_id: str | None = None, input: bytes = b'"in"') -> NewRun:
    return NewRun(
        id=run_id,
        workflow="tests.example:flow",
        version="v1",
        input=input,
        options=b'{"timeout":null}',
        parent_id=parent_id,
    )


def entry(seq: int, key: str = "step#1", kind: EntryKind = "done", value: int = 0) -> Entry:
    return Entry(seq, key, kind, orjson.dumps({"out": value, "seq": seq}))


def lease_of(record: RunRecord) -> Lease:
    assert record.owner is not None
    return Lease(record.id, record.owner, record.epoch)


async def claim(
    store: Store,
    owner: str = "w1",
    *,
    now: float = T,
    limit: int = 100,
    max_recoveries: int = MAX_RECOVERIES,
) -> list[RunRecord]:
    return await store.claim(
        owner, now=now, limit=limit, lease_seconds=LEASE, max_recoveries=max_recoveries
    )


async def start_running(
    store: Store, run_id: str, *, owner: str = "w1", now: float = T, parent_id: str | None = None
) -> Lease:
    """Create a run and claim it; the only due run must be this one."""
    await store.create_run(new_run(run_id, parent_id=parent_id), now=now)
    claimed = await claim(store, owner, now=now, limit=1)
    assert [r.id for r in claimed] == [run_id]
    return lease_of(claimed[0])


async def take_over(store: Store, run_id: str, *, owner: str = "w2", now: float) -> Lease:
    """Claim a run whose lease expired (`now` past its `due_at`)."""
    claimed = await claim(store, owner, now=now)
    assert [r.id for r in claimed] == [run_id]
    return lease_of(claimed[0])


async def write(store: Store, lease: Lease, entries: Sequence[Entry]) -> None:
    store.append(lease, entries, {})
    await store.commit(lease)


async def journal(store: Store, run_id: str) -> list[Entry]:
    return await store.read_journal(run_id)


async def status(store: Store, run_id: str) -> str:
    record = await store.get_run(run_id)
    assert record is not None
    return record.status


async def get(store: Store, run_id: str) -> RunRecord:
    record = await store.get_run(run_id)
    assert record is not None, f"run {run_id!r} is missing"
    return record


async def rejects_append(
    store: Store,
    lease: Lease,
    entries: Sequence[Entry],
    error: type[StoreError] = StaleLeaseError,
) -> None:
    """An append refused by `error`: at once, or at its commit (the protocol allows both)."""
    try:
        store.append(lease, entries, {})
    except error:
        return
    with pytest.raises(error):
        await store.commit(lease)


async def rejects_stale_append(store: Store, lease: Lease, entries: Sequence[Entry]) -> None:
    await rejects_append(store, lease, entries, StaleLeaseError)


async def suspend(
    store: Store,
    lease: Lease,
    status: Any = "waiting",
    wait: Wait | None = None,
    *,
    note: str | None = None,
    now: float = T,
) -> None:
    await store.suspend(lease, status=status, wait=wait, note=note, now=now)


async def finish(
    store: Store,
    lease: Lease,
    status: Any = "completed",
    *,
    result: bytes | None = b'"ok"',
    error: bytes | None = None,
    now: float = T,
    continue_as: NewRun | None = None,
) -> None:
    await store.finish(
        lease, status=status, result=result, error=error, now=now, continue_as=continue_as
    )


class StoreConformance:
    """Tests every Store implementation must pass. Subclasses provide `store_factory`."""

    @pytest.fixture
    def store_factory(self) -> Callable[[], Store]:
        raise NotImplementedError("a conformance subclass must define the store_factory fixture")

    @pytest.fixture
    async def store(self, store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
        store = store_factory()
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    @pytest.fixture
    async def other(self, store: Store, store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
        """A second store on the same data (another connection, as another process has)."""
        second = store_factory()
        await second.open()
        try:
            yield second
        finally:
            if second is not store:
                await second.close()

    # -- creating and reading runs --------------------------------------------------------------

    async def test_create_run_makes_a_queued_run_due_now(self, store: Store) -> None:
        record, created = await store.create_run(new_run("r1"), now=T)
        assert created is True
        assert (record.id, record.workflow, record.version) == ("r1", "tests.example:flow", "v1")
        assert (record.input, record.options) == (b'"in"', b'{"timeout":null}')
        assert record.status == "queued"
        assert record.due_at == T
        assert (record.created_at, record.updated_at) == (T, T)
        assert (record.epoch, record.attempts, record.recoveries) == (0, 0, 0)
        assert record.owner is None
        assert record.parent_id is None
        assert record.cancel_requested is False
        assert (record.result, record.error, record.note, record.continued_to) == (None,) * 4
        assert await store.get_run("r1") == record

    async def test_create_run_is_idempotent(self, store: Store) -> None:
        first, created = await store.create_run(new_run("r1"), now=T)
        again, created_again = await store.create_run(new_run("r1", input=b'"other"'), now=T + 5)
        assert (created, created_again) == (True, False)
        assert again == first
        assert again.input == b'"in"'
        assert await store.count_runs() == {"queued": 1}

    async def test_get_run_of_unknown_id_is_none(self, store: Store) -> None:
        assert await store.get_run("nope") is None

    async def test_a_second_store_sees_created_runs(self, store: Store, other: Store) -> None:
        record, _ = await store.create_run(new_run("r1"), now=T)
        assert await other.get_run("r1") == record

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

    # -- the journal ----------------------------------------------------------------------------

    async def test_append_and_commit_make_entries_readable_in_order(
        self, store: Store, other: Store
    ) -> None:
        lease = await start_running(store, "r1")
        entries = [entry(i, key=f"step#{i + 1}", value=i * 10) for i in range(7)]
        store.append(lease, entries[:3], {})
        store.append(lease, entries[3:4], {})
        await store.commit(lease)
        store.append(lease, entries[4:], {})
        await store.commit(lease)
        assert await store.read_journal("r1") == entries
        assert await other.read_journal("r1") == entries
        assert await store.read_journal("r1", after_seq=1, limit=2) == entries[2:4]
        assert await store.read_journal("r1", after_seq=4) == entries[5:]
        assert await store.read_journal("r1", after_seq=6) == []
        assert await store.read_journal("r1", after_seq=-1, limit=3) == entries[:3]
        assert await store.read_journal("r1", after_seq=-10, limit=2) == entries[:2]
        assert await store.read_journal("r1", limit=0) == []

    @pytest.mark.parametrize(
        ("label", "seqs"), [("a gap", [1, 3]), ("a repeat", [0]), ("out of order", [2, 1])]
    )
    async def test_an_append_that_does_not_follow_the_journal_is_refused_alone(
        self, store: Store, label: str, seqs: list[int]
    ) -> None:
        """Two writers, or a confused one: refused, without failing other runs' writes."""
        good = await start_running(store, "good", now=T)
        bad = await start_running(store, "bad", now=T)
        await write(store, bad, [entry(0)])
        store.append(good, [entry(0, "good#1")], {})  # commits together with the bad append
        await rejects_append(store, bad, [entry(seq, "bad#2") for seq in seqs], StoreError)
        await store.commit(good)
        await write(store, good, [entry(1, "good#2")])
        assert [e.key for e in await journal(store, "good")] == ["good#1", "good#2"]
        assert [e.seq for e in await journal(store, "bad")] == [0]
        # The confused writer is stopped: nothing more it writes lands.
        await rejects_append(store, bad, [entry(1)], StoreError)
        with pytest.raises(StoreError):
            await finish(store, bad, now=T + 1)
        assert (await get(store, "bad")).status == "running"
        assert [e.seq for e in await journal(store, "bad")] == [0]

    async def test_read_journal_pages_through_everything(self, store: Store) -> None:
        lease = await start_running(store, "r1")
        entries = [entry(i) for i in range(25)]
        await write(store, lease, entries)
        pages, after = [], -1
        while page := await store.read_journal("r1", after_seq=after, limit=10):
            pages.append(page)
            after = page[-1].seq
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [e for p in pages for e in p] == entries

    async def test_journals_of_runs_are_separate(self, store: Store) -> None:
        await store.create_run(new_run("a"), now=T)
        await store.create_run(new_run("b"), now=T)
        leases = {r.id: lease_of(r) for r in await claim(store, now=T)}
        store.append(leases["a"], [entry(0, "a#1"), entry(1, "a#2")], {})
        store.append(leases["b"], [entry(0, "b#1")], {})
        await asyncio.gather(store.commit(leases["a"]), store.commit(leases["b"]))
        assert [e.key for e in await journal(store, "a")] == ["a#1", "a#2"]
        assert [e.key for e in await journal(store, "b")] == ["b#1"]
        assert await store.read_journal("unknown") == []

    async def test_blobs_round_trip_by_digest(self, store: Store, other: Store) -> None:
        lease = await start_running(store, "r1")
        data = bytes(range(256)) * 40
        digest = hashlib.sha256(data).hexdigest()
        store.append(lease, [entry(0)], {digest: data})
        await store.commit(lease)
        assert await store.get_blob(digest) == data
        assert await other.get_blob(digest) == data
        store.append(lease, [entry(1)], {digest: data})  # the same blob again is harmless
        await store.commit(lease)
        assert await store.get_blob(digest) == data

    async def test_a_missing_blob_is_a_store_error(self, store: Store) -> None:
        with pytest.raises(StoreError, match="0" * 64):
            await store.get_blob("0" * 64)

    # -- fencing: a stale lease writes nothing ---------------------------------------------------

    async def test_a_stale_lease_is_rejected_after_a_takeover(self, store: Store) -> None:
        old = await start_running(store, "r1", now=T)
        await write(store, old, [entry(0, "a#1")])
        new = await take_over(store, "r1", owner="w2", now=T + LEASE)

        await rejects_stale_append(store, old, [entry(1, "stale#1")])
        with pytest.raises(StaleLeaseError):
            await store.commit(old)
        with pytest.raises(StaleLeaseError):
            await finish(store, old, now=T + LEASE + 1)
        with pytest.raises(StaleLeaseError):
            await suspend(store, old, "waiting", Wait(timer=T + 1000), now=T + LEASE + 1)
        with pytest.raises(StaleLeaseError):
            await suspend(store, old, "parked", None, note="stale", now=T + LEASE + 1)

        run = await get(store, "r1")
        assert (run.status, run.owner, run.epoch) == ("running", "w2", new.epoch)
        assert run.result is None
        assert run.note is None
        await write(store, new, [entry(1, "b#1")])
        assert [e.key for e in await journal(store, "r1")] == ["a#1", "b#1"]

    async def test_a_takeover_through_another_store_fences_this_one(
        self, store: Store, other: Store
    ) -> None:
        old = await start_running(store, "r1", now=T)
        await write(store, old, [entry(0, "a#1")])
        new = await take_over(other, "r1", owner="w2", now=T + LEASE)
        await rejects_stale_append(store, old, [entry(1, "stale#1")])
        with pytest.raises(StaleLeaseError):
            await store.commit(old)
        with pytest.raises(StaleLeaseError):
            await finish(store, old, now=T + LEASE)
        await write(other, new, [entry(1, "b#1")])
        await finish(other, new, now=T + LEASE)
        assert [e.key for e in await journal(store, "r1")] == ["a#1", "b#1"]
        assert (await get(store, "r1")).status == "completed"

    async def test_commit_of_a_stale_lease_raises_with_nothing_buffered(self, store: Store) -> None:
        old = await start_running(store, "r1", now=T)
        await write(store, old, [entry(0)])
        await take_over(store, "r1", now=T + LEASE)
        with pytest.raises(StaleLeaseError):
            await store.commit(old)

    async def test_a_stale_lease_cannot_write_blobs(self, store: Store) -> None:
        old = await start_running(store, "r1", now=T)
        await take_over(store, "r1", now=T + LEASE)
        data = b"stale" * 1000
        digest = hashlib.sha256(data).hexdigest()
        try:
            store.append(old, [entry(0)], {digest: data})
            await store.commit(old)
        except StaleLeaseError:
            pass
        else:
            pytest.fail("a stale lease's append went through")
        with pytest.raises(StoreError):
            await store.get_blob(digest)
        assert await journal(store, "r1") == []

    async def test_a_finished_run_rejects_its_last_lease(self, store: Store) -> None:
        lease = await start_running(store, "r1", now=T)
        await finish(store, lease, now=T + 1)
        await rejects_stale_append(store, lease, [entry(0)])
        with pytest.raises(StaleLeaseError):
            await finish(store, lease, "failed", result=None, error=b"{}", now=T + 2)
        assert (await get(store, "r1")).status == "completed"
        assert await journal(store, "r1") == []

    async def test_a_takeover_fences_writes_made_at_the_same_moment(self, store: Store) -> None:
        """A takeover and the old owner's transition, issued together: the transition loses."""
        old = await start_running(store, "r1", now=T)
        claimed, finished = await asyncio.gather(
            claim(store, "w2", now=T + LEASE),
            finish(store, old, now=T + LEASE),
            return_exceptions=True,
        )
        assert isinstance(claimed, list)
        assert [r.id for r in claimed] == ["r1"]
        assert isinstance(finished, StaleLeaseError)
        run = await get(store, "r1")
        assert (run.status, run.owner, run.result) == ("running", "w2", None)

    async def test_a_cancel_fences_a_suspend_made_at_the_same_moment(self, store: Store) -> None:
        old = await start_running(store, "r1", now=T)
        cancelled, suspended = await asyncio.gather(
            store.request_cancel("r1", now=T + LEASE),  # the lease expired: cancelled at once
            suspend(store, old, "waiting", Wait(timer=T + 1000), now=T + LEASE),
            return_exceptions=True,
        )
        assert isinstance(cancelled, RunRecord)
        assert cancelled.status == "cancelled"
        assert isinstance(suspended, StaleLeaseError)
        run = await get(store, "r1")
        assert (run.status, run.due_at) == ("cancelled", None)
        assert [e.kind for e in await journal(store, "r1")] == ["output"]

    # -- finishing ------------------------------------------------------------------------------

    async def test_finish_sets_status_result_and_error(self, store: Store) -> None:
        for run_id, status_, result, error in [
            ("ok", "completed", b'"done"', None),
            ("bad", "failed", None, b'{"type":"ValueError","message":"no"}'),
            ("stop", "cancelled", None, b'{"type":"RunCancelled","message":"x"}'),
        ]:
            lease = await start_running(store, run_id, now=T)
            store.append(lease, [entry(0, "", "output")], {})
            await finish(store, lease, status_, result=result, error=error, now=T + 7)
            run = await get(store, run_id)
            assert (run.status, run.result, run.error) == (status_, result, error)
            assert (run.owner, run.due_at, run.updated_at) == (None, None, T + 7)
            assert run.continued_to is None
            assert [e.kind for e in await journal(store, run_id)] == ["output"]
        assert await store.count_runs() == {"completed": 1, "failed": 1, "cancelled": 1}
        assert await claim(store, now=T + 1e6) == []

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

    async def test_finish_with_continue_as_creates_the_next_run(self, store: Store) -> None:
        lease = await start_running(store, "r", now=T, parent_id=None)
        await finish(
            store,
            lease,
            result=None,
            now=T + 3,
            continue_as=new_run("r~2", input=b'"next"'),
        )
        run = await get(store, "r")
        assert (run.status, run.continued_to) == ("completed", "r~2")
        nxt = await get(store, "r~2")
        assert (nxt.status, nxt.input, nxt.due_at, nxt.created_at) == (
            "queued",
            b'"next"',
            T + 3,
            T + 3,
        )
        assert [r.id for r in await claim(store, now=T + 3)] == ["r~2"]

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

    # -- lifecycle ------------------------------------------------------------------------------

    async def test_close_commits_what_is_buffered_and_reopening_sees_it(
        self, store: Store, store_factory: Callable[[], Store]
    ) -> None:
        lease = await start_running(store, "r1", now=T)
        await write(store, lease, [entry(0)])
        store.append(lease, [entry(1)], {})  # not committed by the caller
        await store.close()
        reopened = store_factory()
        await reopened.open()
        try:
            assert [e.seq for e in await reopened.read_journal("r1")] == [0, 1]
            assert (await get(reopened, "r1")).owner == "w1"
        finally:
            await reopened.close()

    # -- listing --------------------------------------------------------------------------------

    async def test_list_runs_filters_by_status_and_parent(self, store: Store) -> None:
        await store.create_run(new_run("p"), now=T)
        await store.create_run(new_run("c1", parent_id="p"), now=T + 1)
        await store.create_run(new_run("c2", parent_id="p"), now=T + 2)
        await store.create_run(new_run("x"), now=T + 3)
        await store.create_run(new_run("w"), now=T + 3)  # same time as x: ids break the tie
        [p] = await claim(store, now=T, limit=1)
        await suspend(store, lease_of(p), "parked", None, now=T + 4)

        assert [r.id for r in await store.list_runs()] == ["x", "w", "c2", "c1", "p"]  # newest
        assert [r.id for r in await store.list_runs(limit=2)] == ["x", "w"]
        assert [r.id for r in await store.list_runs(statuses=["parked"])] == ["p"]
        assert [r.id for r in await store.list_runs(statuses=["queued", "parked"])] == [
            "x",
            "w",
            "c2",
            "c1",
            "p",
        ]
        assert await store.list_runs(statuses=[]) == []
        assert await store.list_runs(statuses=["completed"]) == []
        assert [r.id for r in await store.list_runs(parent_id="p")] == ["c2", "c1"]
        assert [r.id for r in await store.list_runs(parent_id="p", statuses=["parked"])] == []
        assert await store.list_runs(parent_id="x") == []
        assert await store.list_runs(statuses=["parked"]) == [await get(store, "p")]

    async def test_count_runs(self, store: Store) -> None:
        assert await store.count_runs() == {}
        for i in range(4):
            await store.create_run(new_run(f"r{i}"), now=T)
        [a, b] = await claim(store, now=T, limit=2)
        await finish(store, lease_of(a), now=T)
        assert await store.count_runs() == {"queued": 2, "running": 1, "completed": 1}
        await store.request_cancel(b.id, now=T + LEASE)
        assert await store.count_runs() == {"queued": 2, "cancelled": 1, "completed": 1}

    # -- copies ---------------------------------------------------------------------------------

    async def test_reads_return_copies(self, store: Store) -> None:
        def vandalise(record: RunRecord) -> None:
            record.status = "failed"
            record.due_at = -1.0
            record.owner = "vandal"
            record.epoch = 999
            record.note = "changed"
            record.cancel_requested = True

        created, _ = await store.create_run(new_run("r1"), now=T)
        snapshot = await get(store, "r1")
        vandalise(created)
        assert await get(store, "r1") == snapshot
        vandalise(await get(store, "r1"))
        assert await get(store, "r1") == snapshot
        again, _ = await store.create_run(new_run("r1"), now=T)
        vandalise(again)
        for record in await store.list_runs():
            vandalise(record)
        assert await get(store, "r1") == snapshot

        [claimed] = await claim(store, now=T)
        snapshot = await get(store, "r1")
        vandalise(claimed)
        assert await get(store, "r1") == snapshot
        lease = Lease("r1", "w1", snapshot.epoch)
        await suspend(store, lease, "parked", None, now=T)
        controlled = await store.control("r1", [], now=T + 1)
        snapshot = await get(store, "r1")
        vandalise(controlled)
        assert await get(store, "r1") == snapshot
        cancelled = await store.request_cancel("r1", now=T + 2)
        snapshot = await get(store, "r1")
        vandalise(cancelled)
        assert await get(store, "r1") == snapshot
        assert (await get(store, "r1")).status == "cancelled"

    # -- against the reference: the memory store --------------------------------------------------

    @pytest.mark.parametrize("seed", range(10))
    async def test_behaves_like_the_memory_store(self, store: Store, seed: int) -> None:
        """A random script of protocol calls gives the same answers and the same final state
        as on a MemoryStore (the reference model)."""
        reference = MemoryStore()
        expected = await random_script(reference, seed)
        actual = await random_script(store, seed)
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert got == want, f"step {i} of seed {seed}: {want[0]}"


class _Shaper:
    """Makes what store calls return comparable between backends.

    `waiting` is compared as the JSON it holds, not as bytes. A signal's `seq` only orders
    signals, and a backend may skip numbers (as a database sequence does), so seqs are compared
    by rank: the n-th signal sent gets n, in signals and in the cursor a waiting run keeps.
    """

    def __init__(self) -> None:
        self.ranks: dict[int, int] = {}

    def sent(self, signal: Signal | None) -> None:
        if signal is not None:
            self.ranks[signal.seq] = len(self.ranks) + 1

    def __call__(self, value: Any) -> Any:
        if isinstance(value, Signal):
            return dataclasses.astuple(dataclasses.replace(value, seq=self.ranks[value.seq]))
        if isinstance(value, RunRecord):
            waiting = None if value.waiting is None else orjson.loads(value.waiting)
            if waiting is not None:
                waiting["signal_cursor"] = self.ranks.get(waiting["signal_cursor"], 0)
            return (dataclasses.astuple(dataclasses.replace(value, waiting=None)), waiting)
        if isinstance(value, Entry):
            return tuple(value)
        if isinstance(value, Renewal):
            return ("renewal", sorted(value.lost), sorted(value.cancel))
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value


ACTIONS = (
    *("create", "create", "claim", "claim", "write", "write", "finish", "suspend"),
    *("signal", "cancel", "control", "renew", "read"),
)


async def random_script(store: Store, seed: int, steps: int = 300) -> list[tuple[str, Any]]:
    """Drive a store through random calls (sequentially, one at a time) and record every answer.

    Claims use a large limit, so which of several equally due runs comes first does not matter.
    """
    rng = random.Random(seed)
    now = T
    run_ids: list[str] = []
    leases: list[Lease] = []
    trace: list[tuple[str, Any]] = []
    signal_names = ("go", "stop")
    shape = _Shaper()

    def some_run() -> str:
        return rng.choice(run_ids) if run_ids and rng.random() < 0.95 else "missing"

    for _ in range(steps):
        now += rng.choice((0.0, 0.5, 1.0, 5.0, LEASE + 1))
        action = rng.choice(ACTIONS)
        # Mostly one of the latest leases (likely still held), sometimes any (likely stale).
        pool = leases[-6:] if rng.random() < 0.7 else leases
        lease = rng.choice(pool) if pool else Lease("missing", "w", 1)
        try:
            if action == "create":
                parent = rng.choice(run_ids) if run_ids and rng.random() < 0.3 else None
                run_id = f"r{len(run_ids)}" if rng.random() < 0.9 or not run_ids else run_ids[0]
                if run_id not in run_ids:
                    run_ids.append(run_id)
                result: Any = await store.create_run(new_run(run_id, parent_id=parent), now=now)
            elif action == "claim":
                owner = rng.choice(("w1", "w2"))
                max_recoveries = rng.choice((0, 1, 3))
                claimed = await claim(store, owner, now=now, max_recoveries=max_recoveries)
                leases.extend(sorted((lease_of(r) for r in claimed), key=lambda x: x.run_id))
                result = sorted(shape(claimed))
            elif action == "write":
                seq = len(await store.read_journal(lease.run_id, limit=10**6))
                if rng.random() < 0.1:
                    seq += rng.choice((-1, 1))
                n = rng.randint(1, 3)
                data = f"blob {seed} {seq}".encode() * 100
                digest = hashlib.sha256(data).hexdigest()
                blobs = {digest: data} if rng.random() < 0.3 else {}
                # Refused at once or at the commit: the protocol allows both, so both count
                # as the same answer.
                store.append(lease, [entry(seq + i, f"k#{seq + i}") for i in range(n)], blobs)
                await store.commit(lease)
                result = "committed"
            elif action == "finish":
                status_ = rng.choice(("completed", "failed", "cancelled"))
                follow = new_run(f"{lease.run_id}~next") if rng.random() < 0.2 else None
                if follow is not None and follow.id not in run_ids:
                    run_ids.append(follow.id)
                await finish(store, lease, status_, now=now, continue_as=follow)
                result = "finished"
            elif action == "suspend":
                status_ = rng.choice(("waiting", "waiting", "parked", "queued"))
                # The cursor: the seq of the k-th signal the run got (0: none looked at yet).
                sent = [
                    signal.seq
                    for name in signal_names
                    for signal in await store.signals(lease.run_id, name)
                ]
                sent.sort()
                looked = rng.randint(0, len(sent))
                wait = Wait(
                    timer=now + rng.choice((1.0, 10.0, 100.0)) if rng.random() < 0.5 else None,
                    signals=tuple(rng.sample(signal_names, rng.randint(0, 2))),
                    signal_cursor=sent[looked - 1] if looked else 0,
                    children=tuple(rng.sample(run_ids, min(len(run_ids), rng.randint(0, 2)))),
                )
                await suspend(store, lease, status_, wait if rng.random() < 0.9 else None, now=now)
                result = "suspended"
            elif action == "signal":
                result = await store.send_signal(
                    some_run(),
                    rng.choice(signal_names),
                    b"{}",
                    f"s{rng.randint(0, 20)}",
                    now=now,
                )
                shape.sent(result)
            elif action == "cancel":
                result = await store.request_cancel(some_run(), now=now)
            elif action == "control":
                entries: list[tuple[str, EntryKind, bytes]] = [("", "control", b"{}")]
                result = await store.control(some_run(), entries[: rng.randint(0, 1)], now=now)
            elif action == "renew":
                chosen = rng.sample(leases, min(len(leases), 3))
                result = await store.renew(chosen, now=now, lease_seconds=LEASE)
            else:
                run_id = some_run()
                result = (
                    await store.read_journal(run_id, after_seq=rng.randint(-2, 5), limit=4),
                    await store.signals(run_id, rng.choice(signal_names)),
                    await store.list_runs(statuses=["waiting", "parked"]),
                )
        except OvernightError as exc:
            result = ("error", type(exc).__name__)
        trace.append((action, shape(result)))

    trace.append(("runs", shape(await store.list_runs(limit=10**6))))
    trace.append(("counts", await store.count_runs()))
    for run_id in run_ids:
        trace.append((f"journal {run_id}", shape(await store.read_journal(run_id))))
        for name in signal_names:
            trace.append((f"signals {run_id} {name}", shape(await store.signals(run_id, name))))
    return trace
