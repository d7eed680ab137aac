"""The HTTP layer every scripted provider server shares: a thread serving HTTP/1.1 on loopback.

A provider server (`OpenAIServer`, `AnthropicServer`) subclasses `ScriptedServer` and says three
things: which requests it answers by itself (`_route`: a model list, a bad key, an invalid body),
how it renders a scripted reply (`_render`), and its error shape (`_error`). The base class holds
the script (a queue of replies, then an optional handler), the request log, the delays, the
malformed bodies and the dropped connections, and the lifecycle.

Requests are served from one thread per connection; the script, the log and their waits are
guarded by one lock, so a test may add replies and read the log from its event loop while the
client's requests are being answered.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal, Self

import orjson

from .record import RecordedRequest, redact
from .replies import Drop, Handler, Malformed, Reply, ReplyLike, as_reply

__all__ = ["SCRIPT", "ReplyMismatch", "ScriptError", "ScriptedServer", "Wire", "retry_after"]

SCRIPT: Literal["script"] = "script"
"""What `_route` returns for a request the script answers."""


class ScriptError(AssertionError):
    """The script could not answer a request (raised by `ScriptedServer.check`)."""


@dataclass(frozen=True, slots=True)
class Wire:
    """One HTTP response, ready to write."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Wire:
        """A JSON response."""
        return cls(status, orjson.dumps(payload), dict(headers or {}))


def retry_after(seconds: float) -> str:
    """A `Retry-After` value: whole seconds as an integer, else a decimal (the SDKs take both)."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


@dataclass(frozen=True, slots=True)
class _Answer:
    wire: Wire | None
    """None: close the connection without answering."""
    delay: float = 0.0
    reply: str | None = None
    script_error: str | None = None


class ScriptedServer:
    """A provider's HTTP API on 127.0.0.1 (a random port by default), answering from a script.

    Replies are taken in order from the queue (`replies`, then `add`); once it is empty, from
    `handler(request)` if one is given. A request the script cannot answer gets a 500 in the
    provider's error shape with `x-should-retry: false` (so the SDK does not retry it), and the
    reason is kept in `script_errors`. With `api_key` set, a request without that key gets the
    provider's 401 and uses no reply.
    """

    provider: ClassVar[str] = "provider"

    def __init__(
        self,
        replies: Iterable[ReplyLike] = (),
        *,
        handler: Handler | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        """The key a request must carry, or None to accept any key (or none)."""
        self._handler = handler
        self._lock = threading.Condition()
        self._handler_lock = threading.Lock()
        self._queue: deque[Reply] = deque(as_reply(r) for r in replies)
        self._log: list[RecordedRequest] = []
        self._script_errors: list[str] = []
        self._used = 0
        self._stopping = threading.Event()
        self._http = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._http.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"overnight-{self.provider}-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving: wake slow replies, close open connections, release the port."""
        self._stopping.set()
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._http.close_connections()
        self._http.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        """`(host, port)` the server listens on."""
        host, port = self._http.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """The server's root URL, e.g. `http://127.0.0.1:41234`."""
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """The `base_url` to give the provider's SDK client."""
        return self.url

    # -- script ---------------------------------------------------------------------------------

    def add(self, *replies: ReplyLike) -> None:
        """Queue more replies (after those already queued)."""
        checked = [as_reply(r) for r in replies]
        with self._lock:
            self._queue.extend(checked)

    @property
    def remaining(self) -> int:
        """Queued replies not used yet."""
        with self._lock:
            return len(self._queue)

    @property
    def script_errors(self) -> list[str]:
        """Why the script could not answer, one message per request it failed."""
        with self._lock:
            return list(self._script_errors)

    def check(self) -> None:
        """Raise `ScriptError` if the script failed any request (call it at the end of a test)."""
        errors = self.script_errors
        if errors:
            raise ScriptError(f"{type(self).__name__}: " + "; ".join(errors))

    # -- log ------------------------------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        """Every request received (optionally to one path), in arrival order."""
        with self._lock:
            return [r for r in self._log if path is None or r.path == path]

    def wait_requests(self, count: int, path: str | None = None, timeout: float = 10.0) -> bool:
        """Wait until `count` requests (to `path`, if given) have arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len([r for r in self._log if path is None or r.path == path]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    # -- provider hooks -------------------------------------------------------------------------

    def _route(self, request: RecordedRequest, headers: Message) -> Wire | Literal["script"]:
        """The server's own answer to `request`, or `SCRIPT` for the script to answer it."""
        raise NotImplementedError

    def _render(self, reply: Reply, request: RecordedRequest) -> Wire:
        """`reply` in the provider's wire format (`ReplyMismatch` if the request forbids it)."""
        raise NotImplementedError

    def _error(
        self,
        status: int,
        request: RecordedRequest,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Wire:
        """An error response in the provider's shape (its type chosen from `status`)."""
        raise NotImplementedError

    # -- serving (in the server's threads) ------------------------------------------------------

    def _serve(self, method: str, target: str, headers: Message, raw: bytes) -> Wire | None:
        body: Any = None
        unreadable = False
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                unreadable = True
        with self._lock:
            record = RecordedRequest(
                seq=len(self._log) + 1,
                method=method,
                path=target.split("?", 1)[0],
                headers=redact(dict(headers.items())),
                body=body,
                at=time.time(),
            )
            self._log.append(record)
            self._lock.notify_all()
        if unreadable:
            answer = _Answer(self._error(400, record, "the request body is not valid JSON"))
        else:
            answer = self._answer(record, headers)
        if answer.delay > 0 and self._stopping.wait(answer.delay):
            answer = replace(answer, wire=None)  # closing: drop rather than answer late
        with self._lock:
            self._log[record.seq - 1] = replace(
                record,
                status=None if answer.wire is None else answer.wire.status,
                reply=answer.reply,
                script_error=answer.script_error,
            )
            if answer.script_error is not None:
                self._script_errors.append(answer.script_error)
            self._lock.notify_all()
        return answer.wire

    def _answer(self, request: RecordedRequest, headers: Message) -> _Answer:
        routed = self._route(request, headers)
        if isinstance(routed, Wire):
            return _Answer(routed)
        reply, error = self._take(request)
        if reply is None:
            return self._script_failed(request, error or "no reply")
        try:
            if isinstance(reply, Drop):
                wire = None
            elif isinstance(reply, Malformed):
                wire = Wire(reply.status, reply.body, {})
            else:
                wire = self._render(reply, request)
        except ReplyMismatch as exc:
            return self._script_failed(request, f"{reply.kind} reply does not fit: {exc}")
        return _Answer(wire, delay=reply.delay, reply=reply.kind)

    def _take(self, request: RecordedRequest) -> tuple[Reply | None, str | None]:
        with self._lock:
            if self._queue:
                self._used += 1
                return self._queue.popleft(), None
            handler, used = self._handler, self._used
        if handler is None:
            return None, (
                f"script exhausted: request #{request.seq} ({request.method} {request.path}) "
                f"found no reply after the {used} scripted; queue more with server.add(...) "
                "or pass handler="
            )
        with self._handler_lock:  # handlers are called one at a time, in arrival order
            try:
                return as_reply(handler(request)), None
            except Exception as exc:
                return None, (
                    f"handler raised {type(exc).__name__}: {exc} "
                    f"(request #{request.seq}, {request.method} {request.path})"
                )

    def _script_failed(self, request: RecordedRequest, reason: str) -> _Answer:
        message = f"overnight {type(self).__name__} {reason}"
        code = "script_exhausted" if reason.startswith("script exhausted") else "script_error"
        wire = self._error(500, request, message, code=code, headers={"x-should-retry": "false"})
        return _Answer(wire, script_error=message)


class ReplyMismatch(Exception):
    """A scripted reply the request makes impossible (e.g. structured output not asked for)."""


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.opened(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.closed(self.connection)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the record."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        wire = self.server.owner._serve(self.command, self.path, self.headers, raw)
        if wire is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(wire.status)
            for name, value in wire.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", wire.content_type)
            self.send_header("Content-Length", str(len(wire.body)))
            self.end_headers()
            self.wfile.write(wire.body)
            self.wfile.flush()
        except OSError:  # the client gave up (a timeout): nothing left to tell it
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: ScriptedServer) -> None:
        self.owner = owner
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up (getfqdn): no lookup on loopback.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that died mid-connection (a crash test's SIGKILL) resets it: not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def opened(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections[connection] = threading.current_thread()

    def closed(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.pop(connection, None)

    def close_connections(self) -> None:
        """Close every open (keep-alive) connection and wait for its thread to end."""
        with self._connections_lock:
            open_now = list(self._connections.items())
        for connection, _ in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for _, thread in open_now:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
