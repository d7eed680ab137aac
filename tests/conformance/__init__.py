"""The store conformance suite: what every `Store` backend must do, tested through the protocol.

Subclass `StoreConformance` once per backend and give it a `store_factory` fixture: a callable
returning a new, unopened store on the same data each time it is called (two SQLite stores on one
file, two PostgreSQL stores on one database; a memory store returns itself). `store` is the first
one, opened; `other` is a second one, as another process would see the data.

The tests are grouped by area, one mixin per module; `StoreConformance` gathers them all:

- `runs`: creating (idempotently), reading, finishing, listing and counting runs; reads are copies.
- `leases`: claims, lease renewal, takeovers and dead runs.
- `journal`: append and commit, blobs, fencing of stale leases, `close` committing what is buffered.
- `waits`: suspending (waiting, parked, queued), wake-ups, and signals.
- `control`: cancel requests and control entries.
- `schedules`: schedules put, paused and removed; the due ones; firing a tick into one run.
- `reference`: random scripts of calls that must answer as the memory store does.

Shared helpers (the made-up clock `T`, `LEASE`, short forms of protocol calls) are in `support`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from overnight.store.base import Store

from .control import ControlTests
from .journal import JournalTests
from .leases import LeaseTests
from .reference import ReferenceTests
from .runs import RunTests
from .schedules import ScheduleTests
from .waits import WaitTests

__all__ = ["StoreConformance"]


# pytest collects inherited tests from the last base first: the areas are listed in reverse, so the
# suite runs in the order the docstring above lists them.
class StoreConformance(
    ReferenceTests, ScheduleTests, ControlTests, WaitTests, JournalTests, LeaseTests, RunTests
):
    """Tests every Store implementation must pass. Subclasses provide `store_factory`."""

    @pytest.fixture
    def store_factory(self) -> Callable[[], Store]:
        raise NotImplementedError("a conformance subclass must define the store_factory fixture")

    @pytest.fixture
    async def store(self, store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
        store = store_factory()
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    @pytest.fixture
    async def other(self, store: Store, store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
        """A second store on the same data (another connection, as another process has)."""
        second = store_factory()
        await second.open()
        try:
            yield second
        finally:
            if second is not store:
                await second.close()
