"""Shared helpers: timers, memory readings, the fsync probe, machine facts, JSON output.

Only the standard library is imported here, so a scenario process can read its RSS before it
imports the framework it measures.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKDIR = ROOT / ".bench-tmp"
"""Scratch files (SQLite databases) go here: git-ignored, deleted after each scenario."""


def now() -> float:
    return time.perf_counter()


def cpu() -> float:
    """CPU seconds of this process, all threads: robust against other load on the machine."""
    return time.process_time()


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def per_step(ts: list[float], cs: list[float], n: int) -> dict[str, Any]:
    """Median wall and CPU time of repeated runs of n steps, per step (the chain figures)."""
    wall = median(ts)
    return {
        "wall_s": wall,
        "wall_all_s": ts,
        "us_per_step": wall / n * 1e6,
        "cpu_us_per_step": median(cs) / n * 1e6,
    }


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024.0 * 1024.0)
    except OSError:  # not Linux: the peak is the best we have
        return peak_rss_mb()


def batch_figures(
    *,
    runs: int,
    units: int,
    unit: str,
    wall: float,
    cpu_s: float,
    latencies: list[float],
    base: float,
) -> dict[str, Any]:
    """The figures every "many runs at once" scenario reports: throughput, CPU per unit of work
    (`unit`: step or turn; `units` per run), run latency percentiles, and memory."""
    ordered = sorted(latencies)
    return {
        "wall_s": wall,
        "runs_per_s": runs / wall,
        "cpu_s": cpu_s,
        "runs_per_cpu_s": runs / cpu_s,
        f"cpu_us_per_{unit}": cpu_s / (runs * units) * 1e6,
        "run_latency_p50_ms": ordered[len(ordered) // 2] * 1e3,
        "run_latency_p99_ms": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1e3,
        "baseline_rss_mb": base,
        "peak_rss_mb": peak_rss_mb(),
    }


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON result line; the driver reads the last line that starts with '{'."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def pkg_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def workdir() -> Path:
    WORKDIR.mkdir(exist_ok=True)
    return WORKDIR


def db_bytes(path: str | Path) -> int:
    """Size of a SQLite database with its WAL and shared-memory files."""
    return sum(
        os.path.getsize(f"{path}{s}") for s in ("", "-wal", "-shm") if os.path.exists(f"{path}{s}")
    )


def checkpointed_bytes(path: str | Path) -> int:
    """Size of the database file alone after folding the WAL into it (TRUNCATE checkpoint).

    Without the checkpoint, the WAL's size depends on when SQLite last checkpointed, not on how
    much the run stored. Also used while another connection has the file open (the agent
    scenarios read it mid-run), so a checkpoint that could not finish is an error, not a
    smaller figure.
    """
    conn = sqlite3.connect(str(path))
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    if busy:
        raise RuntimeError(f"could not checkpoint {path}: another connection holds it")
    return os.path.getsize(path)


def turn_profile(call_times: list[float], t_end: float) -> dict[str, float]:
    """µs per turn over the first and the last quarter of a conversation, from the start of
    each model call to the start of the next (the last turn ends at `t_end`)."""
    ts = [*call_times, t_end]
    d = [b - a for a, b in itertools.pairwise(ts)]
    q = max(1, len(d) // 4)
    return {
        "us_per_turn_first_quarter": median(d[:q]) * 1e6,
        "us_per_turn_last_quarter": median(d[-q:]) * 1e6,
    }


def fsync_probe(n: int = 100) -> float:
    """µs per single-row INSERT+COMMIT with sqlite3, WAL, synchronous=FULL: one fsync each.

    Disk flush latency on a shared virtual disk drifts by 10x over a day, so every durable
    scenario probes it before and after itself and is compared with that, not with a constant.
    """
    with tempfile.TemporaryDirectory(dir=workdir()) as d:
        conn = sqlite3.connect(os.path.join(d, "probe.sqlite"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
        t = time.perf_counter()
        for _ in range(n):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (v) VALUES (?)", (b"x" * 256,))
            conn.execute("COMMIT")
        dt = time.perf_counter() - t
        conn.close()
    return dt / n * 1e6


def machine_info() -> dict[str, Any]:
    cpu_name = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_name,
        "cpus": os.cpu_count(),
        "mem_gb": mem_gb,
        "sqlite": sqlite3.sqlite_version,
    }


def busy_cores(interval: float = 1.0) -> float:
    """CPU cores busy machine-wide over `interval` seconds (from /proc/stat); -1 if unknown."""

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v[:8]), idle

    try:
        t0, i0 = snap()
        time.sleep(interval)
        t1, i1 = snap()
    except OSError:
        return -1.0
    dt = t1 - t0
    return round((dt - (i1 - i0)) / dt * (os.cpu_count() or 1), 2) if dt else 0.0


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None
