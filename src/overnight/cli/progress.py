"""The live view of a run `run` and `resume` show while they wait.

On a terminal: a rich Live block on stderr (steps done, the calls in flight, tokens, cost,
elapsed time, what the run waits for). Elsewhere (a pipe, a log file, CI): one plain line per
finished call and per change of status, so logs stay readable.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.text import Text

from ..store.base import RunRecord, Store
from .output import Ui, status_text, totals_line, waiting_for
from .summary import Tally, format_cost


class ProgressView:
    """Follows one run's journal and shows it (see the module docstring)."""

    def __init__(self, ui: Ui, store: Store, run_id: str) -> None:
        self.ui = ui
        self.store = store
        self.run_id = run_id
        self.tally = Tally()
        self.interactive = ui.err.is_terminal
        self._live: Live | None = None
        self._printed: set[str] = set()
        self._status: str | None = None

    def __enter__(self) -> ProgressView:
        if self.interactive:
            self._live = Live(Text(""), console=self.ui.err, refresh_per_second=8, transient=True)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def follow(self, run_id: str) -> None:
        """The run continued as a new one (continue-as-new): follow that one from now on."""
        self.ui.note(f"run {self.run_id} continued as {run_id}")
        self.run_id = run_id
        self.tally = Tally()
        self._printed.clear()

    async def update(self, record: RunRecord) -> None:
        """Read what the run journaled since the last update and show it."""
        await self.tally.read(self.store, self.run_id)
        if self._live is not None:
            self._live.update(self._render(record))
        else:
            self._print_lines(record)
        self._status = record.status

    def _render(self, record: RunRecord) -> RenderableType:
        head = Text.from_markup(
            f"run [bold]{escape(record.id)}[/] · {escape(record.workflow)} · "
            f"{status_text(record.status)}"
        )
        lines: list[RenderableType] = [
            Spinner("dots", text=head),
            Text("  " + totals_line(record, self.tally)),
        ]
        flight = self.tally.in_flight
        if record.status == "waiting":
            lines.append(Text(f"  waiting for {waiting_for(record)}", style="cyan"))
        elif flight:
            lines.append(Text("  running " + ", ".join(flight[-4:]), style="blue"))
        elif self.tally.rows:
            last = list(self.tally.rows)[-1]
            lines.append(Text(f"  last {last}", style="dim"))
        return Group(*lines)

    def _print_lines(self, record: RunRecord) -> None:
        for row in self.tally.rows.values():
            if row.state not in ("done", "failed") or row.key in self._printed:
                continue
            self._printed.add(row.key)
            extra = f" {row.tokens:,} tokens {format_cost(row.cost)}" if row.kind == "model" else ""
            detail = f" ({row.detail})" if row.detail and row.kind != "model" else ""
            error = f" {row.error}" if row.state == "failed" else ""
            self.ui.err.print(
                f"{row.state:<6} {row.key}{detail}{extra}{error}", markup=False, highlight=False
            )
        if record.status != self._status:
            line = f"status {record.status}"
            if record.status == "waiting":
                line += f": waiting for {waiting_for(record)}"
            self.ui.err.print(line, markup=False, highlight=False)
