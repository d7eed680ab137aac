"""The reading and steering verbs: `runs`, `show`, `signal`, `cancel`, `worker`."""

from __future__ import annotations

import asyncio
import signal as signals
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from rich.panel import Panel

from .. import transcript
from ..engine import Engine
from ..errors import UserError
from ..store.base import TERMINAL, RunStatus
from .exitcodes import ExitCode
from .output import (
    Ui,
    dumps,
    duration,
    error_of,
    parked_fixes,
    run_json,
    runs_table,
    stamp,
    status_text,
    steps_table,
    totals_line,
    waiting_for,
)
from .summary import Tally, format_cost


async def list_runs(
    ui: Ui, url: str, statuses: Sequence[RunStatus] | None, limit: int, as_json: bool
) -> ExitCode:
    """`overnight runs`."""
    async with Engine(url, worker=False) as engine:
        records = await engine.list_runs(statuses=statuses or None, limit=limit)
    if as_json:
        ui.json([run_json(r) for r in records])
    elif not records:
        ui.note("no runs" + (f" with status {', '.join(statuses)}" if statuses else ""))
    else:
        ui.out.print(runs_table(records))
    return ExitCode.COMPLETED


async def show(ui: Ui, url: str, run_id: str, prompts: bool, as_json: bool) -> ExitCode:
    """`overnight show RUN`."""
    async with Engine(url, worker=False) as engine:
        record = await engine.get_run(run_id)
        tally = Tally()
        await tally.read(engine.store, run_id)
        calls = await transcript.model_calls(engine, run_id) if prompts else []
    if as_json:
        data: dict[str, Any] = run_json(record)
        data["steps"] = [
            {
                "key": r.key,
                "kind": r.kind,
                "state": r.state,
                "attempts": r.attempts,
                "error": r.error,
                "detail": r.detail,
                "tokens": r.tokens if r.kind == "model" else None,
                "cost": None if r.kind != "model" or r.cost.amount is None else str(r.cost.amount),
            }
            for r in tally.rows.values()
        ]
        data["usage"] = {
            "model_calls": tally.model_calls,
            "input_tokens": tally.usage.input_tokens,
            "output_tokens": tally.usage.output_tokens,
            "cost": None if tally.cost.amount is None else str(tally.cost.amount),
            "unpriced_models": sorted(tally.cost.unpriced),
        }
        if prompts:
            data["model_calls"] = [
                {"key": c.key, "model": c.model, "messages": c.messages, "response": c.response}
                for c in calls
            ]
        ui.json(data)
        return ExitCode.COMPLETED
    out = ui.out
    out.print(f"run [bold]{escape(record.id)}[/]  {status_text(record.status)}")
    out.print(f"  workflow   {escape(record.workflow)}  (version {escape(record.version)})")
    out.print(f"  created    {stamp(record.created_at)}")
    out.print(
        f"  updated    {stamp(record.updated_at)}  "
        f"({duration(max(0.0, record.updated_at - record.created_at))} after creation)"
    )
    out.print(
        f"  workers    claimed it {record.attempts} time(s), took it over after a crash "
        f"{record.recoveries} time(s)"
    )
    out.print(f"  totals     {escape(totals_line(record, tally))}")
    if record.parent_id:
        out.print(f"  parent     {escape(record.parent_id)}")
    if record.continued_to:
        out.print(f"  continued  as {escape(record.continued_to)}")
    if record.status == "waiting":
        out.print(f"  waiting    for {escape(waiting_for(record))}")
    error = error_of(record)
    if error is not None:
        out.print(f"  [red]error[/]      {escape(error['type'])}: {escape(error['message'])}")
    if record.note:
        out.print(f"  [yellow]note[/]       {escape(record.note)}")
    if record.status == "parked":
        for line in parked_fixes(record):
            out.print(f"  [yellow]fix[/]        {escape(line)}")
    if record.status == "completed" and record.result is not None:
        out.print("  output     " + escape(dumps(run_json(record)["output"], indent=False)))
    out.print()
    if tally.rows:
        out.print(steps_table(list(tally.rows.values())))
    else:
        out.print("[dim]no steps journaled yet[/]")
    for call in calls:
        _print_call(ui, call)
    if prompts and not calls:
        ui.note("this run made no model calls")
    return ExitCode.COMPLETED


def _print_call(ui: Ui, call: transcript.ModelCall) -> None:
    """The exact messages sent and the response received, as the journal holds them."""
    body: list[str] = []
    for message in call.messages:
        body.append(f"[bold]{message.role}[/]" + (f" ({message.name})" if message.name else ""))
        if message.content:
            body.append(escape(message.content))
        for tool_call in message.tool_calls:
            body.append(escape(f"→ tool call {dumps(tool_call, indent=False)}"))
    body.append("")
    if call.response is None:
        body.append("[red]no response recorded[/] (in flight, failed or interrupted)")
    else:
        response = call.response
        usage = response.usage
        from ..models.pricing import cost

        body.append(
            f"[bold green]response[/] from {escape(response.model)} "
            f"({usage.input_tokens:,} in, {usage.output_tokens:,} out, "
            f"{format_cost(cost(usage, response.model))}, finish {escape(response.finish_reason)})"
        )
        if response.message.content:
            body.append(escape(response.message.content))
        for tool_call in response.message.tool_calls:
            body.append(escape(f"→ tool call {dumps(tool_call, indent=False)}"))
    title = f"{escape(call.key)} · {escape(call.model)}"
    ui.out.print(Panel("\n".join(body), title=title, title_align="left", expand=False))


async def send_signal(
    ui: Ui, url: str, run_id: str, name: str, payload: Any, signal_id: str | None
) -> ExitCode:
    """`overnight signal RUN NAME`."""
    async with Engine(url, worker=False) as engine:
        record = await engine.get_run(run_id)
        if record.status in TERMINAL:
            raise UserError(
                f"run {run_id!r} already ended ({record.status}); no signal sent, since nothing "
                "would ever read it"
            )
        sent = await engine.signal(run_id, name, payload, signal_id=signal_id)
    if sent:
        ui.note(f"sent signal {name!r} to run {run_id} (durable)", "green")
    else:
        ui.note(f"signal id {signal_id!r} was already sent to run {run_id}; ignored", "yellow")
    return ExitCode.COMPLETED


async def cancel(ui: Ui, url: str, run_id: str) -> ExitCode:
    """`overnight cancel RUN`."""
    async with Engine(url, worker=False) as engine:
        before = await engine.get_run(run_id)
        if before.status in TERMINAL:
            raise UserError(f"run {run_id!r} already ended ({before.status}); nothing to cancel")
        record = await engine.cancel(run_id)
    if record.status == "cancelled":
        ui.note(f"cancelled run {run_id}", "magenta")
    else:
        ui.note(
            f"asked the worker running {run_id} to cancel it; it stops within one heartbeat "
            f"(watch with `overnight show {run_id}`)",
            "magenta",
        )
    return ExitCode.COMPLETED


async def work(ui: Ui, url: str, **settings: Any) -> ExitCode:
    """`overnight worker`: the engine's worker loop until SIGTERM or Ctrl-C, then drain."""
    engine = Engine(url, **settings)
    # The handlers come first: a SIGTERM while the worker starts must drain it too, not kill it
    # with runs already claimed.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signals.SIGTERM, signals.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with engine:
            ui.note(
                f"worker {engine.worker_id} on {url}; Ctrl-C or SIGTERM stops it after letting "
                f"running steps finish (up to {engine.drain_seconds:g} s)",
                "green",
            )
            counts = await engine.store.count_runs()
            due = sum(counts.get(s, 0) for s in ("queued", "waiting", "running"))
            ui.note(f"{due} run(s) queued, waiting or running in this store")
            await stop.wait()
            busy = len(engine.active_runs())
            ui.note(f"draining: {busy} run(s) in progress finish their running steps", "yellow")
            await engine.stop_worker()
    finally:
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.remove_signal_handler(sig)
    ui.note("worker stopped; its unfinished runs are queued for the next worker", "green")
    return ExitCode.COMPLETED
