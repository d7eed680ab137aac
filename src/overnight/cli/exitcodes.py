"""The `overnight` command's exit codes, in one place (docs/cli.md lists them from here)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What the process's exit status says about the run (or the command); see `EXPLAINED`."""

    COMPLETED = 0
    FAILED = 1
    BAD_INPUT = 2
    WAITING = 3
    PARKED = 4
    CANCELLED = 5
    INTERNAL = 70
    INTERRUPTED = 130


EXPLAINED: dict[ExitCode, str] = {
    ExitCode.COMPLETED: "the run completed, or the command did what it was asked",
    ExitCode.FAILED: "the run failed, or is dead (its workers kept dying)",
    ExitCode.BAD_INPUT: (
        "bad input: an unknown option, a target that does not import, invalid JSON, an unknown "
        "store URL or a store that is not ours, a run id that does not exist; nothing was changed"
    ),
    ExitCode.WAITING: "the run waits for a signal or a timer (with `--no-wait`)",
    ExitCode.PARKED: "the run is parked until a person decides (the message says how)",
    ExitCode.CANCELLED: "the run was cancelled",
    ExitCode.INTERNAL: "a bug: rerun with `--debug` and report the traceback",
    ExitCode.INTERRUPTED: "Ctrl-C: the command stopped; the run is left resumable",
}

_BY_STATUS: dict[str, ExitCode] = {
    "completed": ExitCode.COMPLETED,
    "failed": ExitCode.FAILED,
    "dead": ExitCode.FAILED,
    "waiting": ExitCode.WAITING,
    "queued": ExitCode.WAITING,
    "running": ExitCode.WAITING,
    "parked": ExitCode.PARKED,
    "cancelled": ExitCode.CANCELLED,
}


def for_status(status: str) -> ExitCode:
    """The exit code for a run left in `status` when the command stops watching it."""
    return _BY_STATUS[status]
