"""In-process store: for tests, demos and runs that need no durability.

It behaves like the durable stores: it keeps only serialised bytes and frozen records, hands out
copies, fences stale leases and schedules by `due_at`, so code that works here works on SQLite.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Literal

from ..errors import RunNotFoundError, ScheduleNotFoundError, StaleLeaseError, StoreError
from .base import (
    TERMINAL,
    Entry,
    EntryKind,
    Lease,
    NewRun,
    Renewal,
    RunRecord,
    RunStatus,
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

_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(RunRecord)))


def _copy(run: RunRecord) -> RunRecord:
    """A copy of a record (fields are immutable values, so a shallow copy is a full one)."""
    return RunRecord(*_FIELDS(run))


class MemoryStore:
    """A Store that lives in this process's memory."""

    def __init__(self) -> None:
        self.url = "memory://"
        self._runs: dict[str, RunRecord] = {}
        self._journals: dict[str, list[Entry]] = {}
        self._signals: dict[str, list[Signal]] = {}
        self._signal_ids: set[tuple[str, str]] = set()
        self._blobs: dict[str, bytes] = {}
        self._refused: dict[tuple[str, int], str] = {}
        """Leases whose append did not follow the journal: every later write of theirs fails."""
        self._due: list[tuple[float, int, str]] = []
        self._tiebreak = itertools.count()
        self._signal_seq = itertools.count(1)
        self._schedules: dict[str, ScheduleRecord] = {}
        self.wakeups: list[Callable[[], None]] = []
        """Called when a run becomes due now, so an in-process worker need not poll."""

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- helpers ----------------------------------------------------------------------------

    def _set_due(self, run: RunRecord, due_at: float | None, now: float | None = None) -> None:
        run.due_at = due_at
        if due_at is not None:
            heapq.heappush(self._due, (due_at, next(self._tiebreak), run.id))
            if now is not None and due_at <= now:
                for wake in self.wakeups:
                    wake()

    def _held(self, lease: Lease) -> RunRecord:
        refused = self._refused.get((lease.run_id, lease.epoch))
        if refused is not None:
            raise StoreError(refused)
        run = self._runs.get(lease.run_id)
        if run is None or run.epoch != lease.epoch or run.status != "running":
            raise StaleLeaseError(lease.run_id, lease.epoch)
        return run

    def _get(self, run_id: str) -> RunRecord:
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFoundError(run_id)
        return run

    # -- control plane ----------------------------------------------------------------------

    async def create_run(self, new: NewRun, *, now: float) -> tuple[RunRecord, bool]:
        existing = self._runs.get(new.id)
        if existing is not None:
            return _copy(existing), False
        run = RunRecord(
            id=new.id,
            workflow=new.workflow,
            version=new.version,
            input=_own(new.input),
            status="queued",
            created_at=now,
            updated_at=now,
            options=_own(new.options),
            parent_id=new.parent_id,
        )
        self._runs[run.id] = run
        self._journals[run.id] = []
        self._set_due(run, now, now)
        return _copy(run), True

    async def get_run(self, run_id: str) -> RunRecord | None:
        run = self._runs.get(run_id)
        return None if run is None else _copy(run)

    async def list_runs(
        self,
        *,
        statuses: Sequence[RunStatus] | None = None,
        parent_id: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        runs = [
            r
            for r in self._runs.values()
            if (statuses is None or r.status in statuses)
            and (parent_id is None or r.parent_id == parent_id)
        ]
        runs.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return [_copy(r) for r in runs[:limit]]

    async def count_runs(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for run in self._runs.values():
            counts[run.status] = counts.get(run.status, 0) + 1
        return counts

    async def send_signal(
        self, run_id: str, name: str, payload: bytes, signal_id: str, *, now: float
    ) -> Signal | None:
        run = self._get(run_id)
        if (run_id, signal_id) in self._signal_ids:
            return None
        signal = Signal(next(self._signal_seq), run_id, name, signal_id, payload, now)
        self._signal_ids.add((run_id, signal_id))
        self._signals.setdefault(run_id, []).append(signal)
        if run.status == "waiting" and name in wait_signals(run.waiting):
            self._set_due(run, now, now)
        return signal

    async def request_cancel(self, run_id: str, *, now: float) -> RunRecord:
        run = self._get(run_id)
        if run.status in TERMINAL:
            return _copy(run)
        if run.status == "running" and run.due_at is not None and run.due_at > now:
            run.cancel_requested = True
            run.updated_at = now
        else:
            self._cancel(run, now)
        return _copy(run)

    def _cancel(self, run: RunRecord, now: float) -> None:
        """End a run no worker holds as cancelled, fencing whoever held it last."""
        journal = self._journals[run.id]
        journal.append(Entry(len(journal), "", "output", cancelled_output()))
        run.status = "cancelled"
        run.error = CANCELLED_ERROR
        run.epoch += 1
        run.owner = None
        run.cancel_requested = False
        run.updated_at = now
        self._set_due(run, None)
        self._wake_parent(run, now)

    async def control(
        self, run_id: str, entries: Sequence[tuple[str, EntryKind, bytes]], *, now: float
    ) -> RunRecord:
        run = self._get(run_id)
        refuse_control(run, now)
        journal = self._journals[run_id]
        for key, kind, data in entries:
            journal.append(Entry(len(journal), key, kind, data))
        if run.status == "dead":  # retried by hand: a fresh allowance of takeovers
            run.recoveries = 0
            run.error = None
        run.status = "queued"
        run.epoch += 1
        run.owner = None
        run.note = None
        run.updated_at = now
        self._set_due(run, now, now)
        return _copy(run)

    # -- worker plane -----------------------------------------------------------------------

    async def claim(
        self, owner: str, *, now: float, limit: int, lease_seconds: float, max_recoveries: int
    ) -> list[RunRecord]:
        claimed: list[RunRecord] = []
        while self._due and len(claimed) < limit and self._due[0][0] <= now:
            due_at, _, run_id = heapq.heappop(self._due)
            run = self._runs[run_id]
            if run.due_at != due_at:
                continue  # superseded by a later transition
            if run.status == "running":
                run.recoveries += 1
                if run.recoveries > max_recoveries:
                    run.status = "dead"
                    run.owner = None
                    run.epoch += 1
                    run.error = dead_error(run.recoveries)
                    run.updated_at = now
                    self._set_due(run, None)
                    self._wake_parent(run, now)
                    continue
            run.status = "running"
            run.owner = owner
            run.epoch += 1
            run.attempts += 1
            run.updated_at = now
            self._set_due(run, now + lease_seconds)
            claimed.append(_copy(run))
        return claimed

    async def renew(self, leases: Sequence[Lease], *, now: float, lease_seconds: float) -> Renewal:
        renewal = Renewal()
        for lease in leases:
            run = self._runs.get(lease.run_id)
            if run is None or run.epoch != lease.epoch or run.status != "running":
                renewal.lost.add(lease.run_id)
                continue
            self._set_due(run, now + lease_seconds)
            if run.cancel_requested:
                renewal.cancel.add(lease.run_id)
        return renewal

    def append(self, lease: Lease, entries: Sequence[Entry], blobs: dict[str, bytes]) -> None:
        self._held(lease)
        journal = self._journals[lease.run_id]
        for i, entry in enumerate(entries):
            if entry.seq != len(journal) + i:
                message = out_of_order(lease.run_id, entry.seq, len(journal) + i - 1)
                self._refused[(lease.run_id, lease.epoch)] = message
                raise StoreError(message)
        journal.extend(entry._replace(data=_own(entry.data)) for entry in entries)
        if blobs:
            self._blobs.update((digest, _own(raw)) for digest, raw in blobs.items())

    async def commit(self, lease: Lease) -> None:
        self._held(lease)

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
        run = self._held(lease)
        run.status = status
        run.result = None if result is None else _own(result)
        run.error = error
        run.owner = None
        run.cancel_requested = False
        run.updated_at = now
        self._set_due(run, None)
        if continue_as is not None:
            run.continued_to = continue_as.id
            await self.create_run(continue_as, now=now)
        self._wake_parent(run, now)

    async def suspend(
        self,
        lease: Lease,
        *,
        status: Literal["waiting", "parked", "queued"],
        wait: Wait | None,
        note: str | None,
        now: float,
    ) -> None:
        run = self._held(lease)
        if run.cancel_requested:
            # Cancellation was asked after the worker's last renewal: it suspends without
            # knowing. The run is no longer held, so the request takes effect now.
            self._cancel(run, now)
            return
        run.status = status
        run.owner = None
        run.note = note
        run.updated_at = now
        run.waiting = encode_wait(wait) if status == "waiting" else None
        due: float | None
        if status == "queued":
            due = wait.timer if wait is not None and wait.timer is not None else now
        elif status == "parked" or wait is None:
            due = None
        elif self._wait_satisfied(run.id, wait):
            due = now
        else:
            due = wait.timer
        self._set_due(run, due, now)

    def _wait_satisfied(self, run_id: str, wait: Wait) -> bool:
        for signal in self._signals.get(run_id, ()):
            if signal.seq > wait.signal_cursor and signal.name in wait.signals:
                return True
        return any(
            child in self._runs and self._runs[child].status in TERMINAL for child in wait.children
        )

    def _wake_parent(self, run: RunRecord, now: float) -> None:
        parent = self._runs.get(run.parent_id) if run.parent_id else None
        if (
            parent is not None
            and parent.status == "waiting"
            and run.id in wait_children(parent.waiting)
        ):
            self._set_due(parent, now, now)

    async def read_journal(
        self, run_id: str, *, after_seq: int = -1, limit: int = 1000
    ) -> list[Entry]:
        journal = self._journals.get(run_id, [])
        start = max(after_seq + 1, 0)
        return journal[start : start + max(limit, 0)]

    async def get_blob(self, digest: str) -> bytes:
        try:
            return self._blobs[digest]
        except KeyError:
            raise StoreError(f"blob {digest} is missing from the store") from None

    async def signals(self, run_id: str, name: str, *, after_seq: int = 0) -> list[Signal]:
        return [s for s in self._signals.get(run_id, ()) if s.name == name and s.seq > after_seq]

    # -- schedules ----------------------------------------------------------------------------

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        stored = dataclasses.replace(schedule)
        existing = self._schedules.get(schedule.name)
        if existing is not None:
            stored.created_at = existing.created_at
        self._schedules[schedule.name] = stored
        return dataclasses.replace(stored)

    async def get_schedule(self, name: str) -> ScheduleRecord | None:
        found = self._schedules.get(name)
        return None if found is None else dataclasses.replace(found)

    async def list_schedules(self) -> list[ScheduleRecord]:
        return [dataclasses.replace(s) for _, s in sorted(self._schedules.items())]

    async def remove_schedule(self, name: str) -> bool:
        return self._schedules.pop(name, None) is not None

    async def pause_schedule(
        self, name: str, *, paused: bool, next_due: float | None, now: float
    ) -> ScheduleRecord:
        found = self._schedules.get(name)
        if found is None:
            raise ScheduleNotFoundError(name)
        found.paused, found.next_due, found.updated_at = paused, next_due, now
        return dataclasses.replace(found)

    async def due_schedules(self, *, now: float, limit: int) -> list[ScheduleRecord]:
        due = [
            s
            for s in self._schedules.values()
            if not s.paused and s.next_due is not None and s.next_due <= now
        ]
        due.sort(key=lambda s: (s.next_due, s.name))
        return [dataclasses.replace(s) for s in due[: max(limit, 0)]]

    async def fire_schedule(
        self,
        schedule: ScheduleRecord,
        *,
        next_due: float,
        runs: Sequence[NewRun],
        now: float,
    ) -> list[RunRecord] | None:
        found = self._schedules.get(schedule.name)
        if (
            found is None
            or found.paused
            or (found.next_due, found.updated_at) != (schedule.next_due, schedule.updated_at)
        ):
            return None
        found.next_due, found.updated_at = next_due, now
        return [(await self.create_run(new, now=now))[0] for new in runs]


def _own(data: bytes) -> bytes:
    """A copy of exactly `data`'s size, to keep.

    orjson's `dumps` returns bytes objects that hold a 4 KB allocation however short their
    content; kept as they are, a journal of short entries would cost 4 KB per entry.
    """
    return bytes(memoryview(data))
