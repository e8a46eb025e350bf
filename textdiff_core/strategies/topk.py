"""topk: commit the ``k`` most confident positions per step, preferring positions at least ``spacing`` apart."""

from __future__ import annotations

import torch

from textdiff_core.strategies.base import DecodeConfig, Draw, Scores, Strategy, register, spread


@register
class TopK(Strategy):
    name = "topk"
    title = "top-k per step"
    description = "the k most confident positions"
    order = 20
    reads = ("k", "confidence", "spacing")

    def choose(self, config: DecodeConfig, scores: Scores | Draw, count: int, generator: torch.Generator | None,
               positions: list[int], beyond_pace: bool = True) -> list[int]:
        count = min(config.k, scores.confidence.shape[0])
        if not count:
            return []
        return spread(scores.confidence.argsort(descending=True).tolist(), count, positions, config.spacing, [])
