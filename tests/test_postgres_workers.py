"""The PostgreSQL store with several workers: wake-ups by LISTEN/NOTIFY and the polling
fallback, connections lost under load, concurrent claims, leases kept by heartbeats and taken over
when they expire (the old owner fenced out), and wake-ups racing suspends in other stores."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from psycopg import sql

from overnight import Engine
from overnight.store.base import Lease, Wait
from overnight.store.postgres import PostgresStore
from tests import pg_workflows
from tests.conformance.support import LEASE, T, claim, finish, new_run
from tests.helpers import until_status
from tests.pg_support import execute, opened, query, schema_fixture, until, url_for
from tests.pg_workflows import stamps, waits_then_stamps


@pytest.fixture
def schema() -> Iterator[str]:
    yield from schema_fixture()


# -- (a) wake-ups: LISTEN/NOTIFY, and polling when notifications are lost -----------------------


@pytest.fixture
async def client(schema: str) -> AsyncIterator[Engine]:
    """An engine that only starts and steers runs, on a store of its own (as another process)."""
    async with Engine(PostgresStore(url_for(schema)), worker=False) as engine:
        yield engine


async def pickup_latency(client: Engine, worker: Engine) -> float:
    """Seconds from a run's start (committed, by the client) to its first step (in the worker)."""
    started = time.time()
    handle = await client.start(stamps)
    ran_at: float = await worker.result(handle.run_id, timeout=10)
    return ran_at - started


async def test_an_idle_worker_is_woken_by_notify_at_once(schema: str, client: Engine) -> None:
    """The worker polls every 30 s: only the notification can make it claim sooner."""
    async with Engine(PostgresStore(url_for(schema)), poll_seconds=30) as worker:
        await pickup_latency(client, worker)  # warm up: imports, prepared statements
        latencies = []
        for _ in range(10):
            await asyncio.sleep(0.05)  # idle again: waiting out its 30 s poll
            latencies.append(await pickup_latency(client, worker))
    median = statistics.median(latencies)
    print(
        f"\nNOTIFY wake-up: start -> first step median {median * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} runs (poll interval 30 s)"
    )
    assert median < 0.1
    assert max(latencies) < 1.0


async def test_runs_are_picked_up_by_polling_while_the_listener_is_down(
    schema: str, client: Engine
) -> None:
    store = PostgresStore(url_for(schema), listen_retry_seconds=600)
    async with Engine(store, poll_seconds=0.2) as worker:
        listener = store.listener
        assert listener is not None
        assert listener.listening.is_set()
        execute("SELECT pg_terminate_backend(%s)", listener.backend_pid)
        await until("the listener notices", lambda: not listener.listening.is_set())
        latencies = [await pickup_latency(client, worker) for _ in range(3)]
        assert not listener.listening.is_set()  # still down: these were found by polling
    print(f"\npolling fallback (every 0.2 s): pickups after {[round(x, 3) for x in latencies]} s")
    assert max(latencies) < 2.0


async def test_the_listener_reconnects_and_wakes_the_worker_again(
    schema: str, client: Engine
) -> None:
    store = PostgresStore(url_for(schema), listen_retry_seconds=0.1)
    async with Engine(store, poll_seconds=30) as worker:
        listener = store.listener
        assert listener is not None
        killed = listener.backend_pid
        execute("SELECT pg_terminate_backend(%s)", killed)
        await until("the listener is back", lambda: listener.backend_pid not in (killed, None))
        assert listener.listening.is_set()
        assert await pickup_latency(client, worker) < 1.0  # notified again, not polled (30 s)


async def test_connections_killed_under_a_working_engine_are_replaced(
    schema: str, client: Engine
) -> None:
    """Every connection of both stores is terminated (as by a server-side idle timeout or a
    failover) while a run waits for a signal: the signal is still sent, the run completes."""
    store = PostgresStore(url_for(schema), listen_retry_seconds=0.1)
    async with Engine(store, poll_seconds=0.1) as worker:
        handle = await client.start(waits_then_stamps)
        await until_status(client, handle.run_id, "waiting", timeout=10)
        killed = query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            f"overnight {schema}",
        )
        assert len(killed) >= 4  # each store's pool and listener
        assert await client.signal(handle.run_id, "go", "after the kill")
        got, _ = await worker.result(handle.run_id, timeout=10)
    assert got == "after the kill"


# -- (b) many workers claiming from one table ----------------------------------------------------


async def test_concurrent_claims_from_two_stores_never_hand_out_a_run_twice(schema: str) -> None:
    url = url_for(schema)
    first, second = await opened(url), await opened(url)
    try:
        runs = 600
        for start in range(0, runs, 100):
            await asyncio.gather(
                *(first.create_run(new_run(f"r{i:04}"), now=T) for i in range(start, start + 100))
            )

        async def drain(store: PostgresStore, owner: str) -> list[str]:
            got: list[str] = []
            while batch := await claim(store, owner, now=T, limit=7):
                got.extend(r.id for r in batch)
            return got

        # 16 claimers, 8 on each store: each store's claims share its transactions, and the
        # two stores' transactions run at the same time on the server.
        results = await asyncio.gather(
            *(
                drain(store, f"{name}{i}")
                for i in range(8)
                for store, name in ((first, "a"), (second, "b"))
            )
        )
        claimed = Counter(run_id for got in results for run_id in got)
        assert sorted(claimed) == [f"r{i:04}" for i in range(runs)]
        assert set(claimed.values()) == {1}
        by_store = [sum(len(g) for g in results[k::2]) for k in range(2)]
        assert min(by_store) > 0, by_store  # both really competed
        owners = {
            run_id: owner
            for owner, got in zip((f"{n}{i}" for i in range(8) for n in "ab"), results, strict=True)
            for run_id in got
        }
        rows = query(
            sql.SQL("SELECT id, owner, epoch, status, due_at FROM {}.runs")
            .format(sql.Identifier(schema))
            .as_string(None)
        )
        assert len(rows) == runs
        for run_id, owner, epoch, status, due_at in rows:
            assert (owner, epoch, status, due_at) == (owners[run_id], 1, "running", T + LEASE)
        print(f"\n{runs} runs claimed once each; by store: {by_store}")
    finally:
        await first.close()
        await second.close()


# -- (c) leases between workers: heartbeats keep them, expiry hands the run over, fencing --------


async def test_a_worker_whose_lease_expired_is_fenced_out_by_the_one_that_took_over(
    schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Worker A stops renewing (its heartbeat is far longer than its lease) while a step runs;
    worker B takes the run over after the lease expires and completes it. When A's step returns,
    its writes are rejected by the epoch: the journal holds nothing A wrote after the takeover."""
    pg_workflows.CALLS.clear()
    pg_workflows.GATE.update(entered=asyncio.Event(), release=asyncio.Event())
    a_store = PostgresStore(url_for(schema))
    # A polls rarely: it claims its run when it starts it (woken), then must not take its own
    # expired run back before B does.
    async with Engine(a_store, lease_seconds=0.5, heartbeat_seconds=60, poll_seconds=30) as a:
        handle = await a.start(pg_workflows.calls_slow_once)
        await asyncio.wait_for(pg_workflows.GATE["entered"].wait(), 10)
        first = await a.get_run(handle.run_id)
        assert a.active_runs() == [handle.run_id]
        async with Engine(PostgresStore(url_for(schema)), poll_seconds=0.05) as b:
            assert await b.result(handle.run_id, timeout=10) == "second worker"
            record = await b.get_run(handle.run_id)
            assert (record.status, record.attempts, record.recoveries) == ("completed", 2, 1)
            assert record.epoch == first.epoch + 1
            assert a.active_runs() == [handle.run_id]  # A's step still runs
            pg_workflows.GATE["release"].set()  # A's step returns; A tries to journal it
            await until("A gives the run up", lambda: handle.run_id not in a.active_runs())
            rejected = f"lease (epoch {first.epoch}) was taken over by another worker"
            assert any(rejected in r.getMessage() for r in caplog.records)  # A tried, in vain
            entries = await b.journal(handle.run_id)
            assert await b.get_run(handle.run_id) == record  # unchanged by A
    assert len(pg_workflows.CALLS) == 2
    assert len(set(pg_workflows.CALLS)) == 1  # keyed: the same idempotency key both times
    assert [e.kind for e in entries if e.key == "slow_once#1"].count("done") == 1
    assert all(b"first worker" not in e.data for e in entries)


async def test_heartbeats_keep_the_lease_of_a_step_longer_than_the_lease(schema: str) -> None:
    """A step runs for two lease periods; renewals keep the lease, so a second worker,
    polling all along, never takes the run over."""
    url = url_for(schema)
    timing: dict[str, Any] = {"lease_seconds": 1.0, "heartbeat_seconds": 0.1, "poll_seconds": 0.05}
    async with Engine(PostgresStore(url), **timing) as a:
        handle = await a.start(pg_workflows.runs_longer_than_its_lease, 2.0)
        await until_status(a, handle.run_id, "running")
        async with Engine(PostgresStore(url), **timing) as b:
            assert await a.result(handle.run_id, timeout=10) == "done"
            assert b.active_runs() == []
            record = await b.get_run(handle.run_id)
    assert (record.status, record.attempts, record.recoveries, record.epoch) == (
        "completed",
        1,
        0,
        1,
    )


# -- (d) wake-ups racing suspends across stores ----------------------------------------------


async def test_wake_ups_racing_suspends_in_other_stores_are_never_lost(schema: str) -> None:
    """Parents suspend, waiting for their child or for a signal, at the very moment their
    children end and their signals arrive, in other stores (other transactions).

    Two workers A and B each hold half of the parents, and the children of the other's
    parents; a third store sends the signals. In whichever order the transactions reach each
    run, every parent ends up due: no wait is left without the wake-up that came (as
    read-committed transactions that each read what the other has not committed yet can do),
    and no two batches deadlock (each locks parents the other's children wake).
    """
    url = url_for(schema)
    a, b, c = await opened(url), await opened(url), await opened(url)
    try:
        n = 160
        await asyncio.gather(*(c.create_run(new_run(f"p{i:03}"), now=T) for i in range(n)))
        held = {r.id: (a, r) for r in await claim(a, "a", now=T, limit=n // 2)}
        held |= {r.id: (b, r) for r in await claim(b, "b", now=T, limit=n // 2)}
        for worker, other, name in ((a, b, "b"), (b, a, "a")):  # children go to the other one
            parents = [run_id for run_id, (store, _) in held.items() if store is worker]
            await asyncio.gather(
                *(c.create_run(new_run(f"c{p[1:]}", parent_id=p), now=T + 1) for p in parents)
            )
            held |= {r.id: (other, r) for r in await claim(other, name, now=T + 1, limit=n)}
        assert len(held) == 2 * n
        moves = []
        for run_id, (store, run) in held.items():
            assert run.owner is not None
            lease = Lease(run_id, run.owner, run.epoch)
            if run_id.startswith("c"):
                if int(run_id[1:]) % 2 == 0:
                    moves.append(finish(store, lease, now=T + 2))
            elif int(run_id[1:]) % 2 == 0:
                wait = Wait(children=(f"c{run_id[1:]}",))
                moves.append(
                    store.suspend(lease, status="waiting", wait=wait, note=None, now=T + 2)
                )
            else:
                wait = Wait(signals=("go",))
                moves.append(
                    store.suspend(lease, status="waiting", wait=wait, note=None, now=T + 2)
                )
                moves.append(c.send_signal(run_id, "go", b"1", "s", now=T + 2))
        random.Random(7).shuffle(moves)
        started = time.perf_counter()
        await asyncio.gather(*moves)
        print(f"\nracing: {len(moves)} moves in {time.perf_counter() - started:.2f} s")
        assert (a.retries, b.retries, c.retries) == (0, 0, 0)  # no deadlock to resolve
        waiting = await c.list_runs(statuses=["waiting"], limit=n)
        assert len(waiting) == n
        lost = sorted(r.id for r in waiting if r.due_at is None)
        assert lost == [], f"{len(lost)} parents wait for a wake-up that came: {lost}"
    finally:
        for store in (a, b, c):
            await store.close()
