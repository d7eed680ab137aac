"""How a crash trial kills a worker: at a named crash point, or at a random instant.

`CrashAt` arms a crash point in the worker itself (through `ENV_CRASH`), so the process dies at
an exact place in the engine; `KillAfter` has the runner send SIGKILL from outside, at a time
no crash point names. `parse_kill` reads both from the text specs used in tests and on the
command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..._engine.crash import CRASH_POINTS
from ...errors import UserError

ENV_CRASH = "OVERNIGHT_CRASH_AT"
"""The environment variable that arms a crash point in a worker process."""


@dataclass(frozen=True)
class CrashAt:
    """Die with SIGKILL at the n-th hit of a named crash point (`OVERNIGHT_CRASH_AT`)."""

    point: str
    n: int = 1

    def __post_init__(self) -> None:
        if self.point not in CRASH_POINTS:
            raise UserError(
                f"unknown crash point {self.point!r}; known points: "
                f"{', '.join(sorted(CRASH_POINTS))}"
            )
        if self.n < 1:
            raise UserError(f"crash point hit count must be at least 1, got {self.n}")

    def __str__(self) -> str:
        return f"{self.point}:{self.n}"


@dataclass(frozen=True)
class KillAfter:
    """The runner sends SIGKILL at a uniformly random instant in [lo, hi] seconds after the
    worker said hello (it has opened the engine and started the run), or, with
    `since="start"`, after the process was started (so the kill may land in its startup)."""

    lo: float
    hi: float
    since: Literal["hello", "start"] = "hello"

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi:
            raise UserError(f"random kill window must satisfy 0 <= lo <= hi, got {self}")
        if self.since not in ("hello", "start"):
            raise UserError(f"KillAfter.since must be 'hello' or 'start', got {self.since!r}")

    def __str__(self) -> str:
        prefix = "random" if self.since == "hello" else "random@start"
        return f"{prefix}:{self.lo:.3g}-{self.hi:.3g}"


Kill = CrashAt | KillAfter


def parse_kill(spec: str | Kill) -> Kill:
    """`name:n` (a crash point), `random:T` (within T s of the hello), `random:A-B` (within
    A..B s), or `random@start:...` (counted from the process start)."""
    if isinstance(spec, CrashAt | KillAfter):
        return spec
    name, _, arg = spec.partition(":")
    if name in ("random", "random@start"):
        since: Literal["hello", "start"] = "hello" if name == "random" else "start"
        lo, sep, hi = arg.partition("-")
        try:
            if sep:
                return KillAfter(float(lo), float(hi), since)
            return KillAfter(0.0, float(lo), since)
        except ValueError:
            raise UserError(f"kill spec {spec!r}: write random:T or random:A-B") from None
    try:
        n = int(arg or "1")
    except ValueError:
        raise UserError(f"kill spec {spec!r}: write name:n with n a whole number") from None
    return CrashAt(name, n)
