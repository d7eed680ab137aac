"""Scenario 7 hook: kill -9 crash trials, run by `overnight.testing.crash` once it exists.

  python -m benchmarks.crash --trials 100

The crash-trial harness is not in the package yet. This hook looks for
`overnight.testing.crash` and a trial runner in it (`run_trials`, `run_crash_trials` or
`crash_trials`), calls it with `trials=N` (awaiting it if it is async) and reports what it returns
(a dict, a dataclass or an object with attributes: its counts are copied as they are). Until the
module exists it reports `available: false` and the driver prints "crash trials: not available
yet". Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import importlib.util
import inspect
from collections.abc import Mapping
from typing import Any

from .common import emit, now

MODULE = "overnight.testing.crash"
RUNNERS = ("run_trials", "run_crash_trials", "crash_trials")


def _as_dict(result: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    if isinstance(result, Mapping):
        return dict(result)
    if hasattr(result, "__dict__"):
        return {k: v for k, v in vars(result).items() if not k.startswith("_")}
    return {"result": result}


def crash_trials(trials: int) -> dict[str, Any]:
    try:
        found = importlib.util.find_spec(MODULE) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return {"scenario": "crash", "available": False, "reason": f"no module {MODULE}"}
    module = importlib.import_module(MODULE)
    runner = next((getattr(module, n) for n in RUNNERS if callable(getattr(module, n, None))), None)
    if runner is None:
        return {
            "scenario": "crash",
            "available": False,
            "reason": f"{MODULE} has none of {', '.join(RUNNERS)}",
        }
    t = now()
    result = runner(trials=trials)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return {
        "scenario": "crash",
        "available": True,
        "runner": f"{MODULE}.{runner.__name__}",
        "trials": trials,
        "wall_s": now() - t,
        "counts": _as_dict(result),
    }


async def _await(awaitable: Any) -> Any:
    return await awaitable


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100)
    a = ap.parse_args()
    emit(crash_trials(a.trials))


if __name__ == "__main__":
    main()
