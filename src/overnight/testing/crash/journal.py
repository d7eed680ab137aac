"""A run as committed in a trial's SQLite file, read directly while no worker is alive.

After each worker process dies the runner snapshots the journal: which step keys had a
committed `done`, which were left in doubt (an intent with no `done`). The checks compare those
snapshots with what the ledger saw each process do.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from typing import Any

import orjson

from ..._engine import codec


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
