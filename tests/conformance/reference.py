"""Against the reference: random scripts of protocol calls, run on the store under test and on a
`MemoryStore` (the reference model), must give the same answers and leave the same state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from typing import Any

import orjson
import pytest

from overnight.errors import OvernightError
from overnight.store import MemoryStore
from overnight.store.base import Entry, EntryKind, Lease, Renewal, RunRecord, Signal, Store, Wait

from .support import LEASE, T, claim, entry, finish, lease_of, new_run, suspend


class ReferenceTests:
    """The store answers a random script of calls as the memory store does."""

    @pytest.mark.parametrize("seed", range(10))
    async def test_behaves_like_the_memory_store(self, store: Store, seed: int) -> None:
        """A random script of protocol calls gives the same answers and the same final state
        as on a MemoryStore (the reference model)."""
        reference = MemoryStore()
        expected = await random_script(reference, seed)
        actual = await random_script(store, seed)
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert got == want, f"step {i} of seed {seed}: {want[0]}"


class _Shaper:
    """Makes what store calls return comparable between backends.

    `waiting` is compared as the JSON it holds, not as bytes. A signal's `seq` only orders
    signals, and a backend may skip numbers (as a database sequence does), so seqs are compared
    by rank: the n-th signal sent gets n, in signals and in the cursor a waiting run keeps.
    """

    def __init__(self) -> None:
        self.ranks: dict[int, int] = {}

    def sent(self, signal: Signal | None) -> None:
        if signal is not None:
            self.ranks[signal.seq] = len(self.ranks) + 1

    def __call__(self, value: Any) -> Any:
        if isinstance(value, Signal):
            return dataclasses.astuple(dataclasses.replace(value, seq=self.ranks[value.seq]))
        if isinstance(value, RunRecord):
            waiting = None if value.waiting is None else orjson.loads(value.waiting)
            if waiting is not None:
                waiting["signal_cursor"] = self.ranks.get(waiting["signal_cursor"], 0)
            return (dataclasses.astuple(dataclasses.replace(value, waiting=None)), waiting)
        if isinstance(value, Entry):
            return tuple(value)
        if isinstance(value, Renewal):
            return ("renewal", sorted(value.lost), sorted(value.cancel))
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value


ACTIONS = (
    *("create", "create", "claim", "claim", "write", "write", "finish", "suspend"),
    *("signal", "cancel", "control", "renew", "read"),
)


async def random_script(store: Store, seed: int, steps: int = 300) -> list[tuple[str, Any]]:
    """Drive a store through random calls (sequentially, one at a time) and record every answer.

    Claims use a large limit, so which of several equally due runs comes first does not matter.
    """
    rng = random.Random(seed)
    now = T
    run_ids: list[str] = []
    leases: list[Lease] = []
    trace: list[tuple[str, Any]] = []
    signal_names = ("go", "stop")
    shape = _Shaper()

    def some_run() -> str:
        return rng.choice(run_ids) if run_ids and rng.random() < 0.95 else "missing"

    for _ in range(steps):
        now += rng.choice((0.0, 0.5, 1.0, 5.0, LEASE + 1))
        action = rng.choice(ACTIONS)
        # Mostly one of the latest leases (likely still held), sometimes any (likely stale).
        pool = leases[-6:] if rng.random() < 0.7 else leases
        lease = rng.choice(pool) if pool else Lease("missing", "w", 1)
        try:
            if action == "create":
                parent = rng.choice(run_ids) if run_ids and rng.random() < 0.3 else None
                run_id = f"r{len(run_ids)}" if rng.random() < 0.9 or not run_ids else run_ids[0]
                if run_id not in run_ids:
                    run_ids.append(run_id)
                result: Any = await store.create_run(new_run(run_id, parent_id=parent), now=now)
            elif action == "claim":
                owner = rng.choice(("w1", "w2"))
                max_recoveries = rng.choice((0, 1, 3))
                claimed = await claim(store, owner, now=now, max_recoveries=max_recoveries)
                leases.extend(sorted((lease_of(r) for r in claimed), key=lambda x: x.run_id))
                result = sorted(shape(claimed))
            elif action == "write":
                seq = len(await store.read_journal(lease.run_id, limit=10**6))
                if rng.random() < 0.1:
                    seq += rng.choice((-1, 1))
                n = rng.randint(1, 3)
                data = f"blob {seed} {seq}".encode() * 100
                digest = hashlib.sha256(data).hexdigest()
                blobs = {digest: data} if rng.random() < 0.3 else {}
                # Refused at once or at the commit: the protocol allows both, so both count
                # as the same answer.
                store.append(lease, [entry(seq + i, f"k#{seq + i}") for i in range(n)], blobs)
                await store.commit(lease)
                result = "committed"
            elif action == "finish":
                status_ = rng.choice(("completed", "failed", "cancelled"))
                follow = new_run(f"{lease.run_id}~next") if rng.random() < 0.2 else None
                if follow is not None and follow.id not in run_ids:
                    run_ids.append(follow.id)
                await finish(store, lease, status_, now=now, continue_as=follow)
                result = "finished"
            elif action == "suspend":
                status_ = rng.choice(("waiting", "waiting", "parked", "queued"))
                # The cursor: the seq of the k-th signal the run got (0: none looked at yet).
                sent = [
                    signal.seq
                    for name in signal_names
                    for signal in await store.signals(lease.run_id, name)
                ]
                sent.sort()
                looked = rng.randint(0, len(sent))
                wait = Wait(
                    timer=now + rng.choice((1.0, 10.0, 100.0)) if rng.random() < 0.5 else None,
                    signals=tuple(rng.sample(signal_names, rng.randint(0, 2))),
                    signal_cursor=sent[looked - 1] if looked else 0,
                    children=tuple(rng.sample(run_ids, min(len(run_ids), rng.randint(0, 2)))),
                )
                await suspend(store, lease, status_, wait if rng.random() < 0.9 else None, now=now)
                result = "suspended"
            elif action == "signal":
                result = await store.send_signal(
                    some_run(),
                    rng.choice(signal_names),
                    b"{}",
                    f"s{rng.randint(0, 20)}",
                    now=now,
                )
                shape.sent(result)
            elif action == "cancel":
                result = await store.request_cancel(some_run(), now=now)
            elif action == "control":
                entries: list[tuple[str, EntryKind, bytes]] = [("", "control", b"{}")]
                result = await store.control(some_run(), entries[: rng.randint(0, 1)], now=now)
            elif action == "renew":
                chosen = rng.sample(leases, min(len(leases), 3))
                result = await store.renew(chosen, now=now, lease_seconds=LEASE)
            else:
                run_id = some_run()
                result = (
                    await store.read_journal(run_id, after_seq=rng.randint(-2, 5), limit=4),
                    await store.signals(run_id, rng.choice(signal_names)),
                    await store.list_runs(statuses=["waiting", "parked"]),
                )
        except OvernightError as exc:
            result = ("error", type(exc).__name__)
        trace.append((action, shape(result)))

    trace.append(("runs", shape(await store.list_runs(limit=10**6))))
    trace.append(("counts", await store.count_runs()))
    for run_id in run_ids:
        trace.append((f"journal {run_id}", shape(await store.read_journal(run_id))))
        for name in signal_names:
            trace.append((f"signals {run_id} {name}", shape(await store.signals(run_id, name))))
    return trace
