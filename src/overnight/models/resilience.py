"""Wrappers that make models dependable: fallback chains, circuit breakers, client rate limits.

Each is itself a `Model`, so they compose (`FallbackModel(CircuitBreaker(a), b)`). Retries are
not here: the engine retries a retryable `ModelError` as a journaled step (honouring
Retry-After), so a crash in the middle of a backoff resumes the backoff. Fallbacks are journaled
too: an agent given a `FallbackModel` makes one durable call per model it tries, so a replay
knows which model answered without asking any of them again.

Breakers and rate limits hold state per endpoint for this process (they protect providers and
our budgets in real time; they are not part of a run's history).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UserError
from .base import Model, ModelError, ModelRequest, ModelResponse
from .tokens import request_tokens


class FallbackModel:
    """Try models in order: the next one answers when the previous gave up."""

    def __init__(self, *models: Model) -> None:
        if len(models) < 2:
            raise UserError("FallbackModel needs at least two models: a primary and a fallback")
        self.models = models

    @property
    def name(self) -> str:
        return self.models[0].name

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Outside an agent (no journal): try each model once, in order."""
        errors: list[str] = []
        for model in self.models:
            try:
                return await model.request(request)
            except ModelError as exc:
                errors.append(f"{model.name}: {exc}")
        raise ModelError(
            "every model of the fallback chain failed: " + "; ".join(errors),
            model=self.name,
            retryable=False,
        )


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    """Stop calling an endpoint that keeps failing; probe it again after `reset_after` s.

    While open, requests fail at once with a retryable `ModelError` whose `retry_after` is the
    time left, so the engine's retry (or a fallback) takes over without hammering the endpoint.
    """

    _circuits: dict[str, _Circuit] = {}  # noqa: RUF012 - one circuit per endpoint per process

    def __init__(
        self,
        model: Model,
        *,
        failures: int = 5,
        reset_after: float = 30.0,
        endpoint: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.failures = failures
        self.reset_after = reset_after
        self.endpoint = endpoint or model.name
        self._clock = clock

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def circuit(self) -> _Circuit:
        return self._circuits.setdefault(self.endpoint, _Circuit())

    async def request(self, request: ModelRequest) -> ModelResponse:
        circuit = self.circuit
        if circuit.opened_at is not None:
            left = circuit.opened_at + self.reset_after - self._clock()
            if left > 0 or circuit.probing:
                raise ModelError(
                    f"circuit open for {self.endpoint!r} after {circuit.failures} failures; "
                    f"next probe in {max(left, 0):.1f} s",
                    model=self.name,
                    retryable=True,
                    retry_after=max(left, 0.0),
                )
            circuit.probing = True  # half-open: this request is the probe
        try:
            response = await self.model.request(request)
        except ModelError as exc:
            if exc.retryable:
                circuit.failures += 1
                if circuit.failures >= self.failures or circuit.probing:
                    circuit.opened_at = self._clock()
            circuit.probing = False
            raise
        self._circuits[self.endpoint] = _Circuit()  # a success closes the circuit
        return response


class RateLimiter:
    """Client-side limits per endpoint: requests and tokens per minute (token buckets).

    A request waits until both buckets hold enough; tokens are estimated before the call (the
    request's size plus its `max_tokens`) with an offline estimate, no tokenizer download.
    `window` is the period the limits refer to (60 s: per minute); buckets hold one window's
    worth, so a burst up to the limit goes at once.
    """

    _buckets: dict[tuple[str, str], _Bucket] = {}  # noqa: RUF012 - per endpoint per process

    def __init__(
        self,
        model: Model,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        endpoint: str | None = None,
        window: float = 60.0,
    ) -> None:
        if requests_per_minute is None and tokens_per_minute is None:
            raise UserError("RateLimiter needs requests_per_minute, tokens_per_minute or both")
        self.window = window
        self.model = model
        self.endpoint = endpoint or model.name
        self.limits = {"requests": requests_per_minute, "tokens": tokens_per_minute}

    @property
    def name(self) -> str:
        return self.model.name

    async def request(self, request: ModelRequest) -> ModelResponse:
        need = {"requests": 1.0, "tokens": float(request_tokens(request) + request.max_tokens)}
        for kind, per_minute in self.limits.items():
            if per_minute is not None:
                bucket = self._buckets.setdefault(
                    (self.endpoint, kind), _Bucket(per_minute, self.window)
                )
                await bucket.take(need[kind])
        return await self.model.request(request)


class _Bucket:
    """A token bucket refilled continuously, holding at most one window's worth."""

    def __init__(self, limit: float, window: float) -> None:
        self.rate = limit / window
        self.capacity = limit
        self.level = limit
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, amount: float) -> None:
        amount = min(amount, self.capacity)  # a request larger than a minute's worth still goes
        async with self.lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) / self.rate)
