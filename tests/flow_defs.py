"""Flows the flow tests run, defined at module level so workers can import them by reference."""

from __future__ import annotations

from typing import Any

import pydantic

from overnight import Agent, Context, RetryPolicy, step, workflow
from overnight.flow import Flow
from overnight.models import ModelRequest
from overnight.testing.models import FunctionModel

CALLS: list[str] = []


class Plan(pydantic.BaseModel):
    title: str
    sections: list[str]


class Review(pydantic.BaseModel):
    approved: bool
    notes: str


def answer(request: ModelRequest) -> Any:
    """A stand-in model: a plan, a section, or a review, depending on who asks."""
    system = request.messages[0].content
    prompt = request.messages[-1].content
    if system.startswith("Plan"):
        return {"title": f"On {prompt.split(': ', 1)[1]}", "sections": ["why", "how", "when"]}
    if system.startswith("Write"):
        return f"[{prompt.split(': ', 1)[1]}]"
    sections = prompt.count("[")
    return {"approved": sections >= 3, "notes": f"{sections} sections"}


model = FunctionModel(answer)
planner = Agent("planner", model=model, instructions="Plan a report.", output_type=Plan)
writer = Agent("writer", model=model, instructions="Write one section.")
reviewer = Agent("reviewer", model=model, instructions="Review.", output_type=Review)


@step(effect="pure")
async def assemble(title: str, sections: list[str]) -> str:
    CALLS.append("assemble")
    return title + ": " + " ".join(sections)


@step(effect="keyed")
async def publish(text: str) -> str:
    CALLS.append("publish")
    return f"published {len(text)} chars"


report_flow = Flow("report")
plan = report_flow.agent(planner, name="plan", prompt="Plan a report on: ${input.topic}")
sections = report_flow.agent(
    writer,
    name="sections",
    prompt="Write the section: ${item}",
    for_each=plan["sections"],
    concurrency=2,
)
text = report_flow.step(assemble, name="text", title=plan["title"], sections=sections)
review = report_flow.agent(reviewer, name="review", prompt="Review this draft: ${text}")
published = report_flow.step(publish, text=text, when="review.approved")
report_flow.output({"text": text, "review": review, "published": published})
report = report_flow.build()


# -- conditional branches that join, a plain function with a retry policy, a child run ----

ATTEMPTS: dict[str, int] = {}


def classify(message: str) -> str:
    return "refund" if "money back" in message else "question"


def refund(message: str) -> str:
    ATTEMPTS["refund"] = ATTEMPTS.get("refund", 0) + 1
    if ATTEMPTS["refund"] < 2:
        raise ConnectionError("payments API hiccup")
    return "refunded"


def answer_question(message: str) -> str:
    return f"answer to {message!r}"


def reply(refund: str | None, answer: str | None) -> str:
    return f"refund={refund} answer={answer}"


@workflow
async def audit(ctx: Context, note: str) -> str:
    return f"audited {note}"


triage_flow = Flow("triage")
kind = triage_flow.step(classify, name="kind", effect="pure", message=Flow.input)
refunded = triage_flow.step(
    refund,
    effect="keyed",
    retry=RetryPolicy(max_attempts=3, initial_delay=0.01),
    message=Flow.input,
    when=kind.equals("refund"),
)
answered = triage_flow.step(
    answer_question, name="answer", effect="pure", message=Flow.input, when='kind == "question"'
)
joined = triage_flow.step(reply, effect="pure", refund=refunded, answer=answered)
audited = triage_flow.workflow(audit, input="${reply}")
triage_flow.output({"reply": joined, "audit": audited})
triage = triage_flow.build()


# -- a bounded loop: draft, review, until approved ------------------------------------------


def count(previous: dict[str, Any] | None) -> int:
    return 1 if previous is None else previous["count"] + 1


def judge(count: int, topic: str) -> bool:
    return count >= 3


revise_body = Flow("revise")
counted = revise_body.step(count, effect="pure", previous=Flow.previous)
approved = revise_body.step(judge, effect="pure", count=counted, topic=Flow.input)
revise_body.output({"count": counted, "approved": approved})

revision_flow = Flow("revision")
revision_flow.loop(revise_body, input=Flow.input, max_iterations=5, until="output.approved")
revision = revision_flow.build()

short_flow = Flow("short_revision")
short_flow.loop(
    revise_body, input=Flow.input, max_iterations=2, until=Flow.result["approved"].is_true()
)
short_revision = short_flow.build()
