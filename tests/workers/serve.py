"""Run a worker on a SQLite store until SIGTERM: `python -m tests.workers.serve DB [LEASE]`."""

from __future__ import annotations

import asyncio
import sys

from overnight import Engine


async def main(path: str, lease: float) -> None:
    engine = Engine(f"sqlite:///{path}", lease_seconds=lease, poll_seconds=0.05)
    await engine.serve()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 3.0))
