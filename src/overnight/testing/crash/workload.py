"""What a crash trial runs: a `Workload`, and when the runner sends its signal (`SignalMode`).

A workload names itself as `module:attr` so that worker subprocesses can import it with
`load_workload`; the rest of it tells the checks what to expect (effect classes of the steps,
which part of the output is deterministic, where the journaled now/random/uuid values are).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ...errors import UserError
from ...step import Effect, Step
from ...workflow import Workflow
from ..ledger import ApplyAttempt, step_name_of

SignalMode = Literal["before_start", "early", "on_wait"]
"""When the runner sends the workload's signal: before the run starts, as soon as the run
exists, or when the run waits for it."""
SIGNAL_MODES: tuple[SignalMode, ...] = ("before_start", "early", "on_wait")


def _identity(output: Any) -> Any:
    return output


def _effect_value(step_key: str, effect: ApplyAttempt) -> Any:
    return effect.value


@dataclass(frozen=True)
class Workload:
    """What a crash trial runs, and what the checks need to know about it.

    `ref` is the `module:attr` of this object, so worker subprocesses can import it. Every step
    body should report `invoke()` to the ledger and apply its effects through it.
    """

    ref: str
    """`module:attr` naming this Workload (the worker subprocess imports it)."""
    workflow: Workflow[Any, Any]
    input: Any
    steps: tuple[Step[Any, Any], ...]
    """The workflow's steps; their effect classes drive the checks."""
    signal: tuple[str, Any] | None = None
    """`(name, payload)` of a signal the runner sends to the run, or None."""
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments for the workers' `Engine` (keep `lease_seconds` short: a killed
    worker's lease must expire before the next worker can take the run over)."""
    deterministic: Callable[[Any], Any] = _identity
    """The part of the output that must equal the reference run's."""
    drawn: Callable[[Any], Any] | None = None
    """The part of the output holding journaled now/random/uuid values, if any."""
    drawn_step: str | None = None
    """Key of the step that applied the `drawn` values to the ledger when first drawn."""
    resolve_result: Callable[[str, ApplyAttempt], Any] = _effect_value
    """The result a person gives `resolve_step` for an in-doubt step whose effect was applied
    (default: the applied value)."""

    def effect_of(self, step_key: str) -> Effect | None:
        """The effect class of the step a key belongs to (None for a non-step key)."""
        name = step_name_of(step_key)
        for s in self.steps:
            if s.name == name:
                return s.effect
        return None


def load_workload(ref: str) -> Workload:
    """Import a Workload from `module:attr`."""
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Workload):
        raise UserError(f"{ref!r} is a {type(obj).__name__}, not a Workload")
    return obj
