"""The journal and its fencing: appends made readable in order by a commit, appends that do not
follow the journal refused, blobs stored by digest, a stale lease (after a takeover, a finish or a
cancel) writing nothing, and buffered appends committed by `close`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

import pytest

from overnight.errors import StaleLeaseError, StoreError
from overnight.store.base import RunRecord, Store, Wait

from .support import (
    LEASE,
    T,
    claim,
    entry,
    finish,
    get,
    journal,
    lease_of,
    new_run,
    rejects_append,
    rejects_stale_append,
    start_running,
    suspend,
    take_over,
    write,
)


class JournalTests:
    """Appending and committing journal entries, blobs, and fencing out stale leases."""

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
