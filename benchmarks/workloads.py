"""The overnight workflows and steps the scenarios run.

They live in an importable module (not in `__main__`) so their references are stable: the
resume scenario builds a run in one process and finishes it in another, which must import
`benchmarks.workloads:long_then_wait` to replay it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from overnight import Agent, Context, step, tool, workflow
from overnight.models import Message, ModelRequest, ModelResponse, ToolCall, Usage


@step(effect="pure")
async def inc(x: int) -> int:
    """The trivial step of the chains: no I/O, so its cost is the engine's own."""
    return x + 1


@workflow
async def chain(ctx: Context, n: int) -> int:
    """Scenarios 1-2: n trivial steps awaited one after another."""
    x = 0
    for _ in range(n):
        x = await inc(x)
    return x


@step(effect="pure")
async def branch_step(i: int) -> int:
    """Scenario 3: one branch, standing in for a 50 ms model call."""
    await asyncio.sleep(0.05)
    return i


@workflow
async def fanout(ctx: Context, k: int) -> int:
    """Scenario 3: k branches at once (no concurrency limit), then the join."""
    results = await ctx.map(branch_step, range(k))
    return len(results)


@step(effect="pure")
async def slow_inc(x: int) -> int:
    """Scenario 4: a step standing in for a 20 ms model call."""
    await asyncio.sleep(0.02)
    return x + 1


@workflow
async def five_steps(ctx: Context, steps: int) -> int:
    """Scenario 4: a short chain of 20 ms steps (one of 1,000 concurrent runs)."""
    x = 0
    for _ in range(steps):
        x = await slow_inc(x)
    return x


@workflow
async def long_then_wait(ctx: Context, n: int) -> int:
    """Scenario 5: a 10,000-entry journal, then a wait; the signal makes it replay everything."""
    x = 0
    for _ in range(n):
        x = await inc(x)
    await ctx.wait_signal("go")
    return x


@step(effect="pure")
async def stamp(i: int) -> list[Any]:
    """PostgreSQL takeover: a 20 ms step that says which process ran it, and when."""
    await asyncio.sleep(0.02)
    return [os.getpid(), time.time()]


@workflow
async def stamped_chain(ctx: Context, n: int) -> int:
    """PostgreSQL takeover: a long chain of `stamp` steps (the run a killed worker held)."""
    for i in range(n):
        await stamp(i)
    return n


@step(effect="pure")
async def clock() -> float:
    """PostgreSQL claim latency: when the step ran."""
    return time.time()


@workflow
async def first_step_time(ctx: Context) -> float:
    """PostgreSQL claim latency: returns when its first step ran."""
    return await clock()


@workflow
async def waits_for_go(ctx: Context) -> Any:
    """PostgreSQL memory: a run suspended on a signal (it lives only in the store)."""
    return await ctx.wait_signal("go")


# -- agent scenarios (benchmarks/agents.py) ----------------------------------------------------

AGENT_PROMPT = "add things up"


@tool(effect="pure")
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class ToolLoopModel:
    """Calls `add` once per turn until `turns - 1` tool results are in the history, then answers.

    The same script as the LangGraph side's fake chat model: the turn is counted from the
    history's length (user, then an assistant reply and a tool result per turn), so one model
    serves any number of concurrent agents, and each call costs O(1), not O(history). It awaits
    `asyncio.sleep(latency_s)` (a zero latency still yields once, like real I/O), notes when it
    was called, and calls `on_call(number of calls so far)` if set (the store probes).
    """

    def __init__(self, turns: int, latency_s: float) -> None:
        self.turns = turns
        self.latency_s = latency_s
        self.call_times: list[float] = []
        self.on_call: Callable[[int], None] | None = None

    @property
    def name(self) -> str:
        return "test:tool-loop"

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.call_times.append(time.perf_counter())
        if self.on_call is not None:
            self.on_call(len(self.call_times))
        await asyncio.sleep(self.latency_s)
        k = (len(request.messages) - 1) // 2
        if k < self.turns - 1:
            call = ToolCall(f"call_{k}", "add", f'{{"a": {k}, "b": 1}}')
            message = Message("assistant", "", tool_calls=(call,))
            return ModelResponse(message, Usage(10, 5), model=self.name, finish_reason="tool_calls")
        message = Message("assistant", f"done after {k} tool calls")
        return ModelResponse(message, Usage(10, 5), model=self.name, finish_reason="stop")


_AGENTS: dict[tuple[int, float], Agent[str]] = {}


def tool_agent(turns: int, latency_s: float) -> Agent[str]:
    """The agent of `turns` model calls (one per process and size, like a user's module-level
    agent); its model is `tool_agent(...).model`."""
    key = (turns, latency_s)
    if key not in _AGENTS:
        model = ToolLoopModel(turns, latency_s)
        _AGENTS[key] = Agent("bench", model=model, tools=[add], max_turns=turns + 1)
    return _AGENTS[key]


@workflow
async def conversation(ctx: Context, spec: dict[str, Any]) -> str:
    """Agent scenarios: one agent's conversation of `turns` model calls, 1 user message in."""
    result = await tool_agent(spec["turns"], spec["latency_s"]).run(AGENT_PROMPT)
    return result.output
