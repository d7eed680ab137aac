"""The worker loop: claim due runs under a lease, run them, renew leases, drain on shutdown.

One worker runs many runs concurrently on one event loop. It claims runs whose `due_at` has come
(new runs, timers due, signals or children that arrived, leases that expired elsewhere), renews
the leases of the runs it holds every heartbeat, and learns at each heartbeat which runs were
cancelled or taken over. In-process events (a run started, a signal sent through the same engine)
wake it at once; otherwise it polls. At most once per poll interval it also fires the due ticks of
schedules (`Engine.fire_schedules`): with many workers, each tick still starts one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..store.base import Lease, RunRecord
from .crash import crash_point
from .executor import RunExecutor

if TYPE_CHECKING:
    from ..engine import Engine

log = logging.getLogger("overnight.worker")


def default_worker_id() -> str:
    """Host, pid and a random suffix: unique across machines and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims and executes runs for an Engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self.worker_id = engine.worker_id
        self.import_retry_seconds = 30.0
        self.executors: dict[str, RunExecutor] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._schedules_at = 0.0
        """Monotonic time of the next look for due schedule ticks."""

    def wake(self) -> None:
        """Something became due: claim now instead of at the next poll."""
        self._wake.set()

    # -- main loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and execute runs until `stop` is called."""
        engine = self.engine
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while not self._stopping:
                self._wake.clear()
                await self._fire_schedules()
                free = engine.max_concurrent_runs - len(self.executors)
                claimed: list[RunRecord] = []
                if free > 0:
                    try:
                        claimed = await self.store.claim(
                            self.worker_id,
                            now=time.time(),
                            limit=min(free, engine.claim_batch),
                            lease_seconds=engine.lease_seconds,
                            max_recoveries=engine.max_recoveries,
                        )
                    except Exception:
                        # A busy or briefly unreachable store must not stop the worker for good.
                        log.exception("claiming runs failed; trying again after a poll interval")
                        claimed = []
                    if claimed:
                        crash_point("after_claim")
                    for record in claimed:
                        self._spawn(record)
                if claimed and len(claimed) == min(free, engine.claim_batch):
                    await asyncio.sleep(0)  # more may be due: claim again after a loop turn
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), engine.poll_seconds)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _fire_schedules(self) -> None:
        """Start the runs of due schedule ticks, once per poll interval (a cheap read)."""
        if time.monotonic() < self._schedules_at:
            return
        self._schedules_at = time.monotonic() + self.engine.poll_seconds
        try:
            await self.engine.fire_schedules()
        except Exception:
            log.exception("firing due schedules failed; trying again after a poll interval")

    def _spawn(self, record: RunRecord) -> None:
        executor = RunExecutor(self, record)
        previous = self.executors.get(record.id)
        self.executors[record.id] = executor
        self._idle.clear()
        body = executor.execute()
        if previous is not None:
            # Our own lease on this run expired (a late heartbeat) and we claimed it again: the
            # old execution is fenced; stop it and let it unwind before the new one starts, so
            # no step runs twice at once here.
            previous.cancel("lost")
            body = self._after(previous, body)
        task = asyncio.create_task(body, name=f"overnight run {record.id}")
        executor.runner = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._ended(executor, t))

    @staticmethod
    async def _after(previous: RunExecutor, body: Coroutine[Any, Any, None]) -> None:
        if previous.runner is not None:
            await asyncio.wait([previous.runner])
        await body

    def _ended(self, executor: RunExecutor, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        run_id = executor.record.id
        if self.executors.get(run_id) is executor:
            del self.executors[run_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("run %s: executor crashed", run_id, exc_info=task.exception())
        if not self.executors:
            self._idle.set()
        self._wake.set()
        self.engine.notify_changed(run_id)

    async def _heartbeat(self) -> None:
        engine = self.engine
        while True:
            await asyncio.sleep(engine.heartbeat_seconds)
            if not self.executors:
                continue
            crash_point("before_lease_renew")
            leases = [ex.lease for ex in self.executors.values()]
            try:
                renewal = await self.store.renew(
                    leases, now=time.time(), lease_seconds=engine.lease_seconds
                )
            except Exception:
                log.exception("lease renewal failed; retrying at the next heartbeat")
                continue
            for run_id in renewal.lost:
                executor = self.executors.get(run_id)
                if executor is not None:
                    log.warning("run %s: lease lost to another worker; stopping it here", run_id)
                    executor.cancel("lost")
            for run_id in renewal.cancel:
                self.cancel_local(run_id)

    def cancel_local(self, run_id: str) -> bool:
        """Cancel a run this worker is executing. True if it was here."""
        executor = self.executors.get(run_id)
        if executor is None:
            return False
        executor.cancel("cancel")
        return True

    def leases(self) -> list[Lease]:
        """Leases this worker holds now."""
        return [ex.lease for ex in self.executors.values()]

    # -- shutdown -----------------------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Stop claiming; let running steps finish and requeue their runs; hard-stop at timeout."""
        self._stopping = True
        self._wake.set()
        for executor in list(self.executors.values()):
            executor.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        for executor in list(self.executors.values()):
            executor.cancel("drain")
        if self._tasks:
            await asyncio.wait(set(self._tasks))
