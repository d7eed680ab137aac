"""SQLite schema: numbered, forward-only migrations, and the checks made before touching a file.

A file is ours when its `application_id` is `APPLICATION_ID`; its `user_version` is the number of
the last migration applied. Before anything is written, `check_file` refuses a file that is not a
SQLite database, a database that belongs to something else, or one written by a newer overnight,
so a wrong path never damages someone else's data.
"""

from __future__ import annotations

import os
import sqlite3

from ..errors import StoreFormatError

APPLICATION_ID = 0x4F564E54  # "OVNT"

MIGRATIONS: list[str] = [
    # 1: runs, their journals, signals and content-addressed blobs.
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        workflow TEXT NOT NULL,
        version TEXT NOT NULL,
        input BLOB NOT NULL,
        options BLOB NOT NULL,
        status TEXT NOT NULL,
        parent_id TEXT,
        due_at REAL,
        owner TEXT,
        epoch INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        recoveries INTEGER NOT NULL DEFAULT 0,
        waiting BLOB,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        result BLOB,
        error BLOB,
        note TEXT,
        continued_to TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX runs_due ON runs (due_at) WHERE due_at IS NOT NULL;
    CREATE INDEX runs_status ON runs (status, created_at);
    CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
    CREATE TABLE entries (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE signals (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        signal_id TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (run_id, signal_id)
    );
    CREATE INDEX signals_by_name ON signals (run_id, name, seq);
    CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        data BLOB NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: schedules (cron), fired by workers into runs with ids `sched:<name>:<tick>`.
    """
    CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        cron TEXT NOT NULL,
        timezone TEXT NOT NULL,
        workflow TEXT NOT NULL,
        input BLOB NOT NULL,
        catch_up TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        next_due REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX schedules_due ON schedules (next_due) WHERE next_due IS NOT NULL;
    """,
]
LATEST = len(MIGRATIONS)


def _check_size(path: str) -> None:
    """Refuse a non-empty file too short to be a SQLite database (one page, 512 bytes or more).

    SQLite itself takes a file shorter than its 100-byte header for an empty database and would
    write over it. Only the size is looked at: opening and closing the file here would drop the
    POSIX locks SQLite holds on it through other connections of this process.
    """
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return
    if 0 < size < 512:
        raise StoreFormatError(
            f"{path!r} is not an overnight store: it is not a SQLite database. Point the store "
            "URL at a new file or an existing overnight store; this file was left untouched"
        )


def check_file(conn: sqlite3.Connection, path: str) -> int:
    """The schema version of an overnight store file (0 if new); raise if it is not ours."""
    _check_size(path)
    try:
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]
    except sqlite3.DatabaseError as exc:
        raise StoreFormatError(
            f"{path!r} is not an overnight store: it is not a SQLite database ({exc}). "
            "Point the store URL at a new file or an existing overnight store; "
            "this file was left untouched"
        ) from None
    if application_id != APPLICATION_ID:
        # New only if nothing marks it as anyone's: no schema, no application id, no version.
        marks = []
        if names:
            more = ", ..." if len(names) > 5 else ""
            marks.append(f"it holds {', '.join(names[:5])}{more}")
        if application_id:
            marks.append(f"its application_id is {application_id:#x}")
        if version:
            marks.append(f"its user_version is {version}")
        if marks:
            raise StoreFormatError(
                f"{path!r} is a SQLite database that belongs to something else "
                f"({'; '.join(marks)}). Use another path for the overnight store; "
                "this file was left untouched"
            )
        return 0
    if version > LATEST:
        raise StoreFormatError(
            f"{path!r} was written by a newer overnight (schema {version}; this version knows "
            f"up to {LATEST}). Upgrade overnight to open it; the file was left untouched"
        )
    return int(version)


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply the migrations this file lacks, in one transaction (safe with several processes)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = check_file(conn, path)  # again, under the write lock
        for number in range(current + 1, LATEST + 1):
            for statement in MIGRATIONS[number - 1].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {LATEST}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
