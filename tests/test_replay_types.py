"""End to end through the engine: a replayed step gives back exactly what it first returned.

The workflow calls a pure step, then suspends on a signal; the signal makes a fresh execution
replay the workflow from the journal, so the step's value then comes from the journal (the step
is not run again) and must equal the original and be of the same type at every level.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overnight import Context, Engine, StepFailed, step, workflow
from overnight.errors import SerializationError
from overnight.store import MemoryStore, Store
from overnight.store.postgres import PostgresStore
from overnight.store.sqlite import SqliteStore

from .conftest import POSTGRES_URL, fresh_schema, with_options
from .test_codec import assert_same, values

# What `produce` returns and how often it ran, by token (the run id): a step's arguments must
# be journalable, so the generated value is handed over through this module instead.
VALUES: dict[str, Any] = {}
INVOCATIONS: dict[str, int] = {}


@step(effect="pure")
async def produce(token: str) -> Any:
    INVOCATIONS[token] = INVOCATIONS.get(token, 0) + 1
    return VALUES[token]


@workflow
async def produce_then_wait(ctx: Context, token: str) -> Any:
    value = await produce(token)
    await ctx.wait_signal("go")
    return value


async def _until_waiting(engine: Engine, run_id: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (record := await engine.get_run(run_id)).status != "waiting":
        assert record.status in ("queued", "running"), f"run {run_id} is {record.status}"
        assert loop.time() < deadline, f"run {run_id} stayed {record.status}"
        await asyncio.sleep(0.005)


async def _replay_once(engine: Engine, value: Any) -> Any:
    token = uuid.uuid4().hex
    VALUES[token] = value
    try:
        handle = await engine.start(produce_then_wait, token, run_id=token)
        await _until_waiting(engine, token)
        await engine.signal(token, "go")
        output = await handle.result(timeout=10)
        assert INVOCATIONS[token] == 1  # the resumed execution replayed the step
        kinds = [e.kind for e in await engine.journal(token) if e.key == "produce#1"]
        assert kinds == ["done"]
        return output
    finally:
        VALUES.pop(token, None)
        INVOCATIONS.pop(token, None)


@contextlib.contextmanager
def postgres_store(tmp: Path) -> Iterator[Store]:
    with fresh_schema() as schema:
        yield PostgresStore(with_options(POSTGRES_URL, schema=schema, pool_max=4))


STORES: dict[str, Callable[[Path], contextlib.AbstractContextManager[Store]]] = {
    "memory": lambda tmp: contextlib.nullcontext(MemoryStore()),
    "sqlite": lambda tmp: contextlib.nullcontext(SqliteStore(str(tmp / "runs.db"))),
    "postgres": postgres_store,
}


# Large values too: past the inline limit the journal keeps them as blobs.
replay_values = st.one_of(values, st.lists(values, min_size=40, max_size=60))


@pytest.mark.parametrize("kind", list(STORES))
def test_replayed_step_value_is_equal_and_of_the_same_type(kind: str, tmp_path: Path) -> None:
    # One engine and one event loop for all examples (hypothesis drives a sync function),
    # each example on its own run id.
    with STORES[kind](tmp_path) as store, asyncio.Runner() as runner:
        engine = Engine(store, poll_seconds=0.05, lease_seconds=5)
        runner.run(engine.open())
        try:

            @settings(max_examples=25, deadline=None)
            @given(replay_values)
            def check(value: Any) -> None:
                assert_same(value, runner.run(_replay_once(engine, value)))

            check()
        finally:
            runner.run(engine.close())


# -- values the journal cannot hold ----------------------------------------------------------


class Handle:
    """An object with no journal encoding (think: a client or a connection)."""


@step(effect="pure")
async def returns_handle() -> Any:
    return Handle()


@step(effect="pure")
async def takes_anything(value: Any) -> str:
    return "ran"


@workflow
async def catches_bad_result(ctx: Context) -> list[Any]:
    try:
        await returns_handle()
    except StepFailed as exc:
        return [exc.key, exc.error_type, exc.message, exc.attempts]
    return ["unreachable"]


@workflow
async def passes_bad_argument(ctx: Context) -> str:
    try:
        await takes_anything({"client": [Handle()]})
    except SerializationError as exc:
        return str(exc)
    return "unreachable"


async def test_unserialisable_step_result_fails_that_step(engine: Engine) -> None:
    key, error_type, message, attempts = await engine.run(catches_bad_result, run_id="bad-out")
    assert (key, error_type, attempts) == ("returns_handle#1", "SerializationError", 1)
    assert "step 'returns_handle#1' returned a value the journal cannot hold" in message
    assert "test_replay_types.Handle" in message
    # Journaled as that step's final failure, so a replay raises the same StepFailed.
    entries = [e for e in await engine.journal("bad-out") if e.key == "returns_handle#1"]
    assert [e.kind for e in entries] == ["failed"]


async def test_unserialisable_step_argument_raises_at_the_call(engine: Engine) -> None:
    message = await engine.run(passes_bad_argument, run_id="bad-in")
    assert message.startswith("step 'takes_anything#1' argument 1['client'][0]: "), message
    assert "test_replay_types.Handle" in message
    assert "build clients and connections inside the step" in message
    assert not [e for e in await engine.journal("bad-in") if e.key == "takes_anything#1"]
