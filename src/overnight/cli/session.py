"""`run` and `resume`: execute a run in this process, show it, and exit with what became of it.

The command's Engine works (claims and executes runs) like any worker, so a run waits through
its timers and signals here, and a signal sent by `overnight signal` from another process reaches
it within `POLL_SECONDS`. Ctrl-C stops waiting: running steps finish (up to `DRAIN_SECONDS`), the
run is requeued, and any later `overnight resume RUN` or `overnight worker` continues it from the
journal. A second Ctrl-C exits at once; the run is then taken over when its lease expires, as
after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal as signals
import socket
import time
import typing
from dataclasses import dataclass
from typing import Any

import orjson
import pydantic
from rich.markup import escape

from .._engine import codec
from ..engine import Engine
from ..errors import UserError
from ..store.base import TERMINAL, RunRecord
from ..workflow import Workflow
from .exitcodes import ExitCode, for_status
from .output import Ui, dumps, error_of, parked_fixes, totals_line, waiting_for
from .progress import ProgressView
from .stores import is_memory

POLL_SECONDS = 0.1
"""How often the command looks at the run (and its worker at the store) while it waits."""
DRAIN_SECONDS = 10.0
"""After Ctrl-C, how long running steps may take to finish before they are stopped."""


@dataclass(frozen=True)
class Settings:
    """How the command's engine works."""

    url: str
    lease_seconds: float = 30.0
    wait: bool = True
    """Wait through timers and signals (False: exit 3 as soon as the run waits)."""


def engine_for(settings: Settings, *, worker: bool) -> Engine:
    """An engine on the command's store (working, or only steering)."""
    return Engine(
        settings.url,
        worker=worker,
        lease_seconds=settings.lease_seconds,
        poll_seconds=min(POLL_SECONDS * 5, settings.lease_seconds / 3),
        drain_seconds=DRAIN_SECONDS,
    )


def check_input(workflow: Workflow[Any, Any], value: Any, given: bool) -> Any:
    """Validate `--input` against the workflow's input annotation (UserError if it does not fit)."""
    if not workflow.takes_input:
        if given:
            raise UserError(f"workflow {workflow.name!r} takes no input; leave out --input")
        return None
    try:
        hints = typing.get_type_hints(workflow.fn)
    except Exception:
        return value  # annotations that do not resolve here: the run will find out
    names = _param_names(workflow)
    if not names or names[0] not in hints:
        return value
    name = names[0]
    kind = hints[name]
    described = kind.__name__ if isinstance(kind, type) else str(kind)
    try:
        return pydantic.TypeAdapter(kind).validate_python(value)
    except pydantic.ValidationError as exc:
        if not given:
            raise UserError(
                f"workflow {workflow.name!r} needs an input ({name}: {described}); pass it "
                "as JSON with --input"
            ) from None
        raise UserError(
            f"the input does not fit workflow {workflow.name!r} ({name}: {described}): "
            f"{_first_error(exc)}; pass matching JSON with --input"
        ) from None


async def start(
    ui: Ui,
    settings: Settings,
    workflow: Workflow[Any, Any],
    value: Any,
    run_id: str | None,
    *,
    detach: bool,
) -> ExitCode:
    """`overnight run`: start the run, then follow it here (or leave it to a worker)."""
    if is_memory(settings.url):
        if detach:
            raise UserError(
                "--detach with memory:// would queue a run nothing can ever execute; use a "
                "SQLite store (the default) or drop --detach"
            )
        ui.note(
            "memory:// keeps nothing after this command exits: the run cannot be resumed, "
            "signalled or shown from another command",
            style="yellow",
        )
    engine = engine_for(settings, worker=not detach)
    async with engine:
        handle = await engine.start(workflow, value, run_id=run_id)
        if not handle.created:
            record = await engine.get_run(handle.run_id)
            ui.note(f"run {handle.run_id} already exists ({record.status}); following it")
        if detach:
            ui.out.print(handle.run_id, markup=False, highlight=False)
            ui.note(
                f"queued run {handle.run_id}; `overnight worker` executes it, "
                f"`overnight show {handle.run_id}` shows it"
            )
            return ExitCode.COMPLETED
        ui.note(f"run {handle.run_id} · {workflow.ref} · store {settings.url}")
        return await follow(ui, engine, settings, handle.run_id)


async def resume(
    ui: Ui,
    settings: Settings,
    run_id: str,
    *,
    accept_changes: bool,
    step: str | None,
    result: Any,
    has_result: bool,
    retry: bool,
    detach: bool,
) -> ExitCode:
    """`overnight resume`: answer for a parked run if asked, then follow it to its end."""
    engine = engine_for(settings, worker=not detach)
    async with engine:
        record = await engine.get_run(run_id)
        if step is not None:
            _require_parked(record, "--step")
            if has_result:
                record = await engine.resolve_step(run_id, step, result=result)
                ui.note(f"step {step!r} recorded as done with the given result")
            else:
                record = await engine.resolve_step(run_id, step, retry=True)
                ui.note(f"step {step!r} will run again")
        elif accept_changes:
            _require_parked(record, "--accept-changes")
            record = await engine.accept_changes(run_id)
            ui.note("continuing with the code as it is now")
        elif record.status in ("parked", "dead"):
            record = await engine.resume(run_id)
            ui.note(f"requeued run {run_id}")
        elif record.status in TERMINAL:
            raise UserError(
                f"run {run_id!r} already ended ({record.status}); nothing to resume; see it "
                f"with `overnight show {run_id}`"
            )
        elif record.status == "running":
            ui.note(_owner_note(record))
        if detach:
            ui.note(f"run {run_id} is {record.status}; `overnight worker` continues it")
            return ExitCode.COMPLETED
        return await follow(ui, engine, settings, run_id)


async def follow(ui: Ui, engine: Engine, settings: Settings, run_id: str) -> ExitCode:
    """Show the run until it ends, parks, or (without waiting) waits; handle Ctrl-C."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def interrupt() -> None:
        if stop.is_set():
            ui.note("stopped at once; the run is taken over when its lease expires", "yellow")
            os._exit(ExitCode.INTERRUPTED)
        stop.set()

    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signals.SIGINT, interrupt)
    try:
        with ProgressView(ui, engine.store, run_id) as view:
            record = await _watch(engine, settings, view, run_id, stop)
            await view.update(record)
    finally:
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.remove_signal_handler(signals.SIGINT)
    if stop.is_set():
        ui.note(f"stopping: letting running steps finish (up to {DRAIN_SECONDS:g} s)", "yellow")
        await engine.stop_worker()
        record = await engine.get_run(record.id)
        ui.note(f"run {record.id} is {record.status} and resumable", "yellow")
        _continue_hint(ui, settings, record)
        return ExitCode.INTERRUPTED
    return report(ui, settings, record, view.tally)


async def _watch(
    engine: Engine, settings: Settings, view: ProgressView, run_id: str, stop: asyncio.Event
) -> RunRecord:
    while True:
        record = await engine.get_run(run_id)
        if record.continued_to is not None:
            run_id = record.continued_to
            view.follow(run_id)
            continue
        await view.update(record)
        if record.status in TERMINAL or record.status == "parked":
            return record
        if record.status == "waiting" and (not settings.wait or _stuck(settings, record)):
            return record
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_SECONDS):
                await stop.wait()
        if stop.is_set():
            return record


def report(ui: Ui, settings: Settings, record: RunRecord, tally: Any) -> ExitCode:
    """Print the outcome (the output as JSON on stdout) and return the exit code."""
    totals = totals_line(record, tally)
    status = record.status
    if status == "completed":
        value = codec.loads(record.result) if record.result is not None else None
        ui.out.print(dumps(value), markup=False, highlight=False)
        ui.err.print(f"[green]completed[/] run {record.id} · {totals}")
    elif status in ("failed", "dead"):
        error = error_of(record) or {"type": "?", "message": ""}
        ui.error(
            f"run {record.id} {status}: {error['type']}: {error['message']}",
            f"see its steps with `overnight show {record.id}`",
        )
    elif status == "parked":
        ui.err.print(f"[yellow]parked[/] run {record.id}: {escape(record.note or '')}")
        for line in parked_fixes(record):
            ui.note(line, "yellow")
    elif status == "cancelled":
        ui.err.print(f"[magenta]cancelled[/] run {record.id} · {totals}")
    else:
        ui.err.print(f"[cyan]{status}[/] run {record.id}: waiting for {waiting_for(record)}")
        _continue_hint(ui, settings, record)
    return for_status(status)


def _continue_hint(ui: Ui, settings: Settings, record: RunRecord) -> None:
    if is_memory(settings.url):
        ui.note("(memory:// store: the run ends with this process)", "yellow")
        return
    store = "" if settings.url.endswith(".overnight/overnight.db") else f" --store {settings.url}"
    names: list[str] = []
    if record.waiting is not None:
        names = list(orjson.loads(record.waiting).get("signals", []))
    for name in names:
        ui.note(f"send it: overnight{store} signal {record.id} {name} --data JSON")
    ui.note(f"continue it: overnight{store} resume {record.id}   (or run `overnight worker`)")


def _stuck(settings: Settings, record: RunRecord) -> bool:
    """A memory-store run waiting only for a signal: no other process can ever send it."""
    if not is_memory(settings.url) or record.waiting is None:
        return False
    return orjson.loads(record.waiting).get("timer") is None


def _require_parked(record: RunRecord, option: str) -> None:
    if record.status != "parked":
        raise UserError(
            f"run {record.id!r} is {record.status}, not parked; {option} applies to a parked "
            f"run only (see `overnight show {record.id}`)"
        )


def _owner_note(record: RunRecord) -> str:
    """Who holds a running run, and when this command can take it over."""
    host, _, rest = (record.owner or "").partition(":")
    pid = rest.partition(":")[0]
    left = max(0.0, (record.due_at or 0) - time.time())
    if left <= 0:
        return f"the worker that ran {record.id} ({record.owner}) is gone; taking the run over"
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return (
            f"the process that ran {record.id} (pid {pid}) is gone; this command takes the run "
            f"over when its lease expires, in {left:.0f} s"
        )
    return (
        f"run {record.id} is being run by {record.owner}; following it (taken over here if "
        f"that worker stops renewing its lease, at the latest in {left:.0f} s)"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _param_names(workflow: Workflow[Any, Any]) -> list[str]:
    return list(inspect.signature(workflow.fn).parameters)[1:2]


def _first_error(exc: pydantic.ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "input"
    return f"{where}: {first.get('msg', '')}"
