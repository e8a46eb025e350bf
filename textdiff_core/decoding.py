"""Decoding from masked models. For now: one-step fill-mask, the simplest probe of what a masked model learned."""

from __future__ import annotations

import torch

from textdiff_core.errors import TextdiffError
from textdiff_core.models import MASKED, LoadedModel, logits_at
from textdiff_core.tokens import encode


@torch.no_grad()
def fill_mask(lm: LoadedModel, text: str, prefix: str | None = None, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (token, probability) for each [MASK] in ``text``, given an optional never-masked ``prefix``.

    ``text`` writes masks as the tokenizer's mask token (``[MASK]`` for BERT, ``<mask>`` for RoBERTa).
    """
    if lm.kind != MASKED:
        raise TextdiffError(f"{lm.name!r} is a left-to-right model; fill-mask needs a masked (diffusion) model")
    if not text.strip():
        raise TextdiffError("the text is empty")
    if top_k < 1:
        raise TextdiffError(f"top-k must be at least 1, got {top_k}")
    mask_id = lm.tokenizer.mask_token_id
    batch = encode(lm.tokenizer, [text], [prefix] if prefix else None, max_length=512).to(lm.device)
    positions = batch.input_ids == mask_id
    if not positions.any():
        raise TextdiffError(f"no {lm.tokenizer.mask_token} in the text")
    probs = logits_at(lm.model, batch.input_ids, batch.attention_mask, positions).float().softmax(-1)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        [(lm.tokenizer.convert_ids_to_tokens(int(i)), float(p)) for p, i in zip(ps, ids, strict=True)]
        for ps, ids in zip(top.values, top.indices, strict=True)
    ]
