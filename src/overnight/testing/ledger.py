"""A ledger of step invocations and effects that lives outside the processes a crash test kills.

Counting re-executions inside a worker proves nothing: the counter dies with the worker. The
ledger is a small TCP service (line-delimited JSON on 127.0.0.1) that runs in the test process,
in a background thread, while workers run and die in subprocesses. Steps report to it:

- `await client.invoke()` at the top of a step body: logs `(step name, step key, idempotency key,
  pid, tag)` and returns how many times that step key of that run has been invoked so far (so a
  step can fail on its first calls and succeed later, with the count surviving every kill);
- `await client.apply(key, value)`: applies an effect once per `key`. A second apply of the same
  key is recorded as a duplicate attempt and not applied; returns True when the effect is new;
- `await client.lookup(key)`: the applied effect of that key, or None (what a reconcilable
  step's lookup asks).

Usage in a crash test::

    with Ledger() as ledger:                      # serving on a random port
        env = ledger.env(tag="first")             # OVERNIGHT_LEDGER=..., OVERNIGHT_LEDGER_TAG=...
        ...start a worker subprocess with env, kill it, resume it...
        ledger.wait_idle()                        # every request of the dead process is handled
        assert not ledger.duplicates(run_id)

and in a step (in the worker)::

    @step(effect="keyed")
    async def pay(order: str) -> str:
        ledger = default_client()
        await ledger.invoke()
        await ledger.apply(current_step().idempotency_key, order)
        return order

The `tag` names the process (one worker incarnation) so the test can tell invocations made
before a kill from those made after it, independently of pids.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socketserver
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from ..errors import UserError
from ..step import current_step

ENV_ADDRESS = "OVERNIGHT_LEDGER"
"""Environment variable with the ledger's `host:port` (read by `LedgerClient.from_env`)."""
ENV_TAG = "OVERNIGHT_LEDGER_TAG"
"""Environment variable naming the process (one worker incarnation) in every record it makes."""

__all__ = [
    "ENV_ADDRESS",
    "ENV_TAG",
    "ApplyAttempt",
    "Invocation",
    "Ledger",
    "LedgerClient",
    "LedgerError",
    "default_client",
    "step_name_of",
]


class LedgerError(UserError):
    """The ledger could not be reached or refused a request."""


def step_name_of(step_key: str) -> str:
    """The step name in a structural key: `gather#1/0/fetch#2` -> `fetch`."""
    return step_key.rsplit("/", 1)[-1].split("#", 1)[0]


@dataclass(frozen=True, slots=True)
class Invocation:
    """One start of a step body, as the ledger logged it."""

    seq: int
    """Order of arrival at the ledger, over all records (invocations and applies)."""
    run_id: str
    step: str
    """The step's name."""
    step_key: str
    """The step's structural key, e.g. `gather#1/0/fetch#1`."""
    idempotency_key: str
    attempt: int
    """The engine's attempt number for this step (1, 2, ...), as the step saw it."""
    count: int
    """How many invocations of this run's step key the ledger had seen, this one included."""
    tag: str
    """The process that invoked the step (see `ENV_TAG`)."""
    pid: int
    at: float
    """Unix time the ledger received it."""


@dataclass(frozen=True, slots=True)
class ApplyAttempt:
    """One request to apply an effect. Only the first one per key is applied."""

    seq: int
    key: str
    """The effect key: the idempotency key the step handed over, or a business key."""
    value: Any
    applied: bool
    """True for the attempt that applied the effect; False for a duplicate attempt."""
    run_id: str
    step_key: str
    """The step that made the attempt ("" outside a step)."""
    idempotency_key: str
    tag: str
    pid: int
    at: float


class _State:
    """The ledger's records, guarded by one lock (handlers run in threads)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.seq = 0
        self.invocations: list[Invocation] = []
        self.attempts: list[ApplyAttempt] = []
        self.applied: dict[str, ApplyAttempt] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.hellos: dict[str, int] = {}
        self.connections = 0

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        with self.lock:
            self.seq += 1
            seq, now = self.seq, time.time()
            tag, pid = str(request.get("tag", "")), int(request.get("pid", 0))
            if op == "invoke":
                run_id, step_key = str(request["run_id"]), str(request["step_key"])
                count = self.counts.get((run_id, step_key), 0) + 1
                self.counts[run_id, step_key] = count
                self.invocations.append(
                    Invocation(
                        seq=seq,
                        run_id=run_id,
                        step=str(request.get("step") or step_name_of(step_key)),
                        step_key=step_key,
                        idempotency_key=str(request.get("idempotency_key", "")),
                        attempt=int(request.get("attempt", 0)),
                        count=count,
                        tag=tag,
                        pid=pid,
                        at=now,
                    )
                )
                return {"ok": True, "count": count}
            if op == "apply":
                key = str(request["key"])
                new = key not in self.applied
                attempt = ApplyAttempt(
                    seq=seq,
                    key=key,
                    value=request.get("value"),
                    applied=new,
                    run_id=str(request.get("run_id", "")),
                    step_key=str(request.get("step_key", "")),
                    idempotency_key=str(request.get("idempotency_key", "")),
                    tag=tag,
                    pid=pid,
                    at=now,
                )
                self.attempts.append(attempt)
                if new:
                    self.applied[key] = attempt
                return {"ok": True, "new": new}
            if op == "lookup":
                found = self.applied.get(str(request["key"]))
                return {"ok": True, "found": None if found is None else asdict(found)}
            if op == "hello":
                self.hellos[tag] = pid
                self.lock.notify_all()
                return {"ok": True}
        return {"ok": False, "error": f"unknown ledger op {op!r}"}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.state.lock:
            self.server.state.connections += 1

    def handle(self) -> None:
        state = self.server.state
        while True:
            try:
                line = self.rfile.readline()
            except OSError:
                return  # the client was killed: what it sent completely was recorded
            if not line:
                return
            if not line.strip():
                continue
            try:
                request = orjson.loads(line)
                reply = state.handle(request)
            except Exception as exc:  # a bad request must not kill the ledger
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            try:
                self.wfile.write(orjson.dumps(reply) + b"\n")
                self.wfile.flush()
            except OSError:
                return  # the client died (it was killed): its request was still recorded

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.state.lock:
            self.server.state.connections -= 1
            self.server.state.lock.notify_all()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(address, _Handler)


class Ledger:
    """The ledger service: serves TCP on `host` (a random port by default) from a thread.

    Use it as a context manager (or call `start` and `close`). Its records are read in-process
    with `invocations`, `attempts`, `applied` and friends; they are safe to read while workers
    are reporting.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._state = _State()
        self._server = _Server((host, port), self._state)
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Ledger:
        """Start serving in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="overnight-ledger",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Ledger:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> tuple[str, int]:
        """`(host, port)` the ledger listens on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def env(self, tag: str) -> dict[str, str]:
        """Environment variables that point a subprocess's `default_client()` at this ledger."""
        host, port = self.address
        return {ENV_ADDRESS: f"{host}:{port}", ENV_TAG: tag}

    def client(self, tag: str = "") -> LedgerClient:
        """An async client of this ledger (for steps run in this process)."""
        host, port = self.address
        return LedgerClient(host, port, tag=tag)

    # -- synchronisation ------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no connection is open: every request a dead process sent is recorded.

        A worker killed mid-request leaves bytes in the socket; the ledger still reads and
        records them. Call this after the process is dead and before reading the records.
        """
        deadline = time.monotonic() + timeout
        with self._state.lock:
            while self._state.connections > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.lock.wait(remaining)
        return True

    def wait_hello(self, tag: str, timeout: float) -> bool:
        """Wait until the process tagged `tag` said hello (see `LedgerClient.hello`)."""
        deadline = time.monotonic() + timeout
        with self._state.lock:
            while tag not in self._state.hellos:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._state.lock.wait(remaining)
        return True

    def said_hello(self, tag: str) -> bool:
        """True once the process tagged `tag` said hello."""
        with self._state.lock:
            return tag in self._state.hellos

    # -- records --------------------------------------------------------------------------------

    def invocations(
        self, run_id: str | None = None, step_key: str | None = None
    ) -> list[Invocation]:
        """Logged invocations, in arrival order; optionally of one run and one step key."""
        with self._state.lock:
            return [
                i
                for i in self._state.invocations
                if (run_id is None or i.run_id == run_id)
                and (step_key is None or i.step_key == step_key)
            ]

    def attempts(self, run_id: str | None = None, key: str | None = None) -> list[ApplyAttempt]:
        """Every apply request (applied or duplicate), in arrival order."""
        with self._state.lock:
            return [
                a
                for a in self._state.attempts
                if (run_id is None or a.run_id == run_id) and (key is None or a.key == key)
            ]

    def applied(self, key: str) -> ApplyAttempt | None:
        """The attempt that applied effect `key`, or None if it was never applied."""
        with self._state.lock:
            return self._state.applied.get(key)

    def effects_of_step(self, run_id: str, step_key: str) -> list[ApplyAttempt]:
        """Effects applied by one step of one run (what a person checks for an in-doubt step)."""
        with self._state.lock:
            return [
                a
                for a in self._state.applied.values()
                if a.run_id == run_id and a.step_key == step_key
            ]

    def duplicates(self, run_id: str | None = None) -> list[ApplyAttempt]:
        """Apply attempts that found their key already applied."""
        return [a for a in self.attempts(run_id) if not a.applied]


class LedgerClient:
    """Async client of a `Ledger`, for use inside steps. One connection per call.

    Each call carries the calling step's identity (`current_step()`), this process's pid and
    its tag. The calls are safe to make from concurrent branches.
    """

    def __init__(self, host: str, port: int, *, tag: str = "", timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.tag = tag
        self.timeout = timeout

    @classmethod
    def from_env(cls) -> LedgerClient:
        """A client for the ledger named by `OVERNIGHT_LEDGER` (`host:port`)."""
        address = os.environ.get(ENV_ADDRESS)
        if not address:
            raise LedgerError(
                f"{ENV_ADDRESS} is not set: start a Ledger in the test process and pass "
                "ledger.env(tag) to the worker's environment"
            )
        host, _, port = address.rpartition(":")
        return cls(host, int(port), tag=os.environ.get(ENV_TAG, ""))

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return the reply (raises LedgerError on failure)."""
        message = {"tag": self.tag, "pid": os.getpid(), **message}
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                try:
                    writer.write(orjson.dumps(message) + b"\n")
                    await writer.drain()
                    line = await reader.readline()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            raise LedgerError(
                f"ledger at {self.host}:{self.port} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if not line:
            raise LedgerError(f"ledger at {self.host}:{self.port} closed the connection")
        reply: dict[str, Any] = orjson.loads(line)
        if not reply.get("ok"):
            raise LedgerError(f"ledger refused {message.get('op')!r}: {reply.get('error')}")
        return reply

    async def hello(self) -> None:
        """Announce this process (the test runner times random kills from it)."""
        await self.request({"op": "hello"})

    async def invoke(
        self,
        *,
        step: str | None = None,
        step_key: str | None = None,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Log an invocation of the running step; return this step key's invocation count.

        Inside a step every argument defaults from `current_step()`.
        """
        fields = _step_fields(run_id, step_key, idempotency_key)
        fields["attempt"] = _current_attempt()
        fields["step"] = step or step_name_of(fields["step_key"])
        reply = await self.request({"op": "invoke", **fields})
        return int(reply["count"])

    async def apply(self, key: str, value: Any = None) -> bool:
        """Apply effect `key` once; True if this call applied it, False for a duplicate.

        `value` must be JSON-serialisable; the first applied value is the one kept.
        """
        fields = _step_fields(None, None, None)
        reply = await self.request({"op": "apply", "key": key, "value": value, **fields})
        return bool(reply["new"])

    async def lookup(self, key: str) -> ApplyAttempt | None:
        """The attempt that applied effect `key`, or None if it was never applied."""
        reply = await self.request({"op": "lookup", "key": key})
        found = reply["found"]
        return None if found is None else ApplyAttempt(**found)


def _step_fields(
    run_id: str | None, step_key: str | None, idempotency_key: str | None
) -> dict[str, Any]:
    try:
        info = current_step()
    except UserError:
        return {
            "run_id": run_id or "",
            "step_key": step_key or "",
            "idempotency_key": idempotency_key or "",
        }
    return {
        "run_id": run_id or info.run_id,
        "step_key": step_key or info.key,
        "idempotency_key": idempotency_key or info.idempotency_key,
    }


def _current_attempt() -> int:
    try:
        return current_step().attempt
    except UserError:
        return 0


_default: LedgerClient | None = None


def default_client() -> LedgerClient:
    """This process's client of the ledger named in its environment (created once)."""
    global _default
    if _default is None:
        _default = LedgerClient.from_env()
    return _default
