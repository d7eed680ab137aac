"""Parallel strands: gather, map and race (first completed).

Each branch runs in its own task and scope, keyed by its index in invocation order
(`gather#1/0/`, `map#2/17/`), so replay gives every branch the same keys whatever order the
branches finish in. The group's width is journaled, so a resumed run whose fan-out changed width
is parked instead of silently mixing old and new branches.

Failures are deterministic too: a gather or map waits for every branch and then raises the error
of the lowest-index failed branch. A race journals its winner and, on replay, runs only the
winner. Control flow has precedence over errors: a branch that parks or drains stops the others
from starting new steps; if any branch suspended, the group suspends (waking when any of them
could progress) and the failed branch replays its recorded failure after the resume.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from ..errors import UserError
from .journal import Divergence
from .run import ContinueAsNew, Drain, Park, RunState, Suspend
from .scope import CURRENT, Scope


def _close_all(awaitables: Sequence[Awaitable[Any]]) -> None:
    """Close coroutines that will never run (the group failed before starting them)."""
    for aw in awaitables:
        if asyncio.iscoroutine(aw):
            aw.close()


def _open_group(scope: Scope, name: str, width: int) -> tuple[str, dict[str, Any] | None]:
    """Assign the group's key and check (or record) its width. Returns (key, last decision)."""
    run = scope.run
    key, pos = scope.assign(name)
    state = run.journal.visit(scope.prefix, pos, key) if run.replaying else None
    if state is None:
        run.write(key, "group", {"pos": pos, "width": width})
        return key, None
    recorded = state.entries[0][1].get("width")
    if state.strict and recorded != width:
        raise Divergence(
            f"{key!r} had {recorded} branches when recorded and has {width} now: "
            "the fan-out changed width"
        )
    return key, state.last("decision")


Outcome = tuple[BaseException | None, Any]
CONTROL = (Park, Divergence, ContinueAsNew, Drain, asyncio.CancelledError)


class _Group:
    """Outcomes of a group of branches, counted as they finish.

    Branches report here directly instead of through a done-callback per task: for a fan-out of
    10,000 branches that saves 10,000 scheduled callbacks.
    """

    __slots__ = ("done", "finished_order", "outcomes", "remaining", "waiter")

    def __init__(self, width: int) -> None:
        self.remaining = width
        self.outcomes: list[Outcome] = [(None, None)] * width
        self.finished_order: list[int] = []
        self.waiter: asyncio.Future[None] | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if width == 0:
            self.done.set_result(None)

    def finished(self, index: int, outcome: Outcome) -> None:
        self.outcomes[index] = outcome
        self.finished_order.append(index)
        self.remaining -= 1
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        if self.remaining == 0:
            self.done.set_result(None)

    async def wait(self, tasks: Sequence[asyncio.Task[Any]]) -> list[Outcome]:
        """Every branch's outcome; if this strand is cancelled, cancel them and let them unwind."""
        try:
            await asyncio.shield(self.done)
        except asyncio.CancelledError:
            await self.cancel(tasks)
            raise
        return self.outcomes

    async def cancel(self, tasks: Sequence[asyncio.Task[Any]]) -> None:
        """Cancel the branches still running and wait until they have unwound."""
        for task in tasks:
            task.cancel()
        await asyncio.shield(self.done)


async def _branch(
    group: _Group,
    index: int,
    branch: Scope,
    fn: Callable[[Any], Awaitable[Any]] | None,
    arg: Any,
) -> None:
    """One branch: `fn(arg)` (called here, so its keys fall in the branch's scope), or `arg`."""
    branch.task = asyncio.current_task()
    try:
        outcome: Outcome = (None, await (arg if fn is None else fn(arg)))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # errors, control flow and cancellation are all outcomes
        if isinstance(exc, Park | Divergence):
            message = exc.message
            branch.run.stop = lambda: Park(message)  # siblings start no new work
        outcome = (exc, None)
    group.finished(index, outcome)


def _spawn(
    group: _Group,
    index: int,
    parent: Scope,
    prefix: str,
    fn: Callable[[Any], Awaitable[Any]] | None,
    arg: Any,
) -> asyncio.Task[None]:
    branch = parent.child(prefix, None)
    context = contextvars.copy_context()
    context.run(CURRENT.set, branch)
    return asyncio.get_running_loop().create_task(
        _branch(group, index, branch, fn, arg), context=context
    )


def settle(outcomes: list[Outcome], return_exceptions: bool) -> list[Any]:
    """Combine branch outcomes: control flow first, then the lowest-index error, then results."""
    errors = [exc for exc, _ in outcomes if exc is not None]
    for kind in CONTROL:
        for exc in errors:
            if isinstance(exc, kind):
                raise exc
    suspends = [exc for exc in errors if isinstance(exc, Suspend)]
    if suspends:
        merged = suspends[0]
        for other in suspends[1:]:
            merged = merged.merge(other)
        raise merged
    if errors and not return_exceptions:
        raise errors[0]
    return [exc if exc is not None else value for exc, value in outcomes]


async def gather(
    scope: Scope, awaitables: Sequence[Awaitable[Any]], return_exceptions: bool
) -> list[Any]:
    """Run awaitables as parallel branches; results in argument order."""
    try:
        key, _ = _open_group(scope, "gather", len(awaitables))
    except BaseException:
        _close_all(awaitables)
        raise
    group = _Group(len(awaitables))
    tasks = [_spawn(group, i, scope, f"{key}/{i}/", None, aw) for i, aw in enumerate(awaitables)]
    return settle(await group.wait(tasks), return_exceptions)


async def gather_labelled(
    scope: Scope, name: str, branches: Sequence[tuple[str, Awaitable[Any]]]
) -> list[Any]:
    """Like gather, but each branch is keyed by its label (`flow#1/plan/`), not its index.

    The labels are journaled: a resumed run whose set of labels changed is parked, naming them.
    """
    labels = [label for label, _ in branches]
    awaitables = [aw for _, aw in branches]
    try:
        run = scope.run
        key, pos = scope.assign(name)
        state = run.journal.visit(scope.prefix, pos, key) if run.replaying else None
        if state is None:
            run.write(key, "group", {"pos": pos, "width": len(labels), "labels": labels})
        elif state.strict and state.entries[0][1].get("labels") != labels:
            raise Divergence(
                f"{key!r} had the branches {state.entries[0][1].get('labels')} when recorded "
                f"and has {labels} now: its steps changed"
            )
    except BaseException:
        _close_all(awaitables)
        raise
    group = _Group(len(branches))
    tasks = [
        _spawn(group, i, scope, f"{key}/{label}/", None, aw)
        for i, (label, aw) in enumerate(branches)
    ]
    return settle(await group.wait(tasks), False)


async def map_items(
    scope: Scope,
    fn: Callable[[Any], Awaitable[Any]],
    items: Iterable[Any],
    concurrency: int | None,
    return_exceptions: bool,
) -> list[Any]:
    """Call fn on every item as a branch, at most `concurrency` at a time."""
    if concurrency is not None and concurrency < 1:
        raise UserError(f"ctx.map concurrency must be at least 1, got {concurrency}")
    values = list(items)
    key, _ = _open_group(scope, "map", len(values))
    if concurrency is None or concurrency >= len(values):
        group = _Group(len(values))
        tasks = [_spawn(group, i, scope, f"{key}/{i}/", fn, v) for i, v in enumerate(values)]
        return settle(await group.wait(tasks), return_exceptions)
    # A pool of `concurrency` workers; each item still gets its own branch scope and key prefix.
    run = scope.run
    outcomes: list[Outcome] = [(None, None)] * len(values)
    pending = iter(enumerate(values))

    async def worker() -> None:
        for i, value in pending:
            if run.stop is not None:
                outcomes[i] = (run.stop(), None)
                continue
            token = CURRENT.set(scope.child(f"{key}/{i}/", asyncio.current_task()))
            try:
                outcomes[i] = (None, await fn(value))
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                outcomes[i] = (exc, None)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            finally:
                CURRENT.reset(token)

    workers = _Group(concurrency)
    tasks = [_spawn(workers, w, scope, f"{key}/", None, worker()) for w in range(concurrency)]
    await workers.wait(tasks)
    return settle(outcomes, return_exceptions)


async def race(scope: Scope, awaitables: Sequence[Awaitable[Any]]) -> tuple[int, Any]:
    """The first branch to finish (journaled); the others are cancelled."""
    run: RunState = scope.run
    try:
        key, decided = _open_group(scope, "race", len(awaitables))
    except BaseException:
        _close_all(awaitables)
        raise
    if decided is not None:  # replay: only the recorded winner runs
        winner = int(decided["winner"])
        for i, aw in enumerate(awaitables):
            if i != winner:
                run.journal.skip_scope(f"{key}/{i}/")
                _close_all([aw])
        group = _Group(1)
        task = _spawn(group, 0, scope, f"{key}/{winner}/", None, awaitables[winner])
        return winner, settle(await group.wait([task]), False)[0]
    group = _Group(len(awaitables))
    tasks = [_spawn(group, i, scope, f"{key}/{i}/", None, aw) for i, aw in enumerate(awaitables)]
    checked = 0
    try:
        while group.remaining:
            if checked == len(group.finished_order):
                group.waiter = asyncio.get_running_loop().create_future()
                await group.waiter
            new, checked = group.finished_order[checked:], len(group.finished_order)
            # A branch that suspended has not finished: it waits for something durable.
            ended = [i for i in new if not isinstance(group.outcomes[i][0], Suspend)]
            if not ended:
                continue
            control = [i for i in ended if isinstance(group.outcomes[i][0], CONTROL)]
            if control:
                await group.cancel(tasks)
                raise group.outcomes[control[0]][0]  # type: ignore[misc]
            winner = min(ended)
            run.write(key, "decision", {"winner": winner})
            await group.cancel(tasks)
            return winner, settle([group.outcomes[winner]], False)[0]
    except asyncio.CancelledError:
        await group.cancel(tasks)
        raise
    settle(group.outcomes, False)  # every branch suspended: suspend the race
    raise AssertionError("unreachable: settle raises when every branch suspended")
