"""Open a PostgreSQL store at an agreed instant and print how many migrations it applied.

Usage: python tests/procs/postgres_open.py URL START_AT  (START_AT: a `time.time()` value; every
process started for one test sleeps until it, so they all migrate at the same moment).
"""

from __future__ import annotations

import asyncio
import sys
import time

from overnight.store.postgres import PostgresStore


async def main(url: str, start_at: float) -> None:
    store = PostgresStore(url)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    await store.open()
    try:
        print(store.migrated)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
