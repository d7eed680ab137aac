"""Retries (journaled, honouring Retry-After), fallbacks (journaled), breakers, rate limits."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from overnight import Agent, AgentResult, Context, Engine, workflow
from overnight.models import Message, ModelError, ModelRequest
from overnight.models.resilience import CircuitBreaker, FallbackModel, RateLimiter
from overnight.step import RetryPolicy
from overnight.store import Store
from overnight.testing.models import FunctionModel, ScriptedModel

from .helpers import until_status

REQUEST = ModelRequest((Message("user", "hi"),), max_tokens=10)


def failing(retryable: bool, retry_after: float | None = None) -> ModelError:
    return ModelError("boom", model="test:x", retryable=retryable, retry_after=retry_after)


async def test_fallback_answers_when_the_primary_gives_up_and_both_are_journaled(
    store: Store,
) -> None:
    primary = ScriptedModel([failing(retryable=False)], name="test:primary")
    backup = ScriptedModel(["from the backup"], name="test:backup")
    agent = Agent("fb", model=FallbackModel(primary, backup))

    @workflow
    async def fallback_then_wait(ctx: Context) -> str:
        answer = (await agent.run("hello")).output
        await ctx.wait_signal("go")
        return str(answer)

    async with Engine(store, workflows=[fallback_then_wait], poll_seconds=0.02) as engine:
        handle = await engine.start(fallback_then_wait, run_id="fb")
        await until_status(engine, "fb", "waiting")
        await engine.signal("fb", "go")  # the replay asks neither model again
        assert await handle.result(timeout=5) == "from the backup"
        entries = [(e.key, e.kind) for e in await engine.journal("fb")]
    assert ("agent:fb#1/model#1", "failed") in entries
    assert ("agent:fb#1/fallback#1", "done") in entries
    assert (len(primary.requests), len(backup.requests)) == (1, 1)


async def test_retryable_errors_are_retried_after_retry_after(store: Store) -> None:
    model = ScriptedModel([failing(True, retry_after=0.2), "second time lucky"])
    agent = Agent("rt", model=model, model_retry=RetryPolicy(initial_delay=0.01, jitter=0))

    @workflow
    async def retried(ctx: Context) -> AgentResult[str]:
        return await agent.run("hi")

    async with Engine(store, workflows=[retried], poll_seconds=0.02) as engine:
        started = time.monotonic()
        result = await engine.run(retried, run_id="rt")
        assert time.monotonic() - started >= 0.2  # Retry-After, not the 10 ms backoff
        kinds = [e.kind for e in await engine.journal("rt")]
    assert result.output == "second time lucky"
    assert kinds[:3] == ["intent", "failed", "intent"]


async def test_a_crash_during_a_model_backoff_resumes_the_backoff(
    store_factory: Callable[[], Store],
) -> None:
    model = ScriptedModel([failing(True, retry_after=0.5), "resumed"])
    agent = Agent("bo", model=model, model_retry=RetryPolicy(initial_delay=0.01, jitter=0))

    @workflow
    async def backs_off(ctx: Context) -> str:
        return (await agent.run("hi")).output

    async with Engine(store_factory(), workflows=[backs_off], inline_wait_seconds=0) as first:
        await first.start(backs_off, run_id="bo")
        record = await until_status(first, "bo", "waiting")  # released during the backoff
    assert record.due_at is not None
    async with Engine(store_factory(), workflows=[backs_off], poll_seconds=0.02) as second:
        assert await second.result("bo", timeout=5) == "resumed"
    assert len(model.requests) == 2  # attempt 2 after the backoff, not attempt 1 again


async def test_circuit_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    calls: list[int] = []
    outcomes = [failing(True), failing(True), "probe ok", "fine"]

    def answer(request: ModelRequest) -> object:
        calls.append(1)
        return outcomes[len(calls) - 1]

    breaker = CircuitBreaker(
        FunctionModel(answer), failures=2, reset_after=10, endpoint="cb-test", clock=lambda: now[0]
    )
    for _ in range(2):
        with pytest.raises(ModelError):
            await breaker.request(REQUEST)
    with pytest.raises(ModelError, match="circuit open") as info:
        await breaker.request(REQUEST)  # fails at once, without calling the endpoint
    assert info.value.retryable
    assert info.value.retry_after == pytest.approx(10)
    assert len(calls) == 2
    now[0] = 11  # past reset_after: one probe goes through and closes the circuit
    assert (await breaker.request(REQUEST)).message.content == "probe ok"
    assert (await breaker.request(REQUEST)).message.content == "fine"


async def test_rate_limiter_spaces_requests() -> None:
    limited = RateLimiter(
        FunctionModel(lambda r: "ok"), requests_per_minute=2, window=0.3, endpoint="rl-test"
    )
    started = time.monotonic()
    for _ in range(3):
        await limited.request(REQUEST)
    assert time.monotonic() - started >= 0.14  # the third waited for the bucket to refill
