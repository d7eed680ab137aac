"""Flows written in YAML: agents, steps and their dependencies, policies. See docs/flows.md.

`load_workflow_file(path)` reads and checks the file, reporting every problem with file, line and
column and what to write instead, and returns the same kind of workflow `Flow.build()` does; its
runs refer to it as `yaml:<path>`, so a worker in the same directory finds it again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._engine.refs import import_ref
from ..agent import Agent
from ..errors import UserError
from ..models.base import Model
from ..step import RetryPolicy, Step
from ..tool import Tool, tool
from ..workflow import Workflow
from .builder import make_step
from .check import check
from .compiled import FlowWorkflow
from .spec import (
    Binding,
    FlowError,
    FlowSpec,
    NodeSpec,
    Ref,
    parse_binding,
    parse_condition,
    validate_node_name,
)
from .yaml_source import Located, read

FLOW_KEYS = ("name", "description", "agents", "steps", "output")
AGENT_KEYS = (
    "model", "instructions", "tools", "output", "max_turns", "max_tokens", "temperature",
    "max_total_tokens", "max_cost", "max_seconds", "output_retries", "capabilities",
)  # fmt: skip
KINDS = ("agent", "call", "workflow", "loop")
COMMON_KEYS = ("after", "when", "for_each", "concurrency", "output")
KIND_KEYS = {
    "agent": ("prompt",),
    "call": ("with", "effect", "retry", "timeout"),
    "workflow": ("input",),
    "loop": ("max_iterations", "until", "input", "steps", "output"),
}
RETRY_KEYS = ("max_attempts", "initial_delay", "backoff", "max_delay", "jitter")
ModelChoice = Model | Mapping[str, Model] | None


def load_workflow_file(path: str | os.PathLike[str], *, models: ModelChoice = None) -> FlowWorkflow:
    """The flow in a YAML file as a workflow; FlowError listing every problem.

    `models` replaces the agents' models (one Model for all, or one per agent name): how tests
    and the demo run a file on a scripted model.
    """
    file = Path(path)
    shown = _shown(file)
    spec = _Reader(file, shown, models).flow(read(file, shown))
    return FlowWorkflow(spec, module="overnight.flow.yaml", ref=f"yaml:{shown}")


def _shown(file: Path) -> str:
    """The path as runs record it: relative to the working directory when inside it."""
    try:
        return file.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return file.resolve().as_posix()


class _Reader:
    def __init__(self, file: Path, shown: str, models: ModelChoice) -> None:
        self.file, self.shown, self.models = file, shown, models
        self.problems: list[str] = []
        self.agents: dict[str, Agent[Any]] = {}
        self.unreadable: set[str] = set()

    def flow(self, doc: Any) -> FlowSpec:
        if not isinstance(doc, Located):
            raise FlowError(
                [f"{self.shown}: a flow file is a mapping with name, agents, steps and output"]
            )
        self.problems += doc.unknown_keys(FLOW_KEYS, "the flow")
        name = self._name(doc, "name", "flow", required=True) or "flow"
        for agent_name, agent_doc in self._mapping(doc, "agents").items():
            self._agent(agent_name, agent_doc, doc.key_where.get("agents", doc.where))
        spec = self._steps(name, doc, doc.where)
        if self.problems:
            # Report the graph's problems too (cycles, missing inputs), except those that only
            # repeat that a step already reported as unreadable is missing.
            try:
                check(spec)
            except FlowError as exc:
                missing = [f"unknown step {n!r}" for n in self.unreadable]
                self.problems += [p for p in exc.problems if not any(m in p for m in missing)]
            raise FlowError(self.problems)
        return spec

    # -- agents ---------------------------------------------------------------------------------

    def _agent(self, name: str, doc: Any, where: str) -> None:
        if not isinstance(doc, Located):
            self.problems.append(f"{where}: agent {name!r} must be a mapping with model, ...")
            return
        self.problems += doc.unknown_keys(AGENT_KEYS, f"agent {name!r}")
        tools = [self._tool(ref, doc.at("tools")) for ref in self._list(doc, "tools")]
        output = self._type(doc, "output")
        options = {k: doc[k] for k in AGENT_KEYS[4:] if k in doc}
        if "max_cost" in options:
            options["max_cost"] = Decimal(str(options["max_cost"]))
        try:
            self.agents[name] = Agent(
                validate_node_name(name, "agent"),
                model=self._model(name, doc),
                instructions=str(doc.get("instructions", "")),
                tools=[t for t in tools if t is not None],
                output_type=output,
                **options,
            )
        except (UserError, TypeError) as exc:
            self.problems.append(f"{doc.where}: agent {name!r}: {exc}")

    def _model(self, agent: str, doc: Located) -> Model | str | None:
        if isinstance(self.models, Model):
            return self.models
        if self.models is not None and agent in self.models:
            return self.models[agent]
        if "model" not in doc:
            return None  # OVERNIGHT_MODEL names it when the agent first runs
        model = doc["model"]
        if not isinstance(model, str):
            self.problems.append(
                f"{doc.at('model')}: agent {agent!r}: model: takes 'provider:model', e.g. "
                "openai:gpt-4o-mini or anthropic:claude-haiku-4-5 (or leave it out to use "
                "OVERNIGHT_MODEL)"
            )
            return "openai:unset"
        if model.startswith("import:"):
            found = self._import(model.removeprefix("import:"), doc.at("model"), "model")
            found = found() if callable(found) and not isinstance(found, Model) else found
            if not isinstance(found, Model):
                self.problems.append(f"{doc.at('model')}: {model!r} is not a Model")
                return "openai:unset"
            return found
        from ..models import check_model_name

        try:
            check_model_name(model)  # unknown providers and missing SDKs: here, not at run time
        except UserError as exc:
            self.problems.append(f"{doc.at('model')}: agent {agent!r}: {exc}")
        return model

    def _tool(self, ref: Any, where: str) -> Tool[Any] | None:
        found = self._import(ref, where, "tool")
        if found is None or isinstance(found, Tool):
            return found
        if not callable(found):
            self.problems.append(f"{where}: {ref!r} is not a function or @tool")
            return None
        try:
            return tool(found)
        except UserError as exc:
            self.problems.append(f"{where}: tool {ref!r}: {exc}")
            return None

    def _type(self, doc: Located, key: str) -> Any:
        value = doc.get(key)
        if value is None or isinstance(value, Mapping):
            return value
        if value == "text":
            return str
        return self._import(value, doc.at(key), "type")

    def _import(self, ref: Any, where: str, what: str) -> Any:
        if not isinstance(ref, str) or ":" not in ref:
            self.problems.append(
                f"{where}: {what} {ref!r} must be an import path 'package.module:name'"
            )
            return None
        try:
            return import_ref(ref)
        except Exception as exc:
            self.problems.append(
                f"{where}: {what} {ref!r} does not import ({type(exc).__name__}: {exc}); check "
                "the module is installed or on PYTHONPATH and the name is spelled right"
            )
            return None

    # -- steps ----------------------------------------------------------------------------------

    def _steps(self, name: str, doc: Located, where: str) -> FlowSpec:
        spec = FlowSpec(name, where=where)
        steps = self._mapping(doc, "steps")
        if not steps and "steps" not in doc:
            self.problems.append(
                f"{where}: flow {name!r} has no steps; add steps: with one or more"
            )
        for step_name, step_doc in steps.items():
            node = self._node(step_name, step_doc, steps.key_where[step_name])
            if node is not None:
                spec.nodes[step_name] = node
            else:
                self.unreadable.add(step_name)
        if "output" in doc:
            spec.output = self._output(doc["output"], doc.at("output"))
        return spec

    def _node(self, name: str, doc: Any, where: str) -> NodeSpec | None:
        try:
            validate_node_name(name, "step")
        except UserError as exc:
            self.problems.append(f"{where}: {exc}")
            return None
        if not isinstance(doc, Located):
            self.problems.append(
                f"{where}: step {name!r} must be a mapping (agent: ..., call: ...)"
            )
            return None
        kinds = [k for k in KINDS if k in doc]
        if len(kinds) != 1:
            said = f"has {', '.join(kinds)}" if kinds else "has none"
            self.problems.append(
                f"{doc.where}: step {name!r} needs exactly one of {', '.join(KINDS)}; it {said}"
            )
            return None
        kind = kinds[0]
        self.problems += doc.unknown_keys((kind, *KIND_KEYS[kind], *COMMON_KEYS), f"step {name!r}")
        node = NodeSpec(name=name, kind="step", target=None, where=doc.where)
        self._common(node, doc)
        if kind == "agent":
            agent = self.agents.get(doc["agent"]) if isinstance(doc["agent"], str) else None
            if agent is None:
                self.problems.append(
                    f"{doc.at('agent')}: {_unknown_agent(doc['agent'], self.agents)}"
                )
                return None
            node.kind, node.target = "agent", agent
            if "prompt" in doc:
                node.bindings["prompt"] = self._binding(doc["prompt"], doc.at("prompt"))
        elif kind == "call":
            node.target = self._call(name, doc)
            arguments = doc.get("with") or {}
            if not isinstance(arguments, Located):
                self.problems.append(f"{doc.at('with')}: with: takes a mapping of arguments")
                arguments = Located.empty(doc.where)
            for arg, value in arguments.items():
                node.bindings[arg] = self._binding(value, arguments.at(arg))
        elif kind == "workflow":
            node.kind, node.target = "workflow", self._workflow(doc)
            if "input" in doc:
                node.bindings["input"] = self._binding(doc["input"], doc.at("input"))
        else:
            self._loop(node, doc)
        return None if node.target is None else node

    def _common(self, node: NodeSpec, doc: Located) -> None:
        after = doc.get("after", [])
        after = [after] if isinstance(after, str) else after
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            self.problems.append(f"{doc.at('after')}: after: takes a step name or a list of them")
        else:
            node.after = tuple(after)
        if "when" in doc:
            node.when = self._parse(parse_condition, doc["when"], doc.at("when"))
        if "for_each" in doc:
            ref = self._binding(doc["for_each"], doc.at("for_each"))
            if not isinstance(ref, Ref):
                self.problems.append(
                    f"{doc.at('for_each')}: for_each takes one reference to a list, "
                    "e.g. ${plan.sections}"
                )
            else:
                node.for_each = ref
        node.concurrency = self._int(doc, "concurrency")
        node.output = self._type(doc, "output")

    def _call(self, name: str, doc: Located) -> Step[Any, Any] | None:
        found = self._import(doc["call"], doc.at("call"), "call")
        if found is None:
            return None
        policy = {k: doc[k] for k in ("effect", "retry", "timeout") if k in doc}
        if isinstance(found, Step):
            if policy:
                self.problems.append(
                    f"{doc.at('call')}: {doc['call']!r} is a @step with its own effect, retry and "
                    f"timeout; remove {', '.join(policy)} here"
                )
            return found
        if not callable(found):
            self.problems.append(f"{doc.at('call')}: {doc['call']!r} is not a function")
            return None
        try:
            return make_step(
                found,
                name,
                policy.get("effect", "unsafe"),
                self._retry(doc) if "retry" in doc else None,
                policy.get("timeout"),
            )
        except (UserError, TypeError) as exc:
            self.problems.append(f"{doc.where}: step {name!r}: {exc}")
            return None

    def _retry(self, doc: Located) -> RetryPolicy | None:
        retry = doc["retry"]
        if not isinstance(retry, Located):
            self.problems.append(f"{doc.at('retry')}: retry: takes a mapping, e.g. max_attempts: 3")
            return None
        self.problems += retry.unknown_keys(RETRY_KEYS, "retry")
        try:
            return RetryPolicy(**{k: v for k, v in retry.items() if k in RETRY_KEYS})
        except (TypeError, ValueError, UserError) as exc:
            self.problems.append(f"{retry.where}: retry: {exc}")
            return None

    def _workflow(self, doc: Located) -> Workflow[Any, Any] | None:
        ref = doc["workflow"]
        if isinstance(ref, str) and ref.endswith((".yaml", ".yml")):
            try:
                return load_workflow_file(self.file.parent / ref, models=self.models)
            except FlowError as exc:
                self.problems += [f"in {ref}: {p}" for p in exc.problems]
                return None
        found = self._import(ref, doc.at("workflow"), "workflow")
        if found is not None and not isinstance(found, Workflow):
            self.problems.append(f"{doc.at('workflow')}: {ref!r} is not a workflow")
            return None
        return found

    def _loop(self, node: NodeSpec, doc: Located) -> None:
        body = doc["loop"]
        if not isinstance(body, Located):
            self.problems.append(
                f"{doc.at('loop')}: loop: takes a mapping with steps and max_iterations"
            )
            return
        self.problems += body.unknown_keys(KIND_KEYS["loop"], f"loop {node.name!r}")
        node.kind = "loop"
        node.target = self._steps(node.name, body, body.where)
        node.max_iterations = self._int(body, "max_iterations")
        if "until" in body:
            node.until = self._parse(parse_condition, body["until"], body.at("until"))
        if "input" in body:
            node.bindings["input"] = self._binding(body["input"], body.at("input"))

    # -- values ---------------------------------------------------------------------------------

    def _output(self, value: Any, where: str) -> Binding | dict[str, Binding]:
        if isinstance(value, Located):
            return {k: self._binding(v, value.at(k)) for k, v in value.items()}
        return self._binding(value, where)

    def _binding(self, value: Any, where: str) -> Binding:
        found = self._parse(parse_binding, value, where)
        return found if found is not None else parse_binding(None)

    def _parse(self, parse: Any, value: Any, where: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            self.problems.append(f"{where}: {exc}")
            return None

    def _int(self, doc: Located, key: str) -> int | None:
        value = doc.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            self.problems.append(f"{doc.at(key)}: {key} must be a whole number, got {value!r}")
            return None
        return value

    def _name(self, doc: Located, key: str, what: str, *, required: bool) -> str | None:
        if key not in doc:
            if required:
                self.problems.append(f"{doc.where}: the {what} needs a {key}: (e.g. {key}: report)")
            return None
        try:
            return validate_node_name(doc[key], what)
        except UserError as exc:
            self.problems.append(f"{doc.at(key)}: {exc}")
            return None

    def _mapping(self, doc: Located, key: str) -> Located:
        value = doc.get(key)
        if value is None:
            return Located.empty(doc.where)
        if not isinstance(value, Located):
            self.problems.append(f"{doc.at(key)}: {key}: takes a mapping of names to definitions")
            return Located.empty(doc.where)
        return value

    def _list(self, doc: Located, key: str) -> list[Any]:
        value = doc.get(key, [])
        if not isinstance(value, list):
            self.problems.append(f"{doc.at(key)}: {key}: takes a list")
            return []
        return value


def _unknown_agent(name: Any, agents: Mapping[str, Agent[Any]]) -> str:
    import difflib

    close = difflib.get_close_matches(str(name), list(agents), n=1, cutoff=0.6)
    hint = (
        f"; did you mean {close[0]!r}?"
        if close
        else f"; define it under agents: ({', '.join(agents) or 'none yet'})"
    )
    return f"unknown agent {name!r}{hint}"
