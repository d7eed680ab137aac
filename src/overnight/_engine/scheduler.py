"""The engine's side of schedules: putting them in the store, and firing their due ticks.

Workers call `fire_due` at every poll. It reads the due schedules, works out which ticks to start
(`overnight.schedule.plan`, by each schedule's catch-up policy) and asks the store to fire them:
the store moves the schedule on and creates the ticks' runs in one transaction, unless another
worker fired the schedule first. Run ids come from the schedule's name and the tick, so even a
tick fired twice (it cannot be: see `Store.fire_schedule`) would still be one run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .. import schedule as sched
from ..errors import ScheduleNotFoundError, SerializationError, UserError
from ..store.base import NewRun, RunRecord, ScheduleRecord
from ..workflow import Workflow
from . import codec
from .run import RunOptions

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger("overnight.schedule")

DUE_LIMIT = 100
"""Schedules fired per poll, at most; the rest are fired at the next poll."""


async def add(
    engine: Engine,
    name: str,
    cron: str,
    workflow: Workflow[Any, Any] | str,
    input: Any,
    *,
    timezone: str,
    catch_up: str,
    now: float,
) -> ScheduleRecord:
    """Create or replace a schedule (see `Engine.add_schedule`)."""
    sched.check_name(name)
    policy = sched.check_catch_up(catch_up)
    sched.check_cron(cron, timezone)
    wf = engine.resolve_workflow(workflow) if isinstance(workflow, str) else workflow
    if not isinstance(wf, Workflow):
        raise UserError(f"{workflow!r} is not a workflow; decorate it with @workflow")
    engine.register(wf)  # resolvable by its ref in this process, as `Engine.start` does
    try:
        encoded = codec.dumps(input)
    except SerializationError as exc:
        raise SerializationError(f"the input of schedule {name!r}: {exc}") from None
    record = ScheduleRecord(
        name=name,
        cron=cron,
        timezone=timezone,
        workflow=wf.ref,
        input=encoded,
        catch_up=policy,
        paused=False,
        next_due=sched.next_tick(cron, timezone, now),
        created_at=now,
        updated_at=now,
    )
    return await engine.store.put_schedule(record)


async def get(engine: Engine, name: str) -> ScheduleRecord:
    found = await engine.store.get_schedule(name)
    if found is None:
        raise ScheduleNotFoundError(name)
    return found


async def set_paused(engine: Engine, name: str, paused: bool, now: float) -> ScheduleRecord:
    """Pause (no ticks) or resume (from the next tick after `now`) a schedule."""
    found = await get(engine, name)
    if found.paused == paused:
        return found  # resuming a running schedule must not skip the ticks it has due
    next_due = None if paused else sched.next_tick(found.cron, found.timezone, now)
    return await engine.store.pause_schedule(name, paused=paused, next_due=next_due, now=now)


async def fire_due(engine: Engine, now: float) -> list[RunRecord]:
    """Start the runs of every due tick (by catch-up policy); return the runs fired here."""
    started: list[RunRecord] = []
    for record in await engine.store.due_schedules(now=now, limit=DUE_LIMIT):
        try:
            fired = await _fire(engine, record, now)
        except Exception:
            # One broken schedule (a workflow that no longer imports here) must not stop the
            # others, nor the worker; its ticks stay due, for this worker or another.
            log.exception("schedule %r: firing its due ticks failed; trying again", record.name)
            continue
        started.extend(fired)
    return started


async def _fire(engine: Engine, record: ScheduleRecord, now: float) -> list[RunRecord]:
    version = engine.resolve_workflow(record.workflow).version
    plan = sched.plan(record, now)
    runs = [
        NewRun(
            id=sched.tick_run_id(record.name, tick),
            workflow=record.workflow,
            version=version,
            input=record.input,
            options=RunOptions(scheduled_at=tick).encode(),
        )
        for tick in plan.ticks
    ]
    fired = await engine.store.fire_schedule(record, next_due=plan.next_due, runs=runs, now=now)
    if fired is None:
        return []  # another worker fired it first, or it changed since it was read
    if plan.missed:
        more = "" if plan.counted else "at least "
        log.warning(
            "schedule %r: %s%d tick(s) missed while no worker ran start no run (catch-up "
            "policy %r%s)",
            record.name,
            more,
            plan.missed,
            record.catch_up,
            f", at most {sched.MAX_CATCH_UP} runs" if record.catch_up == "all" else "",
        )
    return fired
