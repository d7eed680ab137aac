"""An OpenAI-compatible server: `POST /v1/chat/completions` (non-streaming) and `GET /v1/models`.

Give the official client its `base_url`::

    with OpenAIServer([Text("hello")]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")

Errors follow the API's shape, `{"error": {"message", "type", "param", "code"}}`, which the SDK
turns into `BadRequestError`, `RateLimitError`, ... with `code` and `type` set from the body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from email.message import Message
from typing import Any, ClassVar, Literal

import orjson

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

__all__ = ["OpenAIServer"]

COMPLETIONS = "/v1/chat/completions"
MODELS = "/v1/models"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
}


class OpenAIServer(ScriptedServer):
    """OpenAI's chat completions API on loopback, answering from a script (see `ScriptedServer`).

    With `api_key` set, requests must carry `Authorization: Bearer <api_key>`.
    """

    provider: ClassVar[str] = "openai"

    def __init__(
        self,
        replies: Iterable[ReplyLike] = (),
        *,
        handler: Handler | None = None,
        api_key: str | None = None,
        models: tuple[str, ...] = ("gpt-test",),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(replies, handler=handler, api_key=api_key, host=host, port=port)
        self.models = models
        """The model ids `GET /v1/models` lists."""

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>/v1`, the `base_url` of `openai.OpenAI`/`AsyncOpenAI`."""
        return f"{self.url}/v1"

    # -- routing --------------------------------------------------------------------------------

    def _route(self, request: RecordedRequest, headers: Message) -> Wire | Literal["script"]:
        if self.api_key is not None:
            authorization = headers.get("Authorization") or ""
            if not authorization:
                return self._error(
                    401,
                    request,
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                )
            if authorization != f"Bearer {self.api_key}":
                return self._error(
                    401, request, "Incorrect API key provided.", code="invalid_api_key"
                )
        route = (request.method, request.path)
        if route == ("GET", MODELS):
            return Wire.json(
                200,
                {"object": "list", "data": [_model(m) for m in self.models]},
                self._headers(request),
            )
        if request.method == "GET" and request.path.startswith(MODELS + "/"):
            model = request.path.removeprefix(MODELS + "/")
            if model in self.models:
                return Wire.json(200, _model(model), self._headers(request))
            return self._error(
                404,
                request,
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
            )
        if route != ("POST", COMPLETIONS):
            return self._error(404, request, f"Invalid URL ({request.method} {request.path})")
        body = request.body
        if not isinstance(body, dict):
            return self._error(400, request, "We could not parse the JSON body of your request.")
        if not isinstance(body.get("model"), str):
            return self._error(400, request, "you must provide a model parameter")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._error(
                400, request, "'messages' must be a non-empty array", param="messages"
            )
        if body.get("stream"):
            return self._error(
                400,
                request,
                "overnight OpenAIServer does not stream: call chat.completions.create "
                "without stream=True",
                param="stream",
            )
        return SCRIPT

    # -- rendering ------------------------------------------------------------------------------

    def _render(self, reply: Reply, request: RecordedRequest) -> Wire:
        if isinstance(reply, Text):
            message: dict[str, Any] = {"content": reply.text}
            return self._completion(request, message, "stop", reply.usage, reply.text)
        if isinstance(reply, ToolCalls):
            calls = [
                {
                    "id": call.id or f"call_{request.seq}_{index}",
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": orjson.dumps(call.arguments).decode(),
                    },
                }
                for index, call in enumerate(reply.calls)
            ]
            message = {"content": reply.text, "tool_calls": calls}
            spoken = [reply.text or "", *[c["function"] for c in calls]]
            return self._completion(request, message, "tool_calls", reply.usage, spoken)
        if isinstance(reply, Structured):
            response_format = request.body.get("response_format")
            if not (
                isinstance(response_format, dict) and response_format.get("type") == "json_schema"
            ):
                raise ReplyMismatch(
                    "the request has no response_format of type 'json_schema' "
                    f"(it has {response_format!r})"
                )
            content = orjson.dumps(reply.data).decode()
            return self._completion(request, {"content": content}, "stop", reply.usage, content)
        if isinstance(reply, RateLimited):
            return self._error(
                429,
                request,
                reply.message
                or f"Rate limit reached for requests. Please try again in {reply.retry_after}s.",
                code="rate_limit_exceeded",
                headers={"retry-after": retry_after(reply.retry_after)},
            )
        if isinstance(reply, ServerError):
            return self._error(
                reply.status,
                request,
                reply.message
                or "The server had an error while processing your request. Sorry about that!",
            )
        if isinstance(reply, Overloaded):
            return self._error(
                503, request, reply.message or "The server is overloaded or not ready yet."
            )
        if isinstance(reply, ContextLengthExceeded):
            return self._error(
                400,
                request,
                f"This model's maximum context length is {reply.limit} tokens. However, your "
                f"messages resulted in {reply.tokens} tokens. Please reduce the length of the "
                "messages.",
                code="context_length_exceeded",
                param="messages",
            )
        raise ReplyMismatch(f"{type(self).__name__} cannot render {reply!r}")

    def _completion(
        self,
        request: RecordedRequest,
        message: dict[str, Any],
        finish_reason: str,
        usage: Usage | None,
        spoken: Any,
    ) -> Wire:
        body = request.body
        if usage is None:
            usage = Usage(
                estimate_tokens([body.get("messages"), body.get("tools")]), estimate_tokens(spoken)
            )
        payload = {
            "id": f"chatcmpl-{request.seq}",
            "object": "chat.completion",
            "created": int(request.at),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "refusal": None, "annotations": [], **message},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_overnight",
        }
        return Wire.json(200, payload, self._headers(request))

    def _error(
        self,
        status: int,
        request: RecordedRequest,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Wire:
        error = {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": param,
            "code": code,
        }
        return Wire.json(status, {"error": error}, {**self._headers(request), **(headers or {})})

    @staticmethod
    def _headers(request: RecordedRequest) -> dict[str, str]:
        return {"x-request-id": f"req_{request.seq}"}


def _model(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": "overnight"}
