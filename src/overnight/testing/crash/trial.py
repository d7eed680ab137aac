"""Running one crash trial: worker subprocesses, kills, a person's answers, journal snapshots.

A trial runs a workload's workflow in worker subprocesses on one SQLite file:

1. the first worker runs the run until it dies: at an armed crash point
   (`CrashAt("after_effect", 5)`, i.e. `OVERNIGHT_CRASH_AT=after_effect:5`), or when the runner
   sends SIGKILL at a random instant (`KillAfter(0.0, 1.0)`: uniformly within that many seconds
   after the worker said hello to the ledger);
2. once the process is dead the runner waits until the ledger has recorded everything it sent,
   and snapshots the journal: which step keys had a committed `done`, which were in doubt;
3. a fresh, unarmed worker resumes the run (more kills can be listed for later incarnations).
   If the run parks because an `unsafe` step is in doubt, the runner resolves it the way a
   person would: it asks the ledger whether that step's effect was applied and calls
   `Engine.resolve_step` with the result, or with `retry=True`, then starts another worker;
4. the runner sends the workload's signal: before the run starts, as soon as the run exists, or
   when the run waits for it (`signal_mode`);
5. `check_trial` compares everything with the ledger and with an uninterrupted reference run
   (see `overnight.testing.crash.checks`), and fills `TrialResult.check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal as signals
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from ...engine import Engine
from ...errors import UserError
from ...store.base import TERMINAL
from ...store.common import wait_signals
from ..ledger import Ledger
from .checks import Incarnation, TrialCheck, TrialResult, check_trial
from .journal import read_journal
from .kills import ENV_CRASH, CrashAt, Kill, KillAfter, parse_kill
from .workload import SIGNAL_MODES, SignalMode, Workload


def _run_row(conn: sqlite3.Connection, run_id: str) -> tuple[str, bytes | None] | None:
    """The run's status and wait description, polled while a worker is alive."""
    try:
        row = conn.execute("SELECT status, waiting FROM runs WHERE id = ?", (run_id,)).fetchone()
    except sqlite3.OperationalError:
        return None  # the schema is not there yet, or the file is briefly locked
    return None if row is None else (str(row[0]), row[1])


def _pythonpath() -> str:
    """The subprocess must import this same overnight (and the caller's modules)."""
    # This file is <dir>/overnight/testing/crash/trial.py: <dir> holds the overnight in use.
    package_parent = str(Path(__file__).resolve().parents[3])
    paths = [package_parent, os.getcwd()]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        paths.append(existing)
    return os.pathsep.join(dict.fromkeys(paths))


async def _with_engine(db_path: str, action: Callable[[Engine], Awaitable[Any]]) -> Any:
    async with Engine(f"sqlite:///{db_path}", worker=False) as engine:
        return await action(engine)


def _control(db_path: str, action: Callable[[Engine], Awaitable[Any]]) -> Any:
    """Run one control-plane call (signal, resolve) as a person would, from this process."""
    return asyncio.run(_with_engine(db_path, action))


def _resolver(
    run_id: str, key: str, value: Any, *, retry: bool
) -> Callable[[Engine], Awaitable[Any]]:
    async def resolve(engine: Engine) -> Any:
        if retry:
            return await engine.resolve_step(run_id, key, retry=True)
        return await engine.resolve_step(run_id, key, result=value)

    return resolve


class _Trial:
    """The mutable state of one trial while it runs."""

    def __init__(
        self,
        workload: Workload,
        db_path: str,
        run_id: str,
        kills: Sequence[Kill | None],
        ledger: Ledger,
        signal_mode: SignalMode,
        rng: random.Random,
        workdir: str,
        process_timeout: float,
        max_processes: int,
        env: Mapping[str, str],
    ) -> None:
        self.workload = workload
        self.db_path = db_path
        self.run_id = run_id
        self.kills = list(kills)
        self.ledger = ledger
        self.signal_mode = signal_mode
        self.rng = rng
        self.workdir = workdir
        self.process_timeout = process_timeout
        self.max_processes = max_processes
        self.env = dict(env)
        self.signal_sent = workload.signal is None
        self.incarnations: list[Incarnation] = []
        self.error: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._last_poll = 0.0

    # -- signal -------------------------------------------------------------------------------

    def send_signal(self) -> None:
        assert self.workload.signal is not None
        name, payload = self.workload.signal
        signal_id = f"{self.run_id}:{name}"
        run_id = self.run_id

        async def send(engine: Engine) -> None:
            await engine.signal(run_id, name, payload, signal_id=signal_id)

        _control(self.db_path, send)
        self.signal_sent = True

    def start_and_signal(self) -> None:
        """`before_start`: create the run and send the signal before any worker runs."""
        workload, run_id = self.workload, self.run_id

        async def start(engine: Engine) -> None:
            await engine.start(workload.workflow, workload.input, run_id=run_id)

        _control(self.db_path, start)
        self.send_signal()

    def maybe_signal(self) -> None:
        if self.signal_sent or self.signal_mode == "before_start":
            return
        now = time.monotonic()
        if now - self._last_poll < 0.01:
            return
        self._last_poll = now
        if self._conn is None:
            if not os.path.exists(self.db_path):
                return
            self._conn = sqlite3.connect(self.db_path, timeout=10, isolation_level=None)
        row = _run_row(self._conn, self.run_id)
        if row is None:
            return
        assert self.workload.signal is not None
        status, waiting = row
        if self.signal_mode == "early" or (
            status == "waiting" and self.workload.signal[0] in wait_signals(waiting)
        ):
            self.send_signal()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- processes ----------------------------------------------------------------------------

    def run_process(self, index: int, kill: Kill | None) -> Incarnation:
        tag = f"{self.run_id}@{index}"
        inc = Incarnation(index, tag, None if kill is None else str(kill))
        env = dict(os.environ)
        env.pop(ENV_CRASH, None)
        env.update(self.env)
        env.update(self.ledger.env(tag))
        env["PYTHONPATH"] = _pythonpath()
        if isinstance(kill, CrashAt):
            env[ENV_CRASH] = str(kill)
        config = orjson.dumps(
            {"db": self.db_path, "run_id": self.run_id, "workload": self.workload.ref}
        ).decode()
        out_path = os.path.join(self.workdir, f"worker-{index}.out")
        err_path = os.path.join(self.workdir, f"worker-{index}.err")
        started = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "overnight.testing._crash_worker", config],
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        inc.pid = proc.pid
        try:
            self._watch(proc, inc, kill, started)
        finally:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        inc.seconds = time.monotonic() - started
        inc.returncode = proc.returncode
        inc.killed = proc.returncode == -signals.SIGKILL
        inc.stderr = Path(err_path).read_text(errors="replace")[-4000:]
        report = Path(out_path).read_bytes().strip().splitlines()
        if report:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                data = orjson.loads(report[-1])
                inc.hits, inc.served = data.get("hits"), data.get("served")
        # A killed worker may have left requests in flight: let the ledger record them all.
        if not self.ledger.wait_idle(timeout=10):
            self.error = "the ledger still had open connections 10 s after the worker ended"
        inc.snapshot = read_journal(self.db_path, self.run_id)
        return inc

    def _watch(
        self, proc: subprocess.Popen[bytes], inc: Incarnation, kill: Kill | None, started: float
    ) -> None:
        deadline = started + self.process_timeout
        kill_at: float | None = None
        while proc.poll() is None:
            now = time.monotonic()
            if (
                isinstance(kill, KillAfter)
                and kill_at is None
                and (kill.since == "start" or self.ledger.said_hello(inc.tag))
            ):
                origin = started if kill.since == "start" else now
                kill_at = origin + self.rng.uniform(kill.lo, kill.hi)
            if kill_at is not None and now >= kill_at:
                os.kill(proc.pid, signals.SIGKILL)
                proc.wait(timeout=10)
                return
            if now > deadline:
                inc.hung = True
                os.kill(proc.pid, signals.SIGKILL)
                proc.wait(timeout=10)
                return
            if not self.signal_sent:
                self.maybe_signal()
            time.sleep(0.002 if kill_at is not None else 0.005)

    # -- a person -----------------------------------------------------------------------------

    def resolve_park(self, inc: Incarnation) -> bool:
        """Resolve a parked run as a person would. False if there is nothing to resolve."""
        in_doubt = inc.snapshot.in_doubt_keys()
        if not in_doubt:
            return False
        for key in in_doubt:
            effects = self.ledger.effects_of_step(self.run_id, key)
            if effects:
                value = self.workload.resolve_result(key, effects[0])
                _control(self.db_path, _resolver(self.run_id, key, value, retry=False))
                inc.resolution = (key, "result")
            else:
                _control(self.db_path, _resolver(self.run_id, key, None, retry=True))
                inc.resolution = (key, "retry")
        return True

    # -- the trial ----------------------------------------------------------------------------

    def run(self) -> None:
        if self.signal_mode == "before_start" and self.workload.signal is not None:
            self.start_and_signal()
        for index in range(self.max_processes):
            kill = self.kills[index] if index < len(self.kills) else None
            inc = self.run_process(index, kill)
            self.incarnations.append(inc)
            if inc.hung:
                self.error = (
                    f"process {index} did not finish the run within {self.process_timeout} s "
                    f"(status {inc.status}): a hang or a lost wake-up"
                )
                return
            if not inc.killed and inc.returncode != 0:
                self.error = f"process {index} failed with exit code {inc.returncode}"
                return
            if self.error is not None:
                return
            status = inc.status
            if status in TERMINAL:
                return
            if status == "parked" and not inc.killed and not self.resolve_park(inc):
                self.error = f"the run parked with nothing in doubt: {inc.snapshot.note}"
                return
        self.error = f"the run did not end within {self.max_processes} processes"


def run_trial(
    workload: Workload,
    db_path: str | os.PathLike[str],
    run_id: str,
    kill: str | Kill | Sequence[str | Kill | None] | None = None,
    *,
    ledger: Ledger | None = None,
    reference: TrialResult | None = None,
    signal_mode: SignalMode = "on_wait",
    seed: int | None = None,
    process_timeout: float = 30.0,
    max_processes: int = 10,
    env: Mapping[str, str] | None = None,
) -> TrialResult:
    """Run one trial (see the module docstring) and check it.

    `kill` is one kill for the first process or a sequence for successive processes (`name:n`,
    `random:T`, `random:A-B`, `CrashAt`, `KillAfter`, or None to let that process live); None
    runs the run uninterrupted.
    `reference` is an uninterrupted trial of the same workload: without it, check (e) and the
    missing-effect part of (c) are skipped. A private Ledger is started when none is given.
    `env` is added to every worker's environment (e.g. where a test's protocol server listens).
    """
    kills: list[Kill | None]
    if kill is None:
        kills = []
    elif isinstance(kill, str | CrashAt | KillAfter):
        kills = [parse_kill(kill)]
    else:
        kills = [None if k is None else parse_kill(k) for k in kill]
    if signal_mode not in SIGNAL_MODES:
        raise UserError(f"signal_mode must be one of {SIGNAL_MODES}, got {signal_mode!r}")
    db = os.fspath(db_path)
    if read_journal(db, run_id).status is not None:
        raise UserError(
            f"run {run_id!r} already exists in {db!r}: give each trial a fresh run id or file"
        )
    own_ledger = ledger is None
    active = Ledger().start() if ledger is None else ledger
    workdir = tempfile.mkdtemp(prefix="overnight-crash-")
    started = time.monotonic()
    trial = _Trial(
        workload,
        os.path.abspath(db),
        run_id,
        kills,
        active,
        signal_mode,
        random.Random(seed),
        workdir,
        process_timeout,
        max_processes,
        env or {},
    )
    try:
        trial.run()
        result = TrialResult(
            run_id=run_id,
            db_path=db,
            kills=tuple(str(k) for k in kills),
            signal_mode=signal_mode,
            incarnations=trial.incarnations,
            final=read_journal(db, run_id),
            seconds=time.monotonic() - started,
            check=TrialCheck(),
            error=trial.error,
            applied_steps=frozenset(a.step_key for a in active.attempts(run_id) if a.applied),
        )
        result.check = check_trial(workload, result, active, reference)
        return result
    finally:
        trial.close()
        if own_ledger:
            active.close()
        shutil.rmtree(workdir, ignore_errors=True)


def uninterrupted(
    workload: Workload,
    db_path: str | os.PathLike[str],
    run_id: str,
    *,
    ledger: Ledger | None = None,
    signal_mode: SignalMode = "on_wait",
    process_timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> TrialResult:
    """The reference: the same run with no kill, in one worker process."""
    return run_trial(
        workload,
        db_path,
        run_id,
        None,
        ledger=ledger,
        signal_mode=signal_mode,
        process_timeout=process_timeout,
        env=env,
    )
