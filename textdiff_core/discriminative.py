"""The discriminative reading: an encoder with a classification head gives P(class | text) directly.

The same backbone as the generative readings, trained by ``train --objective discriminative`` (cross-entropy of the
[CLS] head against each text's label), read here the way ``likelihood`` reads the generative models:
  windows   a text longer than one window is read in the windows the Bayes readings use (``text_windows`` with no
            prefix: consecutive, the model's length less [CLS] and [SEP]), all windows one batch; the reading is the
            mean of the windows' logits (``HeadReading.mean``), so every part of a long review has its say
  evidence  occlusion, as for the infill reading: log P(c | window) minus the same with token i alone replaced by
            [MASK], for every i, all occlusions rows of one batch
  OOD       the head gives no P(text), so no per-token evidence; its scores of how typical a text is are the max
            softmax probability (Hendrycks & Gimpel 2017) and the energy -logsumexp_c logit_c (Liu et al. 2020;
            lower energy: more typical)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from textdiff_core.errors import TextdiffError
from textdiff_core.likelihood import text_windows
from textdiff_core.models import LoadedModel
from textdiff_core.settings import CLASSIFIER
from textdiff_core.tokens import collate

MAX_BATCH_TOKENS = 8192  # rows of one forward pass: at most this many tokens (padding included)


@dataclass
class HeadReading:
    """The head's logits for every window of one text."""

    logits: torch.Tensor  # [W, C] float32, window by window
    windows: list[list[int]]  # the text's token ids, window by window

    @property
    def token_ids(self) -> list[int]:
        return [t for w in self.windows for t in w]

    @property
    def mean(self) -> torch.Tensor:
        """[C]: the text's logits, the mean over its windows."""
        return self.logits.mean(0)


def _require_head(lm: LoadedModel) -> None:
    if lm.kind != CLASSIFIER:
        raise TextdiffError(f"the discriminative reading needs a model with a classification head; {lm.name!r} has "
                            "none")


@torch.no_grad()
def head_logits(lm: LoadedModel, windows: Sequence[list[int]], max_tokens: int = MAX_BATCH_TOKENS) -> torch.Tensor:
    """[N, C] logits of the head for N windows of token ids, each laid out [CLS] window [SEP], in batches of at most
    ``max_tokens`` tokens."""
    _require_head(lm)
    width = max(len(w) for w in windows) + 2
    per_batch = max(1, max_tokens // width)
    out = []
    for lo in range(0, len(windows), per_batch):
        batch = collate(lm.tokenizer, windows[lo : lo + per_batch], None, max_length=10**9).to(lm.device)
        out.append(lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float().cpu())
    return torch.cat(out)


def head_reading(lm: LoadedModel, text: str, max_length: int | None = None, max_windows: int | None = None
                 ) -> HeadReading:
    """The head's logits for each window of ``text`` (the windows every reading uses; one forward pass each)."""
    _require_head(lm)
    windows, _ = text_windows(lm, text, [None], max_length, max_windows)
    return HeadReading(head_logits(lm, windows), windows)


def first_window_logits(lm: LoadedModel, texts: Sequence[str], max_length: int | None = None) -> torch.Tensor:
    """[N, C] logits of the first window of each text (validation during training: the start crop)."""
    _require_head(lm)
    return head_logits(lm, [text_windows(lm, text, [None], max_length, 1)[0][0] for text in texts])


@torch.no_grad()
def head_occlusion(lm: LoadedModel, window: list[int], max_tokens: int = MAX_BATCH_TOKENS
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token evidence of the head, exact: (log P(c | window) [C], delta [L, C]) where
    delta[i, c] = log P(c | window) - log P(c | window with token i replaced by [MASK]) (> 0: token i speaks for
    class c), the shape ``likelihood.infill_occlusion`` gives for the infill reading."""
    mask_id = lm.tokenizer.mask_token_id
    if mask_id is None:
        raise TextdiffError(f"{lm.name!r} has no [MASK] token to occlude tokens with")
    variants = [list(window)] + [window[:i] + [mask_id] + window[i + 1 :] for i in range(len(window))]
    lp = torch.log_softmax(head_logits(lm, variants, max_tokens), -1)
    return lp[0], lp[0][None, :] - lp[1:]


def max_softmax(logits: Sequence[float]) -> float:
    """The max softmax probability of the head's logits (before calibration): low for texts unlike its training."""
    return torch.softmax(torch.tensor(logits, dtype=torch.float64), 0).max().item()


def energy(logits: Sequence[float]) -> float:
    """The energy -logsumexp_c logit_c of the head's logits (before calibration): high for texts unlike its
    training; its negative is the in-distribution score calibration keeps as the OOD reference."""
    return -torch.logsumexp(torch.tensor(logits, dtype=torch.float64), 0).item()
