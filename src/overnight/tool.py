"""`@tool`: a typed Python function an agent may call, with validated arguments.

The arguments' JSON Schema (what the model sees) and their validation (what the engine
enforces) both come from the function's signature, through pydantic: bounds from `Annotated`
constraints hold, unknown fields are rejected. Like a step, a tool declares its effect class
(undeclared means `unsafe`), because a tool call made by an agent inside a workflow is journaled
as a step of that class.

Some parameters never reach the model or the journal:
- `idempotency_key: str` — filled with the call's stable idempotency key (keyed tools);
- parameters named in `credentials={"param": "ENV_VAR"}` — filled from the environment (or the
  engine's secret source) at execution, after recording, so a secret never enters a prompt or
  the journal.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, overload

import pydantic

from ._engine.crash import crash_point
from ._engine.scope import validate_name
from .errors import UserError
from .models.base import ToolSpec
from .step import EFFECTS, Effect, RetryPolicy, Step, current_step

P = ParamSpec("P")
R = TypeVar("R")

INJECTED = "idempotency_key"
NO_RETRY = RetryPolicy(max_attempts=1)


class ToolArgumentsError(UserError):
    """The model's arguments do not fit the tool: the message is fed back to the model."""


class Tool(Generic[R]):
    """A function an agent may call (see the module docstring). Create with `@tool`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        description: str,
        effect: Effect,
        credentials: Mapping[str, str],
        timeout: float | None,
    ) -> None:
        if effect not in EFFECTS:
            raise UserError(f"tool {name!r}: effect must be one of {EFFECTS}, got {effect!r}")
        self.fn = fn
        self.name = validate_name(name, "tool")
        self.description = description
        self.effect: Effect = effect
        self.credentials = dict(credentials)
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        self.args_model = _arguments_model(fn, name, hidden={INJECTED, *self.credentials})
        self.takes_key = INJECTED in inspect.signature(fn).parameters
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @functools.cached_property
    def step(self) -> Step[Any, R]:
        """The step an agent's call of this tool runs as: journaled under the tool's effect
        class, never retried by the engine (errors go back to the model, which can correct)."""

        async def run_tool(arguments: dict[str, Any]) -> R:
            result = await self.invoke(arguments, idempotency_key=current_step().idempotency_key)
            crash_point("after_tool_effect")
            return result

        spec: Step[Any, R] = Step(
            run_tool, name=f"tool:{self.name}", effect=self.effect, retry=NO_RETRY, timeout=None
        )
        spec.ref = f"{self.fn.__module__}:{self.fn.__qualname__}"
        return spec

    def step_for_types(self) -> Step[Any, R]:
        """A step whose return type is the tool's (to validate a person's resolution)."""
        return Step(self.fn, name=self.name, effect=self.effect, retry=NO_RETRY, timeout=None)

    def spec(self) -> ToolSpec:
        """The tool as the model sees it."""
        schema = self.args_model.model_json_schema()
        schema.pop("title", None)
        return ToolSpec(self.name, self.description, schema)

    def validate(self, arguments: str | Mapping[str, Any]) -> dict[str, Any]:
        """Validated arguments, or ToolArgumentsError saying what is wrong (for the model)."""
        try:
            if isinstance(arguments, str):
                parsed = self.args_model.model_validate_json(arguments or "{}")
            else:
                parsed = self.args_model.model_validate(dict(arguments))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolArgumentsError(
                f"invalid arguments for tool {self.name!r}: {problems}"
            ) from None
        return {k: getattr(parsed, k) for k in type(parsed).model_fields}

    async def invoke(self, arguments: Mapping[str, Any], *, idempotency_key: str) -> R:
        """Run the tool with validated arguments, injecting the key and credentials."""
        kwargs = dict(arguments)
        if self.takes_key:
            kwargs[INJECTED] = idempotency_key
        for param, variable in self.credentials.items():
            value = os.environ.get(variable)
            if value is None:
                raise UserError(
                    f"tool {self.name!r} needs the credential {variable!r}: set that "
                    "environment variable for the worker"
                )
            kwargs[param] = value
        if self.is_async:
            call: Awaitable[R] = self.fn(**kwargs)
        else:
            call = asyncio.to_thread(self.fn, **kwargs)
        if self.timeout is None:
            return await call
        async with asyncio.timeout(self.timeout):
            return await call

    def __repr__(self) -> str:
        return f"<tool {self.name!r} effect={self.effect}>"


def _arguments_model(
    fn: Callable[..., Any], name: str, hidden: set[str]
) -> type[pydantic.BaseModel]:
    """A pydantic model of the function's visible parameters; unknown fields forbidden."""
    try:
        hints = _type_hints(fn)
    except Exception as exc:
        raise UserError(
            f"tool {name!r}: cannot read the parameter types of {fn.__qualname__!r} ({exc}); "
            "annotate every parameter with a type pydantic understands"
        ) from None
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.name in hidden:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise UserError(
                f"tool {name!r}: *args/**kwargs cannot be described to a model; "
                "name every parameter"
            )
        if param.name not in hints:
            raise UserError(
                f"tool {name!r}: parameter {param.name!r} has no type annotation; the model "
                "needs its type (e.g. `query: str`)"
            )
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], default)
    config = pydantic.ConfigDict(extra="forbid")
    try:
        model: type[pydantic.BaseModel] = pydantic.create_model(
            f"{name}_arguments", __config__=config, **fields
        )
        model.model_json_schema()
    except Exception as exc:
        raise UserError(
            f"tool {name!r}: cannot build a JSON Schema for its parameters ({exc}); use types "
            "pydantic can describe (str, int, float, bool, list, dict, Literal, Enum, models)"
        ) from None
    return model


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    return typing.get_type_hints(fn, include_extras=True)


@overload
def tool(fn: Callable[P, Awaitable[R]], /) -> Tool[R]: ...
@overload
def tool(fn: Callable[P, R], /) -> Tool[R]: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    effect: Effect = "unsafe",
    credentials: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], Tool[Any]]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    effect: Effect = "unsafe",
    credentials: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Tool[Any] | Callable[[Callable[..., Any]], Tool[Any]]:
    """Make a function (sync or async) a tool agents may be granted.

    `description` defaults to the docstring; `effect` is the kernel's effect class (default
    `unsafe`); `credentials` maps parameters to environment variables read at execution.
    """

    def wrap(f: Callable[..., Any]) -> Tool[Any]:
        text = description if description is not None else inspect.getdoc(f) or ""
        return Tool(
            f,
            name=name or f.__name__,
            description=text,
            effect=effect,
            credentials=credentials or {},
            timeout=timeout,
        )

    return wrap(fn) if fn is not None else wrap
