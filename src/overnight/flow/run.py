"""Running a checked flow on the kernel: every node a branch, each waiting for what it reads.

All nodes start at once as branches of one group, keyed by node name (`flow#1/plan/...`), and
each awaits the nodes it depends on; so independent nodes run in parallel and the journal keys
do not depend on timing. A node runs when its dependencies are done, unless every one of them
was skipped or its `when` does not hold: then it is skipped, its result reads as None, and a
node that depends only on skipped nodes is skipped too. That is how a conditional branch joins:
the node after two alternatives runs with one of them None.

A failing node fails the flow with its own error; nodes waiting for it re-raise that same error,
so the run reports the node that failed, not the ones that could not start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import orjson
import pydantic

from .._engine.branches import gather_labelled
from .._engine.scope import current_scope
from ..agent import Agent
from ..context import Context
from ..errors import OvernightError
from ..output import OutputMismatch, OutputType
from ..step import Step
from ..workflow import Workflow
from .check import topological_order
from .spec import Binding, Const, FlowSpec, NodeSpec, Ref, Struct, Template


class FlowRunError(OvernightError):
    """A flow step got or produced a value that does not fit (a missing field, a bad output)."""


class _Skipped:
    def __repr__(self) -> str:
        return "<skipped>"


SKIPPED = _Skipped()


async def run_flow(ctx: Context, flow: FlowSpec, roots: dict[str, Any]) -> Any:
    """Run every node of `flow` with `roots` (input, previous) in reach; return its output."""
    scope = current_scope("a flow")
    order = topological_order(flow)
    loop = asyncio.get_running_loop()
    done: dict[str, asyncio.Future[Any]] = {name: loop.create_future() for name in order}

    async def branch(node: NodeSpec) -> Any:
        future = done[node.name]
        try:
            value = await _run_node(ctx, node, done, roots)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # dependants re-raise it; nobody else needs to look
            raise
        future.set_result(value)
        return value

    values = await gather_labelled(scope, "flow", [(n, branch(flow.nodes[n])) for n in order])
    results = dict(zip(order, values, strict=True))
    return _flow_output(flow, results, roots)


async def _run_node(
    ctx: Context, node: NodeSpec, done: dict[str, asyncio.Future[Any]], roots: dict[str, Any]
) -> Any:
    upstream = {name: await done[name] for name in node.dependencies()}
    if upstream and all(value is SKIPPED for value in upstream.values()):
        return SKIPPED
    env = {**roots, **{k: None if v is SKIPPED else v for k, v in upstream.items()}}
    if node.when is not None and not node.when.holds(resolve(node.when.ref, env, node, loose=True)):
        return SKIPPED
    if node.for_each is None:
        return await _invoke(ctx, node, env)
    items = resolve(node.for_each, env, node)
    if not isinstance(items, list | tuple):
        raise FlowRunError(
            f"step {node.name!r}: for_each ${{{node.for_each.text()}}} is a "
            f"{type(items).__name__}, not a list"
        )

    async def one(item: Any) -> Any:
        return await _invoke(ctx, node, {**env, "item": item})

    return await ctx.map(one, items, concurrency=node.concurrency)


async def _invoke(ctx: Context, node: NodeSpec, env: dict[str, Any]) -> Any:
    args = {name: render(binding, env, node) for name, binding in node.bindings.items()}
    target = node.target
    if isinstance(target, Agent):
        prompt = args["prompt"]
        result = (await target.run(prompt if isinstance(prompt, str) else to_text(prompt))).output
    elif isinstance(target, Step):
        result = await target(**args)
    elif isinstance(target, Workflow):
        result = await ctx.child(target, args.get("input"))
    else:
        result = await _run_loop(ctx, node, target, args.get("input", env.get("input")))
    if node.output is not None:
        _check_output(node, result)
    return result


async def _run_loop(ctx: Context, node: NodeSpec, body: FlowSpec, given: Any) -> Any:
    output: Any = None
    assert node.max_iterations is not None  # checked when the flow was built
    for _ in range(node.max_iterations):
        with ctx.scope("iteration"):
            output = await run_flow(ctx, body, {"input": given, "previous": output})
        if node.until is not None and node.until.holds(
            resolve(node.until.ref, {"output": output}, node, loose=True)
        ):
            break
    return output


def _check_output(node: NodeSpec, value: Any) -> None:
    try:
        OutputType(node.output).validate_value(value)
    except OutputMismatch as exc:
        raise FlowRunError(
            f"step {node.name!r} returned a value that does not match its declared output: "
            f"{exc.problems}"
        ) from None


def _flow_output(flow: FlowSpec, results: dict[str, Any], roots: dict[str, Any]) -> Any:
    env = {**roots, **{k: None if v is SKIPPED else v for k, v in results.items()}}
    if flow.output is None:
        used = {dep for node in flow.nodes.values() for dep in node.dependencies()}
        return {name: env[name] for name in flow.nodes if name not in used}
    if isinstance(flow.output, dict):
        return {key: render(binding, env, None) for key, binding in flow.output.items()}
    return render(flow.output, env, None)


def render(binding: Binding, env: Mapping[str, Any], node: NodeSpec | None) -> Any:
    """The value a binding gives in `env`."""
    if isinstance(binding, Const):
        return binding.value
    if isinstance(binding, Ref):
        return resolve(binding, env, node)
    if isinstance(binding, Struct):
        values = [(k, render(b, env, node)) for k, b in binding.items]
        return [v for _, v in values] if binding.is_list else dict(values)
    assert isinstance(binding, Template)
    return "".join(
        p if isinstance(p, str) else to_text(resolve(p, env, node)) for p in binding.parts
    )


def resolve(ref: Ref, env: Mapping[str, Any], node: NodeSpec | None, *, loose: bool = False) -> Any:
    """Follow `ref` into `env`; `loose` (conditions) reads a missing or None step as None."""
    value = env.get(ref.root)
    for i, part in enumerate(ref.path):
        if value is None and loose:
            return None
        try:
            if isinstance(value, Mapping):
                value = value[part] if part in value else value[str(part)]
            elif isinstance(value, list | tuple) and isinstance(part, int):
                value = value[part]
            else:
                value = getattr(value, str(part))
        except (KeyError, IndexError, AttributeError, TypeError):
            if loose:
                return None
            where = f"step {node.name!r}" if node is not None else "the flow's output"
            so_far = Ref(ref.root, ref.path[:i]).text()
            raise FlowRunError(
                f"{where}: ${{{ref.text()}}} cannot be read: {so_far} "
                f"({type(value).__name__}) has no {part!r}"
            ) from None
    return value


def to_text(value: Any) -> str:
    """A value as prompt text: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json()
    return orjson.dumps(value, default=_jsonable).decode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    return str(value)
