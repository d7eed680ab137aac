"""Per-run execution state: the journal being replayed, the writer appending to it, stop flags.

Control flow that must not be swallowed by a workflow's `except Exception` travels as
BaseExceptions: `Suspend` (nothing can progress in this process: release the worker until a
timer, signal or child wakes the run), `Park` (a person must decide), `Drain` (the worker is
shutting down: requeue) and `ContinueAsNew`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from ..errors import BudgetExceeded
from ..store.base import Entry, EntryKind, Lease, Store, Wait
from . import codec
from .journal import JournalIndex

BLOB_THRESHOLD = 2048
"""Encoded values larger than this are stored once as content-addressed blobs."""


class Suspend(BaseException):
    """Every live strand of the run is waiting for something durable."""

    def __init__(self, wait: Wait) -> None:
        super().__init__("suspended")
        self.wait = wait

    def merge(self, other: Suspend) -> Suspend:
        """One suspension that wakes when either would."""
        a, b = self.wait, other.wait
        timers = [t for t in (a.timer, b.timer) if t is not None]
        return Suspend(
            Wait(
                timer=min(timers) if timers else None,
                signals=tuple(dict.fromkeys(a.signals + b.signals)),
                signal_cursor=max(a.signal_cursor, b.signal_cursor),
                children=tuple(dict.fromkeys(a.children + b.children)),
            )
        )


class Park(BaseException):
    """The run needs a person; `message` says what and how to continue."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Drain(BaseException):
    """The worker is shutting down: finish or checkpoint, then requeue the run."""


class ContinueAsNew(BaseException):
    """End this run and start a fresh one with `input` (keeps journals short)."""

    def __init__(self, input: Any) -> None:
        super().__init__("continue as new")
        self.input = input


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Limits of one run, fixed when it starts."""

    timeout: float | None = None
    """Seconds from the run's creation after which it fails with RunTimeout."""
    max_steps: int | None = None
    """Most step calls (executed or replayed) the run may make."""
    scheduled_at: float | None = None
    """The tick (Unix time) of the schedule that started the run, if one did."""

    def encode(self) -> bytes:
        fields: dict[str, object] = {"timeout": self.timeout, "max_steps": self.max_steps}
        if self.scheduled_at is not None:  # only then: unscheduled runs keep their bytes
            fields["scheduled_at"] = self.scheduled_at
        return orjson.dumps(fields)

    @classmethod
    def decode(cls, data: bytes) -> RunOptions:
        return replace(cls(), **orjson.loads(data))


class RunState:
    """Everything one execution of one run needs; shared by all its scopes."""

    def __init__(
        self,
        *,
        run_id: str,
        store: Store,
        lease: Lease,
        journal: JournalIndex,
        options: RunOptions,
        created_at: float,
        strict: bool,
        inline_wait: float,
    ) -> None:
        self.run_id = run_id
        self.store = store
        self.lease = lease
        self.journal = journal
        self.options = options
        self.deadline = created_at + options.timeout if options.timeout is not None else None
        self.strict = strict
        self.inline_wait = inline_wait
        self.next_seq = journal.next_seq
        self.steps = 0
        self.max_steps = options.max_steps
        self.replaying = bool(journal)
        """Whether there is a journal to replay (False for a fresh run: skip every lookup)."""
        self.signal_cursor = 0
        self.stop: Callable[[], BaseException] | None = None
        self._blobs: dict[str, bytes] = {}
        self.patches: dict[str, bool] = {}

    # -- writing ----------------------------------------------------------------------------

    def write(self, key: str, kind: EntryKind, fields: dict[str, Any]) -> None:
        """Append an entry (buffered; `commit` makes it durable)."""
        entry = Entry(self.next_seq, key, kind, orjson.dumps(fields))
        self.next_seq += 1
        blobs = self._blobs
        if blobs:
            self._blobs = {}
        self.store.append(self.lease, (entry,), blobs)

    def value_field(self, raw: bytes) -> Any:
        """An encoded value as an entry field: inline, or a reference to a blob."""
        if len(raw) <= BLOB_THRESHOLD:
            return orjson.Fragment(raw)
        digest = hashlib.sha256(raw).hexdigest()
        self._blobs[digest] = raw
        return {"$blob": digest}

    def put_blob(self, raw: bytes) -> str:
        """Store bytes once, by content (written with the next entry); return their digest."""
        digest = hashlib.sha256(raw).hexdigest()
        self._blobs[digest] = raw
        return digest

    async def value(self, field: Any) -> Any:
        """Decode a value field written by `value_field`."""
        if type(field) is dict and "$blob" in field:
            return codec.loads(await self.store.get_blob(field["$blob"]))
        return codec.decode(field)

    async def commit(self) -> None:
        """Durability barrier: return once everything written so far is committed."""
        await self.store.commit(self.lease)

    # -- limits -----------------------------------------------------------------------------

    def over_budget(self) -> None:
        """The run made more step calls than `max_steps`: fail it (even if the error is caught)."""
        message = f"the run made more than {self.max_steps} step calls (max_steps={self.max_steps})"
        self.stop = lambda: BudgetExceeded(message)
        raise BudgetExceeded(message)

    def check_stop(self) -> None:
        """Raise the pending stop (drain, park, cancel, budget) before starting new work."""
        if self.stop is not None:
            raise self.stop()
