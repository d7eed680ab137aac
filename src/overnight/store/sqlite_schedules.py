"""The SQLite store's schedule statements (see `Store.fire_schedule` for what firing promises).

Writes run inside the store's batch transaction (`BEGIN IMMEDIATE`: the one writer), so the
compare-and-set of `advance` and the runs created with it commit together or not at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ..errors import ScheduleNotFoundError
from .base import ScheduleRecord

COLUMNS = (
    "name, cron, timezone, workflow, input, catch_up, paused, next_due, created_at, updated_at"
)


def record(row: Sequence[Any]) -> ScheduleRecord:
    return ScheduleRecord(
        name=row[0],
        cron=row[1],
        timezone=row[2],
        workflow=row[3],
        input=bytes(row[4]),
        catch_up=row[5],
        paused=bool(row[6]),
        next_due=row[7],
        created_at=row[8],
        updated_at=row[9],
    )


def get(conn: sqlite3.Connection, name: str) -> ScheduleRecord | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM schedules WHERE name = ?", (name,)).fetchone()
    return None if row is None else record(row)


def list_all(conn: sqlite3.Connection) -> list[ScheduleRecord]:
    rows = conn.execute(f"SELECT {COLUMNS} FROM schedules ORDER BY name").fetchall()
    return [record(r) for r in rows]


def due(conn: sqlite3.Connection, now: float, limit: int) -> list[ScheduleRecord]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM schedules WHERE next_due <= ? AND paused = 0 "
        "ORDER BY next_due, name LIMIT ?",
        (now, max(limit, 0)),
    ).fetchall()
    return [record(r) for r in rows]


def put(conn: sqlite3.Connection, s: ScheduleRecord) -> ScheduleRecord:
    conn.execute(
        f"INSERT INTO schedules ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, timezone = excluded.timezone, "
        "workflow = excluded.workflow, input = excluded.input, catch_up = excluded.catch_up, "
        "paused = excluded.paused, next_due = excluded.next_due, updated_at = excluded.updated_at",
        (
            s.name,
            s.cron,
            s.timezone,
            s.workflow,
            s.input,
            s.catch_up,
            int(s.paused),
            s.next_due,
            s.created_at,
            s.updated_at,
        ),
    )
    stored = get(conn, s.name)
    assert stored is not None
    return stored


def remove(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount > 0


def pause(
    conn: sqlite3.Connection, name: str, paused: bool, next_due: float | None, now: float
) -> ScheduleRecord:
    cursor = conn.execute(
        "UPDATE schedules SET paused = ?, next_due = ?, updated_at = ? WHERE name = ?",
        (int(paused), next_due, now, name),
    )
    if cursor.rowcount == 0:
        raise ScheduleNotFoundError(name)
    stored = get(conn, name)
    assert stored is not None
    return stored


def advance(conn: sqlite3.Connection, s: ScheduleRecord, next_due: float, now: float) -> bool:
    """Move a schedule on to `next_due` if it is still as `s` read it (compare-and-set)."""
    cursor = conn.execute(
        "UPDATE schedules SET next_due = ?, updated_at = ? "
        "WHERE name = ? AND paused = 0 AND next_due = ? AND updated_at = ?",
        (next_due, now, s.name, s.next_due, s.updated_at),
    )
    return cursor.rowcount > 0
