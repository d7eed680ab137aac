"""Stores: where runs, journals and signals live. Pick one by URL with `open_store`."""

from __future__ import annotations

from ..errors import UserError
from .base import Store
from .memory import MemoryStore

__all__ = ["MemoryStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """A store for a URL: `memory://`, `sqlite:///relative.db`, `sqlite:////absolute.db`, or
    `postgresql://user@host:5432/database?schema=overnight` (also `postgres://`; needs the
    `overnight[postgres]` extra)."""
    if url == "memory://" or url == "memory:":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise UserError(
        f"unknown store URL {url!r}; use memory://, sqlite:///path/to/file.db "
        "(relative), sqlite:////absolute/path.db or postgresql://user@host:5432/database"
    )
