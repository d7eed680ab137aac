"""LISTEN/NOTIFY wake-ups for the PostgreSQL store.

A transaction that makes a run due now (a run created, a signal or a child waking a waiting run,
a control, a requeue) sends `NOTIFY` on the store's channel; PostgreSQL delivers it when, and
only if, the transaction commits. Every store listens on its own connection and calls its
`wakeups` callbacks (the engine's worker wakes and claims at once).

Notifications are a hint, never the truth: they are lost while the listening connection is down,
and the worker's polling finds due runs anyway. After a reconnection the callbacks are called
once, since something may have become due while nobody listened.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("overnight.store.postgres")


def channel_for(schema: str) -> str:
    """The notification channel of a schema: identifiers are at most 63 bytes."""
    name = f"overnight:{schema}"
    if len(name.encode()) <= 63:
        return name
    return f"overnight:{hashlib.sha256(schema.encode()).hexdigest()[:40]}"


class Listener:
    """A connection that LISTENs on a channel and calls `wake` for notifications of others."""

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, Any],
        channel: str,
        own_payload: str,
        wake: Callable[[], None],
        retry_seconds: float,
    ) -> None:
        self.conninfo = conninfo
        self.connect_kwargs = connect_kwargs
        self.channel = channel
        self.own_payload = own_payload
        """This store's notifications carry it: they woke this process already, at commit."""
        self.wake = wake
        self.retry_seconds = retry_seconds
        self.listening = asyncio.Event()
        """Set while LISTEN is in effect; cleared when the connection is lost."""
        self.backend_pid: int | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, conn: psycopg.AsyncConnection[Any] | None = None) -> None:
        """LISTEN (on `conn` if given, an autocommit connection it then owns), then keep
        listening in the background. Raises if the first LISTEN fails."""
        await self._listen(conn)
        self._task = asyncio.create_task(self._loop(), name=f"overnight listen {self.channel}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    async def _listen(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        if conn is None:
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, **self.connect_kwargs
            )
        self._conn = conn
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            await self._drop()
            raise
        self.backend_pid = conn.info.backend_pid
        self.listening.set()

    async def _drop(self) -> None:
        self.listening.clear()
        self.backend_pid = None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _loop(self) -> None:
        while True:
            conn = self._conn
            if conn is not None:
                try:
                    async for notify in conn.notifies():
                        if notify.payload != self.own_payload:
                            self.wake()
                except psycopg.Error as exc:
                    log.warning(
                        "the PostgreSQL wake-up connection was lost (%s); workers poll until it "
                        "is back, retrying in %.1f s",
                        exc,
                        self.retry_seconds,
                    )
                await self._drop()
            await asyncio.sleep(self.retry_seconds)
            try:
                await self._listen(None)
            except (psycopg.Error, OSError) as exc:
                log.warning("reconnecting for wake-ups failed (%s); workers keep polling", exc)
                continue
            self.wake()  # something may have become due while nobody listened
