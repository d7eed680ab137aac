"""Workflows the SQLite store tests run, importable by reference from worker subprocesses."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from overnight import Context, current_step, step, workflow


def kinds_seen(path: str, run_id: str, key: str) -> list[str]:
    """The kinds of a key's journal entries, as a separate connection to the file sees them."""
    conn = sqlite3.connect(path, timeout=5)
    try:
        rows = conn.execute(
            "SELECT kind FROM entries WHERE run_id = ? AND key = ? ORDER BY seq", (run_id, key)
        ).fetchall()
    finally:
        conn.close()
    return [kind for (kind,) in rows]


@step(effect="pure")
async def nap(i: int) -> int:
    await asyncio.sleep(0.01)
    return i


@workflow
async def naps(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await nap(i)
    return total


@step(effect="keyed")
async def own_entries_seen(path: str) -> list[str]:
    info = current_step()
    return kinds_seen(path, info.run_id, info.key)


@workflow
async def sees_own_intent(ctx: Context, path: str) -> list[str]:
    return await own_entries_seen(path)


@step(effect="pure")
async def remember(value: int) -> int:
    return value


@step(effect="pure")
async def entries_seen(path: str, key: str) -> list[str]:
    return kinds_seen(path, current_step().run_id, key)


@workflow
async def sees_previous_step(ctx: Context, path: str) -> list[str]:
    await remember(1)
    return await entries_seen(path, "remember#1")


@workflow
async def waits_for_go(ctx: Context) -> Any:
    return await ctx.wait_signal("go")


@step(effect="keyed")
async def hang() -> None:
    await asyncio.sleep(60)


@workflow
async def hangs(ctx: Context) -> None:
    await hang()
