"""Decoding schedules, shared by the schedule strategies: the fraction of a block's positions committed after step s
of S is s/S (linear), 1 - cos(pi/2 s/S) (cosine: few early, many late, as MaskGIT) or (1 - e^(-5 s/S)) / (1 - e^(-5))
(exp: many early, few late). ``Scheduled`` commits a schedule's count per step; its subclasses choose which.
"""

from __future__ import annotations

import functools
import math

from textdiff_core.errors import TextdiffError
from textdiff_core.strategies.base import SCHEDULES, DecodeConfig, Strategy

EXP_RATE = 5.0  # steepness of the "exp" schedule


def schedule_counts(n: int, steps: int, schedule: str = "linear") -> list[int]:
    """How many of ``n`` positions to commit at each of ``steps`` steps (sums to n; zeros when steps > n)."""
    return list(_counts(n, steps, schedule))


@functools.cache
def _counts(n: int, steps: int, schedule: str) -> tuple[int, ...]:
    if schedule == "linear":
        def done(f: float) -> float:
            return f
    elif schedule == "cosine":
        def done(f: float) -> float:
            return 1 - math.cos(math.pi / 2 * f)
    elif schedule == "exp":
        def done(f: float) -> float:
            return (1 - math.exp(-EXP_RATE * f)) / (1 - math.exp(-EXP_RATE))
    else:
        raise TextdiffError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    cumulative = [0] + [min(n, math.floor(n * done(s / steps) + 0.5)) for s in range(1, steps)] + [n]
    return tuple(b - a for a, b in zip(cumulative, cumulative[1:], strict=False))


class Scheduled(Strategy):
    """Commits a schedule's count per step: ``steps`` in all (default: one per masked position), shared out over
    the blocks, each block's by ``config.schedule``."""

    notes = {"steps": "steps in all (default: one per masked position); the schedule says how many positions each "
                      "commits"}

    def steps(self, config: DecodeConfig, n_positions: int) -> int | None:
        return config.steps or n_positions

    def count(self, config: DecodeConfig, *, step: int, steps: int, size: int, left: int) -> int | None:
        counts = _counts(size, steps, config.schedule)
        return counts[step] if step < len(counts) else None
