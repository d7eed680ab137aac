"""Scenario 5: resume a run with a 10,000-entry journal in a new process.

  python -m benchmarks.resume build   --n 10000 --template T.db    # once
  python -m benchmarks.resume measure --n 10000 --template T.db    # one fresh process per rep

`build` runs `workloads.long_then_wait` (n pure steps, then `ctx.wait_signal("go")`) until the
run is `waiting`, and closes its engine. `measure` copies that file, opens a new Engine on the
copy and times the signal until the run's result: the worker must claim the run, load its whole
journal and replay n step calls before the wait returns. `load_journal` (read + index the
journal) is timed inside that resume by wrapping it, so load and the rest (mostly replay) are
reported apart. Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
from typing import Any

from .common import cpu, emit, median, now, peak_rss_mb

RUN_ID = "resume-bench"


async def build(template: str, n: int) -> dict[str, Any]:
    from overnight import Engine

    from .workloads import long_then_wait

    t = now()
    async with Engine(f"sqlite:///{template}") as engine:
        await engine.start(long_then_wait, n, run_id=RUN_ID)
        while (await engine.get_run(RUN_ID)).status != "waiting":  # noqa: ASYNC110 (a poll)
            await asyncio.sleep(0.01)
        entries = len(await engine.journal(RUN_ID))
    return {"scenario": "resume_build", "n": n, "build_s": now() - t, "journal_entries": entries}


def _copy(src: str, dst: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(src + suffix):
            shutil.copyfile(src + suffix, dst + suffix)


def _remove(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


async def measure(template: str, n: int) -> dict[str, Any]:
    import overnight._engine.executor as executor
    from overnight import Engine

    path = f"{template}.{os.getpid()}.db"
    _copy(template, path)

    original = executor.load_journal
    load_times: list[float] = []

    async def timed_load_journal(store: Any, run_id: str) -> Any:
        t = now()
        index = await original(store, run_id)
        load_times.append(now() - t)
        return index

    executor.load_journal = timed_load_journal  # read by RunExecutor at run time
    try:
        t = now()
        engine = Engine(f"sqlite:///{path}")
        await engine.open()
        open_s = now() - t
        record = await engine.get_run(RUN_ID)
        assert record.status == "waiting", record.status
        t, c = now(), cpu()
        await engine.signal(RUN_ID, "go")
        result = await engine.result(RUN_ID)
        total, dc = now() - t, cpu() - c
        assert result == n
        # After the run: load alone, warm, and the SQL read without building the index.
        warm_loads = []
        for _ in range(3):
            t = now()
            await original(engine.store, RUN_ID)
            warm_loads.append(now() - t)
        t = now()
        entries = await engine.journal(RUN_ID)
        read_s = now() - t
        await engine.close()
    finally:
        executor.load_journal = original
        _remove(path)
    load_s = load_times[0]
    return {
        "scenario": "resume",
        "n": n,
        "journal_entries_at_resume": len(entries) - 2,  # minus the signal and output entries
        "engine_open_s": open_s,
        "signal_to_result_s": total,
        "signal_to_result_ms": total * 1e3,
        "cpu_s": dc,
        "load_journal_ms": load_s * 1e3,
        "rest_ms": (total - load_s) * 1e3,
        "load_journal_warm_ms": median(warm_loads) * 1e3,
        "read_journal_sql_ms": read_s * 1e3,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["build", "measure"])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--template", required=True)
    a = ap.parse_args()
    if a.what == "build":
        emit(asyncio.run(build(a.template, a.n)))
    else:
        emit(asyncio.run(measure(a.template, a.n)))


if __name__ == "__main__":
    main()
