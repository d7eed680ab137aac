"""Models for tests and offline demos: no network, fully deterministic.

- `FunctionModel(fn)` answers every request with `fn(request)` (sync or async), so a test can
  look at what the agent sent and decide what the model says.
- `ScriptedModel([...])` plays a script of replies in order: a string is a text reply, a
  `ToolCall`/list of them is a turn that calls tools, a dict is a structured output, a
  `ModelError` is raised, a `ModelResponse` is returned as is. Running past the end is an error
  that says so. Every request it received is in `requests`.

Both report usage as a deterministic estimate (about four characters per token), so budgets and
cost figures in tests are stable.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..errors import UserError
from ..models.base import (
    Message,
    ModelError,
    ModelRequest,
    ModelResponse,
    ToolCall,
    Usage,
)
from ..models.tokens import estimate_tokens, request_tokens

Reply = str | ToolCall | Sequence[ToolCall] | dict[str, Any] | ModelError | ModelResponse


def respond(model: str, request: ModelRequest, reply: Reply, turn: int) -> ModelResponse:
    """Turn a script entry into the response a provider would have sent."""
    if isinstance(reply, ModelError):
        raise reply
    if isinstance(reply, ModelResponse):
        return reply
    if isinstance(reply, ToolCall):
        reply = [reply]
    if isinstance(reply, str):
        message = Message("assistant", reply)
        finish = "stop"
    elif isinstance(reply, dict):
        message = Message("assistant", json.dumps(reply))
        finish = "stop"
    else:
        calls = tuple(reply)
        if not all(isinstance(c, ToolCall) for c in calls):
            raise UserError(f"script entry {turn}: expected ToolCall objects, got {reply!r}")
        message = Message("assistant", "", tool_calls=calls)
        finish = "tool_calls"
    out_tokens = estimate_tokens(message.content) + sum(
        estimate_tokens(c.name) + estimate_tokens(c.arguments) for c in message.tool_calls
    )
    usage = Usage(input_tokens=request_tokens(request), output_tokens=out_tokens)
    return ModelResponse(message, usage, model=model, finish_reason=finish)


class ScriptedModel:
    """Plays a script of replies, one per request (see the module docstring)."""

    def __init__(self, replies: Sequence[Reply], *, name: str = "test:scripted") -> None:
        self._replies = list(replies)
        self._name = name
        self.requests: list[ModelRequest] = []
        """Every request received, in order."""

    @property
    def name(self) -> str:
        return self._name

    async def request(self, request: ModelRequest) -> ModelResponse:
        turn = len(self.requests)
        self.requests.append(request)
        if turn >= len(self._replies):
            raise UserError(
                f"{self._name}: the script has {len(self._replies)} replies and request "
                f"{turn + 1} asked for another; add replies to the script"
            )
        return respond(self._name, request, self._replies[turn], turn)


class FunctionModel:
    """Answers each request with a function of it (see the module docstring)."""

    def __init__(
        self,
        fn: Callable[[ModelRequest], Reply | Awaitable[Reply]],
        *,
        name: str = "test:function",
    ) -> None:
        self._fn = fn
        self._name = name
        self.requests: list[ModelRequest] = []
        """Every request received, in order."""

    @property
    def name(self) -> str:
        return self._name

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        reply = self._fn(request)
        if inspect.isawaitable(reply):
            reply = await reply
        return respond(self._name, request, reply, len(self.requests) - 1)
