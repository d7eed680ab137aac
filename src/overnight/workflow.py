"""`@workflow`: a durable function, written in plain async Python, that calls steps.

A workflow's body is replayed from its journal after a crash, so it must be deterministic: take
time, randomness and concurrency from its `Context`, and do I/O only inside steps.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, overload

from ._engine.scope import validate_name
from .context import Context
from .errors import UserError

I = TypeVar("I")  # noqa: E741 - the conventional name for an input type
O = TypeVar("O")  # noqa: E741


class Workflow(Generic[I, O]):
    """A durable function. Create with `@workflow`; start with `Engine.start`."""

    def __init__(self, fn: Callable[..., Awaitable[O]], *, name: str, version: str | None) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise UserError(
                f"@workflow needs an async function; make {fn.__qualname__!r} async def"
            )
        params = list(inspect.signature(fn).parameters.values())
        if not 1 <= len(params) <= 2:
            raise UserError(
                f"workflow {fn.__qualname__!r} must take (ctx) or (ctx, input); "
                f"it takes {len(params)} parameters"
            )
        self.fn = fn
        self.name = validate_name(name, "workflow")
        self.takes_input = len(params) == 2
        self.ref = f"{fn.__module__}:{fn.__qualname__}"
        self._version = version
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def version(self) -> str:
        """The code version recorded on each run: given, or a hash of the function's source."""
        if self._version is None:
            try:
                source = inspect.getsource(self.fn)
            except (OSError, TypeError):
                source = self.ref
            self._version = "src-" + hashlib.sha256(source.encode()).hexdigest()[:12]
        return self._version

    async def __call__(self, ctx: Context, input: I) -> O:
        if self.takes_input:
            return await self.fn(ctx, input)
        return await self.fn(ctx)

    def __repr__(self) -> str:
        return f"<workflow {self.ref}>"


@overload
def workflow(fn: Callable[[Context, I], Awaitable[O]], /) -> Workflow[I, O]: ...
@overload
def workflow(fn: Callable[[Context], Awaitable[O]], /) -> Workflow[None, O]: ...
@overload
def workflow(
    *, name: str | None = None, version: str | None = None
) -> Callable[[Callable[..., Awaitable[Any]]], Workflow[Any, Any]]: ...


def workflow(
    fn: Callable[..., Awaitable[Any]] | None = None,
    /,
    *,
    name: str | None = None,
    version: str | None = None,
) -> Workflow[Any, Any] | Callable[[Callable[..., Awaitable[Any]]], Workflow[Any, Any]]:
    """Make an async function `(ctx, input) -> output` a durable workflow.

    `version` labels the code on every run it starts (default: a hash of its source).
    """

    def wrap(f: Callable[..., Awaitable[Any]]) -> Workflow[Any, Any]:
        return Workflow(f, name=name or f.__name__, version=version)

    return wrap(fn) if fn is not None else wrap
