"""Flows: graphs of steps, agents and sub-workflows, checked when built, run on the kernel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from overnight import Engine, RunFailedError, step
from overnight.flow import Flow, FlowError

from . import flow_defs as defs


async def test_nodes_run_by_dependency_with_for_each_and_a_condition() -> None:
    defs.CALLS.clear()
    async with Engine("memory://") as engine:
        out = await engine.run(defs.report, {"topic": "durability"}, run_id="r")
        keys = [e.key for e in await engine.journal("r")]
    assert out["text"] == "On durability: [why] [how] [when]"
    assert out["review"] == defs.Review(approved=True, notes="3 sections")
    assert out["published"] == "published 33 chars"
    assert defs.CALLS == ["assemble", "publish"]
    # Keys name the node, so they do not depend on timing or on the order nodes were written.
    assert "flow#1/plan/agent:planner#1/model#1" in keys
    assert "flow#1/sections/map#1/2/agent:writer#1/model#1" in keys
    assert "flow#1/publish/publish#1" in keys


async def test_a_condition_skips_a_branch_and_the_join_runs_with_the_other() -> None:
    defs.ATTEMPTS.clear()
    async with Engine("memory://") as engine:
        refund = await engine.run(defs.triage, "I want my money back")
        question = await engine.run(defs.triage, "how do I resume?")
    assert refund["reply"] == "refund=refunded answer=None"
    assert defs.ATTEMPTS["refund"] == 2  # the node's retry policy retried the failed attempt
    assert refund["audit"] == "audited refund=refunded answer=None"  # a child run
    assert question["reply"] == "refund=None answer=answer to 'how do I resume?'"


async def test_a_loop_runs_until_its_condition_or_its_bound() -> None:
    async with Engine("memory://") as engine:
        assert await engine.run(defs.revision, "x") == {"revise": {"count": 3, "approved": True}}
        assert await engine.run(defs.short_revision, "x") == {
            "revise": {"count": 2, "approved": False}
        }


async def test_a_finished_flow_replays_from_the_journal(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    async with Engine(store) as engine:
        first = await engine.run(defs.report, {"topic": "replay"}, run_id="again")
    asked = len(defs.model.requests)
    async with Engine(store) as engine:
        assert await engine.result("again") == first
    assert len(defs.model.requests) == asked


def test_the_workflow_is_importable_by_reference_and_versioned_by_its_graph() -> None:
    assert defs.report.ref == "tests.flow_defs:report"
    assert defs.report.version.startswith("flow-")
    assert defs.report.version != defs.triage.version


def add(a: int, b: int) -> int:
    return a + b


def test_every_problem_is_found_when_the_flow_is_built() -> None:
    flow = Flow("broken")
    first = flow.step(add, name="first", effect="pure", a=1, c=2)
    flow.step(add, name="second", effect="pure", a="${frist}", b="${item}")
    flow.step(add, name="third", effect="pure", a=first, b=2, after=["fourth"])
    flow.step(add, name="fourth", effect="pure", a="${third}", b=1)
    flow.loop(Flow("body"), name="forever", max_iterations=0)
    flow.output(first)
    with pytest.raises(FlowError) as caught:
        flow.build()
    problems = "\n".join(caught.value.problems)
    assert (
        "step 'first' (step tests.test_flows:add) needs input 'b' and nothing binds it" in problems
    )
    assert "step 'first' has no input 'c'" in problems
    assert "step 'second' refers to unknown step 'frist'; did you mean 'first'?" in problems
    assert "step 'second' uses ${item} but has no for_each" in problems
    assert "cycle: third -> fourth -> third" in problems
    assert "loop 'forever' has no bound; give max_iterations" in problems
    assert "test_flows.py:" in problems  # where each node was written


def test_a_step_nothing_reads_and_without_effect_is_reported() -> None:
    flow = Flow("idle")
    kept = flow.step(add, name="kept", effect="pure", a=1, b=2)
    flow.step(add, name="idle", effect="pure", a=1, b=2)
    flow.step(add, name="effectful", effect="keyed", a=1, b=2)  # an effect is reason enough
    flow.output(kept)
    with pytest.raises(FlowError, match="step 'idle' can never matter"):
        flow.build()


def test_bad_arguments_to_the_builder_are_clear() -> None:
    flow = Flow("bad")
    flow.step(add, name="one", effect="pure", a=1, b=2)
    with pytest.raises(Exception, match="already has a step named 'one'"):
        flow.step(add, name="one", effect="pure", a=1, b=2)
    with pytest.raises(Exception, match="is not a condition"):
        flow.step(add, name="two", effect="pure", a=1, b=2, when="one ==")
    with pytest.raises(Exception, match="must start with a letter"):
        flow.step(add, name="has space", effect="pure", a=1, b=2)
    with pytest.raises(Exception, match="already declares its effect"):
        flow.step(step(effect="pure")(_async_add), effect="keyed", a=1, b=2)


async def _async_add(a: int, b: int) -> int:
    return a + b


def totals(n: int) -> dict[str, Any]:
    return {"total": "many" if n > 1 else n}


checked_flow = Flow("checked")
checked_flow.step(totals, effect="pure", n=Flow.input, output=dict[str, int])
checked = checked_flow.build()


async def test_a_declared_output_is_validated_before_the_next_step_reads_it() -> None:
    async with Engine("memory://") as engine:
        assert await engine.run(checked, 1) == {"totals": {"total": 1}}
        with pytest.raises(RunFailedError, match="step 'totals' returned a value that does not"):
            await engine.run(checked, 2)
