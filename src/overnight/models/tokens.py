"""Offline token estimates: no tokenizer download, deterministic, slightly pessimistic.

Used where a count is needed before a request is sent (client rate limits, budget
reservations) and by the test models. Real usage always comes from the provider's own counts.
"""

from __future__ import annotations

import json

from .base import ModelRequest


def estimate_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters per token."""
    return max(1, (len(text) + 3) // 4) if text else 0


def request_tokens(request: ModelRequest) -> int:
    """Estimated input tokens of a request (messages, tool schemas, output schema)."""
    total = 0
    for message in request.messages:
        total += 4 + estimate_tokens(message.content)
        for call in message.tool_calls:
            total += estimate_tokens(call.name) + estimate_tokens(call.arguments)
    for tool in request.tools:
        total += estimate_tokens(tool.name + tool.description + json.dumps(tool.parameters))
    if request.output is not None:
        total += estimate_tokens(json.dumps(request.output.schema))
    return total
