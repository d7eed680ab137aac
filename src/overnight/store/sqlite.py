"""SQLite store: one file, WAL, `synchronous=FULL` by default, one writer with group commit.

Every write (journal entries, run transitions, starts, signals, claims, renewals) is queued and
written by one committer on the event loop: all writes queued since the last commit go into one
transaction, so many concurrent runs share each fsync. Each write is validated against the run's
current epoch inside that transaction; writes from a stale owner are dropped and the owner is told.
Reads go straight to the database and see committed data.

Several processes may share the file (a worker, plus a CLI that signals or cancels): SQLite's
write lock serialises their transactions, and `BEGIN IMMEDIATE` takes it before reading the state
a write depends on.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .._engine.crash import crash_point
from ..errors import RunNotFoundError, StaleLeaseError, StoreError, UserError
from . import sqlite_schedules as schedules
from .base import (
    TERMINAL,
    Entry,
    EntryKind,
    Lease,
    NewRun,
    Renewal,
    RunRecord,
    ScheduleRecord,
    Signal,
    Wait,
)
from .common import (
    CANCELLED_ERROR,
    cancelled_output,
    dead_error,
    encode_wait,
    out_of_order,
    refuse_control,
    wait_children,
    wait_signals,
)
from .sqlite_schema import check_file, migrate

RUN_COLUMNS = (
    "id, workflow, version, input, status, created_at, updated_at, options, parent_id, due_at, "
    "owner, epoch, attempts, recoveries, waiting, cancel_requested, result, error, note, "
    "continued_to"
)
# A dead run retried by hand gets a fresh allowance of takeovers (see common.refuse_control).
_RETRY_DEAD = (
    "recoveries = CASE WHEN status = 'dead' THEN 0 ELSE recoveries END, "
    "error = CASE WHEN status = 'dead' THEN NULL ELSE error END"
)
_TERMINAL_SQL = "('completed','failed','cancelled','dead')"


class _Tx:
    """What an op sees: the connection inside the batch transaction, and a wake-up flag."""

    __slots__ = ("conn", "woke")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.woke = False
        """Set by an op that made a run due now: in-process workers are woken after commit."""


Op = Callable[[_Tx], Any]


def _record(row: Sequence[Any]) -> RunRecord:
    return RunRecord(
        id=row[0],
        workflow=row[1],
        version=row[2],
        input=row[3],
        status=row[4],
        created_at=row[5],
        updated_at=row[6],
        options=row[7],
        parent_id=row[8],
        due_at=row[9],
        owner=row[10],
        epoch=row[11],
        attempts=row[12],
        recoveries=row[13],
        waiting=row[14],
        cancel_requested=bool(row[15]),
        result=row[16],
        error=row[17],
        note=row[18],
        continued_to=row[19],
    )


class _Batch:
    """Writes queued for the next transaction."""

    __slots__ = ("blobs", "entries", "ops", "valid", "waiters")

    def __init__(self) -> None:
        self.entries: list[tuple[Lease, Sequence[Entry]]] = []
        self.blobs: list[tuple[Lease, dict[str, bytes]]] = []
        self.ops: list[tuple[Lease | None, Op, asyncio.Future[Any]]] = []
        self.waiters: list[asyncio.Future[None]] = []
        """One future per `commit` caller: cancelling one caller cancels only its own."""
        self.valid: set[tuple[str, int]] = set()
        """Leases found holding their run when the transaction wrote their entries."""

    def settle(self, error: BaseException | None) -> None:
        """Tell every `commit` caller the transaction's outcome."""
        for waiter in self.waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)


class SqliteStore:
    """A Store in one SQLite file (see the module docstring)."""

    def __init__(self, path: str, *, synchronous: str = "FULL") -> None:
        path, _, query = path.partition("?")
        for item in filter(None, query.split("&")):
            name, _, value = item.partition("=")
            if name != "synchronous":
                raise UserError(f"unknown SQLite store option {name!r}; known: synchronous")
            synchronous = value
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise UserError(f"synchronous must be FULL, NORMAL, EXTRA or OFF, not {synchronous!r}")
        self.path = path
        self.url = f"sqlite:///{path}"
        self.synchronous = synchronous.upper()
        self.commits = 0
        """Transactions committed by this process (group commit makes it far below writes)."""
        self.wakeups: list[Callable[[], None]] = []
        self._conn: sqlite3.Connection | None = None
        self._batch: _Batch | None = None
        self._stale: set[tuple[str, int]] = set()
        self._refused: dict[tuple[str, int], str] = {}
        self._next_seq: dict[tuple[str, int], int] = {}
        """Leases whose append did not follow the journal: every later write of theirs fails."""

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        if os.path.isdir(self.path):
            raise UserError(f"store path {self.path!r} is a directory; give a file path")
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise UserError(
                f"the folder of store file {self.path!r} does not exist; create {parent!r} first"
            )
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            check_file(conn, self.path)  # before the first write: never touch a foreign file
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        if self._conn is None:
            return
        if self._batch is not None:
            self._flush()  # synchronous: everything buffered is committed (or failed) here
        self._conn.close()
        self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the SQLite store {self.path!r} is not open; call open() first")
        return self._conn

    # -- the committer --------------------------------------------------------------------------

    def _current(self) -> _Batch:
        batch = self._batch
        if batch is None:
            batch = self._batch = _Batch()
            asyncio.get_running_loop().call_soon(self._flush)
        return batch

    def _submit(self, op: Op, lease: Lease | None = None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._current().ops.append((lease, op, future))
        return future

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        conn = self.conn
        tx = _Tx(conn)
        try:
            conn.execute("BEGIN IMMEDIATE")
            valid = batch.valid = self._valid_leases(conn, batch)
            next_seq: dict[tuple[str, int], int] = {}
            rows = self._journal_rows(conn, batch, valid, next_seq)
            if rows:
                conn.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", rows)
            blobs = {
                digest: data
                for lease, items in batch.blobs
                if (lease.run_id, lease.epoch) in valid
                and (lease.run_id, lease.epoch) not in self._refused
                for digest, data in items.items()
            }
            if blobs:
                conn.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?)", blobs.items())
            results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            for lease, op, future in batch.ops:
                if lease is not None and (lease.run_id, lease.epoch) in self._refused:
                    message = self._refused[(lease.run_id, lease.epoch)]
                    results.append((future, None, StoreError(message)))
                    continue
                # Checked when the op runs, not with the entries: an earlier op of this batch
                # (a takeover, a cancel, a control) may have fenced this lease.
                if lease is not None and not _holds(conn, lease):
                    self._stale.add((lease.run_id, lease.epoch))
                    results.append((future, None, StaleLeaseError(lease.run_id, lease.epoch)))
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    result = op(tx)
                except (StoreError, UserError) as exc:
                    conn.execute("ROLLBACK TO op")
                    results.append((future, None, exc))
                else:
                    conn.execute("RELEASE op")
                    results.append((future, result, None))
            crash_point("in_group_commit")
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = StoreError(f"SQLite store {self.path!r}: commit failed: {exc}")
            for lease, _ in batch.entries:
                self._stale.add((lease.run_id, lease.epoch))
            for _, _, future in batch.ops:
                if not future.done():
                    future.set_exception(error)
            batch.settle(error)
            return
        self.commits += 1
        self._next_seq.update(next_seq)
        crash_point("after_commit")
        for future, result, failure in results:
            if future.done():
                continue
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(result)
        batch.settle(None)
        if tx.woke:
            for wake in self.wakeups:
                wake()

    def _journal_rows(
        self,
        conn: sqlite3.Connection,
        batch: _Batch,
        valid: set[tuple[str, int]],
        next_seq: dict[tuple[str, int], int],
    ) -> list[tuple[str, int, str, str, bytes]]:
        """Rows of the valid leases' entries; an append that does not continue its run's
        journal is refused (its lease writes nothing more), without failing the others.

        `next_seq` receives each lease's next seq; once committed it is remembered, so a lease
        reads its journal's end from the database only on its first append (hot path).
        """
        rows: list[tuple[str, int, str, str, bytes]] = []
        for lease, entries in batch.entries:
            key = (lease.run_id, lease.epoch)
            if key not in valid or key in self._refused:
                continue
            expected = next_seq.get(key, self._next_seq.get(key))
            if expected is None:
                (expected,) = conn.execute(
                    "SELECT COALESCE(MAX(seq), -1) + 1 FROM entries WHERE run_id = ?",
                    (lease.run_id,),
                ).fetchone()
            for i, e in enumerate(entries):
                if e.seq != expected + i:
                    self._refused[key] = out_of_order(lease.run_id, e.seq, expected + i - 1)
                    break
            else:
                rows.extend((lease.run_id, e.seq, e.key, e.kind, e.data) for e in entries)
                next_seq[key] = expected + len(entries)
        return rows

    def _valid_leases(self, conn: sqlite3.Connection, batch: _Batch) -> set[tuple[str, int]]:
        """The leases of the batch's entries that hold their run as the transaction starts."""
        leases = {lease for lease, _ in batch.entries}
        leases.update(lease for lease, _ in batch.blobs)
        if not leases:
            return set()
        current: dict[str, tuple[int, str]] = {}
        if len(leases) == 1:  # the common case of one run writing: no IN list to build
            (only,) = leases
            row = conn.execute(
                "SELECT epoch, status FROM runs WHERE id = ?", (only.run_id,)
            ).fetchone()
            if row is not None:
                current[only.run_id] = (row[0], row[1])
        ids = [] if len(leases) == 1 else list({lease.run_id for lease in leases})
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for run_id, epoch, status in conn.execute(
                f"SELECT id, epoch, status FROM runs WHERE id IN ({marks})", chunk
            ):
                current[run_id] = (epoch, status)
        valid = set()
        for lease in leases:
            epoch_status = current.get(lease.run_id)
            if epoch_status == (lease.epoch, "running"):
                valid.add((lease.run_id, lease.epoch))
            else:
                self._stale.add((lease.run_id, lease.epoch))
        return valid

    # -- worker writes --------------------------------------------------------------------------

    def append(self, lease: Lease, entries: Sequence[Entry], blobs: dict[str, bytes]) -> None:
        key = (lease.run_id, lease.epoch)
        if key in self._refused:
            raise StoreError(self._refused[key])
        if key in self._stale:
            raise StaleLeaseError(lease.run_id, lease.epoch)
        batch = self._current()
        batch.entries.append((lease, entries))
        if blobs:
            batch.blobs.append((lease, dict(blobs)))

    async def commit(self, lease: Lease) -> None:
        batch = self._batch
        key = (lease.run_id, lease.epoch)
        checked = False
        if batch is not None:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            batch.waiters.append(waiter)
            await waiter
            checked = key in batch.valid
        if key in self._refused:
            raise StoreError(self._refused[key])
        if key in self._stale:
            raise StaleLeaseError(lease.run_id, lease.epoch)
        # A caller with nothing in the batch was never checked, and an op of the batch (a
        # takeover, a cancel) may have fenced the lease after its entries were written. A read
        # of one row tells; a batch of entries alone, which validated ours, needs none.
        if checked and batch is not None and not batch.ops:
            return
        if not _holds(self.conn, lease):
            self._stale.add(key)
            raise StaleLeaseError(lease.run_id, lease.epoch)

    async def finish(
        self,
        lease: Lease,
        *,
        status: Literal["completed", "failed", "cancelled"],
        result: bytes | None,
        error: bytes | None,
        now: float,
        continue_as: NewRun | None = None,
    ) -> None:
        def op(tx: _Tx) -> None:
            tx.conn.execute(
                "UPDATE runs SET status = ?, result = ?, error = ?, owner = NULL, "
                "cancel_requested = 0, due_at = NULL, updated_at = ?, continued_to = ? "
                "WHERE id = ?",
                (status, result, error, now, continue_as.id if continue_as else None, lease.run_id),
            )
            if continue_as is not None:
                _create(tx, continue_as, now)
            _wake_parent(tx, lease.run_id, now)

        await self._submit(op, lease)
        self._next_seq.pop((lease.run_id, lease.epoch), None)  # the lease ends here

    async def suspend(
        self,
        lease: Lease,
        *,
        status: Literal["waiting", "parked", "queued"],
        wait: Wait | None,
        note: str | None,
        now: float,
    ) -> None:
        def op(tx: _Tx) -> None:
            (cancel_requested,) = tx.conn.execute(
                "SELECT cancel_requested FROM runs WHERE id = ?", (lease.run_id,)
            ).fetchone()
            if cancel_requested:
                # Cancellation was asked after the worker's last renewal: it suspends without
                # knowing. The run is no longer held, so the request takes effect now.
                _cancel(tx, lease.run_id, now)
                return
            due: float | None
            if status == "queued":
                due = wait.timer if wait is not None and wait.timer is not None else now
            elif status == "parked" or wait is None:
                due = None
            elif _wait_satisfied(tx.conn, lease.run_id, wait):
                due = now
            else:
                due = wait.timer
            tx.conn.execute(
                "UPDATE runs SET status = ?, owner = NULL, note = ?, updated_at = ?, "
                "waiting = ?, due_at = ? WHERE id = ?",
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

        await self._submit(op, lease)
        self._next_seq.pop((lease.run_id, lease.epoch), None)  # the lease ends here

    async def claim(
        self, owner: str, *, now: float, limit: int, lease_seconds: float, max_recoveries: int
    ) -> list[RunRecord]:
        def op(tx: _Tx) -> list[RunRecord]:
            conn = tx.conn
            claimed: list[RunRecord] = []
            while len(claimed) < limit:
                rows = conn.execute(
                    f"SELECT {RUN_COLUMNS} FROM runs WHERE due_at <= ? ORDER BY due_at LIMIT ?",
                    (now, limit - len(claimed)),
                ).fetchall()
                died = False
                for row in rows:
                    run = _record(row)
                    if run.status == "running":
                        run.recoveries += 1
                        if run.recoveries > max_recoveries:
                            conn.execute(
                                "UPDATE runs SET status = 'dead', owner = NULL, "
                                "epoch = epoch + 1, recoveries = ?, error = ?, due_at = NULL, "
                                "updated_at = ? WHERE id = ?",
                                (run.recoveries, dead_error(run.recoveries), now, run.id),
                            )
                            _wake_parent(tx, run.id, now)
                            died = True
                            continue
                    run.status, run.owner = "running", owner
                    run.epoch += 1
                    run.attempts += 1
                    run.due_at, run.updated_at = now + lease_seconds, now
                    conn.execute(
                        "UPDATE runs SET status = 'running', owner = ?, epoch = ?, attempts = ?, "
                        "recoveries = ?, due_at = ?, updated_at = ? WHERE id = ?",
                        (owner, run.epoch, run.attempts, run.recoveries, run.due_at, now, run.id),
                    )
                    claimed.append(run)
                if not died:
                    break  # a run moved to dead leaves its slot to the next due run
            return claimed

        result: list[RunRecord] = await self._submit(op)
        return result

    async def renew(self, leases: Sequence[Lease], *, now: float, lease_seconds: float) -> Renewal:
        def op(tx: _Tx) -> Renewal:
            conn = tx.conn
            renewal = Renewal()
            for lease in leases:
                row = conn.execute(
                    "SELECT epoch, status, cancel_requested FROM runs WHERE id = ?",
                    (lease.run_id,),
                ).fetchone()
                if row is None or row[0] != lease.epoch or row[1] != "running":
                    renewal.lost.add(lease.run_id)
                    continue
                conn.execute(
                    "UPDATE runs SET due_at = ? WHERE id = ?", (now + lease_seconds, lease.run_id)
                )
                if row[2]:
                    renewal.cancel.add(lease.run_id)
            return renewal

        result: Renewal = await self._submit(op)
        return result

    # -- control plane --------------------------------------------------------------------------

    async def create_run(self, new: NewRun, *, now: float) -> tuple[RunRecord, bool]:
        result: tuple[RunRecord, bool] = await self._submit(lambda tx: _create(tx, new, now))
        return result

    async def send_signal(
        self, run_id: str, name: str, payload: bytes, signal_id: str, *, now: float
    ) -> Signal | None:
        def op(tx: _Tx) -> Signal | None:
            conn = tx.conn
            row = conn.execute(
                "SELECT status, waiting FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise RunNotFoundError(run_id)
            cursor = conn.execute(
                "INSERT OR IGNORE INTO signals (run_id, name, signal_id, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, name, signal_id, payload, now),
            )
            if cursor.rowcount == 0:
                return None
            signal = Signal(cursor.lastrowid or 0, run_id, name, signal_id, payload, now)
            if row[0] == "waiting" and name in wait_signals(row[1]):
                conn.execute("UPDATE runs SET due_at = ? WHERE id = ?", (now, run_id))
                tx.woke = True
            return signal

        result: Signal | None = await self._submit(op)
        return result

    async def request_cancel(self, run_id: str, *, now: float) -> RunRecord:
        def op(tx: _Tx) -> RunRecord:
            conn = tx.conn
            run = _get(conn, run_id)
            if run.status in TERMINAL:
                return run
            if run.status == "running" and run.due_at is not None and run.due_at > now:
                conn.execute(
                    "UPDATE runs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
                    (now, run_id),
                )
                return _get(conn, run_id)
            _cancel(tx, run_id, now)
            return _get(conn, run_id)

        result: RunRecord = await self._submit(op)
        return result

    async def control(
        self, run_id: str, entries: Sequence[tuple[str, EntryKind, bytes]], *, now: float
    ) -> RunRecord:
        def op(tx: _Tx) -> RunRecord:
            conn = tx.conn
            run = _get(conn, run_id)
            refuse_control(run, now)
            _append_unowned(conn, run_id, entries)
            conn.execute(
                "UPDATE runs SET status = 'queued', epoch = epoch + 1, owner = NULL, note = NULL, "
                f"due_at = ?, updated_at = ?, {_RETRY_DEAD} WHERE id = ?",
                (now, now, run_id),
            )
            tx.woke = True
            return _get(conn, run_id)

        result: RunRecord = await self._submit(op)
        return result

    # -- reads ----------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord | None:
        row = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        return None if row is None else _record(row)

    async def list_runs(
        self,
        *,
        statuses: Sequence[str] | None = None,
        parent_id: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        where: list[str] = []
        params: list[Any] = []
        if statuses is not None:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(statuses)
        if parent_id is not None:
            where.append("parent_id = ?")
            params.append(parent_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY created_at DESC, id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [_record(r) for r in rows]

    async def count_runs(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status")
        return dict(rows)

    async def read_journal(
        self, run_id: str, *, after_seq: int = -1, limit: int = 1000
    ) -> list[Entry]:
        rows = self.conn.execute(
            "SELECT seq, key, kind, data FROM entries WHERE run_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (run_id, after_seq, limit),
        ).fetchall()
        return [Entry(seq, key, kind, data) for seq, key, kind, data in rows]

    async def get_blob(self, digest: str) -> bytes:
        row = self.conn.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
        if row is None:
            raise StoreError(f"blob {digest} is missing from {self.path!r}")
        return bytes(row[0])

    async def signals(self, run_id: str, name: str, *, after_seq: int = 0) -> list[Signal]:
        rows = self.conn.execute(
            "SELECT seq, run_id, name, signal_id, payload, created_at FROM signals "
            "WHERE run_id = ? AND name = ? AND seq > ? ORDER BY seq",
            (run_id, name, after_seq),
        ).fetchall()
        return [Signal(*row) for row in rows]

    # -- schedules (statements in sqlite_schedules) -----------------------------------------------

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        result: ScheduleRecord = await self._submit(lambda tx: schedules.put(tx.conn, schedule))
        return result

    async def get_schedule(self, name: str) -> ScheduleRecord | None:
        return schedules.get(self.conn, name)

    async def list_schedules(self) -> list[ScheduleRecord]:
        return schedules.list_all(self.conn)

    async def remove_schedule(self, name: str) -> bool:
        result: bool = await self._submit(lambda tx: schedules.remove(tx.conn, name))
        return result

    async def pause_schedule(
        self, name: str, *, paused: bool, next_due: float | None, now: float
    ) -> ScheduleRecord:
        result: ScheduleRecord = await self._submit(
            lambda tx: schedules.pause(tx.conn, name, paused, next_due, now)
        )
        return result

    async def due_schedules(self, *, now: float, limit: int) -> list[ScheduleRecord]:
        return schedules.due(self.conn, now, limit)

    async def fire_schedule(
        self,
        schedule: ScheduleRecord,
        *,
        next_due: float,
        runs: Sequence[NewRun],
        now: float,
    ) -> list[RunRecord] | None:
        def op(tx: _Tx) -> list[RunRecord] | None:
            if not schedules.advance(tx.conn, schedule, next_due, now):
                return None
            return [_create(tx, new, now)[0] for new in runs]

        result: list[RunRecord] | None = await self._submit(op)
        return result


def _get(conn: sqlite3.Connection, run_id: str) -> RunRecord:
    row = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise RunNotFoundError(run_id)
    return _record(row)


def _create(tx: _Tx, new: NewRun, now: float) -> tuple[RunRecord, bool]:
    cursor = tx.conn.execute(
        "INSERT OR IGNORE INTO runs (id, workflow, version, input, options, status, parent_id, "
        "due_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
        (new.id, new.workflow, new.version, new.input, new.options, new.parent_id, now, now, now),
    )
    created = cursor.rowcount > 0
    tx.woke = tx.woke or created
    return _get(tx.conn, new.id), created


def _append_unowned(
    conn: sqlite3.Connection, run_id: str, entries: Sequence[tuple[str, EntryKind, bytes]]
) -> None:
    (next_seq,) = conn.execute(
        "SELECT COALESCE(MAX(seq), -1) + 1 FROM entries WHERE run_id = ?", (run_id,)
    ).fetchone()
    conn.executemany(
        "INSERT INTO entries VALUES (?, ?, ?, ?, ?)",
        [(run_id, next_seq + i, key, kind, data) for i, (key, kind, data) in enumerate(entries)],
    )


def _holds(conn: sqlite3.Connection, lease: Lease) -> bool:
    """Whether the lease still holds its run (current epoch, running)."""
    row = conn.execute("SELECT epoch, status FROM runs WHERE id = ?", (lease.run_id,)).fetchone()
    return row is not None and row[0] == lease.epoch and row[1] == "running"


def _cancel(tx: _Tx, run_id: str, now: float) -> None:
    """End a run no worker holds as cancelled, fencing whoever held it last."""
    _append_unowned(tx.conn, run_id, [("", "output", cancelled_output())])
    tx.conn.execute(
        "UPDATE runs SET status = 'cancelled', error = ?, epoch = epoch + 1, owner = NULL, "
        "cancel_requested = 0, due_at = NULL, updated_at = ? WHERE id = ?",
        (CANCELLED_ERROR, now, run_id),
    )
    _wake_parent(tx, run_id, now)


def _wake_parent(tx: _Tx, run_id: str, now: float) -> None:
    row = tx.conn.execute(
        "SELECT p.id, p.status, p.waiting FROM runs c JOIN runs p ON p.id = c.parent_id "
        "WHERE c.id = ?",
        (run_id,),
    ).fetchone()
    if row is None or row[1] != "waiting" or run_id not in wait_children(row[2]):
        return
    tx.conn.execute("UPDATE runs SET due_at = ? WHERE id = ?", (now, row[0]))
    tx.woke = True


def _wait_satisfied(conn: sqlite3.Connection, run_id: str, wait: Wait) -> bool:
    if wait.signals:
        marks = ",".join("?" * len(wait.signals))
        if conn.execute(
            f"SELECT 1 FROM signals WHERE run_id = ? AND seq > ? AND name IN ({marks}) LIMIT 1",
            (run_id, wait.signal_cursor, *wait.signals),
        ).fetchone():
            return True
    if wait.children:
        marks = ",".join("?" * len(wait.children))
        if conn.execute(
            f"SELECT 1 FROM runs WHERE id IN ({marks}) AND status IN {_TERMINAL_SQL} LIMIT 1",
            wait.children,
        ).fetchone():
            return True
    return False
