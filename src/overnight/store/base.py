"""The Store protocol: everything the engine keeps durable goes through these calls.

A store holds runs, each run's append-only journal, signals sent to runs, and content-addressed
blobs. Workers own runs through leases: `claim` hands a run to one worker with a fresh `epoch`
(a fencing token), and every write that worker makes carries its `Lease`; a write whose epoch is no
longer the run's current one is rejected with `StaleLeaseError`, so a paused or partitioned worker
can never corrupt a run another worker took over.

Writes are grouped: `append` and the `finish`/`suspend` transitions are buffered, and `commit`
returns once everything the caller buffered so far is durable. One store commit serves every run
that buffered entries since the last one (group commit), which is what makes many concurrent runs
cheap. The engine calls `commit` at each durability barrier.

Schedules (cron) are rows the control plane puts, pauses and removes; workers read the due ones
and `fire_schedule` each: in one transaction it moves the schedule's `next_due` on and creates the
runs of the ticks it fired, if and only if no one else fired it first (compare-and-set on the
record read), so a tick starts one run however many workers race. What ticks to fire is computed
outside the store, by `overnight.schedule`, the same for every backend.

`due_at` drives scheduling: a run is claimable when `due_at <= now`. Every transition sets it:
queued -> now, waiting -> its earliest timer (or None: only a signal or a child can wake it),
running -> its lease expiry (so an expired lease makes the run claimable: takeover), terminal and
parked -> None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

RunStatus = Literal[
    "queued", "running", "waiting", "parked", "completed", "failed", "cancelled", "dead"
]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled", "dead"})

EntryKind = Literal[
    "intent",  # a non-pure step is about to run its body (committed before the body starts)
    "done",  # a step completed; carries its encoded result
    "failed",  # a step attempt failed; carries the error and when to retry (or that it gave up)
    "decision",  # a choice the engine or ctx made: now/random/uuid, a race's winner, a patch marker
    "signal",  # a signal consumed by a wait
    "timer",  # a durable timer set, or fired
    "group",  # a gather/map/race: its width, so a changed width is detected on resume
    "child",  # a child run started, or its outcome observed
    "control",  # a person's instruction: resolve a parked step, accept changed code
    "output",  # the run's outcome
]


class Entry(NamedTuple):
    """One journal entry. `data` is the entry's JSON object, already encoded (immutable bytes).

    A NamedTuple, not a dataclass: one is created per step, and tuples are the cheapest
    immutable records Python has.
    """

    seq: int
    """Position in the run's journal, from 0, gapless."""
    key: str
    """Structural key of the call, e.g. `report/fetch#2`; empty for run-level entries."""
    kind: EntryKind
    """What happened."""
    data: bytes
    """The entry's fields as JSON (see `overnight._engine.entries`)."""


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of ownership that every worker write carries."""

    run_id: str
    owner: str
    epoch: int


@dataclass(slots=True)
class RunRecord:
    """A run as the store knows it."""

    id: str
    """Unique id, chosen by the caller of `start` or generated."""
    workflow: str
    """Workflow reference, `module:attr`."""
    version: str
    """Code version of the workflow when the run started."""
    input: bytes
    """Encoded input."""
    status: RunStatus
    """Lifecycle state."""
    created_at: float
    """Unix time the run was created."""
    updated_at: float
    """Unix time of the last transition."""
    options: bytes = b"{}"
    """Encoded run options (timeout, max_steps)."""
    parent_id: str | None = None
    """The run that started this one as a child, if any."""
    due_at: float | None = None
    """When the run becomes claimable (see the module docstring)."""
    owner: str | None = None
    """Worker holding the lease, while running."""
    epoch: int = 0
    """Fencing token: incremented at every claim."""
    attempts: int = 0
    """How many times a worker claimed the run."""
    recoveries: int = 0
    """How many times the run was taken over after its worker's lease expired."""
    waiting: bytes | None = None
    """What a waiting run waits for: JSON with timer, signals and children."""
    cancel_requested: bool = False
    """Set when cancellation was asked while a worker held the run."""
    result: bytes | None = None
    """Encoded output of a completed run."""
    error: bytes | None = None
    """JSON `{"type", "message"}` of a failed, cancelled or dead run."""
    note: str | None = None
    """Why the run is parked, or the last problem a worker had with it."""
    continued_to: str | None = None
    """Id of the run this one continued as (continue-as-new)."""


@dataclass(frozen=True, slots=True)
class NewRun:
    """What `create_run` needs."""

    id: str
    workflow: str
    version: str
    input: bytes
    options: bytes = b"{}"
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    """A signal as stored: queued per run and name in arrival order (`seq`)."""

    seq: int
    run_id: str
    name: str
    signal_id: str
    payload: bytes
    created_at: float


@dataclass(frozen=True, slots=True)
class Wait:
    """What a suspending run waits for; the store wakes it when any of these happens."""

    timer: float | None = None
    """Unix time of the earliest durable timer (or run deadline)."""
    signals: tuple[str, ...] = ()
    """Signal names any of which wakes the run."""
    signal_cursor: int = 0
    """Highest signal seq the run has looked at: a later matching signal wakes it at once."""
    children: tuple[str, ...] = ()
    """Child run ids whose end wakes the run."""


@dataclass(slots=True)
class Renewal:
    """What `renew` learned about the caller's leases."""

    lost: set[str] = field(default_factory=set)
    """Runs whose lease this worker no longer holds: stop working on them."""
    cancel: set[str] = field(default_factory=set)
    """Runs whose cancellation was requested."""


CatchUp = Literal["skip", "one", "all"]
"""What a schedule does with ticks missed while no worker ran (see `overnight.schedule`)."""


@dataclass(slots=True)
class ScheduleRecord:
    """A schedule as the store knows it: start `workflow` at each tick of `cron`."""

    name: str
    """Unique name; the runs it starts are `sched:<name>:<tick, ISO 8601 UTC>`."""
    cron: str
    """Cron expression (5 fields, or 6 with seconds last), read in `timezone`."""
    timezone: str
    """IANA time zone the ticks are computed in, e.g. `Europe/Paris`."""
    workflow: str
    """Workflow reference, `module:attr` (or `yaml:path`)."""
    input: bytes
    """Encoded input given to every run."""
    catch_up: CatchUp
    """Ticks missed while no worker ran: start none (`skip`), the latest (`one`), or `all`."""
    paused: bool
    """A paused schedule starts nothing; resuming it goes on from the next tick."""
    next_due: float | None
    """Unix time of the next tick to fire (None while paused)."""
    created_at: float
    """Unix time the schedule was first put."""
    updated_at: float
    """Unix time of the last change (put, pause, resume, fire)."""


class Store(Protocol):
    """Durable state of runs. Memory, SQLite (and later PostgreSQL) implement it."""

    url: str

    async def open(self) -> None:
        """Connect, check the format, apply migrations."""

    async def close(self) -> None:
        """Commit what is buffered and release resources."""

    # -- control plane: usable from any process, no lease needed ---------------------------

    async def create_run(self, new: NewRun, *, now: float) -> tuple[RunRecord, bool]:
        """Create a queued run; if the id exists return the existing run. True if created."""

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run with that id, or None."""

    async def list_runs(
        self,
        *,
        statuses: Sequence[RunStatus] | None = None,
        parent_id: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Runs, newest first, optionally filtered by status or parent."""

    async def count_runs(self) -> dict[str, int]:
        """How many runs are in each status."""

    async def send_signal(
        self, run_id: str, name: str, payload: bytes, signal_id: str, *, now: float
    ) -> Signal | None:
        """Queue a signal (durable when this returns) and wake the run if it waits for it.

        Returns None when a signal with that id was already sent to that run.
        """

    async def request_cancel(self, run_id: str, *, now: float) -> RunRecord:
        """Cancel a run: at once if no worker holds it, else flag it for its worker."""

    async def control(
        self, run_id: str, entries: Sequence[tuple[str, EntryKind, bytes]], *, now: float
    ) -> RunRecord:
        """Append control entries (key, kind, data) to a run no worker holds, and queue it.

        Refuses an ended run, except a `dead` one: that is retried, its recoveries reset.
        """

    # -- worker plane -----------------------------------------------------------------------

    async def claim(
        self, owner: str, *, now: float, limit: int, lease_seconds: float, max_recoveries: int
    ) -> list[RunRecord]:
        """Lease up to `limit` due runs to `owner` (each with a new epoch).

        A run taken over after an expired lease counts a recovery; one past `max_recoveries`
        becomes `dead` instead of being handed out.
        """

    async def renew(self, leases: Sequence[Lease], *, now: float, lease_seconds: float) -> Renewal:
        """Extend leases; report the ones lost and the ones asked to cancel."""

    def append(self, lease: Lease, entries: Sequence[Entry], blobs: dict[str, bytes]) -> None:
        """Buffer journal entries (and the blobs they reference) for the next commit.

        May raise `StaleLeaseError` at once if the store already knows the lease is stale.
        Entries must continue the run's journal (seqs next in line); an append that does not is
        refused with `StoreError`, at once or at its commit, and nothing more from that lease is
        accepted (its owner is confused; the run is taken over when the lease expires).
        """

    async def commit(self, lease: Lease) -> None:
        """Return once everything buffered so far is durable; raise if this lease is stale
        (or an append of it was refused), whether or not it buffered anything."""

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
        """End the run (after its buffered entries, in the same commit) and wake its parent."""

    async def suspend(
        self,
        lease: Lease,
        *,
        status: Literal["waiting", "parked", "queued"],
        wait: Wait | None,
        note: str | None,
        now: float,
    ) -> None:
        """Release the lease: wait for `wait`, park for a person, or requeue (drain).

        If cancellation was requested since the worker's last renewal, the run is cancelled
        instead (as `request_cancel` does for a run no worker holds), so the request is not lost.
        """

    async def read_journal(
        self, run_id: str, *, after_seq: int = -1, limit: int = 1000
    ) -> list[Entry]:
        """Up to `limit` entries with seq > after_seq, in order (the engine reads in pages)."""

    async def get_blob(self, digest: str) -> bytes:
        """A blob by its content hash."""

    async def signals(self, run_id: str, name: str, *, after_seq: int = 0) -> list[Signal]:
        """Signals of one name sent to a run with seq > after_seq, oldest first."""

    # -- schedules ----------------------------------------------------------------------------

    async def put_schedule(self, schedule: ScheduleRecord) -> ScheduleRecord:
        """Create a schedule, or replace the one of that name (keeping its `created_at`)."""

    async def get_schedule(self, name: str) -> ScheduleRecord | None:
        """The schedule with that name, or None."""

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""

    async def remove_schedule(self, name: str) -> bool:
        """Delete a schedule (its runs stay). False if there was none."""

    async def pause_schedule(
        self, name: str, *, paused: bool, next_due: float | None, now: float
    ) -> ScheduleRecord:
        """Set a schedule's paused flag and its `next_due`; ScheduleNotFoundError if none."""

    async def due_schedules(self, *, now: float, limit: int) -> list[ScheduleRecord]:
        """Up to `limit` schedules with `next_due <= now`, earliest first (none paused)."""

    async def fire_schedule(
        self,
        schedule: ScheduleRecord,
        *,
        next_due: float,
        runs: Sequence[NewRun],
        now: float,
    ) -> list[RunRecord] | None:
        """Fire ticks of a schedule as read by `due_schedules`: in one transaction, set its
        `next_due` and create `runs` (each idempotently, as `create_run`); return their records.

        None, writing nothing, if the schedule changed since it was read (another worker fired
        it, or it was paused, replaced or removed): `next_due` and `updated_at` are compared.
        """
