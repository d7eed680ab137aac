"""PostgreSQL schema: numbered, forward-only migrations, and the checks made before touching one.

All of a store's tables live in one PostgreSQL schema (`overnight` unless the URL says otherwise).
A schema is ours when it holds `overnight_schema_version`, one row per migration applied; the
highest `version` is the schema's version. Before anything is written, `check_schema` refuses a
schema that holds anything else (someone else's tables) or one written by a newer overnight, so a
wrong URL never damages someone else's data.

Migrations run in one transaction under a transaction-level advisory lock keyed on the schema
name, so several workers starting together apply each migration exactly once: the first takes
the lock and migrates, the others wait, then find the schema current and change nothing.
"""

from __future__ import annotations

from psycopg import AsyncConnection, sql

from ..errors import StoreFormatError

LOCK_CLASS = 0x4F564E54  # "OVNT", as the SQLite store's application_id; with the schema's hash
VERSION_TABLE = "overnight_schema_version"

# Each migration is a list of statements; `{schema}` is replaced by the quoted schema name.
# Ids and keys use the "C" collation so they sort by code point, as Python (and SQLite) do.
MIGRATIONS: list[list[str]] = [
    # 1: runs, their journals, signals and content-addressed blobs.
    [
        """
        CREATE TABLE {schema}.runs (
            id text COLLATE "C" PRIMARY KEY,
            workflow text NOT NULL,
            version text NOT NULL,
            input bytea NOT NULL,
            options bytea NOT NULL,
            status text NOT NULL,
            parent_id text COLLATE "C",
            due_at double precision,
            owner text,
            epoch bigint NOT NULL DEFAULT 0,
            attempts bigint NOT NULL DEFAULT 0,
            recoveries bigint NOT NULL DEFAULT 0,
            waiting bytea,
            cancel_requested boolean NOT NULL DEFAULT false,
            result bytea,
            error bytea,
            note text,
            continued_to text COLLATE "C",
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL
        )
        """,
        "CREATE INDEX runs_due ON {schema}.runs (due_at) WHERE due_at IS NOT NULL",
        "CREATE INDEX runs_status ON {schema}.runs (status, created_at)",
        "CREATE INDEX runs_parent ON {schema}.runs (parent_id) WHERE parent_id IS NOT NULL",
        """
        CREATE TABLE {schema}.entries (
            run_id text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            key text NOT NULL,
            kind text NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (run_id, seq)
        )
        """,
        """
        CREATE TABLE {schema}.signals (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            run_id text COLLATE "C" NOT NULL,
            name text NOT NULL,
            signal_id text NOT NULL,
            payload bytea NOT NULL,
            created_at double precision NOT NULL,
            UNIQUE (run_id, signal_id)
        )
        """,
        "CREATE INDEX signals_by_name ON {schema}.signals (run_id, name, seq)",
        "CREATE TABLE {schema}.blobs (digest text PRIMARY KEY, data bytea NOT NULL)",
    ],
    # 2: schedules (cron), fired by workers into runs with ids `sched:<name>:<tick>`.
    [
        """
        CREATE TABLE {schema}.schedules (
            name text COLLATE "C" PRIMARY KEY,
            cron text NOT NULL,
            timezone text NOT NULL,
            workflow text NOT NULL,
            input bytea NOT NULL,
            catch_up text NOT NULL,
            paused boolean NOT NULL DEFAULT false,
            next_due double precision,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL
        )
        """,
        "CREATE INDEX schedules_due ON {schema}.schedules (next_due) WHERE next_due IS NOT NULL",
    ],
]
LATEST = len(MIGRATIONS)


async def check_schema(conn: AsyncConnection[tuple[object, ...]], schema: str, where: str) -> int:
    """The version of an overnight schema (0 if new or empty); raise if it is not ours.

    `where` names the database and schema in messages (never with a password).
    """
    cur = await conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
        "ORDER BY c.relname",
        (schema,),
    )
    names = [str(name) for (name,) in await cur.fetchall()]
    if not names:
        return 0  # no schema yet, or an empty one (made by an administrator for us): fill it
    if VERSION_TABLE not in names:
        more = ", ..." if len(names) > 5 else ""
        raise StoreFormatError(
            f"schema {schema!r} of {where} belongs to something else (it holds "
            f"{', '.join(names[:5])}{more}) and no {VERSION_TABLE} table. Use another schema "
            "for the overnight store (add ?schema=NAME to the URL); the schema was left untouched"
        )
    cur = await conn.execute(
        sql.SQL("SELECT COALESCE(MAX(version), 0) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(VERSION_TABLE)
        )
    )
    row = await cur.fetchone()
    version = int(row[0]) if row is not None else 0  # type: ignore[call-overload]
    if version > LATEST:
        raise StoreFormatError(
            f"schema {schema!r} of {where} was written by a newer overnight (schema {version}; "
            f"this version knows up to {LATEST}). Upgrade overnight to open it; the schema was "
            "left untouched"
        )
    return version


async def migrate(conn: AsyncConnection[tuple[object, ...]], schema: str, where: str) -> int:
    """Apply the migrations the schema lacks; return how many this call applied.

    `conn` must be in autocommit mode: the migrations run in a transaction of their own.
    """
    if await check_schema(conn, schema, where) == LATEST:
        return 0  # the common case, every start after the first: no lock taken
    quoted = sql.Identifier(schema)
    async with conn.transaction():
        # Held until the transaction ends: concurrent starters queue here, then see our work.
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, schema))
        current = await check_schema(conn, schema, where)  # again, under the lock
        if current == LATEST:
            return 0
        exists = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if await exists.fetchone() is None:
            # Only when missing: CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
            # database even when the schema exists (an administrator may have made it for us).
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(quoted))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.{} (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(quoted, sql.Identifier(VERSION_TABLE))
        )
        for number in range(current + 1, LATEST + 1):
            for statement in MIGRATIONS[number - 1]:
                await conn.execute(sql.SQL(statement.strip()).format(schema=quoted))
            await conn.execute(
                sql.SQL("INSERT INTO {}.{} (version) VALUES (%s)").format(
                    quoted, sql.Identifier(VERSION_TABLE)
                ),
                (number,),
            )
        return LATEST - current
