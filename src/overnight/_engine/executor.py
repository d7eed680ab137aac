"""Running one claimed run: replay its journal, execute new work, record how it ended.

The workflow body runs in its own task. How that task ends decides the run's transition:
returned -> completed; raised -> failed; `Suspend` -> waiting (worker released); `Park` or a
divergence -> parked; `Drain` -> requeued for another worker; cancelled by request -> cancelled;
past the run's deadline -> failed with RunTimeout. A lost lease (another worker took the run over)
stops the execution without writing anything: the new owner continues from the journal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Literal

import orjson

from ..context import Context
from ..errors import RunTimeout, SerializationError, StoreError, UserError
from ..store.base import Lease, NewRun, RunRecord, Store, Wait
from . import codec
from .crash import crash_point
from .journal import Divergence, JournalIndex
from .run import ContinueAsNew, Drain, Park, RunOptions, RunState, Suspend
from .scope import CURRENT, Scope
from .waits import cancel_children

if TYPE_CHECKING:
    from ..workflow import Workflow
    from .worker import Worker

log = logging.getLogger("overnight.executor")

StopReason = Literal["cancel", "timeout", "lost", "drain"]
Outcome = tuple[BaseException | None, Any]
JOURNAL_PAGE = 2000


async def load_journal(store: Store, run_id: str) -> JournalIndex:
    """Read a run's journal page by page into a replay index."""
    index = JournalIndex()
    after = -1
    while True:
        page = await store.read_journal(run_id, after_seq=after, limit=JOURNAL_PAGE)
        for entry in page:
            index.add(entry)
        if len(page) < JOURNAL_PAGE:
            return index
        after = page[-1].seq


def error_fields(exc: BaseException) -> dict[str, str]:
    """How an error is journaled: its type name and message."""
    return {"type": type(exc).__name__, "message": str(exc)}


class RunExecutor:
    """Executes one claimed run for a worker."""

    def __init__(self, worker: Worker, record: RunRecord) -> None:
        self.worker = worker
        self.store = worker.store
        self.record = record
        self.lease = Lease(record.id, worker.worker_id, record.epoch)
        self.task: asyncio.Task[Any] | None = None
        self.run: RunState | None = None
        self.stop_reason: StopReason | None = None
        self.in_body = False
        self.runner: asyncio.Task[None] | None = None
        """The worker's task running `execute` (set by the worker)."""

    # -- requests from the worker -------------------------------------------------------------

    def cancel(self, reason: StopReason) -> None:
        """Stop the run now: cancellation, deadline, lost lease, or a drain that ran out of time."""
        if self.stop_reason is None or reason == "lost":
            self.stop_reason = reason
        if self.in_body and self.task is not None:
            self.task.cancel()  # only the workflow is interrupted, never the recording of its end

    def drain(self) -> None:
        """Let running steps finish, start no new ones, then requeue the run."""
        if self.run is not None and self.run.stop is None:
            self.run.stop = Drain

    # -- execution ----------------------------------------------------------------------------

    async def execute(self) -> None:
        try:
            await self._execute()
        except StoreError as exc:
            # The store is unavailable or our lease is gone: write nothing; the lease expires
            # and the run is taken over from its journal.
            log.warning("run %s: stopped without recording: %s", self.record.id, exc)

    async def _execute(self) -> None:
        record = self.record
        engine = self.worker.engine
        try:
            workflow = engine.resolve_workflow(record.workflow)
        except UserError as exc:
            retry_at = time.time() + self.worker.import_retry_seconds
            await self.store.suspend(
                self.lease,
                status="queued",
                wait=Wait(timer=retry_at),
                note=f"worker {self.worker.worker_id!r} could not load the workflow: {exc}",
                now=time.time(),
            )
            return
        journal = await load_journal(self.store, record.id)
        run = RunState(
            run_id=record.id,
            store=self.store,
            lease=self.lease,
            journal=journal,
            options=RunOptions.decode(record.options),
            created_at=record.created_at,
            strict=engine.strict,
            inline_wait=engine.inline_wait_seconds,
        )
        self.run = run
        if record.cancel_requested:
            await self._finish_cancelled(run)
            return
        if run.deadline is not None and time.time() >= run.deadline:
            await self._fail(run, RunTimeout(_timeout_message(run)))
            return
        outcome = await self._run_body(workflow, run)
        await self._record_outcome(run, outcome)

    async def _run_body(self, workflow: Workflow[Any, Any], run: RunState) -> Outcome:
        """Run the workflow in this task, under the root scope; return how it ended.

        The body runs in the executor's own task (one task per run, not two); `cancel`
        interrupts it only while `in_body`, so recording the outcome is never cut short.
        """
        self.task = asyncio.current_task()
        root = Scope(run, "", self.task)
        token = CURRENT.set(root)
        watchdog = None
        if run.deadline is not None:
            delay = max(0.0, run.deadline - time.time())
            watchdog = asyncio.get_running_loop().call_later(delay, self.cancel, "timeout")
        self.in_body = True
        try:
            result = await workflow(Context(run), codec.loads(self.record.input))
            run.journal.check_complete()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                if self.stop_reason is None:
                    raise  # cancelled from outside (the loop is shutting down): record nothing
                if self.task is not None:
                    self.task.uncancel()
            return (exc, None)
        else:
            return (None, result)
        finally:
            self.in_body = False
            CURRENT.reset(token)
            if watchdog is not None:
                watchdog.cancel()

    async def _record_outcome(self, run: RunState, outcome: Outcome) -> None:
        if self.stop_reason == "lost":
            return
        exc, result = outcome
        if exc is None:
            await self._complete(run, result)
        elif isinstance(exc, StoreError):
            raise exc
        elif isinstance(exc, Suspend):
            await self._suspend(run, exc.wait)
        elif isinstance(exc, Park | Divergence):
            message = exc.message
            await self._release(run, "parked", None, message)
        elif isinstance(exc, Drain):
            await self._release(run, "queued", None, None)
        elif isinstance(exc, ContinueAsNew):
            await self._continue_as_new(run, exc.input)
        elif isinstance(exc, asyncio.CancelledError):
            await self._stopped(run)
        elif isinstance(exc, Exception):
            await self._fail(run, exc)
        else:
            raise exc

    async def _stopped(self, run: RunState) -> None:
        if self.stop_reason == "timeout":
            await self._fail(run, RunTimeout(_timeout_message(run)))
        elif self.stop_reason == "drain":
            await self._release(run, "queued", None, None)
        else:
            await self._finish_cancelled(run)

    async def _complete(self, run: RunState, value: Any) -> None:
        try:
            raw = codec.dumps(value)
        except SerializationError as exc:
            await self._fail(run, SerializationError(f"the workflow's output: {exc}"))
            return
        run.write("", "output", {"status": "completed", "value": run.value_field(raw)})
        crash_point("before_output")
        await self.store.finish(
            self.lease, status="completed", result=raw, error=None, now=time.time()
        )

    async def _fail(self, run: RunState, exc: BaseException) -> None:
        error = error_fields(exc)
        run.write("", "output", {"status": "failed", "error": error})
        crash_point("before_output")
        await self.store.finish(
            self.lease, status="failed", result=None, error=orjson.dumps(error), now=time.time()
        )

    async def _finish_cancelled(self, run: RunState) -> None:
        error = {"type": "RunCancelled", "message": "the run was cancelled"}
        run.write("", "output", {"status": "cancelled", "error": error})
        await self.store.finish(
            self.lease, status="cancelled", result=None, error=orjson.dumps(error), now=time.time()
        )
        try:
            await cancel_children(self.store, run.run_id, now=time.time())
        except StoreError:
            log.warning(
                "run %s: its children could not all be cancelled", run.run_id, exc_info=True
            )

    async def _continue_as_new(self, run: RunState, input: Any) -> None:
        base, _, generation = run.run_id.partition("~")
        next_id = f"{base}~{int(generation or 1) + 1}"
        record = self.record
        new = NewRun(
            id=next_id,
            workflow=record.workflow,
            version=record.version,
            input=codec.dumps(input),
            options=record.options,
            parent_id=record.parent_id,
        )
        run.write("", "output", {"status": "completed", "continued_to": next_id})
        await self.store.finish(
            self.lease,
            status="completed",
            result=None,
            error=None,
            now=time.time(),
            continue_as=new,
        )

    async def _suspend(self, run: RunState, wait: Wait) -> None:
        timer = wait.timer
        if run.deadline is not None and (timer is None or run.deadline < timer):
            timer = run.deadline  # wake at the deadline to fail the run on time
        wait = Wait(timer, wait.signals, max(wait.signal_cursor, run.signal_cursor), wait.children)
        await self._release(run, "waiting", wait, None)

    async def _release(
        self,
        run: RunState,
        status: Literal["waiting", "parked", "queued"],
        wait: Wait | None,
        note: str | None,
    ) -> None:
        """Give the run back to the store (after everything it wrote, in the same commit)."""
        await self.store.suspend(self.lease, status=status, wait=wait, note=note, now=time.time())


def _timeout_message(run: RunState) -> str:
    return f"the run went past its time limit of {run.options.timeout} s"
