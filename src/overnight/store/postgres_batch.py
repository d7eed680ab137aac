"""One group-commit transaction of the PostgreSQL store: what a batch of buffered writes does.

A batch holds the journal entries and blobs appended since the last transaction and the queued
transitions (ops). `write` runs all of it inside one transaction, fencing every write: the rows
of the runs written to are locked and their epochs checked first, so a worker whose lease was
taken over writes nothing, and an append that does not continue its run's journal is refused for
that lease alone, without failing the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import StaleLeaseError, StoreError, UserError
from . import postgres_ops as ops
from .base import Entry, Lease, NewRun
from .common import out_of_order

Key = tuple[str, int]
"""A lease as the store remembers it: (run id, epoch)."""


@dataclass(frozen=True, slots=True)
class Create:
    """A `create_run`: consecutive ones of a batch are written by one statement."""

    new: NewRun
    now: float


Op = Callable[[ops.Tx], Awaitable[Any]] | Create


class Batch:
    """Writes queued for the next transaction."""

    __slots__ = ("blobs", "entries", "locks", "ops", "parents", "valid", "waiters")

    def __init__(self) -> None:
        self.entries: list[tuple[Lease, Sequence[Entry]]] = []
        self.blobs: list[tuple[Lease, dict[str, bytes]]] = []
        self.ops: list[tuple[Lease | None, Op, asyncio.Future[Any]]] = []
        self.locks: set[str] = set()
        """Runs the ops will write to (besides the leases' runs): locked at the start."""
        self.parents: set[str] = set()
        """Runs the ops may end: their parents (which they may wake) are locked at the start."""
        self.waiters: list[asyncio.Future[None]] = []
        """One future per `commit` caller: cancelling one caller cancels only its own."""
        self.valid: set[Key] = set()
        """Leases found holding their run when the transaction wrote their entries."""


class Attempt:
    """What one try of a batch learned; the store applies it only once the try committed
    (a batch is tried again after a deadlock or a connection lost before COMMIT)."""

    __slots__ = ("known_refused", "next_seq", "refused", "results", "stale", "valid")

    def __init__(self, known_refused: Mapping[Key, str]) -> None:
        self.known_refused = known_refused
        """Leases the store refused before this batch."""
        self.valid: set[Key] = set()
        self.stale: set[Key] = set()
        self.refused: dict[Key, str] = {}
        self.next_seq: dict[Key, int] = {}
        self.results: list[tuple[Any, BaseException | None]] = []

    def refusal(self, key: Key) -> str | None:
        """Why the lease's writes are refused, if they are."""
        return self.refused.get(key) or self.known_refused.get(key)


async def write(tx: ops.Tx, batch: Batch, attempt: Attempt, next_seq: Mapping[Key, int]) -> None:
    """Everything a batch does, inside its transaction. `next_seq`: the store's known journal
    ends of leases that appended before."""
    conn = tx.conn
    leases = {lease for lease, _ in batch.entries}
    leases.update(lease for lease, _ in batch.blobs)
    ids = {lease.run_id for lease in leases} | batch.locks
    ids.update(lease.run_id for lease, _, _ in batch.ops if lease is not None)
    if ids or batch.parents:
        # Every row the batch will write to is locked here, in one statement in id order, and
        # held until the commit. No takeover elsewhere can slip between the epoch checks below
        # and our writes; and two batches never wait for each other in a cycle (one finishing
        # a child of a parent the other suspends, and the reverse, would deadlock if each
        # locked as it went). Claims lock later, with SKIP LOCKED: they never wait.
        cur = await conn.execute(
            "SELECT id, epoch, status FROM runs WHERE id = ANY(%s) OR id IN "
            "(SELECT parent_id FROM runs WHERE id = ANY(%s)) ORDER BY id FOR UPDATE",
            (sorted(ids), sorted(batch.parents)),
        )
        current = {run_id: (epoch, status) for run_id, epoch, status in await cur.fetchall()}
        for lease in leases:
            key = (lease.run_id, lease.epoch)
            if current.get(lease.run_id) == (lease.epoch, "running"):
                attempt.valid.add(key)
            else:
                attempt.stale.add(key)
    rows = await _journal_rows(tx, batch, attempt, next_seq)
    await ops.insert_entries(conn, rows)
    blobs = {
        digest: data
        for lease, items in batch.blobs
        if (key := (lease.run_id, lease.epoch)) in attempt.valid and not attempt.refusal(key)
        for digest, data in items.items()
    }
    if blobs:
        digests, datas = zip(*sorted(blobs.items()), strict=True)
        await conn.execute(
            "INSERT INTO blobs (digest, data) SELECT * FROM unnest(%s::text[], %s::bytea[]) "
            "ON CONFLICT DO NOTHING",
            (list(digests), list(datas)),
        )
    queued, i = batch.ops, 0
    while i < len(queued):
        op_lease, op, _ = queued[i]
        if isinstance(op, Create):
            creates = []
            while i < len(queued) and isinstance(queued[i][1], Create):
                create = queued[i][1]
                assert isinstance(create, Create)
                creates.append((create.new, create.now))
                i += 1
            attempt.results.extend((r, None) for r in await ops.create_many(tx, creates))
        else:
            attempt.results.append(await _run_op(tx, op_lease, op, attempt))
            i += 1


async def _run_op(
    tx: ops.Tx, lease: Lease | None, op: Op, attempt: Attempt
) -> tuple[Any, BaseException | None]:
    """Run one op; one with a lease fences itself (an earlier op of this batch, a takeover, a
    cancel or a control, may have fenced the lease since its entries were written)."""
    if lease is not None:
        refused = attempt.refusal((lease.run_id, lease.epoch))
        if refused is not None:
            return None, StoreError(refused)
    assert not isinstance(op, Create)
    try:
        return await op(tx), None
    except StaleLeaseError as exc:
        attempt.stale.add((exc.run_id, exc.epoch))
        return None, exc
    except (StoreError, UserError) as exc:
        return None, exc  # ops raise these before they write anything: nothing to undo


async def _journal_rows(
    tx: ops.Tx, batch: Batch, attempt: Attempt, known: Mapping[Key, int]
) -> list[tuple[str, int, str, str, bytes]]:
    """Rows of the valid leases' entries; an append that does not continue its run's journal is
    refused (its lease writes nothing more), without failing the others.

    A lease reads its journal's end from the database only on its first append: only its holder
    appends to a run while the epoch lasts, so the next seq is known after that (hot path).
    """
    writing = [
        (lease, entries)
        for lease, entries in batch.entries
        if (key := (lease.run_id, lease.epoch)) in attempt.valid and not attempt.refusal(key)
    ]
    unknown = {lease.run_id for lease, _ in writing if (lease.run_id, lease.epoch) not in known}
    ends: dict[str, int] = {}
    if unknown:
        cur = await tx.conn.execute(
            "SELECT run_id, MAX(seq) + 1 FROM entries WHERE run_id = ANY(%s) GROUP BY run_id",
            (sorted(unknown),),
        )
        ends = {run_id: int(end) for run_id, end in await cur.fetchall()}
    rows: list[tuple[str, int, str, str, bytes]] = []
    for lease, entries in writing:
        key = (lease.run_id, lease.epoch)
        if key in attempt.refused:
            continue
        expected = attempt.next_seq.get(key, known.get(key))
        if expected is None:
            expected = ends.get(lease.run_id, 0)
        for i, e in enumerate(entries):
            if e.seq != expected + i:
                attempt.refused[key] = out_of_order(lease.run_id, e.seq, expected + i - 1)
                break
        else:
            rows.extend((lease.run_id, e.seq, e.key, e.kind, e.data) for e in entries)
            attempt.next_seq[key] = expected + len(entries)
    return rows
