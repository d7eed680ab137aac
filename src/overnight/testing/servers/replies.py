"""What a scripted server answers: one dataclass per kind of reply, the same for every provider.

A test queues replies (`server.add(Text("hi"), RateLimited(retry_after=2))`) or answers from a
handler function; each server renders a reply in its provider's wire format. A plain `str` is
accepted wherever a reply is, as `Text(str)`.

Every reply can be made slow with `delay=` (seconds the server waits before answering), to
exercise client timeouts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from .record import RecordedRequest

__all__ = [
    "ContextLengthExceeded",
    "Drop",
    "Handler",
    "Malformed",
    "Overloaded",
    "RateLimited",
    "Reply",
    "ReplyLike",
    "ServerError",
    "Structured",
    "Text",
    "ToolCall",
    "ToolCalls",
    "Usage",
    "estimate_tokens",
]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts a reply reports. Unset counts default to `estimate_tokens` of the text."""

    input_tokens: int
    """Prompt tokens (OpenAI `prompt_tokens`, Anthropic `input_tokens`)."""
    output_tokens: int
    """Completion tokens (OpenAI `completion_tokens`, Anthropic `output_tokens`)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model makes."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    """The call's arguments (sent as a JSON string to OpenAI clients, an object to Anthropic's)."""
    id: str | None = None
    """The call id; by default `call_<request>_<index>` (OpenAI) or `toolu_<request>_<index>`."""


@dataclass(frozen=True, slots=True)
class Text:
    """The model answers with text and ends its turn."""

    text: str
    usage: Usage | None = None
    """Token counts to report; by default estimated from the request and the text."""
    delay: float = field(default=0.0, kw_only=True)
    """Seconds to wait before answering."""
    kind: Literal["text"] = field(default="text", init=False)


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """The model calls one or several tools in one turn (optionally after some text)."""

    calls: Sequence[ToolCall]
    text: str | None = None
    """Text before the calls (OpenAI message `content`, an Anthropic `text` block)."""
    usage: Usage | None = None
    delay: float = field(default=0.0, kw_only=True)
    kind: Literal["tool_calls"] = field(default="tool_calls", init=False)


@dataclass(frozen=True, slots=True)
class Structured:
    """The model answers a structured-output request with `data`.

    OpenAI: JSON `content` for a request whose `response_format` is of type `json_schema`.
    Anthropic: a `tool_use` block of the tool the request forces (`tool_choice` of type `tool`).
    A request that asks for neither gets a script error: the test and the client disagree.
    """

    data: Any
    usage: Usage | None = None
    delay: float = field(default=0.0, kw_only=True)
    kind: Literal["structured"] = field(default="structured", init=False)


@dataclass(frozen=True, slots=True)
class RateLimited:
    """HTTP 429 in the provider's shape, with a `Retry-After` header (seconds)."""

    retry_after: float = 1.0
    message: str | None = None
    delay: float = field(default=0.0, kw_only=True)
    kind: Literal["rate_limited"] = field(default="rate_limited", init=False)


@dataclass(frozen=True, slots=True)
class ServerError:
    """HTTP 500 (or another 5xx `status`) in the provider's shape."""

    status: int = 500
    message: str | None = None
    delay: float = field(default=0.0, kw_only=True)
    kind: Literal["server_error"] = field(default="server_error", init=False)


@dataclass(frozen=True, slots=True)
class Overloaded:
    """The provider is overloaded: Anthropic 529 `overloaded_error`, OpenAI 503."""

    message: str | None = None
    delay: float = field(default=0.0, kw_only=True)
    kind: Literal["overloaded"] = field(default="overloaded", init=False)


@dataclass(frozen=True, slots=True)
class ContextLengthExceeded:
    """HTTP 400: the prompt is longer than the model's context window, in the provider's words."""

    tokens: int = 200_001
    """Tokens the prompt is said to have."""
    limit: int = 200_000
    """The model's context window, in tokens."""
    delay: float = field(default=0.0, kw_only=True)
    kind: Literal["context_length"] = field(default="context_length", init=False)


@dataclass(frozen=True, slots=True)
class Malformed:
    """A response whose body is not the JSON it claims to be (`Content-Type: application/json`)."""

    body: bytes = b'{"id": "truncated'
    status: int = 200
    delay: float = field(default=0.0, kw_only=True)
    kind: Literal["malformed"] = field(default="malformed", init=False)


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection after reading the request, without answering."""

    delay: float = field(default=0.0, kw_only=True)
    kind: Literal["drop"] = field(default="drop", init=False)


Reply = (
    Text
    | ToolCalls
    | Structured
    | RateLimited
    | ServerError
    | Overloaded
    | ContextLengthExceeded
    | Malformed
    | Drop
)
"""Every kind of scripted reply (discriminated by `kind`)."""

_KINDS = (
    Text,
    ToolCalls,
    Structured,
    RateLimited,
    ServerError,
    Overloaded,
    ContextLengthExceeded,
    Malformed,
    Drop,
)

ReplyLike = Reply | str
"""A reply, or a string meaning `Text(string)`."""

Handler = Callable[[RecordedRequest], ReplyLike]
"""Answers a request the queued script does not cover: `(request) -> reply`."""


def as_reply(reply: ReplyLike) -> Reply:
    """`reply` itself, or `Text(reply)` for a string; rejects anything else with a clear error."""
    if isinstance(reply, str):
        return Text(reply)
    if not isinstance(reply, _KINDS):
        raise TypeError(
            f"a scripted reply must be a str or one of overnight.testing.servers' reply "
            f"classes (Text, ToolCalls, ...), not {type(reply).__name__}"
        )
    return reply


def estimate_tokens(value: Any) -> int:
    """A deterministic token count: a quarter of the characters of `value` (JSON unless a str)."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return max(1, math.ceil(len(text) / 4))
