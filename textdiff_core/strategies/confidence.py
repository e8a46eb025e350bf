"""confidence: commit every position whose confidence score is at least ``threshold`` (at least the best one per
step). With ``steps``, finish within that many forward passes: when too few positions clear the threshold, the most
confident are committed anyway to keep pace (a pass per token or more: exactly one per pass, the threshold unused).
Beyond the threshold, positions at least ``spacing`` apart are preferred.

The product's default: at threshold 0.9 within a quarter of the new tokens in forward passes. A weak model is rarely
90% sure, so a threshold alone commits one token per pass; the budget makes it parallel.
"""

from __future__ import annotations

import math

import torch

from textdiff_core.strategies.base import DecodeConfig, Draw, Paced, Scores, register, spread
from textdiff_core.trace import confidence_score

DEFAULT_PASS_FRACTION = 0.25  # at most ceil(length * this) forward passes by default


def default_pass_budget(length: int, block_size: int | None = None) -> int | None:
    """The default pass budget of confidence decoding for ``length`` new tokens: a quarter of them, at least one pass
    per block of ``block_size`` (None: no new tokens, no budget)."""
    if length <= 0:
        return None
    budget = math.ceil(length * DEFAULT_PASS_FRACTION)
    return max(budget, math.ceil(length / block_size)) if block_size else budget


@register
class Confidence(Paced):
    name = "confidence"
    title = "confidence ≥ threshold"
    description = "every position at least this sure (at least one per step)"
    order = 10
    reads = ("threshold", "confidence", "steps", "spacing")
    notes = {"steps": "at most this many forward passes (default: a quarter of the new tokens, rounded up, at least "
                      "one per block; commits beyond the threshold when needed to keep pace)"}
    budget = True

    def default_settings(self, length: int | None = None) -> dict[str, object]:
        settings = super().default_settings(length)
        return settings | {"steps": self.default_steps(length, settings["block_size"]) if length else None}

    def default_steps(self, length: int, block_size: int | None = None) -> int | None:
        return default_pass_budget(length, block_size)

    def beyond_pace(self, config: DecodeConfig, n_positions: int) -> bool:
        # a budget of a pass per token or more: exactly one token per pass (the slowest, exact decoding)
        return not (config.steps and config.steps >= n_positions)

    def choose(self, config: DecodeConfig, scores: Scores | Draw, count: int, generator: torch.Generator | None,
               positions: list[int], beyond_pace: bool = True) -> list[int]:
        values = [confidence_score(float(c), config.confidence) for c in scores.confidence]
        sure = [j for j, s in enumerate(values) if s >= config.threshold] if beyond_pace else []
        if len(sure) >= count:
            return sure
        ranked = sorted(range(len(values)), key=values.__getitem__, reverse=True)
        return spread(ranked, count, positions, config.spacing, sure)
