"""Structural keys: where in the workflow's call structure a durable call happens.

A scope is one sequential strand of a workflow: the workflow body itself, one branch of a
gather/map/race, or a named `ctx.scope`. Each durable call takes the next position in its scope
and the key `<scope prefix><name>#<n>` (the n-th call of that name in the scope). Keys and
positions are assigned when the call is made, never when it finishes, so parallel branches get
the same keys on every replay.

A scope belongs to the task that runs it. A durable call made from another task (for example a
coroutine the user handed to `asyncio.create_task`) would number calls by scheduling order, so it
is refused with a message pointing at `ctx.gather`.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import TYPE_CHECKING, NamedTuple

from ..errors import UserError

if TYPE_CHECKING:
    from .run import RunState


class StepInfo(NamedTuple):
    """What a running step knows about itself (see `overnight.current_step`)."""

    run_id: str
    """The run the step belongs to."""
    key: str
    """The step's structural key, e.g. `report/fetch#2`."""
    attempt: int
    """1 for the first execution, then one more per retry or re-execution after a crash."""
    idempotency_key: str
    """Stable across attempts and crashes: `<run id>/<key>`. Hand it to the service you call."""


class Scope:
    """A sequential strand of durable calls (see the module docstring)."""

    __slots__ = ("counters", "pos", "prefix", "run", "task")

    def __init__(self, run: RunState, prefix: str, task: asyncio.Task[object] | None) -> None:
        self.run = run
        self.prefix = prefix
        self.task = task
        self.counters: dict[str, int] = {}
        self.pos = 0

    def assign(self, name: str) -> tuple[str, int]:
        """The key and position of the next call named `name` in this scope."""
        if asyncio.current_task() is not self.task:
            raise UserError(
                f"durable call {name!r} made from a task the workflow did not start: calls in "
                "concurrent tasks would be keyed by scheduling order. Run concurrent work "
                "with ctx.gather(...) or ctx.map(...), not asyncio.gather/create_task"
            )
        n = self.counters.get(name, 0) + 1
        self.counters[name] = n
        pos = self.pos
        self.pos = pos + 1
        return f"{self.prefix}{name}#{n}", pos

    def child(self, prefix: str, task: asyncio.Task[object] | None) -> Scope:
        """A nested scope with its own numbering."""
        return Scope(self.run, prefix, task)


StepMark = tuple[str, str, int]
"""(run id, step key, attempt): set while a step's body runs (StepInfo is built on demand)."""

CURRENT: ContextVar[Scope | StepMark | None] = ContextVar("overnight_current", default=None)
"""In workflow code: the current Scope. In a step body: the step's mark."""


def current_scope(what: str) -> Scope:
    """The current scope, or a clear error when called outside a workflow."""
    scope = CURRENT.get()
    if type(scope) is not Scope:
        where = "inside a step" if scope is not None else "outside a workflow"
        raise UserError(f"{what} was called {where}; it can only be used in workflow code")
    return scope


def validate_name(name: str, what: str) -> str:
    """Names become part of keys: keep them free of the separators."""
    if not name or "/" in name or "#" in name:
        raise UserError(f"{what} name {name!r} must be non-empty and contain no '/' or '#'")
    return name
