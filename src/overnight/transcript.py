"""Read back what agents sent and received: the exact prompt and response of every model call.

Model calls are journaled as steps named `model` (or `fallback`) whose input records the digest
of the conversation's hash chain; this module walks the chain back to the messages, applies the
same window trimming the agent applied (recorded as the number of messages sent), and pairs each
request with the response the journal holds. True values are returned: masking is for views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ._engine import codec
from .engine import Engine
from .models.base import Message, ModelResponse


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One model call as the journal holds it."""

    key: str
    """Journal key, e.g. `agent:researcher#1/model#3`."""
    model: str
    """The `provider:model` the request was sent to."""
    messages: tuple[Message, ...]
    """The messages sent, in order."""
    response: ModelResponse | None
    """The response (None if the call is in flight, failed, or was interrupted)."""


async def model_calls(engine: Engine, run_id: str) -> list[ModelCall]:
    """Every model call of a run, in the order they were made."""
    calls: list[ModelCall] = []
    inputs: dict[str, dict[str, Any]] = {}
    for entry in await engine.journal(run_id):
        name = entry.key.rsplit("/", 1)[-1].split("#", 1)[0]
        if name not in ("model", "fallback") or entry.kind not in ("intent", "done"):
            continue
        data = orjson.loads(entry.data)
        if "in" in data:
            (descriptor,), _ = orjson.loads(await _bytes(engine, data["in"]))
            inputs[entry.key] = descriptor
            messages = await _messages(engine, descriptor)
            calls.append(ModelCall(entry.key, descriptor["model"], messages, None))
        if entry.kind == "done":
            response = codec.loads(await _bytes(engine, data["out"]))
            calls = [c if c.key != entry.key else _answered(c, response) for c in calls]
    return calls


def _answered(call: ModelCall, response: ModelResponse) -> ModelCall:
    return ModelCall(call.key, call.model, call.messages, response)


async def _bytes(engine: Engine, field: Any) -> bytes:
    if isinstance(field, dict) and "$blob" in field:
        return await engine.store.get_blob(field["$blob"])
    return orjson.dumps(field)


async def _messages(engine: Engine, descriptor: dict[str, Any]) -> tuple[Message, ...]:
    """The conversation at the call, trimmed as the agent trimmed it."""
    links: list[list[Message]] = []
    digest = descriptor["history"]
    while digest:
        link = orjson.loads(await engine.store.get_blob(digest))
        links.append(codec.decode(link["add"]))
        digest = link["prev"]
    history = [m for added in reversed(links) for m in added]
    sent = descriptor.get("sent", len(history))
    if sent >= len(history):
        return tuple(history)
    head = 2 if history and history[0].role == "system" else 1
    return tuple(history[:head] + history[len(history) - (sent - head) :])
