"""`OpenAIModel`: OpenAI's chat completions API, and every server that speaks it.

Built on the official `openai` SDK (`pip install "overnight[openai]"`). The base URL makes it
any OpenAI-compatible server: Ollama, vLLM, llama.cpp's server, LM Studio, Groq, Together,
Mistral... (`OPENAI_BASE_URL`, or `base_url=`). The key is `OPENAI_API_KEY` (or `api_key=`);
a server on this machine needs none.

Structured output (`ModelRequest.output`) comes in three modes:
- `native`: `response_format` of type `json_schema`, `strict` when the schema allows it (the
  schema is made strict-compatible first, see `_schema.strict_schema`);
- `prompted`: the schema goes into the system prompt with a request for JSON only, for
  servers without `json_schema`; the reply is validated by the agent as always;
- `auto` (the default): native, until the server answers 400/422 about `response_format`;
  then prompted, for this request and every later one of this instance.

The SDK client is created with `max_retries=0`: the engine retries (see `_provider`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from ..errors import UserError

try:
    import openai
except ImportError as exc:  # pragma: no cover - exercised by simulating the import failure
    raise UserError(
        'the "openai" provider needs the openai SDK: pip install "overnight[openai]"'
    ) from exc

from . import _provider, _schema
from .base import Message, ModelError, ModelRequest, ModelResponse, ToolCall, Usage

__all__ = ["OpenAIModel", "StructuredMode"]

StructuredMode = Literal["native", "prompted", "auto"]

_CONTEXT_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})
_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "context window",
    "context size",
    "maximum context",
    "too many tokens",
    "prompt is too long",
)


class OpenAIModel(_provider.SdkModel):
    """A model behind OpenAI's chat completions API (see the module docstring)."""

    provider = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        context_window: int | None = None,
        structured: StructuredMode = "auto",
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        if not model:
            raise UserError("OpenAIModel needs a model name, e.g. OpenAIModel('gpt-4o-mini')")
        if structured not in ("native", "prompted", "auto"):
            raise UserError(
                f"structured must be 'native', 'prompted' or 'auto', got {structured!r}"
            )
        if timeout <= 0:
            raise UserError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.model = model
        self.timeout = timeout
        self._context_window = context_window
        self.structured: StructuredMode = structured
        self._native: bool | None = {"native": True, "prompted": False, "auto": None}[structured]
        if client is not None:
            self._hint = "the API key of the client given to OpenAIModel"
            self.client = client.with_options(max_retries=0)
        else:
            found = _provider.credentials(
                provider="openai",
                model=model,
                api_key=api_key,
                base_url=base_url,
                key_env="OPENAI_API_KEY",
                url_env="OPENAI_BASE_URL",
                cls="OpenAIModel",
            )
            self._hint = found.hint
            self.client = openai.AsyncOpenAI(
                api_key=found.api_key, base_url=found.base_url, timeout=timeout, max_retries=0
            )
        self.base_url = str(self.client.base_url).rstrip("/")
        """The endpoint requests go to (e.g. `https://api.openai.com/v1`)."""
        # OpenAI itself wants max_completion_tokens (its reasoning models refuse max_tokens);
        # compatible servers have long known max_tokens, and not all know the newer name.
        official = (self.client.base_url.host or "").endswith("openai.com")
        self._limit_param = "max_completion_tokens" if official else "max_tokens"

    # -- requests -------------------------------------------------------------------------------

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one chat completion; raise `ModelError` on failure."""
        meta: dict[str, Any] = {}
        if request.output is not None and self._native is not False:
            try:
                response = await self._send(request, native=True, meta=meta)
            except _FormatRejected as rejected:
                if self.structured == "native":
                    raise rejected.error from None
                self._native = False
                meta["structured_fallback"] = str(rejected.error)
            else:
                self._native = True
                return response
        return await self._send(request, native=False, meta=meta)

    async def _send(
        self, request: ModelRequest, *, native: bool, meta: dict[str, Any]
    ) -> ModelResponse:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": _messages(request.messages),
            self._limit_param: request.max_tokens,
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.tools:
            params["tools"] = [_tool(t.name, t.description, t.parameters) for t in request.tools]
        wrapped = False
        output = request.output
        if output is not None:
            if native:
                schema, wrapped = _schema.object_root(output.schema)
                strict = _schema.strict_schema(schema) if output.strict else None
                params["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": _schema.tool_name(output.name),
                        "schema": strict if strict is not None else schema,
                        "strict": strict is not None,
                    },
                }
                meta["structured"] = "native" if strict is not None else "native, not strict"
            else:
                words = _schema.prompted_instructions(output.name, output.schema)
                params["messages"] = _with_system(params["messages"], words)
                meta["structured"] = "prompted"
        try:
            completion = await self.client.chat.completions.create(**params, timeout=self.timeout)
        except openai.APIStatusError as exc:
            error = self._status_error(exc)
            if native and output is not None and _rejects_format(exc):
                raise _FormatRejected(error) from None
            raise error from None
        except openai.APITimeoutError as exc:
            raise _provider.timeout_error(
                model=self.name, url=str(exc.request.url), timeout=self.timeout
            ) from None
        except openai.APIConnectionError as exc:
            raise _provider.connection_error(
                model=self.name, url=str(exc.request.url), cause=exc.__cause__
            ) from None
        except (ValueError, openai.APIResponseValidationError) as exc:
            raise _provider.malformed_error(
                model=self.name, url=self.base_url + "/chat/completions", exc=exc
            ) from None
        return self._response(
            completion, wrapped=wrapped, prompted=output is not None and not native, meta=meta
        )

    def _status_error(self, exc: openai.APIStatusError) -> ModelError:
        detail = _provider.detail_of(exc.message, exc.body)
        code = exc.body.get("code") if isinstance(exc.body, dict) else None
        kind = exc.body.get("type") if isinstance(exc.body, dict) else None
        context = exc.status_code in (400, 413, 422) and (
            code in _CONTEXT_CODES
            or kind in _CONTEXT_CODES
            or any(word in detail.lower() for word in _CONTEXT_WORDS)
        )
        return _provider.status_error(
            model=self.name,
            status=exc.status_code,
            detail=detail,
            url=str(exc.request.url),
            headers=exc.response.headers,
            hint=self._hint,
            context_length=context,
        )

    def _response(
        self, completion: Any, *, wrapped: bool, prompted: bool, meta: dict[str, Any]
    ) -> ModelResponse:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ModelError(
                f"{self.name}: {self.base_url} answered without a choice: {completion!r:.200}",
                model=self.name,
                retryable=True,
            )
        choice = choices[0]
        message = choice.message
        content = message.content or ""
        refusal = getattr(message, "refusal", None)
        if refusal and not content:
            content = refusal
            meta["refusal"] = refusal
        calls = tuple(
            ToolCall(call.id or f"call_{index}", call.function.name, call.function.arguments or "")
            for index, call in enumerate(message.tool_calls or ())
            if getattr(call, "function", None) is not None
        )
        if not calls:
            if prompted:
                content = _schema.strip_fences(content)
            if wrapped:
                content = _schema.unwrap(content)
        usage = Usage()
        if completion.usage is not None:
            details = getattr(completion.usage, "prompt_tokens_details", None)
            usage = Usage(
                input_tokens=completion.usage.prompt_tokens or 0,
                output_tokens=completion.usage.completion_tokens or 0,
                cache_read_tokens=(getattr(details, "cached_tokens", None) or 0),
            )
        else:
            meta["usage"] = "not reported by the server"
        return ModelResponse(
            Message("assistant", content, tool_calls=calls),
            usage,
            model=self.name,
            finish_reason=choice.finish_reason or ("tool_calls" if calls else "stop"),
            provider_id=getattr(completion, "id", None),
            meta=meta,
        )


class _FormatRejected(Exception):
    """The server refused `response_format` (it has no `json_schema`)."""

    def __init__(self, error: ModelError) -> None:
        super().__init__(str(error))
        self.error = error


def _rejects_format(exc: openai.APIStatusError) -> bool:
    if exc.status_code not in (400, 422):
        return False
    param = exc.body.get("param") if isinstance(exc.body, dict) else None
    said = (exc.message + " " + json.dumps(exc.body, default=str)).lower()
    return param == "response_format" or "response_format" in said or "json_schema" in said


def _tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    schema = parameters or {"type": "object", "properties": {}}
    function: dict[str, Any] = {"name": name, "parameters": schema}
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content})
        elif m.role == "assistant" and m.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": m.content or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in m.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def _with_system(messages: list[dict[str, Any]], words: str) -> list[dict[str, Any]]:
    """`words` added to the first system message (a new one if there is none): some chat
    templates of local servers refuse a second system message, or one that is not first."""
    if messages and messages[0]["role"] == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{words}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": words}, *messages]
