"""Local servers that speak OpenAI's and Anthropic's HTTP APIs, answering from a script.

Point the official SDK clients at them to test agents offline, with the clients' real request
building, response parsing, errors and retries::

    with OpenAIServer([ToolCalls([ToolCall("search", {"q": "tides"})]), Text("done")]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        ...
        assert len(server.requests("/v1/chat/completions")) == 2

- `OpenAIServer`: `POST /v1/chat/completions` (non-streaming), `GET /v1/models`.
- `AnthropicServer`: `POST /v1/messages` (non-streaming).
- Replies (`replies`): `Text`, `ToolCalls` of `ToolCall`s, `Structured`, with optional `Usage`;
  `RateLimited`, `ServerError`, `Overloaded`, `ContextLengthExceeded` in each provider's error
  shape; `Malformed` bodies and `Drop`ped connections; any of them slow with `delay=`.
- Every request is logged (`requests()`, `wait_requests()`) with its parsed body, its headers
  (secrets redacted) and what it was answered.

Each server runs in a background thread on 127.0.0.1 with a random port, for the lifetime of its
`with` block. The library itself does not need the SDKs; tests that drive them install the
`openai` / `anthropic` extras.
"""

from __future__ import annotations

from .anthropic import AnthropicServer
from .base import ScriptedServer, ScriptError
from .openai import OpenAIServer
from .record import RecordedRequest
from .replies import (
    ContextLengthExceeded,
    Drop,
    Handler,
    Malformed,
    Overloaded,
    RateLimited,
    Reply,
    ReplyLike,
    ServerError,
    Structured,
    Text,
    ToolCall,
    ToolCalls,
    Usage,
    estimate_tokens,
)

__all__ = [
    "AnthropicServer",
    "ContextLengthExceeded",
    "Drop",
    "Handler",
    "Malformed",
    "OpenAIServer",
    "Overloaded",
    "RateLimited",
    "RecordedRequest",
    "Reply",
    "ReplyLike",
    "ScriptError",
    "ScriptedServer",
    "ServerError",
    "Structured",
    "Text",
    "ToolCall",
    "ToolCalls",
    "Usage",
    "estimate_tokens",
]
