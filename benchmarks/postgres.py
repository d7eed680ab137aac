"""Scenario 8: PostgreSQL, with worker processes on the same 2-core machine as the server.

  python -m benchmarks.postgres steps --workers 4 --runs 2000 --steps 10 [--strict]
  python -m benchmarks.postgres takeover --reps 5 --lease 3
  python -m benchmarks.postgres notify --reps 20
  python -m benchmarks.postgres suspended --levels 0,10000,100000
  python -m benchmarks.postgres faults --runs 1000 --kills 20

Workers are real processes (`python -m overnight.testing.pgfaults.worker`, the fault tests'
worker) on one fresh schema, created for the scenario and dropped after it; the scenario process
starts and watches runs as a client. Each subcommand prints one JSON line; when PostgreSQL is not
reachable (or psycopg is not installed) the line says `"available": false` and why.

- `steps`: durable steps per second. `runs` chains of `steps` trivial pure steps
  (`workloads.chain`) are created while the workers are stopped (SIGSTOP), so creating them does
  not compete with executing them; the timer starts when the workers are continued and stops when
  the last run's completion is committed. Worker CPU and the server's CPU (its processes, read in
  /proc) are reported for the same window.
- `takeover`: the worker holding a run (a chain of 20 ms steps) is killed with SIGKILL, at a
  random phase of its heartbeat; the time from the kill to the first step executed by the other
  worker, against the lease. Engine defaults but the lease (`poll_seconds` 1 s,
  `heartbeat_seconds` = lease / 3).
- `notify`: claim latency from NOTIFY: an idle worker polling every 30 s; from `start` in the
  client to the run's first step in the worker.
- `suspended`: one worker's RSS with 0, 10,000 and 100,000 runs suspended on a signal
  (`workloads.waits_for_go`); the runs are created by the client, the worker claims and
  suspends them all, and its RSS is read once none is running.
- `faults`: the SIGKILL campaign of `overnight.testing.pgfaults` (the fault tests' campaign, at a
  larger size), with its counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

from .common import emit, workdir

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def base_url() -> str:
    """The server: `OVERNIGHT_BENCH_POSTGRES_URL`, else the tests' `OVERNIGHT_TEST_POSTGRES_URL`."""
    return (
        os.environ.get("OVERNIGHT_BENCH_POSTGRES_URL")
        or os.environ.get("OVERNIGHT_TEST_POSTGRES_URL")
        or DEFAULT_URL
    )


def unavailable() -> str | None:
    """Why the PostgreSQL scenarios cannot run here, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        with psycopg.connect(base_url(), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        where = base_url().split("@")[-1]
        return f"PostgreSQL is not reachable at {where}: {str(exc).strip().splitlines()[0]}"
    return None


@contextlib.contextmanager
def fresh_schema(**options: Any) -> Iterator[str]:
    """A store URL in a schema of its own, dropped afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"overnight_bench_{uuid.uuid4().hex[:10]}"
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **options}.items())
    base = base_url()
    try:
        yield f"{base}{'&' if '?' in base else '?'}{query}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def server_version() -> str | None:
    import psycopg

    with psycopg.connect(base_url()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return None if row is None else str(row[0])


# -- /proc readings -----------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process so far; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def server_pids() -> list[int]:
    """The PostgreSQL server's processes on this machine (empty if it runs elsewhere)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/comm") as f:
                    if f.read().strip() in ("postgres", "postmaster"):
                        pids.append(int(name))
            except OSError:
                continue
    return pids


def server_cpu_s() -> float:
    """CPU seconds of the server's processes (those alive now: backends come and go)."""
    return sum(cpu_s(pid) for pid in server_pids())


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy so far (all cores)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return (sum(v) - v[3] - v[4]) / TICK


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                found[line.split(":")[0]] = int(line.split()[1]) / 1024.0
    return found["VmRSS"], found["VmHWM"]


# -- helpers ------------------------------------------------------------------------------------


async def start_runs(url: str, workflow: Any, inputs: list[Any], prefix: str) -> list[str]:
    """Start runs from a client engine (no worker), 2,000 at a time; their ids."""
    from overnight import Engine
    from overnight.store.postgres import PostgresStore

    ids = [f"{prefix}{i:06d}" for i in range(len(inputs))]
    async with Engine(PostgresStore(url), worker=False) as client:
        for first in range(0, len(ids), 2000):
            chunk = range(first, min(first + 2000, len(ids)))
            await asyncio.gather(*(client.start(workflow, inputs[i], run_id=ids[i]) for i in chunk))
    return ids


def wait_for(what: str, check: Any, timeout: float, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(every)


def _cluster(url: str, tmp: str, **options: Any) -> Any:
    from overnight.testing.pgfaults import Cluster

    return Cluster(url, tmp, options=options)


# -- durable steps per second -------------------------------------------------------------------


def steps(workers: int, runs: int, n: int, strict: bool, max_runs: int, pool_max: int) -> Any:
    from overnight.testing.pgfaults import Schema

    from .workloads import chain

    warm = 20 * workers
    with (
        fresh_schema(pool_max=pool_max) as url,
        tempfile.TemporaryDirectory(dir=workdir()) as tmp,
        _cluster(url, tmp, strict=strict, max_concurrent_runs=max_runs) as cluster,
        Schema(url) as db,
    ):
        procs = [cluster.spawn() for _ in range(workers)]
        cluster.wait_ready(procs)
        asyncio.run(start_runs(url, chain, [n] * warm, "warm"))
        wait_for("the warm-up runs complete", lambda: db.counts().get("completed") == warm, 60)
        for w in procs:
            cluster.send(w, signal.SIGSTOP)
        t = time.perf_counter()
        asyncio.run(start_runs(url, chain, [n] * runs, "run"))
        created_s = time.perf_counter() - t
        cpu0 = [cpu_s(w.pid) for w in procs]
        server0, busy0 = server_cpu_s(), machine_busy_s()
        t = time.perf_counter()
        for w in procs:
            cluster.send(w, signal.SIGCONT)
        total = warm + runs
        wait_for("every run completes", lambda: db.counts().get("completed") == total, 600)
        wall = time.perf_counter() - t
        worker_cpu = sum(cpu_s(w.pid) for w in procs) - sum(cpu0)
        server_cpu, busy = server_cpu_s() - server0, machine_busy_s() - busy0
        entries = int(db.rows("SELECT COUNT(*) FROM entries")[0][0])
        statuses = cluster.stop_all(timeout=60)
        commits = sum(int((w.report() or {}).get("commits", 0)) for w in procs)
    if any(status != 0 for status in statuses.values()):
        raise RuntimeError(f"workers exited with {statuses}")
    total_steps = runs * n
    return {
        "scenario": "postgres_steps",
        "available": True,
        "workers": workers,
        "mode": "strict" if strict else "default",
        "runs": runs,
        "steps": n,
        "max_concurrent_runs": max_runs,
        "pool_max": pool_max,
        "wall_s": wall,
        "steps_per_s": total_steps / wall,
        "runs_per_s": runs / wall,
        "create_s": created_s,
        "worker_cpu_s": worker_cpu,
        "worker_cpu_us_per_step": worker_cpu / total_steps * 1e6,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_step": server_cpu / total_steps * 1e6,
        "machine_busy_cores": busy / wall,
        "commits_per_run": commits / total,
        "journal_entries": entries,
        "server_version": server_version(),
    }


# -- takeover after SIGKILL ---------------------------------------------------------------------


def takeover(reps: int, lease: float, seed: int) -> Any:
    from overnight._engine import codec
    from overnight.testing.pgfaults import Schema

    from .workloads import stamped_chain

    rng = random.Random(seed)
    heartbeat = lease / 3
    measured: list[dict[str, Any]] = []
    with (
        fresh_schema(pool_max=4) as url,
        tempfile.TemporaryDirectory(dir=workdir()) as tmp,
        _cluster(url, tmp, lease_seconds=lease) as cluster,
        Schema(url) as db,
    ):
        live = [cluster.spawn(), cluster.spawn()]
        cluster.wait_ready(live)

        def last_step(run_id: str) -> tuple[int, float] | None:
            rows = db.rows(
                "SELECT data FROM entries WHERE run_id = %s AND kind = 'done' "
                "ORDER BY seq DESC LIMIT 1",
                run_id,
            )
            if not rows:
                return None
            import orjson

            pid, at = codec.decode(orjson.loads(bytes(rows[0][0]))["out"])
            return int(pid), float(at)

        for rep in range(reps):
            [run_id] = asyncio.run(start_runs(url, stamped_chain, [10**6], f"take{rep}-"))
            wait_for("a worker runs the run", lambda run_id=run_id: last_step(run_id), 30)
            record = db.run(run_id)
            assert record is not None
            victim = next(w for w in live if w.tag == record["owner"])
            survivor = next(w for w in live if w is not victim)
            time.sleep(rng.uniform(0, heartbeat))  # a random phase of the victim's heartbeat
            killed_at = time.time()
            cluster.kill(victim)

            def taken(run_id: str = run_id, pid: int = survivor.pid) -> bool:
                step = last_step(run_id)
                return step is not None and step[0] == pid

            wait_for("the other worker runs a step", taken, lease * 3 + 30, every=0.005)
            step = last_step(run_id)
            assert step is not None
            first = db.rows(
                "SELECT data FROM entries WHERE run_id = %s AND kind = 'done' ORDER BY seq",
                run_id,
            )
            import orjson

            times = [codec.decode(orjson.loads(bytes(d))["out"]) for (d,) in first]
            first_by_survivor = min(at for pid, at in times if pid == survivor.pid)
            last_by_victim = max(at for pid, at in times if pid == victim.pid)
            measured.append(
                {
                    "takeover_s": first_by_survivor - killed_at,
                    "victim_last_step_before_kill_s": killed_at - last_by_victim,
                }
            )
            asyncio.run(_cancel(url, run_id))
            live = [survivor, cluster.spawn()]
            cluster.wait_ready(live)
        cluster.stop_all(timeout=60)
    takeovers = [m["takeover_s"] for m in measured]
    return {
        "scenario": "postgres_takeover",
        "available": True,
        "reps": reps,
        "lease_s": lease,
        "heartbeat_s": heartbeat,
        "poll_s": 1.0,
        "takeover_s": statistics.median(takeovers),
        "takeover_max_s": max(takeovers),
        "takeover_min_s": min(takeovers),
        "takeover_all_s": takeovers,
        "bar_s": lease + 1.0,
    }


async def _cancel(url: str, run_id: str) -> None:
    from overnight import Engine
    from overnight.store.postgres import PostgresStore

    async with Engine(PostgresStore(url), worker=False) as client:
        await client.cancel(run_id)


# -- claim latency from NOTIFY ------------------------------------------------------------------


def notify(reps: int) -> Any:
    from .workloads import first_step_time

    with (
        fresh_schema(pool_max=4) as url,
        tempfile.TemporaryDirectory(dir=workdir()) as tmp,
        _cluster(url, tmp, poll_seconds=30.0) as cluster,
    ):
        worker = cluster.spawn()
        cluster.wait_ready([worker])
        latencies = asyncio.run(_latencies(url, first_step_time, reps))
        cluster.stop_all(timeout=60)
    ordered = sorted(latencies)
    return {
        "scenario": "postgres_notify",
        "available": True,
        "reps": reps,
        "poll_s": 30.0,
        "claim_latency_ms": statistics.median(latencies) * 1e3,
        "claim_latency_p90_ms": ordered[max(0, int(len(ordered) * 0.9) - 1)] * 1e3,
        "claim_latency_max_ms": ordered[-1] * 1e3,
        "claim_latency_all_ms": [round(x * 1e3, 2) for x in latencies],
    }


async def _latencies(url: str, workflow: Any, reps: int) -> list[float]:
    from overnight import Engine
    from overnight.store.postgres import PostgresStore

    out = []
    async with Engine(PostgresStore(url), worker=False, poll_seconds=0.01) as client:
        for rep in range(reps + 2):  # two warm-ups
            await asyncio.sleep(0.1)  # the worker is idle again, waiting out its 30 s poll
            started = time.time()
            handle = await client.start(workflow)
            ran: float = await client.result(handle.run_id, timeout=35)
            if rep >= 2:
                out.append(ran - started)
    return out


# -- worker memory with runs suspended on signals -----------------------------------------------


def suspended(levels: list[int]) -> Any:
    from overnight.testing.pgfaults import Schema

    from .workloads import waits_for_go

    readings: list[dict[str, Any]] = []
    with (
        fresh_schema() as url,
        tempfile.TemporaryDirectory(dir=workdir()) as tmp,
        _cluster(url, tmp) as cluster,
        Schema(url) as db,
    ):
        worker = cluster.spawn()
        cluster.wait_ready([worker])
        asyncio.run(_warm_up(url, waits_for_go))  # one run waits, is signalled and completes
        created = 0
        for level in levels:
            t = time.perf_counter()
            cpu0 = cpu_s(worker.pid)
            if level > created:
                asyncio.run(start_runs(url, waits_for_go, [None] * (level - created), f"s{level}-"))
                created = level

            def settled(level: int = level) -> bool:
                counts = db.counts()
                return counts.get("waiting", 0) == level and counts.get("running", 0) == 0

            wait_for(f"{level:,} runs wait", settled, 1800, every=0.2)
            seconds = time.perf_counter() - t
            rss, peak = rss_mb(worker.pid)
            readings.append(
                {
                    "waiting_runs": level,
                    "rss_mb": rss,
                    "peak_rss_mb": peak,
                    "seconds": seconds,
                    "worker_cpu_s": cpu_s(worker.pid) - cpu0,
                }
            )
            print(f"  {level:>7,} waiting: RSS {rss:.1f} MB (peak {peak:.1f})", file=sys.stderr)
        cluster.stop_all(timeout=120)
    by_level = {r["waiting_runs"]: r for r in readings}
    low, high = sorted(levels)[1] if len(levels) > 2 else levels[0], max(levels)
    flat = by_level[high]["rss_mb"] <= by_level[low]["rss_mb"] * 1.10 + 2.0
    return {
        "scenario": "postgres_suspended",
        "available": True,
        "levels": levels,
        "readings": readings,
        "rss_mb_by_level": {str(r["waiting_runs"]): round(r["rss_mb"], 1) for r in readings},
        "flat_from": low,
        "flat": flat,
        "growth_kb_per_1000_runs": (by_level[high]["rss_mb"] - by_level[low]["rss_mb"])
        * 1024
        / max(1, (high - low) / 1000),
    }


async def _warm_up(url: str, workflow: Any) -> None:
    from overnight import Engine
    from overnight.store.postgres import PostgresStore

    async with Engine(PostgresStore(url), worker=False, poll_seconds=0.05) as client:
        handle = await client.start(workflow, run_id="warm-up")
        while (await client.get_run(handle.run_id)).status != "waiting":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await client.signal(handle.run_id, "go", "now")
        await client.result(handle.run_id, timeout=30)


# -- the SIGKILL campaign -----------------------------------------------------------------------


def faults(runs: int, kills: int, seed: int) -> Any:
    from overnight.testing.pgfaults import CampaignConfig, run_kill_campaign

    config = CampaignConfig(runs=runs, kills=kills, seed=seed, timeout=600)
    with fresh_schema(pool_max=4) as url:
        result = run_kill_campaign(
            url, config, progress=lambda line: print("  " + line, file=sys.stderr)
        )
    print(result.describe(), file=sys.stderr)
    return {"scenario": "postgres_faults", "available": True, "counts": result.summary()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("steps")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--runs", type=int, default=2000)
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--strict", action="store_true")
    s.add_argument("--max-runs", type=int, default=100, help="max_concurrent_runs per worker")
    s.add_argument("--pool-max", type=int, default=10)
    t = sub.add_parser("takeover")
    t.add_argument("--reps", type=int, default=5)
    t.add_argument("--lease", type=float, default=3.0)
    t.add_argument("--seed", type=int, default=2026)
    n = sub.add_parser("notify")
    n.add_argument("--reps", type=int, default=20)
    m = sub.add_parser("suspended")
    m.add_argument("--levels", default="0,10000,100000")
    f = sub.add_parser("faults")
    f.add_argument("--runs", type=int, default=1000)
    f.add_argument("--kills", type=int, default=20)
    f.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    reason = unavailable()
    if reason is not None:
        emit({"scenario": f"postgres_{a.what}", "available": False, "reason": reason})
        return
    if a.what == "steps":
        emit(steps(a.workers, a.runs, a.steps, a.strict, a.max_runs, a.pool_max))
    elif a.what == "takeover":
        emit(takeover(a.reps, a.lease, a.seed))
    elif a.what == "notify":
        emit(notify(a.reps))
    elif a.what == "suspended":
        emit(suspended([int(x) for x in a.levels.split(",")]))
    else:
        emit(faults(a.runs, a.kills, a.seed))


if __name__ == "__main__":
    main()
