"""An Anthropic-compatible server: `POST /v1/messages` (non-streaming).

Give the official client its `base_url`::

    with AnthropicServer([Text("hello")]) as server:
        client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test")

Errors follow the API's shape, `{"type": "error", "error": {"type", "message"}, "request_id"}`,
which the SDK turns into `BadRequestError`, `RateLimitError`, `OverloadedError`, ... with
`type` and `api_message` set from the body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from email.message import Message
from typing import Any, ClassVar, Literal

from .base import SCRIPT, ReplyMismatch, ScriptedServer, Wire, retry_after
from .record import RecordedRequest
from .replies import (
    ContextLengthExceeded,
    Handler,
    Overloaded,
    RateLimited,
    Reply,
    ReplyLike,
    ServerError,
    Structured,
    Text,
    ToolCalls,
    Usage,
    estimate_tokens,
)

__all__ = ["AnthropicServer"]

MESSAGES = "/v1/messages"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class AnthropicServer(ScriptedServer):
    """Anthropic's messages API on loopback, answering from a script (see `ScriptedServer`).

    With `api_key` set, requests must carry it as `x-api-key` or `Authorization: Bearer` (the
    SDK sends one or the other depending on its version).
    """

    provider: ClassVar[str] = "anthropic"

    def __init__(
        self,
        replies: Iterable[ReplyLike] = (),
        *,
        handler: Handler | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(replies, handler=handler, api_key=api_key, host=host, port=port)

    # -- routing --------------------------------------------------------------------------------

    def _route(self, request: RecordedRequest, headers: Message) -> Wire | Literal["script"]:
        if self.api_key is not None:
            presented = headers.get("x-api-key") or (
                (headers.get("Authorization") or "").removeprefix("Bearer ")
            )
            if presented != self.api_key:
                return self._error(401, request, "invalid x-api-key")
        if (request.method, request.path) != ("POST", MESSAGES):
            return self._error(404, request, "Not found")
        body = request.body
        if not isinstance(body, dict):
            return self._error(400, request, "The request body is not a JSON object")
        for name, kind in (("model", str), ("max_tokens", int), ("messages", list)):
            if name not in body:
                return self._error(400, request, f"{name}: Field required")
            if not isinstance(body[name], kind):
                return self._error(400, request, f"{name}: Input should be a valid {kind.__name__}")
        if body.get("stream"):
            return self._error(
                400,
                request,
                "overnight AnthropicServer does not stream: call messages.create without "
                "stream=True",
            )
        return SCRIPT

    # -- rendering ------------------------------------------------------------------------------

    def _render(self, reply: Reply, request: RecordedRequest) -> Wire:
        if isinstance(reply, Text):
            text = [{"type": "text", "text": reply.text}]
            return self._message(request, text, "end_turn", reply.usage)
        if isinstance(reply, ToolCalls):
            content: list[dict[str, Any]] = []
            if reply.text:
                content.append({"type": "text", "text": reply.text})
            content.extend(
                {
                    "type": "tool_use",
                    "id": call.id or f"toolu_{request.seq}_{index}",
                    "name": call.name,
                    "input": call.arguments,
                }
                for index, call in enumerate(reply.calls)
            )
            return self._message(request, content, "tool_use", reply.usage)
        if isinstance(reply, Structured):
            return self._message(request, [self._forced(reply, request)], "tool_use", reply.usage)
        if isinstance(reply, RateLimited):
            return self._error(
                429,
                request,
                reply.message
                or "This request would exceed the rate limit for your organization. "
                f"Please try again in {reply.retry_after}s.",
                headers={"retry-after": retry_after(reply.retry_after)},
            )
        if isinstance(reply, ServerError):
            return self._error(reply.status, request, reply.message or "Internal server error")
        if isinstance(reply, Overloaded):
            return self._error(529, request, reply.message or "Overloaded")
        if isinstance(reply, ContextLengthExceeded):
            return self._error(
                400, request, f"prompt is too long: {reply.tokens} tokens > {reply.limit} maximum"
            )
        raise ReplyMismatch(f"{type(self).__name__} cannot render {reply!r}")

    @staticmethod
    def _forced(reply: Structured, request: RecordedRequest) -> dict[str, Any]:
        """The `tool_use` block answering the tool the request forces with `tool_choice`."""
        choice = request.body.get("tool_choice")
        if not (isinstance(choice, dict) and choice.get("type") == "tool"):
            raise ReplyMismatch(
                f"the request forces no tool (its tool_choice is {choice!r}, not of type 'tool')"
            )
        name = choice.get("name")
        offered = [t.get("name") for t in request.body.get("tools") or [] if isinstance(t, dict)]
        if name not in offered:
            raise ReplyMismatch(f"tool_choice names {name!r} but the tools are {offered!r}")
        if not isinstance(reply.data, dict):
            kind = type(reply.data).__name__
            raise ReplyMismatch(f"a tool's input is a JSON object, not a {kind}")
        return {
            "type": "tool_use",
            "id": f"toolu_{request.seq}_0",
            "name": name,
            "input": reply.data,
        }

    def _message(
        self,
        request: RecordedRequest,
        content: list[dict[str, Any]],
        stop_reason: str,
        usage: Usage | None,
    ) -> Wire:
        body = request.body
        if usage is None:
            asked = [body.get("system"), body.get("messages"), body.get("tools")]
            usage = Usage(estimate_tokens(asked), estimate_tokens(content))
        payload = {
            "id": f"msg_{request.seq}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return Wire.json(200, payload, self._headers(request))

    def _error(
        self,
        status: int,
        request: RecordedRequest,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Wire:
        error: dict[str, Any] = {"type": _ERROR_TYPES.get(status, "api_error"), "message": message}
        if code is not None:
            error["details"] = {"error_code": code}
        payload = {"type": "error", "error": error, "request_id": f"req_{request.seq}"}
        return Wire.json(status, payload, {**self._headers(request), **(headers or {})})

    @staticmethod
    def _headers(request: RecordedRequest) -> dict[str, str]:
        return {"request-id": f"req_{request.seq}"}
