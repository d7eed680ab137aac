"""A run's journal read as steps, model usage and cost: what `run` shows live and `show` prints.

Read incrementally (`Tally.read` picks up where it stopped), so the live view costs one small
query per refresh however long the run. Model calls are the steps named `model` or `fallback`;
their recorded responses carry the provider's usage, priced offline (`overnight.models.pricing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from .._engine import codec
from ..models.base import ModelResponse, Usage
from ..models.pricing import ZERO, Cost, cost
from ..store.base import Entry, Store

MODEL_STEPS = ("model", "fallback")


@dataclass(slots=True)
class StepRow:
    """One durable call of a run as the journal tells it."""

    key: str
    """Structural journal key, e.g. `research#1/fetch#2`."""
    kind: str
    """`step`, `model`, `sleep`, `signal` or `child`."""
    state: str = "started"
    """`done`, `failed`, `retrying`, `started` (intent journaled, not done), `waiting`."""
    attempts: int = 0
    """Attempts journaled (intents and failures; a pure step's first success counts one)."""
    error: str | None = None
    """The last failure, `Type: message`."""
    detail: str = ""
    """Signal name, timer due time, child run id, `reconciled`."""
    tokens: int = 0
    """For model calls: input plus output tokens."""
    cost: Cost = ZERO
    """For model calls: what the call cost."""


@dataclass
class Tally:
    """Running totals over a run's journal."""

    rows: dict[str, StepRow] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    cost: Cost = ZERO
    model_calls: int = 0
    last_seq: int = -1
    output: dict[str, Any] | None = None
    """The run's `output` entry, once written."""

    @property
    def done(self) -> int:
        """Durable calls completed."""
        return sum(1 for r in self.rows.values() if r.state == "done")

    @property
    def in_flight(self) -> list[str]:
        """Keys of calls started and not finished (only non-pure steps journal their start)."""
        return [r.key for r in self.rows.values() if r.state in ("started", "retrying")]

    @property
    def tokens(self) -> int:
        """Input plus output tokens of every model call so far."""
        return self.usage.input_tokens + self.usage.output_tokens

    async def read(self, store: Store, run_id: str) -> bool:
        """Read the entries written since the last call; True if there were any."""
        seen = self.last_seq
        while True:
            page = await store.read_journal(run_id, after_seq=self.last_seq, limit=1000)
            for entry in page:
                await self._add(store, entry)
                self.last_seq = entry.seq
            if len(page) < 1000:
                return self.last_seq != seen

    async def _add(self, store: Store, entry: Entry) -> None:
        data: dict[str, Any] = orjson.loads(entry.data)
        if entry.kind == "output":
            self.output = data
            return
        if not entry.key or entry.kind in ("group", "control"):
            return
        if entry.kind == "decision" and entry.key not in self.rows:
            return  # ctx.now/random/uuid, a race's winner: decisions, not calls
        row = self.rows.get(entry.key)
        if row is None:
            row = self.rows[entry.key] = StepRow(entry.key, _kind_of(entry.key))
        kind = entry.kind
        if kind == "intent":
            row.attempts = max(row.attempts, int(data.get("attempt", row.attempts + 1)))
            row.state = "started"
        elif kind == "failed":
            row.attempts = max(row.attempts, int(data.get("attempt", row.attempts + 1)))
            error = data.get("error") or {}
            row.error = f"{error.get('type', '?')}: {error.get('message', '')}"
            row.state = "failed" if data.get("final") else "retrying"
        elif kind == "done":
            row.attempts = max(row.attempts, 1)
            row.state = "done"
            if data.get("reconciled"):
                row.detail = "reconciled"
            if row.kind == "model":
                await self._priced(store, row, data.get("out"))
        elif kind == "timer":
            if data.get("fired"):
                row.state = "done"
            elif "due" in data:
                row.state, row.detail = "waiting", f"until {_clock(float(data['due']))}"
        elif kind == "signal":
            row.state, row.detail = "done", f"signal {data.get('name', '?')!r}"
        elif kind == "decision" and data.get("timeout"):
            row.state, row.detail = "done", "timed out"
        elif kind == "child":
            if "run_id" in data:
                row.state, row.detail = "waiting", f"child run {data['run_id']}"
            else:
                row.state = "done"

    async def _priced(self, store: Store, row: StepRow, out: Any) -> None:
        try:
            if isinstance(out, dict) and "$blob" in out:
                response = codec.loads(await store.get_blob(out["$blob"]))
            else:
                response = codec.decode(out)
        except Exception:
            return  # a view must not fail on a response it cannot decode
        if not isinstance(response, ModelResponse):
            return
        spent = cost(response.usage, response.model)
        row.tokens = response.usage.input_tokens + response.usage.output_tokens
        row.cost = spent
        row.detail = response.model
        self.usage = self.usage + response.usage
        self.cost = self.cost + spent
        self.model_calls += 1


def _kind_of(key: str) -> str:
    name = key.rsplit("/", 1)[-1].split("#", 1)[0]
    if name in MODEL_STEPS:
        return "model"
    if name == "sleep":
        return "sleep"
    if name.startswith("signal:"):
        return "signal"
    if name in ("child", "start_child") or name.startswith("child:"):
        return "child"
    return "step"


def _clock(when: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(when).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_cost(spent: Cost) -> str:
    """`$0.0012`, `$0` when nothing was spent, or the unpriced models named."""
    if spent.amount is None and not spent.unpriced:
        return "$0"
    return str(spent)
