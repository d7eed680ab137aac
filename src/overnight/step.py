"""`@step`: a unit of work whose completion is journaled and never repeated once recorded.

Every step declares what happens if a crash leaves it in doubt (its intent is journaled, its
completion is not), through its effect class:

- `pure`: no side effects; simply run again. This is a promise the author makes.
- `keyed`: run again with the same idempotency key (`current_step().idempotency_key`, derived
  from the run id and the step key, never from the attempt), so the service dedupes it.
- `reconcilable`: ask the step's `lookup` what happened: `Found(result)`, `NotFound()` (run again
  with the same key) or `Unknown()` (park the run for a person).
- `unsafe` (the default): park the run until a person says whether it took effect.
"""

from __future__ import annotations

import inspect
import random
import typing
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from ._engine.scope import CURRENT, Scope, StepInfo, validate_name
from ._engine.steps import call_step
from .errors import UserError

P = ParamSpec("P")
R = TypeVar("R")

Effect = Literal["pure", "keyed", "reconcilable", "unsafe"]
EFFECTS: tuple[Effect, ...] = ("pure", "keyed", "reconcilable", "unsafe")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how often a failing step is tried again. Retry state is journaled."""

    max_attempts: int = 3
    """Total attempts, the first included. 1 means never retry."""
    initial_delay: float = 1.0
    """Seconds before the second attempt."""
    backoff: float = 2.0
    """Multiplier applied to the delay after each failure."""
    max_delay: float = 60.0
    """Upper bound of a single delay."""
    jitter: float = 0.2
    """Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    """Only these exception types are retried."""
    non_retryable: tuple[type[BaseException], ...] = ()
    """These are never retried, even if they match `retry_on`."""
    retryable: Callable[[BaseException], bool] | None = None
    """Extra predicate: retry only when it returns True."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise UserError(f"RetryPolicy.max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0 or not 0 <= self.jitter <= 1:
            raise UserError("RetryPolicy delays must be >= 0 and jitter between 0 and 1")

    def next_delay(self, failures: int, error: BaseException) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if failures >= self.max_attempts:
            return None
        if not isinstance(error, self.retry_on) or isinstance(error, self.non_retryable):
            return None
        if getattr(error, "retryable", True) is False:
            return None
        if self.retryable is not None and not self.retryable(error):
            return None
        delay = min(self.initial_delay * self.backoff ** (failures - 1), self.max_delay)
        delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        # A server that says when to come back (HTTP Retry-After) is believed.
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > delay:
            delay = float(retry_after)
        return delay


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class Found(Generic[R]):
    """A reconcilable step's lookup found the effect: this is its result."""

    result: R


@dataclass(frozen=True, slots=True)
class NotFound:
    """A reconcilable step's lookup found no effect: run the step again with the same key."""


@dataclass(frozen=True, slots=True)
class Unknown:
    """A reconcilable step's lookup cannot tell: park the run for a person."""

    reason: str = ""


LookupAnswer = Found[Any] | NotFound | Unknown


class Step(Generic[P, R]):
    """A journaled unit of work (see the module docstring). Create with `@step`."""

    def __init__(
        self,
        fn: Callable[P, Any],
        *,
        name: str,
        effect: Effect,
        retry: RetryPolicy,
        timeout: float | None,
    ) -> None:
        if effect not in EFFECTS:
            raise UserError(f"step {name!r}: effect must be one of {EFFECTS}, got {effect!r}")
        self.fn = fn
        self.name = validate_name(name, "step")
        self.effect: Effect = effect
        self.retry = retry
        self.timeout = timeout
        self.ref = f"{fn.__module__}:{fn.__qualname__}"
        self.lookup_fn: Callable[..., Awaitable[LookupAnswer]] | None = None
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        scope = CURRENT.get()
        if type(scope) is Scope:
            return call_step(self, scope, args, kwargs)
        return self._plain(args, kwargs)

    async def _plain(self, args: Any, kwargs: Any) -> R:
        # Outside a workflow (or inside another step) a step is an ordinary function call.
        result: R = await self.fn(*args, **kwargs)
        return result

    def lookup(
        self, fn: Callable[..., Awaitable[LookupAnswer]]
    ) -> Callable[..., Awaitable[LookupAnswer]]:
        """Register how to find out whether an in-doubt call took effect (reconcilable steps).

        The lookup is called with the idempotency key first, then the step's own arguments.
        """
        if self.effect != "reconcilable":
            raise UserError(
                f"step {self.name!r} has effect {self.effect!r}; only effect='reconcilable' "
                "steps take a lookup"
            )
        self.lookup_fn = fn
        return fn

    def return_type(self) -> Any:
        """The declared return annotation, or Any."""
        try:
            hints = typing.get_type_hints(self.fn)
        except Exception:  # unresolvable forward references: validate loosely
            return Any
        return hints.get("return", Any)

    def __repr__(self) -> str:
        return f"<step {self.name!r} effect={self.effect}>"


@overload
def step(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Step[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    effect: Effect = "unsafe",
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Step[P, R]]: ...


def step(
    fn: Callable[P, Coroutine[Any, Any, R]] | None = None,
    /,
    *,
    name: str | None = None,
    effect: Effect = "unsafe",
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Step[P, R] | Callable[[Callable[P, Coroutine[Any, Any, R]]], Step[P, R]]:
    """Make an async function a journaled step.

    `effect` says what to do when a crash leaves the step in doubt (default `unsafe`: park);
    `retry` how to retry failures; `timeout` bounds each attempt in seconds.
    """

    def wrap(f: Callable[P, Coroutine[Any, Any, R]]) -> Step[P, R]:
        if not inspect.iscoroutinefunction(f):
            raise UserError(
                f"@step needs an async function; make {f.__qualname__!r} `async def` "
                "(call blocking code inside it with `await asyncio.to_thread(...)`)"
            )
        return Step(
            f,
            name=name or f.__name__,
            effect=effect,
            retry=retry or DEFAULT_RETRY,
            timeout=timeout,
        )

    return wrap(fn) if fn is not None else wrap


def current_step() -> StepInfo:
    """Inside a running step: its key, attempt and idempotency key."""
    mark = CURRENT.get()
    if type(mark) is not tuple:
        raise UserError("current_step() can only be called inside a running step's body")
    run_id, key, attempt = mark
    return StepInfo(run_id, key, attempt, f"{run_id}/{key}")
