"""entropy-bound: commit the lowest-entropy positions whose entropies sum to at most ``entropy_bound`` nats (at least
one per step): the model's own certainty sets the pace (EB-sampler, Ben-Hamu et al. 2025). With ``steps``, at most
its pace per step, so at least that many steps (steps = length commits one token per pass)."""

from __future__ import annotations

import torch

from textdiff_core.strategies.base import DecodeConfig, Draw, Paced, Scores, register


@register
class EntropyBound(Paced):
    name = "entropy-bound"
    title = "entropy-bounded"
    description = ("the most certain positions while their entropies sum to the bound (the model's own certainty "
                   "sets the pace)")
    order = 50
    reads = ("entropy_bound", "steps")
    notes = {"steps": "at least this many (commits at most its pace, so steps = length commits one token per pass)"}
    uses_entropy = True

    def choose(self, config: DecodeConfig, scores: Scores | Draw, count: int, generator: torch.Generator | None,
               positions: list[int], beyond_pace: bool = True) -> list[int]:
        order = scores.entropy.argsort().tolist()  # the most certain first
        total = scores.entropy[order].cumsum(0)
        within = max(1, int((total <= config.entropy_bound).sum()))
        return sorted(order[: min(within, count) if config.steps else within])
