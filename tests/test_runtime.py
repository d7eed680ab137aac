"""The runtime: workers in real processes, drain on SIGTERM, cancellation, timers, limits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from overnight import (
    Context,
    Engine,
    RunDeadError,
    RunFailedError,
    RunNotFoundError,
    RunRecord,
    StoreError,
    UserError,
    WorkflowImportError,
    step,
    workflow,
)
from overnight.store import MemoryStore, Store
from overnight.store.base import NewRun
from overnight.store.sqlite import SqliteStore

from .helpers import until_status
from .workers import flows

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "runs.db")


@pytest.fixture
def step_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "steps.log"
    monkeypatch.setenv("OVERNIGHT_TEST_LOG", str(path))
    return path


@pytest.fixture
def spawn_worker(db: str, step_log: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(lease: float = 3.0, max_recoveries: int = 10) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
        argv = [sys.executable, "-m", "tests.workers.serve", db, str(lease), str(max_recoveries)]
        proc = subprocess.Popen(argv, env=env, cwd=ROOT)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition on observable state until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_sigterm_drains_finishing_the_current_step(
    db: str, step_log: Path, spawn_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    async with Engine(f"sqlite:///{db}", worker=False) as client:
        await client.start(flows.slow_steps, {"n": 4, "seconds": 0.4}, run_id="drain")
        worker = spawn_worker()
        await wait_for(lambda: "start 0" in lines(step_log))
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(15) == 0
        record = await client.get_run("drain")
        # The step in flight finished and was journaled; the run was requeued, lease released.
        assert lines(step_log) == ["start 0", "end 0"]
        assert record.status == "queued"
        assert record.owner is None
        spawn_worker()
        assert await client.result("drain", timeout=15) == [0, 1, 2, 3]
    assert lines(step_log).count("start 0") == 1


async def test_cancel_from_another_process_within_one_heartbeat(
    db: str, step_log: Path, spawn_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    lease = 1.5  # heartbeat = lease / 3 = 0.5 s
    async with Engine(f"sqlite:///{db}", worker=False) as client:
        await client.start(flows.endless, run_id="endless")
        spawn_worker(lease)
        await wait_for(lambda: "end 2" in lines(step_log))
        asked = time.monotonic()
        await client.cancel("endless")
        await until_status(client, "endless", "cancelled", timeout=5)
        assert time.monotonic() - asked <= lease / 3 + 0.5


@workflow
async def nap(ctx: Context, seconds: float) -> str:
    await ctx.sleep(seconds)
    return "rested"


async def test_timer_due_while_everything_was_down_fires_on_next_start(
    store_factory: Callable[[], Store],
) -> None:
    async with Engine(store_factory(), inline_wait_seconds=0, poll_seconds=0.02) as engine:
        await engine.start(nap, 0.2, run_id="nap")
        record = await until_status(engine, "nap", "waiting")
    assert record.due_at is not None
    # Everything is down while the timer falls due.
    await asyncio.sleep(max(0.0, record.due_at - time.time()) + 0.05)
    async with Engine(store_factory(), poll_seconds=0.02) as engine:
        started = time.monotonic()
        assert await engine.result("nap", timeout=5) == "rested"
        assert time.monotonic() - started < 1.0


@step(effect="pure")
async def noop(i: int) -> int:
    return i


@workflow
async def waits_for_ping(ctx: Context) -> str:
    await noop(1)
    return str(await ctx.wait_signal("ping"))


async def test_signal_sent_before_the_wait_is_not_lost(store_factory: Callable[[], Store]) -> None:
    async with Engine(store_factory(), worker=False) as client:
        await client.start(waits_for_ping, run_id="early")
        await client.signal("early", "ping", "hello")  # before any worker ran the workflow
    async with Engine(store_factory(), poll_seconds=0.02) as engine:
        assert await engine.result("early", timeout=5) == "hello"


async def test_waiting_runs_hold_no_worker(store_factory: Callable[[], Store]) -> None:
    async with Engine(store_factory(), poll_seconds=0.02) as engine:
        for i in range(50):
            await engine.start(waits_for_ping, run_id=f"w{i}")
        for i in range(50):
            await until_status(engine, f"w{i}", "waiting")
        await wait_for(lambda: engine.active_runs() == [])  # released as soon as they wait
        for i in range(50):
            await engine.signal(f"w{i}", "ping", i)
        assert [await engine.result(f"w{i}", timeout=5) for i in range(50)] == [
            str(i) for i in range(50)
        ]


async def test_unimportable_workflow_is_left_for_another_worker_with_the_reason(
    store_factory: Callable[[], Store],
) -> None:
    store = store_factory()
    async with Engine(store, poll_seconds=0.02) as engine:
        await store.create_run(
            NewRun(id="lost", workflow="tests.no_such_module:flow", version="1", input=b"null"),
            now=time.time(),
        )
        engine._wake_worker()
        record = await until_status(engine, "lost", "queued", after=lambda r: r.attempts == 1)
    assert "could not load the workflow" in str(record.note)
    assert "No module named 'tests.no_such_module'" in str(record.note)
    assert record.due_at is not None
    assert record.due_at > time.time()


async def test_bad_references_and_ids_are_clear_errors(engine: Engine) -> None:
    with pytest.raises(WorkflowImportError, match=r"'tests\.nope:flow' does not import"):
        await engine.start("tests.nope:flow")
    with pytest.raises(WorkflowImportError, match="not a workflow; decorate it with @workflow"):
        await engine.start("tests.workers.flows:log")
    for call in (
        engine.get_run("ghost"),
        engine.signal("ghost", "x"),
        engine.cancel("ghost"),
        engine.resume("ghost"),
    ):
        with pytest.raises(RunNotFoundError, match="no run with id 'ghost'"):
            await call


async def test_run_timeout_fails_the_run(engine: Engine) -> None:
    with pytest.raises(RunFailedError) as info:
        await engine.run(nap, 30, timeout=0.2)
    assert info.value.error_type == "RunTimeout"


@workflow
async def many_steps(ctx: Context, n: int) -> int:
    return sum([await noop(i) for i in range(n)])


async def test_step_budget(engine: Engine) -> None:
    assert await engine.run(many_steps, 5, max_steps=5) == 10
    with pytest.raises(RunFailedError) as info:
        await engine.run(many_steps, 6, max_steps=5)
    assert info.value.error_type == "BudgetExceeded"


@workflow
async def counts_up(ctx: Context, n: int) -> int:
    await noop(n)
    if n < 3:
        ctx.continue_as_new(n + 1)
    return n


async def test_continue_as_new_starts_a_fresh_run_that_result_follows(engine: Engine) -> None:
    assert await engine.run(counts_up, 1, run_id="loop") == 3
    first = await engine.get_run("loop")
    assert first.continued_to == "loop~2"
    assert [e.kind for e in await engine.journal("loop~3")] == ["done", "output"]


async def test_sqlite_store_file_can_be_shared_by_engines(db: str) -> None:
    async with Engine(SqliteStore(db), poll_seconds=0.02) as worker:
        async with Engine(SqliteStore(db), worker=False) as client:
            await client.start(waits_for_ping, run_id="shared")
            await until_status(client, "shared", "waiting")
            await client.signal("shared", "ping", "from another connection")
            assert await client.result("shared", timeout=5) == "from another connection"
        assert worker.store.url == f"sqlite:///{db}"


@workflow
async def counter(ctx: Context, n: int) -> int:
    if n < 3:
        ctx.continue_as_new(n + 1)
    return n * 100


@workflow
async def parent_of_counter(ctx: Context) -> int:
    return await ctx.child(counter, 0)


async def test_child_that_continues_as_new_returns_the_last_runs_output(engine: Engine) -> None:
    assert await engine.run(parent_of_counter, run_id="p") == 300


class FlakyClaims(MemoryStore):
    """A store whose first claim fails, as a locked or unreachable database would."""

    failures = 1

    async def claim(self, *args: Any, **kwargs: Any) -> list[RunRecord]:
        if self.failures:
            self.failures -= 1
            raise StoreError("database is locked")
        return await super().claim(*args, **kwargs)


async def test_worker_survives_a_failed_claim(caplog: pytest.LogCaptureFixture) -> None:
    async with Engine(FlakyClaims(), poll_seconds=0.02) as engine:
        assert await engine.run(many_steps, 2, run_id="flaky") == 1
    assert "claiming runs failed" in caplog.text


async def test_a_run_that_keeps_killing_its_worker_is_moved_to_dead(
    db: str, spawn_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    async with Engine(f"sqlite:///{db}", worker=False) as client:
        await client.start(flows.kills_its_worker, run_id="doomed")
        # The first worker dies; the second takes the run over after the lease (recovery 1,
        # allowed) and dies too; the third finds recovery 2 > max_recoveries and gives up on it.
        for _ in range(2):
            assert spawn_worker(lease=0.5, max_recoveries=1).wait(20) == -signal.SIGKILL
        spawn_worker(lease=0.5, max_recoveries=1)
        record = await until_status(client, "doomed", "dead", timeout=10)
        assert record.recoveries == 2
        with pytest.raises(RunDeadError, match="died 2 times"):
            await client.result("doomed")
        retried = await client.resume("doomed")  # retried by hand, with a fresh allowance
        assert (retried.status, retried.recoveries, retried.error) == ("queued", 0, None)


async def test_a_closed_engine_refuses_instead_of_starting_a_new_worker() -> None:
    engine = Engine("memory://")
    async with engine:
        await engine.start(many_steps, 1, run_id="x")
    with pytest.raises(UserError, match="this Engine was closed"):
        await engine.get_run("x")
