"""Durable waits: timers, signals and child runs.

A wait that cannot finish soon raises `Suspend`: the run releases its worker and its memory, and
the store wakes it when the timer is due, a matching signal arrives or the child ends. The run is
then replayed from its journal up to the wait, which finds what it waited for. Only waits shorter
than the engine's `inline_wait` are slept in memory.

Every outcome a wait observes is journaled before the workflow acts on it: which signal it took,
that a timer fired, that a timeout won over a signal, how a child ended. Replay reads those
entries and never re-races.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from ..errors import ChildFailed, RunNotFoundError
from ..store.base import TERMINAL, NewRun, Signal, Store, Wait
from . import codec
from .crash import crash_point
from .run import RunState, Suspend
from .scope import Scope, validate_name


async def wait_until(run: RunState, due: float) -> None:
    """Wait until a wall-clock time: in memory if soon, else suspend the run until then."""
    while True:
        remaining = due - time.time()
        if remaining <= 0:
            return
        if remaining > run.inline_wait:
            raise Suspend(Wait(timer=due))
        await asyncio.sleep(remaining)


async def sleep(scope: Scope, seconds: float) -> None:
    """Durable sleep: survives restarts; the deadline is fixed when first reached."""
    run = scope.run
    key, pos = scope.assign("sleep")
    state = run.journal.visit(scope.prefix, pos, key) if run.replaying else None
    if state is not None:
        last = state.last("timer")
        if last is not None and last.get("fired"):
            return
        due = float(state.entries[0][1]["due"])
    else:
        due = time.time() + seconds
        run.write(key, "timer", {"pos": pos, "due": due})
    await wait_until(run, due)
    run.write(key, "timer", {"fired": True})
    crash_point("after_timer_fire")


async def next_signal(run: RunState, name: str) -> Signal | None:
    """The oldest signal of that name this run has not consumed yet."""
    consumed = run.journal.signals_consumed
    for signal in await run.store.signals(run.run_id, name):
        run.signal_cursor = max(run.signal_cursor, signal.seq)
        if signal.seq not in consumed:
            consumed.add(signal.seq)
            return signal
    return None


async def wait_signal(scope: Scope, name: str, timeout: float | None) -> Any:
    """Consume the oldest unconsumed signal `name`; with a timeout, raise TimeoutError after it."""
    run = scope.run
    validate_name(name, "signal")
    key, pos = scope.assign(f"signal:{name}")
    state = run.journal.visit(scope.prefix, pos, key) if run.replaying else None
    due: float | None = None
    header: dict[str, Any] = {"pos": pos}
    if state is not None:
        header = {}
        taken = state.last("signal")
        if taken is not None:
            return await run.value(taken["value"])
        if state.last("decision") is not None:
            raise TimeoutError(f"no signal {name!r} arrived within {timeout} s")
        timer = state.last("timer")
        due = None if timer is None else float(timer["due"])
    if timeout is not None and due is None:
        due = time.time() + timeout
        run.write(key, "timer", {**header, "due": due})
        header = {}
    while True:
        run.check_stop()
        signal = await next_signal(run, name)
        if signal is not None:
            fields = {"name": name, "sseq": signal.seq, "value": run.value_field(signal.payload)}
            run.write(key, "signal", {**header, **fields})
            crash_point("before_signal_ack")
            return codec.loads(signal.payload)
        now = time.time()
        if due is not None and now >= due:
            run.write(key, "decision", {**header, "timeout": True})
            raise TimeoutError(f"no signal {name!r} arrived within {timeout} s")
        if due is not None and due - now <= run.inline_wait:
            await asyncio.sleep(due - now)
            continue
        raise Suspend(Wait(timer=due, signals=(name,), signal_cursor=run.signal_cursor))


class ChildHandle:
    """A child run started from a workflow; `await handle.result()` waits for it durably."""

    def __init__(self, run: RunState, key: str, run_id: str) -> None:
        self._run = run
        self._key = key
        self.run_id = run_id
        """The child's run id (deterministic: derived from the parent's id and the call's key)."""

    async def result(self) -> Any:
        """The child's output; raises ChildFailed if it did not complete."""
        run = self._run
        state = run.journal.records.get(self._key) if run.replaying else None
        ended = state.last("child") if state is not None else None
        if ended is not None and "status" in ended:
            value = await run.value(ended["out"]) if "out" in ended else None
            return _child_outcome(self.run_id, ended, value)
        record = await run.store.get_run(self.run_id)
        while record is not None and record.continued_to is not None:
            record = await run.store.get_run(record.continued_to)  # follow continue-as-new
        if record is None:
            raise ChildFailed(self.run_id, "missing", "RunNotFound", "the child run is gone")
        if record.status not in TERMINAL:
            raise Suspend(Wait(children=(record.id,)))
        ended = {"status": record.status}
        if record.result is not None:
            ended["out"] = run.value_field(record.result)
        if record.error is not None:
            ended["error"] = orjson.loads(record.error)
        run.write(self._key, "child", ended)
        value = codec.loads(record.result) if record.result is not None else None
        return _child_outcome(self.run_id, ended, value)


def _child_outcome(run_id: str, ended: dict[str, Any], value: Any) -> Any:
    if ended["status"] == "completed":
        return value
    error = ended.get("error") or {"type": "?", "message": ""}
    raise ChildFailed(run_id, ended["status"], error["type"], error["message"])


async def start_child(
    scope: Scope, workflow: Any, input: Any, run_id: str | None, options: bytes
) -> ChildHandle:
    """Start a child run once (its id is derived from the call's key, so a replay finds it)."""
    run = scope.run
    key, pos = scope.assign(f"child:{workflow.name}")
    state = run.journal.visit(scope.prefix, pos, key) if run.replaying else None
    if state is not None:
        return ChildHandle(run, key, state.entries[0][1]["run_id"])
    child_id = run_id or f"{run.run_id}/{key}"
    run.write(key, "child", {"pos": pos, "run_id": child_id})
    new = NewRun(
        id=child_id,
        workflow=workflow.ref,
        version=workflow.version,
        input=codec.dumps(input),
        options=options,
        parent_id=run.run_id,
    )
    await run.store.create_run(new, now=time.time())
    return ChildHandle(run, key, child_id)


async def cancel_children(store: Store, run_id: str, *, now: float) -> list[str]:
    """Cancel the unfinished child runs `run_id` started (read from its journal); the ids asked.

    A child no worker holds ends cancelled at once, and its own children are cancelled here; a
    child a worker holds is flagged, and its worker does the same for its children when it ends
    it, within one heartbeat.
    """
    asked: list[str] = []
    after = -1
    while True:
        page = await store.read_journal(run_id, after_seq=after, limit=1000)
        for entry in page:
            if entry.kind != "child":
                continue
            child = orjson.loads(entry.data)["run_id"]
            try:
                before = await store.get_run(child)
                if before is None or before.status in TERMINAL:
                    continue
                record = await store.request_cancel(child, now=now)
            except RunNotFoundError:
                continue
            asked.append(child)
            if record.status == "cancelled":
                asked += await cancel_children(store, child, now=now)
        if len(page) < 1000:
            return asked
        after = page[-1].seq
