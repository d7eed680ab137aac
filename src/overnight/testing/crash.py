"""Crash trials: kill a worker with SIGKILL, resume the run in a fresh process, check the result.

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
5. `check_trial` compares everything with the ledger (kept by the test process, which is never
   killed) and with an uninterrupted reference run, and fills `TrialResult.check`.

The checks, each counted in `TrialCheck`:

(a) no step key whose `done` was committed before a process ended is invoked by a later process;
(b) a `keyed` step is re-invoked at most once per kill, always with the same idempotency key;
(c) every effect the reference run applied is applied exactly once; a duplicate apply attempt
    is allowed only from a `keyed` step (the service deduped it), never from a `reconcilable` or
    `unsafe` one;
(d) an `unsafe` step left in doubt by a kill parks the run (it is not run again blindly), and
    it runs again only after a person said `retry`;
(e) the run completes, its output equals the reference run's in its deterministic part, and its
    journaled now/random/uuid equal the values the ledger recorded when they were first drawn.

`run_campaign` runs many trials (every crash point at spread-out hits, random instants, some
double kills) and returns aggregate counts printable with `CampaignResult.table()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import random
import shutil
import signal as signals
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from .._engine import codec
from .._engine.crash import CRASH_POINTS
from ..engine import Engine
from ..errors import UserError
from ..step import Effect, Step
from ..store.base import TERMINAL
from ..store.common import wait_signals
from ..workflow import Workflow
from .ledger import ApplyAttempt, Ledger, step_name_of

ENV_CRASH = "OVERNIGHT_CRASH_AT"
"""The environment variable that arms a crash point in a worker process."""

SignalMode = Literal["before_start", "early", "on_wait"]
SIGNAL_MODES: tuple[SignalMode, ...] = ("before_start", "early", "on_wait")


def _identity(output: Any) -> Any:
    return output


def _effect_value(step_key: str, effect: ApplyAttempt) -> Any:
    return effect.value


# -- workloads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """What a crash trial runs, and what the checks need to know about it.

    `ref` is the `module:attr` of this object, so worker subprocesses can import it. Every step
    body should report `invoke()` to the ledger and apply its effects through it.
    """

    ref: str
    """`module:attr` naming this Workload (the worker subprocess imports it)."""
    workflow: Workflow[Any, Any]
    input: Any
    steps: tuple[Step[Any, Any], ...]
    """The workflow's steps; their effect classes drive the checks."""
    signal: tuple[str, Any] | None = None
    """`(name, payload)` of a signal the runner sends to the run, or None."""
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for the workers' `Engine` (keep `lease_seconds` short: a killed
    worker's lease must expire before the next worker can take the run over)."""
    deterministic: Callable[[Any], Any] = _identity
    """The part of the output that must equal the reference run's."""
    drawn: Callable[[Any], Any] | None = None
    """The part of the output holding journaled now/random/uuid values, if any."""
    drawn_step: str | None = None
    """Key of the step that applied the `drawn` values to the ledger when first drawn."""
    resolve_result: Callable[[str, ApplyAttempt], Any] = _effect_value
    """The result a person gives `resolve_step` for an in-doubt step whose effect was applied
    (default: the applied value)."""

    def effect_of(self, step_key: str) -> Effect | None:
        """The effect class of the step a key belongs to (None for a non-step key)."""
        name = step_name_of(step_key)
        for s in self.steps:
            if s.name == name:
                return s.effect
        return None


def load_workload(ref: str) -> Workload:
    """Import a Workload from `module:attr`."""
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Workload):
        raise UserError(f"{ref!r} is a {type(obj).__name__}, not a Workload")
    return obj


# -- kills --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrashAt:
    """Die with SIGKILL at the n-th hit of a named crash point (`OVERNIGHT_CRASH_AT`)."""

    point: str
    n: int = 1

    def __post_init__(self) -> None:
        if self.point not in CRASH_POINTS:
            raise UserError(
                f"unknown crash point {self.point!r}; known points: "
                f"{', '.join(sorted(CRASH_POINTS))}"
            )
        if self.n < 1:
            raise UserError(f"crash point hit count must be at least 1, got {self.n}")

    def __str__(self) -> str:
        return f"{self.point}:{self.n}"


@dataclass(frozen=True)
class KillAfter:
    """The runner sends SIGKILL at a uniformly random instant in [lo, hi] seconds after the
    worker said hello (it has opened the engine and started the run), or, with
    `since="start"`, after the process was started (so the kill may land in its startup)."""

    lo: float
    hi: float
    since: Literal["hello", "start"] = "hello"

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi:
            raise UserError(f"random kill window must satisfy 0 <= lo <= hi, got {self}")
        if self.since not in ("hello", "start"):
            raise UserError(f"KillAfter.since must be 'hello' or 'start', got {self.since!r}")

    def __str__(self) -> str:
        prefix = "random" if self.since == "hello" else "random@start"
        return f"{prefix}:{self.lo:.3g}-{self.hi:.3g}"


Kill = CrashAt | KillAfter


def parse_kill(spec: str | Kill) -> Kill:
    """`name:n` (a crash point), `random:T` (within T s of the hello), `random:A-B` (within
    A..B s), or `random@start:...` (counted from the process start)."""
    if isinstance(spec, CrashAt | KillAfter):
        return spec
    name, _, arg = spec.partition(":")
    if name in ("random", "random@start"):
        since: Literal["hello", "start"] = "hello" if name == "random" else "start"
        lo, sep, hi = arg.partition("-")
        try:
            if sep:
                return KillAfter(float(lo), float(hi), since)
            return KillAfter(0.0, float(lo), since)
        except ValueError:
            raise UserError(f"kill spec {spec!r}: write random:T or random:A-B") from None
    try:
        n = int(arg or "1")
    except ValueError:
        raise UserError(f"kill spec {spec!r}: write name:n with n a whole number") from None
    return CrashAt(name, n)


# -- journal snapshots --------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalSnapshot:
    """A run's row and journal as committed in the SQLite file (read with no worker alive)."""

    status: str | None
    """The run's status, or None if the run does not exist yet."""
    note: str | None
    result: bytes | None
    entries: tuple[tuple[int, str, str, dict[str, Any]], ...]
    """`(seq, key, kind, data)` in order."""

    def step_states(self) -> dict[str, str]:
        """For every step key: `done`, `in_doubt`, `failed` (gave up) or `pending`."""
        states: dict[str, str] = {}
        for _, key, kind, data in self.entries:
            if states.get(key) in ("done", "failed"):
                continue
            if kind == "done" or (kind == "control" and data.get("action") == "resolve"):
                states[key] = "done"
            elif kind == "intent":
                states[key] = "in_doubt"
            elif kind == "failed":
                states[key] = "failed" if data.get("final") else "pending"
            elif kind == "control" and data.get("action") == "retry":
                states[key] = "pending"
        return states

    def done_keys(self) -> frozenset[str]:
        """Step keys with a committed `done` (or a person's `resolve`)."""
        return frozenset(k for k, s in self.step_states().items() if s == "done")

    def in_doubt_keys(self) -> tuple[str, ...]:
        """Step keys whose last committed entry is an intent: the body may or may not have run."""
        return tuple(k for k, s in self.step_states().items() if s == "in_doubt")

    def output(self) -> Any:
        """The decoded output of a completed run."""
        return None if self.result is None else codec.loads(self.result)

    def describe(self) -> str:
        """The journal as text, one entry a line (for failure messages)."""
        lines = [f"run status={self.status} note={self.note!r}"]
        for seq, key, kind, data in self.entries:
            shown = orjson.dumps(data).decode()
            if len(shown) > 160:
                shown = shown[:160] + "..."
            lines.append(f"  {seq:3d} {key or '<run>':32s} {kind:9s} {shown}")
        return "\n".join(lines)


def read_journal(db_path: str | os.PathLike[str], run_id: str) -> JournalSnapshot:
    """Snapshot a run from the SQLite file (what was committed; uncommitted rows are gone)."""
    if not os.path.exists(db_path):
        return JournalSnapshot(None, None, None, ())
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        try:
            row = conn.execute(
                "SELECT status, note, result FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            rows = conn.execute(
                "SELECT seq, key, kind, data FROM entries WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return JournalSnapshot(None, None, None, ())
            raise
    finally:
        conn.close()
    entries = tuple((seq, key, kind, orjson.loads(data)) for seq, key, kind, data in rows)
    if row is None:
        return JournalSnapshot(None, None, None, entries)
    return JournalSnapshot(row[0], row[1], row[2], entries)


def _run_row(conn: sqlite3.Connection, run_id: str) -> tuple[str, bytes | None] | None:
    try:
        row = conn.execute("SELECT status, waiting FROM runs WHERE id = ?", (run_id,)).fetchone()
    except sqlite3.OperationalError:
        return None  # the schema is not there yet, or the file is briefly locked
    return None if row is None else (str(row[0]), row[1])


# -- trial results ------------------------------------------------------------------------------


@dataclass
class Incarnation:
    """One worker process of a trial."""

    index: int
    tag: str
    """The ledger tag of this process (`<run id>@<index>`)."""
    kill: str | None
    """The kill planned for this process, or None."""
    pid: int = 0
    returncode: int | None = None
    killed: bool = False
    """True if the process died of SIGKILL (armed point or runner)."""
    hung: bool = False
    """True if the runner had to kill it because the run did not end in time."""
    seconds: float = 0.0
    hits: int | None = None
    """How often the armed crash point was hit (reported on a normal exit)."""
    served: float | None = None
    """Seconds from the worker's hello to its normal exit."""
    snapshot: JournalSnapshot = field(default_factory=lambda: JournalSnapshot(None, None, None, ()))
    """The run as committed when this process was dead."""
    resolution: tuple[str, str] | None = None
    """`(step key, "result" | "retry")` a person gave after this process parked the run."""
    stderr: str = ""
    """The end of the worker's stderr."""

    @property
    def status(self) -> str | None:
        """The run's status once this process was dead."""
        return self.snapshot.status


@dataclass
class TrialCheck:
    """What `check_trial` found. Every count but the informative ones should be 0."""

    kills: int = 0
    invocations: int = 0
    """Step bodies started, over all processes (informative)."""
    reruns_in_doubt: int = 0
    """Re-invocations of steps whose `done` was not committed when their process died
    (allowed: pure steps re-run, keyed steps re-run with their key; informative)."""
    completed_steps_rerun: int = 0
    """(a) invocations of a step key whose `done` was committed before a previous process ended."""
    keyed_reinvocations: int = 0
    """(b) re-invocations of keyed steps beyond their journaled retries (each key at most once
    per kill)."""
    keyed_over_kills: int = 0
    """(b) keyed step keys re-invoked more often than there were kills."""
    keyed_key_changes: int = 0
    """(b) keyed step keys invoked or applied with more than one idempotency/effect key."""
    dedup_hits: int = 0
    """(c) duplicate apply attempts of keyed steps that the service deduped (allowed)."""
    duplicate_effects: int = 0
    """(c) duplicate apply attempts from reconcilable or unsafe steps."""
    missing_effects: int = 0
    """(c) effects the reference run applied that this run did not apply exactly once."""
    unsafe_in_doubt: int = 0
    """(d) times a kill left an unsafe step in doubt."""
    parked_for_unsafe: int = 0
    """(d) of those, times the next process parked the run instead of re-running the step."""
    unsafe_rerun_in_doubt: int = 0
    """(d) invocations of an in-doubt unsafe step that no person had answered `retry` for."""
    unexpected_parks: int = 0
    """Parks with no in-doubt step to resolve."""
    parks_resolved: int = 0
    """Parks a person (the runner) resolved through `resolve_step`."""
    output_mismatch: bool = False
    """(e) the deterministic part of the output differs from the reference run's."""
    drawn_mismatch: bool = False
    """(e) the output's now/random/uuid differ from the ones first applied to the ledger."""
    completed: bool = False
    hung: bool = False
    worker_errors: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check held."""
        return not self.violations


@dataclass
class TrialResult:
    """One trial: its processes, the run's final state, and the checks."""

    run_id: str
    db_path: str
    kills: tuple[str, ...]
    signal_mode: SignalMode
    incarnations: list[Incarnation]
    final: JournalSnapshot
    seconds: float
    check: TrialCheck
    error: str | None = None
    """Why the runner stopped early (worker error, hang, unexpected park), if it did."""
    applied_steps: frozenset[str] = frozenset()
    """Step keys that applied an effect in this run (what a trial compares to its reference)."""

    @property
    def output(self) -> Any:
        """The run's output (None unless it completed)."""
        return self.final.output() if self.final.status == "completed" else None

    @property
    def killed(self) -> int:
        """How many processes died of SIGKILL."""
        return sum(1 for i in self.incarnations if i.killed and not i.hung)

    @property
    def ok(self) -> bool:
        return self.check.ok

    def describe(self) -> str:
        """Everything needed to understand a failed trial."""
        lines = [
            f"trial run_id={self.run_id} kills={list(self.kills)} signal={self.signal_mode} "
            f"seconds={self.seconds:.2f} error={self.error}",
        ]
        for inc in self.incarnations:
            lines.append(
                f"  process {inc.index} pid={inc.pid} kill={inc.kill} rc={inc.returncode} "
                f"killed={inc.killed} hung={inc.hung} hits={inc.hits} status={inc.status} "
                f"done={sorted(inc.snapshot.done_keys())} "
                f"in_doubt={list(inc.snapshot.in_doubt_keys())} resolution={inc.resolution}"
            )
            if inc.stderr.strip():
                lines.append("    stderr: " + inc.stderr.strip().replace("\n", "\n    "))
        lines.append("violations:" if self.check.violations else "no violations")
        lines.extend(f"  - {v}" for v in self.check.violations)
        lines.append(self.final.describe())
        return "\n".join(lines)

    def assert_ok(self) -> None:
        """Raise AssertionError describing the trial if any check failed."""
        if not self.check.ok:
            raise AssertionError(self.describe())


# -- the runner ---------------------------------------------------------------------------------


def _pythonpath() -> str:
    """The subprocess must import this same overnight (and the caller's modules)."""
    package_parent = str(Path(__file__).resolve().parents[2])
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
) -> TrialResult:
    """Run one trial (see the module docstring) and check it.

    `kill` is one kill for the first process or a sequence for successive processes (`name:n`,
    `random:T`, `random:A-B`, `CrashAt`, `KillAfter`, or None to let that process live); None
    runs the run uninterrupted.
    `reference` is an uninterrupted trial of the same workload: without it, check (e) and the
    missing-effect part of (c) are skipped. A private Ledger is started when none is given.
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
    )


# -- the checks ---------------------------------------------------------------------------------


def check_trial(
    workload: Workload,
    trial: TrialResult,
    ledger: Ledger,
    reference: TrialResult | None = None,
) -> TrialCheck:
    """Check a trial against the ledger and the reference run (see the module docstring)."""
    c = TrialCheck()
    v = c.violations
    run_id = trial.run_id
    incs = trial.incarnations
    index_of = {inc.tag: inc.index for inc in incs}
    c.kills = trial.killed
    c.hung = any(inc.hung for inc in incs)
    c.worker_errors = sum(1 for i in incs if not i.killed and i.returncode not in (0, None))
    c.parks_resolved = sum(1 for i in incs if i.resolution is not None)
    if trial.error is not None:
        v.append(f"runner: {trial.error}")

    invocations = ledger.invocations(run_id)
    c.invocations = len(invocations)
    # What was settled when each process ended (its committed `done`s, plus a person's answer).
    settled: list[frozenset[str]] = []
    doubtful: list[tuple[str, ...]] = []
    for inc in incs:
        done = set(inc.snapshot.done_keys())
        if inc.resolution is not None and inc.resolution[1] == "result":
            done.add(inc.resolution[0])
        settled.append(frozenset(done))
        doubtful.append(inc.snapshot.in_doubt_keys())

    # (a) nothing whose done was committed runs again in a later process.
    seen_by_key: Counter[str] = Counter()
    first_process: dict[str, int] = {}
    attempts_seen: set[tuple[str, str, int]] = set()
    for inv in invocations:
        index = index_of.get(inv.tag)
        if index is None:
            v.append(f"invocation of {inv.step_key!r} from unknown process {inv.tag!r}")
            continue
        # Non-pure attempts are numbered by their journaled intents: one process never runs
        # the same attempt twice. (Pure steps journal no intents, so no such check for them.)
        pure = workload.effect_of(inv.step_key) == "pure"
        if not pure and (inv.tag, inv.step_key, inv.attempt) in attempts_seen:
            c.completed_steps_rerun += 1
            v.append(
                f"(a) {inv.step_key!r} attempt {inv.attempt} was invoked twice by process {index}"
            )
        attempts_seen.add((inv.tag, inv.step_key, inv.attempt))
        if index > 0 and inv.step_key in settled[index - 1]:
            c.completed_steps_rerun += 1
            v.append(
                f"(a) {inv.step_key!r} was invoked by process {index} although its done was "
                f"committed before process {index - 1} ended"
            )
        elif first_process.get(inv.step_key, index) < index:
            c.reruns_in_doubt += 1
        first_process.setdefault(inv.step_key, index)
        seen_by_key[inv.step_key] += 1

    # (b) keyed steps: re-invoked at most once per kill, always with the same key.
    attempts = ledger.attempts(run_id)
    by_step: dict[str, list[ApplyAttempt]] = {}
    for a in attempts:
        by_step.setdefault(a.step_key, []).append(a)
    failures = Counter(key for _, key, kind, _ in trial.final.entries if kind == "failed")
    for key, count in seen_by_key.items():
        if workload.effect_of(key) != "keyed":
            continue
        # Attempts after a journaled failure are the retry policy's, not re-invocations.
        again = max(0, count - 1 - failures[key])
        c.keyed_reinvocations += again
        if again > c.kills:
            c.keyed_over_kills += 1
            v.append(f"(b) keyed {key!r} was re-invoked {again} times with {c.kills} kill(s)")
        idem = {i.idempotency_key for i in invocations if i.step_key == key}
        effect_keys = {a.key for a in by_step.get(key, [])}
        if idem != {f"{run_id}/{key}"} or len(effect_keys) > 1:
            c.keyed_key_changes += 1
            v.append(
                f"(b) keyed {key!r} used idempotency keys {sorted(idem)} and effect keys "
                f"{sorted(effect_keys)}"
            )

    # (c) every effect applied exactly once; duplicates only where the service dedupes.
    for a in attempts:
        if a.applied:
            continue
        if workload.effect_of(a.step_key) == "keyed":
            c.dedup_hits += 1
        else:
            c.duplicate_effects += 1
            v.append(
                f"(c) {workload.effect_of(a.step_key)} step {a.step_key!r} tried to apply "
                f"effect {a.key!r} again (process {index_of.get(a.tag)})"
            )
    applied_by_step = Counter(a.step_key for a in attempts if a.applied)
    if reference is not None:
        expected = set(reference.applied_steps)
        for key in sorted(expected | set(applied_by_step)):
            if applied_by_step[key] != 1 or key not in expected:
                c.missing_effects += 1
                v.append(
                    f"(c) step {key!r} applied {applied_by_step[key]} effect(s); the "
                    f"reference run applied {int(key in expected)}"
                )

    # (d) an unsafe step in doubt parks the run; it runs again only after `retry`.
    for index, inc in enumerate(incs):
        answer = inc.resolution
        for key in doubtful[index]:
            if workload.effect_of(key) != "unsafe":
                continue
            retried = answer is not None and answer == (key, "retry")
            later = [
                i for i in invocations if i.step_key == key and index_of.get(i.tag) == index + 1
            ]
            if later and not retried:
                c.unsafe_rerun_in_doubt += len(later)
                v.append(
                    f"(d) unsafe {key!r} was in doubt when process {index} ended and process "
                    f"{index + 1} ran it again with no person's answer"
                )
            if inc.killed and answer is None:
                c.unsafe_in_doubt += 1
                nxt = next((n for n in incs[index + 1 :] if not n.killed), None)
                if nxt is not None and nxt.status == "parked" and key in doubtful[nxt.index]:
                    c.parked_for_unsafe += 1
                elif nxt is not None:
                    v.append(
                        f"(d) unsafe {key!r} was in doubt after process {index} was killed, but "
                        f"process {nxt.index} ended with the run {nxt.status}, not parked on it"
                    )
    for inc in incs:
        if inc.status == "parked" and not inc.killed:
            keys = [k for k in doubtful[inc.index] if workload.effect_of(k) != "keyed"]
            if not keys:
                c.unexpected_parks += 1
                v.append(f"process {inc.index} parked the run with nothing in doubt: {inc.status}")

    # (e) the same output as an uninterrupted run, with the values first drawn.
    final = trial.final
    c.completed = final.status == "completed"
    if not c.completed:
        v.append(f"(e) the run ended {final.status}, not completed (note: {final.note!r})")
        return c
    output = final.output()
    if reference is not None and reference.final.status == "completed":
        mine = workload.deterministic(output)
        theirs = workload.deterministic(reference.final.output())
        if mine != theirs:
            c.output_mismatch = True
            v.append(f"(e) output {mine!r} differs from the reference run's {theirs!r}")
    if workload.drawn is not None and workload.drawn_step is not None:
        drawn = workload.drawn(output)
        recorded = [a.value for a in by_step.get(workload.drawn_step, [])]
        if not recorded or any(r != drawn for r in recorded):
            c.drawn_mismatch = True
            v.append(
                f"(e) the output's drawn values {drawn!r} differ from those applied to the "
                f"ledger when first drawn: {recorded!r}"
            )
    return c


# -- campaigns ----------------------------------------------------------------------------------


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
    points: Sequence[str] = tuple(CRASH_POINTS),
    jobs: int = 1,
) -> dict[str, int]:
    """How often each crash point is hit in one uninterrupted run (armed at an unreachable n)."""

    def count(point: str) -> int:
        db = os.path.join(os.fspath(workdir), f"calibrate-{point}.db")
        trial = run_trial(workload, db, f"calibrate-{point}", CrashAt(point, 10**9), ledger=ledger)
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
) -> CampaignResult:
    """Run `trials` crash trials of a workload (the reference workload by default).

    Calibrates how often each crash point is hit in one run, then kills every reachable point
    several times at spread-out hits, a `random_share` of trials at random instants (within the
    time an uninterrupted run serves), and every `double_kill_every`-th trial once more at a
    random instant of its second process. Signals are sent before the start, early, or when the
    run waits, in rotation. Failed trials are counted and described in `failures`; the
    campaign does not stop at them. `jobs` trials run at once (each in its own processes and
    SQLite file; one ledger serves them all).
    """
    if workload is None:
        from .crash_workload import REFERENCE

        workload = REFERENCE
    rng = random.Random(seed)
    result = CampaignResult()
    started = time.monotonic()
    base = tempfile.mkdtemp(prefix="overnight-campaign-", dir=workdir)
    try:
        with Ledger() as ledger:
            reference = uninterrupted(
                workload, os.path.join(base, "reference.db"), "reference", ledger=ledger
            )
            if not reference.ok:
                raise AssertionError(
                    "the uninterrupted reference run failed:\n" + reference.describe()
                )
            result.hits = calibrate(workload, base, ledger, jobs=jobs)
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
                )

            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                trials_done = pool.map(one, range(len(plans)))
                for i, (plan, trial) in enumerate(zip(plans, trials_done, strict=True)):
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
    """`python -m overnight.testing [--trials N] [--seed S]`: run a crash campaign, print it."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="trials run at once")
    parser.add_argument("--quiet", action="store_true", help="no line per trial")
    args = parser.parse_args(argv)
    result = run_campaign(
        args.trials, seed=args.seed, jobs=args.jobs, progress=None if args.quiet else print
    )
    print(result.table())
    for failure in result.failures:
        print(failure)
    return 0 if result.ok else 1
