"""The Model port: one small protocol every provider, fake and wrapper implements.

A model takes a `ModelRequest` (messages, tools it may call, an optional output schema, limits)
and returns a `ModelResponse` (one assistant message, possibly with tool calls, and the
provider's own usage counts). Everything here is plain frozen data that the journal can hold,
so a request can be recorded before it is sent and a response replayed after a crash.

Errors are `ModelError`s with a `retryable` field, so retry and fallback wrappers decide from
data, never by matching provider exception classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Self, runtime_checkable

from ..errors import OvernightError

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for."""

    id: str
    """The provider's id for the call; a tool result answers it by this id."""
    name: str
    """The tool's name."""
    arguments: str
    """The arguments exactly as the model wrote them (JSON text, possibly invalid)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation."""

    role: Role
    """Who speaks: system instructions, the user, the assistant, or a tool's result."""
    content: str = ""
    """The text (for a tool message: the tool's result or error, as the model will read it)."""
    tool_calls: tuple[ToolCall, ...] = ()
    """Calls an assistant message asks for, in the order the model wrote them."""
    tool_call_id: str | None = None
    """For a tool message: the id of the call it answers."""
    name: str | None = None
    """For a tool message: the tool's name."""
    is_error: bool = False
    """For a tool message: the tool failed or was refused, and `content` says why."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model sees it."""

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON Schema of the arguments object."""


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """A structured output the model must produce."""

    name: str
    schema: dict[str, Any]
    """JSON Schema of the output."""
    strict: bool = True
    """Ask the provider to enforce the schema (OpenAI `strict`; Anthropic: a forced tool)."""


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """Everything sent to a model in one call."""

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    output: OutputSpec | None = None
    max_tokens: int = 1024
    """Always sent: it bounds the cost of the reply."""
    temperature: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as the provider reported them."""

    input_tokens: int = 0
    """Every input token, cached ones included (OpenAI's `prompt_tokens`; for Anthropic, its
    `input_tokens` plus cache reads and writes, which it reports apart)."""
    output_tokens: int = 0
    cache_read_tokens: int = 0
    """Input tokens read from the provider's prompt cache (billed cheaper)."""
    cache_write_tokens: int = 0
    """Input tokens written to the provider's prompt cache (Anthropic bills them dearer)."""

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


@dataclass(frozen=True, slots=True)
class ModelResponse:
    """A model's reply to one request."""

    message: Message
    """The assistant message: text, tool calls, or (with an OutputSpec) the output as JSON."""
    usage: Usage
    model: str
    """The `provider:model` that answered (after fallbacks, the one that succeeded)."""
    finish_reason: str = "stop"
    """`stop`, `tool_calls`, `length`, or the provider's own word."""
    provider_id: str | None = None
    """The provider's id for the response, for support requests and logs."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Wrapper notes (attempts, fallbacks taken), journaled with the response."""


@runtime_checkable
class Model(Protocol):
    """Anything that answers model requests: a provider, a fake, or a wrapper around models."""

    @property
    def name(self) -> str:
        """`provider:model`, e.g. `openai:gpt-4o-mini`."""
        ...

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one request; raise `ModelError` on failure."""
        ...


@runtime_checkable
class ProviderModel(Model, Protocol):
    """A model behind a network endpoint: it holds connections until `aclose()` (or the end of
    an `async with` block)."""

    async def aclose(self) -> None:
        """Close the model's connections."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...


class ModelError(OvernightError):
    """A model call failed. `retryable` says whether trying again may succeed."""

    def __init__(
        self,
        message: str,
        *,
        model: str,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        configuration: bool = False,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.retryable = retryable
        self.configuration = configuration
        """The cause is in the configuration (key, URL, model name): a person must fix it."""
        self.status = status
        """The HTTP status, when there was one."""
        self.retry_after = retry_after
        """Seconds the provider asked us to wait (Retry-After), when it said."""


class ContextLengthError(ModelError):
    """The request does not fit the model's context window: not retryable as it is."""

    def __init__(self, message: str, *, model: str, status: int | None = None) -> None:
        super().__init__(message, model=model, retryable=False, status=status)
