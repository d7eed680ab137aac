"""An agent crash campaign: the kernel's campaign of an `AgentWorkload`, plus the model server.

`run_agent_campaign` starts the workload's loopback server, runs `run_campaign` over the kernel's
crash points and the agent loop's (`after_model_reply`, `after_tool_effect`), and checks every
trial's conversation against the server's request log (`check_conversation`). The result prints
the kernel's table followed by the conversation's counts: model requests, requests re-sent after
a kill, re-sent requests whose reply had been committed, tool effects applied and deduped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .agent import (
    AGENT_CAMPAIGN_POINTS,
    AgentWorkload,
    ConversationCheck,
    check_conversation,
    reference_turns,
    sent_requests,
)
from .campaign import CampaignResult, run_campaign
from .checks import TrialResult


@dataclass
class AgentCampaignResult:
    """The kernel's counts (`kernel`) and the conversation's, added up over the trials."""

    kernel: CampaignResult
    conversation: ConversationCheck = field(default_factory=ConversationCheck)
    """The conversation checks' counts, summed over the trials (`log` stays empty)."""
    turns_mismatches: int = 0
    """Trials that committed a different number of model replies than the reference."""
    effects_applied: int = 0
    """Tool effects applied by the trials (the ledger applies each key once)."""
    effects_per_run: int = 0
    """Tool effects one uninterrupted run applies."""
    turns_per_run: int = 0
    """Model calls one uninterrupted run makes."""

    def add(self, check: ConversationCheck, effects: int) -> None:
        total = self.conversation
        for f in fields(ConversationCheck):
            value = getattr(check, f.name)
            if type(value) is int:
                setattr(total, f.name, getattr(total, f.name) + value)
        self.turns_mismatches += int(check.turns_mismatch)
        self.effects_applied += effects

    @property
    def ok(self) -> bool:
        """True when no trial failed (conversation checks included: they fail their trial)."""
        return self.kernel.ok

    def summary(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict (the conversation's flattened in)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        conversation = {k: v for k, v in asdict(self.conversation).items() if type(v) is int}
        data.update(conversation, kernel=self.kernel.summary(), ok=self.ok)
        del data["conversation"]
        return data

    def table(self) -> str:
        """The kernel's table, then the conversation's counts."""
        k, c = self.kernel, self.conversation
        rows = [
            (
                "model calls / tool effects per run",
                f"{self.turns_per_run} / {self.effects_per_run}",
            ),
            ("model requests sent", str(c.requests)),
            ("re-sent after a kill (in flight) / kills", f"{c.resent} / {k.kills}"),
            ("re-sent although committed", str(c.resent_committed)),
            ("more than one re-sent per kill", str(c.resent_over_kills)),
            ("re-sent without a committed intent", str(c.resent_not_in_doubt)),
            ("sent twice by one process", str(c.sent_twice_in_process)),
            ("requests differing from the reference", str(c.mismatches + c.script_errors)),
            ("model replies committed twice", str(c.replies_committed_twice)),
            ("tool effects applied", str(self.effects_applied)),
            ("duplicate tool effects (deduped by key)", str(k.dedup_hits)),
            ("tool effects applied twice or missing", str(k.duplicate_effects + k.missing_effects)),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [k.table().replace("crash campaign", "agent crash campaign", 1), "  conversation"]
        lines += [f"  {name:<{width}}  {value:>12}" for name, value in rows]
        return "\n".join(lines)


class _Inspector:
    """Checks each trial's conversation against the server's log (called by `run_campaign`)."""

    def __init__(self, agent: AgentWorkload, result: AgentCampaignResult, server: Any) -> None:
        self.agent, self.result, self.server = agent, result, server
        self.turns: dict[int, str] | None = None
        self.lock = threading.Lock()

    def __call__(self, trial: TrialResult, reference: TrialResult | None) -> None:
        sent = sent_requests(self.agent, self.server, trial.run_id)
        with self.lock:
            if reference is None:
                self.turns = reference_turns(sent)
                self.result.turns_per_run = len(self.turns)
                self.result.effects_per_run = len(trial.applied_steps)
            check = check_conversation(self.agent, trial, sent, self.turns)
            if reference is not None:
                self.result.add(check, len(trial.applied_steps))


def run_agent_campaign(
    trials: int = 100,
    *,
    agent: AgentWorkload | None = None,
    seed: int = 0,
    jobs: int = 1,
    progress: Callable[[str], None] | None = None,
    random_share: float = 0.25,
    double_kill_every: int = 8,
) -> AgentCampaignResult:
    """Run `trials` crash trials of an agent workload (`AGENT` by default); see `run_campaign`."""
    if agent is None:
        from ..agent_crash_workload import AGENT

        agent = AGENT
    result = AgentCampaignResult(CampaignResult())
    server = agent.serve()
    try:
        result.kernel = run_campaign(
            trials,
            workload=agent.workload,
            seed=seed,
            jobs=jobs,
            progress=progress,
            random_share=random_share,
            double_kill_every=double_kill_every,
            points=AGENT_CAMPAIGN_POINTS,
            env=agent.env(server),
            inspect=_Inspector(agent, result, server),
        )
    finally:
        server.close()
    return result
