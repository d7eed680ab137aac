"""Budgets: limits on what a run's model calls may consume, enforced before each call.

Before a model request is sent, its worst case (an offline estimate of the request's tokens
plus its `max_tokens`, which is always sent) is reserved; if the reservation does not fit, the
call is refused with `BudgetExceeded` and nothing is sent. So a budget is never overrun, also
when parallel branches share it. After the reply, the reservation is settled to the provider's
own count. Each reservation is journaled as a decision, so a resumed run rebuilds the same
budget and takes the same decisions.

Create a budget inside the workflow (it is part of the run's state, rebuilt on replay) and hand
it to every agent that should draw from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BudgetExceeded, UserError


@dataclass
class Budget:
    """Token limit shared by the agents of a run (see the module docstring)."""

    tokens: int
    """Most tokens (input + output) the run's model calls may use."""
    used: int = 0
    """Tokens consumed by calls already answered (the providers' counts)."""
    reserved: int = 0
    """Tokens held for calls in flight (their worst case)."""

    def __post_init__(self) -> None:
        if self.tokens <= 0:
            raise UserError(f"a token budget must be positive, got {self.tokens}")

    @property
    def left(self) -> int:
        """Tokens neither used nor reserved."""
        return self.tokens - self.used - self.reserved

    def fits(self, worst_case: int) -> bool:
        """Whether a call of that worst case may start now."""
        return worst_case <= self.left

    def reserve(self, worst_case: int, who: str) -> None:
        """Hold a call's worst case (the caller checked `fits`, journaled)."""
        self.reserved += worst_case

    def refuse(self, worst_case: int, who: str) -> BudgetExceeded:
        """The error for a call that does not fit."""
        return BudgetExceeded(
            f"{who} would need up to {worst_case} tokens but the budget has {self.left} of "
            f"{self.tokens} left; nothing was sent. Raise the budget or lower max_tokens"
        )

    def settle(self, worst_case: int, actual: int) -> None:
        """Replace a reservation by what the call really used."""
        self.reserved -= worst_case
        self.used += actual
