"""Models: the `Model` protocol, its data types, and the providers behind `provider:model` names."""

from __future__ import annotations

from .base import (
    ContextLengthError,
    Message,
    Model,
    ModelError,
    ModelRequest,
    ModelResponse,
    OutputSpec,
    Role,
    ToolCall,
    ToolSpec,
    Usage,
)
from .pricing import Cost, cost

__all__ = [
    "ContextLengthError",
    "Cost",
    "Message",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "OutputSpec",
    "Role",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "cost",
]
