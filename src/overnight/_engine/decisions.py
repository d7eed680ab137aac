"""Decisions: values the workflow must see identically on replay, journaled when first made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import codec
from .scope import Scope


def decide(scope: Scope, name: str, produce: Callable[[], Any]) -> Any:
    """The journaled value under the next `name#n` key of the scope, produced once.

    Used for the clock, random values and ids, and for answers the engine takes from outside
    the journal (a policy's verdict on a tool call): a replay reads the recorded value instead
    of asking again, so it takes the same path even if the outside world changed.
    """
    run = scope.run
    key, pos = scope.assign(name)
    state = run.journal.visit(scope.prefix, pos, key) if run.replaying else None
    if state is not None:
        return codec.decode(state.entries[0][1]["value"])
    value = produce()
    run.write(key, "decision", {"pos": pos, "value": codec.encode(value)})
    return value
