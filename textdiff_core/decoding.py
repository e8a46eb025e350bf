"""Decoding: diffusion decoding from masked models, left-to-right decoding from causal models, and fill-mask.

Both decoders return a ``Trace`` (see ``trace``) and share one sampling function (``draw_tokens``), so the only
difference between them is the order in which positions are committed.

Diffusion (``diffusion_decode``): the sequence is  [CLS] class-prompt user-text [MASK]*length [SEP];  the class
prompt and the user's text are never masked, and ``[MASK]`` written inside the user's text is filled too
(infilling). Each step runs the model once on the whole sequence (logits only at the masked positions of the current
block) and commits some masked positions:
  confidence           every position whose confidence score is >= threshold (at least the best one per step; with
                       ``steps``, at least enough of the most confident to finish within that many passes)
  topk                 the k most confident positions
  schedule-random      a schedule's count per step, chosen uniformly at random (the RoBERTa recipe's way)
  schedule-confidence  a schedule's count per step, the most confident ones; the rest stay masked (LLaDA's
                       low-confidence remasking)
  entropy-bound        the lowest-entropy positions whose entropies sum to at most ``entropy_bound`` nats (at least
                       one per step): the model's own certainty sets the pace (EB-sampler, Ben-Hamu et al. 2025)
Schedules (fraction of a block's positions committed after step s of S): linear s/S; cosine 1 - cos(pi/2 s/S)
(few early, many late, as MaskGIT); exp (1 - e^(-5 s/S)) / (1 - e^(-5)) (many early, few late).
``spacing`` > 1 makes the parallel strategies (topk, and confidence beyond its threshold) prefer positions at least
that far apart within a pass: neighbours depend on each other most. ``block_size`` decodes the masked positions in
blocks of that many, left to right (semi-autoregressive); schedule steps are then shared out over the blocks. Our
models take no time input, so when a step commits nothing the next step's prediction would be identical: it is
reused instead of recomputed (MDLM's cache trick; ``reuse=False`` recomputes it, for comparison). With blocks,
``cache="prefix"`` or ``"dual"`` runs the passes inside a block against the keys and values kept from the pass that
opened it (``kv_cache``). ``diffusion_decode_batch`` and ``ar_decode_batch`` decode several seeds as one batch.

Classifier-free guidance (``cfg_scale`` s, diffusion): each pass also runs an unconditional copy of the sequence, the
conditioning written as [MASK] (LLaDA's way: the class prompt when a label is given, else the user's prompt tokens),
and uses logits = uncond + s * (cond - uncond): s = 1 is plain conditional decoding (no second copy), 0 ignores the
condition, s > 1 follows it more strongly. The two copies run as one batch; each counts as a forward pass.

Left-to-right (``ar_decode``): [start] class-prompt user-text, then one token per forward pass, with a KV cache
(``use_cache=True``: each pass runs only the new token) or without (each pass reruns the whole prefix).

Both decoders write at most ``length`` new tokens and never write special tokens ([MASK], [CLS], ...), except the
end-of-text token when ``stop_at_end``: where a model commits it, the text ends there (diffusion stops decoding the
positions after it; left-to-right stops). That is the default for the published families and general LMs, whose
instruct models pad with it; textdiff's own models never learned to write their [SEP], so for them both decoders write
exactly ``length`` tokens: a like-for-like comparison, with no early stop.

Sampling: temperature 0 is greedy (argmax); a positive temperature samples, optionally restricted to the top-k tokens
and/or the nucleus (top-p). Confidence is measured on the model's own distribution (temperature 1, specials
excluded), as the maximum probability, the margin between the two most likely tokens, or the negative entropy.
Randomness comes only from a ``torch.Generator`` seeded by ``seed`` (a fresh seed is drawn and recorded when it is
None), so a seed reproduces a run exactly.
"""

from __future__ import annotations

import functools
import inspect
import math
import secrets
import time
from dataclasses import asdict, dataclass, replace

import torch

from textdiff_core.denoisers import denoise_logits
from textdiff_core.errors import TextdiffError
from textdiff_core.kv_cache import CACHE_MODES, BlockCache
from textdiff_core.kv_cache import supports as cache_supported
from textdiff_core.models import MASKED, LoadedModel
from textdiff_core.tokens import decode_text, encode, special_ids, token_style, tokenize_texts
from textdiff_core.trace import CONFIDENCE_MEASURES, Frame, Trace, confidence_score

DIFFUSION_STRATEGIES = ("confidence", "topk", "schedule-random", "schedule-confidence", "entropy-bound")
STRATEGIES = (*DIFFUSION_STRATEGIES, "ar")
# One name per strategy wherever it is shown (Denoise, Compare), and what it does
STRATEGY_NAMES = {
    "confidence": ("confidence ≥ threshold", "every position at least this sure (at least one per step)"),
    "topk": ("top-k per step", "the k most confident positions"),
    "schedule-confidence": ("schedule, most confident first", "a schedule's count per step, the most confident "
                                                              "ones (LLaDA's low-confidence remasking)"),
    "schedule-random": ("schedule, random positions", "a schedule's count per step, at random (the RoBERTa "
                                                      "recipe's way)"),
    "entropy-bound": ("entropy-bounded", "the most certain positions while their entropies sum to the bound (the "
                                         "model's own certainty sets the pace)"),
    "ar": ("left to right", "one token per pass, in order"),
}
SCHEDULES = ("linear", "cosine", "exp")
EXP_RATE = 5.0  # steepness of the "exp" schedule
# The confidence strategy's defaults when it is picked (default_config holds the defaults users meet): at threshold
# 0.9 within a quarter of the new tokens in forward passes, committing positions at least 3 apart. A weak model is
# rarely 90% sure, so a threshold alone commits one token per pass; the budget makes it parallel.
DEFAULT_PASS_FRACTION = 0.25  # confidence strategy: at most ceil(length * this) forward passes by default
DEFAULT_SPACING = 3  # confidence (beyond the threshold) and topk: prefer positions this far apart in a pass


DEFAULT_ENTROPY_BOUND = 32.0  # nats: the entropy-bound strategy's default, about 5 tokens per pass on the shipped model
DEFAULT_BLOCK_SIZE = 32  # the default semi-autoregressive block: the unit of the block KV cache


def default_config(kind: str, strategy: str | None = None, length: int | None = None) -> DecodeConfig:
    """The settings a user meets when they give none (the CLI, Denoise and Compare all start here), for a
    ``kind`` of model (MASKED or CAUSAL) and ``length`` new tokens, optionally with a hand-picked ``strategy``.

    Sampling (temperature 1, nucleus 0.9) for both kinds: greedy decoding loops. Diffusion: confidence decoding at
    0.9 within a quarter of the length in forward passes (``default_pass_budget``), positions at least 3 apart, in
    semi-autoregressive blocks of 32 with the dual KV cache. A hand-picked diffusion strategy keeps the sampling,
    blocks and cache. Chosen on held-out seeds (``bench/decoding_defaults.py``; docs/experiments.md has the figures:
    at 4 tokens per pass the entropy-bounded strategy wrote text 2-3x less likely under an independent reference).
    """
    sampling = {"temperature": 1.0, "top_p": 0.9}
    if kind != MASKED or strategy == "ar":
        return DecodeConfig(strategy="ar", **sampling)
    strategy = strategy or "confidence"
    steps = default_pass_budget(length, DEFAULT_BLOCK_SIZE) if strategy == "confidence" and length else None
    return DecodeConfig(strategy=strategy, steps=steps, entropy_bound=DEFAULT_ENTROPY_BOUND,
                        block_size=DEFAULT_BLOCK_SIZE, cache="dual", spacing=DEFAULT_SPACING, **sampling)


def default_pass_budget(length: int, block_size: int | None = None) -> int | None:
    """The default pass budget of confidence decoding for ``length`` new tokens: a quarter of them, at least one pass
    per block of ``block_size`` (None: no new tokens, no budget)."""
    if length <= 0:
        return None
    budget = math.ceil(length * DEFAULT_PASS_FRACTION)
    return max(budget, math.ceil(length / block_size)) if block_size else budget


@dataclass
class DecodeConfig:
    """Every decoding setting; recorded in the trace. Settings a strategy does not use are ignored by it."""

    strategy: str = "confidence"  # one of STRATEGIES
    steps: int | None = None  # schedule strategies: total steps (default: one per masked position); confidence:
    # at most this many forward passes (commits beyond the threshold when needed to keep pace; a pass per token or
    # more: exactly one token per pass, the threshold unused); entropy-bound: at
    # least this many (commits at most its pace, so steps = length commits one token per pass)
    schedule: str = "linear"  # schedule strategies: linear, cosine or exp
    threshold: float = 0.9  # confidence strategy: commit positions whose confidence score is >= this, in (0, 1]
    k: int = 4  # topk strategy: positions committed per step
    entropy_bound: float = DEFAULT_ENTROPY_BOUND  # entropy-bound: commit while the entropies sum to <= this (nats)
    confidence: str = "max-prob"  # max-prob, margin or entropy
    temperature: float = 0.0  # 0: greedy; > 0: sample
    top_k: int | None = None  # sample among the k most likely tokens (needs temperature > 0)
    top_p: float | None = None  # sample from the nucleus of probability p (needs temperature > 0)
    seed: int | None = 0  # seeds the torch.Generator; None: a fresh seed, recorded in the trace
    block_size: int | None = None  # diffusion: decode masked positions in left-to-right blocks of this size
    spacing: int = 1  # confidence (beyond the threshold) and topk: prefer positions at least this far apart in a pass
    reuse: bool = True  # diffusion: reuse the last prediction when nothing changed since it was made
    use_cache: bool = True  # left-to-right: KV cache
    cfg_scale: float = 1.0  # diffusion: classifier-free guidance, 1 = off, 0 = unconditional, > 1 = stronger
    cache: str = "none"  # diffusion: approximate block KV cache, "none", "prefix" or "dual" (see kv_cache)
    cache_refresh: int | None = None  # diffusion with a cache: also refresh it every this many passes in a block
    stop_at_end: bool | None = None  # end the text where the model writes end-of-text (None: where the model can)

    def validate(self) -> None:
        """Raise ``TextdiffError`` (one line) for any setting that cannot work."""
        if self.strategy not in STRATEGIES:
            raise TextdiffError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.schedule not in SCHEDULES:
            raise TextdiffError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.confidence not in CONFIDENCE_MEASURES:
            raise TextdiffError(
                f"unknown confidence {self.confidence!r}; choose one of {', '.join(CONFIDENCE_MEASURES)}"
            )
        if self.steps is not None and self.steps < 1:
            raise TextdiffError(f"steps must be at least 1, got {self.steps}")
        if not 0 < self.threshold <= 1:
            raise TextdiffError(f"threshold must be in (0, 1], got {self.threshold}")
        if not (self.entropy_bound >= 0 and math.isfinite(self.entropy_bound)):
            raise TextdiffError(f"entropy bound must be >= 0 nats, got {self.entropy_bound}")
        if self.k < 1:
            raise TextdiffError(f"k must be at least 1, got {self.k}")
        if self.temperature < 0 or not math.isfinite(self.temperature):
            raise TextdiffError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if self.temperature == 0 and (self.top_k is not None or self.top_p is not None):
            raise TextdiffError("temperature 0 is greedy decoding; top-k / top-p sampling needs a temperature > 0")
        if self.top_k is not None and self.top_k < 1:
            raise TextdiffError(f"top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise TextdiffError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.spacing < 1:
            raise TextdiffError(f"spacing must be at least 1, got {self.spacing}")
        if self.block_size is not None and self.block_size < 1:
            raise TextdiffError(f"block size must be at least 1, got {self.block_size}")
        if self.cache not in CACHE_MODES:
            raise TextdiffError(f"unknown cache {self.cache!r}; choose one of {', '.join(CACHE_MODES)}")
        if self.cache_refresh is not None and self.cache_refresh < 1:
            raise TextdiffError(f"cache refresh must be at least 1 pass, got {self.cache_refresh}")
        if not (self.cfg_scale >= 0 and math.isfinite(self.cfg_scale)):
            raise TextdiffError(f"guidance scale must be >= 0 (1 is off), got {self.cfg_scale}")


@dataclass
class Scores:
    """The model's distribution at N positions and each position's confidence: all that choosing positions needs.
    Tokens are drawn afterwards, only where positions are committed (``sample_rows``): sampling with top-p sorts
    the whole vocabulary, which at 30k tokens costs as much as a forward pass when done at every open position."""

    logits: torch.Tensor  # [N, vocab] float, banned tokens at -inf
    probs: torch.Tensor  # [N, vocab] softmax of logits (temperature 1)
    confidence: torch.Tensor  # [N] in the configured measure (see trace.confidence_score for its [0, 1] score)
    entropy: torch.Tensor | None  # [N] entropy in nats (specials excluded), when asked for


@dataclass
class Draw:
    """Tokens drawn at N positions, with the model's probability of each and each position's confidence."""

    tokens: torch.Tensor  # [N] long
    prob: torch.Tensor  # [N] probability of the drawn token under the model
    confidence: torch.Tensor  # [N] in the configured measure (see trace.confidence_score for its [0, 1] score)
    entropy: torch.Tensor  # [N] entropy (nats) of the model's distribution at each position (specials excluded)


def score_positions(logits: torch.Tensor, config: DecodeConfig, banned: torch.Tensor | None = None,
                    entropy: bool = False) -> Scores:
    """The distribution and confidence at each row of ``logits`` [N, vocab]; ``banned`` token ids (special tokens)
    get probability 0 everywhere, also in the confidence measures."""
    logits = logits.float()
    if banned is not None:
        banned = banned[banned < logits.shape[-1]].to(logits.device)
        logits = logits.index_fill(-1, banned, float("-inf"))
    probs = logits.softmax(-1)
    return Scores(logits, probs, measure_confidence(probs, config.confidence),
                  torch.special.entr(probs).sum(-1) if entropy else None)


def sample_rows(scores: Scores, rows: list[int], config: DecodeConfig, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, their probabilities) at ``rows`` of ``scores``: greedy, or sampled with temperature / top-k / top-p.
    The one sampling function of both decoders."""
    logits, probs = scores.logits[rows], scores.probs[rows]
    if config.temperature == 0:
        tokens = probs.argmax(-1)
    else:
        scaled = logits / config.temperature
        if config.top_k is not None and config.top_k < scaled.shape[-1]:
            kth = scaled.topk(config.top_k, dim=-1).values[:, -1:]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        if config.top_p is not None and config.top_p < 1:
            tokens = _nucleus(scaled, config.top_p, generator)
        else:
            tokens = torch.multinomial(scaled.softmax(-1), 1, generator=generator).squeeze(-1)
    return tokens, probs.gather(-1, tokens[:, None]).squeeze(-1)


NUCLEUS_CANDIDATES = (256, 2048)  # top-p looks among this many most likely tokens first, then a full sort


def _nucleus(scaled: torch.Tensor, top_p: float, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of ``scaled`` [N, vocab] logits from its nucleus: the fewest most likely tokens whose mass
    reaches ``top_p``. Exact: each row looks among its ``NUCLEUS_CANDIDATES`` most likely tokens (a partial top-k),
    and sorts the whole vocabulary only when its nucleus reaches past them. Sorting every row cost more than the
    model's own forward pass at one token per step."""
    tokens = torch.empty(scaled.shape[0], dtype=torch.long, device=scaled.device)
    todo = torch.arange(scaled.shape[0], device=scaled.device)
    log_total = scaled.logsumexp(-1, keepdim=True)
    for k in (*NUCLEUS_CANDIDATES, scaled.shape[-1]):
        k = min(k, scaled.shape[-1])
        top, index = scaled[todo].topk(k, dim=-1) if k < scaled.shape[-1] else scaled[todo].sort(-1, descending=True)
        p = (top - log_total[todo]).exp()  # true probabilities of the candidates
        done = p.sum(-1) >= top_p if k < scaled.shape[-1] else torch.ones_like(todo, dtype=torch.bool)
        if done.any():
            p, index = p[done], index[done]
            outside = p.cumsum(-1) - p >= top_p  # mass before this token already reaches p
            outside[:, 0] = False
            choice = torch.multinomial(p.masked_fill(outside, 0.0), 1, generator=generator)
            tokens[todo[done]] = index.gather(-1, choice).squeeze(-1)
        todo = todo[~done]
        if not len(todo):
            break
    return tokens


def draw_tokens(
    logits: torch.Tensor,
    config: DecodeConfig,
    generator: torch.Generator | None = None,
    banned: torch.Tensor | None = None,
) -> Draw:
    """One token per row of ``logits`` [N, vocab] (``score_positions``, then ``sample_rows`` at every row)."""
    scores = score_positions(logits, config, banned, entropy=True)
    tokens, prob = sample_rows(scores, list(range(logits.shape[0])), config, generator)
    return Draw(tokens, prob, scores.confidence, scores.entropy)


def measure_confidence(probs: torch.Tensor, measure: str) -> torch.Tensor:
    """Per row of ``probs`` [N, vocab]: max probability, margin (top1 - top2) or negative entropy (nats)."""
    if measure == "max-prob":
        return probs.max(-1).values
    if measure == "margin":
        top = probs.topk(2, dim=-1).values
        return top[:, 0] - top[:, 1]
    if measure == "entropy":
        return -torch.special.entr(probs).sum(-1)
    raise TextdiffError(f"unknown confidence {measure!r}; choose one of {', '.join(CONFIDENCE_MEASURES)}")


def schedule_counts(n: int, steps: int, schedule: str = "linear") -> list[int]:
    """How many of ``n`` positions to commit at each of ``steps`` steps (sums to n; zeros when steps > n)."""
    if schedule == "linear":
        def done(f: float) -> float:
            return f
    elif schedule == "cosine":
        def done(f: float) -> float:
            return 1 - math.cos(math.pi / 2 * f)
    elif schedule == "exp":
        def done(f: float) -> float:
            return (1 - math.exp(-EXP_RATE * f)) / (1 - math.exp(-EXP_RATE))
    else:
        raise TextdiffError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    cumulative = [0] + [min(n, math.floor(n * done(s / steps) + 0.5)) for s in range(1, steps)] + [n]
    return [b - a for a, b in zip(cumulative, cumulative[1:], strict=False)]


def _split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal positive integers, larger ones first."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def _generator(config: DecodeConfig, device: torch.device) -> tuple[torch.Generator, int]:
    seed = config.seed if config.seed is not None else secrets.randbits(63)
    return torch.Generator(device=device).manual_seed(seed), seed


def _class_prompt(lm: LoadedModel, label: str | None) -> str:
    """The never-masked prompt of class ``label`` for a class-conditional checkpoint ('' when no label)."""
    if label is None:
        return ""
    meta = lm.checkpoint
    if not meta.class_prompted:
        raise TextdiffError(f"{lm.name!r} is not class-conditional (its textdiff.json has no class prompt), so "
                            f"--label {label!r} cannot be used")
    if label not in meta.classes:
        raise TextdiffError(f"unknown label {label!r}; {lm.name!r} knows {', '.join(map(str, meta.classes))}")
    return meta.prompt_for(label)


class _Recorder:
    """Builds a trace's frames as decoding goes: token strings, commits, confidences, passes, time."""

    def __init__(self, lm: LoadedModel, body: list[int], masked: list[bool], mask_id: int) -> None:
        self.tok, self.mask_id = lm.tokenizer, mask_id
        self.mask_text = lm.tokenizer.mask_token or "[MASK]"
        self.ids, self.masked = list(body), list(masked)
        self.confidence: list[float | None] = [None] * len(body)
        self.prob: list[float | None] = [None] * len(body)
        self.frames: list[Frame] = []
        self.passes = self.processed = 0
        self.pieces: dict[int, str] = {}
        self.started = time.perf_counter()
        self.frame([], reused=False)

    def piece(self, token: int) -> str:
        if token not in self.pieces:
            self.pieces[token] = self.tok.decode([token])
        return self.pieces[token]

    def commit(self, position: int, token: int, confidence: float, prob: float) -> None:
        self.ids[position], self.masked[position] = token, False
        self.confidence[position], self.prob[position] = confidence, prob

    def close(self, position: int, token: int) -> None:
        """Fill a position after the end of the text with end-of-text, undecided by the model."""
        self.ids[position], self.masked[position] = token, False

    def frame(self, committed: list[int], reused: bool, cached: bool = False) -> None:
        elapsed = time.perf_counter() - self.started
        self.frames.append(Frame(
            step=len(self.frames),
            ids=[self.mask_id if m else t for t, m in zip(self.ids, self.masked, strict=True)],
            tokens=[self.mask_text if m else self.piece(t) for t, m in zip(self.ids, self.masked, strict=True)],
            masked=list(self.masked),
            committed=sorted(committed),
            confidence=list(self.confidence),
            prob=list(self.prob),
            forward_passes=self.passes,
            tokens_processed=self.processed,
            elapsed_s=elapsed,
            reused=reused,
            cached=cached,
        ))


def _prepare(lm: LoadedModel, prompt: str, length: int, label: str | None, config: DecodeConfig
             ) -> tuple[list[int], list[int], list[int]]:
    """(class prompt ids, user text ids, [start] as a list) after checking the request."""
    config.validate()
    if length < 0:
        raise TextdiffError(f"length must be >= 0, got {length}")
    _check_window(lm, length)  # before tokenising a long prompt or building an absurd row of masks
    class_ids = tokenize_texts(lm.tokenizer, [_class_prompt(lm, label)])[0] if label is not None else []
    user_ids = tokenize_texts(lm.tokenizer, [prompt])[0] if prompt else []
    _check_window(lm, len(class_ids) + len(user_ids) + length)
    start, _, _ = special_ids(lm.tokenizer)
    return class_ids, user_ids, [start] if start is not None else []


def _check_window(lm: LoadedModel, total: int) -> None:
    limit = getattr(lm.model.config, "max_position_embeddings", None)
    if limit and total > limit:
        raise TextdiffError(f"prompt and generation need {total} positions; {lm.name!r} takes at most {limit}")


def _banned(lm: LoadedModel, allowed: set[int] = frozenset()) -> torch.Tensor:
    """Special-token ids but ``allowed``: never generated by either decoder."""
    ids = sorted({i for i in lm.tokenizer.all_special_ids if i is not None} - set(allowed))
    return torch.tensor(ids, dtype=torch.long, device=lm.device)


def end_ids(lm: LoadedModel, config: DecodeConfig) -> set[int]:
    """The end-of-text ids that end a text in this run (empty: the run writes exactly its length).

    By default only models that learned to write one: the published diffusion families (instruct models pad with
    end-of-text) and causal LMs whose EOS is not a BERT [SEP]; textdiff's own BERT-based twins never saw [SEP] as a
    target."""
    tok = lm.tokenizer
    stop = config.stop_at_end
    if stop is None:
        if lm.kind == MASKED:
            stop = lm.denoiser is not None and lm.denoiser.family != "textdiff"
        else:
            stop = tok.eos_token_id is not None and tok.eos_token_id != tok.sep_token_id
    if not stop:
        return set()
    return {i for i in (tok.eos_token_id, tok.sep_token_id) if i is not None and i != tok.mask_token_id}


def _new_trace(lm: LoadedModel, config: DecodeConfig, prompt: str, label: str | None, seed: int, rec: _Recorder,
               n_class: int, n_prompt: int, decoded: list[bool], length: int, ends: set[int] = frozenset()) -> Trace:
    ended_at = next((i for i, (t, d) in enumerate(zip(rec.ids, decoded, strict=True)) if d and t in ends), None)
    stop = len(rec.ids) if ended_at is None else ended_at
    text_ids = rec.ids[n_class:stop]
    appended = rec.ids[n_prompt:stop] if length else text_ids
    return Trace(
        strategy=config.strategy, settings=asdict(config) | {"seed": seed, "length": length,
                                                             "stop_at_end": bool(ends)},
        model=lm.name, prompt=prompt, label=label, seed=seed, n_class_tokens=n_class, n_prompt_tokens=n_prompt,
        decoded=decoded, mask_id=rec.mask_id, mask_text=rec.mask_text, token_style=token_style(lm.tokenizer),
        final_text=decode_text(lm.tokenizer, text_ids), generated_text=decode_text(lm.tokenizer, appended),
        frames=rec.frames, ended_at=ended_at,
    )


@torch.no_grad()
def diffusion_decode(
    lm: LoadedModel, prompt: str = "", length: int = 32, config: DecodeConfig | None = None, label: str | None = None
) -> Trace:
    """Fill ``length`` masked positions after ``prompt`` (and every mask token inside it) with a masked model.

    ``label`` puts that class's prompt first (class-conditional checkpoints). See the module docstring for the
    strategies; the trace has one frame per step.
    """
    return diffusion_decode_batch(lm, prompt, length, config, label, 1)[0]


@torch.no_grad()
def diffusion_decode_batch(
    lm: LoadedModel, prompt: str = "", length: int = 32, config: DecodeConfig | None = None, label: str | None = None,
    samples: int = 1,
) -> list[Trace]:
    """``diffusion_decode`` for ``samples`` sequences at once, sample i seeded by the config's seed + i.

    The samples go through the model as one batch: each pass runs every sample that still has open positions in
    the current block and needs a new prediction, and each sample chooses and draws its own commits, so a sample
    decodes as it would alone (same passes, same tokens for its seed, up to floating-point batching). One trace per
    sample; each counts the passes it took part in.
    """
    config = config or DecodeConfig()
    if config.strategy not in DIFFUSION_STRATEGIES:
        raise TextdiffError(f"diffusion decoding needs a diffusion strategy ({', '.join(DIFFUSION_STRATEGIES)}), "
                            f"got {config.strategy!r}")
    if lm.kind != MASKED:
        raise TextdiffError(f"{lm.name!r} is a left-to-right model; strategy {config.strategy!r} needs a diffusion "
                            "model (use strategy 'ar' for this one)")
    if samples < 1:
        raise TextdiffError(f"the number of samples must be at least 1, got {samples}")
    class_ids, user_ids, head = _prepare(lm, prompt, length, label, config)
    mask_id = lm.tokenizer.mask_token_id
    body = class_ids + user_ids + [mask_id] * length
    decoded = [i >= len(class_ids) and t == mask_id for i, t in enumerate(body)]
    todo = [i for i, d in enumerate(decoded) if d]
    if not todo:
        raise TextdiffError(f"nothing to generate: give a length > 0 or put {lm.tokenizer.mask_token} in the text")
    _, end, _ = special_ids(lm.tokenizer)
    tail = [end] if end is not None else []
    _check_window(lm, len(head) + len(body) + len(tail))
    blocks = [todo[i : i + config.block_size] for i in range(0, len(todo), config.block_size)] if config.block_size \
        else [todo]
    schedule = config.strategy.startswith("schedule")
    steps = config.steps or len(todo)
    if (schedule or config.strategy in ("confidence", "entropy-bound") and config.steps) and steps < len(blocks):
        raise TextdiffError(f"{steps} steps cannot decode {len(blocks)} blocks; give at least one step per block")
    block_steps = _split(steps, len(blocks))
    # a confidence budget of a pass per token or more: exactly one token per pass (the slowest, exact decoding)
    one_per_pass = config.strategy == "confidence" and bool(config.steps) and config.steps >= len(todo)

    first_seed = _generator(config, lm.device)[1]
    seeds = [first_seed + r for r in range(samples)]
    generators = [torch.Generator(device=lm.device).manual_seed(seed) for seed in seeds]
    ends = end_ids(lm, config)
    banned = _banned(lm, ends)
    offset = len(head)
    ids = torch.tensor([head + body + tail] * samples, device=lm.device)
    recs = [_Recorder(lm, body, [t == mask_id for t in body], mask_id if mask_id is not None else -1)
            for _ in range(samples)]
    guide = _guidance_positions(config, offset, class_ids, user_ids, mask_id)
    copies = 1 if guide is None else 2
    kv = BlockCache(lm, samples * copies) if config.cache != "none" and cache_supported(lm) else None
    cached: list[tuple[tuple[int, ...], torch.Tensor] | None] = [None] * samples  # (open positions, logits)
    for block, n_steps in zip(blocks, block_steps, strict=True):
        counts = schedule_counts(len(block), n_steps, config.schedule) if schedule else None
        step = [0] * samples
        since_refresh: list[int | None] = [None] * samples  # passes since the cache was filled (None: fill it now)
        queries = [p + offset for p in block] if config.cache == "dual" else \
            list(range(block[0] + offset, ids.shape[1]))  # prefix cache: the block and all after it run
        while True:
            open_ = {r: [p for p in block if recs[r].masked[p]] for r in range(samples)}
            active = [r for r in range(samples) if open_[r] and not (counts is not None and step[r] >= len(counts))]
            if not active:
                break
            reused = {r for r in active if config.reuse and cached[r] is not None and cached[r][0] == tuple(open_[r])}
            full = [r for r in active if r not in reused and (kv is None or since_refresh[r] is None or (
                config.cache_refresh and since_refresh[r] >= config.cache_refresh))]
            partial = [r for r in active if r not in reused and r not in full]
            for rows, is_partial in ((full, False), (partial, True)):
                if rows:
                    for r, logits in zip(rows, _batch_logits(lm, kv, ids, rows, open_, offset, guide, config,
                                                             queries if is_partial else None, samples), strict=True):
                        cached[r] = (tuple(open_[r]), logits)
                        recs[r].passes += copies
                        recs[r].processed += copies * (len(queries) if is_partial else ids.shape[1])
                        if kv is not None:
                            since_refresh[r] = 1 if not is_partial else since_refresh[r] + 1
            for r in active:
                logits = cached[r][1]
                scores = score_positions(logits, config, banned, entropy=config.strategy == "entropy-bound")
                if counts is not None:
                    count = counts[step[r]]
                elif config.strategy in ("confidence", "entropy-bound") and config.steps:  # the pace of the budget
                    count = math.ceil(len(open_[r]) / max(1, n_steps - step[r]))
                else:
                    count = 1
                chosen = _choose(config, scores, count, generators[r], open_[r], beyond_pace=not one_per_pass)
                step[r] += 1
                tokens, probs = sample_rows(scores, chosen, config, generators[r])
                rec = recs[r]
                for j, token, prob in zip(chosen, tokens.tolist(), probs.tolist(), strict=True):
                    rec.commit(open_[r][j], token, float(scores.confidence[j]), prob)
                    ids[r, open_[r][j] + offset] = token
                ended = [open_[r][j] for j, token in zip(chosen, tokens.tolist(), strict=True) if token in ends]
                if ended:  # the text ends here: what follows is end-of-text too, and is not decoded
                    end_token = rec.ids[min(ended)]
                    for q in todo:
                        if q > min(ended) and rec.masked[q]:
                            rec.close(q, end_token)
                            ids[r, q + offset] = end_token
                rec.frame([open_[r][j] for j in chosen], r in reused, r in partial)
    n_prompt = len(class_ids) + len(user_ids)
    traces = []
    for rec, seed in zip(recs, seeds, strict=True):
        trace = _new_trace(lm, config, prompt, label, seed, rec, len(class_ids), n_prompt, decoded, length, ends)
        if config.cache != "none" and kv is None:
            trace.settings["cache_fallback"] = (f"{type(lm.model).__name__} cannot take a block KV cache here; "
                                                "every pass ran the whole sequence")
        traces.append(trace)
    return traces


def _batch_logits(lm: LoadedModel, kv: BlockCache | None, ids: torch.Tensor, rows: list[int],
                  open_: dict[int, list[int]], offset: int, guide: list[int] | None, config: DecodeConfig,
                  queries: list[int] | None, samples: int) -> list[torch.Tensor]:
    """One forward pass over ``rows`` of ``ids``: the logits at each row's open positions, one tensor per row.
    ``queries`` None: the whole sequence (filling the cache when there is one); else a cached partial pass."""
    sub = ids[rows]
    where = torch.zeros_like(sub, dtype=torch.bool)
    for i, r in enumerate(rows):
        where[i, [p + offset for p in open_[r]]] = True
    cache_rows = rows + ([r + samples for r in rows] if guide is not None else [])
    mask_id = lm.tokenizer.mask_token_id
    if kv is None:
        logits = guided_logits(lm, sub, torch.ones_like(sub), where, guide, config.cfg_scale)
    elif queries is None:
        logits = _guided(lambda i, w: kv.full(i, w, cache_rows), sub, where, guide, config.cfg_scale, mask_id)
    else:
        logits = _guided(lambda i, w: kv.partial(i, queries, w, cache_rows), sub, where, guide, config.cfg_scale,
                         mask_id)
    return list(logits.split([len(open_[r]) for r in rows]))


def _guided(logits_fn, ids: torch.Tensor, where: torch.Tensor, guide: list[int] | None, scale: float,
            mask_id: int) -> torch.Tensor:
    """``guided_logits`` for any ``logits_fn(ids, where)`` (e.g. a KV-cached pass): both copies in one batch."""
    if guide is None:
        return logits_fn(ids, where)
    uncond = ids.clone()
    uncond[:, guide] = mask_id
    cond, free = logits_fn(torch.cat([ids, uncond]), where.repeat(2, 1)).float().chunk(2)
    return free + scale * (cond - free)


def _guidance_positions(config: DecodeConfig, offset: int, class_ids: list[int], user_ids: list[int],
                        mask_id: int) -> list[int] | None:
    """Sequence positions that the unconditional copy masks (None: no guidance): the class prompt, else the prompt."""
    if config.cfg_scale == 1:
        return None
    if class_ids:
        return list(range(offset, offset + len(class_ids)))
    start = offset + len(class_ids)
    positions = [start + i for i, t in enumerate(user_ids) if t != mask_id]
    if not positions:
        raise TextdiffError("classifier-free guidance needs a condition to guide by: a class label or a prompt")
    return positions


def guided_logits(lm: LoadedModel, ids: torch.Tensor, attention: torch.Tensor, where: torch.Tensor,
                  guide: list[int] | None, scale: float) -> torch.Tensor:
    """Logits at ``where`` ([N, vocab]); with ``guide``, uncond + scale * (cond - uncond), the unconditional copy
    having the ``guide`` positions masked."""
    def full_pass(batch: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return denoise_logits(lm, batch, attention.repeat(batch.shape[0] // ids.shape[0], 1), positions)

    return _guided(full_pass, ids, where, guide, scale, lm.tokenizer.mask_token_id)


def _choose(config: DecodeConfig, draw: Scores | Draw, count: int, generator: torch.Generator,
            positions: list[int], beyond_pace: bool = True) -> list[int]:
    """Indices (into the open positions) to commit this step. ``beyond_pace`` False: the confidence strategy commits
    exactly ``count``, none more for clearing the threshold."""
    n = draw.confidence.shape[0]
    if config.strategy == "schedule-random":
        return sorted(torch.randperm(n, generator=generator, device=draw.confidence.device)[:count].tolist())
    if config.strategy == "entropy-bound":
        order = draw.entropy.argsort().tolist()  # the most certain first
        total = draw.entropy[order].cumsum(0)
        within = max(1, int((total <= config.entropy_bound).sum()))
        return sorted(order[: min(within, count) if config.steps else within])
    if config.strategy == "confidence":
        scores = [confidence_score(float(c), config.confidence) for c in draw.confidence]
        sure = [j for j, s in enumerate(scores) if s >= config.threshold] if beyond_pace else []
        if len(sure) >= count:
            return sure
        return _spread(sorted(range(n), key=scores.__getitem__, reverse=True), count, positions, config.spacing, sure)
    count = min(config.k, n) if config.strategy == "topk" else count
    if not count:
        return []
    order = draw.confidence.argsort(descending=True).tolist()
    if config.strategy == "topk":
        return _spread(order, count, positions, config.spacing, [])
    return sorted(order[:count])


def _spread(order: list[int], count: int, positions: list[int], spacing: int, chosen: list[int]) -> list[int]:
    """Add to ``chosen`` the first of ``order`` (most confident first) that lie at least ``spacing`` positions from
    every one chosen so far, until ``count``; then the next most confident regardless. Neighbours depend on each
    other most, so committing far-apart positions in one pass keeps parallel decoding closer to sequential."""
    chosen = list(chosen)
    for relax in (False, True):
        for j in order:
            if len(chosen) >= count:
                return sorted(chosen)
            if j in chosen:
                continue
            if relax or all(abs(positions[j] - positions[c]) >= spacing for c in chosen):
                chosen.append(j)
    return sorted(chosen)


@torch.no_grad()
def ar_decode(
    lm: LoadedModel, prompt: str = "", length: int = 32, config: DecodeConfig | None = None, label: str | None = None
) -> Trace:
    """Generate ``length`` tokens after ``prompt``, one per forward pass, with a causal model.

    ``config.use_cache`` keeps the attention keys and values of the prefix (each pass runs one new token); without it
    each pass reruns the whole sequence. The trace has one frame per generated token; positions not generated yet are
    reported as masked.
    """
    return ar_decode_batch(lm, prompt, length, config, label, 1)[0]


@torch.no_grad()
def ar_decode_batch(
    lm: LoadedModel, prompt: str = "", length: int = 32, config: DecodeConfig | None = None, label: str | None = None,
    samples: int = 1,
) -> list[Trace]:
    """``ar_decode`` for ``samples`` sequences in one batch (one KV cache), sample i seeded by the seed + i."""
    config = replace(config or DecodeConfig(), strategy="ar")
    if lm.kind == MASKED:
        raise TextdiffError(f"{lm.name!r} is a diffusion model; strategy 'ar' needs a left-to-right one "
                            "(e.g. minilm-ar, smollm2, gpt2)")
    if samples < 1:
        raise TextdiffError(f"the number of samples must be at least 1, got {samples}")
    class_ids, user_ids, head = _prepare(lm, prompt, length, label, config)
    if length < 1:
        raise TextdiffError("left-to-right decoding needs a length of at least 1")
    mask_id = lm.tokenizer.mask_token_id
    if mask_id is not None and mask_id in user_ids:
        raise TextdiffError(f"infilling ({lm.tokenizer.mask_token} in the text) needs a diffusion model")
    prefix = head + class_ids + user_ids
    if not prefix:
        raise TextdiffError("left-to-right decoding needs a prompt or a start token")
    _check_window(lm, len(prefix) + length)
    first_seed = _generator(config, lm.device)[1]
    seeds = [first_seed + r for r in range(samples)]
    generators = [torch.Generator(device=lm.device).manual_seed(seed) for seed in seeds]
    ends = end_ids(lm, config)
    banned = _banned(lm, ends)
    n_prompt = len(class_ids) + len(user_ids)
    body = class_ids + user_ids + [-1] * length
    recs = [_Recorder(lm, body, [i >= n_prompt for i in range(len(body))], mask_id if mask_id is not None else -1)
            for _ in range(samples)]
    ids = torch.tensor([prefix] * samples, device=lm.device)
    logits, past = _next_logits(lm, ids, None, config.use_cache)
    for rec in recs:
        rec.passes, rec.processed = 1, ids.shape[1]
    live = list(range(samples))
    for i in range(length):
        tokens = torch.empty(samples, dtype=torch.long, device=lm.device)
        tokens[:] = ids[:, -1]  # rows that ended keep feeding their last token; nothing of theirs is recorded
        for r in live:
            draw = draw_tokens(logits[r : r + 1], config, generators[r], banned)
            tokens[r] = draw.tokens[0]
            recs[r].commit(n_prompt + i, int(draw.tokens[0]), float(draw.confidence[0]), float(draw.prob[0]))
            recs[r].frame([n_prompt + i], reused=False)
        live = [r for r in live if int(tokens[r]) not in ends]
        if i == length - 1 or not live:
            break
        ids = torch.cat([ids, tokens[:, None]], dim=1)
        step_ids = tokens[:, None] if config.use_cache else ids
        logits, past = _next_logits(lm, step_ids, past, config.use_cache)
        for r in live:
            recs[r].passes += 1
            recs[r].processed += step_ids.shape[1]
    decoded = [i >= n_prompt for i in range(len(body))]
    return [_new_trace(lm, config, prompt, label, seed, rec, len(class_ids), n_prompt, decoded, length, ends)
            for rec, seed in zip(recs, seeds, strict=True)]


def _next_logits(lm: LoadedModel, ids: torch.Tensor, past, use_cache: bool) -> tuple[torch.Tensor, object]:
    """Logits [1, vocab] of the token after ``ids`` (only the last position goes through the vocab projection)."""
    name = _cache_argument(type(lm.model))
    out = lm.model(input_ids=ids, use_cache=use_cache, logits_to_keep=1, **{name: past})
    return out.logits[:, -1], (getattr(out, name) if use_cache else None)


@functools.cache
def _cache_argument(model_class: type) -> str:
    """``cache`` in newer transformers 5 releases (which deprecate ``past_key_values``), else ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def generate(
    lm: LoadedModel,
    prompt: str = "",
    length: int = 32,
    config: DecodeConfig | None = None,
    label: str | None = None,
    **settings: object,
) -> Trace:
    """Decode with ``config`` (or a default one) updated by ``settings``: strategy 'ar' runs ``ar_decode``, the
    others ``diffusion_decode``. Example: ``generate(lm, "The movie was", 16, strategy="topk", k=2)``."""
    config = replace(config or DecodeConfig(), **settings)
    config.validate()
    decode = ar_decode if config.strategy == "ar" else diffusion_decode
    return decode(lm, prompt, length, config, label)


def generate_samples(
    lm: LoadedModel,
    prompt: str = "",
    length: int = 32,
    config: DecodeConfig | None = None,
    label: str | None = None,
    samples: int = 1,
    **settings: object,
) -> list[Trace]:
    """``generate`` for ``samples`` sequences decoded as one batch (seeds seed, seed + 1, ...): the path a GPU
    makes fast. Each trace is what ``generate`` gives for its seed alone, up to floating-point batching."""
    config = replace(config or DecodeConfig(), **settings)
    config.validate()
    decode = ar_decode_batch if config.strategy == "ar" else diffusion_decode_batch
    return decode(lm, prompt, length, config, label, samples)


@torch.no_grad()
def fill_mask(lm: LoadedModel, text: str, prefix: str | None = None, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (token, probability) for each [MASK] in ``text``, given an optional never-masked ``prefix``.

    ``text`` writes masks as the tokenizer's mask token (``[MASK]`` for BERT, ``<mask>`` for RoBERTa).
    """
    if lm.kind != MASKED:
        raise TextdiffError(f"{lm.name!r} is a left-to-right model; fill-mask needs a diffusion model")
    if not text.strip():
        raise TextdiffError("the text is empty")
    if top_k < 1:
        raise TextdiffError(f"top-k must be at least 1, got {top_k}")
    mask_id = lm.tokenizer.mask_token_id
    batch = encode(lm.tokenizer, [text], [prefix] if prefix else None, max_length=512).to(lm.device)
    positions = batch.input_ids == mask_id
    if not positions.any():
        raise TextdiffError(f"no {lm.tokenizer.mask_token} in the text")
    probs = denoise_logits(lm, batch.input_ids, batch.attention_mask, positions).float().softmax(-1)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        [(lm.tokenizer.convert_ids_to_tokens(int(i)), float(p)) for p, i in zip(ps, ids, strict=True)]
        for ps, ids in zip(top.values, top.indices, strict=True)
    ]
