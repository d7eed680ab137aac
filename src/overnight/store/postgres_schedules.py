"""The PostgreSQL store's schedule statements (see `Store.fire_schedule` for what firing promises).

Writes run inside the store's batch transaction. Firing locks the schedule's row with
`FOR UPDATE SKIP LOCKED`: a worker that finds it locked (another worker firing the same ticks, or
a pause in progress) leaves it at once, without waiting; one that gets the lock compares the row
with what it read, moves `next_due` on and creates the tick's runs, all committed together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import ScheduleNotFoundError
from . import postgres_ops as ops
from .base import NewRun, RunRecord, ScheduleRecord

COLUMNS = (
    "name, cron, timezone, workflow, input, catch_up, paused, next_due, created_at, updated_at"
)
SELECT = f"SELECT {COLUMNS} FROM schedules"


def record(row: Sequence[Any]) -> ScheduleRecord:
    values = list(row)
    values[4] = bytes(values[4])
    return ScheduleRecord(*values)


async def put(tx: ops.Tx, s: ScheduleRecord) -> ScheduleRecord:
    cur = await tx.conn.execute(
        f"INSERT INTO schedules ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, timezone = excluded.timezone, "
        "workflow = excluded.workflow, input = excluded.input, catch_up = excluded.catch_up, "
        "paused = excluded.paused, next_due = excluded.next_due, "
        f"updated_at = excluded.updated_at RETURNING {COLUMNS}",
        (
            s.name,
            s.cron,
            s.timezone,
            s.workflow,
            s.input,
            s.catch_up,
            s.paused,
            s.next_due,
            s.created_at,
            s.updated_at,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return record(row)


async def remove(tx: ops.Tx, name: str) -> bool:
    cur = await tx.conn.execute("DELETE FROM schedules WHERE name = %s", (name,))
    return cur.rowcount > 0


async def pause(
    tx: ops.Tx, name: str, paused: bool, next_due: float | None, now: float
) -> ScheduleRecord:
    cur = await tx.conn.execute(
        "UPDATE schedules SET paused = %s, next_due = %s, updated_at = %s WHERE name = %s "
        f"RETURNING {COLUMNS}",
        (paused, next_due, now, name),
    )
    row = await cur.fetchone()
    if row is None:
        raise ScheduleNotFoundError(name)
    return record(row)


async def fire(
    tx: ops.Tx, s: ScheduleRecord, next_due: float, runs: Sequence[NewRun], now: float
) -> list[RunRecord] | None:
    cur = await tx.conn.execute(
        "SELECT paused, next_due, updated_at FROM schedules WHERE name = %s FOR UPDATE SKIP LOCKED",
        (s.name,),
    )
    row = await cur.fetchone()
    if row is None or row[0] or (row[1], row[2]) != (s.next_due, s.updated_at):
        return None  # removed, paused, changed, fired by another worker, or being fired now
    await tx.conn.execute(
        "UPDATE schedules SET next_due = %s, updated_at = %s WHERE name = %s",
        (next_due, now, s.name),
    )
    if not runs:
        return []
    return [run for run, _ in await ops.create_many(tx, [(new, now) for new in runs])]
