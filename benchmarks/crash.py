"""Scenario 7: kill -9 crash trials of the reference workload and of an agent (`overnight.testing`).

  python -m benchmarks.crash --trials 100 --jobs 2
  python -m benchmarks.crash --agent --trials 100 --jobs 2

Every named crash point is killed several times at spread-out hits, plus random instants and
double kills; each trial resumes the run and checks it against a ledger kept outside the killed
processes. With `--agent` the workload is a seven-turn agent on the `openai` client (parallel
tool calls, keyed tool effects), the agent loop's own points are killed too, and every trial is
also checked against the loopback model server's request log. Prints the campaign's table to
stderr and one JSON line with the counts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from overnight.testing import run_campaign
from overnight.testing.crash.agent_campaign import run_agent_campaign

from .common import emit


def crash_trials(trials: int, jobs: int, seed: int) -> dict[str, Any]:
    result = run_campaign(trials, jobs=jobs, seed=seed)
    print(result.table(), file=sys.stderr)
    for failure in result.failures:
        print(failure, file=sys.stderr)
    failures = [str(f)[:4000] for f in result.failures]  # kept for investigation
    return {
        "scenario": "crash",
        "available": True,
        "trials": trials,
        "counts": result.summary(),
        "failures": failures,
    }


def agent_crash_trials(trials: int, jobs: int, seed: int) -> dict[str, Any]:
    result = run_agent_campaign(trials, jobs=jobs, seed=seed)
    print(result.table(), file=sys.stderr)
    for failure in result.kernel.failures:
        print(failure, file=sys.stderr)
    counts = result.summary()
    failures = [str(f)[:4000] for f in result.kernel.failures]  # kept for investigation
    return {
        "scenario": "agent_crash",
        "available": True,
        "trials": trials,
        "counts": counts,
        "failures": failures,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--agent", action="store_true", help="the agent workload")
    a = ap.parse_args()
    run = agent_crash_trials if a.agent else crash_trials
    emit(run(a.trials, a.jobs, a.seed))


if __name__ == "__main__":
    main()
