"""The request log of a scripted server: what the client sent, and what it was answered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SECRET_HEADERS", "RecordedRequest", "redact"]

SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "cookie", "proxy-authorization"}
)
"""Headers whose values never reach the log (they are kept, as `<redacted>`)."""


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers with lower-cased names and the values of `SECRET_HEADERS` replaced."""
    return {
        name.lower(): "<redacted>" if name.lower() in SECRET_HEADERS else value
        for name, value in headers.items()
    }


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request a scripted server received, logged on arrival and completed once answered."""

    seq: int
    """Order of arrival (1, 2, ...), over every request this server received."""
    method: str
    path: str
    """The request path without its query string, e.g. `/v1/chat/completions`."""
    headers: dict[str, str]
    """Lower-cased header names; secrets (`SECRET_HEADERS`) are `<redacted>`."""
    body: Any
    """The parsed JSON body; None when there was no body or it was not JSON."""
    at: float
    """Unix time the request arrived."""
    status: int | None = None
    """The status answered; None while pending, or when the connection was dropped."""
    reply: str | None = None
    """The kind of the scripted reply used (`text`, `drop`, ...); None when the server answered
    by itself (bad key, invalid request, unknown path) or the script had no reply for it."""
    script_error: str | None = None
    """Why the script could not answer (exhausted, handler raised, mismatch), if it could not."""

    @property
    def model(self) -> str | None:
        """The `model` the request asked for, if any."""
        if isinstance(self.body, dict):
            model = self.body.get("model")
            return model if isinstance(model, str) else None
        return None
