"""What the conformance modules share: the made-up clock, and short forms of protocol calls.

Time is explicit in the protocol (`now=`), so the tests run on a made-up clock starting at `T`.
Runs are claimed with leases of `LEASE` seconds, and at most `MAX_RECOVERIES` takeovers, unless a
test says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from overnight.errors import StaleLeaseError, StoreError
from overnight.store.base import Entry, EntryKind, Lease, NewRun, RunRecord, Store, Wait

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
