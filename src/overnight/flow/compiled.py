"""A checked flow as a durable workflow: what `Flow.build()` and the YAML loader return."""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import orjson

from ..agent import Agent
from ..context import Context
from ..step import Step
from ..workflow import Workflow
from .check import check, topological_order
from .run import run_flow
from .spec import Binding, Condition, Const, FlowSpec, NodeSpec, Ref, Struct, Template


class FlowWorkflow(Workflow[Any, Any]):
    """A workflow whose body is a flow graph; it runs, journals and resumes like any other.

    Its reference (recorded on each run, so any worker can find it) is given (YAML files:
    `yaml:path`) or found by looking for it among the names of the module that built it.
    """

    def __init__(self, spec: FlowSpec, *, module: str, ref: str | None = None) -> None:
        check(spec)

        async def flow(ctx: Context, input: Any) -> Any:
            return await run_flow(ctx, spec, {"input": input})

        description = describe(spec)
        version = "flow-" + hashlib.sha256(orjson.dumps(description)).hexdigest()[:12]
        super().__init__(flow, name=spec.name, version=version)
        self.spec = spec
        self.module = module
        self._ref = ref

    @property
    def ref(self) -> str:
        if self._ref is None:
            found = _name_in_module(self.module, self)
            if found is None:
                # Not importable: it works where it is registered (the engine that starts it).
                return f"{self.module}:<flow {self.name}>"
            self._ref = found
        return self._ref

    @ref.setter
    def ref(self, value: str) -> None:
        self._ref = value

    def describe(self) -> dict[str, Any]:
        return describe(self.spec)


def _name_in_module(module: str, obj: object) -> str | None:
    namespace = vars(sys.modules[module]) if module in sys.modules else {}
    for attr, value in namespace.items():
        if value is obj:
            return f"{module}:{attr}"
    return None


def describe(flow: FlowSpec) -> dict[str, Any]:
    """The graph as plain data: equal for equal flows, whichever form they were written in."""
    return {
        "name": flow.name,
        "nodes": [_describe_node(node) for node in flow.nodes.values()],
        "output": _describe_output(flow.output),
    }


def _describe_node(node: NodeSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": node.name,
        "kind": node.kind,
        "target": _describe_target(node.target),
        "bindings": {k: _describe_binding(b) for k, b in sorted(node.bindings.items())},
    }
    optional = {
        "after": list(node.after) or None,
        "when": _describe_condition(node.when),
        "for_each": node.for_each.text() if node.for_each else None,
        "concurrency": node.concurrency,
        "until": _describe_condition(node.until),
        "max_iterations": node.max_iterations,
        "output": _describe_type(node.output),
    }
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


def _describe_target(target: Any) -> Any:
    if isinstance(target, FlowSpec):
        return describe(target)
    if isinstance(target, Agent):
        return {
            "agent": target.name,
            "tools": sorted(target.tools),
            "output": _describe_type(target.output_type),
        }
    if isinstance(target, Step):
        return {"step": target.name, "effect": target.effect, "call": target.ref}
    if isinstance(target, Workflow):
        return {"workflow": target.ref}
    return repr(target)


def _describe_binding(binding: Binding) -> Any:
    if isinstance(binding, Ref):
        return "${" + binding.text() + "}"
    if isinstance(binding, Template):
        return binding.text()
    if isinstance(binding, Struct):
        items = [(k, _describe_binding(b)) for k, b in binding.items]
        return [v for _, v in items] if binding.is_list else {str(k): v for k, v in items}
    assert isinstance(binding, Const)
    return {"const": binding.value}


def _describe_output(output: Binding | dict[str, Binding] | None) -> Any:
    if output is None:
        return None
    if isinstance(output, dict):
        return {k: _describe_binding(b) for k, b in output.items()}
    return _describe_binding(output)


def _describe_condition(condition: Condition | None) -> str | None:
    return condition.text() if condition is not None else None


def _describe_type(spec: Any) -> Any:
    if spec is None or isinstance(spec, dict):
        return spec
    return f"{getattr(spec, '__module__', '?')}:{getattr(spec, '__qualname__', repr(spec))}"


def graph_lines(flow: FlowSpec, indent: str = "  ") -> list[str]:
    """The flow as lines a person reads: each step, what it runs, and what it waits for."""
    width = max((len(name) for name in flow.nodes), default=0)
    lines = []
    for name in topological_order(flow):
        node = flow.nodes[name]
        parts = [_what(node)]
        if node.for_each is not None:
            at_once = f", {node.concurrency} at once" if node.concurrency else ""
            parts.append(f"for each {node.for_each.text()}{at_once}")
        if node.when is not None:
            parts.append(f"when {node.when.text()}")
        if node.dependencies():
            parts.append("after " + ", ".join(node.dependencies()))
        lines.append(f"{indent}{name:<{width}}  " + " · ".join(parts))
        if isinstance(node.target, FlowSpec):
            bound = f"at most {node.max_iterations} times"
            until = f", until {node.until.text()}" if node.until is not None else ""
            lines.append(f"{indent}  loop {bound}{until}:")
            lines.extend(graph_lines(node.target, indent + "    "))
    return lines


def _what(node: NodeSpec) -> str:
    target = node.target
    if isinstance(target, Agent):
        return f"agent {target.name}"
    if isinstance(target, Step):
        return f"step {target.name} ({target.effect})"
    if isinstance(target, Workflow):
        return f"sub-workflow {target.ref}"
    return "loop"
