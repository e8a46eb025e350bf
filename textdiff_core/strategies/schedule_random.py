"""schedule-random: a schedule's count per step, at positions chosen uniformly at random (the RoBERTa recipe's
way)."""

from __future__ import annotations

import torch

from textdiff_core.strategies.base import DecodeConfig, Draw, Scores, register
from textdiff_core.strategies.schedules import Scheduled


@register
class ScheduleRandom(Scheduled):
    name = "schedule-random"
    title = "schedule, random positions"
    description = "a schedule's count per step, at random (the RoBERTa recipe's way)"
    order = 30
    reads = ("steps", "schedule")

    def choose(self, config: DecodeConfig, scores: Scores | Draw, count: int, generator: torch.Generator | None,
               positions: list[int], beyond_pace: bool = True) -> list[int]:
        n = scores.confidence.shape[0]
        return sorted(torch.randperm(n, generator=generator, device=scores.confidence.device)[:count].tolist())
