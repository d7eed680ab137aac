"""Runs from the outside: creating one (idempotently, by id), reading it, finishing it (with a
result, an error, or a next run to continue as), listing and counting runs, and reads that hand
out copies rather than the store's own records.
"""

from __future__ import annotations

from overnight.store.base import Lease, RunRecord, Store

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
    start_running,
    suspend,
)


class RunTests:
    """Creating, reading, finishing, listing and counting runs."""

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
