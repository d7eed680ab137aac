"""Models: the `Model` protocol, its data types, and the providers behind `provider:model` names.

`resolve_model("openai:gpt-4o-mini")` or `resolve_model("anthropic:claude-haiku-4-5")` gives a
provider's model; any OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio...) is
`openai:<its model>` with `OPENAI_BASE_URL` pointing at it. The providers' SDKs are extras,
imported only when a model of theirs is asked for.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from ..errors import UserError
from .base import (
    ContextLengthError,
    Message,
    Model,
    ModelError,
    ModelRequest,
    ModelResponse,
    OutputSpec,
    ProviderModel,
    Role,
    ToolCall,
    ToolSpec,
    Usage,
)
from .pricing import Cost, cost

__all__ = [
    "PROVIDERS",
    "ContextLengthError",
    "Cost",
    "Message",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "OutputSpec",
    "ProviderModel",
    "Role",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "check_model_name",
    "cost",
    "resolve_model",
]

PROVIDERS: dict[str, str] = {
    "anthropic": "overnight.models.anthropic:AnthropicModel",
    "openai": "overnight.models.openai:OpenAIModel",
}
"""Provider prefix -> the class (`module:name`) that serves it."""

_FAMILIES = {"gpt": "openai", "o1": "openai", "o3": "openai", "o4": "openai", "claude": "anthropic"}


def resolve_model(name: str, **options: Any) -> ProviderModel:
    """The model a `provider:model` string names; `options` go to the provider's class."""
    factory, model = _provider_class(name)
    model_object: ProviderModel = factory(model, **options)
    return model_object


def check_model_name(name: str) -> None:
    """Raise UserError if `name` names no known provider, or its SDK is not installed.

    Unlike `resolve_model`, no client is made, so no API key is needed yet.
    """
    _provider_class(name)


def _provider_class(name: str) -> tuple[Any, str]:
    """The provider class a `provider:model` string names, and the model part."""
    if not isinstance(name, str):
        raise UserError(f"a model name is a 'provider:model' string, got {name!r}")
    provider, sep, model = name.partition(":")
    known = ", ".join(sorted(PROVIDERS))
    if not sep:
        family = next((p for f, p in _FAMILIES.items() if name.lower().startswith(f)), None)
        example = f"{family}:{name}" if family else "openai:gpt-4o-mini"
        raise UserError(
            f"model {name!r} names no provider: write 'provider:model', e.g. {example!r} "
            f"(providers: {known})"
        )
    if provider not in PROVIDERS:
        close = difflib.get_close_matches(provider.lower(), list(PROVIDERS), n=1, cutoff=0.5)
        suggestion = f"; did you mean {close[0] + ':' + model!r}?" if close else ""
        raise UserError(
            f"unknown model provider {provider!r} in {name!r}; known providers: {known}"
            f"{suggestion} (any OpenAI-compatible server is 'openai:<model>' with "
            "OPENAI_BASE_URL set to its URL)"
        )
    if not model.strip():
        raise UserError(f"model name {name!r} has no model after {provider + ':'!r}")
    module_name, _, class_name = PROVIDERS[provider].partition(":")
    module = importlib.import_module(module_name)  # raises UserError naming the extra
    return getattr(module, class_name), model
