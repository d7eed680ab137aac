"""Crash trials: kill a worker with SIGKILL, resume the run in a fresh process, check the result.

A trial runs a `Workload` in worker subprocesses on one SQLite file, kills them at a named crash
point or at a random instant, resumes the run in fresh processes, and checks, against a ledger
kept by the test process and an uninterrupted reference run, that nothing committed ran twice
and no effect was applied twice. Its modules:

- `workload`: `Workload`, what a trial runs, and `SignalMode`, when its signal is sent;
- `kills`: `CrashAt`, `KillAfter` and `parse_kill`, how a worker process is killed;
- `trial`: `run_trial` and `uninterrupted`, one trial from its first process to its end;
- `journal`: `read_journal`, the run as committed in the SQLite file after each process;
- `checks`: `check_trial`, the checks (a)-(e), and the records they read (`TrialResult`);
- `campaign`: `run_campaign`, many trials added up in a printable `CampaignResult`;
- `agent`: `AgentWorkload`, `run_agent_trial` and `check_conversation`, trials of an agent checked
  against the model server's request log too; `agent_campaign`: `run_agent_campaign`.
"""

from __future__ import annotations

from .campaign import CampaignResult, TrialPlan, calibrate, main, plan_campaign, run_campaign
from .checks import Incarnation, TrialCheck, TrialResult, check_trial
from .journal import JournalSnapshot, read_journal
from .kills import ENV_CRASH, CrashAt, Kill, KillAfter, parse_kill
from .trial import run_trial, uninterrupted
from .workload import SIGNAL_MODES, SignalMode, Workload, load_workload

__all__ = [
    "ENV_CRASH",
    "SIGNAL_MODES",
    "CampaignResult",
    "CrashAt",
    "Incarnation",
    "JournalSnapshot",
    "Kill",
    "KillAfter",
    "SignalMode",
    "TrialCheck",
    "TrialPlan",
    "TrialResult",
    "Workload",
    "calibrate",
    "check_trial",
    "load_workload",
    "main",
    "parse_kill",
    "plan_campaign",
    "read_journal",
    "run_campaign",
    "run_trial",
    "uninterrupted",
]
