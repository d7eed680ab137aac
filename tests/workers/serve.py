"""Run a worker on a SQLite store until SIGTERM.

`python -m tests.workers.serve DB [LEASE] [MAX_RECOVERIES]`
"""

from __future__ import annotations

import asyncio
import sys

from overnight import Engine


async def main(path: str, lease: float, max_recoveries: int) -> None:
    engine = Engine(
        f"sqlite:///{path}", lease_seconds=lease, poll_seconds=0.05, max_recoveries=max_recoveries
    )
    await engine.serve()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(
            args[0],
            float(args[1]) if len(args) > 1 else 3.0,
            int(args[2]) if len(args) > 2 else 10,
        )
    )
