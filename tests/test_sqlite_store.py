"""What only the SQLite store does: its file format, refusing foreign files, group commit,
durability as another connection sees it, and several processes on one file."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from overnight import Engine, RunCancelledError, StoreFormatError, UserError
from overnight.store.base import RunRecord
from overnight.store.sqlite import SqliteStore
from overnight.store.sqlite_schema import APPLICATION_ID, LATEST, migrate
from tests.store_workflows import (
    hangs,
    naps,
    sees_own_intent,
    sees_previous_step,
    waits_for_go,
)

ROOT = Path(__file__).resolve().parent.parent


# -- (a) the schema ---------------------------------------------------------------------------

SCHEMA = [
    (
        "index",
        "runs_due",
        "runs",
        "CREATE INDEX runs_due ON runs (due_at) WHERE due_at IS NOT NULL",
    ),
    (
        "index",
        "runs_parent",
        "runs",
        "CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL",
    ),
    ("index", "runs_status", "runs", "CREATE INDEX runs_status ON runs (status, created_at)"),
    (
        "index",
        "schedules_due",
        "schedules",
        "CREATE INDEX schedules_due ON schedules (next_due) WHERE next_due IS NOT NULL",
    ),
    (
        "index",
        "signals_by_name",
        "signals",
        "CREATE INDEX signals_by_name ON signals (run_id, name, seq)",
    ),
    ("index", "sqlite_autoindex_runs_1", "runs", None),
    ("index", "sqlite_autoindex_schedules_1", "schedules", None),
    ("index", "sqlite_autoindex_signals_1", "signals", None),
    (
        "table",
        "blobs",
        "blobs",
        "CREATE TABLE blobs ( digest TEXT PRIMARY KEY, data BLOB NOT NULL ) WITHOUT ROWID",
    ),
    (
        "table",
        "entries",
        "entries",
        "CREATE TABLE entries ( run_id TEXT NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, "
        "kind TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (run_id, seq) ) WITHOUT ROWID",
    ),
    (
        "table",
        "runs",
        "runs",
        "CREATE TABLE runs ( id TEXT PRIMARY KEY, workflow TEXT NOT NULL, version TEXT NOT NULL, "
        "input BLOB NOT NULL, options BLOB NOT NULL, status TEXT NOT NULL, parent_id TEXT, "
        "due_at REAL, owner TEXT, epoch INTEGER NOT NULL DEFAULT 0, "
        "attempts INTEGER NOT NULL DEFAULT 0, recoveries INTEGER NOT NULL DEFAULT 0, "
        "waiting BLOB, cancel_requested INTEGER NOT NULL DEFAULT 0, result BLOB, error BLOB, "
        "note TEXT, continued_to TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL )",
    ),
    (
        "table",
        "schedules",
        "schedules",
        "CREATE TABLE schedules ( name TEXT PRIMARY KEY, cron TEXT NOT NULL, "
        "timezone TEXT NOT NULL, workflow TEXT NOT NULL, input BLOB NOT NULL, "
        "catch_up TEXT NOT NULL, paused INTEGER NOT NULL DEFAULT 0, next_due REAL, "
        "created_at REAL NOT NULL, updated_at REAL NOT NULL )",
    ),
    (
        "table",
        "signals",
        "signals",
        "CREATE TABLE signals ( seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
        "name TEXT NOT NULL, signal_id TEXT NOT NULL, payload BLOB NOT NULL, "
        "created_at REAL NOT NULL, UNIQUE (run_id, signal_id) )",
    ),
    ("table", "sqlite_sequence", "sqlite_sequence", "CREATE TABLE sqlite_sequence(name,seq)"),
]
"""sqlite_master after every migration. Whitespace runs are folded to one space (it does not
change the schema); everything else must match exactly. A new migration updates this."""


def schema_of(conn: sqlite3.Connection) -> list[tuple[str, str, str, str | None]]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
    return [(t, n, tbl, None if sql is None else " ".join(sql.split())) for t, n, tbl, sql in rows]


def pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    names = ("user_version", "application_id", "journal_mode", "synchronous")
    return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names}


async def test_schema_after_migrations(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    store = SqliteStore(path)
    await store.open()
    try:
        assert schema_of(store.conn) == SCHEMA
        assert pragmas(store.conn) == {
            "user_version": 2,
            "application_id": 0x4F564E54,  # "OVNT"
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
        }
        assert (LATEST, APPLICATION_ID) == (2, 0x4F564E54)
    finally:
        await store.close()
    # What the file itself keeps, as any other connection sees it; reopening changes nothing.
    other = sqlite3.connect(path)
    try:
        assert schema_of(other) == SCHEMA
        assert {k: v for k, v in pragmas(other).items() if k != "synchronous"} == {
            "user_version": 2,
            "application_id": 0x4F564E54,
            "journal_mode": "wal",
        }
    finally:
        other.close()
    again = SqliteStore(path)
    await again.open()
    try:
        assert schema_of(again.conn) == SCHEMA
    finally:
        await again.close()


@pytest.mark.parametrize(("option", "level"), [("NORMAL", 1), ("full", 2), ("EXTRA", 3)])
async def test_synchronous_can_be_chosen(tmp_path: Path, option: str, level: int) -> None:
    store = SqliteStore(f"{tmp_path / 'runs.db'}?synchronous={option}")
    await store.open()
    try:
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        await store.close()


def test_unknown_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="synchronous"):
        SqliteStore(f"{tmp_path / 'runs.db'}?fsync=yes")
    with pytest.raises(UserError, match="FULL"):
        SqliteStore(f"{tmp_path / 'runs.db'}?synchronous=SOMETIMES")


# -- (b) files that are not ours ----------------------------------------------------------------


def text_file(path: Path) -> None:
    path.write_bytes(b"name,age\nalice,3\nbob,4\n" * 400)


def short_text_file(path: Path) -> None:
    path.write_bytes(b"hello\n")


def binary_file(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(64 * 1024))


def other_apps_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [("keep me",), ("me too",)])
    conn.commit()
    conn.close()


def other_apps_empty_database(path: Path) -> None:
    """Marked by another application (GeoPackage's id) before it created any table."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 0x47504B47")
    conn.commit()
    conn.close()


def newer_overnight_store(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn, str(path))
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()


BAD_FILES = {
    "text": (text_file, "not a SQLite database", "Point the store URL at a new file"),
    "short-text": (short_text_file, "not a SQLite database", "Point the store URL at a new file"),
    "binary": (binary_file, "not a SQLite database", "Point the store URL at a new file"),
    "other-app": (other_apps_database, "belongs to something else", "Use another path"),
    "other-app-empty": (other_apps_empty_database, "belongs to something else", "another path"),
    "newer-overnight": (newer_overnight_store, "newer overnight", "Upgrade overnight"),
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", BAD_FILES)
async def test_a_file_that_is_not_ours_is_refused_and_left_untouched(
    tmp_path: Path, kind: str
) -> None:
    make, problem, fix = BAD_FILES[kind]
    path = tmp_path / "runs.db"
    make(path)
    before = digest(path)
    with pytest.raises(StoreFormatError) as raised:
        await SqliteStore(str(path)).open()
    message = str(raised.value)
    assert str(path) in message
    assert problem in message
    assert fix in message
    assert "left untouched" in message
    assert digest(path) == before


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.mkdir()
    with pytest.raises(UserError, match="is a directory; give a file path") as raised:
        await SqliteStore(str(path)).open()
    assert str(path) in str(raised.value)
    assert list(path.iterdir()) == []


async def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "runs.db"
    with pytest.raises(UserError, match="does not exist; create") as raised:
        await SqliteStore(str(path)).open()
    assert str(path) in str(raised.value)
    assert str(path.parent) in str(raised.value)
    assert not path.parent.exists()


# -- (c) group commit -------------------------------------------------------------------------


def count_entries(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT COUNT(*) FROM entries").fetchone()
    finally:
        conn.close()
    return int(count)


async def test_group_commit_shares_transactions_between_runs(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    store = SqliteStore(path)
    runs, steps = 1000, 3
    started = time.perf_counter()
    async with Engine(store, poll_seconds=0.05) as engine:
        handles = await asyncio.gather(
            *(engine.start(naps, steps, run_id=f"run-{i}") for i in range(runs))
        )
        results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
    elapsed = time.perf_counter() - started
    assert results == [sum(range(steps))] * runs
    entries = count_entries(path)
    assert entries == runs * (steps + 1)  # one done per step, one output per run
    print(
        f"\ngroup commit: {runs} runs of {steps} steps in {elapsed:.2f} s: "
        f"{entries} journal entries in {store.commits} transactions "
        f"({entries / store.commits:.1f} entries per commit)"
    )
    assert store.commits * 10 < entries


# -- (d) the durability barrier, seen from a second connection -----------------------------------


async def test_an_intent_is_committed_before_the_step_body_runs(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    async with Engine(SqliteStore(path), poll_seconds=0.05) as engine:
        seen = await engine.run(sees_own_intent, path, run_id="intent")
    assert seen == ["intent"]


async def test_strict_commits_each_step_before_the_next_starts(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    async with Engine(SqliteStore(path), poll_seconds=0.05, strict=True) as engine:
        seen = await engine.run(sees_previous_step, path, run_id="strict")
    assert seen == ["done"]


# -- (e) two processes on one file ----------------------------------------------------------------


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


async def until(
    what: str, check: Callable[[], Awaitable[Any]], *, timeout: float = 15.0, log: Path
) -> Any:
    """Poll until `check` returns something truthy; fail with the worker's log if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}; worker log:\n{read_log(log)}")
        await asyncio.sleep(0.02)


async def test_a_worker_process_and_a_steering_process_share_one_file(tmp_path: Path) -> None:
    path = str(tmp_path / "runs.db")
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "OVERNIGHT_CRASH_AT": "",
    }
    store = SqliteStore(path)
    async with Engine(store, worker=False, poll_seconds=0.02) as engine:
        await engine.start(waits_for_go, run_id="signalled")
        await engine.start(hangs, run_id="cancelled")
        with log.open("wb") as log_file:
            worker = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "tests" / "procs" / "sqlite_worker.py"),
                path,
                env=env,
                stdout=log_file,
                stderr=log_file,
            )
        try:

            async def status_is(run_id: str, status: str) -> RunRecord | None:
                record = await engine.get_run(run_id)
                return record if record.status == status else None

            async def hang_started() -> bool:
                journal = await engine.journal("cancelled")
                return any(e.key == "hang#1" and e.kind == "intent" for e in journal)

            await until(
                "the run waits for its signal", lambda: status_is("signalled", "waiting"), log=log
            )
            assert await engine.signal("signalled", "go", {"from": "the other process"})
            await until(
                "the signalled run completes", lambda: status_is("signalled", "completed"), log=log
            )
            assert await engine.result("signalled", timeout=1) == {"from": "the other process"}

            await until("the hanging step started", hang_started, log=log)
            record = await engine.cancel("cancelled")
            assert (record.status, record.cancel_requested) == ("running", True)  # flagged only
            await until(
                "the worker cancels the run", lambda: status_is("cancelled", "cancelled"), log=log
            )
            with pytest.raises(RunCancelledError):
                await engine.result("cancelled", timeout=1)
            kinds = [e.kind for e in await engine.journal("cancelled")]
            assert kinds == ["intent", "output"]
            assert store.commits > 0
        finally:
            if worker.returncode is None:
                worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(worker.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.kill()
                await worker.wait()
    assert worker.returncode == 0, read_log(log)
