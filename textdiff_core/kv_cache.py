"""An approximate block KV cache for diffusion decoding (Fast-dLLM, Wu et al. 2025), through the model's own modules.

Semi-autoregressive decoding works on one block of masked positions at a time. A *full* pass runs every position
and keeps each layer's attention keys and values; the steps inside the block then run only some positions (the
*queries*) through the layers, attending to their own fresh keys and values and to the kept ones of every other
position. The kept ones are stale (they were computed before this block's latest commits), which is the
approximation; a full pass refreshes them when a block completes, and optionally every ``refresh`` steps.

  prefix  queries: the block and everything after it (only the prefix is cached)
  dual    queries: the block alone (the prefix and the masked suffix are both cached)

It drives encoders whose layers look like BERT's (BERT, MiniLM, RoBERTa and their ``*ForMaskedLM``): embeddings,
then per layer ``attention.self.{query,key,value}``, ``attention.output`` and ``feed_forward_chunk``, then the LM
head on the positions whose logits are needed. Nothing is copied: the weights and modules are the model's. Other
families (published custom code, ModernBERT) cannot take a cache here: ``supports`` says so and decoding falls back
to full passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CACHE_MODES = ("none", "prefix", "dual")


def _parts(model: nn.Module) -> tuple[nn.Module, list[nn.Module], nn.Module] | None:
    """(embeddings, layers, LM head) of a BERT-like masked LM, or None when its layout is another."""
    base = getattr(model, "base_model", None)
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    if base is None or base is model or not isinstance(head, nn.Module):
        return None
    embeddings, encoder = getattr(base, "embeddings", None), getattr(base, "encoder", None)
    layers = list(getattr(encoder, "layer", []) or [])
    if embeddings is None or not layers:
        return None
    for layer in layers:
        attention = getattr(layer, "attention", None)
        attn = getattr(attention, "self", None)
        if not all(hasattr(attn, name) for name in ("query", "key", "value", "num_attention_heads")) \
                or not hasattr(attention, "output") or not hasattr(layer, "feed_forward_chunk"):
            return None
    if getattr(model.config, "position_embedding_type", "absolute") != "absolute" or model.config.is_decoder:
        return None
    return embeddings, layers, head


def supports(lm) -> bool:
    """True when ``lm``'s model can be driven with a block KV cache (a plain BERT-like masked LM)."""
    spec = getattr(lm, "denoiser", None)
    return (spec is None or spec.plain) and _parts(lm.model) is not None


class BlockCache:
    """Keys and values of every layer for a batch of ``batch`` sequences, and passes that use them.

    ``full(ids, where, rows)`` runs every position of the given rows (all when None) and stores their keys and
    values; ``partial(ids, queries, where, rows)`` runs only the ``queries`` positions of those rows against the
    stored keys and values of the others (its own fresh). Both return the logits [N, vocab] at ``where``
    (row-major), which must lie among the positions run. ``ids`` holds just the given rows; rows have no padding
    (decoding writes sequences of one length).
    """

    def __init__(self, lm, batch: int = 1) -> None:
        parts = _parts(lm.model)
        if parts is None:
            raise ValueError(f"{type(lm.model).__name__} cannot be driven with a block KV cache")
        self.embeddings, self.layers, self.head = parts
        self.batch = batch
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def _heads(self, attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, attn.num_attention_heads, -1).transpose(1, 2)  # [B, H, n, d]

    def _run(self, ids: torch.Tensor, queries: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, n, width] of the query positions (all when None), updating the stored keys/values."""
        hidden = self.embeddings(input_ids=ids)  # cheap: a lookup and a norm; slicing keeps positions exact
        if queries is not None:
            hidden = hidden[:, queries]
        for i, layer in enumerate(self.layers):
            attn = layer.attention.self
            q, k, v = (self._heads(attn, proj(hidden)) for proj in (attn.query, attn.key, attn.value))
            if queries is None:  # a full pass: store
                if len(self.keys) <= i or self.keys[i].shape[2] != k.shape[2]:
                    shape = (self.batch, *k.shape[1:])
                    self.keys[i:i + 1] = [k.new_zeros(shape)]
                    self.values[i:i + 1] = [v.new_zeros(shape)]
                self.keys[i][rows], self.values[i][rows] = k, v
                keys, values = k, v
            else:
                keys, values = self.keys[i][rows], self.values[i][rows]  # indexing copies
                keys[:, :, queries], values[:, :, queries] = k, v
            scale = getattr(attn, "scaling", q.shape[-1] ** -0.5)
            out = F.scaled_dot_product_attention(q, keys, values, scale=scale)
            out = out.transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)
            hidden = layer.feed_forward_chunk(layer.attention.output(out, hidden))
        return hidden

    def _rows(self, ids: torch.Tensor, rows: list[int] | None) -> torch.Tensor:
        rows = list(range(self.batch)) if rows is None else rows
        if len(rows) != ids.shape[0]:
            raise ValueError(f"{ids.shape[0]} sequences given for {len(rows)} cache rows")
        return torch.tensor(rows, device=ids.device)

    def full(self, ids: torch.Tensor, where: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
        return self.head(self._run(ids, None, self._rows(ids, rows))[where])

    def partial(self, ids: torch.Tensor, queries: list[int], where: torch.Tensor, rows: list[int] | None = None
                ) -> torch.Tensor:
        index = torch.tensor(queries, device=ids.device)
        hidden = self._run(ids, index, self._rows(ids, rows))
        return self.head(hidden[where[:, index]])
