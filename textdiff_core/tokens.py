"""Text to token tensors, with the roles of positions kept: which tokens are the text being modelled.

Every sequence is laid out as  [start] prefix text [end] [pad ...]  (or, with a suffix,
[start] prefix text [end] suffix [end]: the class after the text, for a left-to-right model's direct reading) where
  start   the tokenizer's [CLS] (BERT family) or BOS/EOS (GPT-2, Llama); it gives a left-to-right model a
          position from which to predict the first text token,
  prefix  a class prompt ("negative review:") or a user prompt: conditioning, never masked, never scored,
  text    the tokens that are masked during diffusion training and scored by every likelihood,
  end     [SEP] / EOS when the tokenizer has one.
Only `text` positions are in ``target_mask``; the rest are protected. Texts longer than the budget are truncated
here and the batch says which ones were (``truncated``), so callers that must not truncate can window instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from textdiff_core.errors import TextdiffError


@dataclass
class EncodedBatch:
    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long, 0 on padding
    target_mask: torch.Tensor  # [B, T] bool, True on the text tokens (maskable / scored)
    truncated: list[bool]  # per sequence: was the text cut to fit max_length
    suffix_start: list[int] | None = None  # per sequence: index of the suffix's first token (when suffixes given)

    def to(self, device: torch.device | str) -> EncodedBatch:
        return EncodedBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.target_mask.to(device), self.truncated,
            self.suffix_start,
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


def token_style(tokenizer) -> str:
    """'raw' when single tokens carry their own leading spaces (byte-level BPE), else 'wordpiece'."""
    ids = tokenize_texts(tokenizer, ["a b"])[0]
    return "raw" if ids and tokenizer.decode(ids[-1:]).startswith(" ") else "wordpiece"


# A WordPiece tokenizer splits every punctuation mark off as a token of its own, so its decode puts a space on both
# sides ("don ' t", "10 : 10", "well - made"); the tokenizer's own clean-up joins contractions and the space before
# . , ! ?, and these rules do what it leaves: each mark joined the way review text writes it (measured on 5,000 IMDB
# reviews: "well-made" 9,100 times against "well - made" 1,577, "5/10" 453 against "5 / 10" 6).
_TIDY = [
    (re.compile(r"- -"), "--"),  # a double dash is two tokens
    (re.compile(r"(?<=\d) ?([.,:]) (?=\d)"), r"\1"),  # 5.5, 10,000, 10:10
    (re.compile(r"(?<=\w) ([-/]) (?=\w)"), r"\1"),  # well-made, 5/10 (a spaced "--" stays spaced)
    (re.compile(r" ([:;%)\]}])"), r"\1"),  # no space before a closing mark
    (re.compile(r"([(\[{$]) "), r"\1"),  # none after an opening one
    (re.compile(r'" ([^"]*?) "'), r'"\1"'),  # a quotation: the marks against the words they enclose
]


def decode_text(tokenizer, ids: Sequence[int]) -> str:
    """The text of token ids as a reader expects it: a byte-level tokenizer's exact decode, or a WordPiece
    tokenizer's with its punctuation joined (``_TIDY``) after its own clean-up of contractions."""
    if token_style(tokenizer) == "raw":
        return tokenizer.decode(list(ids)).strip()
    text = tokenizer.decode(list(ids), clean_up_tokenization_spaces=True)
    for pattern, replacement in _TIDY:
        text = pattern.sub(replacement, text)
    return text.strip()


def collate(
    tokenizer,
    text_ids: Sequence[Sequence[int]],
    prefix_ids: Sequence[Sequence[int]] | None = None,
    max_length: int = 128,
    suffix_ids: Sequence[Sequence[int] | None] | None = None,
) -> EncodedBatch:
    """Lay out pre-tokenised texts (and optional prefixes and suffixes) as one right-padded batch.

    A row with a suffix reads [start] prefix text [end] suffix [end]; only the text is a target.
    """
    start, end, pad = special_ids(tokenizer)
    head = [start] if start is not None else []
    tail = [end] if end is not None else []
    rows, targets, truncated, suffix_start = [], [], [], []
    for i, ids in enumerate(text_ids):
        prefix = list(prefix_ids[i]) if prefix_ids is not None else []
        suffix = list(suffix_ids[i] or []) if suffix_ids is not None else []
        after = tail + (suffix + tail if suffix else [])
        budget = max_length - len(head) - len(prefix) - len(after)
        if budget < 1:
            raise ValueError(f"max_length {max_length} leaves no room for text beside a {len(prefix) + len(suffix)}"
                             "-token prompt")
        body = list(ids[:budget])
        truncated.append(len(ids) > budget)
        rows.append(head + prefix + body + after)
        suffix_start.append(len(head) + len(prefix) + len(body) + len(tail))
        targets.append([False] * (len(head) + len(prefix)) + [True] * len(body) + [False] * len(after))
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, tgt) in enumerate(zip(rows, targets, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        target[i, : len(row)] = torch.tensor(tgt)
    return EncodedBatch(input_ids, attention, target, truncated, suffix_start if suffix_ids is not None else None)


def encode(
    tokenizer, texts: Sequence[str], prefixes: Sequence[str] | None = None, max_length: int = 128
) -> EncodedBatch:
    """Tokenise and lay out texts with optional per-text prefixes (see the module docstring)."""
    text_ids = tokenize_texts(tokenizer, texts)
    prefix_ids = tokenize_texts(tokenizer, prefixes) if prefixes is not None else None
    return collate(tokenizer, text_ids, prefix_ids, max_length)


@dataclass
class ClassSlot:
    """Where the class word sits in a class prompt, so that it can be masked (diffusion) or predicted (left to right).

    Every class's prompt tokenises to the same length and differs from the others at exactly one position, ``index``
    (counted from the prompt's first token); ``token_ids[c]`` is class c's word there.
    """

    prompt_ids: list[list[int]]  # per class: the whole prompt's token ids
    index: int  # position of the class word inside the prompt
    token_ids: list[int]  # per class: the class word's token id


def class_slot(tokenizer, prompts: Sequence[str]) -> ClassSlot:
    """Find the one token that tells the class prompts apart; one-line error when there is no such token."""
    ids = tokenize_texts(tokenizer, list(prompts))
    differ = [i for i in range(min(map(len, ids))) if len({row[i] for row in ids}) > 1]
    if len({len(row) for row in ids}) != 1 or len(differ) != 1 or len({row[differ[0]] for row in ids}) != len(ids):
        shown = ", ".join(repr(p) for p in prompts)
        raise TextdiffError(f"the class prompts ({shown}) do not differ in exactly one token, so the class word cannot "
                            "be masked or predicted as one token; use one-token class names")
    return ClassSlot(prompt_ids=[list(row) for row in ids], index=differ[0], token_ids=[row[differ[0]] for row in ids])
