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
    state = run.journal.visit(scope.prefix, pos, key) if run.journal else None
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


async def _branch(branch: Scope, awaitable: Awaitable[Any]) -> Any:
    branch.task = asyncio.current_task()
    try:
        return await awaitable
    except (Park, Divergence) as exc:
        message = exc.message
        branch.run.stop = lambda: Park(message)
        raise


def _spawn(parent: Scope, prefix: str, awaitable: Awaitable[Any]) -> asyncio.Task[Any]:
    branch = parent.child(prefix, None)
    context = contextvars.copy_context()
    context.run(CURRENT.set, branch)
    return asyncio.get_running_loop().create_task(_branch(branch, awaitable), context=context)


async def _wait_all(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for every task; if this strand is cancelled, cancel them and let them unwind."""
    if not tasks:
        return
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        raise


def _outcomes(tasks: Sequence[asyncio.Future[Any]]) -> list[tuple[BaseException | None, Any]]:
    out: list[tuple[BaseException | None, Any]] = []
    for task in tasks:
        if task.cancelled():
            out.append((asyncio.CancelledError(), None))
        else:
            exc = task.exception()
            out.append((exc, None if exc is not None else task.result()))
    return out


def settle(outcomes: list[tuple[BaseException | None, Any]], return_exceptions: bool) -> list[Any]:
    """Combine branch outcomes: control flow first, then the lowest-index error, then results."""
    errors = [exc for exc, _ in outcomes if exc is not None]
    for kind in (Park, Divergence, ContinueAsNew, Drain, asyncio.CancelledError):
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
    tasks = [_spawn(scope, f"{key}/{i}/", aw) for i, aw in enumerate(awaitables)]
    await _wait_all(tasks)
    return settle(_outcomes(tasks), return_exceptions)


async def map_items(
    scope: Scope,
    fn: Callable[[Any], Awaitable[Any]],
    items: Iterable[Any],
    concurrency: int | None,
    return_exceptions: bool,
) -> list[Any]:
    """Call fn on every item as a branch, at most `concurrency` at a time."""
    values = list(items)
    key, _ = _open_group(scope, "map", len(values))
    run = scope.run
    if concurrency is None or concurrency >= len(values):
        tasks = [_spawn(scope, f"{key}/{i}/", _call(fn, v)) for i, v in enumerate(values)]
        await _wait_all(tasks)
        return settle(_outcomes(tasks), return_exceptions)
    if concurrency < 1:
        from ..errors import UserError

        raise UserError(f"ctx.map concurrency must be at least 1, got {concurrency}")
    outcomes: list[tuple[BaseException | None, Any]] = [(None, None)] * len(values)
    pending = iter(enumerate(values))

    async def worker() -> None:
        for i, value in pending:
            branch = scope.child(f"{key}/{i}/", asyncio.current_task())
            token = CURRENT.set(branch)
            try:
                if run.stop is not None:
                    outcomes[i] = (run.stop(), None)
                    continue
                outcomes[i] = (None, await _branch(branch, fn(value)))
            except (Exception, Suspend, Park, Divergence, Drain, ContinueAsNew) as exc:
                outcomes[i] = (exc, None)
            finally:
                CURRENT.reset(token)

    workers = [_spawn(scope, f"{key}/", worker()) for _ in range(concurrency)]
    await _wait_all(workers)
    for exc, _ in _outcomes(workers):
        if exc is not None:
            raise exc
    return settle(outcomes, return_exceptions)


async def _call(fn: Callable[[Any], Awaitable[Any]], value: Any) -> Any:
    return await fn(value)


async def race(scope: Scope, awaitables: Sequence[Awaitable[Any]]) -> tuple[int, Any]:
    """The first branch to finish (journaled); the others are cancelled."""
    run: RunState = scope.run
    try:
        key, decided = _open_group(scope, "race", len(awaitables))
    except BaseException:
        _close_all(awaitables)
        raise
    if decided is not None:
        winner = int(decided["winner"])
        for i, aw in enumerate(awaitables):
            if i != winner:
                run.journal.skip_scope(f"{key}/{i}/")
                _close_all([aw])
        task = _spawn(scope, f"{key}/{winner}/", awaitables[winner])
        await _wait_all([task])
        return winner, task.result()
    tasks = [_spawn(scope, f"{key}/{i}/", aw) for i, aw in enumerate(awaitables)]
    pending: set[asyncio.Task[Any]] = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finished = [t for t in done if t.cancelled() or not isinstance(t.exception(), Suspend)]
            if not finished:
                continue
            control = [
                t
                for t in finished
                if not t.cancelled()
                and isinstance(t.exception(), Park | Divergence | Drain | ContinueAsNew)
            ]
            if control:
                raise control[0].exception()  # type: ignore[misc]
            winner = min(tasks.index(t) for t in finished)
            run.write(key, "decision", {"winner": winner})
            await _cancel(pending)
            return winner, tasks[winner].result()
    except asyncio.CancelledError:
        await _cancel(pending)
        raise
    settle(_outcomes(tasks), False)  # every branch suspended: suspend the race
    raise AssertionError("unreachable")


async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
