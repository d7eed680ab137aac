"""The SIGKILL campaign: worker processes share many runs on PostgreSQL while random ones are
killed with SIGKILL and restarted.

`run_kill_campaign(url, CampaignConfig(...))` starts `workers` worker processes on the store at
`url` (its schema must be fresh: the caller creates and drops it), starts `runs` runs of
`workload.chain`, and until every run has ended kills a random worker (preferably one holding
runs) every `kill_every` seconds, `kills` times, restarting a fresh one `restart_after` seconds
later. Right after each kill it snapshots the `done` keys committed in the database. Then it
stops the workers with SIGTERM and checks everything with `checks.check_runs`, against the
ledger it kept in this process.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..ledger import Ledger
from .checks import FaultCheck, Snapshot, check_runs, interrupted_runs, ledger_position
from .cluster import Cluster, Schema, WorkerProc
from .workload import chain, expected_chain

DEFAULT_ENGINE: dict[str, Any] = {
    "lease_seconds": 1.5,
    "heartbeat_seconds": 0.3,
    "poll_seconds": 0.1,
    "max_concurrent_runs": 8,
    "drain_seconds": 10.0,
    "listen_retry_seconds": 1.0,
}


@dataclass
class CampaignConfig:
    runs: int = 240
    workers: int = 4
    kills: int = 6
    steps: int = 6
    """Steps per run, alternating pure and keyed."""
    step_seconds: tuple[float, float] = (0.02, 0.12)
    kill_every: tuple[float, float] = (0.6, 1.2)
    restart_after: tuple[float, float] = (0.0, 0.3)
    seed: int = 0
    timeout: float = 120.0
    """Seconds for every run to end once started."""
    engine: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_ENGINE))


@dataclass
class CampaignResult:
    config: CampaignConfig
    check: FaultCheck
    kills: int = 0
    restarts: int = 0
    seconds: float = 0.0
    """From the runs' start to the last one ending."""
    workers: list[str] = field(default_factory=list)
    """Every worker process, with how it ended."""
    store_retries: int = 0
    """Transactions the surviving workers' stores tried again (informative)."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.check.ok

    def summary(self) -> dict[str, Any]:
        return {
            "runs": self.config.runs,
            "workers": self.config.workers,
            "kills": self.kills,
            "restarts": self.restarts,
            "seconds": round(self.seconds, 2),
            "lease_seconds": self.config.engine.get("lease_seconds"),
            "store_retries": self.store_retries,
            "error": self.error,
            **self.check.summary(),
            "ok": self.ok,
        }

    def describe(self) -> str:
        head = (
            f"kill campaign: {self.config.runs} runs, {self.config.workers} workers, "
            f"{self.kills} kills, {self.restarts} restarts, {self.seconds:.1f} s, "
            f"seed {self.config.seed}, error={self.error}"
        )
        return "\n".join([head, self.check.describe(), "workers: " + "; ".join(self.workers)])


async def start_runs(url: str, specs: dict[str, Any]) -> None:
    """Start runs (`run id -> input`) of `workload.chain` from a client engine (no worker)."""
    from ...engine import Engine
    from ...store.postgres import PostgresStore

    async with Engine(PostgresStore(url), worker=False) as client:
        ids = list(specs)
        for first in range(0, len(ids), 500):
            await asyncio.gather(
                *(client.start(chain, specs[i], run_id=i) for i in ids[first : first + 500])
            )


def run_kill_campaign(
    url: str,
    config: CampaignConfig | None = None,
    *,
    pythonpath: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> CampaignResult:
    """Run the campaign on the (fresh) schema of `url`; see the module docstring."""
    config = config or CampaignConfig()
    rng = random.Random(config.seed)
    lo, hi = config.step_seconds
    specs = {
        f"r{i:05d}": {"i": i, "steps": config.steps, "lo": lo, "hi": hi} for i in range(config.runs)
    }
    expected = {f"r{i:05d}": expected_chain(i, config.steps) for i in range(config.runs)}
    workdir = tempfile.mkdtemp(prefix="overnight-pgfaults-")
    ledger = Ledger().start()
    schema = Schema(url)
    cluster = Cluster(url, workdir, ledger=ledger, options=config.engine, pythonpath=pythonpath)
    result = CampaignResult(config, FaultCheck())
    snapshots: list[Snapshot] = []
    killed: list[WorkerProc] = []
    try:
        cluster.wait_ready([cluster.spawn() for _ in range(config.workers)])
        asyncio.run(start_runs(url, specs))
        started = time.monotonic()
        deadline = started + config.timeout
        next_kill = started + rng.uniform(*config.kill_every)
        restarts: list[float] = []
        while True:
            counts = schema.counts()
            ended = sum(n for s, n in counts.items() if s in ("completed", "failed", "dead"))
            if ended >= config.runs:
                break
            now = time.monotonic()
            if now > deadline:
                result.error = f"runs not ended after {config.timeout} s: {counts}"
                break
            for due in [t for t in restarts if t <= now]:
                restarts.remove(due)
                cluster.spawn()
                result.restarts += 1
            if result.kills < config.kills and now >= next_kill:
                victim = _pick(cluster, schema, rng)
                if victim is not None:
                    cluster.kill(victim)
                    killed.append(victim)
                    result.kills += 1
                    done = frozenset(schema.done_keys())
                    snapshots.append(
                        Snapshot(
                            f"kill {result.kills} ({victim.tag})", done, ledger_position(ledger)
                        )
                    )
                    restarts.append(time.monotonic() + rng.uniform(*config.restart_after))
                    if progress is not None:
                        completed = counts.get("completed", 0)
                        progress(
                            f"killed {victim.tag} (kill {result.kills}); "
                            f"{completed}/{config.runs} completed"
                        )
                next_kill = time.monotonic() + rng.uniform(*config.kill_every)
            time.sleep(0.02)
        result.seconds = time.monotonic() - started
        statuses = cluster.stop_all(timeout=config.engine.get("drain_seconds", 10.0) + 20)
        for tag, status in statuses.items():
            if status != 0:
                result.error = result.error or f"worker {tag} exited with {status} after SIGTERM"
        ledger.wait_idle(timeout=10)
        interrupted: set[tuple[str, str]] = set()
        for w in cluster.workers:
            interrupted |= interrupted_runs(w.tag, w.stderr())
            report = w.report()
            if report is not None:
                result.store_retries += int(report.get("retries", 0))
            how = "killed" if w in killed else f"exit {w.returncode}"
            result.workers.append(f"{w.tag} {how}")
            if "executor crashed" in w.stderr():
                result.error = result.error or f"worker {w.tag}: an executor crashed"
        result.check = check_runs(
            ledger=ledger,
            results=schema.results(),
            expected=expected,
            done=schema.done_keys(),
            failures=schema.failures(),
            snapshots=snapshots,
            killed=[w.tag for w in killed],
            interrupted=interrupted,
        )
        return result
    finally:
        cluster.close()
        schema.close()
        ledger.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _pick(cluster: Cluster, schema: Schema, rng: random.Random) -> WorkerProc | None:
    """A random live, ready worker, preferably one that holds runs."""
    live = [w for w in cluster.alive() if w.ready()]
    holding = [w for w in live if schema.owned(w.tag)]
    pool = holding or live
    return rng.choice(pool) if pool else None
