"""The PostgreSQL store's writes: each runs inside the store's batch transaction (see `postgres`).

Concurrency with other processes is settled by row locks, taken before the state a write depends
on is read (PostgreSQL runs each statement on a fresh snapshot in READ COMMITTED):

- a run's row is locked (`FOR UPDATE`) before its state decides a write: a lease check, a signal
  that may wake it, a cancel, a control. The batch takes these locks up front, all in one
  statement in id order (see `postgres_batch.write`); the `FOR UPDATE` the ops repeat then holds
  already, and keeps them correct on their own;
- claims lock the due rows they hand out with `FOR UPDATE SKIP LOCKED`, so concurrent claims never
  wait for each other and never return the same run;
- a child ending locks its parent's row before reading whether the parent waits for it, so a
  parent suspending at the same moment (its row locked, reading its children) is woken either
  way: it sees the child ended, or the child sees it waiting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from ..errors import RunNotFoundError, StaleLeaseError
from .base import TERMINAL, EntryKind, Lease, NewRun, Renewal, RunRecord, Signal, Wait
from .common import (
    CANCELLED_ERROR,
    cancelled_output,
    dead_error,
    encode_wait,
    refuse_control,
    wait_children,
    wait_signals,
)

# In the order of RunRecord's fields, so a row makes a record with RunRecord(*row).
RUN_COLUMNS = (
    "id, workflow, version, input, status, created_at, updated_at, options, parent_id, due_at, "
    "owner, epoch, attempts, recoveries, waiting, cancel_requested, result, error, note, "
    "continued_to"
)
TERMINAL_SQL = "('completed','failed','cancelled','dead')"


class Tx:
    """What an op sees: the connection inside the batch transaction, and a wake-up flag.

    Ops raise `StoreError`/`UserError` (a stale lease, a missing run) only before they write,
    so the batch goes on without them; any other error fails the whole transaction.
    """

    __slots__ = ("conn", "woke")

    def __init__(self, conn: AsyncConnection[TupleRow]) -> None:
        self.conn = conn
        self.woke = False
        """Set by an op that made a run due now: workers are told after the commit."""


def record(row: Sequence[Any]) -> RunRecord:
    return RunRecord(*row)


async def get(tx: Tx, run_id: str, *, lock: bool = True) -> RunRecord:
    """The run, locked for the rest of the transaction; RunNotFoundError if there is none."""
    cur = await tx.conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE id = %s{' FOR UPDATE' if lock else ''}", (run_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise RunNotFoundError(run_id)
    return record(row)


async def fence(tx: Tx, lease: Lease) -> bool:
    """Raise StaleLeaseError unless the lease holds its run (current epoch, running); return
    whether the run's cancellation was requested. The batch locked the row already."""
    cur = await tx.conn.execute(
        "SELECT epoch, status, cancel_requested FROM runs WHERE id = %s", (lease.run_id,)
    )
    row = await cur.fetchone()
    if row is None or row[0] != lease.epoch or row[1] != "running":
        raise StaleLeaseError(lease.run_id, lease.epoch)
    return bool(row[2])


# -- runs ---------------------------------------------------------------------------------------


async def create(tx: Tx, new: NewRun, now: float) -> tuple[RunRecord, bool]:
    [result] = await create_many(tx, [(new, now)])
    return result


async def create_many(
    tx: Tx, creates: Sequence[tuple[NewRun, float]]
) -> list[tuple[RunRecord, bool]]:
    """Create runs (each new one queued, due at its `now`) in one statement, so a burst of
    starts shares one round trip; each result is what `create_run` returns for it. Of two with
    one id, the first creates the run. Rows go in in id order: two batches starting the same
    ids (two clients) wait for each other's inserts in one order, never in a cycle."""
    cur = await tx.conn.execute(
        "INSERT INTO runs (id, workflow, version, input, options, status, parent_id, due_at, "
        "created_at, updated_at) SELECT id, workflow, version, input, options, 'queued', "
        "parent_id, now, now, now FROM unnest(%s::text[], %s::text[], %s::text[], %s::bytea[], "
        "%s::bytea[], %s::text[], %s::float8[]) WITH ORDINALITY "
        "AS n(id, workflow, version, input, options, parent_id, now, i) ORDER BY id, i "
        f"ON CONFLICT (id) DO NOTHING RETURNING {RUN_COLUMNS}",
        (
            [n.id for n, _ in creates],
            [n.workflow for n, _ in creates],
            [n.version for n, _ in creates],
            [n.input for n, _ in creates],
            [n.options for n, _ in creates],
            [n.parent_id for n, _ in creates],
            [now for _, now in creates],
        ),
    )
    runs = {row[0]: record(row) for row in await cur.fetchall()}
    created = set(runs)
    if created:
        tx.woke = True
    missing = sorted({n.id for n, _ in creates} - created)
    if missing:
        cur = await tx.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ANY(%s)", (missing,)
        )
        runs.update((row[0], record(row)) for row in await cur.fetchall())
    results = []
    for new, _ in creates:
        results.append((dataclasses.replace(runs[new.id]), new.id in created))
        created.discard(new.id)
    return results


async def finish(
    tx: Tx,
    lease: Lease,
    status: Literal["completed", "failed", "cancelled"],
    result: bytes | None,
    error: bytes | None,
    now: float,
    continue_as: NewRun | None,
) -> None:
    # Fenced by its WHERE: one round trip for the common run that has no parent.
    cur = await tx.conn.execute(
        "UPDATE runs SET status = %s, result = %s, error = %s, owner = NULL, "
        "cancel_requested = false, due_at = NULL, updated_at = %s, continued_to = %s "
        "WHERE id = %s AND epoch = %s AND status = 'running' RETURNING parent_id",
        (
            status,
            result,
            error,
            now,
            continue_as.id if continue_as else None,
            lease.run_id,
            lease.epoch,
        ),
    )
    row = await cur.fetchone()
    if row is None:
        raise StaleLeaseError(lease.run_id, lease.epoch)
    if continue_as is not None:
        await create(tx, continue_as, now)
    if row[0] is not None:
        await wake_parent(tx, lease.run_id, now)


async def suspend(
    tx: Tx,
    lease: Lease,
    status: Literal["waiting", "parked", "queued"],
    wait: Wait | None,
    note: str | None,
    now: float,
) -> None:
    if await fence(tx, lease):
        # Cancellation was asked after the worker's last renewal: it suspends without knowing.
        # The run is no longer held, so the request takes effect now.
        await cancel(tx, lease.run_id, now)
        return
    due: float | None
    if status == "queued":
        due = wait.timer if wait is not None and wait.timer is not None else now
    elif status == "parked" or wait is None:
        due = None
    elif (wait.signals or wait.children) and await wait_satisfied(tx, lease.run_id, wait):
        due = now
    else:
        due = wait.timer
    await tx.conn.execute(
        "UPDATE runs SET status = %s, owner = NULL, note = %s, updated_at = %s, waiting = %s, "
        "due_at = %s WHERE id = %s",
        (
            status,
            note,
            now,
            encode_wait(wait) if status == "waiting" else None,
            due,
            lease.run_id,
        ),
    )
    tx.woke = tx.woke or (due is not None and due <= now)


async def wait_satisfied(tx: Tx, run_id: str, wait: Wait) -> bool:
    """Whether a signal past the cursor, or an ended child, is already there (the run's row is
    locked: a signal or a child's end committed after this read wakes the run itself)."""
    cur = await tx.conn.execute(
        "SELECT EXISTS (SELECT 1 FROM signals WHERE run_id = %s AND seq > %s "
        "AND name = ANY(%s)) OR EXISTS (SELECT 1 FROM runs WHERE id = ANY(%s) "
        f"AND status IN {TERMINAL_SQL})",
        (run_id, wait.signal_cursor, list(wait.signals), list(wait.children)),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def wake_parent(tx: Tx, run_id: str, now: float) -> None:
    """Make the run's parent due now if it waits for this run.

    The parent's row is locked whatever its state, before its state is read. A parent
    suspending at this moment in another transaction holds that lock while it checks its
    children: either it committed first (we then read it waiting, and wake it) or we commit
    first (it then reads this run ended). An UPDATE filtered on `status = 'waiting'` would not
    do: it takes no lock on a parent still running in its snapshot, and both would miss.
    """
    cur = await tx.conn.execute(
        "SELECT id, status, waiting FROM runs "
        "WHERE id = (SELECT parent_id FROM runs WHERE id = %s) FOR UPDATE",
        (run_id,),
    )
    row = await cur.fetchone()
    if row is None or row[1] != "waiting" or run_id not in wait_children(row[2]):
        return
    await tx.conn.execute("UPDATE runs SET due_at = %s WHERE id = %s", (now, row[0]))
    tx.woke = True


async def append_unowned(
    tx: Tx, run_id: str, entries: Sequence[tuple[str, EntryKind, bytes]]
) -> None:
    """Append entries to a run no lease holds (its row is locked by the caller)."""
    if not entries:
        return
    cur = await tx.conn.execute(
        "SELECT COALESCE(MAX(seq), -1) + 1 FROM entries WHERE run_id = %s", (run_id,)
    )
    row = await cur.fetchone()
    first = int(row[0]) if row is not None else 0
    await insert_entries(
        tx.conn,
        [(run_id, first + i, key, kind, data) for i, (key, kind, data) in enumerate(entries)],
    )


async def insert_entries(conn: Any, rows: Sequence[tuple[str, int, str, str, bytes]]) -> None:
    """Insert journal rows in one statement.

    One statement, not `executemany`: psycopg pipelines `executemany`, and a worker frozen in the
    middle of a pipeline leaves its backend waiting for the rest with no `Sync`, a state
    `idle_in_transaction_session_timeout` does not cover, so the locks it holds would never be
    released. Between whole statements it is idle in transaction, and the timeout frees them.
    """
    if not rows:
        return
    run_ids, seqs, keys, kinds, datas = (list(column) for column in zip(*rows, strict=True))
    await conn.execute(
        "INSERT INTO entries (run_id, seq, key, kind, data) SELECT * FROM "
        "unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::bytea[])",
        (run_ids, seqs, keys, kinds, datas),
    )


async def cancel(tx: Tx, run_id: str, now: float) -> None:
    """End a run no worker holds as cancelled, fencing whoever held it last."""
    await append_unowned(tx, run_id, [("", "output", cancelled_output())])
    await tx.conn.execute(
        "UPDATE runs SET status = 'cancelled', error = %s, epoch = epoch + 1, owner = NULL, "
        "cancel_requested = false, due_at = NULL, updated_at = %s WHERE id = %s",
        (CANCELLED_ERROR, now, run_id),
    )
    await wake_parent(tx, run_id, now)


# -- the worker plane ---------------------------------------------------------------------------


async def claim(
    tx: Tx, owner: str, now: float, limit: int, lease_seconds: float, max_recoveries: int
) -> list[RunRecord]:
    claimed: list[RunRecord] = []
    while len(claimed) < limit:
        # SKIP LOCKED: a run another transaction holds (another worker claiming it, or writing
        # to it) is left to that one; LIMIT counts only the rows this claim locked.
        cur = await tx.conn.execute(
            "SELECT id, status, recoveries FROM runs WHERE due_at <= %s ORDER BY due_at "
            "LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit - len(claimed)),
        )
        rows = await cur.fetchall()
        died = False
        take: list[str] = []
        for run_id, status, recoveries in rows:
            if status == "running" and recoveries + 1 > max_recoveries:
                await tx.conn.execute(
                    "UPDATE runs SET status = 'dead', owner = NULL, epoch = epoch + 1, "
                    "recoveries = %s, error = %s, due_at = NULL, updated_at = %s WHERE id = %s",
                    (recoveries + 1, dead_error(recoveries + 1), now, run_id),
                )
                await wake_parent(tx, run_id, now)
                died = True
            else:
                take.append(run_id)
        if take:
            cur = await tx.conn.execute(
                "UPDATE runs SET owner = %s, epoch = epoch + 1, attempts = attempts + 1, "
                "recoveries = recoveries + CASE WHEN status = 'running' THEN 1 ELSE 0 END, "
                "status = 'running', due_at = %s, updated_at = %s WHERE id = ANY(%s) "
                f"RETURNING {RUN_COLUMNS}",
                (owner, now + lease_seconds, now, take),
            )
            by_id = {row[0]: record(row) for row in await cur.fetchall()}
            claimed.extend(by_id[run_id] for run_id in take)  # in due order
        if not died:
            break  # a run moved to dead leaves its slot to the next due run
    return claimed


async def renew(tx: Tx, leases: Sequence[Lease], now: float, lease_seconds: float) -> Renewal:
    renewal = Renewal()
    if not leases:
        return renewal
    cur = await tx.conn.execute(
        "UPDATE runs r SET due_at = %s FROM unnest(%s::text[], %s::bigint[]) AS l(id, epoch) "
        "WHERE r.id = l.id AND r.epoch = l.epoch AND r.status = 'running' "
        "RETURNING r.id, r.epoch, r.cancel_requested",
        (now + lease_seconds, [lease.run_id for lease in leases], [x.epoch for x in leases]),
    )
    held = set()
    for run_id, epoch, cancel_requested in await cur.fetchall():
        held.add((run_id, epoch))
        if cancel_requested:
            renewal.cancel.add(run_id)
    # Per lease, as a worker may pass an old lease of a run along with its current one.
    renewal.lost = {x.run_id for x in leases if (x.run_id, x.epoch) not in held}
    return renewal


# -- the control plane --------------------------------------------------------------------------


async def send_signal(
    tx: Tx, run_id: str, name: str, payload: bytes, signal_id: str, now: float
) -> Signal | None:
    # The run's row is locked before the signal takes its seq: a suspend committed later sees
    # this signal, and signals to one run become visible in seq order (a wait's cursor never
    # skips one committed late with a lower seq).
    run = await get(tx, run_id)
    cur = await tx.conn.execute(
        "INSERT INTO signals (run_id, name, signal_id, payload, created_at) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id, signal_id) DO NOTHING RETURNING seq",
        (run_id, name, signal_id, payload, now),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    if run.status == "waiting" and name in wait_signals(run.waiting):
        await tx.conn.execute("UPDATE runs SET due_at = %s WHERE id = %s", (now, run_id))
        tx.woke = True
    return Signal(int(row[0]), run_id, name, signal_id, payload, now)


async def request_cancel(tx: Tx, run_id: str, now: float) -> RunRecord:
    run = await get(tx, run_id)
    if run.status in TERMINAL:
        return run
    if run.status == "running" and run.due_at is not None and run.due_at > now:
        await tx.conn.execute(
            "UPDATE runs SET cancel_requested = true, updated_at = %s WHERE id = %s",
            (now, run_id),
        )
    else:
        await cancel(tx, run_id, now)
    return await get(tx, run_id)


async def control(
    tx: Tx, run_id: str, entries: Sequence[tuple[str, EntryKind, bytes]], now: float
) -> RunRecord:
    run = await get(tx, run_id)
    refuse_control(run, now)
    await append_unowned(tx, run_id, entries)
    # A dead run retried by hand gets a fresh allowance of takeovers.
    cur = await tx.conn.execute(
        "UPDATE runs SET status = 'queued', epoch = epoch + 1, owner = NULL, note = NULL, "
        "recoveries = CASE WHEN status = 'dead' THEN 0 ELSE recoveries END, "
        "error = CASE WHEN status = 'dead' THEN NULL ELSE error END, "
        f"due_at = %s, updated_at = %s WHERE id = %s RETURNING {RUN_COLUMNS}",
        (now, now, run_id),
    )
    row = await cur.fetchone()
    assert row is not None  # locked above
    tx.woke = True
    return record(row)
