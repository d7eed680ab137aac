"""Render saved results as Markdown: the headline table (overnight | LangGraph | ratio | bar |
floor/probe), then the machine, its load, and the details of every scenario.

Ratios say how many times better overnight did than LangGraph in the same run (>1: overnight
better), whatever the direction of the metric. Bars are the design's performance bars, judged on
the figures measured here. Because this machine's speed drifts (up to 3.5x from day to day), time
bars also show the figure scaled to the reference speed at which the bars were set: divided by the
smaller of two slowdown factors measured in the same run, the bare-asyncio floor (`create_task` +
await: 4.55 µs at the reference) and LangGraph's 1,000-step chain (187 µs/step at the reference).
"""

from __future__ import annotations

from typing import Any

from .report_agents import DETAIL_KEYS, agent_rows

REFERENCE = {"create_task_us": 4.55, "langgraph_chain_us": 187.0}
"""The machine's speed when the bars were set (DESIGN.md, "Performance bars")."""


def _f(x: Any, nd: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if x != x:
            return "—"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if abs(x) >= 100:
            return f"{x:.0f}"
        return f"{x:.{nd}f}"
    return str(x)


def _kb(b: float | None) -> str:
    if b is None:
        return "—"
    if b >= 1024 * 1024:
        return f"{b / 1024 / 1024:.1f} MB"
    if b >= 1024:
        return f"{b / 1024:.1f} KB"
    return f"{b:.0f} B"


class Results:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.s: dict[str, dict[str, Any]] = data.get("scenarios", {})
        sizes = data.get("sizes", {})
        self.n = max(sizes.get("chain_ns", [1000]))
        self.n_small = min(sizes.get("chain_ns", [200]))
        self.k = sizes.get("fanout_k", 10000)
        self.runs = sizes.get("runs", 1000)
        self.resume_n = sizes.get("resume_n", 10000)

    def get(self, sid: str, key: str) -> Any:
        rec = self.s.get(sid)
        if rec is None or "error" in rec:
            return None
        return rec.get(key)

    def speed_factors(self) -> dict[str, float]:
        """How much slower this machine ran than at the reference, by two yardsticks."""
        out = {}
        task = self.get("floor.chain", "create_task_and_await_us")
        if task:
            out["floor"] = task / REFERENCE["create_task_us"]
        lg = self.get(f"langgraph.chain.memory.n{self.n}", "us_per_step")
        if lg and self.n == 1000:  # the reference LangGraph figure is for N=1,000
            out["langgraph"] = lg / REFERENCE["langgraph_chain_us"]
        return out

    def speed(self) -> float | None:
        """The smaller factor: scaling never excuses more than either yardstick supports."""
        factors = self.speed_factors()
        return min(factors.values()) if factors else None


def _ratio(ours: float | None, theirs: float | None, higher_better: bool = False) -> str:
    if not ours or not theirs:
        return "—"
    r = ours / theirs if higher_better else theirs / ours
    return f"{r:.1f}×" if r < 100 else f"{r:,.0f}×"


def _bar(
    value: float | None,
    limit: float,
    text: str,
    *,
    higher_better: bool = False,
    speed: float | None = None,
    nd: int = 1,
) -> str:
    """`text`: met / MISSED by how much, and (time bars) the verdict at the reference speed."""
    if value is None:
        return f"{text}: not measured"
    ok = value >= limit if higher_better else value <= limit
    miss = limit / value if higher_better else value / limit
    verdict = "met" if ok else f"**missed** ({miss:.2f}× the bar)"
    if speed:
        scaled = value * speed if higher_better else value / speed
        ok_ref = scaled >= limit if higher_better else scaled <= limit
        verdict += f"; at ref. speed ≈{_f(scaled, nd)}: {'met' if ok_ref else 'missed'}"
    return f"{text}: {verdict}"


def headline(r: Results) -> list[str]:
    n, k, runs, sp = r.n, r.k, r.runs, r.speed()
    L = [
        "| scenario | overnight | LangGraph | ratio | bar | floor / probe |",
        "|---|---|---|---|---|---|",
    ]

    def row(*cells: str) -> None:
        L.append("| " + " | ".join(cells) + " |")

    def step_cell(sid: str) -> str:
        us, c = r.get(sid, "us_per_step"), r.get(sid, "cpu_us_per_step")
        return "—" if us is None else f"{_f(us)} ({_f(c)})"

    floor = "floor.chain"
    floor_txt = (
        f"await {_f(r.get(floor, 'await_coroutine_us'), 2)} · loop turn "
        f"{_f(r.get(floor, 'sleep0_loop_turn_us'), 2)} · task "
        f"{_f(r.get(floor, 'create_task_and_await_us'), 2)} µs"
    )
    ov, lg = f"overnight.chain.memory.n{n}", f"langgraph.chain.memory.n{n}"
    row(
        f"1. chain of {n:,} trivial steps, in memory, journal included: µs/step wall (CPU)",
        step_cell(ov),
        step_cell(lg),
        _ratio(r.get(ov, "us_per_step"), r.get(lg, "us_per_step")),
        _bar(r.get(ov, "us_per_step"), 10, "≤ 10 µs", speed=sp),
        floor_txt,
    )
    lgs = f"langgraph.chain.sqlite.sync.n{n}"
    for mode in ("default", "strict"):
        sid = f"overnight.chain.sqlite.{mode}.n{n}"
        probe = r.get(sid, "fsync_probe_us")
        probes = r.get(sid, "fsync_probe_us_per_commit") or []
        bar = "—"
        if mode == "strict" and probe is not None:
            bar = _bar(
                r.get(sid, "us_per_step"), probe + 150, f"≤ probe + 150 = {_f(probe + 150)} µs"
            )
        row(
            f"2. same chain durable on SQLite, {mode} mode "
            f"({r.get(sid, 'commits_per_run') or '?'} commits/run): µs/step wall (CPU)",
            step_cell(sid),
            step_cell(lgs) + (" sync" if r.get(lgs, "us_per_step") else ""),
            _ratio(r.get(sid, "us_per_step"), r.get(lgs, "us_per_step")),
            bar,
            ("fsync probe " + " / ".join(_f(p) for p in probes) + " µs (before / after)")
            if probes
            else "—",
        )
    small = r.n_small
    ob = [r.get(f"overnight.chain.sqlite.strict.n{m}", "store_bytes_per_step") for m in (small, n)]
    lb = [r.get(f"langgraph.chain.sqlite.sync.n{m}", "store_bytes_per_step") for m in (small, n)]
    flat = None
    if ob[0] and ob[1]:
        flat = ob[1] <= 4096 and ob[0] <= 4096 and ob[1] <= ob[0] * 1.25
    bar_bytes = "≤ 4 KB/step, flat: " + (
        "not measured" if flat is None else "met" if flat else "**missed**"
    )
    row(
        f"2. store growth per step at N={small:,} → N={n:,} (WAL checkpointed)",
        f"{_kb(ob[0])} → {_kb(ob[1])}",
        f"{_kb(lb[0])} → {_kb(lb[1])}",
        _ratio(ob[1], lb[1]),
        bar_bytes,
        f"DB {_kb(r.get(f'overnight.chain.sqlite.strict.n{n}', 'db_bytes'))} vs "
        f"{_kb(r.get(lgs, 'db_bytes'))} at N={n:,}",
    )
    ff = f"floor.fanout.k{k}"
    lgf = f"langgraph.fanout.memory.k{k}"
    for store in ("memory", "sqlite"):
        sid = f"overnight.fanout.{store}.k{k}"
        lg_wall = r.get(lgf, "wall_s") if store == "memory" else None
        lg_rss = r.get(lgf, "peak_rss_mb") if store == "memory" else None
        wall, c = r.get(sid, "wall_s"), r.get(sid, "cpu_s")
        row(
            f"3. fan-out {k:,} × 50 ms, all at once (no limit), {store}: wall s (CPU s)",
            "—" if wall is None else f"{_f(wall, 3)} ({_f(c, 3)})",
            "—" if lg_wall is None else f"{_f(lg_wall, 2)} ({_f(r.get(lgf, 'cpu_s'), 2)})",
            _ratio(wall, lg_wall),
            _bar(wall, 0.5, "≤ 0.5 s", speed=sp, nd=3),
            f"gather {_f(r.get(ff, 'wall_s'), 3)} s",
        )
        row(
            f"3. fan-out, {store}: peak RSS MB (baseline)",
            f"{_f(r.get(sid, 'peak_rss_mb'), 0)} ({_f(r.get(sid, 'baseline_rss_mb'), 0)})",
            "—" if lg_rss is None else f"{_f(lg_rss, 0)} ({_f(r.get(lgf, 'baseline_rss_mb'), 0)})",
            _ratio(r.get(sid, "peak_rss_mb"), lg_rss),
            _bar(r.get(sid, "peak_rss_mb"), 150, "≤ 150 MB"),
            f"gather {_f(r.get(ff, 'peak_rss_mb'), 0)} MB",
        )
    fc = "floor.concurrent"
    for store, limit, lg_note in (
        ("memory", 4000, ""),
        ("sqlite", 1500, " one saver, durability async"),
    ):
        sid, lsid = f"overnight.concurrent.{store}", f"langgraph.concurrent.{store}"
        ours, theirs = r.get(sid, "runs_per_s"), r.get(lsid, "runs_per_s")
        row(
            f"4. {runs:,} concurrent runs × 5 steps × 20 ms, {store}: runs/s (per CPU-s)",
            "—" if ours is None else f"{_f(ours)} ({_f(r.get(sid, 'runs_per_cpu_s'))})",
            "—"
            if theirs is None
            else f"{_f(theirs)} ({_f(r.get(lsid, 'runs_per_cpu_s'))}){lg_note}",
            _ratio(ours, theirs, higher_better=True),
            _bar(ours, limit, f"≥ {limit:,}", higher_better=True, speed=sp),
            f"{_f(r.get(fc, 'runs_per_s'))} runs/s"
            if store == "memory"
            else f"fsync probe {_f(r.get(lsid, 'fsync_probe_us'))} µs",
        )
        row(
            f"4. concurrent runs, {store}: peak RSS MB (baseline)",
            f"{_f(r.get(sid, 'peak_rss_mb'), 0)} ({_f(r.get(sid, 'baseline_rss_mb'), 0)})",
            f"{_f(r.get(lsid, 'peak_rss_mb'), 0)} ({_f(r.get(lsid, 'baseline_rss_mb'), 0)})",
            _ratio(r.get(sid, "peak_rss_mb"), r.get(lsid, "peak_rss_mb")),
            "—",
            f"{_f(r.get(fc, 'peak_rss_mb'), 0)} MB" if store == "memory" else "—",
        )
    rs = f"overnight.resume.n{r.resume_n}"
    ms = r.get(rs, "signal_to_result_ms")
    row(
        f"5. resume a {r.resume_n:,}-entry journal in a new process (SQLite): signal → result ms",
        _f(ms),
        "—",
        "—",
        _bar(ms, 200, "≤ 200 ms", speed=sp),
        f"load_journal {_f(r.get(rs, 'load_journal_ms'))} ms + replay & rest "
        f"{_f(r.get(rs, 'rest_ms'))} ms",
    )
    oi, li = "overnight.import", "langgraph.import"
    row(
        "6. import time ms: -X importtime (wall)",
        f"{_f(r.get(oi, 'importtime_ms'))} ({_f(r.get(oi, 'wall_ms'))})",
        f"{_f(r.get(li, 'importtime_ms'))} ({_f(r.get(li, 'wall_ms'))}) `langgraph.graph`",
        _ratio(r.get(oi, "wall_ms"), r.get(li, "wall_ms")),
        "—",
        f"python startup {_f(r.get(oi, 'python_startup_ms'))} ms",
    )
    row(
        "6. idle RSS MB: open Engine, no runs (memory / SQLite)",
        f"{_f(r.get('overnight.idle.memory', 'idle_rss_mb'))} / "
        f"{_f(r.get('overnight.idle.sqlite', 'idle_rss_mb'))}",
        f"{_f(r.get('langgraph.idle', 'idle_rss_mb'))} (compiled 5-node graph)",
        _ratio(
            r.get("overnight.idle.memory", "idle_rss_mb"), r.get("langgraph.idle", "idle_rss_mb")
        ),
        "—",
        f"bare python {_f(r.get('overnight.idle.memory', 'python_rss_mb'))} MB",
    )
    crash = r.s.get("overnight.crash")
    if crash is not None and crash.get("available"):
        c = crash["counts"]
        row(
            f"7. kill -9 crash trials ({c['trials']} trials, {c['kills']} kills)",
            f"completed steps re-run {c['completed_steps_rerun']}; duplicate effects "
            f"{c['duplicate_effects']}; keyed re-invocations {c['keyed_reinvocations']} / "
            f"{c['kills']} kills; unsafe in doubt parked {c['parked_for_unsafe']} / "
            f"{c['unsafe_in_doubt']}; output mismatches {c['output_mismatches']}; "
            f"failed trials {c['failed_trials']}",
            "re-ran the completed node in 6/6 kills aimed after its side effect (peer measurement)",
            "—",
            "≥ 100 trials, zero re-runs, zero duplicate effects: "
            + ("met" if c["ok"] and c["trials"] >= 100 else "**missed**"),
            "—",
        )
    else:
        row("7. kill -9 crash trials", "not run", "—", "—", "≥ 100 trials, zero re-runs", "—")
    agent = r.s.get("overnight.agent_crash")
    if agent is not None and agent.get("available"):
        a = agent["counts"]
        k = a["kernel"]
        row(
            f"7b. kill -9 crash trials through an agent ({k['trials']} trials, {k['kills']} kills)",
            f"model requests re-sent {a['resent']} (in flight) / {k['kills']} kills; re-sent "
            f"although committed {a['resent_committed']}; replies committed twice "
            f"{a['replies_committed_twice']}; tool effects applied twice or missing "
            f"{k['duplicate_effects'] + k['missing_effects']} (deduped by key {k['dedup_hits']}); "
            f"failed trials {k['failed_trials']}",
            "—",
            "—",
            "no committed reply re-requested, each tool effect once: "
            + ("met" if a["ok"] and k["trials"] >= 100 else "**missed**"),
            "—",
        )
    postgres_rows(r, row, sp)
    agent_rows(r, row)
    return L


def postgres_rows(r: Results, row: Any, sp: float | None) -> None:
    """Scenario 8: worker processes on PostgreSQL, on the same machine as the server."""
    ids = [sid for sid in r.s if sid.startswith("postgres.")]
    if not ids:
        return
    skipped = [r.s[sid] for sid in ids if r.s[sid].get("available") is False]
    if skipped and len(skipped) == len(ids):
        reason = skipped[0].get("reason", "PostgreSQL unavailable")
        row("8. PostgreSQL (all scenarios)", f"skipped: {reason}", "—", "—", "—", "—")
        return
    sizes = r.data.get("sizes", {})
    runs, steps = sizes.get("pg_runs", 2000), sizes.get("pg_steps", 10)

    def skip_reason(sid: str) -> str | None:
        rec = r.s.get(sid)
        if rec is None:
            return "not run"
        if rec.get("available") is False:
            return f"skipped: {rec.get('reason')}"
        if "error" in rec:
            return f"failed: {rec['error']}"
        return None

    for workers in (1, 4):
        d, st = f"postgres.steps.w{workers}.default", f"postgres.steps.w{workers}.strict"
        dv, sv = r.get(d, "steps_per_s"), r.get(st, "steps_per_s")
        why = skip_reason(d)
        bar = _bar(dv, 1000, "≥ 1,000 (default)", higher_better=True, speed=sp)
        bar += "; strict: " + ("—" if sv is None else "met" if sv >= 1000 else "**missed**")
        row(
            f"8. PostgreSQL, {runs:,} runs × {steps} pure steps, {workers} worker "
            f"process{'es' if workers > 1 else ''}: durable steps/s, default (strict)",
            why or f"{_f(dv)} ({_f(sv)})",
            "—",
            "—",
            bar,
            f"CPU per step: workers {_f(r.get(d, 'worker_cpu_us_per_step'))} µs, server "
            f"{_f(r.get(d, 'server_cpu_us_per_step'))} µs; machine busy "
            f"{_f(r.get(d, 'machine_busy_cores'), 2)} cores",
        )
    sid = "postgres.takeover"
    lease = r.get(sid, "lease_s")
    worst = r.get(sid, "takeover_max_s")
    row(
        "8. PostgreSQL takeover after SIGKILL of the worker holding a run: kill → first step "
        "by the survivor, s median (max)",
        skip_reason(sid) or f"{_f(r.get(sid, 'takeover_s'), 2)} ({_f(worst, 2)})",
        "—",
        "—",
        "≤ lease + 1 s: not measured"
        if lease is None
        else _bar(worst, lease + 1.0, f"≤ lease {_f(lease)} s + 1 s (worst rep)", nd=2),
        f"lease {_f(lease)} s, heartbeat {_f(r.get(sid, 'heartbeat_s'), 2)} s, poll "
        f"{_f(r.get(sid, 'poll_s'))} s; {r.get(sid, 'reps')} kills",
    )
    sid = "postgres.notify"
    row(
        "8. PostgreSQL claim latency from NOTIFY (idle worker polling every 30 s): start → "
        "first step, ms median (p90, max)",
        skip_reason(sid)
        or f"{_f(r.get(sid, 'claim_latency_ms'))} ({_f(r.get(sid, 'claim_latency_p90_ms'))}, "
        f"{_f(r.get(sid, 'claim_latency_max_ms'))})",
        "—",
        "—",
        "—",
        f"poll interval {_f(r.get(sid, 'poll_s'))} s",
    )
    sid = "postgres.suspended"
    by_level = dict(sorted((r.get(sid, "rss_mb_by_level") or {}).items(), key=lambda x: int(x[0])))
    flat = r.get(sid, "flat")
    levels = " / ".join(f"{int(k):,}" for k in by_level) or "0 / 10,000 / 100,000"
    row(
        f"8. PostgreSQL worker RSS with {levels} runs suspended on signals: MB",
        skip_reason(sid) or " / ".join(_f(v) for v in by_level.values()),
        "—",
        "—",
        "flat: " + ("not measured" if flat is None else "met" if flat else "**missed**"),
        f"{_f(r.get(sid, 'growth_kb_per_1000_runs'))} KB per 1,000 more waiting runs "
        f"(from {_f(r.get(sid, 'flat_from'))})",
    )
    sid = "postgres.faults"
    rec = r.s.get(sid)
    why = skip_reason(sid)
    if rec is not None and why is None:
        c = rec["counts"]
        row(
            f"8. PostgreSQL SIGKILL campaign ({c['runs']:,} runs, {c['workers']} workers, "
            f"{c['kills']} kills and restarts)",
            f"completed {c['completed']:,}/{c['runs']:,} (wrong outputs {c['wrong_outputs']}); "
            f"committed steps re-invoked {c['committed_reinvoked']}; re-invocations "
            f"{c['reinvocations']} (keyed {c['keyed_reinvocations']}, at most "
            f"{c['max_keyed_reinvocations']} per key, same key; unexplained "
            f"{c['unexplained_reinvocations']}); effects applied {c['effects_applied']:,}, "
            f"duplicates {c['duplicate_effects']}, deduped re-applies {c['dedup_hits']}",
            "—",
            "—",
            "every run completes, zero committed steps re-run, zero duplicate effects: "
            + ("met" if c["ok"] else "**missed**"),
            f"lease {_f(c.get('lease_seconds'))} s; {_f(c.get('seconds'))} s",
        )
    else:
        row("8. PostgreSQL SIGKILL campaign", why or "not run", "—", "—", "—", "—")


def render(data: dict[str, Any]) -> str:
    r = Results(data)
    m = data.get("machine", {})
    L = [
        "## overnight vs LangGraph (medians; `python -m benchmarks.run`"
        + (" --quick" if data.get("quick") else "")
        + ")",
        "",
    ]
    L += headline(r)
    L.append("")
    if data.get("langgraph_skipped"):
        L += [f"Note: {data['langgraph_skipped']}", ""]
    if data.get("postgres_skipped"):
        L += [f"Note: PostgreSQL scenarios skipped: {data['postgres_skipped']}", ""]
    sp = r.speed()
    lg_chain = r.get(f"langgraph.chain.memory.n{r.n}", "us_per_step")
    L.append(
        f"Machine: {m.get('cpus')} vCPU {m.get('cpu')}, {m.get('mem_gb')} GB, {m.get('os')}, "
        f"Python {m.get('python')}, SQLite {m.get('sqlite')}."
    )
    L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in data.get("versions", {}).items() if v))
    factors = r.speed_factors()
    if factors:
        parts = []
        if "floor" in factors:
            task = r.get("floor.chain", "create_task_and_await_us")
            parts.append(
                f"`create_task`+await floor {_f(task, 2)} µs against "
                f"{REFERENCE['create_task_us']} µs (×{factors['floor']:.2f})"
            )
        if "langgraph" in factors:
            parts.append(
                f"LangGraph's chain {_f(lg_chain)} µs/step against "
                f"{REFERENCE['langgraph_chain_us']:.0f} (×{factors['langgraph']:.2f})"
            )
        L.append(
            "Speed against the day the bars were set: " + "; ".join(parts) + f". Time bars are "
            f"also judged at the reference speed, dividing by the smaller factor (×{sp:.2f})."
        )
    busy = [(sid, rec.get("busy_cores_by_others_before")) for sid, rec in r.s.items()]
    readings = [b for _, b in busy if isinstance(b, int | float) and b >= 0]
    if readings:
        worst = max(busy, key=lambda x: x[1] if isinstance(x[1], int | float) else -1)
        L.append(
            f"Load: other processes used {min(readings):.2f}–{max(readings):.2f} cores before the "
            f"scenarios (most before {worst[0]})."
        )
    L += ["", "### Details", "", "| id | figures |", "|---|---|"]
    keys = (
        "us_per_step",
        "cpu_us_per_step",
        *DETAIL_KEYS,
        "wall_s",
        "cpu_s",
        "runs_per_s",
        "runs_per_cpu_s",
        "run_latency_p50_ms",
        "run_latency_p99_ms",
        "all_started_s",
        "overhead_us_per_branch",
        "cpu_us_per_branch",
        "baseline_rss_mb",
        "peak_rss_mb",
        "commits_per_run",
        "db_bytes",
        "db_bytes_with_wal_before_close",
        "store_bytes_per_step",
        "rows",
        "fsync_probe_us",
        "signal_to_result_ms",
        "load_journal_ms",
        "load_journal_warm_ms",
        "read_journal_sql_ms",
        "rest_ms",
        "engine_open_s",
        "importtime_ms",
        "wall_ms",
        "python_rss_mb",
        "idle_rss_mb",
        "compile_s",
        "await_coroutine_us",
        "sleep0_loop_turn_us",
        "create_task_and_await_us",
        "process_reps",
        "busy_cores_by_others_before",
        "steps_per_s",
        "worker_cpu_us_per_step",
        "server_cpu_us_per_step",
        "machine_busy_cores",
        "takeover_s",
        "takeover_max_s",
        "lease_s",
        "claim_latency_ms",
        "claim_latency_p90_ms",
        "claim_latency_max_ms",
        "rss_mb_by_level",
        "flat",
        "error",
        "reason",
    )
    for sid, rec in r.s.items():
        figs = "; ".join(
            f"{k} {_f(rec[k], 2) if isinstance(rec[k], float) else rec[k]}"
            for k in keys
            if k in rec
        )
        L.append(f"| {sid} | {figs} |")
    L.append("")
    return "\n".join(L)
