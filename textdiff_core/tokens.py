"""Text to token tensors, with the roles of positions kept: which tokens are the text being modelled.

Every sequence is laid out as  [start] prefix text [end] [pad ...]  where
  start   the tokenizer's [CLS] (BERT family) or BOS/EOS (GPT-2, Llama); it gives a left-to-right model a
          position from which to predict the first text token,
  prefix  a class prompt ("negative review:") or a user prompt: conditioning, never masked, never scored,
  text    the tokens that are masked during diffusion training and scored by every likelihood,
  end     [SEP] / EOS when the tokenizer has one.
Only `text` positions are in ``target_mask``; the rest are protected. Texts longer than the budget are truncated
here and the batch says which ones were (``truncated``), so callers that must not truncate can window instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class EncodedBatch:
    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long, 0 on padding
    target_mask: torch.Tensor  # [B, T] bool, True on the text tokens (maskable / scored)
    truncated: list[bool]  # per sequence: was the text cut to fit max_length

    def to(self, device: torch.device | str) -> EncodedBatch:
        return EncodedBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.target_mask.to(device), self.truncated
        )

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def special_ids(tokenizer) -> tuple[int | None, int | None, int]:
    """(start, end, pad) token ids for the layout above."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    if start is None:
        start = tokenizer.eos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = end if end is not None else 0
    return start, end, pad


def tokenize_texts(tokenizer, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
    """Token ids of each text with no special tokens, cut to ``max_length`` tokens if given (one batched call)."""
    if not texts:
        return []
    cut = {"truncation": True, "max_length": max_length} if max_length else {}
    return tokenizer(list(texts), add_special_tokens=False, verbose=False, **cut)["input_ids"]


def collate(
    tokenizer,
    text_ids: Sequence[Sequence[int]],
    prefix_ids: Sequence[Sequence[int]] | None = None,
    max_length: int = 128,
) -> EncodedBatch:
    """Lay out pre-tokenised texts (and optional prefixes) as one right-padded batch."""
    start, end, pad = special_ids(tokenizer)
    head = [start] if start is not None else []
    tail = [end] if end is not None else []
    rows, targets, truncated = [], [], []
    for i, ids in enumerate(text_ids):
        prefix = list(prefix_ids[i]) if prefix_ids is not None else []
        budget = max_length - len(head) - len(prefix) - len(tail)
        if budget < 1:
            raise ValueError(f"max_length {max_length} leaves no room for text after a {len(prefix)}-token prefix")
        body = list(ids[:budget])
        truncated.append(len(ids) > budget)
        rows.append(head + prefix + body + tail)
        targets.append([False] * (len(head) + len(prefix)) + [True] * len(body) + [False] * len(tail))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, tgt) in enumerate(zip(rows, targets, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        target[i, : len(row)] = torch.tensor(tgt)
    return EncodedBatch(input_ids, attention, target, truncated)


def encode(
    tokenizer, texts: Sequence[str], prefixes: Sequence[str] | None = None, max_length: int = 128
) -> EncodedBatch:
    """Tokenise and lay out texts with optional per-text prefixes (see the module docstring)."""
    text_ids = tokenize_texts(tokenizer, texts)
    prefix_ids = tokenize_texts(tokenizer, prefixes) if prefixes is not None else None
    return collate(tokenizer, text_ids, prefix_ids, max_length)
