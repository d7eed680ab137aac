"""A worker process on a SQLite store file: works on its runs until SIGTERM, then drains.

Usage: python tests/procs/sqlite_worker.py PATH  (with the checkout's `src` and root on
PYTHONPATH, so `tests.store_workflows` imports by reference).
"""

from __future__ import annotations

import asyncio
import sys

from overnight import Engine
from overnight.store.sqlite import SqliteStore


async def main(path: str) -> None:
    engine = Engine(
        SqliteStore(path),
        poll_seconds=0.02,
        lease_seconds=5.0,  # long enough that a slow machine keeps it...
        heartbeat_seconds=0.1,  # ...while a cancel request is learnt quickly
        drain_seconds=2.0,
    )
    await engine.serve()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
