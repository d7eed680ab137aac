"""Fault tests of the PostgreSQL store with real worker processes (`overnight.testing.pgfaults`).

Worker subprocesses share the runs of one schema on the real server while the test kills them
(SIGKILL), stops them past their lease (SIGSTOP, then SIGCONT), drains them (SIGTERM) or
terminates every connection they have (`pg_terminate_backend`). A ledger in this process logs
every step invocation with its key and applies each effect key once; the checks compare it with
what the database committed (see `overnight.testing.pgfaults.checks`). Leases are short (1.5 s)
so that takeovers happen within the test; every wait is on observable state, with a timeout, and
every worker still alive is killed in `finally` (the `Cluster` context).

The 1,000-run version of the SIGKILL campaign runs in `make bench` (`benchmarks/postgres.py`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from overnight import Engine
from overnight._engine import codec
from overnight.store.postgres import PostgresStore
from overnight.testing import Ledger
from overnight.testing.pgfaults import (
    CampaignConfig,
    Cluster,
    Schema,
    Snapshot,
    check_runs,
    interrupted_runs,
    ledger_position,
    run_kill_campaign,
)
from overnight.testing.pgfaults.campaign import DEFAULT_ENGINE, start_runs
from overnight.testing.pgfaults.workload import book_value, expected_chain, stalls
from tests.conftest import POSTGRES_URL, fresh_schema, with_options

pytestmark = pytest.mark.crash

ROOT = Path(__file__).resolve().parents[1]
PYTHONPATH = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
"""Workers import this checkout's overnight (and, from the root, the tests' modules)."""


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as schema:
        yield with_options(POSTGRES_URL, schema=schema, pool_max=4)


def until(what: str, check: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.005)


def start_chains(url: str, runs: int, steps: int, lo: float, hi: float) -> dict[str, int]:
    """Start `runs` chains; return their expected outputs by run id."""
    specs = {f"r{i:04d}": {"i": i, "steps": steps, "lo": lo, "hi": hi} for i in range(runs)}
    asyncio.run(start_runs(url, specs))
    return {run_id: expected_chain(spec["i"], steps) for run_id, spec in specs.items()}


# -- SIGKILL: random workers killed and restarted while 4 share the runs ------------------------


def test_workers_killed_at_random_and_restarted_lose_and_repeat_nothing(url: str) -> None:
    config = CampaignConfig(runs=240, workers=4, kills=8, kill_every=(0.5, 1.0), seed=20261125)
    result = run_kill_campaign(url, config, pythonpath=PYTHONPATH)
    print("\n" + result.describe())
    assert result.ok, result.describe()
    c = result.check
    assert result.kills >= 5, "the runs ended before the campaign could kill enough workers"
    assert (c.completed, c.wrong_outputs, c.not_completed) == (240, 0, 0)
    assert c.committed_reinvoked == 0
    assert c.unexplained_reinvocations == 0
    assert c.max_keyed_reinvocations <= result.kills
    assert (c.duplicate_effects, c.missing_effects, c.key_changes) == (0, 0, 0)
    assert c.effects_applied == 240 * 3  # one per keyed step of every run
    assert c.reinvocations > 0  # kills did land inside steps


# -- named crash points, on PostgreSQL ----------------------------------------------------------

POINTS = [
    "after_claim:1",
    "before_lease_renew:2",
    "after_intent:4",
    "after_effect:4",
    "in_group_commit:6",
    "after_commit:6",
]


@pytest.mark.parametrize("point", POINTS)
def test_a_worker_killed_at_a_named_point_loses_and_repeats_nothing(
    url: str, tmp_path: Path, point: str
) -> None:
    """A worker kills itself with SIGKILL at a named crash point while it holds runs; a second
    worker takes them over once the leases expire; every run completes, nothing is repeated."""
    with (
        Ledger() as ledger,
        Schema(url) as db,
        Cluster(url, tmp_path, ledger=ledger, options=DEFAULT_ENGINE, pythonpath=PYTHONPATH) as cl,
    ):
        crashing = cl.spawn("crashing", crash_at=point)
        expected = start_chains(url, runs=16, steps=6, lo=0.02, hi=0.08)
        until("the worker to reach " + point, lambda: crashing.returncode is not None, timeout=30)
        assert crashing.returncode == -signal.SIGKILL, crashing.stderr()
        snapshot = Snapshot(
            f"killed at {point}", frozenset(db.done_keys()), ledger_position(ledger)
        )
        cl.spawn("other")
        until("every run completes", lambda: db.counts().get("completed") == 16, timeout=60)
        assert cl.stop_all(timeout=30) == {"other": 0}
        ledger.wait_idle(timeout=10)
        check = check_runs(
            ledger=ledger,
            results=db.results(),
            expected=expected,
            done=db.done_keys(),
            failures=db.failures(),
            snapshots=[snapshot],
            killed=["crashing"],
        )
    print(f"\nkilled at {point}: " + check.describe())
    assert check.ok, check.describe()
    assert (check.completed, check.committed_reinvoked, check.duplicate_effects) == (16, 0, 0)
    assert check.max_keyed_reinvocations <= 1


# -- SIGSTOP past the lease, then SIGCONT: the stopped worker is fenced out ---------------------


def test_a_worker_stopped_past_its_lease_has_its_writes_rejected(url: str, tmp_path: Path) -> None:
    """`hold` (keyed) applies its effect and then blocks its worker for 0.5 s (less than the
    lease): the worker is stopped there, its lease expires, another worker takes the run over
    and finishes it (re-invoking `hold` with the same key: the ledger dedupes it). Continued,
    the stopped worker journals `hold` and commits the next step's intent: the commit is
    rejected (StaleLeaseError), the next step never starts there, the journal is unchanged."""
    options = {**DEFAULT_ENGINE, "max_concurrent_runs": 4}
    with (
        Ledger() as ledger,
        Schema(url) as db,
        Cluster(url, tmp_path, ledger=ledger, options=options, pythonpath=PYTHONPATH) as cluster,
    ):
        stopped = cluster.spawn("stopped")
        cluster.wait_ready([stopped])
        asyncio.run(_start(url, stalls, {"hold_seconds": 0.5}, "stalled"))
        until(
            "the worker applied hold's effect and blocks",
            lambda: stopped.blocked_in_sleep() and ledger.attempts("stalled"),
            timeout=20,
        )
        before = db.run("stalled")
        assert before is not None
        assert (before["status"], before["owner"]) == ("running", "stopped")
        cluster.send(stopped, signal.SIGSTOP)
        stopped_at = time.monotonic()
        survivor = cluster.spawn("survivor")
        until("the survivor finishes the run", lambda: _status(db, "stalled") == "completed", 30)
        taken_over_after = time.monotonic() - stopped_at
        after = db.run("stalled")
        assert after is not None
        assert after["epoch"] == before["epoch"] + 1  # taken over once, by the survivor
        assert after["recoveries"] == 1
        journal = db.entries("stalled")

        cluster.send(stopped, signal.SIGCONT)
        rejected = f"lease (epoch {before['epoch']}) was taken over by another worker"
        until("the continued worker's write is rejected", lambda: rejected in stopped.stderr(), 20)
        assert stopped.alive()
        assert db.entries("stalled") == journal  # nothing the stopped worker wrote got in
        assert db.run("stalled") == after
        assert all(b'"stopped"' not in data for _, _, _, data in journal)
        assert codec.loads(after["result"]) == ["survivor", book_value(1, 1)]

        # The effect was applied once: by the stopped worker, before it was stopped; the
        # survivor's re-invocation (same key) was deduped; the stopped worker, continued,
        # applied nothing more and never started the next step.
        hold = [(a.tag, a.applied) for a in ledger.attempts("stalled") if "hold" in a.step_key]
        assert hold == [("stopped", True), ("survivor", False)]
        book = [(i.tag, i.idempotency_key) for i in ledger.invocations("stalled", "book#1")]
        assert book == [("survivor", "stalled/book#1")]
        assert [a.applied for a in ledger.attempts("stalled") if "book" in a.step_key] == [True]
        assert cluster.stop_all(timeout=20) == {"stopped": 0, "survivor": 0}
        ledger.wait_idle(timeout=10)
        check = check_runs(
            ledger=ledger,
            results=db.results(),
            expected={"stalled": ["survivor", book_value(1, 1)]},
            done=db.done_keys(),
            failures=db.failures(),
            interrupted=interrupted_runs("stopped", stopped.stderr()),
        )
        print(f"\ntaken over {taken_over_after:.2f} s after SIGSTOP; " + check.describe())
        assert check.ok, check.describe()
        assert (check.reinvocations, check.dedup_hits, check.effects_applied) == (1, 1, 2)
        assert survivor.returncode == 0


async def _start(url: str, workflow: Any, spec: Any, run_id: str) -> None:
    async with Engine(PostgresStore(url), worker=False) as client:
        await client.start(workflow, spec, run_id=run_id)


def _status(db: Schema, run_id: str) -> str | None:
    run = db.run(run_id)
    return None if run is None else str(run["status"])


# -- SIGTERM: the worker drains -----------------------------------------------------------------


def test_a_worker_given_sigterm_drains_and_its_runs_go_on_elsewhere(
    url: str, tmp_path: Path
) -> None:
    """The lease is long (30 s): the other worker can only get the drained worker's runs this
    soon because the drain requeued them. Steps in flight finish, so nothing runs twice."""
    options = {**DEFAULT_ENGINE, "lease_seconds": 30.0, "heartbeat_seconds": 1.0}
    with (
        Ledger() as ledger,
        Schema(url) as db,
        Cluster(url, tmp_path, ledger=ledger, options=options, pythonpath=PYTHONPATH) as cluster,
    ):
        drained, other = cluster.spawn("drained"), cluster.spawn("other")
        cluster.wait_ready([drained, other])
        expected = start_chains(url, runs=60, steps=6, lo=0.05, hi=0.15)
        until(
            "the worker to drain holds runs, mid-step",
            lambda: len(db.owned("drained")) >= 4 and ledger.invocations() != [],
            timeout=20,
        )
        held = set(db.owned("drained"))
        started = time.monotonic()
        assert cluster.terminate(drained, timeout=20) == 0
        drain_seconds = time.monotonic() - started
        # Requeued (owner NULL) or finished: none left behind.
        assert db.rows("SELECT id, status FROM runs WHERE owner = 'drained'") == []
        states = {run_id: _status(db, run_id) for run_id in held}
        until(
            "every run completes (long before a 30 s lease could expire)",
            lambda: db.counts().get("completed") == 60,
            timeout=20,
        )
        assert cluster.stop_all(timeout=20) == {"other": 0}
        ledger.wait_idle(timeout=10)
        check = check_runs(
            ledger=ledger,
            results=db.results(),
            expected=expected,
            done=db.done_keys(),
            failures=db.failures(),
        )
    print(
        f"\ndrained in {drain_seconds:.2f} s holding {len(held)} runs; right after: {states}; "
        + check.describe()
    )
    assert check.ok, check.describe()
    assert check.reinvocations == 0  # the steps in flight finished: nothing ran twice
    finished_elsewhere = [
        run_id for run_id in held if any(i.tag == "other" for i in ledger.invocations(run_id))
    ]
    assert finished_elsewhere  # drained runs went on in the other worker


# -- pg_terminate_backend on every connection of every worker, mid-run --------------------------


def test_every_worker_connection_terminated_mid_run_loses_and_repeats_nothing(
    url: str, tmp_path: Path
) -> None:
    options = {**DEFAULT_ENGINE, "listen_retry_seconds": 0.5}
    runs = 160
    with (
        Ledger() as ledger,
        Schema(url) as db,
        Cluster(url, tmp_path, ledger=ledger, options=options, pythonpath=PYTHONPATH) as cluster,
    ):
        workers = [cluster.spawn() for _ in range(4)]
        cluster.wait_ready(workers)
        expected = start_chains(url, runs=runs, steps=6, lo=0.02, hi=0.12)
        snapshots, terminated = [], []
        for share in (0.15, 0.4, 0.65):
            until(
                f"{share:.0%} of the runs completed",
                lambda share=share: db.counts().get("completed", 0) >= runs * share,
                timeout=40,
            )
            terminated.append(db.terminate_backends())
            done = frozenset(db.done_keys())
            label = f"termination {len(terminated)}"
            snapshots.append(Snapshot(label, done, ledger_position(ledger)))
        until("every run completes", lambda: db.counts().get("completed") == runs, timeout=60)
        assert all(w.alive() for w in workers)
        assert cluster.stop_all(timeout=30) == {w.tag: 0 for w in workers}
        ledger.wait_idle(timeout=10)
        interrupted = set()
        for w in workers:
            interrupted |= interrupted_runs(w.tag, w.stderr())
            assert "wake-up connection was lost" in w.stderr()  # every worker was hit
            assert "executor crashed" not in w.stderr()
        retries = sum(int((w.report() or {}).get("retries", 0)) for w in workers)
        check = check_runs(
            ledger=ledger,
            results=db.results(),
            expected=expected,
            done=db.done_keys(),
            failures=db.failures(),
            snapshots=snapshots,
            interrupted=interrupted,
        )
    print(
        f"\nterminated {terminated} connections; {len(interrupted)} executions stopped, "
        f"{retries} transactions retried; " + check.describe()
    )
    assert all(n >= 2 * len(workers) for n in terminated)  # pool and listener of each worker
    assert check.ok, check.describe()
    assert check.effects_applied == runs * 3


# -- a worker frozen while its transaction is open --------------------------------------------


def _freeze_mid_transaction(cluster: Cluster, worker: Any, db: Schema) -> int:
    """SIGSTOP the worker at a moment its open batch transaction holds `FOR UPDATE` locks on
    rows of runs it executes; return how many of its running runs are locked."""

    def locked() -> int:
        held = db.rows(
            "SELECT COUNT(*) FROM runs WHERE owner = %s AND status = 'running'", worker.tag
        )
        free = db.rows(  # a statement of its own: the locks it takes end with it
            "SELECT COUNT(*) FROM (SELECT id FROM runs WHERE owner = %s AND status = 'running' "
            "FOR UPDATE SKIP LOCKED) AS free",
            worker.tag,
        )
        return int(held[0][0]) - int(free[0][0])

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        cluster.send(worker, signal.SIGSTOP)
        count = locked()
        if count:
            return count
        cluster.send(worker, signal.SIGCONT)
        time.sleep(0.003)
    pytest.fail("could not stop the worker while its transaction held locks")


def _frozen_worker_runs_go_on(url: str, tmp_path: Path, a_options: str) -> None:
    """Worker `frozen` is stopped mid-transaction; every run must still complete, by `other`,
    while `frozen` stays stopped (its leases expire after 1.5 s). Then it is continued: its
    writes must be rejected and nothing repeated."""
    runs = 40
    with (
        Ledger() as ledger,
        Schema(url) as db,
        Cluster(url, tmp_path, ledger=ledger, options=DEFAULT_ENGINE, pythonpath=PYTHONPATH) as cl,
    ):
        frozen = cl.spawn("frozen", url=url + a_options, max_concurrent_runs=20)
        cl.wait_ready([frozen])
        expected = start_chains(url, runs=runs, steps=20, lo=0.0, hi=0.01)
        until("the worker holds runs", lambda: len(db.owned("frozen")) >= 10, timeout=20)
        locked = _freeze_mid_transaction(cl, frozen, db)
        other = cl.spawn("other")
        # Generous: the idle-transaction timeout (5 s), a lease (1.5 s), the new worker's start
        # and the remaining steps, on a loaded 2-core machine. The point is that they complete.
        deadline = time.monotonic() + 30
        while db.counts().get("completed") != runs:  # the frozen worker is still stopped
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(db.owned('frozen'))} runs ({locked} locked when it was stopped) are "
                    f"still held by the frozen worker 30 s after it was stopped (lease 1.5 s): "
                    f"{db.counts()}"
                )
            time.sleep(0.02)
        cl.send(frozen, signal.SIGCONT)
        assert cl.stop_all(timeout=30) == {"frozen": 0, "other": 0}
        ledger.wait_idle(timeout=10)
        check = check_runs(
            ledger=ledger,
            results=db.results(),
            expected=expected,
            done=db.done_keys(),
            failures=db.failures(),
            interrupted=interrupted_runs("frozen", frozen.stderr())
            | interrupted_runs("other", other.stderr()),
        )
    print("\n" + check.describe())
    assert check.ok, check.describe()


def test_runs_of_a_worker_frozen_mid_transaction_are_taken_over(url: str, tmp_path: Path) -> None:
    _frozen_worker_runs_go_on(url, tmp_path, "")


def test_idle_in_transaction_timeout_frees_the_runs_of_a_frozen_worker(
    url: str, tmp_path: Path
) -> None:
    """A timeout given in the URL's libpq options wins over the store's default."""
    timeout = "&options=-c%20idle_in_transaction_session_timeout%3D1000"
    _frozen_worker_runs_go_on(url, tmp_path, timeout)


# -- the checks themselves catch what they are for (no PostgreSQL needed) -----------------------


def _record(ledger: Ledger, tag: str, calls: list[tuple[str, str, str, str | None]]) -> None:
    """Send `(op, run id, step key, effect key)` records to the ledger as process `tag`."""

    async def send() -> None:
        client = ledger.client(tag)
        for op, run_id, key, effect in calls:
            idem = f"{run_id}/{key}"
            if op == "invoke":
                await client.invoke(run_id=run_id, step_key=key, idempotency_key=effect or idem)
            else:
                await client.request(
                    {"op": "apply", "key": effect or idem, "run_id": run_id, "step_key": key}
                )

    asyncio.run(send())


def _check(ledger: Ledger, **overrides: Any) -> Any:
    args: dict[str, Any] = {
        "ledger": ledger,
        "results": {"r": ("completed", codec.dumps(1))},
        "expected": {"r": 1},
        "done": {("r", "mix#1"), ("r", "book#1")},
        "failures": {},
    }
    args.update(overrides)
    return check_runs(**args)


def test_the_checks_pass_a_clean_history_and_a_reinvocation_after_a_kill() -> None:
    with Ledger() as ledger:
        _record(ledger, "w1", [("invoke", "r", "mix#1", None), ("invoke", "r", "book#1", None)])
        _record(ledger, "w1", [("apply", "r", "book#1", None)])
        _record(ledger, "w2", [("invoke", "r", "book#1", None), ("apply", "r", "book#1", None)])
        check = _check(ledger, killed=["w1"])
        assert check.ok, check.describe()
        assert (check.reinvocations, check.keyed_reinvocations, check.dedup_hits) == (1, 1, 1)
        unexplained = _check(ledger)  # the same history without the kill
        assert unexplained.unexplained_reinvocations == 1
        assert not unexplained.ok


def test_the_checks_catch_a_committed_step_invoked_again() -> None:
    with Ledger() as ledger:
        _record(ledger, "w1", [("invoke", "r", "mix#1", None)])
        snap = Snapshot("kill 1", frozenset({("r", "mix#1")}), ledger_position(ledger))
        _record(ledger, "w2", [("invoke", "r", "mix#1", None)])
        check = _check(ledger, snapshots=[snap], killed=["w1"], done={("r", "mix#1")})
        assert check.committed_reinvoked == 1
        assert not check.ok
        # A worker that lost the run may start a pure step before it learns so: counted apart.
        zombie = _check(
            ledger, snapshots=[snap], interrupted={("w2", "r"), ("w1", "r")}, done=set()
        )
        assert (zombie.committed_reinvoked, zombie.zombie_pure_reruns) == (0, 1)
        assert zombie.ok, zombie.describe()


def test_the_checks_catch_changed_keys_second_effects_missing_effects_and_outputs() -> None:
    with Ledger() as ledger:
        _record(ledger, "w1", [("invoke", "r", "book#1", None), ("apply", "r", "book#1", None)])
        _record(ledger, "w2", [("invoke", "r", "book#1", "r/other"), ("apply", "r", "book#1", "x")])
        check = _check(
            ledger,
            killed=["w1"],
            done={("r", "book#1"), ("r", "book#3")},
            results={"r": ("completed", codec.dumps(2))},
        )
        assert check.key_changes == 2  # invoked with another key; applied under another key
        assert check.duplicate_effects == 1  # the step's effect applied twice (two keys)
        assert check.missing_effects == 1  # book#3 is done without an effect
        assert check.wrong_outputs == 1
        failed = _check(ledger, results={"r": ("failed", None)}, killed=["w1"])
        assert failed.not_completed == 1
