"""The `overnight` command: typer commands, each a thin wrapper over one Engine operation.

Every command takes `--store URL` (else `OVERNIGHT_STORE`, else `.overnight/overnight.db` in the
working directory) and `--debug`. Errors a user can fix print one `error:` line and one `fix:`
line and exit 2, with no traceback unless `--debug`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from ..errors import UserError
from ..flow.compiled import FlowWorkflow, graph_lines
from . import schedules, session, views
from .exitcodes import ExitCode
from .guard import STATE, command, json_arg
from .guard import run as run_
from .guard import url as store_of
from .output import Ui
from .stores import ENV_VAR
from .targets import external_folder, load_target

app = typer.Typer(
    name="overnight",
    help="Durable workflows that survive kill -9: run them, watch them, steer them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(schedules.app, name="schedule")

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL",
        help=f"memory://, sqlite:///path.db or postgresql://... (default: ${ENV_VAR}, "
        "else sqlite:///.overnight/overnight.db)",
        show_default=False,
    ),
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="Show the traceback of an error.", show_default=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
LeaseOption = Annotated[
    float,
    typer.Option(
        "--lease-seconds",
        min=0.5,
        metavar="SECONDS",
        help="How long a run stays locked to this process if it dies (then another takes it).",
    ),
]


class Status(StrEnum):
    """Run statuses, for `runs --status`."""

    queued = "queued"
    running = "running"
    waiting = "waiting"
    parked = "parked"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    dead = "dead"


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"overnight {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    store: StoreOption = None,
    debug: DebugOption = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    STATE.store, STATE.debug = store, debug


# -- commands -------------------------------------------------------------------------------


@app.command()
@command
def run(
    ui: Ui,
    target: Annotated[str, typer.Argument(help="FILE.py:NAME, package.module:NAME or FILE.yaml")],
    input: Annotated[
        str | None,
        typer.Option("--input", "-i", metavar="JSON", help="The workflow's input (or @file.json)."),
    ] = None,
    id: Annotated[
        str | None, typer.Option("--id", metavar="ID", help="Run id (default: a new one).")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Only enqueue the run; `overnight worker` runs it.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait through timers and signals (else exit 3)."),
    ] = True,
    lease_seconds: LeaseOption = 30.0,
    store: StoreOption = None,
    debug: DebugOption = False,
) -> ExitCode:
    """Start a workflow run and show it live until it ends.

    Prints the output as JSON on stdout; progress goes to stderr. Ctrl-C stops waiting and
    leaves the run resumable (`overnight resume RUN`).
    """
    workflow = load_target(target)
    value = session.check_input(workflow, json_arg(input, "--input"), input is not None)
    url = store_of(locals(), create=True)
    folder = external_folder(workflow)
    if folder is not None:
        ui.note(
            f"the run refers to its workflow as {workflow.ref!r}: run `overnight resume` or "
            f"`overnight worker` with PYTHONPATH={folder}, or from that folder",
            "yellow",
        )
    settings = session.Settings(url, lease_seconds=lease_seconds, wait=wait)
    return run_(session.start(ui, settings, workflow, value, id, detach=detach))


@app.command()
@command
def resume(
    ui: Ui,
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    accept_changes: Annotated[
        bool,
        typer.Option("--accept-changes", help="Continue a run parked by changed code, as is."),
    ] = False,
    step: Annotated[
        str | None,
        typer.Option("--step", metavar="KEY", help="The parked step to answer for."),
    ] = None,
    assume_done: Annotated[
        bool, typer.Option("--assume-done", help="The step took effect; its result is --result.")
    ] = False,
    result: Annotated[
        str | None,
        typer.Option("--result", metavar="JSON", help="The step's result (checked by its type)."),
    ] = None,
    retry: Annotated[bool, typer.Option("--retry", help="The step did not take effect.")] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Only requeue; `overnight worker` continues it.")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait through timers and signals (else exit 3)."),
    ] = True,
    lease_seconds: LeaseOption = 30.0,
    store: StoreOption = None,
    debug: DebugOption = False,
) -> ExitCode:
    """Continue a run (after a crash, Ctrl-C, or parking) here, and show it until it ends."""
    if step is not None and assume_done == retry:
        raise UserError(
            "--step needs exactly one of --assume-done (with --result JSON) or --retry; "
            "say whether the step took effect"
        )
    if step is None and (assume_done or retry or result is not None):
        raise UserError(
            "--assume-done, --retry and --result answer for a parked step; name it with "
            "--step KEY (`overnight show RUN` gives the key)"
        )
    if assume_done and result is None:
        raise UserError(
            "--assume-done needs the step's result; pass it as --result JSON (null if the "
            "step returns nothing)"
        )
    if step is not None and accept_changes:
        raise UserError("--accept-changes and --step answer different questions; give one")
    settings = session.Settings(store_of(locals()), lease_seconds=lease_seconds, wait=wait)
    return run_(
        session.resume(
            ui,
            settings,
            run_id,
            accept_changes=accept_changes,
            step=step,
            result=json_arg(result, "--result"),
            has_result=assume_done,
            retry=retry,
            detach=detach,
        )
    )


@app.command()
@command
def runs(
    ui: Ui,
    status: Annotated[
        list[Status] | None,
        typer.Option(
            "--status",
            "-s",
            metavar="STATUS",
            help="Only runs with this status (repeatable): queued, running, waiting, parked, "
            "completed, failed, cancelled or dead.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, metavar="N", help="At most this many.")
    ] = 50,
    json: JsonOption = False,
    store: StoreOption = None,
    debug: DebugOption = False,
) -> ExitCode:
    """List runs, newest first."""
    statuses = [s.value for s in status] if status else None
    return run_(views.list_runs(ui, store_of(locals()), statuses, limit, json))  # type: ignore[arg-type]


@app.command()
@command
def show(
    ui: Ui,
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    prompts: Annotated[
        bool, typer.Option("--prompts", help="Print the exact prompts sent and responses.")
    ] = False,
    json: JsonOption = False,
    store: StoreOption = None,
    debug: DebugOption = False,
) -> ExitCode:
    """Show a run: status, timings, its steps, tokens, cost and errors."""
    return run_(views.show(ui, store_of(locals()), run_id, prompts, json))


@app.command()
@command
def cancel(
    ui: Ui,
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    store: StoreOption = None,
    debug: DebugOption = False,
) -> ExitCode:
    """Cancel a run (at once, or within a heartbeat if a worker is running it)."""
    return run_(views.cancel(ui, store_of(locals()), run_id))


@app.command()
@command
def signal(
    ui: Ui,
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    name: Annotated[str, typer.Argument(help="The signal name the run waits for.")],
    data: Annotated[
        str | None, typer.Option("--data", "-d", metavar="JSON", help="Payload (or @file.json).")
    ] = None,
    id: Annotated[
        str | None,
        typer.Option("--id", metavar="ID", help="Signal id: the same id is delivered once."),
    ] = None,
    store: StoreOption = None,
    debug: DebugOption = False,
) -> ExitCode:
    """Send a signal to a run (durable when this returns)."""
    payload = json_arg(data, "--data")
    return run_(views.send_signal(ui, store_of(locals()), run_id, name, payload, id))


@app.command()
@command
def validate(
    ui: Ui,
    target: Annotated[str, typer.Argument(help="FILE.py:NAME, package.module:NAME or FILE.yaml")],
    debug: DebugOption = False,
) -> ExitCode:
    """Check that a target loads as a workflow, without running it; for a flow, list its steps
    with what each waits for."""
    workflow = load_target(target)
    ui.out.print(
        f"ok: {target} is workflow {workflow.name!r} (ref {workflow.ref}, "
        f"takes {'an input' if workflow.takes_input else 'no input'})",
        markup=False,
        highlight=False,
    )
    if isinstance(workflow, FlowWorkflow):
        for line in graph_lines(workflow.spec):
            ui.out.print(line, markup=False, highlight=False)
    return ExitCode.COMPLETED


@app.command()
@command
def worker(
    ui: Ui,
    lease_seconds: LeaseOption = 30.0,
    poll_seconds: Annotated[
        float,
        typer.Option(
            "--poll-seconds", min=0.01, metavar="SECONDS", help="How often to look for due runs."
        ),
    ] = 1.0,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, metavar="N", help="Runs executed at once, at most."),
    ] = 1000,
    drain_seconds: Annotated[
        float,
        typer.Option(
            "--drain-seconds", min=0, metavar="SECONDS", help="Time running steps get to finish."
        ),
    ] = 30.0,
    max_recoveries: Annotated[
        int,
        typer.Option(
            "--max-recoveries",
            min=0,
            metavar="N",
            help="Takeovers of a run whose worker died before it is moved to 'dead' (then "
            "`overnight resume RUN` retries it by hand).",
        ),
    ] = 10,
    store: StoreOption = None,
    debug: DebugOption = False,
) -> ExitCode:
    """Execute queued and due runs until stopped; drain on SIGTERM or Ctrl-C."""
    return run_(
        views.work(
            ui,
            store_of(locals(), create=True),
            lease_seconds=lease_seconds,
            poll_seconds=poll_seconds,
            max_concurrent_runs=concurrency,
            drain_seconds=drain_seconds,
            max_recoveries=max_recoveries,
        )
    )


@app.command()
@command
def demo(
    ui: Ui,
    model: Annotated[
        str | None,
        typer.Option(
            help="provider:model for the agents, e.g. openai:gpt-4o-mini (default: "
            "an offline stand-in)"
        ),
    ] = None,
    store: StoreOption = None,
    debug: DebugOption = False,
) -> ExitCode:
    """Run the demo: a multi-agent content pipeline, offline unless --model is given. Run it
    again after Ctrl-C and it resumes."""
    from ..demo import main as run_demo

    return ExitCode(run_demo(store=store_of(locals(), create=True), model=model))
