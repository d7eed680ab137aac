"""Errors raised by overnight.

```
OvernightError
├── UserError                  misuse: fix the code or the call, then try again
│   ├── SerializationError     a value cannot be journaled (or restored)
│   ├── WorkflowImportError    a workflow reference does not import
│   ├── RunNotFoundError       no run with that id
│   └── ScheduleNotFoundError  no schedule with that name
├── StoreError                 the store cannot be used as asked
│   ├── StoreFormatError       the file is not an overnight store, or is from a newer version
│   └── StaleLeaseError        a write from a worker that no longer owns the run (fencing)
├── StepFailed                 raised inside a workflow when a step gave up (retries exhausted)
├── ChildFailed                raised inside a workflow when a child run did not complete
└── RunError                   raised to a caller waiting for a run that did not complete
    ├── RunFailedError
    ├── RunCancelledError
    ├── RunParkedError         the run needs a person (in-doubt step or changed code)
    └── RunDeadError
RunCancelled (BaseException)   delivered into a cancelled run; `except Exception` cannot catch it
```
Time limits and budgets inside a run surface as `RunFailedError` whose `error_type` is
`RunTimeout` or `BudgetExceeded` (both `OvernightError`s raised inside the run).
"""

from __future__ import annotations

import asyncio
from typing import Any


class OvernightError(Exception):
    """Base class of every error overnight raises on purpose."""


class UserError(OvernightError):
    """Misuse of the API or bad input: the message says what to change."""


class SerializationError(UserError):
    """A value cannot be encoded into the journal, or a journaled value cannot be restored."""


class WorkflowImportError(UserError):
    """A `module:attr` workflow reference does not import."""


class RunNotFoundError(UserError):
    """No run with the given id exists in the store."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"no run with id {run_id!r} in this store; list runs with `Engine.runs()` "
            "or check that you opened the right store"
        )
        self.run_id = run_id


class ScheduleNotFoundError(UserError):
    """No schedule with the given name exists in the store."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no schedule named {name!r} in this store; list schedules with "
            "`overnight schedule list` (or `Engine.list_schedules()`)"
        )
        self.name = name


class StoreError(OvernightError):
    """The store cannot be used as asked."""


class StoreFormatError(StoreError):
    """The store file is not an overnight store, or was written by a newer overnight."""


class StaleLeaseError(StoreError):
    """A write came from a worker whose lease on the run was taken over (its epoch is stale)."""

    def __init__(self, run_id: str, epoch: int) -> None:
        super().__init__(
            f"run {run_id!r}: this worker's lease (epoch {epoch}) was taken over by another "
            "worker; its writes are rejected so the run cannot be corrupted"
        )
        self.run_id = run_id
        self.epoch = epoch


class RunTimeout(OvernightError):
    """A run or step went past its time limit."""


class BudgetExceeded(OvernightError):
    """A run went past its step budget."""


class StepFailed(OvernightError):
    """A step gave up: its last attempt failed and no retry is left.

    Raised identically on first execution and on replay, so workflow code that catches it
    takes the same path both times.
    """

    def __init__(self, key: str, error_type: str, message: str, attempts: int) -> None:
        super().__init__(
            f"step {key!r} failed after {attempts} attempt(s): {error_type}: {message}"
        )
        self.key = key
        self.error_type = error_type
        self.message = message
        self.attempts = attempts


class ChildFailed(OvernightError):
    """A child run ended without completing (failed, cancelled or dead)."""

    def __init__(self, run_id: str, status: str, error_type: str, message: str) -> None:
        super().__init__(f"child run {run_id!r} ended {status}: {error_type}: {message}")
        self.run_id = run_id
        self.status = status
        self.error_type = error_type
        self.message = message


class RunError(OvernightError):
    """A run did not complete; `run` is its record at that moment (the partial run)."""

    def __init__(self, message: str, run: Any) -> None:
        super().__init__(message)
        self.run = run


class RunFailedError(RunError):
    """The run ended with an error."""

    def __init__(self, run: Any, error_type: str, message: str) -> None:
        super().__init__(f"run {run.id!r} failed: {error_type}: {message}", run)
        self.error_type = error_type
        self.message = message


class RunCancelledError(RunError):
    """The run was cancelled."""


class RunParkedError(RunError):
    """The run is parked until a person resolves it (see the run's `note`)."""


class RunDeadError(RunError):
    """The run crashed its workers too many times and was moved aside."""


class RunCancelled(asyncio.CancelledError):
    """Delivered into a workflow that is being cancelled.

    Derives from `BaseException` (through `asyncio.CancelledError`), so a workflow's
    `except Exception` cannot swallow it.
    """
