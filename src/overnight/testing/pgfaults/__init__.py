"""Fault tests of the PostgreSQL store with real worker processes.

Worker processes (`worker`) share the runs of one PostgreSQL schema while a test kills them
(SIGKILL), stops them past their lease (SIGSTOP/SIGCONT), drains them (SIGTERM) or terminates
their connections (`pg_terminate_backend`). A `Ledger` in the test process logs every step
invocation and applies every effect once, and `checks.check_runs` compares it with what the
database committed. Its modules:

- `workload`: the workflows the workers run (keyed steps applying effects through the ledger,
  and pure steps);
- `worker`: the worker process (`python -m overnight.testing.pgfaults.worker CONFIG`);
- `cluster`: `Cluster` (start, signal and reap workers) and `Schema` (read the tables directly);
- `checks`: `check_runs` and its counts (`FaultCheck`);
- `campaign`: `run_kill_campaign`, many runs while random workers are killed and restarted.

Needs the `overnight[postgres]` extra.
"""

from __future__ import annotations

from .campaign import CampaignConfig, CampaignResult, run_kill_campaign
from .checks import FaultCheck, Snapshot, check_runs, interrupted_runs, ledger_position
from .cluster import Cluster, Schema, WorkerProc

__all__ = [
    "CampaignConfig",
    "CampaignResult",
    "Cluster",
    "FaultCheck",
    "Schema",
    "Snapshot",
    "WorkerProc",
    "check_runs",
    "interrupted_runs",
    "ledger_position",
    "run_kill_campaign",
]
