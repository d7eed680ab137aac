"""Named crash points: `OVERNIGHT_CRASH_AT=name:n` kills this process with SIGKILL at the n-th hit.

Crash tests arm one point in a real subprocess, let it die exactly there, and resume the run in a
fresh process. The names are the registry `CRASH_POINTS`; arming an unknown name is an error, so
a renamed point cannot silently stop being tested. When nothing is armed the check is one global
lookup.
"""

from __future__ import annotations

import os
import signal

from ..errors import UserError

CRASH_POINTS: dict[str, str] = {
    "after_intent": "a non-pure step's intent is committed; its body has not started",
    "after_effect": "a non-pure step's body returned (its effect happened); done not journaled",
    "after_step_return": "a step's done entry is journaled (maybe not yet committed)",
    "in_group_commit": "inside a store commit: rows written, transaction not yet committed",
    "after_commit": "a store commit is durable; the waiting runs have not been told",
    "after_timer_fire": "a durable timer's fired entry is journaled; the workflow not resumed",
    "before_signal_ack": "a wait took a signal and journaled it; not yet committed or acted on",
    "before_output": "the workflow returned; its output is not yet committed",
    "after_model_reply": "a model's reply was received; it is not journaled yet",
    "after_tool_effect": "a tool's body returned (its effect happened); not journaled yet",
    "after_claim": "a worker claimed runs; it has not started them",
    "before_lease_renew": "a worker is about to renew its leases",
}

AGENT_POINTS = frozenset({"after_model_reply", "after_tool_effect"})
"""Points in the agent loop (model calls, tool calls)."""
KERNEL_POINTS = frozenset(CRASH_POINTS) - AGENT_POINTS
"""Points any durable workflow can reach (what the reference crash workload exercises)."""

_armed: tuple[str, int] | None = None
_hits = 0


def _parse(spec: str | None) -> tuple[str, int] | None:
    if not spec:
        return None
    name, _, count = spec.partition(":")
    if name not in CRASH_POINTS:
        raise UserError(
            f"OVERNIGHT_CRASH_AT names unknown crash point {name!r}; "
            f"known points: {', '.join(sorted(CRASH_POINTS))}"
        )
    try:
        n = int(count or "1")
    except ValueError:
        raise UserError(
            f"OVERNIGHT_CRASH_AT={spec!r}: write name:n with n a whole number"
        ) from None
    return name, n


def arm(spec: str | None) -> None:
    """Arm a crash point (`name:n`), or disarm with None. Read from the environment at import."""
    global _armed, _hits
    _armed = _parse(spec)
    _hits = 0


def crash_point(name: str) -> None:
    """Die here with SIGKILL if this point is armed and this is its n-th hit."""
    global _hits
    if _armed is None or _armed[0] != name:
        return
    _hits += 1
    if _hits == _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)


arm(os.environ.get("OVERNIGHT_CRASH_AT"))
