"""The LangGraph side of the agent scenarios: its prebuilt ReAct agent, same script and sizes.

  python -m benchmarks.langgraph_agents conversation --saver sqlite --turns 200 --reps 3
  python -m benchmarks.langgraph_agents conversation --saver memory --turns 200 --reps 7
  python -m benchmarks.langgraph_agents many --saver memory --runs 1000 --turns 3 --latency-ms 50

The agent is `langgraph.prebuilt.create_react_agent` (default `version="v2"`), as in the peer
measurements (`/work/shared/peers/bench_langgraph_agent.py`). LangGraph 1.x marks it deprecated
in favour of `langchain.agents.create_agent`, which lives in the separate `langchain` package;
the prebuilt agent still ships with the pinned langgraph 1.2.24 (langgraph-prebuilt 1.1.x) and
builds the same model -> tools -> model loop. The model is `ScriptedToolModel`, a
`BaseChatModel` whose `bind_tools` binds OpenAI-format schemas like a real integration, with the
script of overnight's `workloads.ToolLoopModel`: one `add` call per turn until `turns - 1` tool
results are in the history, then an answer, after `asyncio.sleep(latency)`. The tool is an async
`StructuredTool`, as overnight's is async.

`conversation` runs `ainvoke` with an `InMemorySaver` (time) or an `AsyncSqliteSaver` on a fresh
file (time and store growth, measured and probed exactly like overnight's side in
`benchmarks/agents.py`), both with `durability="sync"` (each step's checkpoint saved before the
next step starts). `many` runs `--runs` `ainvoke`s at once on one compiled agent and one saver
(`InMemorySaver` or one `AsyncSqliteSaver`) with `durability="async"`, LangGraph's default and
its faster mode, as in the chain scenarios' concurrency figure. Needs the `bench` extra. Each
prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import uuid
import warnings
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from .agents import growth_profile, probe_points
from .common import (
    batch_figures,
    checkpointed_bytes,
    cpu,
    current_rss_mb,
    emit,
    fsync_probe,
    median,
    now,
    peak_rss_mb,
    pkg_version,
    turn_profile,
    workdir,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # deprecated since LangGraph 1.0 (see the docstring)
    from langgraph.prebuilt import create_react_agent

PROMPT = "add things up"  # workloads.AGENT_PROMPT


def versions() -> dict[str, Any]:
    names = ("langgraph", "langgraph-prebuilt", "langgraph-checkpoint")
    names += ("langgraph-checkpoint-sqlite", "langchain-core", "aiosqlite")
    return {"framework": "langgraph", **{n: pkg_version(n) for n in names}}


class ScriptedToolModel(BaseChatModel):
    """Calls `add` once per turn until `turns - 1` tool results are in the history, then answers
    (stateless: the turn is counted from the history's length, O(1) per call)."""

    turns: int = 200
    latency_s: float = 0.0
    call_times: list[float] = Field(default_factory=list)
    on_call: Callable[[int], None] | None = None

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _reply(self, messages: list[BaseMessage]) -> ChatResult:
        k = (len(messages) - 1) // 2  # [human, (ai, tool) * k]
        if k < self.turns - 1:
            call = {"name": "add", "args": {"a": k, "b": 1}, "id": f"call_{k}"}
            msg = AIMessage(content="", tool_calls=[call])
        else:
            msg = AIMessage(content=f"done after {k} tool calls")
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        raise NotImplementedError("the scenarios use ainvoke")

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.call_times.append(now())
        if self.on_call is not None:
            self.on_call(len(self.call_times))
        await asyncio.sleep(self.latency_s)
        return self._reply(messages)


async def _aadd(a: int, b: int) -> int:
    return a + b


ADD = StructuredTool.from_function(coroutine=_aadd, name="add", description="Add two integers.")


def build_agent(turns: int, latency_s: float, checkpointer: Any) -> tuple[Any, ScriptedToolModel]:
    model = ScriptedToolModel(turns=turns, latency_s=latency_s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(model, [ADD], checkpointer=checkpointer), model


def _config(turns: int) -> Any:
    return {"recursion_limit": 2 * turns + 10, "configurable": {"thread_id": str(uuid.uuid4())}}


def _check(result: dict[str, Any], turns: int) -> None:
    messages = result["messages"]
    assert len(messages) == 2 * turns, (len(messages), turns)
    assert messages[-1].content == f"done after {turns - 1} tool calls", messages[-1]


def _payload(path: str) -> int:
    """Bytes of checkpoint, metadata and write blobs (what the saver holds, without pages)."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0)"
            " FROM checkpoints) + (SELECT coalesce(sum(length(value)), 0) FROM writes)"
        ).fetchone()
    finally:
        conn.close()
    return int(row[0])


async def _saver(stack: AsyncExitStack, kind: str, path: str) -> Any:
    if kind == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        return InMemorySaver()
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    saver = await stack.enter_async_context(AsyncSqliteSaver.from_conn_string(path))
    await saver.setup()
    return saver


async def _one(kind: str, path: str, turns: int, probe: bool) -> dict[str, Any]:
    """One conversation on a fresh saver: timed, or (probe) with the file read along the way."""

    def size() -> tuple[int, int]:
        return checkpointed_bytes(path), _payload(path)

    sizes: dict[int, tuple[int, int]] = {}
    points = probe_points(turns)[1:]
    async with AsyncExitStack() as stack:
        saver = await _saver(stack, kind, path)
        t = now()
        agent, model = build_agent(turns, 0.0, saver)
        compile_s = now() - t
        if probe:
            model.on_call = lambda k: sizes.__setitem__(k, size()) if k in points else None
        empty = size() if kind == "sqlite" else (0, 0)
        t, c = now(), cpu()
        result = await agent.ainvoke(
            {"messages": [HumanMessage(PROMPT)]}, _config(turns), durability="sync"
        )
        t_end = now()
        wall, dc = t_end - t, cpu() - c
    _check(result, turns)
    out: dict[str, Any] = {
        "wall": wall,
        "cpu": dc,
        "compile_s": compile_s,
        **turn_profile(model.call_times, t_end),
    }
    if kind == "sqlite":  # the connection is closed: the WAL is folded into the file
        final = size()
        out["growth"], out["payload"] = final[0] - empty[0], final[1] - empty[1]
        conn = sqlite3.connect(path)
        out["rows"] = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("checkpoints", "writes")
        }
        conn.close()
        if probe:
            out.update(growth_profile(sizes, final, turns))
    return out


async def conversation(kind: str, turns: int, reps: int) -> dict[str, Any]:
    probes = [fsync_probe()] if kind == "sqlite" else []
    runs = []
    with tempfile.TemporaryDirectory(dir=workdir()) as d:
        await _one(kind, os.path.join(d, "warmup.sqlite"), 3, False)
        for rep in range(reps):
            runs.append(await _one(kind, os.path.join(d, f"talk{rep}.sqlite"), turns, False))
        if kind == "sqlite":
            probed = await _one(kind, os.path.join(d, "probed.sqlite"), turns, True)
    wall = median([r["wall"] for r in runs])
    out: dict[str, Any] = {
        **versions(),
        "scenario": "agent_conversation",
        "saver": kind,
        "durability": "sync",
        "turns": turns,
        "reps": reps,
        "compile_s": median([r["compile_s"] for r in runs]),
        "wall_s": wall,
        "wall_all_s": [r["wall"] for r in runs],
        "us_per_turn": wall / turns * 1e6,
        "cpu_us_per_turn": median([r["cpu"] for r in runs]) / turns * 1e6,
        "us_per_turn_first_quarter": median([r["us_per_turn_first_quarter"] for r in runs]),
        "us_per_turn_last_quarter": median([r["us_per_turn_last_quarter"] for r in runs]),
        "peak_rss_mb": peak_rss_mb(),
    }
    if kind == "sqlite":
        probes.append(fsync_probe())
        out.update(
            {
                "store_bytes_per_turn": median([r["growth"] for r in runs]) / turns,
                "payload_bytes_per_turn": median([r["payload"] for r in runs]) / turns,
                "db_bytes": int(median([r["growth"] for r in runs])),
                "rows": runs[-1]["rows"],
                **{k: probed[k] for k in probed if k.endswith(("_first", "_last", "_turns"))},
                "fsync_probe_us_per_commit": probes,
                "fsync_probe_us": sum(probes) / len(probes),
            }
        )
    return out


async def many(kind: str, runs: int, turns: int, latency_s: float) -> dict[str, Any]:
    """`runs` concurrent `ainvoke`s of a `turns`-turn conversation, one agent and one saver."""
    durability = "async"
    probe = fsync_probe() if kind == "sqlite" else None
    async with AsyncExitStack() as stack:
        d = stack.enter_context(tempfile.TemporaryDirectory(dir=workdir()))
        saver = await _saver(stack, kind, os.path.join(d, "agents.sqlite"))
        agent, model = build_agent(turns, latency_s, saver)

        async def one() -> float:
            r = await agent.ainvoke(
                {"messages": [HumanMessage(PROMPT)]}, _config(turns), durability=durability
            )
            _check(r, turns)
            return now() - t

        t = now()
        await one()  # warm-up
        base = current_rss_mb()
        model.call_times.clear()
        t, c = now(), cpu()
        latencies = sorted(await asyncio.gather(*(one() for _ in range(runs))))
        wall, dc = now() - t, cpu() - c
        calls = len(model.call_times)
    return {
        **versions(),
        "scenario": "agents_many",
        "saver": kind,
        "durability": durability,
        "fsync_probe_us": probe,
        "runs": runs,
        "turns": turns,
        "model_calls": calls,
        "latency_ms": latency_s * 1e3,
        "ideal_wall_s": turns * latency_s,
        **batch_figures(
            runs=runs, units=turns, unit="turn", wall=wall, cpu_s=dc, latencies=latencies, base=base
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["conversation", "many"])
    ap.add_argument("--saver", choices=["memory", "sqlite"], default="memory")
    ap.add_argument("--turns", type=int, default=None, help="model calls per conversation")
    ap.add_argument("--reps", type=int, default=None, help="conversation: timed repetitions")
    ap.add_argument("--runs", type=int, default=1000, help="many: agents at once")
    ap.add_argument("--latency-ms", type=float, default=50.0, help="many: per model call")
    a = ap.parse_args()
    if a.scenario == "conversation":
        reps = a.reps or (7 if a.saver == "memory" else 3)
        emit(asyncio.run(conversation(a.saver, a.turns or 200, reps)))
    else:
        emit(asyncio.run(many(a.saver, a.runs, a.turns or 3, a.latency_ms / 1e3)))


if __name__ == "__main__":
    main()
