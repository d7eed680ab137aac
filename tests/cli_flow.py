"""Workflows the CLI tests run through the `overnight` command, as a user's file would be.

The tests copy this file into a temporary working directory and run `overnight run
cli_flow.py:NAME` there. Every step appends a line to a counter file in `$CLI_FLOW_DIR` (outside
the process, so counts survive SIGKILL); `gate` blocks until the file `release` appears there.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from overnight import Agent, Context, RetryPolicy, step, workflow
from overnight.models import ModelRequest
from overnight.testing.models import FunctionModel, ScriptedModel


def _dir() -> Path:
    return Path(os.environ.get("CLI_FLOW_DIR", "."))


def _count(name: str) -> None:
    with open(_dir() / f"{name}.count", "a") as f:
        f.write("1\n")


@step(effect="keyed")
async def prepare(topic: str) -> str:
    _count("prepare")
    return topic.upper()


@step(effect="keyed")
async def gate(text: str) -> str:
    _count("gate")
    for _ in range(3000):
        if (_dir() / "release").exists():
            return text + "!"
        await asyncio.sleep(0.01)
    raise TimeoutError("nobody created the release file")


@step(effect="keyed")
async def publish(text: str) -> int:
    _count("publish")
    return len(text)


@workflow
async def pipeline(ctx: Context, topic: str) -> dict[str, object]:
    """prepare -> gate (blocks until released) -> publish."""
    text = await gate(await prepare(topic))
    return {"text": text, "size": await publish(text)}


@workflow
async def approval(ctx: Context, topic: str) -> dict[str, object]:
    """prepare, then wait for the signal `approve`, then publish."""
    text = await prepare(topic)
    verdict = await ctx.wait_signal("approve")
    return {"text": text, "verdict": verdict, "size": await publish(text)}


@workflow
async def napper(ctx: Context, seconds: float) -> str:
    """A durable sleep long enough to release the worker, then a step."""
    await ctx.sleep(seconds)
    return await prepare("awake")


@step(effect="unsafe")
async def charge(cents: int) -> str:
    _count("charge")
    return f"charged {cents}"


@workflow
async def billing(ctx: Context, cents: int) -> str:
    """One unsafe step: interrupted inside it, the run parks for a person."""
    return await charge(cents)


@step(effect="pure", retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
async def explode(reason: str) -> str:
    _count("explode")
    raise ValueError(reason)


@workflow
async def doomed(ctx: Context, reason: str) -> str:
    """Fails: its only step always raises."""
    return await explode(reason)


poet = Agent(
    "poet",
    model=ScriptedModel(["Journal first, then act: / nothing done twice."], name="openai:gpt-4o"),
    instructions="Write one short line of verse.",
)


@workflow
async def verse(ctx: Context, topic: str) -> str:
    """One model call through an agent (scripted: no network), for tokens, cost and prompts."""
    return (await poet.run(f"Topic: {topic}")).output


def _summary(request: ModelRequest) -> str:
    _count("model")
    return "summary of " + request.messages[-1].content


counted_model = FunctionModel(_summary)
"""A stand-in model that counts its requests in `model.count` (for cli_flow.yaml)."""
