"""Tools for testing workflows: crash trials with a ledger outside the killed processes, and
scripted provider servers behind a network guard for agents.

- `Ledger` / `LedgerClient` (`overnight.testing.ledger`): log every step invocation and apply
  every effect once, in the test process, so counts survive SIGKILL of the workers.
- `run_trial`, `uninterrupted`, `check_trial`, `run_campaign` (`overnight.testing.crash`): run a
  `Workload` in worker subprocesses, kill them at a named crash point (`CRASH_POINTS`) or at a
  random instant, resume, and check that nothing committed ran twice and no effect was applied
  twice.
- `overnight.testing.crash_workload.REFERENCE`: the reference workload;
  `overnight.testing.agent_crash_workload.AGENT`: a multi-turn agent on the `openai` client, whose
  trials (`overnight.testing.crash.agent`) are also checked against the model server's log.
- `OpenAIServer`, `AnthropicServer` (`overnight.testing.servers`): local servers speaking the
  providers' HTTP APIs from a script of replies, for the official SDK clients in tests.
- `NetworkGuard`, `offline` (`overnight.testing.guard`): fail a test that leaves loopback, and
  hide the providers' keys from it.

`python -m overnight.testing --trials 100 [--jobs 2] [--agent]` runs a campaign and prints its
table.
"""

from __future__ import annotations

from .._engine.crash import CRASH_POINTS
from .crash import (
    CampaignResult,
    CrashAt,
    Incarnation,
    JournalSnapshot,
    Kill,
    KillAfter,
    TrialCheck,
    TrialPlan,
    TrialResult,
    Workload,
    calibrate,
    check_trial,
    load_workload,
    parse_kill,
    plan_campaign,
    read_journal,
    run_campaign,
    run_trial,
    uninterrupted,
)
from .ledger import ApplyAttempt, Invocation, Ledger, LedgerClient, LedgerError, default_client

__all__ = [
    "CRASH_POINTS",
    "ApplyAttempt",
    "CampaignResult",
    "CrashAt",
    "Incarnation",
    "Invocation",
    "JournalSnapshot",
    "Kill",
    "KillAfter",
    "Ledger",
    "LedgerClient",
    "LedgerError",
    "TrialCheck",
    "TrialPlan",
    "TrialResult",
    "Workload",
    "calibrate",
    "check_trial",
    "default_client",
    "load_workload",
    "parse_kill",
    "plan_campaign",
    "read_journal",
    "run_campaign",
    "run_trial",
    "uninterrupted",
]
