"""`Flow`: a workflow written as a graph of steps, agents and sub-workflows, in Python.

    flow = Flow("report")
    plan = flow.agent(planner, prompt="Plan a report on ${input.topic}")
    sections = flow.agent(writer, prompt="Write: ${item}", for_each=plan["sections"])
    flow.output(flow.agent(editor, prompt="Edit: ${sections}"))
    report = flow.build()  # checked here; a durable workflow from here on

Every method returns a `Ref` to the node's result; index it (`plan["sections"]`) to reach
inside. Inputs are bound by keyword: a `Ref`, text with `${...}` placeholders, or a constant.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..agent import Agent
from ..errors import UserError
from ..step import Effect, RetryPolicy, Step
from ..workflow import Workflow
from .compiled import FlowWorkflow
from .spec import (
    Binding,
    Condition,
    FlowSpec,
    NodeKind,
    NodeSpec,
    Ref,
    parse_binding,
    parse_condition,
    validate_node_name,
)

Target = Step[Any, Any] | Callable[..., Any]
Input = Ref | str | Any


class Flow:
    """A graph of nodes under construction; `build()` checks it and returns a workflow."""

    input = Ref("input")
    """The flow's input (`flow.input["topic"]` for a field of it)."""
    item = Ref("item")
    """The current item inside a `for_each` node."""
    previous = Ref("previous")
    """In a loop's body: the previous iteration's output (None in the first)."""
    result = Ref("output")
    """In a loop's `until`: this iteration's output (`Flow.result["approved"].is_true()`)."""

    def __init__(self, name: str) -> None:
        self.spec = FlowSpec(validate_node_name(name, "flow"), where=_caller())
        self._module = sys._getframe(1).f_globals.get("__name__", "__main__")

    def step(
        self,
        fn: Target,
        /,
        *,
        name: str | None = None,
        inputs: Mapping[str, Input] | None = None,
        effect: Effect | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Ref:
        """A `@step` (or a plain function, made a step here with `effect`, `retry`, `timeout`).

        Its arguments come from `inputs=` and extra keywords; `after=`, `when=`, `for_each=`,
        `concurrency=` and `output=` are the node options every kind takes.
        """
        target = _as_step(fn, name, effect, retry, timeout)
        common = _split(options)
        return self._add(
            "step", target, name or target.name, {**(inputs or {}), **common.pop("args")}, common
        )

    def agent(
        self, agent: Agent[Any], /, prompt: Input, *, name: str | None = None, **options: Any
    ) -> Ref:
        """An agent, asked `prompt` (text with `${...}` placeholders, or a Ref)."""
        if not isinstance(agent, Agent):
            raise UserError(f"flow.agent takes an Agent, got {agent!r}")
        common = _split(options, args_allowed=False)
        return self._add("agent", agent, name or agent.name, {"prompt": prompt}, common)

    def workflow(
        self,
        workflow: Workflow[Any, Any],
        /,
        input: Input = None,
        *,
        name: str | None = None,
        **options: Any,
    ) -> Ref:
        """A sub-workflow, run as a child run with `input`."""
        if not isinstance(workflow, Workflow):
            raise UserError(
                f"flow.workflow takes a workflow (@workflow or flow.build()), got {workflow!r}"
            )
        common = _split(options, args_allowed=False)
        bindings = {"input": input} if workflow.takes_input else {}
        return self._add("workflow", workflow, name or workflow.name, bindings, common)

    def loop(
        self,
        body: Flow,
        /,
        *,
        max_iterations: int,
        until: Condition | str | None = None,
        input: Input = None,
        name: str | None = None,
        **options: Any,
    ) -> Ref:
        """Run `body` again and again, at most `max_iterations` times, until `until` holds on its
        output. The body sees `input` and `Flow.previous`; the result is the last output."""
        if not isinstance(body, Flow):
            raise UserError(f"flow.loop takes a Flow as its body, got {body!r}")
        common = _split(options, args_allowed=False)
        common["until"] = _condition(until)
        common["max_iterations"] = max_iterations
        bindings = {"input": input} if input is not None else {}
        return self._add("loop", body.spec, name or body.spec.name, bindings, common)

    def output(self, value: Input | Mapping[str, Input]) -> None:
        """What the flow returns (default: a dict of its last steps' results)."""
        if isinstance(value, Mapping):
            self.spec.output = {k: _binding(v) for k, v in value.items()}
        else:
            self.spec.output = _binding(value)

    def build(self) -> FlowWorkflow:
        """Check the graph (raising FlowError listing every problem) and make it a workflow.

        Assign the result to a module-level name so workers can import it by reference.
        """
        return FlowWorkflow(self.spec, module=self._module)

    def _add(
        self,
        kind: NodeKind,
        target: Any,
        name: str,
        bindings: Mapping[str, Input],
        common: dict[str, Any],
    ) -> Ref:
        validate_node_name(name, "step")
        if name in self.spec.nodes:
            raise UserError(
                f"flow {self.spec.name!r} already has a step named {name!r}; pass name=... to "
                "tell them apart"
            )
        self.spec.nodes[name] = NodeSpec(
            name=name,
            kind=kind,
            target=target,
            bindings={k: _binding(v) for k, v in bindings.items()},
            where=_caller(depth=3),
            **common,
        )
        return Ref(name)


def _split(options: dict[str, Any], *, args_allowed: bool = True) -> dict[str, Any]:
    """Separate the node options every kind takes from a step's arguments."""
    common: dict[str, Any] = {
        "after": tuple(_node_name(n) for n in _iterable(options.pop("after", ()))),
        "when": _condition(options.pop("when", None)),
        "for_each": _for_each(options.pop("for_each", None)),
        "concurrency": options.pop("concurrency", None),
        "output": options.pop("output", None),
    }
    if options and not args_allowed:
        raise UserError(f"unknown option(s) {sorted(options)}; inputs of agents go in the prompt")
    if args_allowed:
        common["args"] = options
    return common


def _iterable(value: Any) -> Iterable[Any]:
    return [value] if isinstance(value, Ref | str) else value


def _node_name(value: Ref | str) -> str:
    if isinstance(value, Ref):
        if value.path:
            raise UserError(f"after= takes steps, not fields: use {value.root!r}")
        return value.root
    return value


def _condition(value: Condition | str | None) -> Condition | None:
    if value is None:
        return None
    try:
        return parse_condition(value)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _for_each(value: Ref | str | None) -> Ref | None:
    if value is None:
        return None
    binding = _binding(value)
    if not isinstance(binding, Ref):
        raise UserError(
            f"for_each takes a reference to a list, e.g. plan['sections'], got {value!r}"
        )
    return binding


def _binding(value: Input) -> Binding:
    try:
        return parse_binding(value)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _as_step(
    fn: Target,
    name: str | None,
    effect: Effect | None,
    retry: RetryPolicy | None,
    timeout: float | None,
) -> Step[Any, Any]:
    if isinstance(fn, Step):
        if effect is not None or retry is not None or timeout is not None:
            raise UserError(
                f"step {fn.name!r} already declares its effect, retry and timeout in @step; "
                "set them there"
            )
        return fn
    if not callable(fn):
        raise UserError(f"flow.step takes a @step or a function, got {fn!r}")
    return make_step(fn, name or fn.__name__, effect or "unsafe", retry, timeout)


def make_step(
    fn: Callable[..., Any],
    name: str,
    effect: Effect,
    retry: RetryPolicy | None,
    timeout: float | None,
) -> Step[Any, Any]:
    """A plain function (sync or async) as a step named after its node."""
    body = fn
    if not inspect.iscoroutinefunction(fn):

        async def body(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        body.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
        body.__annotations__ = getattr(fn, "__annotations__", {})
        body.__module__, body.__qualname__ = fn.__module__, fn.__qualname__
    return Step(body, name=name, effect=effect, retry=retry or RetryPolicy(), timeout=timeout)


def _caller(depth: int = 2) -> str:
    frame = sys._getframe(depth)
    return f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"
