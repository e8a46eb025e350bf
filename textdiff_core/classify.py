"""Generative classification: argmax_c log P(text | c) + log P(c), with P(text | c) from a diffusion ELBO or an
exact left-to-right likelihood. (This module grows with the classification issue: priors, calibration, adaptive
sampling, out-of-distribution scores.)"""

from __future__ import annotations

import torch

from textdiff_core.likelihood import TextScore, ar_scores, elbo_scores
from textdiff_core.models import MASKED, LoadedModel


def class_prompts(meta: dict) -> list[str]:
    """The never-masked prompt of each class of a class-conditional checkpoint, in class order."""
    return [meta["class_prompt"].format(label=name) for name in meta["classes"]]


def class_scores(
    lm: LoadedModel,
    text: str,
    prompts: list[str],
    samples: int = 8,
    generator: torch.Generator | None = None,
    max_length: int | None = None,
    max_windows: int | None = None,
) -> list[TextScore]:
    """-log P(text | c) for each class prompt: ELBO with shared noise (masked models) or exact (causal models)."""
    if lm.kind == MASKED:
        return elbo_scores(lm, text, prompts, samples, generator, max_length=max_length, max_windows=max_windows)
    return ar_scores(lm, text, prompts, max_length=max_length, max_windows=max_windows)
