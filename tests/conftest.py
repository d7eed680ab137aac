"""Shared fixtures: every engine test runs on the memory, SQLite and PostgreSQL stores, offline.

PostgreSQL tests use the server at `OVERNIGHT_TEST_POSTGRES_URL` (default `POSTGRES_URL`), each
test in a fresh schema dropped afterwards. They never skip: without a server they fail, saying
how to start one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from overnight import Engine
from overnight.store import MemoryStore, Store
from overnight.store.postgres import PostgresStore
from overnight.store.sqlite import SqliteStore
from overnight.testing.guard import NetworkGuard, offline

# The conformance suite lives in a helper package: have pytest explain its failed asserts too.
pytest.register_assert_rewrite("tests.conformance")

POSTGRES_URL = os.environ.get(
    "OVERNIGHT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
"""The database PostgreSQL tests use (they create and drop schemas in it, nothing else)."""


@pytest.fixture(autouse=True)
def network_guard() -> Iterator[NetworkGuard]:
    """No test reaches beyond loopback or sees a provider's key (see overnight.testing.guard)."""
    with offline() as guard:
        yield guard


@functools.cache
def _postgres_problem() -> str | None:
    """Why the test server cannot be used, or None. Checked once per session."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return (
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({str(exc).strip()}).\n"
            "The PostgreSQL store's tests need a real server and never skip. Start one, e.g.\n"
            "  docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15\n"
            "(or `pg_ctlcluster 15 main start` for a system install), or point the tests at "
            "another server with OVERNIGHT_TEST_POSTGRES_URL=postgresql://user@host:port/db"
        )
    return None


def require_postgres() -> str:
    """The test server's URL; fails the calling test loudly if the server is not reachable."""
    problem = _postgres_problem()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    return POSTGRES_URL


def with_options(url: str, **options: str | int) -> str:
    """`url` with query options added (or replaced)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update({name: str(value) for name, value in options.items()})
    return urlunsplit(parts._replace(query=urlencode(query)))


def drop_schema(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """The name of a schema no one uses (not created: stores create it); dropped afterwards."""
    require_postgres()
    schema = f"overnight_test_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        drop_schema(schema)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A store URL on the test server, in a fresh schema (dropped after the test).

    Pools are kept small: the server is shared, and a test opens several stores at once."""
    with fresh_schema() as schema:
        yield with_options(POSTGRES_URL, schema=schema, pool_max=4)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Makes stores of one kind; SQLite ones share one file and PostgreSQL ones one schema, as
    separate processes would."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return lambda: PostgresStore(url)
    path = str(tmp_path / "runs.db")
    return lambda: SqliteStore(path)


@pytest.fixture
def store(store_factory: Callable[[], Store]) -> Store:
    return store_factory()


@pytest.fixture
async def engine(store: Store) -> AsyncIterator[Engine]:
    async with Engine(store, poll_seconds=0.05, lease_seconds=5, drain_seconds=5) as eng:
        yield eng
