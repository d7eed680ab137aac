"""Crash campaigns: many trials of one workload, aggregated into a table and a JSON summary.

`run_campaign` calibrates how often each crash point is hit in one uninterrupted run, plans
trials with `plan_campaign` (every reachable point at spread-out hits, random instants, some
double kills, the signal sent at rotating moments), runs them, possibly several at once, and
adds them up in a `CampaignResult`. `main` is `python -m overnight.testing`.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..._engine.crash import KERNEL_POINTS
from ..ledger import Ledger
from .checks import TrialResult
from .kills import CrashAt, Kill, KillAfter
from .trial import run_trial, uninterrupted
from .workload import SIGNAL_MODES, SignalMode, Workload


@dataclass(frozen=True)
class TrialPlan:
    """One planned trial of a campaign."""

    kills: tuple[Kill, ...]
    signal_mode: SignalMode

    @property
    def label(self) -> str:
        """The first kill's point name, `random` or `random@start`."""
        first = self.kills[0]
        if isinstance(first, CrashAt):
            return first.point
        return "random" if first.since == "hello" else "random@start"


@dataclass
class CampaignResult:
    """Aggregate counts of a campaign (print `table()`)."""

    trials: int = 0
    kills: int = 0
    trials_killed: int = 0
    completed: int = 0
    invocations: int = 0
    reruns_in_doubt: int = 0
    completed_steps_rerun: int = 0
    keyed_reinvocations: int = 0
    keyed_over_kills: int = 0
    dedup_hits: int = 0
    duplicate_effects: int = 0
    missing_effects: int = 0
    unsafe_in_doubt: int = 0
    parked_for_unsafe: int = 0
    unsafe_rerun_in_doubt: int = 0
    parks_resolved: int = 0
    unexpected_parks: int = 0
    output_mismatches: int = 0
    drawn_mismatches: int = 0
    hangs: int = 0
    worker_errors: int = 0
    failed_trials: int = 0
    seconds: float = 0.0
    hits: dict[str, int] = field(default_factory=dict)
    """Hits of each crash point in one uninterrupted run (the calibration)."""
    by_point: dict[str, list[int]] = field(default_factory=dict)
    """label -> [trials, killed, failed]."""
    failures: list[str] = field(default_factory=list)
    """`describe()` of every failed trial."""

    def add(self, plan: TrialPlan, trial: TrialResult) -> None:
        c = trial.check
        self.trials += 1
        self.kills += c.kills
        self.trials_killed += int(c.kills > 0)
        self.completed += int(c.completed)
        for name in (
            "invocations",
            "reruns_in_doubt",
            "completed_steps_rerun",
            "keyed_reinvocations",
            "keyed_over_kills",
            "dedup_hits",
            "duplicate_effects",
            "missing_effects",
            "unsafe_in_doubt",
            "parked_for_unsafe",
            "unsafe_rerun_in_doubt",
            "parks_resolved",
            "unexpected_parks",
            "worker_errors",
        ):
            setattr(self, name, getattr(self, name) + getattr(c, name))
        self.output_mismatches += int(c.output_mismatch)
        self.drawn_mismatches += int(c.drawn_mismatch)
        self.hangs += int(c.hung)
        row = self.by_point.setdefault(plan.label, [0, 0, 0])
        row[0] += 1
        row[1] += int(c.kills > 0)
        if not c.ok:
            self.failed_trials += 1
            row[2] += 1
            self.failures.append(trial.describe())

    @property
    def ok(self) -> bool:
        """True when no trial failed."""
        return self.failed_trials == 0

    def summary(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict (without the failure descriptions)."""
        data = {k: v for k, v in self.__dict__.items() if k != "failures"}
        data["by_point"] = {
            label: {"trials": t, "killed": k, "failed": f}
            for label, (t, k, f) in sorted(self.by_point.items())
        }
        data["ok"] = self.ok
        return data

    def table(self) -> str:
        """The counts as a small text table."""
        rows = [
            ("trials (completed)", f"{self.trials} ({self.completed})"),
            ("kills (SIGKILL) / trials killed", f"{self.kills} / {self.trials_killed}"),
            ("step invocations", str(self.invocations)),
            ("re-runs of steps in doubt (allowed)", str(self.reruns_in_doubt)),
            ("completed steps re-run", str(self.completed_steps_rerun)),
            ("duplicate effects", str(self.duplicate_effects)),
            ("missing effects", str(self.missing_effects)),
            ("keyed re-invocations / kills", f"{self.keyed_reinvocations} / {self.kills}"),
            ("keyed re-invoked more than kills", str(self.keyed_over_kills)),
            ("keyed duplicates deduped", str(self.dedup_hits)),
            ("unsafe in doubt -> parked", f"{self.unsafe_in_doubt} -> {self.parked_for_unsafe}"),
            ("unsafe re-run while in doubt", str(self.unsafe_rerun_in_doubt)),
            ("parks resolved", str(self.parks_resolved)),
            ("unexpected parks", str(self.unexpected_parks)),
            ("output mismatches", str(self.output_mismatches)),
            ("now/random/uuid mismatches", str(self.drawn_mismatches)),
            ("hangs / worker errors", f"{self.hangs} / {self.worker_errors}"),
            ("failed trials", str(self.failed_trials)),
            ("wall time", f"{self.seconds:.1f} s"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = ["crash campaign"]
        lines += [f"  {name:<{width}}  {value:>12}" for name, value in rows]
        lines.append(f"  {'kill point':<22}{'hits/run':>9}{'trials':>8}{'killed':>8}{'failed':>8}")
        for label in sorted(self.by_point):
            trials, killed, failed = self.by_point[label]
            hits = str(self.hits.get(label, ""))
            lines.append(f"  {label:<22}{hits:>9}{trials:>8}{killed:>8}{failed:>8}")
        return "\n".join(lines)


def calibrate(
    workload: Workload,
    workdir: str | os.PathLike[str],
    ledger: Ledger,
    points: Sequence[str] = tuple(sorted(KERNEL_POINTS)),
    jobs: int = 1,
    env: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """How often each crash point is hit in one uninterrupted run (armed at an unreachable n)."""

    def count(point: str) -> int:
        db = os.path.join(os.fspath(workdir), f"calibrate-{point}.db")
        trial = run_trial(
            workload, db, f"calibrate-{point}", CrashAt(point, 10**9), ledger=ledger, env=env
        )
        return max(0, trial.incarnations[0].hits or 0) if trial.incarnations else 0

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(zip(points, pool.map(count, points), strict=True))


def plan_campaign(
    trials: int,
    hits: Mapping[str, int],
    rng: random.Random,
    *,
    random_share: float = 0.25,
    double_kill_every: int = 8,
    random_window: tuple[float, float] = (0.0, 1.2),
    start_window: tuple[float, float] | None = None,
) -> list[TrialPlan]:
    """Every reachable point several times (n spread over its hits), plus random instants.

    Random instants are counted from the worker's hello (`random_window`); with
    `start_window`, every third one is counted from the process start instead, so that some
    kills land in the worker's startup (opening the store, starting and claiming the run).
    """
    points = [p for p, h in hits.items() if h > 0]
    n_random = max(1, round(trials * random_share)) if points else trials
    n_named = trials - n_random
    per_point = Counter(points[i % len(points)] for i in range(n_named)) if points else Counter()
    kills: list[Kill] = []
    for point, count in per_point.items():
        total = hits[point]
        for k in range(count):
            # stratified: the k-th trial of a point lands in the k-th slice of its hits
            lo = 1 + (k * total) // count
            hi = max(lo, ((k + 1) * total) // count)
            kills.append(CrashAt(point, rng.randint(lo, hi)))
    for i in range(n_random):
        if start_window is not None and i % 3 == 2:
            kills.append(KillAfter(*start_window, since="start"))
        else:
            kills.append(KillAfter(*random_window))
    rng.shuffle(kills)
    plans: list[TrialPlan] = []
    for i, first in enumerate(kills):
        chain: tuple[Kill, ...] = (first,)
        if double_kill_every and i % double_kill_every == double_kill_every - 1:
            chain = (first, KillAfter(*random_window))
        plans.append(TrialPlan(chain, SIGNAL_MODES[i % len(SIGNAL_MODES)]))
    return plans


def run_campaign(
    trials: int = 100,
    *,
    workload: Workload | None = None,
    seed: int = 0,
    workdir: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
    random_share: float = 0.25,
    double_kill_every: int = 8,
    jobs: int = 1,
    points: Sequence[str] = tuple(sorted(KERNEL_POINTS)),
    env: Mapping[str, str] | None = None,
    inspect: Callable[[TrialResult, TrialResult | None], None] | None = None,
) -> CampaignResult:
    """Run `trials` crash trials of a workload (the reference workload by default).

    Calibrates how often each crash point is hit in one run, then kills every reachable point
    several times at spread-out hits, a `random_share` of trials at random instants (within the
    time an uninterrupted run serves), and every `double_kill_every`-th trial once more at a
    random instant of its second process. Signals are sent before the start, early, or when the
    run waits, in rotation. Failed trials are counted and described in `failures`; the
    campaign does not stop at them. `jobs` trials run at once (each in its own processes and
    SQLite file; one ledger serves them all).

    `points` are the crash points calibrated and killed (the agent loop's points are added for
    agent workloads); `env` is added to every worker's environment; `inspect(trial, reference)`
    is called for the reference (with None) and for every trial before it is counted, and may
    append violations to `trial.check.violations` (checks against a service of the caller's).
    """
    if workload is None:
        # Imported here: the reference workload imports this package for `Workload`.
        from ..crash_workload import REFERENCE

        workload = REFERENCE
    rng = random.Random(seed)
    result = CampaignResult()
    started = time.monotonic()
    base = tempfile.mkdtemp(prefix="overnight-campaign-", dir=workdir)
    try:
        with Ledger() as ledger:
            reference = uninterrupted(
                workload, os.path.join(base, "reference.db"), "reference", ledger=ledger, env=env
            )
            if inspect is not None:
                inspect(reference, None)
            if not reference.ok:
                raise AssertionError(
                    "the uninterrupted reference run failed:\n" + reference.describe()
                )
            result.hits = calibrate(workload, base, ledger, points, jobs=jobs, env=env)
            # Random instants fall anywhere in the time one uninterrupted run takes to serve.
            served = reference.incarnations[0].served or 1.0
            lifetime = reference.incarnations[0].seconds
            plans = plan_campaign(
                trials,
                result.hits,
                rng,
                random_share=random_share,
                double_kill_every=double_kill_every,
                random_window=(0.0, max(0.3, served)),
                start_window=(0.0, max(0.5, lifetime)),
            )
            seeds = [rng.randrange(2**32) for _ in plans]

            def one(i: int) -> TrialResult:
                return run_trial(
                    workload,
                    os.path.join(base, f"trial-{i}.db"),
                    f"trial-{i}",
                    plans[i].kills,
                    ledger=ledger,
                    reference=reference,
                    signal_mode=plans[i].signal_mode,
                    seed=seeds[i],
                    env=env,
                )

            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                trials_done = pool.map(one, range(len(plans)))
                for i, (plan, trial) in enumerate(zip(plans, trials_done, strict=True)):
                    if inspect is not None:
                        inspect(trial, reference)
                    result.add(plan, trial)
                    if progress is not None:
                        verdict = "ok" if trial.ok else "FAILED"
                        progress(
                            f"trial {i + 1}/{len(plans)} kills={list(trial.kills)} "
                            f"signal={plan.signal_mode} killed={trial.killed} "
                            f"{trial.seconds:.1f}s {verdict}"
                        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m overnight.testing [--trials N] [--seed S] [--agent]`: run a crash campaign."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="trials run at once")
    parser.add_argument("--quiet", action="store_true", help="no line per trial")
    parser.add_argument(
        "--agent", action="store_true", help="the agent workload (a multi-turn agent on openai)"
    )
    args = parser.parse_args(argv)
    progress = None if args.quiet else print
    result: CampaignResult
    if args.agent:
        from .agent_campaign import run_agent_campaign  # it builds on this module

        agent = run_agent_campaign(args.trials, seed=args.seed, jobs=args.jobs, progress=progress)
        print(agent.table())
        result = agent.kernel
    else:
        result = run_campaign(args.trials, seed=args.seed, jobs=args.jobs, progress=progress)
        print(result.table())
    for failure in result.failures:
        print(failure)
    return 0 if result.ok else 1
