"""Budgets: limits on what a run's model calls may consume, enforced before each call.

Before a model request is sent, its worst case is reserved: an offline estimate of the
request's tokens plus its `max_tokens` (always sent), and for a cost budget that worst case
priced for the model. If the reservation does not fit, the call is refused with
`BudgetExceeded` and nothing is sent, so a budget is never overrun, also when parallel branches
share it. After the reply, the reservation is settled to the provider's own counts. Each
reservation is journaled as a decision, so a resumed run rebuilds the same budget.

A cost budget needs prices: an agent whose model has no known price refuses to start against
one (an unknown price is never taken as $0). Create a budget inside the workflow (it is part of
the run's state, rebuilt on replay) and hand it to every agent that should draw from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .errors import BudgetExceeded, UserError


@dataclass
class Budget:
    """Token and/or dollar limits shared by the agents of a run (see the module docstring)."""

    tokens: int | None = None
    """Most tokens (input + output) the run's model calls may use."""
    cost: Decimal | None = None
    """Most US dollars the run's model calls may cost."""
    tokens_used: int = 0
    tokens_reserved: int = 0
    cost_used: Decimal = Decimal(0)
    cost_reserved: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.tokens is None and self.cost is None:
            raise UserError("a Budget needs tokens=..., cost=... or both")
        if self.tokens is not None and self.tokens <= 0:
            raise UserError(f"a token budget must be positive, got {self.tokens}")
        if self.cost is not None:
            self.cost = Decimal(str(self.cost))
            if self.cost <= 0:
                raise UserError(f"a cost budget must be positive, got {self.cost}")

    def fits(self, tokens: int, cost: Decimal) -> bool:
        """Whether a call of that worst case may start now."""
        if self.tokens is not None and tokens > self.tokens_left:
            return False
        return self.cost is None or cost <= self.cost_left

    @property
    def tokens_left(self) -> int:
        """Tokens neither used nor reserved (meaningful with a token limit)."""
        return (self.tokens or 0) - self.tokens_used - self.tokens_reserved

    @property
    def cost_left(self) -> Decimal:
        """Dollars neither spent nor reserved (meaningful with a cost limit)."""
        return (self.cost or Decimal(0)) - self.cost_used - self.cost_reserved

    def reserve(self, tokens: int, cost: Decimal) -> None:
        """Hold a call's worst case (after `fits` said yes, journaled)."""
        self.tokens_reserved += tokens
        self.cost_reserved += cost

    def settle(self, reserved: tuple[int, Decimal], used: tuple[int, Decimal]) -> None:
        """Replace a reservation by what the call really used."""
        self.tokens_reserved -= reserved[0]
        self.cost_reserved -= reserved[1]
        self.tokens_used += used[0]
        self.cost_used += used[1]

    def refuse(self, who: str, tokens: int, cost: Decimal) -> BudgetExceeded:
        """The error for a call that does not fit."""
        left = []
        if self.tokens is not None:
            left.append(f"{self.tokens_left} of {self.tokens} tokens")
        if self.cost is not None:
            left.append(f"${self.cost_left} of ${self.cost}")
        return BudgetExceeded(
            f"{who} would need up to {tokens} tokens (${cost}) but the budget has "
            f"{' and '.join(left)} left; nothing was sent. Raise the budget or lower max_tokens"
        )
