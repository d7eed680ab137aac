"""What a crash trial recorded, and the checks that compare it with the ledger and the reference.

`run_trial` records each worker process as an `Incarnation` and the run's end state in a
`TrialResult`; `check_trial` compares that with the ledger (kept by the test process, which is
never killed) and with an uninterrupted reference run. The checks, each counted in `TrialCheck`:

(a) no step key whose `done` was committed before a process ended is invoked by a later process;
(b) a `keyed` step is re-invoked at most once per kill, always with the same idempotency key;
(c) every effect the reference run applied is applied exactly once; a duplicate apply attempt
    is allowed only from a `keyed` step (the service deduped it), never from a `reconcilable` or
    `unsafe` one;
(d) an `unsafe` step left in doubt by a kill parks the run (it is not run again blindly), and
    it runs again only after a person said `retry`;
(e) the run completes, its output equals the reference run's in its deterministic part, and its
    journaled now/random/uuid equal the values the ledger recorded when they were first drawn.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..ledger import ApplyAttempt, Ledger
from .journal import JournalSnapshot
from .workload import SignalMode, Workload


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
