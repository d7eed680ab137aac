"""What the OpenAI and Anthropic providers share: keys, endpoints, and errors as `ModelError`s.

Providers never retry: the engine retries a `ModelError` whose `retryable` is True, as a
journaled step, after `retry_after` seconds if the server said so. So the mapping here decides
from the HTTP status alone, the same for every provider:

- 408, 409, 429 and every 5xx (Anthropic's 529 "overloaded" too): retryable;
- timeouts, refused or dropped connections, bodies that are not JSON: retryable;
- other 4xx (400, 401, 403, 404, 422, ...): not retryable, the request itself must change;
- the provider's "context length exceeded" 400: `ContextLengthError`, not retryable.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from ..errors import UserError
from . import pricing
from .base import ContextLengthError, ModelError

RETRYABLE_STATUSES = frozenset({408, 409, 429})
"""4xx statuses worth trying again; every 5xx is too."""

LOCAL_KEY = "local-server-needs-no-key"
"""The key sent to a server on this machine when none is configured (local servers ignore it)."""


def is_retryable_status(status: int) -> bool:
    """True for 408, 409, 429 and every 5xx."""
    return status in RETRYABLE_STATUSES or status >= 500


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis:
        try:
            value = float(millis) / 1000
        except ValueError:
            pass
        else:
            if value >= 0:
                return value
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
        return max(seconds, 0.0)
    return seconds if seconds >= 0 else None


def is_local(url: str) -> bool:
    """True if `url` points at this machine (localhost, 127.0.0.0/8, ::1)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Credentials:
    """The key a provider sends, and what to tell the user to check when it is refused."""

    api_key: str
    base_url: str | None
    hint: str
    """Where the key came from, e.g. `OPENAI_API_KEY`."""


def credentials(
    *,
    provider: str,
    model: str,
    api_key: str | None,
    base_url: str | None,
    key_env: str,
    url_env: str,
    cls: str,
) -> Credentials:
    """The key and base URL from the arguments, else the environment; a clear error if none.

    A server on this machine (Ollama, llama.cpp, LM Studio, vLLM on localhost) needs no key:
    a placeholder is sent. Any other endpoint needs one.
    """
    base_url = base_url or os.environ.get(url_env) or None
    if api_key:
        return Credentials(api_key, base_url, f"the api_key given to {cls}")
    from_env = os.environ.get(key_env)
    if from_env:
        return Credentials(from_env, base_url, key_env)
    if base_url is not None and is_local(base_url):
        return Credentials(
            LOCAL_KEY, base_url, f"{key_env} (unset: the server at {base_url} wants a key)"
        )
    where = f"the server at {base_url}" if base_url else provider
    raise UserError(
        f"model {provider + ':' + model!r} needs an API key for {where}: set the {key_env} "
        f"environment variable (or pass api_key= to {cls}). For a local server, set {url_env} "
        "to its URL, e.g. http://localhost:11434/v1: a key is then optional."
    )


def status_error(
    *,
    model: str,
    status: int,
    detail: str,
    url: str,
    headers: Mapping[str, str],
    hint: str,
    context_length: bool,
) -> ModelError:
    """The `ModelError` for an HTTP error status (see the module docstring)."""
    if context_length:
        return ContextLengthError(
            f"{model}: the request does not fit the model's context window ({detail}); "
            "shorten the conversation or lower max_tokens",
            model=model,
            status=status,
        )
    retryable = is_retryable_status(status)
    if status == 401:
        message = f"{url} refused the API key (401: {detail}); check {hint}"
    elif status == 403:
        message = f"{url} denied access (403: {detail}); check that {hint} may use this model"
    elif status == 404:
        message = f"{url} answered 404 ({detail}); check the model name and the base URL"
    elif status == 429:
        message = f"rate limited by {url} (429: {detail})"
    elif retryable:
        message = f"{url} failed ({status}: {detail})"
    else:
        message = f"{url} refused the request ({status}: {detail})"
    return ModelError(
        f"{model}: {message}",
        model=model,
        retryable=retryable,
        status=status,
        retry_after=retry_after(headers) if retryable else None,
        configuration=status in (401, 403, 404),
    )


def timeout_error(*, model: str, url: str, timeout: float) -> ModelError:
    """No reply within the per-call timeout: retryable."""
    return ModelError(
        f"{model}: no reply from {url} within {timeout:g} s (the per-call timeout); "
        "raise timeout= if the model needs longer",
        model=model,
        retryable=True,
    )


def connection_error(*, model: str, url: str, cause: BaseException | None) -> ModelError:
    """The endpoint could not be reached, or dropped the connection: retryable."""
    why = f"{type(cause).__name__}: {cause}" if cause is not None and str(cause) else "no answer"
    return ModelError(
        f"{model}: cannot reach {url} ({why}); check that the server is running and that "
        "the base URL is right",
        model=model,
        retryable=True,
        configuration=True,
    )


def malformed_error(*, model: str, url: str, exc: BaseException) -> ModelError:
    """A reply whose body is not the JSON it should be: retryable (usually a cut-off body)."""
    return ModelError(
        f"{model}: {url} answered with a body that is not a valid response "
        f"({type(exc).__name__}: {exc})",
        model=model,
        retryable=True,
    )


def detail_of(message: str, body: object) -> str:
    """The provider's own words from an error body (`{"error": {"message": ...}}`), if any."""
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
    return message


class SdkModel:
    """What the SDK-backed providers share: naming, the context window, closing the client."""

    provider: ClassVar[str]
    """The provider part of `provider:model`."""
    model: str
    client: Any
    _context_window: int | None

    @functools.cached_property
    def context_window(self) -> int | None:
        """Tokens the model accepts: as given, else from genai-prices' tables (None: unknown)."""
        if self._context_window is not None:
            return self._context_window
        return pricing.context_window(self.name)

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self.client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
