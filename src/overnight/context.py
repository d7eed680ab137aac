"""`Context`: what a workflow uses instead of the clock, randomness, sleep and asyncio.gather.

Everything that could differ between the first execution and a replay goes through the context
and is journaled: the time, random numbers, ids, how long to sleep, which signal arrived, which
branch finished first. Replaying a run therefore takes exactly the same path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random as _random
import uuid as _uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ._engine import branches, waits
from ._engine.decisions import decide
from ._engine.run import ContinueAsNew, RunOptions, RunState
from ._engine.scope import CURRENT, current_scope, validate_name
from ._engine.waits import ChildHandle

if TYPE_CHECKING:
    from .workflow import Workflow

T = TypeVar("T")


class Context:
    """Handed to every workflow as its first argument. Safe to share across branches."""

    __slots__ = ("_run",)

    def __init__(self, run: RunState) -> None:
        self._run = run

    @property
    def run_id(self) -> str:
        """The id of the running run."""
        return self._run.run_id

    @property
    def scheduled_at(self) -> dt.datetime | None:
        """The tick (UTC) of the schedule that started this run; None if no schedule did.

        Fixed when the run was created, so replays see the same value without journaling it.
        """
        tick = self._run.options.scheduled_at
        return None if tick is None else dt.datetime.fromtimestamp(tick, dt.UTC)

    @property
    def is_replaying(self) -> bool:
        """True while the code is re-reading journaled history rather than doing new work."""
        return self._run.journal.unvisited > 0

    # -- journaled values -------------------------------------------------------------------

    def _decide(self, name: str, produce: Callable[[], Any]) -> Any:
        return decide(current_scope(f"ctx.{name}()"), name, produce)

    def now(self) -> dt.datetime:
        """The current UTC time, journaled: a replay sees the same instant."""
        value: dt.datetime = self._decide("now", lambda: dt.datetime.now(dt.UTC))
        return value

    def random(self) -> float:
        """A random float in [0, 1), journaled."""
        value: float = self._decide("random", _random.random)
        return value

    def uuid(self) -> _uuid.UUID:
        """A random UUID (version 4), journaled."""
        value: _uuid.UUID = self._decide("uuid", _uuid.uuid4)
        return value

    def patched(self, name: str) -> bool:
        """True for runs that reach this point running the new code, False for older runs.

        Wrap changed code in `if ctx.patched("my-fix"): new() else: old()` so runs started
        before the change replay the old path. The marker takes no position, so adding the
        check does not itself change the run's structure. A run gets one answer per name.
        """
        scope = current_scope("ctx.patched()")
        validate_name(name, "patch")
        run = scope.run
        decided = run.patches.get(name)
        if decided is not None:
            return decided  # one answer per run, however often the check is made
        key = f"patched:{name}"
        if run.journal and key in run.journal.records:
            decided = True
        elif run.journal.unvisited > 0:
            decided = False  # replaying history the old code wrote
        else:
            run.write(key, "decision", {"value": True})
            decided = True
        run.patches[name] = decided
        return decided

    # -- durable waits ----------------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        """Sleep durably: a run sleeping for days holds no worker and survives restarts."""
        await waits.sleep(current_scope("ctx.sleep()"), seconds)

    async def wait_signal(self, name: str, *, timeout: float | None = None) -> Any:
        """Wait for the oldest unconsumed signal `name` sent to this run; return its payload.

        Signals sent before the wait are kept and consumed in arrival order. With `timeout`
        (seconds), raise TimeoutError if none arrives in time; which came first is journaled.
        """
        return await waits.wait_signal(current_scope("ctx.wait_signal()"), name, timeout)

    # -- parallelism ------------------------------------------------------------------------

    async def gather(
        self, *awaitables: Awaitable[Any], return_exceptions: bool = False
    ) -> list[Any]:
        """Run awaitables in parallel branches keyed by position; results in argument order.

        Waits for every branch; raises the error of the lowest-index failed branch (or returns
        it in place with `return_exceptions=True`).
        """
        return await branches.gather(current_scope("ctx.gather()"), awaitables, return_exceptions)

    async def map(
        self,
        fn: Callable[[Any], Awaitable[T]],
        items: Iterable[Any],
        *,
        concurrency: int | None = None,
        return_exceptions: bool = False,
    ) -> list[T]:
        """Call `fn(item)` for every item in parallel branches, at most `concurrency` at once."""
        return await branches.map_items(
            current_scope("ctx.map()"), fn, items, concurrency, return_exceptions
        )

    async def first_completed(self, *awaitables: Awaitable[Any]) -> tuple[int, Any]:
        """Race branches; return (index, result) of the first to finish, cancel the rest.

        The winner is journaled: a replay runs only the winner.
        """
        return await branches.race(current_scope("ctx.first_completed()"), awaitables)

    # -- structure --------------------------------------------------------------------------

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        """Group the calls made inside under `name#n/` in their keys (e.g. one agent's turns)."""
        parent = current_scope("ctx.scope()")
        key, pos = parent.assign(validate_name(name, "scope"))
        if parent.run.journal:
            parent.run.journal.visit(parent.prefix, pos, key)
        token = CURRENT.set(parent.child(key + "/", parent.task))
        try:
            yield
        finally:
            CURRENT.reset(token)

    async def start_child(
        self,
        workflow: Workflow[Any, Any],
        input: Any = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
        max_steps: int | None = None,
    ) -> ChildHandle:
        """Start a child run (once, even across crashes); `await handle.result()` waits for it."""
        options = RunOptions(timeout=timeout, max_steps=max_steps).encode()
        return await waits.start_child(
            current_scope("ctx.start_child()"), workflow, input, run_id, options
        )

    async def child(
        self, workflow: Workflow[Any, T], input: Any = None, *, run_id: str | None = None
    ) -> T:
        """Run a child workflow to its end and return its output (raises ChildFailed)."""
        handle = await self.start_child(workflow, input, run_id=run_id)
        result: T = await handle.result()
        return result

    def continue_as_new(self, input: Any) -> NoReturn:
        """End this run and go on as a fresh run with `input` (keeps long loops' journals short)."""
        raise ContinueAsNew(input)
