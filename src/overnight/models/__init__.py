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

__all__ = [
    "ContextLengthError",
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
]
