"""Checks of a PostgreSQL fault test: the store's final state and the ledger, against the kills.

The ledger (in the test process) saw every step invocation and every effect of every worker;
the store says what was committed. `check_runs` counts, in a `FaultCheck`:

- runs that did not complete, or completed with another output than expected;
- committed steps invoked again: after each kill the test snapshots the `done` keys committed in
  the database (`Snapshot`), with the ledger's position when the snapshot was complete; an
  invocation of one of those keys that reached the ledger later is a violation. (A worker whose
  lease was lost while it ran may still start a *pure* step already done elsewhere before it
  learns it lost the lease — its writes are rejected; those are counted apart, as
  `zombie_pure_reruns`. A keyed step cannot start that way: its intent's commit is fenced.);
- re-invocations of a step key (beyond its journaled retries) not explained by an interruption
  of a process that invoked it: killed, or logged as having lost the run (`interrupted`). (Any
  of the invocations may be the interrupted one: a worker stopped with SIGSTOP right after it
  started a step reaches the ledger only when continued, after the worker that took over.);
- keyed steps invoked with another idempotency key than `<run id>/<step key>`, or applying an
  effect under another key (so each key is re-invoked at most once per interruption of its
  invoker, with its key);
- effects: exactly one applied per keyed step of every run; attempts to apply a key already
  applied (the service deduped them: allowed, after a re-invocation) are counted as `dedup_hits`.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..._engine import codec
from ..ledger import Ledger, step_name_of

KEYED_STEPS = frozenset({"book", "hold"})
"""Names of the workload's keyed steps (`overnight.testing.pgfaults.workload`)."""

_LOST = re.compile(r"run (\S+): (?:lease lost to another worker|stopped without recording)")


def is_keyed(step_key: str) -> bool:
    return step_name_of(step_key) in KEYED_STEPS


def ledger_position(ledger: Ledger) -> int:
    """The sequence number of the last record the ledger received (0 if none)."""
    last = [i.seq for i in ledger.invocations()[-1:]] + [a.seq for a in ledger.attempts()[-1:]]
    return max(last, default=0)


def interrupted_runs(tag: str, stderr: str) -> set[tuple[str, str]]:
    """`(tag, run id)` of the runs a worker logged it stopped executing: lease lost to another
    worker, or stopped without recording (a write rejected, a commit failed)."""
    return {(tag, m.group(1)) for m in _LOST.finditer(stderr)}


@dataclass(frozen=True)
class Snapshot:
    """Committed `done` keys, read after a kill; `position`: the ledger's position right after."""

    label: str
    done: frozenset[tuple[str, str]]
    position: int


@dataclass
class FaultCheck:
    """What `check_runs` found. Every count but the informative ones must be 0."""

    runs: int = 0
    completed: int = 0
    wrong_outputs: int = 0
    not_completed: int = 0
    kills: int = 0
    invocations: int = 0
    """Step bodies started, in all processes (informative)."""
    reinvocations: int = 0
    """Re-invocations of step keys beyond their journaled retries, pure and keyed (allowed when
    the process that invoked the key before was interrupted; informative)."""
    keyed_reinvocations: int = 0
    """Of those, of keyed steps (each reused its key; informative)."""
    max_keyed_reinvocations: int = 0
    """The most re-invocations of one keyed step key (at most one per interruption)."""
    unexplained_reinvocations: int = 0
    """Re-invocations not preceded by an interruption of the earlier invoker."""
    committed_reinvoked: int = 0
    """Invocations of a step key after its done was seen committed."""
    zombie_pure_reruns: int = 0
    """Pure steps started by a worker that had lost the run's lease (informative)."""
    key_changes: int = 0
    effects_applied: int = 0
    dedup_hits: int = 0
    """Apply attempts of a key already applied (deduped by the ledger; informative)."""
    duplicate_effects: int = 0
    """Steps whose effect was applied more than once (under different keys)."""
    missing_effects: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "violations"}
        data["ok"] = self.ok
        data["violations"] = self.violations[:20]
        return data

    def describe(self) -> str:
        lines = [f"{k}={v}" for k, v in self.summary().items() if k != "violations"]
        lines += [f"  - {v}" for v in self.violations[:40]]
        if len(self.violations) > 40:
            lines.append(f"  ... and {len(self.violations) - 40} more")
        return "\n".join(lines)


def check_runs(
    *,
    ledger: Ledger,
    results: Mapping[str, tuple[str, bytes | None]],
    expected: Mapping[str, Any],
    done: Iterable[tuple[str, str]],
    failures: Mapping[tuple[str, str], int],
    snapshots: Iterable[Snapshot] = (),
    killed: Iterable[str] = (),
    interrupted: Iterable[tuple[str, str]] = (),
    keyed: Callable[[str], bool] = is_keyed,
) -> FaultCheck:
    """Check the runs `expected` names (run id -> expected output); see the module docstring.

    `results`: every run's status and encoded result; `done`: every committed done key at the
    end; `failures`: journaled failed attempts per key; `killed`: tags of the processes that
    were killed; `interrupted`: `(tag, run id)` of executions a worker logged it stopped.
    """
    c = FaultCheck(runs=len(expected))
    v = c.violations
    killed = set(killed)
    interrupted = set(interrupted)
    c.kills = len(killed)
    for run_id, want in sorted(expected.items()):
        status, raw = results.get(run_id, ("missing", None))
        if status != "completed":
            c.not_completed += 1
            v.append(f"run {run_id} ended {status}, not completed")
            continue
        c.completed += 1
        got = None if raw is None else codec.loads(raw)
        if got != want:
            c.wrong_outputs += 1
            v.append(f"run {run_id} returned {got!r}, expected {want!r}")

    invocations = [i for i in ledger.invocations() if i.run_id in expected]
    c.invocations = len(invocations)
    by_key: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for inv in invocations:
        by_key[inv.run_id, inv.step_key].append(inv)

    # Committed steps are never invoked again (only a worker that lost the lease may start a
    # pure step before it learns so).
    for snap in snapshots:
        for inv in invocations:
            if inv.seq <= snap.position or (inv.run_id, inv.step_key) not in snap.done:
                continue
            if not keyed(inv.step_key) and (inv.tag, inv.run_id) in interrupted:
                c.zombie_pure_reruns += 1
                continue
            c.committed_reinvoked += 1
            v.append(
                f"{inv.run_id}/{inv.step_key} was invoked by {inv.tag} although its done was "
                f"committed before {snap.label}"
            )

    # Re-invocations: each after an interruption of the one before; keyed ones with their key.
    for (run_id, key), invs in sorted(by_key.items()):
        again = max(0, len(invs) - 1 - failures.get((run_id, key), 0))
        if again == 0:
            continue
        c.reinvocations += again
        # Any invocation but one may be the interrupted one: a stopped worker's request can
        # reach the ledger after the invocation of the worker that took the run over.
        interruptions = sum(1 for i in invs if i.tag in killed or (i.tag, run_id) in interrupted)
        explained = min(len(invs) - 1, interruptions)
        if again > explained:
            c.unexplained_reinvocations += again - explained
            v.append(
                f"{run_id}/{key} was re-invoked {again} time(s), {explained} after an "
                f"interruption: invoked by {[i.tag for i in invs]}"
            )
        if keyed(key):
            c.keyed_reinvocations += again
            c.max_keyed_reinvocations = max(c.max_keyed_reinvocations, again)
    for (run_id, key), invs in by_key.items():
        if keyed(key) and {i.idempotency_key for i in invs} != {f"{run_id}/{key}"}:
            c.key_changes += 1
            v.append(f"{run_id}/{key} used keys {sorted({i.idempotency_key for i in invs})}")

    # Effects: one per keyed step of every run, under its idempotency key.
    attempts = [a for a in ledger.attempts() if a.run_id in expected]
    applied = Counter((a.run_id, a.step_key) for a in attempts if a.applied)
    c.effects_applied = sum(applied.values())
    c.dedup_hits = sum(1 for a in attempts if not a.applied)
    for a in attempts:
        if a.key != f"{a.run_id}/{a.step_key}":
            c.key_changes += 1
            v.append(f"{a.run_id}/{a.step_key} applied an effect under key {a.key!r}")
    for step, n in applied.items():
        if n > 1:
            c.duplicate_effects += n - 1
            v.append(f"{step[0]}/{step[1]} applied {n} effects")
    for run_id, key in done:
        if run_id in expected and keyed(key) and applied[run_id, key] == 0:
            c.missing_effects += 1
            v.append(f"{run_id}/{key} is done but applied no effect")
    return c
