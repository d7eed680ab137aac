"""The PostgreSQL store's URL: where the database is, and the store's own options.

`postgresql://user:password@host:port/database?schema=overnight&pool_min=1&pool_max=10&listen=true`
(`postgres://` too). `schema`, `pool_min`, `pool_max` and `listen` are the store's; every other
query parameter goes to libpq as is (`sslmode`, `connect_timeout`, `application_name`, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict

from ..errors import UserError

OPTIONS = ("schema", "pool_min", "pool_max", "listen", "idle_tx_timeout")
IDLE_TX_TIMEOUT_S = 5
"""Seconds a transaction of ours may sit idle before the server aborts it (see parse_url)."""
DEFAULT_SCHEMA = "overnight"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
"""TCP keepalives (libpq parameters) unless the URL sets them: a dead peer is noticed in ~1 min."""
_TRUE = ("true", "on", "1", "yes")
_FALSE = ("false", "off", "0", "no")


@dataclass(frozen=True)
class Config:
    """A parsed store URL."""

    conninfo: str
    """The URL without the store's options, for libpq."""
    schema: str
    pool_min: int
    pool_max: int
    listen: bool
    where: str
    """Database, host and port, for messages: never the password."""
    connect_kwargs: dict[str, Any]
    """Parameters of every connection the store makes."""


def parse_url(url: str) -> Config:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise UserError(f"a PostgreSQL store URL starts with postgresql://, not {parts.scheme}://")
    options: dict[str, str] = {}
    libpq: list[tuple[str, str]] = []
    user_options = ""
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in OPTIONS:
            options[name] = value
        elif name == "options":
            user_options = value + " "  # kept, with the search_path the store adds
        else:
            libpq.append((name, value))
    schema = options.get("schema", DEFAULT_SCHEMA)
    if not _SCHEMA_NAME.fullmatch(schema):
        raise UserError(
            f"schema {schema!r}: use lower-case letters, digits and _ (at most 63, not starting "
            "with a digit), e.g. ?schema=overnight_prod"
        )
    pool_min = _whole(options, "pool_min", 1, minimum=0)
    pool_max = _whole(options, "pool_max", max(10, pool_min), minimum=max(1, pool_min))
    listen = options.get("listen", "true").lower()
    if listen not in _TRUE + _FALSE:
        raise UserError(f"listen must be true or false, not {listen!r}")
    # A worker frozen (SIGSTOP, a debugger, a stalled VM) inside a batch transaction would keep
    # the rows it locked, and claims skip locked rows: its runs could never be taken over. The
    # server aborts such a transaction after this long, releasing the locks; keep it below the
    # lease. Our transactions are milliseconds long, so a healthy worker never hits it.
    idle_tx = _whole(options, "idle_tx_timeout", IDLE_TX_TIMEOUT_S, minimum=1)
    if "idle_in_transaction_session_timeout" not in user_options:
        user_options += f"-c idle_in_transaction_session_timeout={idle_tx * 1000} "
    conninfo = urlunsplit(parts._replace(query=urlencode(libpq)))
    try:
        params = conninfo_to_dict(conninfo)
    except ProgrammingError as exc:
        raise UserError(f"bad PostgreSQL URL: {exc}") from None
    kwargs: dict[str, Any] = {
        "autocommit": True,  # reads need no transaction; writes open theirs explicitly
        # Unqualified table names in every query resolve in the store's schema.
        "options": f"{user_options}-c search_path={schema}",
    }
    if "application_name" not in params:
        # Tells operators which connections are whose (pg_stat_activity).
        kwargs["application_name"] = f"overnight {schema}"[:63]
    for key, setting in KEEPALIVES.items():
        # The wake-up listener only reads: without keepalives a server gone silently (a
        # network partition) would go unnoticed for hours, and wake-ups with it.
        if key not in params:
            kwargs[key] = setting
    where = (
        f"database {params.get('dbname') or '(default)'!r} on "
        f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
    )
    return Config(conninfo, schema, pool_min, pool_max, listen in _TRUE, where, kwargs)


def _whole(options: dict[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise UserError(f"{name} must be a whole number >= {minimum}, not {raw!r}")
    return value
