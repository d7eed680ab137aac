"""Scenario 6: import time and the memory of an idle engine.

  python -m benchmarks.startup import --module overnight --reps 7
  python -m benchmarks.startup idle --store memory|sqlite

`import` starts fresh interpreters: `-X importtime` gives the cumulative import time of what
`import <module>` loads beyond a bare interpreter, and the wall time of `python -c "import
<module>"` minus that of `python -c pass` gives the same cost as a user sees it. `idle` opens an
Engine (its worker running, no runs) and reads the process's RSS. Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from typing import Any

from .common import ROOT, current_rss_mb, emit, median, now, workdir


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def _importtime(code: str) -> dict[str, int]:
    """Cumulative µs of every top-level import `python -X importtime -c code` made."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    out: dict[str, int] = {}
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split("|"))
        if not line.split("|")[2].startswith("  "):  # nesting level 0: imported by `code`
            out[name] = int(cumulative)
    return out


def _wall(code: str) -> float:
    t = now()
    subprocess.run([sys.executable, "-c", code], env=_env(), check=True)
    return now() - t


def import_time(module: str, reps: int) -> dict[str, Any]:
    bare = set(_importtime("pass"))  # what the interpreter imports at startup anyway
    cumulative = []
    for _ in range(reps):
        found = _importtime(f"import {module}")
        cumulative.append(sum(us for name, us in found.items() if name not in bare))
    walls = [(_wall(f"import {module}"), _wall("pass")) for _ in range(reps)]
    return {
        "scenario": "import",
        "module": module,
        "reps": reps,
        "importtime_ms": median(cumulative) / 1e3,
        "wall_ms": median([w - p for w, p in walls]) * 1e3,
        "python_startup_ms": median([p for _, p in walls]) * 1e3,
    }


async def idle(store: str) -> dict[str, Any]:
    bare = current_rss_mb()
    from overnight import Engine

    with tempfile.TemporaryDirectory(dir=workdir()) as d:
        url = "memory://" if store == "memory" else f"sqlite:///{os.path.join(d, 'idle.db')}"
        async with Engine(url):
            await asyncio.sleep(0.5)  # the worker has polled; nothing else is going on
            rss = current_rss_mb()
    return {
        "scenario": "idle",
        "store": store,
        "python_rss_mb": bare,
        "idle_rss_mb": rss,
        "engine_rss_mb": rss - bare,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["import", "idle"])
    ap.add_argument("--module", default="overnight")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    a = ap.parse_args()
    if a.what == "import":
        emit(import_time(a.module, a.reps))
    else:
        emit(asyncio.run(idle(a.store)))


if __name__ == "__main__":
    main()
