"""`overnight schedule add|list|pause|resume|remove`: durable cron schedules (see
docs/workflows.md, "Schedules"). Any `overnight worker` on the store fires their ticks."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..engine import Engine
from ..store.base import ScheduleRecord
from .exitcodes import ExitCode
from .guard import command, json_arg
from .guard import run as run_
from .guard import url as store_of
from .output import Ui, decoded, stamp
from .session import check_input
from .targets import external_folder, load_target

app = typer.Typer(
    name="schedule",
    help="Start a workflow at every tick of a cron expression; workers fire the ticks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store", metavar="URL", help="The store (as for every command).", show_default=False
    ),
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show the traceback of an error.", show_default=False)
]
NameArg = Annotated[str, typer.Argument(help="The schedule's name.")]


class CatchUp(StrEnum):
    """Catch-up policies, for `schedule add --catch-up`."""

    skip = "skip"
    one = "one"
    all = "all"


@app.command()
@command
def add(
    ui: Ui,
    name: Annotated[str, typer.Argument(help="A name: letters, digits, '_', '.', '-'.")],
    cron: Annotated[
        str, typer.Argument(help="Cron expression, quoted, e.g. '0 6 * * 1-5' (06:00 weekdays).")
    ],
    target: Annotated[str, typer.Argument(help="FILE.py:NAME, package.module:NAME or FILE.yaml")],
    input: Annotated[
        str | None,
        typer.Option("--input", "-i", metavar="JSON", help="Every run's input (or @file.json)."),
    ] = None,
    timezone: Annotated[
        str,
        typer.Option("--timezone", "--tz", metavar="TZ", help="IANA time zone of the cron."),
    ] = "UTC",
    catch_up: Annotated[
        CatchUp,
        typer.Option(
            "--catch-up",
            help="Ticks missed while no worker ran: start none (skip), the latest (one), or "
            "every one (all, at most 100).",
        ),
    ] = CatchUp.one,
    store: StoreOption = None,
    debug: DebugOption = False,
) -> ExitCode:
    """Add a schedule (or replace the one of that name)."""
    workflow = load_target(target)
    value = check_input(workflow, json_arg(input, "--input"), input is not None)
    url = store_of(locals(), create=True)

    async def body() -> ExitCode:
        async with Engine(url, worker=False) as engine:
            existed = await engine.store.get_schedule(name) is not None
            record = await engine.add_schedule(
                name, cron, workflow, value, timezone=timezone, catch_up=catch_up.value
            )
        ui.out.print(
            f"schedule {name!r} {'replaced' if existed else 'added'}: {record.workflow} at "
            f"{cron!r} ({timezone}), catch-up {record.catch_up}; next tick "
            f"{stamp(record.next_due)}",
            markup=False,
            highlight=False,
        )
        folder = external_folder(workflow)
        if folder is not None:
            ui.note(f"workers need PYTHONPATH={folder} to import {workflow.ref!r}", "yellow")
        ui.note("ticks are fired by workers: keep `overnight worker` running on this store")
        return ExitCode.COMPLETED

    return run_(body())


@app.command("list")
@command
def list_(
    ui: Ui,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    store: StoreOption = None,
    debug: DebugOption = False,
) -> ExitCode:
    """List schedules, by name, with their next tick."""
    url = store_of(locals())

    async def body() -> ExitCode:
        async with Engine(url, worker=False) as engine:
            records = await engine.list_schedules()
        if json:
            ui.json([schedule_json(r) for r in records])
        elif not records:
            ui.note("no schedules; add one with `overnight schedule add NAME CRON TARGET`")
        else:
            ui.out.print(schedules_table(records))
        return ExitCode.COMPLETED

    return run_(body())


def _change(ui: Ui, url: str, name: str, verb: str) -> ExitCode:
    async def body() -> ExitCode:
        said = verb
        async with Engine(url, worker=False) as engine:
            if verb == "paused":
                await engine.pause_schedule(name)
            elif verb == "resumed":
                record = await engine.resume_schedule(name)
                said = f"resumed; next tick {stamp(record.next_due)}"
            else:
                await engine.remove_schedule(name)
        ui.out.print(f"schedule {name!r} {said}", markup=False, highlight=False)
        return ExitCode.COMPLETED

    return run_(body())


@app.command()
@command
def pause(ui: Ui, name: NameArg, store: StoreOption = None, debug: DebugOption = False) -> ExitCode:
    """Pause a schedule: no ticks start runs until it is resumed."""
    return _change(ui, store_of(locals()), name, "paused")


@app.command()
@command
def resume(
    ui: Ui, name: NameArg, store: StoreOption = None, debug: DebugOption = False
) -> ExitCode:
    """Resume a paused schedule from its next tick (ticks while paused start nothing)."""
    return _change(ui, store_of(locals()), name, "resumed")


@app.command()
@command
def remove(
    ui: Ui, name: NameArg, store: StoreOption = None, debug: DebugOption = False
) -> ExitCode:
    """Remove a schedule (the runs it started stay)."""
    return _change(ui, store_of(locals()), name, "removed")


def _iso(when: float | None) -> str | None:
    return None if when is None else dt.datetime.fromtimestamp(when, dt.UTC).isoformat()


def schedule_json(record: ScheduleRecord) -> dict[str, Any]:
    """A schedule as JSON for scripts (times in ISO 8601 UTC, the input decoded)."""
    return {
        "name": record.name,
        "cron": record.cron,
        "timezone": record.timezone,
        "workflow": record.workflow,
        "input": decoded(record.input),
        "catch_up": record.catch_up,
        "paused": record.paused,
        "next_due": _iso(record.next_due),
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
    }


def schedules_table(records: list[ScheduleRecord]) -> Table:
    """The `schedule list` listing."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "CRON", "TIME ZONE", "WORKFLOW", "CATCH-UP", "STATE", "NEXT TICK"):
        table.add_column(column, overflow="fold")
    for r in records:
        table.add_row(
            escape(r.name),
            escape(r.cron),
            escape(r.timezone),
            escape(r.workflow),
            r.catch_up,
            "[yellow]paused[/]" if r.paused else "[green]active[/]",
            stamp(r.next_due),
        )
    return table
