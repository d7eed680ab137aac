"""The demo workflow: a content pipeline of four agents' work, written as a flow.

A planner outlines an article; writers draft its sections in parallel (each looks up a fact with
a tool first); the article is assembled; a reviewer scores it with a typed verdict; if approved
it is published (a file under .overnight/demo/, written once per run even across crashes).

The agents use OVERNIGHT_DEMO_MODEL (e.g. openai:gpt-4o-mini, anthropic:claude-haiku-4-5, or an
OpenAI-compatible local server via OPENAI_BASE_URL) and, without it, the offline stand-in.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Annotated

import pydantic

from ..agent import Agent
from ..flow import Flow
from ..models.base import Model
from ..step import current_step, step
from ..tool import tool
from .standin import standin_model


class SectionPlan(pydantic.BaseModel):
    heading: str
    focus: str


class Outline(pydantic.BaseModel):
    title: str
    sections: Annotated[list[SectionPlan], pydantic.Field(min_length=2, max_length=6)]


class Review(pydantic.BaseModel):
    approved: bool
    score: Annotated[int, pydantic.Field(ge=1, le=10)]
    summary: str
    suggestions: list[str]


FACTS = {
    "the cost of repeating work": "A payment sent twice is refunded by hand; a model call sent "
    "twice is paid twice.",
    "the journal": "Every model reply and tool result is committed before the next step uses it.",
    "side effects": "An effect whose outcome is unknown after a crash is parked for a person, "
    "never guessed.",
    "the first workflow": "A workflow is plain async Python; a flow is the same as a graph.",
}


@tool(effect="pure")
def lookup_fact(subject: str) -> str:
    """Look up one verified fact about a subject, from the team's fact sheet."""
    return FACTS.get(subject.lower(), f"No fact on file about {subject}; say so plainly.")


def _model() -> Model | str:
    return os.environ.get("OVERNIGHT_DEMO_MODEL") or standin_model()


MODEL = _model()
planner = Agent(
    "planner",
    model=MODEL,
    instructions="You plan articles. Given a topic and an audience, return a title and 3 to 6 "
    "sections, each with a heading and the one thing it focuses on.",
    output_type=Outline,
    max_tokens=800,
    capabilities=["planning"],
)
writer: Agent[str] = Agent(
    "writer",
    model=MODEL,
    instructions="You write one section of an article in markdown, starting with '## ' and its "
    "heading. First look up one fact about the section's focus with lookup_fact, and use it.",
    tools=[lookup_fact],
    max_tokens=800,
    capabilities=["writing"],
)
reviewer = Agent(
    "reviewer",
    model=MODEL,
    instructions="You review article drafts: approve when every section is on topic and "
    "accurate, score 1-10, summarise in one sentence, and suggest improvements.",
    output_type=Review,
    max_tokens=600,
    capabilities=["review"],
)


@step(effect="pure")
async def assemble(title: str, sections: list[str]) -> str:
    return f"# {title}\n\n" + "\n\n".join(s.strip() for s in sections) + "\n"


@step(effect="keyed")
async def publish(article: str, title: str) -> str:
    """Write the article to .overnight/demo/; the file name comes from the step's idempotency
    key, so a retried publish overwrites its own file instead of adding another."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]
    key = hashlib.sha256(current_step().idempotency_key.encode()).hexdigest()[:8]
    path = Path(".overnight") / "demo" / f"{slug}-{key}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(article, encoding="utf-8")
    temporary.replace(path)
    return path.as_posix()


flow = Flow("content_pipeline")
plan = flow.agent(planner, name="plan", prompt="Topic: ${input.topic}\nAudience: ${input.audience}")
drafts = flow.agent(
    writer,
    name="write",
    prompt="Article: ${plan.title}\nHeading: ${item.heading}\nFocus: ${item.focus}",
    for_each=plan["sections"],
    concurrency=3,
)
article = flow.step(assemble, title=plan["title"], sections=drafts)
review = flow.agent(reviewer, name="review", prompt="Review this draft:\n\n${assemble}")
published = flow.step(
    publish, article=article, title=plan["title"], when=review["approved"].is_true()
)
flow.output({"title": plan["title"], "review": review, "published": published})
content_pipeline = flow.build()
