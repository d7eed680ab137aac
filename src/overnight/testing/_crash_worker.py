"""The worker subprocess of a crash trial: `python -m overnight.testing._crash_worker CONFIG`.

CONFIG is JSON: `{"db": path, "run_id": ..., "workload": "module:attr"}`. The process opens
`Engine("sqlite:///<db>")` with the workload's engine options, starts the run (idempotently: a
resumed trial finds it), says hello to the ledger, and serves until the run is terminal or
parked. If `OVERNIGHT_CRASH_AT` is set it dies with SIGKILL at that crash point instead. On a
normal exit it prints one JSON line: the run's status, how often the armed point was hit, and
how many seconds it served after its hello.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

from .._engine import crash
from ..engine import Engine
from ..store.base import TERMINAL
from .crash.workload import load_workload
from .ledger import default_client


async def serve_run(db: str, run_id: str, workload_ref: str) -> dict[str, Any]:
    """Work on one run until it is terminal or parked; return its status and the armed hits."""
    workload = load_workload(workload_ref)
    options: dict[str, Any] = dict(workload.engine_options)
    async with Engine(f"sqlite:///{db}", workflows=[workload.workflow], **options) as engine:
        await engine.start(workload.workflow, workload.input, run_id=run_id)
        await default_client().hello()
        hello = time.monotonic()
        while True:
            record = await engine.get_run(run_id)
            if record.status in TERMINAL or record.status == "parked":
                break
            await asyncio.sleep(0.02)
        served = time.monotonic() - hello
    armed = crash._armed
    return {
        "status": record.status,
        "armed": None if armed is None else f"{armed[0]}:{armed[1]}",
        "hits": crash._hits,
        "served": served,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m overnight.testing._crash_worker CONFIG_JSON", file=sys.stderr)
        return 2
    config = orjson.loads(argv[0])
    report = asyncio.run(serve_run(config["db"], config["run_id"], config["workload"]))
    print(orjson.dumps(report).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
