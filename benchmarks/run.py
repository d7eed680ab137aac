"""The driver: run overnight and LangGraph side by side, print the table, save the JSON.

  python -m benchmarks.run                      # everything (10-20 min on 2 cores); `make bench`
  python -m benchmarks.run --quick              # tiny sizes, 1 rep: checks that it all runs
  python -m benchmarks.run --only chain resume  # scenarios whose id contains any of the words

Every scenario runs in its own interpreter (`python -m benchmarks.<module> ...`, printing one JSON
line), so imports and memory of one cannot leak into the next; scenarios that report peak RSS run
a fresh interpreter per repetition and the medians are kept. Before each scenario the driver waits
(up to --max-wait s) for other processes to use fewer than --busy-threshold cores and records what
it saw, because this 2-core machine is shared. Results go to benchmarks/results/results.json
(results-quick.json with --quick; a run with --only updates the file in place).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from typing import Any

from .common import ROOT, busy_cores, loadavg, machine_info, pkg_version, workdir
from .report import render

RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Scenario:
    id: str
    module: str
    args: list[str]
    reps: int = 1
    """Fresh processes; their numeric fields are aggregated by median."""
    timeout: float = 600.0
    setup: list[str] | None = None
    """Run once before the repetitions (e.g. build the run to resume). `{tmp}` is a scratch dir."""
    peer: bool = False
    """Needs LangGraph."""
    postgres: bool = False
    """Needs a PostgreSQL server (skipped, with the reason, when none is reachable)."""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    chain_ns: tuple[int, ...]
    chain_reps: int
    sqlite_reps: int
    proc_reps: int
    slow_reps: int
    fanout_k: int
    runs: int
    resume_n: int
    crash_trials: int
    floor_n: int
    pg_runs: int
    """PostgreSQL steps/s: runs of `pg_steps` pure steps each."""
    pg_steps: int
    pg_reps: int
    pg_takeovers: int
    pg_lease: float
    pg_notifies: int
    pg_suspended: tuple[int, ...]
    """Levels of runs suspended on a signal at which the worker's RSS is read."""
    pg_fault_runs: int
    pg_fault_kills: int
    agent_crash_trials: int
    """kill -9 trials of the agent workload (a seven-turn agent on the openai client)."""
    agent_turns: int = 200
    """Model calls of the long agent conversation."""
    agent_runs: int = 1000
    """Agents running at once, each `agent_run_turns` model calls of 50 ms."""
    agent_run_turns: int = 3


FULL = Sizes(
    (200, 1000), 7, 3, 5, 3, 10_000, 1000, 10_000, 100, 20_000,
    2000, 10, 3, 5, 3.0, 20, (0, 10_000, 100_000), 1000, 20, 100,
)  # fmt: skip
QUICK = Sizes(
    (50, 200), 2, 1, 1, 1, 500, 100, 1000, 3, 2000,
    100, 10, 1, 1, 2.0, 5, (0, 200, 1000), 100, 2, 3, agent_turns=20, agent_runs=50,
)  # fmt: skip


def scenarios(s: Sizes) -> list[Scenario]:
    out: list[Scenario] = [
        Scenario("floor.chain", "floor", ["chain", "--n", str(s.floor_n), "--reps", "7"]),
        Scenario(
            f"floor.fanout.k{s.fanout_k}", "floor", ["fanout", "--k", str(s.fanout_k)], s.proc_reps
        ),
        Scenario("floor.concurrent", "floor", ["concurrent", "--runs", str(s.runs)], s.proc_reps),
    ]
    for n in s.chain_ns:
        out.append(
            Scenario(
                f"overnight.chain.memory.n{n}",
                "chain",
                ["memory", "--n", str(n), "--reps", str(s.chain_reps)],
            )
        )
        out.append(
            Scenario(
                f"langgraph.chain.memory.n{n}",
                "langgraph_peer",
                ["chain", "--n", str(n), "--reps", str(s.chain_reps)],
                peer=True,
            )
        )
    for n in s.chain_ns:
        base = ["sqlite", "--n", str(n), "--reps", str(s.sqlite_reps)]
        out.append(Scenario(f"overnight.chain.sqlite.default.n{n}", "chain", base))
        out.append(Scenario(f"overnight.chain.sqlite.strict.n{n}", "chain", [*base, "--strict"]))
        out.append(
            Scenario(
                f"langgraph.chain.sqlite.sync.n{n}",
                "langgraph_peer",
                [
                    "chain_sqlite",
                    "--n",
                    str(n),
                    "--reps",
                    str(s.sqlite_reps),
                    "--durability",
                    "sync",
                ],
                peer=True,
            )
        )
    k = str(s.fanout_k)
    out += [
        Scenario(
            f"overnight.fanout.memory.k{k}", "fanout", ["--store", "memory", "--k", k], s.proc_reps
        ),
        Scenario(
            f"overnight.fanout.sqlite.k{k}", "fanout", ["--store", "sqlite", "--k", k], s.proc_reps
        ),
        Scenario(
            f"langgraph.fanout.memory.k{k}",
            "langgraph_peer",
            ["fanout", "--k", k],
            s.slow_reps,
            peer=True,
        ),
    ]
    runs = str(s.runs)
    out += [
        Scenario(
            "overnight.concurrent.memory",
            "concurrent",
            ["--store", "memory", "--runs", runs],
            s.proc_reps,
        ),
        Scenario(
            "overnight.concurrent.sqlite",
            "concurrent",
            ["--store", "sqlite", "--runs", runs],
            s.proc_reps,
        ),
        Scenario(
            "langgraph.concurrent.memory",
            "langgraph_peer",
            ["concurrent", "--runs", runs],
            s.proc_reps,
            peer=True,
        ),
        Scenario(
            "langgraph.concurrent.sqlite",
            "langgraph_peer",
            ["concurrent_sqlite", "--runs", runs, "--durability", "async"],
            s.slow_reps,
            peer=True,
        ),
    ]
    n = str(s.resume_n)
    template = ["--n", n, "--template", "{tmp}/template.db"]
    out.append(
        Scenario(
            f"overnight.resume.n{n}",
            "resume",
            ["measure", *template],
            s.proc_reps,
            setup=["build", *template],
        )
    )
    out += [
        Scenario(
            "overnight.import",
            "startup",
            ["import", "--module", "overnight", "--reps", str(s.chain_reps)],
        ),
        Scenario(
            "langgraph.import",
            "startup",
            ["import", "--module", "langgraph.graph", "--reps", str(s.chain_reps)],
            peer=True,
        ),
        Scenario("overnight.idle.memory", "startup", ["idle", "--store", "memory"], s.slow_reps),
        Scenario("overnight.idle.sqlite", "startup", ["idle", "--store", "sqlite"], s.slow_reps),
        Scenario("langgraph.idle", "langgraph_peer", ["idle"], s.slow_reps, peer=True),
        # kill -9 trials of the reference workload (overnight.testing.run_campaign).
        Scenario("overnight.crash", "crash", ["--trials", str(s.crash_trials)], timeout=3600),
        # The same through the agent loop, checked against the model server's request log too.
        Scenario(
            "overnight.agent_crash",
            "crash",
            ["--agent", "--trials", str(s.agent_crash_trials)],
            timeout=3600,
        ),
    ]
    out += agent_scenarios(s)
    out += postgres_scenarios(s)
    return out


def agent_scenarios(s: Sizes) -> list[Scenario]:
    """Scenario 9: a long agent conversation, and many agents at once (`benchmarks/agents.py`,
    `benchmarks/langgraph_agents.py`); `--only agents` runs them all."""
    out = []
    talk = ["conversation", "--turns", str(s.agent_turns)]
    crowd = ["many", "--runs", str(s.agent_runs), "--turns", str(s.agent_run_turns)]
    for store, reps in (("memory", s.chain_reps), ("sqlite", s.sqlite_reps)):
        out += [
            Scenario(
                f"overnight.agents.conversation.{store}",
                "agents",
                [*talk, "--store", store, "--reps", str(reps)],
            ),
            Scenario(
                f"langgraph.agents.conversation.{store}",
                "langgraph_agents",
                [*talk, "--saver", store, "--reps", str(reps)],
                peer=True,
            ),
        ]
    for store in ("memory", "sqlite"):
        out += [
            Scenario(f"overnight.agents.many.{store}", "agents", [*crowd, "--store", store],
                     s.proc_reps),
            Scenario(f"langgraph.agents.many.{store}", "langgraph_agents",
                     [*crowd, "--saver", store], s.slow_reps, peer=True),
        ]  # fmt: skip
    return out


def postgres_scenarios(s: Sizes) -> list[Scenario]:
    """Scenario 8: worker processes on PostgreSQL (`benchmarks/postgres.py`)."""
    out = []
    for workers in (1, 4):
        for mode in ("default", "strict"):
            args = ["steps", "--workers", str(workers), "--runs", str(s.pg_runs)]
            args += ["--steps", str(s.pg_steps)] + (["--strict"] if mode == "strict" else [])
            out.append(
                Scenario(
                    f"postgres.steps.w{workers}.{mode}", "postgres", args, s.pg_reps, postgres=True
                )
            )
    levels = ",".join(str(n) for n in s.pg_suspended)
    out += [
        Scenario(
            "postgres.takeover",
            "postgres",
            ["takeover", "--reps", str(s.pg_takeovers), "--lease", str(s.pg_lease)],
            postgres=True,
        ),
        Scenario(
            "postgres.notify", "postgres", ["notify", "--reps", str(s.pg_notifies)], postgres=True
        ),
        Scenario(
            "postgres.suspended",
            "postgres",
            ["suspended", "--levels", levels],
            timeout=3600,
            postgres=True,
        ),
        Scenario(
            "postgres.faults",
            "postgres",
            ["faults", "--runs", str(s.pg_fault_runs), "--kills", str(s.pg_fault_kills)],
            timeout=1800,
            postgres=True,
        ),
    ]
    return out


def langgraph_missing() -> str | None:
    """None if the LangGraph side can run; otherwise exactly how to install it."""
    missing = []
    for name in ("langgraph", "langgraph.checkpoint.sqlite", "aiosqlite", "langgraph.prebuilt"):
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:
            missing.append(name)
    if not missing:
        return None
    with open(ROOT / "pyproject.toml", "rb") as f:
        pins = tomllib.load(f)["project"]["optional-dependencies"]["bench"]
    return (
        f"LangGraph is not installed here (missing: {', '.join(missing)}), so only overnight's "
        "side runs. To measure it side by side, run `make bench` (it creates .venv with the "
        f"bench extra), or install the extra into this interpreter: {sys.executable} -m pip "
        f"install -e '.[bench]'  (that is: {' '.join(pins)})"
    )


def postgres_missing() -> str | None:
    """None if the PostgreSQL scenarios can run; otherwise why not (they are then skipped)."""
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from benchmarks.postgres import unavailable; print(unavailable() or '')",
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        return "cannot check PostgreSQL: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    return r.stdout.strip() or None


def _env() -> dict[str, str]:
    # Measure this checkout's code, whatever else is installed in the interpreter.
    env = dict(os.environ)
    paths = [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def run_json(module: str, args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *args]
    t = time.time()
    try:
        r = subprocess.run(
            cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = r.stderr.strip().splitlines()[-12:]
        return {"error": f"exit status {r.returncode}", "stderr": "\n".join(tail)}
    d: dict[str, Any] = json.loads(lines[-1])
    d["process_wall_s"] = round(time.time() - t, 3)
    return d


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric field over fresh-process repetitions; the rest from the first."""
    out: dict[str, Any] = {}
    for k, v in runs[0].items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            vals = [r[k] for r in runs if isinstance(r.get(k), int | float)]
            out[k] = statistics.median(vals)
            if len(runs) > 1 and k in (
                "wall_s",
                "steps_per_s",
                "peak_rss_mb",
                "runs_per_s",
                "signal_to_result_ms",
            ):
                out[k + "_all"] = vals
        else:
            out[k] = v
    out["process_reps"] = len(runs)
    return out


def wait_quiet(max_wait: float, threshold: float) -> float:
    """Wait (up to max_wait s) until others use fewer than `threshold` cores; the last reading."""
    deadline = time.time() + max_wait
    b = busy_cores(0.5)
    while b > threshold and time.time() < deadline:
        print(f"    machine busy ({b} cores in use by others), waiting...", flush=True)
        b = busy_cores(2.0)
    return b


def run_scenario(sc: Scenario, max_wait: float, threshold: float) -> dict[str, Any]:
    busy = wait_quiet(max_wait, threshold)
    la = loadavg()
    print(f"  {sc.id}  (others busy: {busy} cores, load {la})", flush=True)
    with tempfile.TemporaryDirectory(dir=workdir()) as tmp:
        args = [a.replace("{tmp}", tmp) for a in sc.args]
        rec: dict[str, Any]
        setup = None
        if sc.setup is not None:
            setup = run_json(sc.module, [a.replace("{tmp}", tmp) for a in sc.setup], sc.timeout)
        if setup is not None and "error" in setup:
            rec = setup
        else:
            runs = []
            for _ in range(sc.reps):
                d = run_json(sc.module, args, sc.timeout)
                if "error" in d:
                    runs = [d]
                    break
                runs.append(d)
            rec = aggregate(runs) if len(runs) > 1 else runs[0]
            if setup is not None:
                rec["setup"] = setup
    rec["busy_cores_by_others_before"] = busy
    rec["loadavg_before"] = la
    if "error" in rec:
        print(f"    FAILED: {rec['error']}\n{rec.get('stderr', '')}", flush=True)
    else:
        brief = {
            k: round(v, 3) if isinstance(v, float) else v
            for k, v in rec.items()
            if k
            in (
                "us_per_step",
                "cpu_us_per_step",
                "us_per_turn",
                "cpu_us_per_turn",
                "store_bytes_per_turn",
                "bytes_per_turn_first",
                "bytes_per_turn_last",
                "wall_s",
                "runs_per_s",
                "peak_rss_mb",
                "store_bytes_per_step",
                "signal_to_result_ms",
                "importtime_ms",
                "idle_rss_mb",
                "fsync_probe_us",
                "available",
                "reason",
                "steps_per_s",
                "takeover_s",
                "takeover_max_s",
                "claim_latency_ms",
                "rss_mb_by_level",
            )
        }
        print("    " + json.dumps(brief), flush=True)
    return rec


def versions() -> dict[str, str | None]:
    names = (
        "overnight",
        "langgraph",
        "langgraph-checkpoint",
        "langgraph-checkpoint-sqlite",
        "aiosqlite",
        "pydantic",
        "orjson",
    )
    return {n: pkg_version(n) for n in names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 rep (about 1-2 min)")
    ap.add_argument(
        "--only", nargs="*", default=None, help="run scenarios whose id contains any of these"
    )
    ap.add_argument("--list", action="store_true", help="list the scenario ids and exit")
    ap.add_argument("--out", default=str(RESULTS), help="folder for the JSON results")
    ap.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="s to wait for a quiet machine per scenario (60; quick: 0)",
    )
    ap.add_argument(
        "--busy-threshold", type=float, default=0.3, help="cores used by others that count as busy"
    )
    ap.add_argument("--no-langgraph", action="store_true", help="run overnight's side only")
    a = ap.parse_args(argv)
    sizes = QUICK if a.quick else FULL
    selected = scenarios(sizes)
    if a.only:
        selected = [s for s in selected if any(word in s.id for word in a.only)]
    if a.list:
        print("\n".join(s.id for s in selected))
        return 0
    no_lg = "LangGraph skipped (--no-langgraph)."
    skipped_peer = no_lg if a.no_langgraph else langgraph_missing()
    if skipped_peer:
        print(skipped_peer, flush=True)
        selected = [s for s in selected if not s.peer]
    max_wait = a.max_wait if a.max_wait is not None else (0.0 if a.quick else 60.0)
    no_pg = None
    if any(s.postgres for s in selected):
        no_pg = postgres_missing()
        if no_pg:
            print(f"PostgreSQL scenarios skipped: {no_pg}", flush=True)

    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "results-quick.json" if a.quick else "results.json")
    results: dict[str, Any] = {}
    if a.only and os.path.exists(path):  # a partial rerun updates the saved results
        with open(path) as f:
            results = json.load(f).get("scenarios", {})
    started = time.time()
    data: dict[str, Any] = {}
    print(
        f"{len(selected)} scenarios{' (quick)' if a.quick else ''}; "
        f"results -> {os.path.relpath(path, ROOT)}",
        flush=True,
    )
    for sc in selected:
        if sc.postgres and no_pg:
            results[sc.id] = {"available": False, "reason": no_pg}
        else:
            results[sc.id] = run_scenario(sc, max_wait, a.busy_threshold)
        data = {
            "command": "python -m benchmarks.run" + (" --quick" if a.quick else ""),
            "quick": a.quick,
            "sizes": sizes.__dict__,
            "machine": machine_info(),
            "versions": versions(),
            "langgraph_skipped": skipped_peer,
            "postgres_skipped": no_pg,
            "scenarios": results,
        }
        with open(path, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
    with contextlib.suppress(OSError):  # only if empty: another run may be using it
        os.rmdir(workdir())
    if not data:
        print("no scenario selected; see --list")
        return 1
    print()
    print(render(data))
    failed = [sid for sid, r in results.items() if "error" in r]
    print(f"total {time.time() - started:.0f} s; wrote {os.path.relpath(path, ROOT)}")
    if failed:
        print(f"FAILED scenarios: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
