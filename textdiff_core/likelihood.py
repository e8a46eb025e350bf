"""Likelihoods of a text: the diffusion ELBO (Monte Carlo, shareable noise) and the exact left-to-right score.

Diffusion (MDLM / LLaDA count form). With L text tokens, draw a masked-token count k ~ U{1..L} and a uniformly
random set M of k positions; then
    -log p(x) <= E_k E_M [ (L / k) * sum_{i in M} -log p(x_i | x with M masked) ]
Each Monte Carlo sample is one forward pass. Variance is reduced by stratifying k over the samples and by
antithetic pairs (the second sample of a pair masks the positions the first left visible). The noise is drawn over
*text positions*, independent of any prefix, so the same draws can score a text under every class prompt: the
difference between classes then has far lower variance than with independent noise (common random numbers).

Left-to-right: log p(x) = sum_i log p(x_i | x_<i), exact, one forward pass per window.

Texts longer than the model's window are scored in consecutive windows (each conditioned on the prefix only)
and summed; results say how many windows were used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from textdiff_core.denoisers import denoise_logits, logits_at
from textdiff_core.errors import TextdiffError
from textdiff_core.models import LoadedModel
from textdiff_core.settings import CAUSAL, CLASSIFIER, MASKED
from textdiff_core.tokens import collate, special_ids, tokenize_texts

MAX_TEXT_TOKENS = 8192  # longer texts are refused: scoring cost and memory grow with length


@dataclass
class ScoringNoise:
    """K masks over L text positions and their weights L/k; reusable across classes."""

    masks: torch.Tensor  # [K, L] bool
    weights: torch.Tensor  # [K] float: L / (number masked)

    @property
    def samples(self) -> int:
        return self.masks.shape[0]


def draw_noise(length: int, samples: int, generator: torch.Generator | None = None, antithetic: bool = True
               ) -> ScoringNoise:
    """``samples`` masks over ``length`` positions: stratified counts, optionally in antithetic pairs."""
    if length < 1 or samples < 1:
        raise TextdiffError(f"need at least one token and one sample (got {length} tokens, {samples} samples)")
    pairs = antithetic and samples >= 2
    strata = samples // 2 if pairs else samples
    u = (torch.arange(strata) + torch.rand(strata, generator=generator)) / strata  # one draw per stratum
    counts = (1 + torch.floor(u * length)).long().clamp(1, length)
    masks, weights = [], []
    for k in counts.tolist():
        order = torch.randperm(length, generator=generator)
        first = torch.zeros(length, dtype=torch.bool)
        first[order[:k]] = True
        masks.append(first)
        weights.append(length / k)
        if pairs:  # the complement (plus the boundary position): count L-k+1, uniform on {1..L} when k is
            second = torch.zeros(length, dtype=torch.bool)
            second[order[k - 1 :]] = True
            masks.append(second)
            weights.append(length / (length - k + 1))
    if pairs and samples % 2:  # an odd sample out: one plain uniform draw
        k = int(torch.randint(1, length + 1, (1,), generator=generator))
        extra = torch.zeros(length, dtype=torch.bool)
        extra[torch.randperm(length, generator=generator)[:k]] = True
        masks.append(extra)
        weights.append(length / k)
    return ScoringNoise(torch.stack(masks), torch.tensor(weights, dtype=torch.float32))


@dataclass
class TextScore:
    """-log p(text | prefix) (an upper bound for diffusion), with the per-token picture behind it."""

    nll: float  # total over the text's tokens (diffusion: the ELBO bound; AR: exact)
    nll_se: float  # Monte Carlo standard error of nll (0 for exact scores)
    token_ids: list[int]  # the scored text tokens
    token_nll: list[float]  # per-token contributions; they sum to nll
    token_se: list[float]  # per-token standard errors (0 for exact scores)
    sample_nll: list[float]  # diffusion: the estimate of each Monte Carlo sample (nll is their mean)
    windows: int  # how many windows the text was scored in (1 = it fitted)
    contributions: torch.Tensor | None = field(default=None, repr=False)  # Monte Carlo: [K, L] per sample and token

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def _windows(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)] or [[]]


def _budget(lm: LoadedModel, prefix_len: int, max_length: int | None) -> int:
    limit = max_length or min(getattr(lm.model.config, "max_position_embeddings", 512) or 512, 512)
    start, end, _ = special_ids(lm.tokenizer)
    budget = limit - prefix_len - (start is not None) - (end is not None)
    if budget < 1:
        raise TextdiffError(f"the prefix ({prefix_len} tokens) leaves no room for text in a {limit}-token window")
    return budget


def text_windows(
    lm: LoadedModel, text: str, prefixes: Sequence[str | None], max_length: int | None, max_windows: int | None
) -> tuple[list[list[int]], list[list[int]]]:
    """(windows of the text's token ids, token ids of each prefix): the units every scorer works on."""
    ids = tokenize_texts(lm.tokenizer, [text])[0]
    if not ids:
        raise TextdiffError("the text is empty")
    if len(ids) > MAX_TEXT_TOKENS:
        raise TextdiffError(f"the text has {len(ids):,} tokens; texts of up to {MAX_TEXT_TOKENS:,} are scored")
    prefix_ids = [tokenize_texts(lm.tokenizer, [p])[0] if p else [] for p in prefixes]
    return _windows(ids, _budget(lm, max(len(p) for p in prefix_ids), max_length))[:max_windows], prefix_ids


def _require(lm: LoadedModel, kind: str, what: str) -> None:
    if lm.kind != kind:
        other = "a masked" if kind == MASKED else "a left-to-right"
        why = " (a discriminative model gives no likelihood of its text)" if lm.kind == CLASSIFIER else ""
        raise TextdiffError(f"{what} needs {other} model; {lm.name!r} is not one{why}")


@torch.no_grad()
def masked_rows_nll(
    lm: LoadedModel,
    windows: Sequence[list[int]],
    prefixes: Sequence[list[int]],
    masks: Sequence[torch.Tensor],
    max_tokens: int = 4096,
) -> list[torch.Tensor]:
    """-log p(x_i | x with the mask applied) for row r = (windows[r], prefixes[r], masks[r]): a [len(window)]
    tensor per row, 0 where unmasked.

    Rows of any length and prefix (every window, class prompt and Monte Carlo sample of a text) go through the
    model together, in batches of at most ``max_tokens`` padded tokens, with logits only at masked positions:
    one large forward pass instead of many small ones. The bound also caps memory: the logits of a batch take up to
    max_tokens x vocabulary floats (4096 x 30,522 x 4 bytes = 0.5 GB for MiniLM when every token is masked).
    """
    tok = lm.tokenizer
    out: list[torch.Tensor] = [torch.zeros(0)] * len(windows)
    order = sorted(range(len(windows)), key=lambda r: len(windows[r]) + len(prefixes[r]), reverse=True)
    lo = 0
    while lo < len(order):
        width = len(windows[order[lo]]) + len(prefixes[order[lo]]) + 2  # the longest row of this batch
        hi = min(len(order), lo + max(1, max_tokens // width))
        rows = order[lo:hi]
        batch = collate(tok, [windows[r] for r in rows], [prefixes[r] for r in rows], max_length=10**9)
        batch = batch.to(lm.device)
        masked = torch.zeros_like(batch.target_mask)
        masked[batch.target_mask] = torch.cat([masks[r] for r in rows]).to(lm.device)
        noisy = batch.input_ids.masked_fill(masked, tok.mask_token_id)
        logits = denoise_logits(lm, noisy, batch.attention_mask, masked).float()
        nll = F.cross_entropy(logits, batch.input_ids[masked], reduction="none")
        full = torch.zeros(masked.shape, device=lm.device)
        full[masked] = nll
        for i, r in enumerate(rows):
            out[r] = full[i][batch.target_mask[i]].cpu()
        lo = hi
    return out


def masked_token_nll(
    lm: LoadedModel, window: list[int], prefix: list[int], masks: torch.Tensor, max_tokens: int = 4096
) -> torch.Tensor:
    """-log p(x_i | x with the mask applied) for every masked token: [S, L] for S masks over one window, 0 elsewhere."""
    rows = masked_rows_nll(lm, [window] * masks.shape[0], [prefix] * masks.shape[0], list(masks), max_tokens)
    return torch.stack(rows) if rows else torch.zeros(masks.shape)


def elbo_scores(
    lm: LoadedModel,
    text: str,
    prefixes: Sequence[str | None],
    samples: int = 8,
    generator: torch.Generator | None = None,
    shared_noise: bool = True,
    antithetic: bool = True,
    max_length: int | None = None,
    max_tokens: int = 4096,
    max_windows: int | None = None,
) -> list[TextScore]:
    """Diffusion ELBO of ``text`` under each prefix (e.g. one class prompt per class).

    shared_noise=True scores every prefix with the same masks (the low-variance way to compare classes);
    False draws fresh masks per prefix (for comparison only). ``max_windows`` scores only the first windows (a
    cheap estimate for monitoring; the result's ``windows`` and ``token_ids`` say what was scored).
    """
    _require(lm, MASKED, "the diffusion ELBO")
    windows, prefix_ids = text_windows(lm, text, prefixes, max_length, max_windows)
    rows_w, rows_p, rows_m, weights = [], [], [], []  # every window x prefix x sample, scored in one batch
    for window in windows:
        noise = draw_noise(len(window), samples, generator, antithetic)
        for c, pre in enumerate(prefix_ids):
            if not shared_noise and c > 0:
                noise = draw_noise(len(window), samples, generator, antithetic)
            rows_w += [window] * samples
            rows_p += [pre] * samples
            rows_m += list(noise.masks)
            weights.append(noise.weights)
    nll = masked_rows_nll(lm, rows_w, rows_p, rows_m, max_tokens)
    per_prefix = [[] for _ in prefixes]  # per prefix, per window: weighted NLL [K, Lw]
    for j, w in enumerate(weights):  # j runs over (window, prefix) in the order built above
        c = j % len(prefix_ids)
        per_prefix[c].append(torch.stack(nll[j * samples : (j + 1) * samples]) * w[:, None])
    ids = [t for w in windows for t in w]
    return [_from_samples(ids, torch.cat(parts, dim=1), len(windows)) for parts in per_prefix]


def _from_samples(ids: list[int], contrib: torch.Tensor, n_windows: int) -> TextScore:
    """A score from per-sample, per-token contributions [K, L] (each row is one estimate of the total)."""
    totals = contrib.sum(1)
    k = totals.shape[0]
    se = totals.std().item() / math.sqrt(k) if k > 1 else float("nan")
    token_se = (contrib.std(0) / math.sqrt(k)).tolist() if k > 1 else [float("nan")] * len(ids)
    return TextScore(
        nll=totals.mean().item(),
        nll_se=se,
        token_ids=list(ids),
        token_nll=contrib.mean(0).tolist(),
        token_se=token_se,
        sample_nll=totals.tolist(),
        windows=n_windows,
        contributions=contrib,
    )


def pool_samples(a: TextScore, b: TextScore) -> TextScore:
    """One score from the Monte Carlo samples of two scores of the same text (adaptive sampling draws in rounds)."""
    if a.contributions is None or b.contributions is None:
        raise TextdiffError("only Monte Carlo scores can be pooled")
    return _from_samples(a.token_ids, torch.cat([a.contributions, b.contributions]), a.windows)


def pll_scores(
    lm: LoadedModel,
    text: str,
    prefixes: Sequence[str | None],
    max_length: int | None = None,
    max_windows: int | None = None,
) -> list[TextScore]:
    """Pseudo-log-likelihood (Salazar et al. 2020): -sum_i log p(x_i | x without i); L forward passes per prefix."""
    _require(lm, MASKED, "pseudo-log-likelihood")
    windows, prefix_ids = text_windows(lm, text, prefixes, max_length, max_windows)
    ids = [t for w in windows for t in w]
    rows = [(w, pre, m) for pre in prefix_ids for w in windows for m in torch.eye(len(w), dtype=torch.bool)]
    nll = masked_rows_nll(lm, *zip(*rows, strict=True))  # one token masked per row, all rows batched
    scores = []
    for c in range(len(prefix_ids)):
        per_token = torch.stack([r.sum() for r in nll[c * len(ids) : (c + 1) * len(ids)]])
        total = per_token.sum().item()
        scores.append(TextScore(total, 0.0, ids, per_token.tolist(), [0.0] * len(ids), [total], len(windows)))
    return scores


def mlm_loss_scores(
    lm: LoadedModel,
    text: str,
    prefixes: Sequence[str | None],
    generator: torch.Generator | None = None,
    rate: float = 0.15,
    samples: int = 5,
    max_length: int | None = None,
    max_windows: int | None = None,
) -> list[TextScore]:
    """The MLM-loss score of the RoBERTa variable-masking recipe (``bigsnarfdude/text-diffusion``): the mean NLL over
    one random 15% mask, 5 masks, fresh masks per prefix.

    Multiplied by the token count to sit on the same scale as the other totals; it bounds nothing.
    """
    _require(lm, MASKED, "the MLM-loss score")
    windows, prefix_ids = text_windows(lm, text, prefixes, max_length, max_windows)
    ids = [t for w in windows for t in w]
    jobs = []  # (prefix, window, masks): fresh masks per prefix, as the recipe did
    for pre in prefix_ids:
        for w in windows:
            masks = torch.rand(samples, len(w), generator=generator) < rate
            masks[masks.sum(1) == 0, 0] = True  # at least one token per mask
            jobs.append((pre, w, masks))
    nll = masked_rows_nll(lm, [w for _, w, m in jobs for _ in m], [p for p, _, m in jobs for _ in m],
                          [row for _, _, m in jobs for row in m])
    scores = []
    for c in range(len(prefix_ids)):
        parts = []
        for j in range(c * len(windows), (c + 1) * len(windows)):
            _, w, masks = jobs[j]
            rows = torch.stack(nll[j * samples : (j + 1) * samples])
            parts.append(rows / masks.sum(1, keepdim=True) * len(w))  # rows sum to mean NLL x window length
        scores.append(_from_samples(ids, torch.cat(parts, dim=1), len(windows)))
    return scores




@torch.no_grad()
def ar_scores(
    lm: LoadedModel,
    text: str,
    prefixes: Sequence[str | None],
    max_length: int | None = None,
    max_windows: int | None = None,
) -> list[TextScore]:
    """Exact -log p(text | prefix) = -sum_i log p(x_i | prefix, x_<i) under each prefix, per token."""
    _require(lm, CAUSAL, "exact left-to-right scoring")
    tok = lm.tokenizer
    windows, prefix_ids = text_windows(lm, text, prefixes, max_length, max_windows)
    ids = [t for w in windows for t in w]
    rows_text = [w for _ in prefix_ids for w in windows]
    rows_prefix = [p for p in prefix_ids for _ in windows]
    batch = collate(tok, rows_text, rows_prefix, max_length=10**9).to(lm.device)
    predictors = torch.zeros_like(batch.target_mask)
    predictors[:, :-1] = batch.target_mask[:, 1:]
    logits = logits_at(lm.model, batch.input_ids, batch.attention_mask, predictors).float()
    nll = F.cross_entropy(logits, batch.input_ids[:, 1:][batch.target_mask[:, 1:]], reduction="none").cpu()
    per_row = nll.split(batch.target_mask.sum(1).tolist())
    scores = []
    for c in range(len(prefix_ids)):
        token_nll = torch.cat(per_row[c * len(windows) : (c + 1) * len(windows)])
        scores.append(TextScore(token_nll.sum().item(), 0.0, list(ids), token_nll.tolist(), [0.0] * len(ids),
                                [token_nll.sum().item()], len(windows)))
    return scores


@dataclass
class InfillScore:
    """The infill reading of one text: log P(class | window) for every window, read off the class-word slot."""

    log_posteriors: torch.Tensor  # [W, C] log P(c | window w), each row a distribution over the classes
    windows: list[list[int]]  # the text's token ids, window by window

    @property
    def token_ids(self) -> list[int]:
        return [t for w in self.windows for t in w]


def _infill_rows(lm: LoadedModel, slot, windows: Sequence[list[int]]):
    """One row per window with the class slot open: (batch, positions whose logits predict the class word).

    Masked models: [start] class prompt with [MASK] at the class word, window, [end]; the slot's own logits.
    Left-to-right models: [start] window [end] class prompt; the logits one position before the class word.
    """
    prompt = list(slot.prompt_ids[0])
    if lm.kind == MASKED:
        prompt[slot.index] = lm.tokenizer.mask_token_id
        batch = collate(lm.tokenizer, windows, [prompt] * len(windows), max_length=10**9)
        start = int(special_ids(lm.tokenizer)[0] is not None)
        where = [start + slot.index] * len(windows)
    else:
        rows = len(windows)
        batch = collate(lm.tokenizer, windows, [[]] * rows, max_length=10**9, suffix_ids=[prompt] * rows)
        where = [s + slot.index - 1 for s in batch.suffix_start]
    positions = torch.zeros_like(batch.target_mask)
    positions[torch.arange(len(windows)), torch.tensor(where)] = True
    return batch, positions


def _slot_logits(lm: LoadedModel, batch, positions: torch.Tensor) -> torch.Tensor:
    """Logits at the slot positions: masked models through their denoiser (time input, shift), causal ones plainly."""
    if lm.kind == MASKED:
        return denoise_logits(lm, batch.input_ids, batch.attention_mask, positions).float()
    return logits_at(lm.model, batch.input_ids, batch.attention_mask, positions).float()


def _infill_budget(lm: LoadedModel, slot, max_length: int | None) -> int:
    extra = 0 if lm.kind == MASKED else 1  # the left-to-right layout has a second [end] after the class prompt
    return _budget(lm, len(slot.prompt_ids[0]) + extra, max_length)


@torch.no_grad()
def infill_scores(lm: LoadedModel, text: str, slot, max_length: int | None = None, max_windows: int | None = None
                  ) -> InfillScore:
    """log P(class | window) for each window of ``text``: one forward pass per window, no Monte Carlo noise.

    ``slot`` (``tokens.class_slot``) names the class words; the distribution is the model's, renormalised over them.
    """
    if lm.kind == MASKED and lm.tokenizer.mask_token_id is None:
        raise TextdiffError(f"{lm.name!r} has no mask token, so its class slot cannot be masked")
    ids = tokenize_texts(lm.tokenizer, [text])[0]
    if not ids:
        raise TextdiffError("the text is empty")
    if len(ids) > MAX_TEXT_TOKENS:
        raise TextdiffError(f"the text has {len(ids):,} tokens; texts of up to {MAX_TEXT_TOKENS:,} are scored")
    windows = _windows(ids, _infill_budget(lm, slot, max_length))[:max_windows]
    batch, positions = _infill_rows(lm, slot, windows)
    logits = _slot_logits(lm, batch.to(lm.device), positions.to(lm.device))
    picked = logits[:, torch.tensor(slot.token_ids, device=logits.device)]
    return InfillScore(torch.log_softmax(picked, -1).cpu(), windows)


@torch.no_grad()
def infill_occlusion(lm: LoadedModel, window: list[int], slot, max_tokens: int = 8192) -> tuple[torch.Tensor,
                                                                                                  torch.Tensor]:
    """Per-token evidence of the infill reading, exact: (log P(c | window) [C], delta [L, C]) where
    delta[i, c] = log P(c | window) - log P(c | window with token i occluded) (> 0: token i speaks for class c).

    A masked model sees token i as [MASK]; a left-to-right model reads the window with token i left out. All L
    occlusions (and the intact window) go through the model as rows of one batch (or a few, ``max_tokens``).
    """
    if lm.kind == MASKED:
        variants = [list(window)] + [window[:i] + [lm.tokenizer.mask_token_id] + window[i + 1 :]
                                     for i in range(len(window))]
    else:
        variants = [list(window)] + [window[:i] + window[i + 1 :] for i in range(len(window))]
    out = []
    per_batch = max(1, max_tokens // (len(window) + len(slot.prompt_ids[0]) + 3))
    for lo in range(0, len(variants), per_batch):
        part = variants[lo : lo + per_batch]  # a left-to-right window of one token leaves an empty row: fine
        batch, positions = _infill_rows(lm, slot, part)
        logits = _slot_logits(lm, batch.to(lm.device), positions.to(lm.device))
        out.append(torch.log_softmax(logits[:, torch.tensor(slot.token_ids, device=logits.device)], -1).cpu())
    lp = torch.cat(out)
    return lp[0], lp[0][None, :] - lp[1:]
