"""kill -9 trials: real worker subprocesses die at named crash points or random instants.

Each trial runs the reference workload (`overnight.testing.crash_workload`) in a worker process
on a SQLite file, lets it die by SIGKILL, resumes the run in fresh processes (resolving a parked
unsafe step the way a person would), and checks against a ledger kept in this process: no
committed step ran again, no effect was applied twice, keyed steps were re-invoked at most once
per kill with the same key, an in-doubt unsafe step parked the run, and the output equals the
uninterrupted run's, with the now/random/uuid values first drawn.

Non-pure steps run in a fixed order, so the n-th hit of `after_intent`/`after_effect` names a
step: 1-3 the branches' `save_part` (keyed), 4 `record_drawn` (keyed), 5 `book`
(reconcilable), 6 `charge` (unsafe). `after_step_return` hits 1-6 are the gather's steps, 7
`flaky`, 8 `record_drawn`, 9 `book`, 10 `charge`, 11 `summarize`.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from overnight import Context, Engine, RetryPolicy, UserError, current_step, step, workflow
from overnight._engine.crash import KERNEL_POINTS
from overnight.store import Store
from overnight.testing import (
    CrashAt,
    KillAfter,
    Ledger,
    TrialResult,
    parse_kill,
    plan_campaign,
    run_trial,
    uninterrupted,
)
from overnight.testing.crash_workload import REFERENCE

pytestmark = pytest.mark.crash

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def ledger() -> Iterator[Ledger]:
    with Ledger() as served:
        yield served


@pytest.fixture(scope="module")
def reference(ledger: Ledger, tmp_path_factory: pytest.TempPathFactory) -> TrialResult:
    db = tmp_path_factory.mktemp("reference") / "runs.db"
    result = uninterrupted(REFERENCE, db, "reference", ledger=ledger)
    result.assert_ok()
    assert result.check.kills == 0
    assert result.check.invocations == 13  # 3 fetch, 3 save_part, 3 flaky, 4 more steps
    return result


def trial(
    ledger: Ledger,
    reference: TrialResult,
    tmp_path: Path,
    kills: list[str | None],
    signal_mode: Any = "on_wait",
    seed: int = 0,
) -> TrialResult:
    result = run_trial(
        REFERENCE,
        tmp_path / "runs.db",
        f"trial-{tmp_path.name}",
        kills,
        ledger=ledger,
        reference=reference,
        signal_mode=signal_mode,
        seed=seed,
    )
    result.assert_ok()
    return result


def in_doubt_at_first_kill(result: TrialResult) -> tuple[str, ...]:
    return result.incarnations[0].snapshot.in_doubt_keys()


# (id, kills per process, signal mode, expectations on the check and the first kill)
TARGETED: list[tuple[str, list[str | None], str, dict[str, Any]]] = [
    ("intent-keyed-branch", ["after_intent:2"], "early", {"doubt": r"gather#1/\d/save_part#1"}),
    ("intent-keyed", ["after_intent:4"], "on_wait", {"doubt": "record_drawn#1"}),
    ("intent-reconcilable", ["after_intent:5"], "on_wait", {"doubt": "book#1"}),
    (
        "intent-unsafe",
        ["after_intent:6"],
        "before_start",
        {"doubt": "charge#1", "parked_for_unsafe": 1, "resolution": ("charge#1", "retry")},
    ),
    (
        "effect-keyed-branch",
        ["after_effect:1"],
        "on_wait",
        {"doubt": r"gather#1/\d/save_part#1", "min_dedup": 1},
    ),
    ("effect-keyed", ["after_effect:4"], "early", {"doubt": "record_drawn#1", "min_dedup": 1}),
    ("effect-reconcilable", ["after_effect:5"], "on_wait", {"doubt": "book#1", "once": "book#1"}),
    (
        "effect-unsafe",
        ["after_effect:6"],
        "on_wait",
        {"doubt": "charge#1", "parked_for_unsafe": 1, "resolution": ("charge#1", "result")},
    ),
    ("step-return-flaky", ["after_step_return:7"], "early", {}),
    (
        "step-return-unsafe",
        ["after_step_return:10"],
        "on_wait",
        {"doubt": "charge#1", "parked_for_unsafe": 1, "resolution": ("charge#1", "result")},
    ),
    ("group-commit", ["in_group_commit:12"], "on_wait", {}),
    ("after-commit", ["after_commit:9"], "early", {}),
    ("timer-fire", ["after_timer_fire:1"], "before_start", {}),
    ("signal-ack-early", ["before_signal_ack:1"], "early", {}),
    ("signal-ack-on-wait", ["before_signal_ack:1"], "on_wait", {}),
    ("before-output", ["before_output:1"], "on_wait", {}),
    ("first-claim", ["after_claim:1"], "on_wait", {}),
    ("second-claim", ["after_claim:2"], "on_wait", {}),
    ("lease-renew", ["before_lease_renew:1"], "early", {}),
    (
        "unsafe-in-doubt-twice",
        ["after_intent:6", None, "after_effect:1"],
        "early",
        {"parked_for_unsafe": 2, "parks_resolved": 2},
    ),
    ("keyed-killed-twice", ["after_effect:4", "after_effect:1"], "on_wait", {"min_dedup": 2}),
]


@pytest.mark.parametrize(
    ("kills", "signal_mode", "expect"),
    [pytest.param(k, m, e, id=name) for name, k, m, e in TARGETED],
)
def test_named_crash_point(
    ledger: Ledger,
    reference: TrialResult,
    tmp_path: Path,
    kills: list[str | None],
    signal_mode: str,
    expect: dict[str, Any],
) -> None:
    result = trial(ledger, reference, tmp_path, kills, signal_mode)
    planned = [i for i in result.incarnations if i.kill is not None]
    assert len(planned) == sum(k is not None for k in kills)
    for process in planned:
        # The armed point was reached and killed the worker with SIGKILL.
        assert process.returncode == -signal.SIGKILL, result.describe()
    check = result.check
    assert check.kills == len(planned)
    assert check.completed_steps_rerun == 0
    assert check.duplicate_effects == 0
    assert check.completed
    if "doubt" in expect:
        doubt = in_doubt_at_first_kill(result)
        assert any(re.fullmatch(expect["doubt"], k) for k in doubt), result.describe()
    if "parked_for_unsafe" in expect:
        assert check.unsafe_in_doubt == check.parked_for_unsafe == expect["parked_for_unsafe"]
    else:
        assert check.unsafe_in_doubt == check.parks_resolved == 0
    if "parks_resolved" in expect:
        assert check.parks_resolved == expect["parks_resolved"]
    if "resolution" in expect:
        assert [i.resolution for i in result.incarnations if i.resolution] == [expect["resolution"]]
    if "min_dedup" in expect:
        assert check.dedup_hits >= expect["min_dedup"]
        assert check.keyed_reinvocations >= expect["min_dedup"]
    if "once" in expect:
        assert len(ledger.invocations(result.run_id, expect["once"])) == 1


def test_every_crash_point_has_a_targeted_trial() -> None:
    covered = set()
    for _, kills, _, _ in TARGETED:
        for spec in filter(None, kills):
            kill = parse_kill(spec)
            assert isinstance(kill, CrashAt)
            covered.add(kill.point)
    assert covered == KERNEL_POINTS  # the agent loop's points are tested with agents


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_instant_kill(
    ledger: Ledger, reference: TrialResult, tmp_path: Path, seed: int
) -> None:
    served = reference.incarnations[0].served or 1.0
    modes = ("before_start", "early", "on_wait")
    result = trial(
        ledger, reference, tmp_path, [f"random:0-{served:.2f}"], modes[seed % 3], seed=seed
    )
    assert result.check.completed_steps_rerun == result.check.duplicate_effects == 0


def test_random_instant_kill_during_startup(
    ledger: Ledger, reference: TrialResult, tmp_path: Path
) -> None:
    # Counted from the process start: the kill may land while the worker opens the store.
    lifetime = reference.incarnations[0].seconds
    trial(ledger, reference, tmp_path, [f"random@start:0-{lifetime:.2f}"], "on_wait", seed=4)


def test_kill_specs_parse() -> None:
    assert parse_kill("after_effect:5") == CrashAt("after_effect", 5)
    assert parse_kill("before_output") == CrashAt("before_output", 1)
    assert parse_kill("random:0.5") == KillAfter(0.0, 0.5)
    assert parse_kill("random:0.1-0.4") == KillAfter(0.1, 0.4)
    assert parse_kill("random@start:1") == KillAfter(0.0, 1.0, "start")
    assert parse_kill(str(KillAfter(0.1, 0.4, "start"))) == KillAfter(0.1, 0.4, "start")
    with pytest.raises(UserError, match="whole number"):
        parse_kill("after_effect:x")
    with pytest.raises(UserError, match="random:T"):
        parse_kill("random:soon")


def test_campaign_plan_covers_every_point_within_its_hits() -> None:
    hits = dict.fromkeys(KERNEL_POINTS, 4) | {"before_output": 1}
    plans = plan_campaign(
        100, hits, random.Random(0), start_window=(0.0, 1.0), double_kill_every=10
    )
    assert len(plans) == 100
    named = [p.kills[0] for p in plans if isinstance(p.kills[0], CrashAt)]
    assert {k.point for k in named} == KERNEL_POINTS
    assert all(1 <= k.n <= hits[k.point] for k in named)
    labels = {p.label for p in plans}
    assert {"random", "random@start"} <= labels
    assert sum(len(p.kills) == 2 for p in plans) == 10
    assert {p.signal_mode for p in plans} == {"before_start", "early", "on_wait"}


def test_unknown_crash_point_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"unknown crash point 'after_lunch'.*after_effect"):
        run_trial(REFERENCE, tmp_path / "runs.db", "r", "after_lunch:1")
    with pytest.raises(UserError, match="unknown crash point"):
        CrashAt("afterintent")
    # A worker armed with an unknown name refuses to start instead of running unarmed.
    env = {**os.environ, "OVERNIGHT_CRASH_AT": "after_lunch:1", "PYTHONPATH": str(SRC)}
    config = orjson.dumps({"db": str(tmp_path / "w.db"), "run_id": "r", "workload": "x:y"})
    done = subprocess.run(
        [sys.executable, "-m", "overnight.testing._crash_worker", config.decode()],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "unknown crash point 'after_lunch'" in done.stderr
    assert not (tmp_path / "w.db").exists()


def test_a_named_point_kills_with_sigkill(ledger: Ledger, tmp_path: Path) -> None:
    # No reference needed: the first process must die of SIGKILL at the first step effect.
    result = run_trial(REFERENCE, tmp_path / "runs.db", "sigkill", "after_effect:1", ledger=ledger)
    first = result.incarnations[0]
    assert first.killed
    assert first.returncode == -signal.SIGKILL
    assert first.hits is None  # it never reported: it died at the point
    assert result.check.ok, result.describe()


def test_an_unreached_point_is_reported_not_killed(ledger: Ledger, tmp_path: Path) -> None:
    result = run_trial(
        REFERENCE, tmp_path / "runs.db", "unreached", "before_output:2", ledger=ledger
    )
    assert [i.returncode for i in result.incarnations] == [0]
    assert result.incarnations[0].hits == 1
    assert result.check.kills == 0


# -- engine bugs the trials found -----------------------------------------------------------------

ATTEMPTS: list[int] = []


@step(effect="pure", retry=RetryPolicy(max_attempts=3, initial_delay=0.05, jitter=0))
async def pure_flaky() -> int:
    ATTEMPTS.append(current_step().attempt)
    if len(ATTEMPTS) < 3:
        raise ConnectionError("transient")
    return current_step().attempt


@workflow
async def retries_a_pure_step(ctx: Context) -> int:
    return await pure_flaky()


async def test_pure_step_attempt_survives_a_resumed_backoff(store: Store) -> None:
    ATTEMPTS.clear()
    # inline_wait_seconds=0: every backoff suspends the run, which resumes from its journal
    # exactly as it does after a kill -9 during the backoff.
    async with Engine(store, poll_seconds=0.01, inline_wait_seconds=0.0) as engine:
        assert await engine.run(retries_a_pure_step, run_id="attempts") == 3
    assert ATTEMPTS == [1, 2, 3]
