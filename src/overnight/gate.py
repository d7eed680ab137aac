"""The gate: every tool call an agent makes passes `authorize` before it executes.

`authorize(policy, principal, call)` is the one choke point; the agent loop cannot execute a
tool without it. A policy answers `allow`, `deny` (the reason is fed back to the model and
journaled) or `ask` (the run waits for a person to allow or deny that exact call, by a signal
bound to the call's journal key). The answer is journaled as a decision, so a replay sees the
same answer even if the policy changed since. The default policy, `GrantedTools`, allows only
the tools granted to the agent and denies everything else; richer policies (constraints,
provenance, approval thresholds) plug in here without touching the agent loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Verdict = Literal["allow", "deny", "ask"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: an agent in a run, with the tools granted to it."""

    agent: str
    run_id: str
    granted: frozenset[str]


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """The exact call to authorize."""

    tool: str
    arguments: Mapping[str, Any]
    key: str
    """The journal key the call will execute under (approvals are bound to it)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer."""

    verdict: Verdict
    reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Policy(Protocol):
    """Decides tool calls. Must be deterministic for a given principal and call."""

    def authorize(self, principal: Principal, call: ToolCallRequest) -> Decision:
        """Allow, deny or ask for this call."""
        ...


class GrantedTools:
    """The default policy: allow the tools granted to the agent, deny everything else."""

    def authorize(self, principal: Principal, call: ToolCallRequest) -> Decision:
        if call.tool in principal.granted:
            return Decision("allow")
        return Decision(
            "deny",
            f"tool {call.tool!r} is not granted to agent {principal.agent!r}; "
            f"granted: {', '.join(sorted(principal.granted)) or 'none'}",
        )


class AskFor:
    """Allow granted tools, but ask a person before any call to the named ones."""

    def __init__(self, *tools: str) -> None:
        self.tools = frozenset(tools)

    def authorize(self, principal: Principal, call: ToolCallRequest) -> Decision:
        decision = GrantedTools().authorize(principal, call)
        if decision.verdict == "allow" and call.tool in self.tools:
            return Decision("ask", f"a person must approve calls to {call.tool!r}")
        return decision


def authorize(policy: Policy, principal: Principal, call: ToolCallRequest) -> Decision:
    """The one choke point: what the policy says; any policy failure is a denial (fail closed)."""
    try:
        decision = policy.authorize(principal, call)
    except Exception as exc:
        return Decision("deny", f"the policy failed ({type(exc).__name__}: {exc}); denied")
    if not isinstance(decision, Decision) or decision.verdict not in ("allow", "deny", "ask"):
        return Decision("deny", f"the policy returned {decision!r}, not a Decision; denied")
    return decision
