"""`Engine`: start runs, watch them, steer them, and (optionally) work on them.

Every call here is a thin, named operation on the store, so the CLI and the HTTP API wrap the
same calls: `start`, `result`, `signal`, `cancel`, `resume`, `resolve_step`, `accept_changes`,
`get_run`, `list_runs`, `journal`, the schedule calls (`add_schedule`, `list_schedules`,
`pause_schedule`, `resume_schedule`, `remove_schedule`), and `serve` (the worker loop, draining
on SIGTERM).

An engine opened with `worker=True` (the default) also executes runs in the background; one
opened with `worker=False` only steers runs that workers elsewhere execute.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal as signals
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

import orjson
import pydantic

from ._engine import codec, scheduler
from ._engine.executor import load_journal
from ._engine.refs import import_ref
from ._engine.run import RunOptions
from ._engine.waits import cancel_children
from ._engine.worker import Worker, default_worker_id
from .errors import (
    RunCancelledError,
    RunDeadError,
    RunFailedError,
    RunNotFoundError,
    RunParkedError,
    ScheduleNotFoundError,
    SerializationError,
    UserError,
    WorkflowImportError,
)
from .step import Step
from .store import open_store
from .store.base import TERMINAL, Entry, NewRun, RunRecord, RunStatus, ScheduleRecord, Store
from .workflow import Workflow

O = TypeVar("O")  # noqa: E741
_MISSING: Any = object()


class RunHandle(Generic[O]):
    """A started run: its id, and a way to wait for its output."""

    def __init__(self, engine: Engine, run_id: str, created: bool) -> None:
        self.engine = engine
        self.run_id = run_id
        """The run's id."""
        self.created = created
        """False when `start` found an existing run with this id and returned it."""

    async def result(self, timeout: float | None = None) -> O:
        """Wait for the run to end and return its output (see `Engine.result`)."""
        value: O = await self.engine.result(self.run_id, timeout=timeout)
        return value

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id!r}>"


class Engine:
    """Durable execution of workflows on a store (see the module docstring)."""

    def __init__(
        self,
        store: Store | str = "memory://",
        *,
        workflows: Iterable[Workflow[Any, Any]] = (),
        worker: bool = True,
        worker_id: str | None = None,
        strict: bool = False,
        lease_seconds: float = 30.0,
        heartbeat_seconds: float | None = None,
        poll_seconds: float = 1.0,
        inline_wait_seconds: float = 1.0,
        max_concurrent_runs: int = 1000,
        max_recoveries: int = 10,
        drain_seconds: float = 30.0,
        claim_batch: int = 500,
    ) -> None:
        self.store: Store = open_store(store) if isinstance(store, str) else store
        self.worker_id = worker_id or default_worker_id()
        self.strict = strict
        """Commit every step's completion before the next step starts."""
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds or lease_seconds / 3
        self.poll_seconds = poll_seconds
        self.inline_wait_seconds = inline_wait_seconds
        self.max_concurrent_runs = max_concurrent_runs
        self.max_recoveries = max_recoveries
        self.drain_seconds = drain_seconds
        self.claim_batch = claim_batch
        self._workflows: dict[str, Workflow[Any, Any]] = {}
        for wf in workflows:
            self.register(wf)
        self._run_worker = worker
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._opened = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the store and, if this engine works, start the worker in the background."""
        if self._opened:
            return
        self._closed = False
        await self.store.open()
        self._opened = True
        wakeups = getattr(self.store, "wakeups", None)
        if wakeups is not None:
            wakeups.append(self._wake_worker)
        if self._run_worker:
            self._start_worker()

    async def _ensure_open(self) -> None:
        """Open on first use; after `close`, refuse rather than silently start a new worker."""
        if self._opened:
            return
        if self._closed:
            raise UserError(
                "this Engine was closed; use a new Engine, or call `await engine.open()` "
                "to open it again"
            )
        await self.open()

    async def close(self) -> None:
        """Drain the worker (if any) and close the store."""
        if not self._opened:
            return
        await self.stop_worker()
        wakeups = getattr(self.store, "wakeups", None)
        if wakeups is not None and self._wake_worker in wakeups:
            wakeups.remove(self._wake_worker)
        await self.store.close()
        self._opened = False
        self._closed = True

    def _start_worker(self) -> None:
        if self._worker_task is None:
            self._worker = Worker(self)
            self._worker_task = asyncio.create_task(self._worker.run(), name="overnight worker")

    async def stop_worker(self) -> None:
        """Drain: let running steps finish, requeue their runs, stop claiming."""
        worker, task = self._worker, self._worker_task
        if worker is None or task is None:
            return
        await worker.drain(self.drain_seconds)
        await task
        self._worker, self._worker_task = None, None

    async def serve(self, *, handle_signals: bool = True) -> None:
        """Work in the foreground until SIGTERM or SIGINT, then drain and return."""
        await self.open()
        self._start_worker()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signals.SIGTERM, signals.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            if handle_signals:
                for sig in (signals.SIGTERM, signals.SIGINT):
                    loop.remove_signal_handler(sig)
            await self.stop_worker()

    def active_runs(self) -> list[str]:
        """Ids of the runs this engine's worker is executing right now."""
        return [] if self._worker is None else list(self._worker.executors)

    def _wake_worker(self) -> None:
        if self._worker is not None:
            self._worker.wake()

    def notify_changed(self, run_id: str) -> None:
        """A run this process executed changed state: wake whoever waits for it."""
        for event in self._watchers.get(run_id, ()):
            event.set()

    # -- workflows ----------------------------------------------------------------------------

    def register(self, workflow: Workflow[Any, Any]) -> None:
        """Make a workflow resolvable by reference without importing it (e.g. from __main__)."""
        if not isinstance(workflow, Workflow):
            raise UserError(f"{workflow!r} is not a workflow; decorate it with @workflow")
        self._workflows[workflow.ref] = workflow

    def resolve_workflow(self, ref: str) -> Workflow[Any, Any]:
        """The workflow a run refers to: registered, or imported from `module:attr`."""
        found = self._workflows.get(ref)
        if found is not None:
            return found
        if ref.startswith("yaml:"):
            return self._load_yaml(ref)
        try:
            obj = import_ref(ref)
        except Exception as exc:
            raise WorkflowImportError(
                f"workflow {ref!r} does not import: {type(exc).__name__}: {exc}. Make sure the "
                "module is importable by the worker (installed, or on PYTHONPATH) or register "
                "the workflow with Engine(workflows=[...])"
            ) from exc
        if not isinstance(obj, Workflow):
            raise WorkflowImportError(
                f"{ref!r} is a {type(obj).__name__}, not a workflow; decorate it with @workflow"
            )
        self._workflows[ref] = obj
        return obj

    def _load_yaml(self, ref: str) -> Workflow[Any, Any]:
        from .flow.yaml import load_workflow_file

        try:
            loaded = load_workflow_file(ref.removeprefix("yaml:"))
        except UserError as exc:
            raise WorkflowImportError(
                f"workflow {ref!r} does not load: {exc}. Run the worker in the directory the run "
                "was started from, with the file in place"
            ) from exc
        self._workflows[ref] = loaded
        return loaded

    # -- starting and waiting -----------------------------------------------------------------

    async def start(
        self,
        workflow: Workflow[Any, O] | str,
        input: Any = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
        max_steps: int | None = None,
    ) -> RunHandle[O]:
        """Enqueue a run and return at once. Starting an id that exists returns that run."""
        await self._ensure_open()
        wf = self.resolve_workflow(workflow) if isinstance(workflow, str) else workflow
        if not isinstance(wf, Workflow):
            raise UserError(f"{workflow!r} is not a workflow; decorate it with @workflow")
        self._workflows.setdefault(wf.ref, wf)
        try:
            encoded = codec.dumps(input)
        except SerializationError as exc:
            raise SerializationError(f"the input of workflow {wf.name!r}: {exc}") from None
        new = NewRun(
            id=run_id or uuid.uuid4().hex,
            workflow=wf.ref,
            version=wf.version,
            input=encoded,
            options=RunOptions(timeout=timeout, max_steps=max_steps).encode(),
        )
        record, created = await self.store.create_run(new, now=time.time())
        if not created and record.workflow != wf.ref:
            raise UserError(
                f"run id {record.id!r} already belongs to workflow {record.workflow!r}, "
                f"not {wf.ref!r}; pick another run id"
            )
        self._wake_worker()
        return RunHandle(self, record.id, created)

    async def run(
        self,
        workflow: Workflow[Any, O],
        input: Any = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,
        max_steps: int | None = None,
    ) -> O:
        """Start a run and wait for its output (this engine must be working)."""
        handle = await self.start(
            workflow, input, run_id=run_id, timeout=timeout, max_steps=max_steps
        )
        return await handle.result()

    async def result(self, run_id: str, *, timeout: float | None = None) -> Any:
        """Wait until the run ends; return its output or raise why it did not complete.

        Raises RunFailedError, RunCancelledError, RunDeadError, or RunParkedError as soon as
        the run parks (it needs a person). Waits through `waiting`; TimeoutError after `timeout`.
        """
        event = asyncio.Event()
        watched = [run_id]
        self._watchers.setdefault(run_id, set()).add(event)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                event.clear()
                record = await self.get_run(run_id)
                if record.continued_to is not None:
                    run_id = record.continued_to
                    watched.append(run_id)
                    self._watchers.setdefault(run_id, set()).add(event)
                    continue
                outcome = _outcome(record)
                if outcome is not _MISSING:
                    return outcome
                # In-process transitions set the event; other processes' are seen by polling.
                wait = self.poll_seconds
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        raise TimeoutError(f"run {run_id!r} is still {record.status}")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await event.wait()
        finally:
            for watched_id in watched:
                events = self._watchers.get(watched_id)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._watchers[watched_id]

    # -- steering -----------------------------------------------------------------------------

    async def signal(
        self, run_id: str, name: str, payload: Any = None, *, signal_id: str | None = None
    ) -> bool:
        """Send a signal; durable when this returns. False if `signal_id` was already sent."""
        await self._ensure_open()
        sent = await self.store.send_signal(
            run_id, name, codec.dumps(payload), signal_id or uuid.uuid4().hex, now=time.time()
        )
        self._wake_worker()
        return sent is not None

    async def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run and the child runs it started: at once if no worker holds them, else
        within one heartbeat."""
        await self._ensure_open()
        record = await self.store.request_cancel(run_id, now=time.time())
        cancelled = [run_id]
        if record.status == "cancelled":  # no worker held it: no worker will cancel its children
            cancelled += await cancel_children(self.store, run_id, now=time.time())
        for each in cancelled:
            if self._worker is not None:
                self._worker.cancel_local(each)
            self.notify_changed(each)
        return record

    async def resume(self, run_id: str) -> RunRecord:
        """Requeue a parked run as it is (after restoring or fixing its code), or give a dead
        run another try (its count of worker deaths starts again from zero)."""
        await self._ensure_open()
        record = await self.store.control(run_id, [], now=time.time())
        self._wake_worker()
        return record

    async def accept_changes(self, run_id: str) -> RunRecord:
        """Continue a run parked by a code change with the new code.

        Recorded results are kept for every key the new code still calls; new keys execute.
        """
        await self._ensure_open()
        data = orjson.dumps({"action": "accept", "at": time.time()})
        record = await self.store.control(run_id, [("", "control", data)], now=time.time())
        self._wake_worker()
        return record

    async def resolve_step(
        self, run_id: str, key: str, *, result: Any = _MISSING, retry: bool = False
    ) -> RunRecord:
        """Answer for a parked, in-doubt step: it took effect with `result`, or `retry` it.

        `result` is validated against the step's declared return type.
        """
        await self._ensure_open()
        if (result is _MISSING) == (not retry):
            raise UserError("resolve_step needs exactly one of result=... or retry=True")
        entries = [e for e in await self.journal(run_id) if e.key == key]
        intents = [orjson.loads(e.data) for e in entries if e.kind == "intent"]
        if not intents:
            raise UserError(
                f"run {run_id!r} has no step {key!r} waiting for a decision; see the run's "
                "note for the key of the parked step"
            )
        if retry:
            data = orjson.dumps({"action": "retry"})
        else:
            value = _validate_result(intents[-1].get("ref"), key, result)
            data = orjson.dumps({"action": "resolve", "out": codec.encode(value)})
        record = await self.store.control(run_id, [(key, "control", data)], now=time.time())
        self._wake_worker()
        return record

    # -- schedules ----------------------------------------------------------------------------

    async def add_schedule(
        self,
        name: str,
        cron: str,
        workflow: Workflow[Any, Any] | str,
        input: Any = None,
        *,
        timezone: str = "UTC",
        catch_up: str = "one",
    ) -> ScheduleRecord:
        """Start `workflow` with `input` at every tick of `cron` in `timezone` (replacing any
        schedule of that name); `catch_up` (skip, one, all) says what to do with missed ticks."""
        await self._ensure_open()
        return await scheduler.add(
            self,
            name,
            cron,
            workflow,
            input,
            timezone=timezone,
            catch_up=catch_up,
            now=time.time(),
        )

    async def get_schedule(self, name: str) -> ScheduleRecord:
        """The schedule named `name`; ScheduleNotFoundError if there is none."""
        await self._ensure_open()
        return await scheduler.get(self, name)

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, by name."""
        await self._ensure_open()
        return await self.store.list_schedules()

    async def remove_schedule(self, name: str) -> None:
        """Delete a schedule (the runs it started stay)."""
        await self._ensure_open()
        if not await self.store.remove_schedule(name):
            raise ScheduleNotFoundError(name)

    async def pause_schedule(self, name: str) -> ScheduleRecord:
        """Stop a schedule's ticks until it is resumed."""
        await self._ensure_open()
        return await scheduler.set_paused(self, name, True, time.time())

    async def resume_schedule(self, name: str) -> ScheduleRecord:
        """Resume a paused schedule from its next tick (ticks while paused start nothing)."""
        await self._ensure_open()
        return await scheduler.set_paused(self, name, False, time.time())

    async def fire_schedules(self, *, now: float | None = None) -> list[RunRecord]:
        """Start the runs of every due schedule tick; return them. The worker calls this at
        each poll; `now` (default: the clock) lets tests and tools choose the moment."""
        await self._ensure_open()
        fired = await scheduler.fire_due(self, time.time() if now is None else now)
        if fired:
            self._wake_worker()
        return fired

    # -- reading ------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunRecord:
        """The run's record; RunNotFoundError if there is none."""
        await self._ensure_open()
        record = await self.store.get_run(run_id)
        if record is None:
            raise RunNotFoundError(run_id)
        return record

    async def list_runs(
        self, *, statuses: Sequence[RunStatus] | None = None, limit: int = 100
    ) -> list[RunRecord]:
        """Runs, newest first."""
        await self._ensure_open()
        return await self.store.list_runs(statuses=statuses, limit=limit)

    async def journal(self, run_id: str) -> list[Entry]:
        """Every journal entry of a run, in order."""
        await self.get_run(run_id)
        entries: list[Entry] = []
        while True:
            page = await self.store.read_journal(
                run_id, after_seq=entries[-1].seq if entries else -1, limit=5000
            )
            entries.extend(page)
            if len(page) < 5000:
                return entries

    async def replay_index(self, run_id: str) -> Any:
        """The journal as the engine reads it on resume (for tools and tests)."""
        await self.get_run(run_id)
        return await load_journal(self.store, run_id)


def _outcome(record: RunRecord) -> Any:
    if record.status == "completed":
        return codec.loads(record.result) if record.result is not None else None
    error = orjson.loads(record.error) if record.error else {"type": "?", "message": ""}
    if record.status == "failed":
        raise RunFailedError(record, error["type"], error["message"])
    if record.status == "cancelled":
        raise RunCancelledError(f"run {record.id!r} was cancelled", record)
    if record.status == "dead":
        raise RunDeadError(f"run {record.id!r} is dead: {error['message']}", record)
    if record.status == "parked":
        raise RunParkedError(f"run {record.id!r} is parked: {record.note}", record)
    assert record.status not in TERMINAL
    return _MISSING


def _validate_result(ref: str | None, key: str, result: Any) -> Any:
    if not ref:
        return result
    try:
        obj = import_ref(ref)
    except Exception as exc:
        raise UserError(
            f"cannot import step {ref!r} to check the result for {key!r}: {exc}"
        ) from exc
    from .tool import Tool

    if isinstance(obj, Tool):
        obj = obj.step_for_types()
    if not isinstance(obj, Step):
        return result
    try:
        return pydantic.TypeAdapter(obj.return_type()).validate_python(result)
    except pydantic.ValidationError as exc:
        raise UserError(
            f"the result given for step {key!r} does not match its return type: {exc}"
        ) from None
