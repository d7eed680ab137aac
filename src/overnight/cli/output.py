"""What the commands print: messages on stderr, results and listings on stdout (tables or JSON)."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pydantic_core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._engine import codec
from ..agent import FIX_THEN_RESUME
from ..store.base import RunRecord
from .summary import StepRow, Tally, format_cost


@dataclass
class Ui:
    """The consoles of one command invocation and its global flags."""

    debug: bool = False
    out: Console = field(default_factory=lambda: _console(stderr=False))
    err: Console = field(default_factory=lambda: _console(stderr=True))

    def error(self, problem: str, fix: str | None = None) -> None:
        """One red line naming the problem, and the fix when there is one."""
        self.err.print(f"[bold red]error:[/] {escape(problem)}")
        if fix:
            self.err.print(f"[yellow]fix:[/] {escape(fix)}")

    def note(self, text: str, style: str = "dim") -> None:
        """A message for the person watching (stderr: stdout stays for results)."""
        self.err.print(f"[{style}]{escape(text)}[/]")

    def json(self, value: Any) -> None:
        """Print a value as JSON on stdout."""
        self.out.print(dumps(value), markup=False, highlight=False, soft_wrap=True)


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Piped output is for logs and scripts: wide, so tables do not fold ids across lines.
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, soft_wrap=True, width=width)


def dumps(value: Any, *, indent: bool = True) -> str:
    """JSON for any journal value (dataclasses, models, datetimes, bytes, ...)."""
    plain = pydantic_core.to_jsonable_python(value, fallback=repr)
    return orjson.dumps(plain, option=orjson.OPT_INDENT_2 if indent else 0).decode()


def stamp(when: float | None) -> str:
    """Local date and time, to the second."""
    if when is None:
        return "-"
    return datetime.fromtimestamp(when).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """`0.42 s`, `12.3 s`, `4 min 05 s`, `3 h 07 min`."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def error_of(record: RunRecord) -> dict[str, str] | None:
    """The run's error as `{"type", "message"}`, if it has one."""
    if record.error is None:
        return None
    error: dict[str, str] = orjson.loads(record.error)
    return error


def waiting_for(record: RunRecord) -> str:
    """What a waiting run waits for, in words."""
    if record.waiting is None:
        return ""
    wait = orjson.loads(record.waiting)
    parts = [f"signal {name!r}" for name in wait.get("signals", [])]
    parts += [f"child run {child}" for child in wait.get("children", [])]
    if wait.get("timer") is not None:
        parts.append(f"a timer due {stamp(wait['timer'])}")
    return " or ".join(parts)


def run_json(record: RunRecord) -> dict[str, Any]:
    """A run record as JSON for scripts (the input and output decoded)."""
    return {
        "id": record.id,
        "workflow": record.workflow,
        "version": record.version,
        "status": record.status,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "parent_id": record.parent_id,
        "attempts": record.attempts,
        "recoveries": record.recoveries,
        "note": record.note,
        "error": error_of(record),
        "waiting": orjson.loads(record.waiting) if record.waiting else None,
        "continued_to": record.continued_to,
        "input": decoded(record.input),
        "output": decoded(record.result) if record.result is not None else None,
    }


def decoded(raw: bytes) -> Any:
    try:
        return pydantic_core.to_jsonable_python(codec.loads(raw), fallback=repr)
    except Exception:
        return orjson.loads(raw)  # a class that no longer imports: show the encoded tree


STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "dead": "red",
    "cancelled": "magenta",
    "parked": "yellow",
    "waiting": "cyan",
    "running": "blue",
    "queued": "white",
}


def status_text(status: str) -> str:
    """The status, coloured."""
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def runs_table(records: list[RunRecord]) -> Table:
    """The `runs` listing."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("RUN", "WORKFLOW", "STATUS", "CREATED", "UPDATED", "NOTE"):
        table.add_column(column, overflow="fold")
    for r in records:
        error = error_of(r)
        note = r.note or (f"{error['type']}: {error['message']}" if error else "")
        if r.status == "waiting":
            note = "waiting for " + waiting_for(r)
        table.add_row(
            escape(r.id),
            escape(r.workflow),
            status_text(r.status),
            stamp(r.created_at),
            stamp(r.updated_at),
            escape(_short(note, 80)),
        )
    return table


def steps_table(rows: list[StepRow]) -> Table:
    """The durable calls of a run, in journal order."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("KEY", "KIND", "STATE", "ATTEMPTS", "TOKENS", "COST", "DETAIL"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = status_text("completed") if row.state == "done" else row.state
        if row.state in ("failed", "retrying"):
            state = f"[red]{row.state}[/]"
        detail = row.detail
        if row.error:
            detail = f"{detail} {row.error}".strip()
        table.add_row(
            escape(row.key),
            row.kind,
            state.replace("completed", "done"),
            str(row.attempts or ""),
            f"{row.tokens:,}" if row.kind == "model" else "",
            format_cost(row.cost) if row.kind == "model" else "",
            escape(_short(detail, 100)),
        )
    return table


def totals_line(record: RunRecord, tally: Tally) -> str:
    """`3 steps done · 1,234 tokens · $0.0012 · 2.31 s`."""
    end = record.updated_at if record.status not in ("running", "queued") else time.time()
    parts = [f"{tally.done} done"]
    if tally.model_calls:
        calls = f"{tally.model_calls} model call{'s' if tally.model_calls > 1 else ''}"
        parts += [calls, f"{tally.tokens:,} tokens", format_cost(tally.cost)]
    parts.append(duration(max(0.0, end - record.created_at)))
    return " · ".join(parts)


_STEP_IN_DOUBT = re.compile(r"step '([^']+)' \((unsafe|reconcilable)\)")


def parked_fixes(record: RunRecord) -> list[str]:
    """The commands that continue a parked run, from its note."""
    note = record.note or ""
    found = _STEP_IN_DOUBT.search(note)
    run = record.id
    if FIX_THEN_RESUME in note:
        return [f"once the model's configuration is fixed: overnight resume {run}"]
    if found is not None:
        key = found.group(1)
        return [
            f"if step {key!r} took effect: overnight resume {run} --step '{key}' "
            "--assume-done --result JSON",
            f"if it did not: overnight resume {run} --step '{key}' --retry",
        ]
    return [
        f"to continue with the code as it is now: overnight resume {run} --accept-changes",
        f"or restore the code the run started with, then: overnight resume {run}",
    ]


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
