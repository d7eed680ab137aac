"""`AnthropicModel`: Anthropic's messages API, on the official `anthropic` SDK.

Install with `pip install "overnight[anthropic]"`; the key is `ANTHROPIC_API_KEY` (or
`api_key=`), the endpoint `ANTHROPIC_BASE_URL` (or `base_url=`).

How our conversation maps onto the API:
- system messages go into the separate `system` parameter;
- an assistant's tool calls are `tool_use` blocks; tool results are `tool_result` blocks of the
  next user turn (consecutive tool messages merged into one turn, as the API wants);
- structured output is a tool the model must call (`tool_choice` of type `tool`; of type `any`
  when the agent has tools of its own, so the model may call those first); the call's input
  becomes the JSON text of our assistant message;
- `max_tokens` is always sent (the API requires it); usage counts cache reads and writes, and
  our `input_tokens` includes them (Anthropic reports them apart).

The SDK client is created with `max_retries=0`: the engine retries (see `_provider`).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import UserError

try:
    import anthropic
except ImportError as exc:  # pragma: no cover - exercised by simulating the import failure
    raise UserError(
        'the "anthropic" provider needs the anthropic SDK: pip install "overnight[anthropic]"'
    ) from exc

from . import _provider, _schema
from .base import Message, ModelError, ModelRequest, ModelResponse, OutputSpec, ToolCall, Usage

__all__ = ["AnthropicModel"]

_CONTEXT_WORDS = ("prompt is too long", "exceed context limit", "context window", "context length")
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
}


class AnthropicModel(_provider.SdkModel):
    """A Claude model behind Anthropic's messages API (see the module docstring)."""

    provider = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        context_window: int | None = None,
        client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        if not model:
            raise UserError(
                "AnthropicModel needs a model name, e.g. AnthropicModel('claude-haiku-4-5')"
            )
        if timeout <= 0:
            raise UserError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.model = model
        self.timeout = timeout
        self._context_window = context_window
        if client is not None:
            self._hint = "the API key of the client given to AnthropicModel"
            self.client = client.with_options(max_retries=0)
        else:
            found = _provider.credentials(
                provider="anthropic",
                model=model,
                api_key=api_key,
                base_url=base_url,
                key_env="ANTHROPIC_API_KEY",
                url_env="ANTHROPIC_BASE_URL",
                cls="AnthropicModel",
            )
            self._hint = found.hint
            self.client = anthropic.AsyncAnthropic(
                api_key=found.api_key, base_url=found.base_url, timeout=timeout, max_retries=0
            )
        self.base_url = str(self.client.base_url).rstrip("/")
        """The endpoint requests go to (e.g. `https://api.anthropic.com`)."""

    # -- requests -------------------------------------------------------------------------------

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one message request; raise `ModelError` on failure."""
        system, messages = _messages(request.messages)
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        if system:
            params["system"] = system
        if request.temperature is not None:
            # Recent SDKs no longer list sampling parameters; the body still carries what
            # was asked, and a model that refuses it says so (400).
            params["extra_body"] = {"temperature": request.temperature}
        tools = [_tool(t.name, t.description, t.parameters) for t in request.tools]
        output = request.output
        forced: str | None = None
        wrapped = False
        if output is not None:
            forced, wrapped, spec = _output_tool(output, {t.name for t in request.tools})
            tools.append(spec)
            # With tools of its own the model must be free to call them before answering.
            params["tool_choice"] = (
                {"type": "any"} if request.tools else {"type": "tool", "name": forced}
            )
        if tools:
            params["tools"] = tools
        try:
            reply = await self.client.messages.create(**params, timeout=self.timeout)
        except anthropic.APIStatusError as exc:
            raise self._status_error(exc) from None
        except anthropic.APITimeoutError as exc:
            raise _provider.timeout_error(
                model=self.name, url=str(exc.request.url), timeout=self.timeout
            ) from None
        except anthropic.APIConnectionError as exc:
            raise _provider.connection_error(
                model=self.name, url=str(exc.request.url), cause=exc.__cause__
            ) from None
        except (ValueError, anthropic.APIResponseValidationError) as exc:
            raise _provider.malformed_error(
                model=self.name, url=self.base_url + "/v1/messages", exc=exc
            ) from None
        return self._response(reply, forced, wrapped)

    def _status_error(self, exc: anthropic.APIStatusError) -> ModelError:
        detail = _provider.detail_of(exc.message, exc.body)
        context = exc.status_code in (400, 413) and any(
            word in detail.lower() for word in _CONTEXT_WORDS
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

    def _response(self, reply: Any, forced: str | None, wrapped: bool) -> ModelResponse:
        blocks = getattr(reply, "content", None)
        if not isinstance(blocks, list):
            raise ModelError(
                f"{self.name}: {self.base_url} answered without content: {reply!r:.200}",
                model=self.name,
                retryable=True,
            )
        meta: dict[str, Any] = {}
        text = "".join(b.text for b in blocks if getattr(b, "type", None) == "text")
        calls = [b for b in blocks if getattr(b, "type", None) == "tool_use"]
        finish = _FINISH.get(reply.stop_reason or "", reply.stop_reason or "stop")
        answer = next((b for b in calls if b.name == forced), None)
        if answer is not None:
            # The forced tool's input is the output: no tool call is left to run.
            others = [b.name for b in calls if b is not answer]
            if others:
                meta["dropped_tool_calls"] = others
            content = json.dumps(answer.input, ensure_ascii=False)
            message = Message("assistant", _schema.unwrap(content) if wrapped else content)
            finish = "stop"
        else:
            message = Message(
                "assistant",
                text,
                tool_calls=tuple(
                    ToolCall(b.id, b.name, json.dumps(b.input, ensure_ascii=False)) for b in calls
                ),
            )
        if forced is not None:
            meta["structured"] = "tool"
        usage = reply.usage
        cache_read = getattr(usage, "cache_read_input_tokens", None) or 0
        cache_write = getattr(usage, "cache_creation_input_tokens", None) or 0
        return ModelResponse(
            message,
            Usage(
                input_tokens=(usage.input_tokens or 0) + cache_read + cache_write,
                output_tokens=usage.output_tokens or 0,
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
            ),
            model=self.name,
            finish_reason=finish,
            provider_id=getattr(reply, "id", None),
            meta=meta,
        )


def _output_tool(output: OutputSpec, taken: set[str]) -> tuple[str, bool, dict[str, Any]]:
    name = _schema.tool_name(output.name)
    if name in taken:
        raise UserError(
            f"the output {output.name!r} and a tool share the name {name!r}; rename one of them"
        )
    schema, wrapped = _schema.object_root(output.schema)
    description = (
        "Give your final answer by calling this tool: its input is the answer. "
        "Call it once, when you have everything you need."
    )
    return name, wrapped, _tool(name, description, schema)


def _tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "input_schema": parameters or {"type": "object", "properties": {}},
    }
    if description:
        spec["description"] = description
    return spec


def _messages(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt and the turns, consecutive turns of one role merged into one."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            if m.content:
                system.append(m.content)
            continue
        blocks: list[dict[str, Any]]
        if m.role == "tool":
            role = "user"
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": m.tool_call_id or "",
                "content": m.content,
            }
            if m.is_error:
                result["is_error"] = True
            blocks = [result]
        else:
            role = m.role
            blocks = [{"type": "text", "text": m.content}] if m.content else []
            blocks.extend(
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _input(c.arguments)}
                for c in m.tool_calls
            )
        if not blocks:
            continue  # the API refuses empty turns and empty text blocks
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(system), turns


def _input(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic wants (kept whole if not an object)."""
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}
