"""What only the PostgreSQL store does, seen from one process: its schema and migrations
(concurrent, refusing what is not ours), its URL, text it refuses, and group commit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from overnight import Engine, StoreError, StoreFormatError, UserError
from overnight.store import open_store
from overnight.store.base import Lease
from overnight.store.postgres import PostgresStore
from overnight.store.postgres_schema import LATEST, LOCK_CLASS, VERSION_TABLE
from tests.conformance.support import T, claim, entry, new_run, write
from tests.conftest import POSTGRES_URL
from tests.pg_support import execute, opened, query, schema_fixture, until, url_for
from tests.store_workflows import naps

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def schema() -> Iterator[str]:
    yield from schema_fixture()


# -- (a) the schema ---------------------------------------------------------------------------

COLUMNS = {
    "runs": [
        ("id", "text", "NO", None, "C"),
        ("workflow", "text", "NO", None, None),
        ("version", "text", "NO", None, None),
        ("input", "bytea", "NO", None, None),
        ("options", "bytea", "NO", None, None),
        ("status", "text", "NO", None, None),
        ("parent_id", "text", "YES", None, "C"),
        ("due_at", "double precision", "YES", None, None),
        ("owner", "text", "YES", None, None),
        ("epoch", "bigint", "NO", "0", None),
        ("attempts", "bigint", "NO", "0", None),
        ("recoveries", "bigint", "NO", "0", None),
        ("waiting", "bytea", "YES", None, None),
        ("cancel_requested", "boolean", "NO", "false", None),
        ("result", "bytea", "YES", None, None),
        ("error", "bytea", "YES", None, None),
        ("note", "text", "YES", None, None),
        ("continued_to", "text", "YES", None, "C"),
        ("created_at", "double precision", "NO", None, None),
        ("updated_at", "double precision", "NO", None, None),
    ],
    "entries": [
        ("run_id", "text", "NO", None, "C"),
        ("seq", "bigint", "NO", None, None),
        ("key", "text", "NO", None, None),
        ("kind", "text", "NO", None, None),
        ("data", "bytea", "NO", None, None),
    ],
    "signals": [
        ("seq", "bigint", "NO", None, None),
        ("run_id", "text", "NO", None, "C"),
        ("name", "text", "NO", None, None),
        ("signal_id", "text", "NO", None, None),
        ("payload", "bytea", "NO", None, None),
        ("created_at", "double precision", "NO", None, None),
    ],
    "blobs": [("digest", "text", "NO", None, None), ("data", "bytea", "NO", None, None)],
    "schedules": [
        ("name", "text", "NO", None, "C"),
        ("cron", "text", "NO", None, None),
        ("timezone", "text", "NO", None, None),
        ("workflow", "text", "NO", None, None),
        ("input", "bytea", "NO", None, None),
        ("catch_up", "text", "NO", None, None),
        ("paused", "boolean", "NO", "false", None),
        ("next_due", "double precision", "YES", None, None),
        ("created_at", "double precision", "NO", None, None),
        ("updated_at", "double precision", "NO", None, None),
    ],
    VERSION_TABLE: [
        ("version", "integer", "NO", None, None),
        ("applied_at", "timestamp with time zone", "NO", "now()", None),
    ],
}
INDEXES = [
    ("blobs", "CREATE UNIQUE INDEX blobs_pkey ON {s}.blobs USING btree (digest)"),
    ("entries", "CREATE UNIQUE INDEX entries_pkey ON {s}.entries USING btree (run_id, seq)"),
    (
        VERSION_TABLE,
        f"CREATE UNIQUE INDEX {VERSION_TABLE}_pkey ON {{s}}.{VERSION_TABLE} USING btree (version)",
    ),
    ("runs", "CREATE INDEX runs_due ON {s}.runs USING btree (due_at) WHERE (due_at IS NOT NULL)"),
    (
        "runs",
        "CREATE INDEX runs_parent ON {s}.runs USING btree (parent_id) "
        "WHERE (parent_id IS NOT NULL)",
    ),
    ("runs", "CREATE UNIQUE INDEX runs_pkey ON {s}.runs USING btree (id)"),
    ("runs", "CREATE INDEX runs_status ON {s}.runs USING btree (status, created_at)"),
    (
        "schedules",
        "CREATE INDEX schedules_due ON {s}.schedules USING btree (next_due) "
        "WHERE (next_due IS NOT NULL)",
    ),
    ("schedules", "CREATE UNIQUE INDEX schedules_pkey ON {s}.schedules USING btree (name)"),
    ("signals", "CREATE INDEX signals_by_name ON {s}.signals USING btree (run_id, name, seq)"),
    ("signals", "CREATE UNIQUE INDEX signals_pkey ON {s}.signals USING btree (seq)"),
    (
        "signals",
        "CREATE UNIQUE INDEX signals_run_id_signal_id_key ON {s}.signals "
        "USING btree (run_id, signal_id)",
    ),
]
"""The schema after every migration. A new migration updates these."""


def schema_of(schema: str) -> tuple[dict[str, list[tuple[Any, ...]]], list[tuple[str, str]]]:
    columns: dict[str, list[tuple[Any, ...]]] = {}
    for table, *column in query(
        "SELECT table_name, column_name, data_type, is_nullable, column_default, collation_name "
        "FROM information_schema.columns WHERE table_schema = %s "
        "ORDER BY table_name, ordinal_position",
        schema,
    ):
        columns.setdefault(table, []).append(tuple(column))
    indexes = query(
        "SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY indexname",
        schema,
    )
    return columns, [(t, d) for t, d in indexes]


async def test_schema_after_migrations(schema: str) -> None:
    store = await opened(url_for(schema))
    try:
        assert store.migrated == LATEST == 2
        columns, indexes = schema_of(schema)
        assert columns == COLUMNS
        assert indexes == sorted(
            ((t, d.format(s=schema)) for t, d in INDEXES),
            key=lambda x: x[1].split(" INDEX ")[1],
        )
        versions = query(
            sql.SQL("SELECT version FROM {}.{}")
            .format(sql.Identifier(schema), sql.Identifier(VERSION_TABLE))
            .as_string(None)
        )
        assert sorted(versions) == [(1,), (2,)]
    finally:
        await store.close()
    again = await opened(url_for(schema))  # reopening changes nothing
    try:
        assert again.migrated == 0
        assert schema_of(schema) == (columns, indexes)
    finally:
        await again.close()


async def test_migrations_applied_by_processes_starting_together_apply_once(
    schema: str,
) -> None:
    """Several worker processes start at the same instant on a new schema: exactly one applies
    each migration, the others wait for it and find the schema current; none fails."""
    url = url_for(schema)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    start_at = time.time() + 2.0  # after every interpreter has started and imported psycopg
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(ROOT / "tests" / "procs" / "postgres_open.py"),
            url,
            str(start_at),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    # Stores of this process join the race too, at the same instant, on connections of their
    # own.
    stores = [PostgresStore(url) for _ in range(4)]
    await asyncio.sleep(start_at - time.time())
    async with asyncio.timeout(60):
        *outputs, _ = await asyncio.gather(
            *(p.communicate() for p in procs), asyncio.gather(*(s.open() for s in stores))
        )
    for store in stores:
        await store.close()
    assert [p.returncode for p in procs] == [0] * 4, [err.decode() for _, err in outputs]
    applied = [int(out) for out, _ in outputs] + [s.migrated for s in stores]
    assert sorted(applied) == [0] * 7 + [LATEST]
    assert query(
        sql.SQL("SELECT version FROM {}.{}")
        .format(sql.Identifier(schema), sql.Identifier(VERSION_TABLE))
        .as_string(None)
    ) == [(v,) for v in range(1, LATEST + 1)]
    assert schema_of(schema)[0] == COLUMNS


async def test_starters_queue_on_the_migration_lock_and_one_migrates(schema: str) -> None:
    """Deterministically, what the race above relies on: starters that found a new schema wait
    for the advisory lock; when it is released, the first migrates and the others find the
    schema current."""
    waiting_sql = (
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND classid = %s::oid AND objid = hashtext(%s)::oid"
    )
    stores = [PostgresStore(url_for(schema, listen="false")) for _ in range(3)]
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as holder:
        async with holder.transaction():
            await holder.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, schema)
            )
            opening = [asyncio.create_task(s.open()) for s in stores]
            await until(
                "every starter waits for the lock",
                lambda: query(waiting_sql, LOCK_CLASS, schema) == [(3,)],
            )
            assert not any(task.done() for task in opening)
            assert query("SELECT COUNT(*) FROM pg_namespace WHERE nspname = %s", schema) == [(0,)]
        await asyncio.gather(*opening)  # the lock went with the holder's transaction
    try:
        assert sorted(s.migrated for s in stores) == [0, 0, LATEST]
    finally:
        for store in stores:
            await store.close()


# -- (b) schemas that are not ours --------------------------------------------------------------


async def test_a_schema_that_belongs_to_something_else_is_refused_and_left_untouched(
    schema: str,
) -> None:
    quoted = sql.Identifier(schema)
    execute(sql.SQL("CREATE SCHEMA {}").format(quoted))
    execute(sql.SQL("CREATE TABLE {}.notes (id serial PRIMARY KEY, body text)").format(quoted))
    execute(sql.SQL("INSERT INTO {}.notes (body) VALUES ('keep me'), ('me too')").format(quoted))
    with pytest.raises(StoreFormatError) as raised:
        await PostgresStore(url_for(schema)).open()
    message = str(raised.value)
    assert f"schema {schema!r}" in message
    assert "belongs to something else (it holds notes, notes_id_seq)" in message
    assert "Use another schema" in message
    assert "?schema=NAME" in message
    assert "left untouched" in message
    assert PostgresStore(url_for(schema)).where in message  # where: database, host, port
    tables = query("SELECT tablename FROM pg_tables WHERE schemaname = %s", schema)
    assert tables == [("notes",)]
    rows = query(sql.SQL("SELECT body FROM {}.notes ORDER BY id").format(quoted).as_string(None))
    assert rows == [("keep me",), ("me too",)]


async def test_a_schema_written_by_a_newer_overnight_is_refused_and_left_untouched(
    schema: str,
) -> None:
    store = await opened(url_for(schema))
    await store.create_run(new_run("r1"), now=T)
    await store.close()
    execute(
        sql.SQL("INSERT INTO {}.{} (version) VALUES (%s)").format(
            sql.Identifier(schema), sql.Identifier(VERSION_TABLE)
        ),
        LATEST + 1,
    )
    before = schema_of(schema)
    with pytest.raises(StoreFormatError) as raised:
        await PostgresStore(url_for(schema)).open()
    message = str(raised.value)
    assert f"schema {schema!r}" in message
    assert f"newer overnight (schema {LATEST + 1}; this version knows up to {LATEST})" in message
    assert "Upgrade overnight" in message
    assert "left untouched" in message
    assert schema_of(schema) == before
    assert query(
        sql.SQL("SELECT id FROM {}.runs").format(sql.Identifier(schema)).as_string(None)
    ) == [("r1",)]


async def test_an_empty_schema_made_beforehand_is_used(schema: str) -> None:
    """An administrator may create the schema (and grant it) before the first worker starts."""
    execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    store = await opened(url_for(schema))
    try:
        assert store.migrated == LATEST
        assert (await store.create_run(new_run("r1"), now=T))[1] is True
    finally:
        await store.close()


# -- (c) the URL --------------------------------------------------------------------------------


def test_open_store_picks_postgres_for_both_schemes() -> None:
    for scheme in ("postgresql", "postgres"):
        store = open_store(f"{scheme}://u@db.example:6543/prod?schema=runs_1&pool_max=20")
        assert isinstance(store, PostgresStore)
        assert (store.schema, store.config.pool_min, store.config.pool_max) == ("runs_1", 1, 20)
        assert store.config.listen is True
        assert store.where == "database 'prod' on db.example:6543"
    default = PostgresStore("postgresql://u@localhost/db")
    assert (default.schema, default.config.pool_max) == ("overnight", 10)
    assert (
        default.config.connect_kwargs["options"]
        == "-c idle_in_transaction_session_timeout=5000 -c search_path=overnight"
    )
    assert default.config.connect_kwargs["application_name"] == "overnight overnight"


def test_libpq_parameters_pass_through_and_options_are_kept() -> None:
    store = PostgresStore(
        "postgresql://u@h/db?sslmode=disable&options=-c%20statement_timeout%3D5000"
        "&application_name=mine&listen=off&schema=s"
    )
    assert "sslmode=disable" in store.config.conninfo
    assert "schema" not in store.config.conninfo
    assert "listen" not in store.config.conninfo
    assert (
        store.config.connect_kwargs["options"]
        == "-c statement_timeout=5000 -c idle_in_transaction_session_timeout=5000 -c search_path=s"
    )
    assert "application_name" not in store.config.connect_kwargs  # the user's is kept
    assert store.config.connect_kwargs["keepalives_idle"] == 30  # a silent server is noticed
    mine = PostgresStore("postgresql://u@h/db?keepalives_idle=5")
    assert "keepalives_idle" not in mine.config.connect_kwargs  # the URL's is kept
    assert "keepalives_idle=5" in mine.config.conninfo
    assert store.config.listen is False


@pytest.mark.parametrize(
    ("query_string", "complaint"),
    [
        ("schema=Runs", "lower-case letters"),
        ("schema=1st", "not starting with a digit"),
        ("schema=a-b", "lower-case letters"),
        ("pool_max=0", "pool_max must be a whole number >= 1"),
        ("pool_min=5&pool_max=2", "pool_max must be a whole number >= 5"),
        ("pool_min=x", "pool_min must be a whole number"),
        ("listen=maybe", "listen must be true or false"),
    ],
)
def test_bad_options_are_refused(query_string: str, complaint: str) -> None:
    with pytest.raises(UserError, match=complaint):
        PostgresStore(f"postgresql://u@h/db?{query_string}")


async def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    store = PostgresStore("postgresql://me:s3cret@127.0.0.1:1/nowhere?connect_timeout=2")
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as raised:
        await store.open()
    assert "database 'nowhere' on 127.0.0.1:1" in str(raised.value)
    assert "s3cret" not in str(raised.value)


def test_without_psycopg_the_error_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"  # as if it were not installed
        "from overnight.store import open_store\n"
        "try:\n"
        "    open_store('postgresql://u@h/db')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.startswith("UserError the PostgreSQL store needs psycopg 3")
    assert 'pip install "overnight[postgres]"' in done.stdout


# -- (d) text PostgreSQL cannot hold ------------------------------------------------------------


async def test_text_with_a_nul_character_is_refused_before_the_shared_transaction(
    schema: str,
) -> None:
    """PostgreSQL text cannot hold NUL: such a value would fail the whole group commit (every
    run's writes in it), so it is refused on its own, and the other writes of the batch land."""
    store = await opened(url_for(schema))
    try:
        await store.create_run(new_run("ok"), now=T)
        [run] = await claim(store, now=T)
        lease = Lease(run.id, "w1", run.epoch)
        with pytest.raises(UserError, match="NUL"):
            await store.create_run(new_run("bad\x00id"), now=T)
        with pytest.raises(UserError, match="NUL"):
            await store.send_signal("ok", "go\x00", b"1", "s1", now=T)
        with pytest.raises(UserError, match="NUL"):
            store.append(lease, [entry(0, "k\x00")], {})
        with pytest.raises(UserError, match="NUL"):
            await store.control("ok", [("k\x00", "control", b"{}")], now=T)
        await write(store, lease, [entry(0)])  # the store goes on
        await store.suspend(lease, status="parked", wait=None, note="why\x00not", now=T)
        parked = await store.get_run("ok")
        assert parked is not None
        assert (parked.status, parked.note) == ("parked", "why\ufffdnot")  # a note is kept
        assert await store.get_run("bad\x00id") is None
    finally:
        await store.close()


# -- (e) group commit ---------------------------------------------------------------------------


async def test_group_commit_shares_transactions_between_runs(schema: str) -> None:
    store = PostgresStore(url_for(schema))
    runs, steps = 300, 3
    started = time.perf_counter()
    async with Engine(store, poll_seconds=0.05) as engine:
        handles = await asyncio.gather(
            *(engine.start(naps, steps, run_id=f"run-{i}") for i in range(runs))
        )
        results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    elapsed = time.perf_counter() - started
    assert results == [sum(range(steps))] * runs
    (entries,) = query(
        sql.SQL("SELECT COUNT(*) FROM {}.entries").format(sql.Identifier(schema)).as_string(None)
    )[0]
    assert entries == runs * (steps + 1)  # one done per step, one output per run
    print(
        f"\ngroup commit: {runs} runs of {steps} steps in {elapsed:.2f} s "
        f"({runs * steps / elapsed:.0f} steps/s): {entries} journal entries in "
        f"{store.commits} transactions ({entries / store.commits:.1f} entries per commit)"
    )
    assert store.commits * 5 < entries


def test_idle_transaction_timeout_is_an_option() -> None:
    store = PostgresStore("postgresql://u@h/db?idle_tx_timeout=2")
    assert "-c idle_in_transaction_session_timeout=2000" in store.config.connect_kwargs["options"]
    with pytest.raises(UserError, match="idle_tx_timeout must be a whole number >= 1"):
        PostgresStore("postgresql://u@h/db?idle_tx_timeout=0")
