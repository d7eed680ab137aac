"""`overnight demo`: a realistic multi-agent workflow that runs offline on a fresh machine.

`main()` runs it (the CLI's `overnight demo` and `python -m overnight.demo` both call it); see
`pipeline` for the workflow and `standin` for the offline model.
"""

from __future__ import annotations

import asyncio

from .runner import run_demo

DEFAULT_STORE = "sqlite:///.overnight/overnight.db"


def main(store: str | None = None, model: str | None = None) -> int:
    """Run or resume the demo; the exit code (0 done, 4 parked)."""
    from pathlib import Path

    url = store or DEFAULT_STORE
    if url == DEFAULT_STORE:
        Path(".overnight").mkdir(exist_ok=True)
    try:
        return asyncio.run(run_demo(url, lambda line: print(line, flush=True), model=model))
    except KeyboardInterrupt:
        print("\nInterrupted. The run is saved: run the demo again to resume it.", flush=True)
        return 130
