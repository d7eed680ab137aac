"""PostgreSQL store: many workers on many machines share one database.

Writes are grouped as in the SQLite store: journal entries and run transitions are buffered, and
one committer task writes everything buffered since its last transaction in one transaction
(group commit), while the next batch fills up. Every write is fenced inside that transaction: the
rows of the runs it writes to are locked (`FOR UPDATE`, in id order) and their epoch checked, so a
worker whose lease was taken over writes nothing. An append that does not continue its run's
journal is refused for that lease alone. Reads go to the connection pool and see committed data.

Workers claim due runs with `FOR UPDATE SKIP LOCKED` ordered by `due_at`: concurrent claims never
wait for each other nor hand out a run twice. A transaction that makes a run due now sends a
`NOTIFY`; every store listens (see `postgres_listen`) and calls its `wakeups` callbacks, and the
worker's polling is the fallback when a notification is lost. The URL: see `postgres_config`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

from ..errors import StaleLeaseError, StoreError, UserError

try:
    import psycopg
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool
except ImportError as exc:  # tested in a subprocess that cannot import psycopg
    raise UserError(
        f"the PostgreSQL store needs psycopg 3 and psycopg-pool ({exc}); install them with: "
        'pip install "overnight[postgres]"'
    ) from None

from .._engine.crash import crash_point
from . import postgres_ops as ops
from . import postgres_schedules as schedules
from .base import Entry, EntryKind, Lease, NewRun, Renewal, RunRecord, ScheduleRecord, Signal, Wait
from .postgres_batch import Attempt, Batch, Create, Key, Op, write
from .postgres_config import parse_url
from .postgres_listen import Listener, channel_for
from .postgres_schema import migrate

log = logging.getLogger("overnight.store.postgres")

_ATTEMPTS = 3
"""Tries of a transaction that failed before COMMIT (deadlock, connection lost): nothing of it was
committed, so trying again is safe. A failure during COMMIT leaves its outcome unknown: no retry."""


class PostgresStore:
    """A Store in a PostgreSQL schema (see the module docstring)."""

    def __init__(self, url: str, *, listen_retry_seconds: float = 5.0) -> None:
        self.url = url
        self.config = parse_url(url)
        self.schema = self.config.schema
        self.where = self.config.where
        """Where the store is, for messages: never the password."""
        self.listen_retry_seconds = listen_retry_seconds
        """How long the wake-up listener waits before reconnecting after its connection died."""
        self.channel = channel_for(self.schema)
        self.commits = 0
        """Transactions committed by this store (group commit makes it far below writes)."""
        self.retries = 0
        """Transactions tried again after failing before COMMIT (a deadlock, a lost connection)."""
        self.wakeups: list[Callable[[], None]] = []
        """Called when a run becomes due now (here, or in another process: LISTEN/NOTIFY)."""
        self.migrated = 0
        """How many migrations `open` applied (0 when another process had applied them)."""
        self._token = uuid.uuid4().hex
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] | None = None
        self._listener: Listener | None = None
        self._batch: Batch | None = None
        self._inflight: Batch | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._stale: set[Key] = set()
        self._refused: dict[Key, str] = {}
        """Leases whose append did not follow the journal: every later write of theirs fails."""
        self._next_seq: dict[Key, int] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def listener(self) -> Listener | None:
        """The wake-up listener (None when `listen=false` or the store is closed)."""
        return self._listener

    async def open(self) -> None:
        if self._pool is not None:
            return
        conn: psycopg.AsyncConnection[TupleRow] | None = await self._connect()
        pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] | None = None
        listener: Listener | None = None
        try:
            assert conn is not None
            self.migrated = await migrate(conn, self.schema, self.where)
            pool = AsyncConnectionPool(
                self.config.conninfo,
                kwargs=self.config.connect_kwargs,
                min_size=self.config.pool_min,
                max_size=self.config.pool_max,
                open=False,
                name=f"overnight {self.schema}",
            )
            await pool.open(wait=True, timeout=30)
            if self.config.listen:
                listener = Listener(
                    self.config.conninfo,
                    {k: v for k, v in self.config.connect_kwargs.items() if k != "autocommit"},
                    self.channel,
                    self._token,
                    self._wake,
                    self.listen_retry_seconds,
                )
                # The migration's connection becomes the listener's: it owns it from here (and
                # closes it if LISTEN fails).
                owned, conn = conn, None
                await listener.start(owned)
            else:
                await conn.close()
        except BaseException as exc:
            if conn is not None:
                await conn.close()
            if pool is not None:
                await pool.close()
            if isinstance(exc, psycopg.Error):
                raise StoreError(
                    f"PostgreSQL store ({self.where}, schema {self.schema!r}) cannot open: "
                    f"{str(exc).strip()}"
                ) from None
            raise
        self._pool = pool
        self._listener = listener

    async def _connect(self) -> psycopg.AsyncConnection[TupleRow]:
        try:
            return await psycopg.AsyncConnection.connect(
                self.config.conninfo, **self.config.connect_kwargs
            )
        except psycopg.OperationalError as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL ({self.where}): {str(exc).strip()}"
            ) from None

    async def close(self) -> None:
        pool = self._pool
        if pool is None:
            return
        while self._flusher is not None:  # everything buffered is committed (or failed) first
            await asyncio.shield(self._flusher)
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        self._pool = None
        await pool.close()

    @property
    def pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]:
        if self._pool is None:
            raise StoreError(f"the PostgreSQL store ({self.where}) is not open; call open() first")
        return self._pool

    def _wake(self) -> None:
        for wake in self.wakeups:
            wake()

    # -- the committer --------------------------------------------------------------------------

    def _current(self) -> Batch:
        batch = self._batch
        if batch is None:
            batch = self._batch = Batch()
            if self._flusher is None:
                # Starts at the next loop turn: writes made until then share its transaction.
                self._flusher = asyncio.get_running_loop().create_task(self._flush_all())
        return batch

    def _submit(
        self,
        op: Op,
        lease: Lease | None = None,
        *,
        locks: Sequence[str] = (),
        ends: Sequence[str] = (),
    ) -> asyncio.Future[Any]:
        """Queue an op for the next transaction. `locks`: the runs it writes to besides its
        lease's; `ends`: the runs it may end (their parents may be woken). The batch locks all
        of these first, in one go (see `postgres_batch.write`)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        batch = self._current()
        batch.ops.append((lease, op, future))
        batch.locks.update(locks)
        batch.parents.update(ends)
        return future

    async def _flush_all(self) -> None:
        """Commit batches one after another until nothing is buffered."""
        try:
            while self._batch is not None:
                batch, self._batch = self._batch, None
                self._inflight = batch
                await self._flush(batch)
        finally:
            self._inflight = None
            self._flusher = None

    async def _flush(self, batch: Batch) -> None:
        attempt = Attempt(self._refused)
        woke = False
        failure: BaseException | None = None
        for number in range(1, _ATTEMPTS + 1):
            attempt = Attempt(self._refused)
            committing = False
            try:
                async with self.pool.connection() as conn:
                    tx = ops.Tx(conn)
                    async with conn.transaction():
                        await write(tx, batch, attempt, self._next_seq)
                        if tx.woke:
                            # Delivered to the listeners when, and only if, this commits.
                            await conn.execute(
                                "SELECT pg_notify(%s, %s)", (self.channel, self._token)
                            )
                        crash_point("in_group_commit")
                        committing = True
                    woke = tx.woke
                failure = None
                break
            except psycopg.OperationalError as exc:
                failure = exc
                if committing or number == _ATTEMPTS:
                    break
                log.info("PostgreSQL transaction failed before COMMIT (%s); trying again", exc)
                self.retries += 1
                if (exc.sqlstate or "").startswith("40"):  # deadlock, serialization failure
                    # Only locks taken after the batch's first statement can still deadlock
                    # (a run dying in a claim wakes its parent): back off a little, or both
                    # sides collide again.
                    await asyncio.sleep(random.uniform(0.0, 0.02 * number))
                else:
                    await self._check_pool()  # a connection the server closed
            except Exception as exc:
                failure = exc
                break
        if failure is not None:
            self._failed(batch, failure)
            return
        self.commits += 1
        self._next_seq.update(attempt.next_seq)
        self._stale.update(attempt.stale)
        self._refused.update(attempt.refused)
        batch.valid = attempt.valid
        crash_point("after_commit")
        for (_, _, future), (result, error) in zip(batch.ops, attempt.results, strict=True):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(None)
        if woke:
            self._wake()

    def _failed(self, batch: Batch, exc: BaseException) -> None:
        """Tell everyone waiting on a batch that failed; its writers' leases write no more."""
        error = StoreError(f"PostgreSQL store ({self.where}): commit failed: {exc}")
        for lease, _ in batch.entries:
            self._stale.add((lease.run_id, lease.epoch))
        for _, _, future in batch.ops:
            if not future.done():
                future.set_exception(error)
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_exception(error)

    # -- worker writes --------------------------------------------------------------------------

    def append(self, lease: Lease, entries: Sequence[Entry], blobs: dict[str, bytes]) -> None:
        key = (lease.run_id, lease.epoch)
        if key in self._refused:
            raise StoreError(self._refused[key])
        if key in self._stale:
            raise StaleLeaseError(lease.run_id, lease.epoch)
        for e in entries:
            if "\x00" in e.key:
                raise UserError(f"journal key {e.key!r} contains a NUL character")
        batch = self._current()
        batch.entries.append((lease, entries))
        if blobs:
            batch.blobs.append((lease, dict(blobs)))

    async def commit(self, lease: Lease) -> None:
        # The pending batch commits after the one in flight: waiting for the last is enough.
        batch = self._batch or self._inflight
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
        rows = await self._fetch("SELECT epoch, status FROM runs WHERE id = %s", (lease.run_id,))
        if not rows or tuple(rows[0]) != (lease.epoch, "running"):
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
        if continue_as is not None:
            _check_new(continue_as)
        await self._submit(
            lambda tx: ops.finish(tx, lease, status, result, error, now, continue_as),
            lease,
            ends=[lease.run_id],
        )
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
        if note is not None:
            note = note.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
        await self._submit(
            lambda tx: ops.suspend(tx, lease, status, wait, note, now),
            lease,
            ends=[lease.run_id],  # cancelled instead, if cancellation was requested
        )
        self._next_seq.pop((lease.run_id, lease.epoch), None)  # the lease ends here

    async def claim(
        self, owner: str, *, now: float, limit: int, lease_seconds: float, max_recoveries: int
    ) -> list[RunRecord]:
        if limit <= 0:
            return []
        result: list[RunRecord] = await self._submit(
            lambda tx: ops.claim(tx, owner, now, limit, lease_seconds, max_recoveries)
        )
        return result

    async def renew(self, leases: Sequence[Lease], *, now: float, lease_seconds: float) -> Renewal:
        leases = list(leases)
        result: Renewal = await self._submit(
            lambda tx: ops.renew(tx, leases, now, lease_seconds),
            locks=[lease.run_id for lease in leases],
        )
        return result

    # -- control plane --------------------------------------------------------------------------

    async def create_run(self, new: NewRun, *, now: float) -> tuple[RunRecord, bool]:
        _check_new(new)
        result: tuple[RunRecord, bool] = await self._submit(Create(new, now))
        return result

    async def send_signal(
        self, run_id: str, name: str, payload: bytes, signal_id: str, *, now: float
    ) -> Signal | None:
        _check_text(run_id=run_id, name=name, signal_id=signal_id)
        result: Signal | None = await self._submit(
            lambda tx: ops.send_signal(tx, run_id, name, payload, signal_id, now),
            locks=[run_id],
        )
        return result

    async def request_cancel(self, run_id: str, *, now: float) -> RunRecord:
        _check_text(run_id=run_id)
        result: RunRecord = await self._submit(
            lambda tx: ops.request_cancel(tx, run_id, now), locks=[run_id], ends=[run_id]
        )
        return result

    async def control(
        self, run_id: str, entries: Sequence[tuple[str, EntryKind, bytes]], *, now: float
    ) -> RunRecord:
        _check_text(run_id=run_id)
        for key, _, _ in entries:
            _check_text(key=key)
        entries = list(entries)
        result: RunRecord = await self._submit(
            lambda tx: ops.control(tx, run_id, entries, now), locks=[run_id]
        )
        return result

    # -- reads ----------------------------------------------------------------------------------

    async def _fetch(self, query: str, params: Sequence[Any]) -> list[TupleRow]:
        """Rows of a read; a connection the server closed is replaced and the read tried again."""
        for number in range(1, _ATTEMPTS + 1):
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(query, params)
                    return await cur.fetchall()
            except psycopg.OperationalError as exc:
                if number == _ATTEMPTS:
                    raise StoreError(
                        f"PostgreSQL store ({self.where}): read failed: {exc}"
                    ) from None
                await self._check_pool()
        raise AssertionError("unreachable")

    async def _check_pool(self) -> None:
        """Replace the pool's connections the server closed (a restart, pg_terminate_backend)."""
        try:
            await self.pool.check()
        except Exception as exc:  # the next try reports what is wrong
            log.info("checking the PostgreSQL connection pool failed: %s", exc)

    async def get_run(self, run_id: str) -> RunRecord | None:
        if "\x00" in run_id:
            return None
        rows = await self._fetch(f"SELECT {ops.RUN_COLUMNS} FROM runs WHERE id = %s", (run_id,))
        return ops.record(rows[0]) if rows else None

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
            where.append("status = ANY(%s)")
            params.append(list(statuses))
        if parent_id is not None:
            where.append("parent_id = %s")
            params.append(parent_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._fetch(
            f"SELECT {ops.RUN_COLUMNS} FROM runs {clause} "
            "ORDER BY created_at DESC, id DESC LIMIT %s",
            (*params, max(limit, 0)),
        )
        return [ops.record(r) for r in rows]

    async def count_runs(self) -> dict[str, int]:
        rows = await self._fetch("SELECT status, COUNT(*) FROM runs GROUP BY status", ())
        return {status: int(count) for status, count in rows}

    async def read_journal(
        self, run_id: str, *, after_seq: int = -1, limit: int = 1000
    ) -> list[Entry]:
        rows = await self._fetch(
            "SELECT seq, key, kind, data FROM entries WHERE run_id = %s AND seq > %s "
            "ORDER BY seq LIMIT %s",
            (run_id, after_seq, max(limit, 0)),
        )
        return [Entry(seq, key, kind, data) for seq, key, kind, data in rows]

    async def get_blob(self, digest: str) -> bytes:
        rows = await self._fetch("SELECT data FROM blobs WHERE digest = %s", (digest,))
        if not rows:
            raise StoreError(f"blob {digest} is missing from the PostgreSQL store ({self.where})")
        return bytes(rows[0][0])

    async def signals(self, run_id: str, name: str, *, after_seq: int = 0) -> list[Signal]:
        rows = await self._fetch(
            "SELECT seq, run_id, name, signal_id, payload, created_at FROM signals "
            "WHERE run_id = %s AND name = %s AND seq > %s ORDER BY seq",
            (run_id, name, after_seq),
        )
        return [Signal(*row) for row in rows]

    # -- schedules (statements in postgres_schedules) -------------------------------------------

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        _check_text(
            name=schedule.name,
            cron=schedule.cron,
            timezone=schedule.timezone,
            workflow=schedule.workflow,
        )
        result: ScheduleRecord = await self._submit(lambda tx: schedules.put(tx, schedule))
        return result

    async def get_schedule(self, name: str) -> ScheduleRecord | None:
        if "\x00" in name:
            return None
        rows = await self._fetch(f"{schedules.SELECT} WHERE name = %s", (name,))
        return schedules.record(rows[0]) if rows else None

    async def list_schedules(self) -> list[ScheduleRecord]:
        rows = await self._fetch(f"{schedules.SELECT} ORDER BY name", ())
        return [schedules.record(r) for r in rows]

    async def remove_schedule(self, name: str) -> bool:
        _check_text(name=name)
        result: bool = await self._submit(lambda tx: schedules.remove(tx, name))
        return result

    async def pause_schedule(
        self, name: str, *, paused: bool, next_due: float | None, now: float
    ) -> ScheduleRecord:
        _check_text(name=name)
        result: ScheduleRecord = await self._submit(
            lambda tx: schedules.pause(tx, name, paused, next_due, now)
        )
        return result

    async def due_schedules(self, *, now: float, limit: int) -> list[ScheduleRecord]:
        rows = await self._fetch(
            f"{schedules.SELECT} WHERE next_due <= %s AND NOT paused "
            "ORDER BY next_due, name LIMIT %s",
            (now, max(limit, 0)),
        )
        return [schedules.record(r) for r in rows]

    async def fire_schedule(
        self,
        schedule: ScheduleRecord,
        *,
        next_due: float,
        runs: Sequence[NewRun],
        now: float,
    ) -> list[RunRecord] | None:
        for new in runs:
            _check_new(new)
        runs = list(runs)
        result: list[RunRecord] | None = await self._submit(
            lambda tx: schedules.fire(tx, schedule, next_due, runs, now)
        )
        return result


def _check_text(**fields: str | None) -> None:
    """PostgreSQL text cannot hold NUL: refuse it before it can fail a shared transaction."""
    for name, value in fields.items():
        if value is not None and "\x00" in value:
            raise UserError(f"{name.replace('_', ' ')} {value!r} contains a NUL character")


def _check_new(new: NewRun) -> None:
    _check_text(run_id=new.id, workflow=new.workflow, version=new.version, parent_id=new.parent_id)
