"""Durable schedules: which ticks of a cron expression are due, and which of them to start.

A schedule starts its workflow at every tick of a cron expression read in an IANA time zone
(`croniter`, `zoneinfo`); ticks are stored and compared as UTC Unix times. Each tick's run has a
deterministic id, `sched:<name>:<tick in ISO 8601 UTC>`, and is created in the same store
transaction that moves the schedule on to its next tick, so a tick starts exactly one run however
many workers race for it (see `Store.fire_schedule`).

A worker fires the ticks due when it looks (every poll). A tick found at most `GRACE_SECONDS` late
is on time; older ones were missed while no worker ran, and the schedule's catch-up policy says
what to do with them:

- `skip`: start none of them (only ticks on time start);
- `one` (default): start one run, for the latest due tick;
- `all`: start one run per due tick, at most `MAX_CATCH_UP` (the latest ones; older ones are
  dropped and a warning is logged).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import zoneinfo
from collections import deque
from dataclasses import dataclass
from typing import Any, get_args

from croniter import CroniterError, croniter

from .errors import UserError
from .store.base import CatchUp, ScheduleRecord

GRACE_SECONDS = 60.0
"""A tick fired at most this late is on time; an older one was missed (see the catch-up policy)."""
MAX_CATCH_UP = 100
"""Most runs the `all` policy starts for the ticks missed at once."""
CATCH_UP_POLICIES: tuple[str, ...] = get_args(CatchUp)
CRON_EXAMPLE = "'0 6 * * 1-5' (06:00 on weekdays) or '*/15 * * * *' (every 15 minutes)"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")


def check_name(name: str) -> str:
    """A schedule name, checked: it becomes part of run ids."""
    if not _NAME.fullmatch(name):
        raise UserError(
            f"schedule name {name!r} is not allowed; use letters, digits, '_', '.' and '-' "
            "(starting with a letter or digit, at most 100), e.g. 'nightly-report'"
        )
    return name


def check_catch_up(policy: str) -> CatchUp:
    """A catch-up policy, checked."""
    if policy not in CATCH_UP_POLICIES:
        raise UserError(
            f"catch-up policy {policy!r} is unknown; use one of {', '.join(CATCH_UP_POLICIES)}"
        )
    return policy  # type: ignore[return-value]


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone `name`; UserError naming the closest known ones if there is none."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    known = sorted(zoneinfo.available_timezones())
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)
    names = [repr(by_lower[c]) for c in close]
    hint = ""
    if names:
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        hint = f"did you mean {listed}? Otherwise "
    raise UserError(
        f"time zone {name!r} is unknown; {hint}give an IANA name such as 'UTC', "
        "'Europe/Paris' or 'America/New_York'"
    )


def _iter(cron: str, tz: zoneinfo.ZoneInfo, start: float) -> Any:
    return croniter(cron, dt.datetime.fromtimestamp(start, tz))


def check_cron(cron: str, timezone: str = "UTC") -> str:
    """A cron expression, checked by computing its next tick; UserError with croniter's words."""
    tz = zone(timezone)
    try:
        _iter(cron, tz, 0.0).get_next(float)
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"cron expression {cron!r} is not valid ({exc}); give 5 fields, minute hour "
            f"day-of-month month day-of-week, e.g. {CRON_EXAMPLE}"
        ) from None
    return cron


def next_tick(cron: str, timezone: str, after: float) -> float:
    """The first tick strictly after `after` (Unix time)."""
    value: float = _iter(cron, zone(timezone), after).get_next(float)
    return value


def latest_tick(cron: str, timezone: str, at: float) -> float:
    """The last tick at or before `at` (ticks fall on whole seconds)."""
    value: float = _iter(cron, zone(timezone), float(int(at) + 1)).get_prev(float)
    return value


def tick_run_id(name: str, tick: float) -> str:
    """The id of the run a schedule starts for a tick: one tick, one id, one run."""
    when = dt.datetime.fromtimestamp(tick, dt.UTC)
    return f"sched:{name}:{when.strftime('%Y-%m-%dT%H:%M:%SZ')}"


@dataclass(frozen=True, slots=True)
class Plan:
    """What a worker fires for a due schedule."""

    ticks: list[float]
    """Ticks to start a run for, oldest first."""
    next_due: float
    """The schedule's next tick after these."""
    missed: int
    """Due ticks that start no run (skipped by the policy, or past `MAX_CATCH_UP`)."""
    counted: bool = True
    """False when more than `COUNT_LIMIT` ticks were due: `missed` is then a lower bound."""


COUNT_LIMIT = 1000
"""Due ticks counted one by one, at most (about 0.1 s of croniter): beyond, a lower bound."""


def plan(schedule: ScheduleRecord, now: float) -> Plan:
    """The ticks of a due schedule to start now, by its catch-up policy (see module docstring)."""
    assert schedule.next_due is not None
    assert schedule.next_due <= now
    cron, tz = schedule.cron, schedule.timezone
    latest = max(latest_tick(cron, tz, now), schedule.next_due)
    upcoming = next_tick(cron, tz, now)
    # The latest due ticks (only those can start), and how many are due in all.
    due: deque[float] = deque([schedule.next_due], maxlen=MAX_CATCH_UP)
    total = 1
    while due[-1] < latest and total < COUNT_LIMIT:
        due.append(next_tick(cron, tz, due[-1]))
        total += 1
    counted = due[-1] >= latest
    if not counted:  # too many to count: the latest ones, found backwards
        due = deque([latest], maxlen=MAX_CATCH_UP)
        while len(due) < MAX_CATCH_UP:
            due.appendleft(latest_tick(cron, tz, due[0] - 1))
    if schedule.catch_up == "all":
        ticks = list(due)
    elif schedule.catch_up == "one":
        ticks = [due[-1]]
    else:
        ticks = [t for t in due if now - t <= GRACE_SECONDS]
    return Plan(ticks=ticks, next_due=upcoming, missed=total - len(ticks), counted=counted)
