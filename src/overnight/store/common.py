"""Encodings shared by the store implementations (so every backend writes the same bytes)."""

from __future__ import annotations

import orjson

from ..errors import UserError
from .base import TERMINAL, RunRecord, Wait


def error_json(error_type: str, message: str) -> bytes:
    """The `error` column of a run: `{"type": ..., "message": ...}`."""
    return orjson.dumps({"type": error_type, "message": message})


CANCELLED_ERROR = error_json("RunCancelled", "the run was cancelled")


def dead_error(recoveries: int) -> bytes:
    """The `error` of a run moved to `dead` after its workers kept dying."""
    return error_json(
        "RunDead",
        f"the workers running this run died {recoveries} times; it was moved aside so it "
        "cannot take more workers down",
    )


def cancelled_output() -> bytes:
    """Data of the `output` entry written when a run no worker holds is cancelled."""
    return orjson.dumps({"status": "cancelled", "error": orjson.loads(CANCELLED_ERROR)})


def out_of_order(run_id: str, seq: int, last: int) -> str:
    """Why an append was refused: its entries do not continue the run's journal."""
    return (
        f"run {run_id!r}: journal entry seq {seq} does not follow {last}; two writers? This "
        "worker stops writing to the run; another takes it over when the lease expires"
    )


def encode_wait(wait: Wait | None) -> bytes | None:
    """The `waiting` column: what a waiting run waits for."""
    if wait is None:
        return None
    return orjson.dumps(
        {
            "timer": wait.timer,
            "signals": list(wait.signals),
            "signal_cursor": wait.signal_cursor,
            "children": list(wait.children),
        }
    )


def wait_signals(waiting: bytes | None) -> list[str]:
    """Signal names a waiting run waits for."""
    return [] if waiting is None else list(orjson.loads(waiting)["signals"])


def wait_children(waiting: bytes | None) -> list[str]:
    """Child run ids a waiting run waits for."""
    return [] if waiting is None else list(orjson.loads(waiting)["children"])


def refuse_control(run: RunRecord, now: float) -> None:
    """Why `control` may not requeue this run, as a UserError; nothing if it may.

    Ended runs stay ended, except `dead` ones: a person may retry them. A run whose worker
    still holds a live lease is that worker's.
    """
    if run.status in TERMINAL and run.status != "dead":
        raise UserError(f"run {run.id!r} already ended ({run.status}); nothing to resume")
    if run.status == "running" and run.due_at is not None and run.due_at > now:
        raise UserError(
            f"run {run.id!r} is being worked on by {run.owner!r}; wait until it parks "
            "or waits, or cancel it"
        )
