"""Running the demo: pick up an interrupted demo run or start a new one, show progress, sum up.

Rerunning the demo after Ctrl-C (or a kill) resumes the newest unfinished demo run instead of
starting over: its journal already holds every answer and tool result recorded before the
interruption, so only the rest is asked for.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from ..engine import Engine
from ..errors import RunParkedError
from ..models.base import Usage
from ..models.pricing import Cost, cost
from ..store.base import Entry
from ..transcript import model_calls

UNFINISHED = ("queued", "running", "waiting")
BRIEF = {"topic": "durable agents", "audience": "platform engineers"}
REAL_MODEL_LINE = (
    "  OPENAI_API_KEY=sk-... overnight demo --model openai:gpt-4o-mini\n"
    "A local OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio):\n"
    "  OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_API_KEY=unused "
    "overnight demo --model openai:llama3.2\n"
    "Anthropic:\n"
    "  ANTHROPIC_API_KEY=sk-ant-... overnight demo --model anthropic:claude-haiku-4-5"
)


async def run_demo(store: str, say: Callable[[str], None], *, model: str | None = None) -> int:
    """Run (or resume) the demo on `store`, printing through `say`; the exit code."""
    if model:
        os.environ["OVERNIGHT_DEMO_MODEL"] = model
    from .pipeline import MODEL, content_pipeline

    standin = not isinstance(MODEL, str)
    started = time.monotonic()
    async with Engine(store, lease_seconds=6) as engine:
        run_id, resumed = await _pick_run(engine, content_pipeline.ref)
        say(_banner(standin, MODEL, run_id, resumed, store))
        await engine.start(content_pipeline, BRIEF, run_id=run_id)
        seen = _Seen()
        if resumed:
            seen.count = len(await engine.journal(run_id))
            done = sum(1 for e in await engine.journal(run_id) if _describe(e))
            say(f"  … {done} results recorded before the interruption: not asked for again")
        earlier = seen.count
        watcher = asyncio.create_task(_watch(engine, run_id, say, seen))
        try:
            output = await engine.result(run_id)
        except RunParkedError as exc:
            say(f"\nThe run is parked: {exc}\nResolve it with `overnight show {run_id}`.")
            return 4
        finally:
            watcher.cancel()
        await _print_new(engine, run_id, say, seen)  # anything the watcher had not shown
        elapsed = time.monotonic() - started
        say(await _summary(engine, run_id, output, elapsed, standin, earlier))
    return 0


async def _pick_run(engine: Engine, ref: str) -> tuple[str, bool]:
    runs = [r for r in await engine.list_runs(limit=1000) if r.workflow == ref]
    if runs and runs[0].status in UNFINISHED:
        return runs[0].id, True
    return f"demo-{len(runs) + 1}", False


def _banner(standin: bool, model: Any, run_id: str, resumed: bool, store: str) -> str:
    which = (
        "an offline stand-in model (no network, no key; its answers are canned)"
        if standin
        else f"the model {model}"
    )
    action = f"Resuming {run_id}, interrupted earlier" if resumed else f"Starting {run_id}"
    return (
        "overnight demo: a content pipeline. A planner outlines an article, writers draft its\n"
        "sections in parallel (each looks a fact up with a tool), a reviewer returns a typed\n"
        "verdict, and an approved article is published.\n"
        f"The agents run on {which}.\n"
        f"{action} (store {store}).\n"
        "Press Ctrl-C at any time; run the demo again and it resumes.\n"
    )


class _Seen:
    def __init__(self) -> None:
        self.count = 0


async def _watch(engine: Engine, run_id: str, say: Callable[[str], None], seen: _Seen) -> None:
    while True:
        await _print_new(engine, run_id, say, seen)
        await asyncio.sleep(0.2)


async def _print_new(engine: Engine, run_id: str, say: Callable[[str], None], seen: _Seen) -> None:
    entries = await engine.journal(run_id)
    for entry in entries[seen.count :]:
        line = _describe(entry)
        if line:
            say(line)
    seen.count = len(entries)


def _describe(entry: Entry) -> str | None:
    """A line for a finished model call, tool call or step, e.g. `write[2]  writer: tool`."""
    if entry.kind != "done" or not entry.key.startswith("flow#1/"):
        return None
    parts = entry.key.split("/")
    node = parts[1]
    item = next((parts[i + 1] for i, p in enumerate(parts) if p.startswith("map#")), None)
    where = f"{node}[{item}]" if item is not None else node
    last = parts[-1].split("#")[0]
    agent = next((p.split("#")[0][6:] for p in parts if p.startswith("agent:")), None)
    if last == "model":
        what = f"{agent} answered"
    elif last.startswith("tool:"):
        what = f"{agent} called the tool {last[5:]}"
    else:
        what = f"step {last} done"
    return f"  ✓ {where:<10} {what}"


async def _summary(
    engine: Engine, run_id: str, output: Any, seconds: float, standin: bool, earlier: int
) -> str:
    entries = await engine.journal(run_id)
    asked_now = sum(
        1
        for e in entries[earlier:]
        if e.kind == "done" and e.key.rsplit("/", 1)[-1].startswith("model#")
    )
    steps = sum(1 for e in entries if e.kind == "done")
    calls = await model_calls(engine, run_id)
    usage = Usage()
    spent = Cost(None)
    for call in calls:
        if call.response is not None:
            usage = usage + call.response.usage
            spent = spent + cost(call.response.usage, call.model)
    money = (
        "n/a (the stand-in model has no price)"
        if standin
        else (f"${spent.amount:.4f}" if spent.amount is not None else "unpriced")
    )
    review = output["review"]
    published = output["published"] or "not published (the reviewer did not approve)"
    return (
        f"\n{output['title']}\n"
        f"  review: {'approved' if review.approved else 'not approved'}, score {review.score}/10:"
        f" {review.summary}\n"
        f"  published: {published}\n"
        f"\nSummary of {run_id}: {steps} durable steps, {len(calls)} model calls "
        f"({asked_now} made by this process), "
        f"{usage.input_tokens + usage.output_tokens} tokens "
        f"({usage.input_tokens} in, {usage.output_tokens} out),\n"
        f"  cost {money}, {seconds:.1f} s.\n"
        f"Inspect it: overnight show {run_id} --prompts\n"
        f"\nThe same demo with a real model is one line:\n{REAL_MODEL_LINE}\n"
    )
