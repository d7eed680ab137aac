"""A network guard for tests: nothing leaves loopback, and no provider key is in reach.

While a `NetworkGuard` is active, a TCP connection to anything but a loopback address (and a
name lookup of anything but `localhost`) raises `NetworkGuardError` and is recorded; the
provider variables (`PROVIDER_ENV`: API keys, base URLs) and the proxy variables are removed
from the environment and put back afterwards. A client that swallows the error (an SDK
retries, then wraps it in its own connection error) cannot hide the attempt: `check()` raises
for every recorded one, and `offline()` calls it when its block ends.

Guard a whole suite with an autouse fixture in `conftest.py`::

    @pytest.fixture(autouse=True)
    def network_guard() -> Iterator[NetworkGuard]:
        with offline() as guard:
            yield guard

What it covers: Python's `socket` module, which asyncio, httpx and the provider SDKs use.
Libraries that connect from C (libpq, for instance) are not seen by it; nor are subprocesses,
which inherit only the cleaned environment.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PROVIDER_ENV",
    "PROXY_ENV",
    "BlockedAttempt",
    "NetworkGuard",
    "NetworkGuardError",
    "is_loopback",
    "offline",
]

PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
)
"""Variables through which an SDK client would find a real provider (removed while guarded)."""

PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
"""Proxy variables, removed while guarded: a proxy would carry loopback requests elsewhere."""

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_MISSING: Any = object()


class NetworkGuardError(PermissionError):
    """A test tried to reach beyond loopback while the network guard was active."""


@dataclass(frozen=True, slots=True)
class BlockedAttempt:
    """One refused attempt to leave loopback."""

    target: str
    """What was asked for: `host:port`, or the name to look up."""
    via: str
    """The call that was refused, e.g. `socket.create_connection`."""


def is_loopback(host: str) -> bool:
    """True for a loopback (or unspecified, i.e. this host) address, or a name of localhost."""
    name = host.strip("[]").split("%", 1)[0].lower()
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


class NetworkGuard:
    """Refuse non-loopback connections and lookups, and hide provider variables, while active.

    Use it as a context manager. Guards nest (each restores what it found); they must be
    exited in reverse order of entry, as `with` blocks are.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocked: list[BlockedAttempt] = []
        self._saved_attrs: list[tuple[Any, str, Any]] = []
        self._saved_env: dict[str, str] = {}

    @property
    def blocked(self) -> list[BlockedAttempt]:
        """Every refused attempt so far, in order."""
        with self._lock:
            return list(self._blocked)

    def clear(self) -> None:
        """Forget the refused attempts (after a test has asserted on them)."""
        with self._lock:
            self._blocked.clear()

    def check(self) -> None:
        """Raise `NetworkGuardError` if any attempt was refused (even if its error was caught)."""
        blocked = self.blocked
        if blocked:
            tried = ", ".join(f"{b.target} (via {b.via})" for b in blocked)
            raise NetworkGuardError(
                f"the test tried to leave loopback: {tried}; point clients at a local server "
                "such as overnight.testing.servers.OpenAIServer / AnthropicServer"
            )

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> NetworkGuard:
        for name in (*PROVIDER_ENV, *PROXY_ENV):
            value = os.environ.pop(name, None)
            if value is not None:
                self._saved_env[name] = value
        self._patch(socket.socket, "connect", self._guard_connect("socket.connect"))
        self._patch(socket.socket, "connect_ex", self._guard_connect("socket.connect_ex"))
        self._patch(socket, "create_connection", self._guard_create_connection())
        self._patch(socket, "getaddrinfo", self._guard_getaddrinfo())
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, previous in reversed(self._saved_attrs):
            if previous is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, previous)
        self._saved_attrs.clear()
        for name in (*PROVIDER_ENV, *PROXY_ENV):
            os.environ.pop(name, None)
        os.environ.update(self._saved_env)
        self._saved_env.clear()

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._saved_attrs.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, replacement)

    # -- the guarded calls ----------------------------------------------------------------------

    def _refuse(self, target: str, via: str) -> NetworkGuardError:
        with self._lock:
            self._blocked.append(BlockedAttempt(target, via))
        return NetworkGuardError(
            f"network guard: {via} to {target} refused; tests may only reach loopback "
            "(127.0.0.1, ::1, localhost)"
        )

    def _check_address(self, address: Any, via: str) -> None:
        if isinstance(address, tuple) and address and isinstance(address[0], str):
            host = address[0]
            if not is_loopback(host):
                port = address[1] if len(address) > 1 else "?"
                raise self._refuse(f"{host}:{port}", via)
        # Anything else (a Unix socket path, a netlink address...) does not leave the machine.

    def _guard_connect(self, via: str) -> Callable[..., Any]:
        real = getattr(socket.socket, via.rsplit(".", 1)[1])
        guard = self

        def guarded(sock: socket.socket, address: Any) -> Any:
            guard._check_address(address, via)
            return real(sock, address)

        return guarded

    def _guard_create_connection(self) -> Callable[..., socket.socket]:
        real = socket.create_connection
        guard = self

        def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
            guard._check_address(address, "socket.create_connection")
            return real(address, *args, **kwargs)

        return create_connection

    def _guard_getaddrinfo(self) -> Callable[..., Any]:
        real = socket.getaddrinfo
        guard = self

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            name = host.decode() if isinstance(host, bytes) else host
            if name and not is_loopback(name) and not _is_numeric(name):
                raise guard._refuse(name, "socket.getaddrinfo")
            return real(host, *args, **kwargs)

        return getaddrinfo


def _is_numeric(host: str) -> bool:
    """True for an IP address literal: looking it up sends nothing (connecting is checked)."""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def offline() -> Iterator[NetworkGuard]:
    """A `NetworkGuard` for the block, which fails at its end if any attempt was refused."""
    with NetworkGuard() as guard:
        yield guard
    guard.check()
