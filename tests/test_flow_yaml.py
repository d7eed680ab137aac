"""YAML flows: the same graph and journal keys as Python, and errors a new user can act on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from overnight import Engine, UserError
from overnight.flow import FlowError
from overnight.flow.yaml import load_workflow_file

from . import flow_defs as defs

REPORT = Path(__file__).parent / "flows" / "report.yaml"


def test_yaml_and_python_give_the_same_graph() -> None:
    assert load_workflow_file(REPORT).describe() == defs.report.describe()


async def test_yaml_and_python_write_the_same_journal_keys() -> None:
    from_yaml = load_workflow_file(REPORT)
    async with Engine("memory://") as engine:
        out_yaml = await engine.run(from_yaml, {"topic": "keys"}, run_id="yaml")
        out_python = await engine.run(defs.report, {"topic": "keys"}, run_id="python")
        keys_yaml = [e.key for e in await engine.journal("yaml")]
        keys_python = [e.key for e in await engine.journal("python")]
    assert out_yaml == out_python
    assert keys_yaml == keys_python
    assert from_yaml.ref == "yaml:tests/flows/report.yaml"


async def test_a_run_of_a_yaml_flow_is_found_again_by_its_reference(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    async with Engine(store) as engine:
        await engine.start(load_workflow_file(REPORT), {"topic": "ref"}, run_id="r")
        first = await engine.result("r")
    async with Engine(store) as engine:  # knows nothing: loads tests/flows/report.yaml itself
        assert engine.resolve_workflow("yaml:tests/flows/report.yaml").name == "report"
        assert await engine.result("r") == first


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(FlowError) as caught:
        load_workflow_file(path)
    return "\n".join(caught.value.problems)


AGENT = """
agents:
  writer:
    model: import:tests.flow_defs:model
    instructions: Write.
"""


def test_unknown_agent_names_the_line_and_the_closest_agent(tmp_path: Path) -> None:
    path = write(tmp_path, AGENT + "steps:\n  draft:\n    agent: writter\n    prompt: hi\n")
    found = problems_of(path)
    assert "flow.yaml:7:12: unknown agent 'writter'; did you mean 'writer'?" in found
    assert "flow.yaml:1:1: the flow needs a name:" in found


def test_unknown_keys_steps_and_inputs_are_named_with_a_fix(tmp_path: Path) -> None:
    steps = """
        steps:
          draft:
            agent: writer
            promt: hi
          sum:
            call: tests.test_flows:add
            with: {a: 1, bb: "${draf}"}
          loose:
            call: tests.flow_defs:no_such_function
    """
    path = write(tmp_path, "name: f\n" + AGENT + textwrap.dedent(steps))
    found = problems_of(path)
    assert "unknown key 'promt' in step 'draft'; did you mean 'prompt'?" in found
    assert "step 'draft' (agent 'writer') needs input 'prompt'" in found
    assert "step 'sum' refers to unknown step 'draf'; did you mean 'draft'?" in found
    assert "step 'sum' has no input 'bb'; did you mean 'b'?" in found
    assert "call 'tests.flow_defs:no_such_function' does not import" in found


def test_cycles_unbounded_loops_and_bad_conditions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: f
        steps:
          a:
            call: tests.test_flows:add
            with: {a: "${b}", b: 1}
          b:
            call: tests.test_flows:add
            with: {a: "${a}", b: 1}
            when: a = 1
          again:
            loop:
              steps:
                one:
                  call: tests.test_flows:add
                  with: {a: 1, b: 2}
        """,
    )
    found = problems_of(path)
    assert "cycle: a -> b -> a" in found
    assert "flow.yaml:9:11: 'a = 1' is not a condition" in found
    assert "loop 'again' has no bound; give max_iterations" in found


def test_models_the_user_cannot_have_are_reported_at_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: f
        agents:
          a: {model: openaj:gpt-4o-mini}
          b: {model: 5}
          c: {model: openai:gpt-4o-mini, tools: [tests.flow_defs:nothing_here]}
        steps:
          s: {agent: a, prompt: hi}
        """,
    )
    found = problems_of(path)
    assert "unknown model provider 'openaj'" in found
    assert "did you mean 'openai:gpt-4o-mini'" in found
    assert "agent 'b': model: takes 'provider:model'" in found
    assert "tool 'tests.flow_defs:nothing_here' does not import" in found


def test_malformed_yaml_and_missing_files(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path, "name: f\nsteps:\n  a: [unclosed\n"))
    assert "flow.yaml:4:1: not valid YAML: expected ',' or ']'" in found
    assert "not valid YAML" in found
    assert "no such file" in problems_of(tmp_path / "missing.yaml")
    assert "written twice" in problems_of(write(tmp_path, "name: f\nname: g\nsteps: {}\n"))
    assert "a flow file is a mapping" in problems_of(write(tmp_path, "- just\n- a list\n"))


def outcome(path: Path) -> str:
    """'loaded', or the message of the one kind of error bad input may raise."""
    try:
        load_workflow_file(path)
    except UserError as exc:  # FlowError is one
        return str(exc)
    return "loaded"


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "steps",
                    "agents",
                    "agent",
                    "call",
                    "with",
                    "prompt",
                    "when",
                    "after",
                    "for_each",
                    "loop",
                    "max_iterations",
                    "output",
                    "model",
                    "tools",
                    "a",
                    "b",
                ]
            )
            | st.text(max_size=6),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=yaml_values)
def test_any_yaml_document_loads_or_fails_with_a_flow_error(doc: object, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert outcome(path)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet="name:steps{}[]-#&*!|>'\"\n\t ${}.ab", max_size=60))
def test_any_text_loads_or_fails_with_a_flow_error(text: str, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    assert outcome(path)


async def test_a_yaml_loop_and_for_each_run_like_their_python_twins(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        name: revision
        steps:
          revise:
            loop:
              max_iterations: 5
              until: output.approved
              input: ${input}
              steps:
                count:
                  call: tests.flow_defs:count
                  effect: pure
                  with: {previous: "${previous}"}
                judge:
                  call: tests.flow_defs:judge
                  effect: pure
                  with: {count: "${count}", topic: "${input}"}
              output:
                count: ${count}
                approved: ${judge}
          doubled:
            call: tests.test_flows:add
            effect: pure
            for_each: ${input.numbers}
            concurrency: 2
            with: {a: "${item}", b: "${item}"}
        """,
    )
    flow = load_workflow_file(path)
    assert flow.describe()["nodes"][0] == defs.revision.describe()["nodes"][0]
    async with Engine("memory://") as engine:
        out = await engine.run(flow, {"numbers": [1, 2, 3]})
    assert out == {"revise": {"count": 3, "approved": True}, "doubled": [2, 4, 6]}


async def test_a_yaml_flow_runs_another_yaml_file_as_a_child_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # runs record their files relative to the working directory
    (tmp_path / "child.yaml").write_text(
        "name: child\nsteps:\n  sum:\n    call: tests.test_flows:add\n    effect: pure\n"
        "    with: {a: '${input.a}', b: 10}\noutput: ${sum}\n"
    )
    (tmp_path / "parent.yaml").write_text(
        "name: parent\nsteps:\n  sub:\n    workflow: child.yaml\n    input: {a: '${input}'}\n"
        "output: ${sub}\n"
    )
    async with Engine("memory://") as engine:
        assert await engine.run(load_workflow_file("parent.yaml"), 5, run_id="p") == 15
        child = await engine.get_run("p/flow#1/sub/child:child#1")
    assert (child.workflow, child.status) == ("yaml:child.yaml", "completed")
