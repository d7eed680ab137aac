"""What only the PostgreSQL store does: its schema and migrations (concurrent, refusing what is not
ours), its URL, wake-ups by LISTEN/NOTIFY and the polling fallback, connections lost under load,
concurrent claims from several stores, and group commit."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from overnight import Engine, StoreError, StoreFormatError, UserError
from overnight.store import open_store
from overnight.store.base import Lease, Wait
from overnight.store.postgres import PostgresStore
from overnight.store.postgres_schema import LATEST, LOCK_CLASS, VERSION_TABLE
from tests import pg_workflows
from tests.conformance.support import LEASE, T, claim, entry, finish, new_run, write
from tests.conftest import POSTGRES_URL, fresh_schema, with_options
from tests.helpers import until_status
from tests.pg_workflows import stamps, waits_then_stamps
from tests.store_workflows import naps

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def schema() -> Iterator[str]:
    with fresh_schema() as name:
        yield name


def url_for(schema: str, **options: str | int) -> str:
    return with_options(POSTGRES_URL, schema=schema, pool_max=4, **options)


def query(text: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        return conn.execute(text, params or None).fetchall()  # type: ignore[arg-type]


def execute(statement: sql.Composable | str, *params: Any) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(statement, params or None)  # type: ignore[arg-type]


async def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll `check` (a function, or one returning an awaitable) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


async def opened(url: str, **kwargs: Any) -> PostgresStore:
    store = PostgresStore(url, **kwargs)
    await store.open()
    return store


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
        assert store.migrated == LATEST == 1
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
        assert versions == [(1,)]
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
    assert default.config.connect_kwargs["options"] == "-c search_path=overnight"
    assert default.config.connect_kwargs["application_name"] == "overnight overnight"


def test_libpq_parameters_pass_through_and_options_are_kept() -> None:
    store = PostgresStore(
        "postgresql://u@h/db?sslmode=disable&options=-c%20statement_timeout%3D5000"
        "&application_name=mine&listen=off&schema=s"
    )
    assert "sslmode=disable" in store.config.conninfo
    assert "schema" not in store.config.conninfo
    assert "listen" not in store.config.conninfo
    assert store.config.connect_kwargs["options"] == "-c statement_timeout=5000 -c search_path=s"
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


# -- (d) wake-ups: LISTEN/NOTIFY, and polling when notifications are lost -----------------------


@pytest.fixture
async def client(schema: str) -> AsyncIterator[Engine]:
    """An engine that only starts and steers runs, on a store of its own (as another process)."""
    async with Engine(PostgresStore(url_for(schema)), worker=False) as engine:
        yield engine


async def pickup_latency(client: Engine, worker: Engine) -> float:
    """Seconds from a run's start (committed, by the client) to its first step (in the worker)."""
    started = time.time()
    handle = await client.start(stamps)
    ran_at: float = await worker.result(handle.run_id, timeout=10)
    return ran_at - started


async def test_an_idle_worker_is_woken_by_notify_at_once(schema: str, client: Engine) -> None:
    """The worker polls every 30 s: only the notification can make it claim sooner."""
    async with Engine(PostgresStore(url_for(schema)), poll_seconds=30) as worker:
        await pickup_latency(client, worker)  # warm up: imports, prepared statements
        latencies = []
        for _ in range(10):
            await asyncio.sleep(0.05)  # idle again: waiting out its 30 s poll
            latencies.append(await pickup_latency(client, worker))
    median = statistics.median(latencies)
    print(
        f"\nNOTIFY wake-up: start -> first step median {median * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} runs (poll interval 30 s)"
    )
    assert median < 0.1
    assert max(latencies) < 1.0


async def test_runs_are_picked_up_by_polling_while_the_listener_is_down(
    schema: str, client: Engine
) -> None:
    store = PostgresStore(url_for(schema), listen_retry_seconds=600)
    async with Engine(store, poll_seconds=0.2) as worker:
        listener = store.listener
        assert listener is not None
        assert listener.listening.is_set()
        execute("SELECT pg_terminate_backend(%s)", listener.backend_pid)
        await until("the listener notices", lambda: not listener.listening.is_set())
        latencies = [await pickup_latency(client, worker) for _ in range(3)]
        assert not listener.listening.is_set()  # still down: these were found by polling
    print(f"\npolling fallback (every 0.2 s): pickups after {[round(x, 3) for x in latencies]} s")
    assert max(latencies) < 2.0


async def test_the_listener_reconnects_and_wakes_the_worker_again(
    schema: str, client: Engine
) -> None:
    store = PostgresStore(url_for(schema), listen_retry_seconds=0.1)
    async with Engine(store, poll_seconds=30) as worker:
        listener = store.listener
        assert listener is not None
        killed = listener.backend_pid
        execute("SELECT pg_terminate_backend(%s)", killed)
        await until("the listener is back", lambda: listener.backend_pid not in (killed, None))
        assert listener.listening.is_set()
        assert await pickup_latency(client, worker) < 1.0  # notified again, not polled (30 s)


async def test_connections_killed_under_a_working_engine_are_replaced(
    schema: str, client: Engine
) -> None:
    """Every connection of both stores is terminated (as by a server-side idle timeout or a
    failover) while a run waits for a signal: the signal is still sent, the run completes."""
    store = PostgresStore(url_for(schema), listen_retry_seconds=0.1)
    async with Engine(store, poll_seconds=0.1) as worker:
        handle = await client.start(waits_then_stamps)
        await until_status(client, handle.run_id, "waiting", timeout=10)
        killed = query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            f"overnight {schema}",
        )
        assert len(killed) >= 4  # each store's pool and listener
        assert await client.signal(handle.run_id, "go", "after the kill")
        got, _ = await worker.result(handle.run_id, timeout=10)
    assert got == "after the kill"


# -- (e) many workers claiming from one table ----------------------------------------------------


async def test_concurrent_claims_from_two_stores_never_hand_out_a_run_twice(schema: str) -> None:
    url = url_for(schema)
    first, second = await opened(url), await opened(url)
    try:
        runs = 600
        for start in range(0, runs, 100):
            await asyncio.gather(
                *(first.create_run(new_run(f"r{i:04}"), now=T) for i in range(start, start + 100))
            )

        async def drain(store: PostgresStore, owner: str) -> list[str]:
            got: list[str] = []
            while batch := await claim(store, owner, now=T, limit=7):
                got.extend(r.id for r in batch)
            return got

        # 16 claimers, 8 on each store: each store's claims share its transactions, and the
        # two stores' transactions run at the same time on the server.
        results = await asyncio.gather(
            *(
                drain(store, f"{name}{i}")
                for i in range(8)
                for store, name in ((first, "a"), (second, "b"))
            )
        )
        claimed = Counter(run_id for got in results for run_id in got)
        assert sorted(claimed) == [f"r{i:04}" for i in range(runs)]
        assert set(claimed.values()) == {1}
        by_store = [sum(len(g) for g in results[k::2]) for k in range(2)]
        assert min(by_store) > 0, by_store  # both really competed
        owners = {
            run_id: owner
            for owner, got in zip((f"{n}{i}" for i in range(8) for n in "ab"), results, strict=True)
            for run_id in got
        }
        rows = query(
            sql.SQL("SELECT id, owner, epoch, status, due_at FROM {}.runs")
            .format(sql.Identifier(schema))
            .as_string(None)
        )
        assert len(rows) == runs
        for run_id, owner, epoch, status, due_at in rows:
            assert (owner, epoch, status, due_at) == (owners[run_id], 1, "running", T + LEASE)
        print(f"\n{runs} runs claimed once each; by store: {by_store}")
    finally:
        await first.close()
        await second.close()


# -- (f) group commit ---------------------------------------------------------------------------


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


# -- (g) leases between workers: heartbeats keep them, expiry hands the run over, fencing --------


async def test_a_worker_whose_lease_expired_is_fenced_out_by_the_one_that_took_over(
    schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Worker A stops renewing (its heartbeat is far longer than its lease) while a step runs;
    worker B takes the run over after the lease expires and completes it. When A's step returns,
    its writes are rejected by the epoch: the journal holds nothing A wrote after the takeover."""
    pg_workflows.CALLS.clear()
    pg_workflows.GATE.update(entered=asyncio.Event(), release=asyncio.Event())
    a_store = PostgresStore(url_for(schema))
    # A polls rarely: it claims its run when it starts it (woken), then must not take its own
    # expired run back before B does.
    async with Engine(a_store, lease_seconds=0.5, heartbeat_seconds=60, poll_seconds=30) as a:
        handle = await a.start(pg_workflows.calls_slow_once)
        await asyncio.wait_for(pg_workflows.GATE["entered"].wait(), 10)
        first = await a.get_run(handle.run_id)
        assert a.active_runs() == [handle.run_id]
        async with Engine(PostgresStore(url_for(schema)), poll_seconds=0.05) as b:
            assert await b.result(handle.run_id, timeout=10) == "second worker"
            record = await b.get_run(handle.run_id)
            assert (record.status, record.attempts, record.recoveries) == ("completed", 2, 1)
            assert record.epoch == first.epoch + 1
            assert a.active_runs() == [handle.run_id]  # A's step still runs
            pg_workflows.GATE["release"].set()  # A's step returns; A tries to journal it
            await until("A gives the run up", lambda: handle.run_id not in a.active_runs())
            rejected = f"lease (epoch {first.epoch}) was taken over by another worker"
            assert any(rejected in r.getMessage() for r in caplog.records)  # A tried, in vain
            entries = await b.journal(handle.run_id)
            assert await b.get_run(handle.run_id) == record  # unchanged by A
    assert len(pg_workflows.CALLS) == 2
    assert len(set(pg_workflows.CALLS)) == 1  # keyed: the same idempotency key both times
    assert [e.kind for e in entries if e.key == "slow_once#1"].count("done") == 1
    assert all(b"first worker" not in e.data for e in entries)


async def test_heartbeats_keep_the_lease_of_a_step_longer_than_the_lease(schema: str) -> None:
    """A step runs for three lease periods; renewals keep the lease, so a second worker,
    polling all along, never takes the run over."""
    url = url_for(schema)
    timing: dict[str, Any] = {"lease_seconds": 0.5, "heartbeat_seconds": 0.1, "poll_seconds": 0.05}
    async with Engine(PostgresStore(url), **timing) as a:
        handle = await a.start(pg_workflows.runs_longer_than_its_lease, 1.5)
        await until_status(a, handle.run_id, "running")
        async with Engine(PostgresStore(url), **timing) as b:
            assert await a.result(handle.run_id, timeout=10) == "done"
            assert b.active_runs() == []
            record = await b.get_run(handle.run_id)
    assert (record.status, record.attempts, record.recoveries, record.epoch) == (
        "completed",
        1,
        0,
        1,
    )


# -- (h) wake-ups racing suspends across stores ----------------------------------------------


async def test_wake_ups_racing_suspends_in_other_stores_are_never_lost(schema: str) -> None:
    """Parents suspend, waiting for their child or for a signal, at the very moment their
    children end and their signals arrive, in other stores (other transactions).

    Two workers A and B each hold half of the parents, and the children of the other's
    parents; a third store sends the signals. In whichever order the transactions reach each
    run, every parent ends up due: no wait is left without the wake-up that came (as
    read-committed transactions that each read what the other has not committed yet can do),
    and no two batches deadlock (each locks parents the other's children wake).
    """
    url = url_for(schema)
    a, b, c = await opened(url), await opened(url), await opened(url)
    try:
        n = 160
        await asyncio.gather(*(c.create_run(new_run(f"p{i:03}"), now=T) for i in range(n)))
        held = {r.id: (a, r) for r in await claim(a, "a", now=T, limit=n // 2)}
        held |= {r.id: (b, r) for r in await claim(b, "b", now=T, limit=n // 2)}
        for worker, other, name in ((a, b, "b"), (b, a, "a")):  # children go to the other one
            parents = [run_id for run_id, (store, _) in held.items() if store is worker]
            await asyncio.gather(
                *(c.create_run(new_run(f"c{p[1:]}", parent_id=p), now=T + 1) for p in parents)
            )
            held |= {r.id: (other, r) for r in await claim(other, name, now=T + 1, limit=n)}
        assert len(held) == 2 * n
        moves = []
        for run_id, (store, run) in held.items():
            assert run.owner is not None
            lease = Lease(run_id, run.owner, run.epoch)
            if run_id.startswith("c"):
                if int(run_id[1:]) % 2 == 0:
                    moves.append(finish(store, lease, now=T + 2))
            elif int(run_id[1:]) % 2 == 0:
                wait = Wait(children=(f"c{run_id[1:]}",))
                moves.append(
                    store.suspend(lease, status="waiting", wait=wait, note=None, now=T + 2)
                )
            else:
                wait = Wait(signals=("go",))
                moves.append(
                    store.suspend(lease, status="waiting", wait=wait, note=None, now=T + 2)
                )
                moves.append(c.send_signal(run_id, "go", b"1", "s", now=T + 2))
        random.Random(7).shuffle(moves)
        started = time.perf_counter()
        await asyncio.gather(*moves)
        print(f"\nracing: {len(moves)} moves in {time.perf_counter() - started:.2f} s")
        assert (a.retries, b.retries, c.retries) == (0, 0, 0)  # no deadlock to resolve
        waiting = await c.list_runs(statuses=["waiting"], limit=n)
        assert len(waiting) == n
        lost = sorted(r.id for r in waiting if r.due_at is None)
        assert lost == [], f"{len(lost)} parents wait for a wake-up that came: {lost}"
    finally:
        for store in (a, b, c):
            await store.close()


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
