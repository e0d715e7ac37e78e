"""Capped exponential backoff with full jitter, as pure arithmetic."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for retrying something that keeps failing.

    The n-th delay is drawn uniformly from [base * 2**n / 2, base * 2**n],
    capped at `cap`. `reset()` after a success starts again from `base`.
    """

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failure."""
        ceiling = min(self.cap, self.base * (2 ** min(self.attempts, 32)))
        self.attempts += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Forget past failures."""
        self.attempts = 0
