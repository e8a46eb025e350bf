"""schedule-confidence: a schedule's count per step, the most confident positions; the rest stay masked (LLaDA's
low-confidence remasking)."""

from __future__ import annotations

import torch

from textdiff_core.strategies.base import DecodeConfig, Draw, Scores, register
from textdiff_core.strategies.schedules import Scheduled


@register
class ScheduleConfidence(Scheduled):
    name = "schedule-confidence"
    title = "schedule, most confident first"
    description = "a schedule's count per step, the most confident ones (LLaDA's low-confidence remasking)"
    order = 40
    reads = ("steps", "schedule", "confidence")

    def choose(self, config: DecodeConfig, scores: Scores | Draw, count: int, generator: torch.Generator | None,
               positions: list[int], beyond_pace: bool = True) -> list[int]:
        if not count:
            return []
        return sorted(scores.confidence.argsort(descending=True).tolist()[:count])
