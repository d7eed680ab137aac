"""The demo's offline stand-in model: plausible, deterministic answers, no network.

It plays each agent of the demo by reading the agent's instructions, with a short delay per call
(OVERNIGHT_DEMO_DELAY seconds, default 0.5) so the progress is watchable and an interrupted run
has something left to resume. Everything it says is derived from the request, so a resumed run
gets the same answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

from ..models.base import ModelRequest, ToolCall
from ..testing.models import FunctionModel, Reply

ANGLES = (
    ("Why it matters", "the cost of repeating work"),
    ("How it works", "the journal"),
    ("What can go wrong", "side effects"),
    ("Getting started", "the first workflow"),
)


async def _answer(request: ModelRequest) -> Reply:
    await asyncio.sleep(float(os.environ.get("OVERNIGHT_DEMO_DELAY", "0.5")))
    role = request.messages[0].content
    prompt = next(m.content for m in request.messages if m.role == "user")
    if role.startswith("You plan"):
        return _outline(prompt)
    if role.startswith("You write"):
        return _section(request, prompt)
    return _review(prompt)


def _outline(prompt: str) -> dict[str, Any]:
    topic = _field(prompt, "Topic") or "durable agents"
    return {
        "title": f"{topic.capitalize()}: a field guide",
        "sections": [{"heading": h, "focus": f} for h, f in ANGLES],
    }


def _section(request: ModelRequest, prompt: str) -> Reply:
    facts = [m.content for m in request.messages if m.role == "tool"]
    focus = _field(prompt, "Focus") or "the topic"
    if not facts:
        return ToolCall("fact-1", "lookup_fact", json.dumps({"subject": focus}))
    heading = _field(prompt, "Heading") or "Section"
    return (
        f"## {heading}\n\n{facts[0]} This section looks at {focus} and what it means for teams "
        f"that run agents unattended: every answer recorded once, every effect applied once."
    )


def _review(prompt: str) -> dict[str, Any]:
    sections = prompt.count("## ")
    words = len(prompt.split())
    return {
        "approved": sections >= 3,
        "score": min(10, 5 + sections),
        "summary": f"{sections} sections, about {words} words; clear and on topic.",
        "suggestions": ["Add a worked example to 'Getting started'."] if sections else [],
    }


def _field(prompt: str, name: str) -> str | None:
    match = re.search(rf"{name}: (.+)", prompt)
    return match.group(1).strip() if match else None


def standin_model() -> FunctionModel:
    return FunctionModel(_answer, name="overnight-demo:stand-in")
