"""The replay index: a run's journal, read back, and the check that the code still matches it.

Every durable call in a workflow gets a structural key (`report/fetch#2`) and a position (its
ordinal among the calls of its scope). The first entry of each key records that position. On
replay, each call is checked as its key is assigned:
- the journal recorded a different key at this scope and position -> a call was renamed,
  inserted or removed before this point;
- the key is recorded, but at another position -> a call before it was removed or moved;
and when the workflow ends, a recorded key that was never reached -> a call was removed.
A call whose input changed is caught by its fingerprint when it executes. Any of these parks
the run with a message naming the key and the difference (`Divergence`).

After a person accepts the changes (a `control` entry `accept`), entries recorded before that
point are lenient: their recorded results are kept when their key is still called, whatever their
position or input; new keys execute. Entries recorded after the acceptance are checked strictly.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..store.base import Entry


class Divergence(BaseException):
    """The code no longer matches the run's journal; the run parks with `message`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KeyState:
    """All journal entries recorded under one key, in order."""

    __slots__ = ("entries", "key", "pos", "scope", "strict", "visited")

    def __init__(self, key: str, scope: str, pos: int | None, strict: bool) -> None:
        self.key = key
        self.scope = scope
        self.pos = pos
        """Ordinal of the key's first call in its scope (None for markers without one)."""
        self.strict = strict
        """Checked against the code (False for entries recorded before accepted changes)."""
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.visited = False

    def last(self, kind: str) -> dict[str, Any] | None:
        """The data of the last entry of a kind, or None."""
        for k, data in reversed(self.entries):
            if k == kind:
                found: dict[str, Any] = data
                return found
        return None


class JournalIndex:
    """A run's journal indexed by key for replay."""

    def __init__(self) -> None:
        self.records: dict[str, KeyState] = {}
        self.positions: dict[tuple[str, int], str] = {}
        self.unvisited = 0
        self.next_seq = 0
        self.accepted = False
        self.signals_consumed: set[int] = set()
        self.outcome: dict[str, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.records)

    def add(self, entry: Entry) -> None:
        """Index one entry (entries must arrive in seq order)."""
        self.next_seq = entry.seq + 1
        data: dict[str, Any] = orjson.loads(entry.data)
        kind = entry.kind
        if kind == "output":
            self.outcome = data
            return
        if kind == "control" and data.get("action") == "accept":
            self._accept()
            return
        if kind == "signal":
            self.signals_consumed.add(data["sseq"])
        key = entry.key
        state = self.records.get(key)
        if state is None:
            pos = data.get("pos")
            scope = key[: key.rfind("/") + 1]  # everything up to the last '/'
            state = KeyState(key, scope, pos, not self.accepted)
            self.records[key] = state
            if pos is not None:
                self.positions[(scope, pos)] = key
                self.unvisited += 1
        state.entries.append((kind, data))

    def _accept(self) -> None:
        """Make everything recorded so far lenient (a person accepted the code change)."""
        self.accepted = True
        for state in self.records.values():
            if state.strict and state.pos is not None and not state.visited:
                self.unvisited -= 1
            state.strict = False
        self.positions.clear()

    def visit(self, scope: str, pos: int, key: str) -> KeyState | None:
        """Check a call against the journal as its key is assigned; return its record."""
        expected = self.positions.get((scope, pos))
        state = self.records.get(key)
        if expected is not None and expected != key:
            if state is None:
                raise Divergence(
                    f"the code now calls {key!r} where the journal recorded {expected!r} "
                    f"(call #{pos + 1} in scope {scope or '<root>'!r}): a call was renamed or "
                    "inserted before it"
                )
            raise Divergence(
                f"the journal recorded {expected!r} at this point and {key!r} later: a call "
                f"before {key!r} was removed or the order changed"
            )
        if state is not None:
            if (
                state.strict
                and (state.pos != pos or state.scope != scope)
                and state.pos is not None
            ):
                raise Divergence(
                    f"{key!r} was call #{(state.pos or 0) + 1} of its scope when recorded and is "
                    f"call #{pos + 1} now: a call before it was removed or the order changed"
                )
            if not state.visited:
                state.visited = True
                if state.strict and state.pos is not None:
                    self.unvisited -= 1
        return state

    def skip_scope(self, prefix: str) -> None:
        """Mark every key under a prefix visited (a race's losers are not replayed)."""
        for key, state in self.records.items():
            if key.startswith(prefix) and not state.visited:
                state.visited = True
                if state.strict and state.pos is not None:
                    self.unvisited -= 1

    def check_complete(self) -> None:
        """At the end of a replayed run: every strictly recorded call must have been reached."""
        if self.unvisited <= 0:
            return
        missing = [
            k for k, s in self.records.items() if s.strict and s.pos is not None and not s.visited
        ]
        raise Divergence(
            f"the journal has {missing[0]!r}, which the code no longer calls (a call was "
            f"removed){f' ({len(missing) - 1} more)' if len(missing) > 1 else ''}"
        )
