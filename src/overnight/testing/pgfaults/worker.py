"""A worker process of the PostgreSQL fault tests: `python -m overnight.testing.pgfaults.worker
CONFIG`.

CONFIG is JSON: `url` (the store, with its schema), `tag` (the worker's id in the store and its
name in the ledger), and engine options (`lease_seconds`, `heartbeat_seconds`, `poll_seconds`,
`max_concurrent_runs`, `claim_batch`, `drain_seconds`, `strict`), plus `listen_retry_seconds`
for the store. The process opens the engine, prints `ready` on stdout (and says hello to the
ledger named by `OVERNIGHT_LEDGER`, if any), works until SIGTERM or SIGINT, drains, closes the
store and prints one JSON line with its store's counters. It logs at INFO on stderr: a test
reads there which writes were rejected (`StaleLeaseError`) and which leases were lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import orjson

from ...engine import Engine
from ..ledger import ENV_ADDRESS, default_client

ENGINE_OPTIONS = (
    "lease_seconds",
    "heartbeat_seconds",
    "poll_seconds",
    "max_concurrent_runs",
    "claim_batch",
    "drain_seconds",
    "strict",
)


async def serve(config: dict[str, Any]) -> dict[str, Any]:
    from ...store.postgres import PostgresStore

    store = PostgresStore(
        config["url"], listen_retry_seconds=float(config.get("listen_retry_seconds", 5.0))
    )
    options = {name: config[name] for name in ENGINE_OPTIONS if name in config}
    engine = Engine(store, worker_id=config["tag"], **options)
    await engine.open()
    try:
        serving = asyncio.create_task(engine.serve())
        for _ in range(3):  # serve() installs its SIGTERM/SIGINT handlers at its first step
            await asyncio.sleep(0)
        print("ready", flush=True)
        if os.environ.get(ENV_ADDRESS):
            await default_client().hello()
        await serving
    finally:
        await engine.close()
    return {"tag": config["tag"], "commits": store.commits, "retries": store.retries}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m overnight.testing.pgfaults.worker CONFIG_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("psycopg").setLevel(logging.WARNING)  # the pool's own chatter
    report = asyncio.run(serve(orjson.loads(argv[0])))
    print(orjson.dumps(report).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
