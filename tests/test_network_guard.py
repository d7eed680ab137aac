"""The network guard: tests stay on loopback and never see a provider's key."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys

import openai
import pytest

from overnight.testing.guard import (
    PROVIDER_ENV,
    NetworkGuard,
    NetworkGuardError,
    is_loopback,
    offline,
)
from overnight.testing.servers import OpenAIServer

OUTSIDE = ("203.0.113.1", 443)  # TEST-NET-3: never routed, and never reached here


def test_connection_beyond_loopback_fails(network_guard: NetworkGuard) -> None:
    with pytest.raises(NetworkGuardError, match=r"203\.0\.113\.1:443 refused"):
        socket.create_connection(OUTSIDE, timeout=1)
    with socket.socket() as sock, pytest.raises(NetworkGuardError):
        sock.connect(OUTSIDE)
    with socket.socket() as sock, pytest.raises(NetworkGuardError):
        sock.connect_ex(OUTSIDE)
    with pytest.raises(NetworkGuardError, match=r"api\.openai\.com"):
        socket.getaddrinfo("api.openai.com", 443)
    assert [b.via for b in network_guard.blocked] == [
        "socket.create_connection",
        "socket.connect",
        "socket.connect_ex",
        "socket.getaddrinfo",
    ]
    with pytest.raises(NetworkGuardError, match="tried to leave loopback"):
        network_guard.check()
    network_guard.clear()  # asserted above: the fixture must not fail this test at teardown


async def test_asyncio_connection_beyond_loopback_fails(network_guard: NetworkGuard) -> None:
    with pytest.raises(OSError, match="network guard"):
        await asyncio.open_connection(*OUTSIDE)
    assert network_guard.blocked
    network_guard.clear()


async def test_a_swallowed_attempt_still_fails_the_test() -> None:
    client = openai.AsyncOpenAI(api_key="sk-not-real", max_retries=0)  # the real API's URL
    with NetworkGuard() as guard:
        with pytest.raises(openai.APIConnectionError):  # what agent code would catch and retry
            await client.chat.completions.create(model="gpt-test", messages=[])
        assert [b.target for b in guard.blocked] == ["api.openai.com"]
        with pytest.raises(NetworkGuardError, match=r"api\.openai\.com"):
            guard.check()
    await client.close()


def swallow_an_attempt() -> None:
    with offline(), contextlib.suppress(OSError):  # swallowed, as a client library might
        socket.create_connection(OUTSIDE, timeout=1)


def test_offline_raises_at_the_end_of_its_block() -> None:
    with pytest.raises(NetworkGuardError, match=r"203\.0\.113\.1:443"):
        swallow_an_attempt()


async def test_loopback_stays_open() -> None:
    with OpenAIServer(["hello"]) as server:
        host, port = server.address
        socket.create_connection(("localhost", port), timeout=1).close()
        socket.create_connection((host, port), timeout=1).close()
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="test") as client:
            reply = await client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "hi"}]
            )
        assert reply.choices[0].message.content == "hello"


def test_subprocesses_run_and_inherit_the_clean_environment() -> None:
    code = "import os; print(sorted(k for k in os.environ if k.startswith(('OPENAI', 'ANTH'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_provider_variables_are_hidden_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROVIDER_ENV:
        monkeypatch.setenv(name, f"real-{name}")
    with NetworkGuard():
        assert not [name for name in PROVIDER_ENV if name in os.environ]
        os.environ["OPENAI_API_KEY"] = "set-during-the-test"
    assert {name: os.environ[name] for name in PROVIDER_ENV} == {
        name: f"real-{name}" for name in PROVIDER_ENV
    }


def test_nested_guards_restore_what_they_found() -> None:
    outer_connect = socket.socket.connect
    outer_lookup = socket.getaddrinfo
    with NetworkGuard():
        assert socket.socket.connect is not outer_connect
    assert socket.socket.connect is outer_connect
    assert socket.getaddrinfo is outer_lookup


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("db.localhost", True),
        ("0.0.0.0", True),
        ("203.0.113.1", False),
        ("10.0.0.1", False),
        ("::ffff:203.0.113.1", False),
        ("api.anthropic.com", False),
        ("localhost.evil.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
