"""Checking a flow before it runs: every problem at once, each with where it is and a fix.

Found here, not at run time: references to steps that do not exist (with the closest name),
inputs a step needs that nothing binds and bindings it does not take, cycles, `item` outside a
`for_each`, loops without a bound, and steps that can never matter (nothing reads their result
and they have no effect).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable

from ..agent import Agent
from ..step import Step
from ..workflow import Workflow
from .spec import (
    SPECIAL_ROOTS,
    Binding,
    Const,
    FlowError,
    FlowSpec,
    NodeSpec,
    Ref,
    binding_refs,
)


def check(flow: FlowSpec) -> list[str]:
    """The names of the flow's nodes in an order that respects dependencies; FlowError if any
    problem is found."""
    problems: list[str] = []
    _check_flow(flow, problems, in_loop=False)
    if problems:
        raise FlowError(problems)
    return topological_order(flow)


def _check_flow(flow: FlowSpec, problems: list[str], *, in_loop: bool) -> None:
    names = list(flow.nodes)
    for node in flow.nodes.values():
        at = f"{node.where}: " if node.where else ""
        roots = {"input"} | ({"previous"} if in_loop else set())
        if node.for_each is not None:
            if node.for_each.root == "item":
                problems.append(f"{at}step {node.name!r}: for_each cannot iterate over item")
            roots.add("item")
        for ref in node.refs():
            _check_root(ref, node, names, roots, problems)
        for name in node.after:
            if name not in flow.nodes:
                problems.append(f"{at}step {node.name!r} runs after {_unknown(name, names)}")
        if node.name in node.dependencies():
            problems.append(f"{at}step {node.name!r} refers to itself")
        _check_inputs(node, problems)
        if node.concurrency is not None and node.concurrency < 1:
            problems.append(f"{at}step {node.name!r}: concurrency must be at least 1")
        if node.kind == "loop":
            _check_loop(node, problems)
    _check_cycles(flow, problems)
    _check_output(flow, names, problems)
    _check_unused(flow, problems)


def _unknown(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown step {name!r}{hint}"


def _check_root(
    ref: Ref, node: NodeSpec, names: list[str], roots: set[str], problems: list[str]
) -> None:
    at = f"{node.where}: " if node.where else ""
    if ref.root in roots or (ref.root in names and ref.root not in SPECIAL_ROOTS):
        return
    if ref.root == "item":
        problems.append(
            f"{at}step {node.name!r} uses ${{item}} but has no for_each; add "
            "for_each: ${some_step.list} or refer to a step"
        )
    elif ref.root == "previous":
        problems.append(f"{at}step {node.name!r} uses ${{previous}}, which exists only in a loop")
    else:
        problems.append(
            f"{at}step {node.name!r} refers to {_unknown(ref.root, [*names, *sorted(roots)])}"
        )


def _check_inputs(node: NodeSpec, problems: list[str]) -> None:
    at = f"{node.where}: " if node.where else ""
    given = set(node.bindings)
    if node.kind == "agent":
        assert isinstance(node.target, Agent)
        takes, needs = {"prompt"}, {"prompt"}
    elif node.kind in ("workflow", "loop"):
        wants_input = not isinstance(node.target, Workflow) or node.target.takes_input
        takes = {"input"} if wants_input else set()
        needs = takes if isinstance(node.target, Workflow) else set()
    else:
        assert isinstance(node.target, Step)
        signature = inspect.signature(node.target.fn)
        params = signature.parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return
        takes = {p.name for p in params if p.kind is not p.VAR_POSITIONAL}
        needs = {
            p.name
            for p in params
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
    for name in sorted(needs - given):
        what = f"{node.kind} {_target_name(node)}"
        problems.append(
            f"{at}step {node.name!r} ({what}) needs input {name!r} and nothing binds it; "
            f"bind it, e.g. {name}: ${{some_step}}"
        )
    for name in sorted(given - takes):
        close = difflib.get_close_matches(name, sorted(takes), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; it takes {sorted(takes) or 'none'}"
        problems.append(f"{at}step {node.name!r} has no input {name!r}{hint}")


def _target_name(node: NodeSpec) -> str:
    target = node.target
    if isinstance(target, Step):
        return target.ref
    return repr(getattr(target, "name", target))


def _check_loop(node: NodeSpec, problems: list[str]) -> None:
    at = f"{node.where}: " if node.where else ""
    if node.max_iterations is None or node.max_iterations < 1:
        problems.append(
            f"{at}loop {node.name!r} has no bound; give max_iterations (at least 1) so it "
            "cannot run forever"
        )
    body = node.target
    assert isinstance(body, FlowSpec)
    if node.until is not None and node.until.ref.root != "output":
        problems.append(
            f"{at}loop {node.name!r}: until must test the body's output, e.g. "
            f"output.approved (it tests {node.until.ref.text()!r})"
        )
    nested: list[str] = []
    _check_flow(body, nested, in_loop=True)
    problems.extend(f"in loop {node.name!r}: {p}" for p in nested)


def _check_cycles(flow: FlowSpec, problems: list[str]) -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in flow.nodes[name].dependencies():
            if dep not in flow.nodes:
                continue
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                problems.append(
                    "cycle: "
                    + " -> ".join(cycle)
                    + "; a step cannot wait for itself, remove one of these dependencies"
                )
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in flow.nodes:
        if name not in state:
            visit(name)


def output_refs(output: Binding | dict[str, Binding] | None) -> list[Ref]:
    bindings = list(output.values()) if isinstance(output, dict) else [output]
    return [ref for binding in bindings for ref in binding_refs(binding)]


def _check_output(flow: FlowSpec, names: list[str], problems: list[str]) -> None:
    at = f"{flow.where}: " if flow.where else ""
    for ref in output_refs(flow.output):
        if ref.root not in flow.nodes and ref.root != "input":
            problems.append(
                f"{at}the output of flow {flow.name!r} refers to {_unknown(ref.root, names)}"
            )


def _check_unused(flow: FlowSpec, problems: list[str]) -> None:
    if flow.output is None or isinstance(flow.output, Const):
        return  # without a declared output every last step is part of it
    used = {ref.root for ref in output_refs(flow.output)}
    for node in flow.nodes.values():
        used.update(node.dependencies())
    for node in flow.nodes.values():
        if node.name not in used and not _has_effect(node):
            at = f"{node.where}: " if node.where else ""
            problems.append(
                f"{at}step {node.name!r} can never matter: nothing reads its result, it is not "
                "in the output and it has no effect; use it, add it to the output, or remove it"
            )


def _has_effect(node: NodeSpec) -> bool:
    target = node.target
    if isinstance(target, Step):
        return target.effect != "pure"
    if isinstance(target, Agent):
        return any(t.effect != "pure" for t in target.tools.values())
    return True  # sub-workflows and loops may do anything


def topological_order(flow: FlowSpec) -> list[str]:
    """Nodes in written order, each after what it depends on (the flow has no cycle)."""
    order: list[str] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        placed.add(name)
        for dep in flow.nodes[name].dependencies():
            place(dep)
        order.append(name)

    for name in flow.nodes:
        place(name)
    return order
