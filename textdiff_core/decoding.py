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
Schedules (fraction of a block's positions committed after step s of S): linear s/S; cosine 1 - cos(pi/2 s/S)
(few early, many late, as MaskGIT); exp (1 - e^(-5 s/S)) / (1 - e^(-5)) (many early, few late).
``spacing`` > 1 makes the parallel strategies (topk, and confidence beyond its threshold) prefer positions at least
that far apart within a pass: neighbours depend on each other most. ``block_size`` decodes the masked positions in
blocks of that many, left to right (semi-autoregressive); schedule steps are then shared out over the blocks. Our
models take no time input, so when a step commits nothing the next step's prediction would be identical: it is
reused instead of recomputed (MDLM's cache trick; ``reuse=False`` recomputes it, for comparison).

Classifier-free guidance (``cfg_scale`` s, diffusion): each pass also runs an unconditional copy of the sequence, the
conditioning written as [MASK] (LLaDA's way: the class prompt when a label is given, else the user's prompt tokens),
and uses logits = uncond + s * (cond - uncond): s = 1 is plain conditional decoding (no second copy), 0 ignores the
condition, s > 1 follows it more strongly. The two copies run as one batch; each counts as a forward pass.

Left-to-right (``ar_decode``): [start] class-prompt user-text, then one token per forward pass, with a KV cache
(``use_cache=True``: each pass runs only the new token) or without (each pass reruns the whole prefix).

Both decoders write exactly ``length`` new tokens and never write special tokens ([MASK], [SEP], EOS, ...): a
like-for-like comparison, with no early stop.

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
from textdiff_core.models import MASKED, LoadedModel
from textdiff_core.tokens import encode, special_ids, tokenize_texts
from textdiff_core.trace import CONFIDENCE_MEASURES, Frame, Trace, confidence_score

DIFFUSION_STRATEGIES = ("confidence", "topk", "schedule-random", "schedule-confidence")
STRATEGIES = (*DIFFUSION_STRATEGIES, "ar")
# One name per strategy wherever it is shown (Denoise, Compare), and what it does
STRATEGY_NAMES = {
    "confidence": ("confidence ≥ threshold", "every position at least this sure (at least one per step)"),
    "topk": ("top-k per step", "the k most confident positions"),
    "schedule-confidence": ("schedule, most confident first", "a schedule's count per step, the most confident "
                                                              "ones (LLaDA's low-confidence remasking)"),
    "schedule-random": ("schedule, random positions", "a schedule's count per step, at random (the RoBERTa "
                                                      "recipe's way)"),
    "ar": ("left to right", "one token per pass, in order"),
}
SCHEDULES = ("linear", "cosine", "exp")
EXP_RATE = 5.0  # steepness of the "exp" schedule
# The defaults of the CLI, Denoise and Compare: confidence decoding at threshold 0.9 within a quarter of the new
# tokens in forward passes, committing positions at least 3 apart (chosen on held-out seeds; docs/experiments.md).
# A weak model is rarely 90% sure, so a threshold alone commits one token per pass; the budget makes it parallel.
DEFAULT_PASS_FRACTION = 0.25  # confidence strategy: at most ceil(length * this) forward passes by default
DEFAULT_SPACING = 3  # confidence (beyond the threshold) and topk: prefer positions this far apart in a pass


def default_pass_budget(length: int) -> int | None:
    """The default pass budget of confidence decoding for ``length`` new tokens (None: no new tokens, no budget)."""
    return math.ceil(length * DEFAULT_PASS_FRACTION) if length > 0 else None


@dataclass
class DecodeConfig:
    """Every decoding setting; recorded in the trace. Settings a strategy does not use are ignored by it."""

    strategy: str = "confidence"  # one of STRATEGIES
    steps: int | None = None  # schedule strategies: total steps (default: one per masked position); confidence:
    # at most this many forward passes (commits beyond the threshold when needed to keep pace)
    schedule: str = "linear"  # schedule strategies: linear, cosine or exp
    threshold: float = 0.9  # confidence strategy: commit positions whose confidence score is >= this, in (0, 1]
    k: int = 4  # topk strategy: positions committed per step
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
        if not (self.cfg_scale >= 0 and math.isfinite(self.cfg_scale)):
            raise TextdiffError(f"guidance scale must be >= 0 (1 is off), got {self.cfg_scale}")


@dataclass
class Draw:
    """Tokens drawn at N positions, with the model's probability of each and each position's confidence."""

    tokens: torch.Tensor  # [N] long
    prob: torch.Tensor  # [N] probability of the drawn token under the model
    confidence: torch.Tensor  # [N] in the configured measure (see trace.confidence_score for its [0, 1] score)


def draw_tokens(
    logits: torch.Tensor,
    config: DecodeConfig,
    generator: torch.Generator | None = None,
    banned: torch.Tensor | None = None,
) -> Draw:
    """One token per row of ``logits`` [N, vocab]: greedy, or sampled with temperature / top-k / top-p.

    ``banned`` token ids (special tokens) get probability 0 everywhere, also in the confidence measures.
    The one sampling function of both decoders.
    """
    logits = logits.float()
    if banned is not None:
        banned = banned[banned < logits.shape[-1]].to(logits.device)
        logits = logits.index_fill(-1, banned, float("-inf"))
    probs = logits.softmax(-1)
    if config.temperature == 0:
        tokens = probs.argmax(-1)
    else:
        scaled = logits / config.temperature
        if config.top_k is not None and config.top_k < scaled.shape[-1]:
            kth = scaled.topk(config.top_k, dim=-1).values[:, -1:]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        if config.top_p is not None and config.top_p < 1:
            ordered, order = scaled.sort(-1, descending=True)
            p = ordered.softmax(-1)
            outside = p.cumsum(-1) - p >= config.top_p  # mass before this token already reaches p
            outside[:, 0] = False
            scaled = scaled.scatter(-1, order, ordered.masked_fill(outside, float("-inf")))
        tokens = torch.multinomial(scaled.softmax(-1), 1, generator=generator).squeeze(-1)
    prob = probs.gather(-1, tokens[:, None]).squeeze(-1)
    return Draw(tokens, prob, measure_confidence(probs, config.confidence))


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


def _token_style(tokenizer) -> str:
    """'raw' when single tokens carry their own leading spaces (byte-level BPE), else 'wordpiece'."""
    ids = tokenize_texts(tokenizer, ["a b"])[0]
    return "raw" if ids and tokenizer.decode(ids[-1:]).startswith(" ") else "wordpiece"


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

    def frame(self, committed: list[int], reused: bool) -> None:
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


def _banned(lm: LoadedModel) -> torch.Tensor:
    """Special-token ids: never generated by either decoder."""
    ids = sorted({i for i in lm.tokenizer.all_special_ids if i is not None})
    return torch.tensor(ids, dtype=torch.long, device=lm.device)


def _new_trace(lm: LoadedModel, config: DecodeConfig, prompt: str, label: str | None, seed: int, rec: _Recorder,
               n_class: int, n_prompt: int, decoded: list[bool], length: int) -> Trace:
    text_ids = rec.ids[n_class:]
    appended = rec.ids[n_prompt:] if length else text_ids
    return Trace(
        strategy=config.strategy, settings=asdict(config) | {"seed": seed, "length": length}, model=lm.name,
        prompt=prompt, label=label, seed=seed, n_class_tokens=n_class, n_prompt_tokens=n_prompt, decoded=decoded,
        mask_id=rec.mask_id, mask_text=rec.mask_text, token_style=_token_style(lm.tokenizer),
        final_text=lm.tokenizer.decode(text_ids).strip(), generated_text=lm.tokenizer.decode(appended).strip(),
        frames=rec.frames,
    )


@torch.no_grad()
def diffusion_decode(
    lm: LoadedModel, prompt: str = "", length: int = 32, config: DecodeConfig | None = None, label: str | None = None
) -> Trace:
    """Fill ``length`` masked positions after ``prompt`` (and every mask token inside it) with a masked model.

    ``label`` puts that class's prompt first (class-conditional checkpoints). See the module docstring for the
    strategies; the trace has one frame per step.
    """
    config = config or DecodeConfig()
    if config.strategy not in DIFFUSION_STRATEGIES:
        raise TextdiffError(f"diffusion decoding needs a diffusion strategy ({', '.join(DIFFUSION_STRATEGIES)}), "
                            f"got {config.strategy!r}")
    if lm.kind != MASKED:
        raise TextdiffError(f"{lm.name!r} is a left-to-right model; strategy {config.strategy!r} needs a masked "
                            "(diffusion) model (use strategy 'ar' for this one)")
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
    if (schedule or config.strategy == "confidence" and config.steps) and steps < len(blocks):
        raise TextdiffError(f"{steps} steps cannot decode {len(blocks)} blocks; give at least one step per block")
    block_steps = _split(steps, len(blocks))

    generator, seed = _generator(config, lm.device)
    banned = _banned(lm)
    offset = len(head)
    ids = torch.tensor([head + body + tail], device=lm.device)
    attention = torch.ones_like(ids)
    rec = _Recorder(lm, body, [t == mask_id for t in body], mask_id if mask_id is not None else -1)
    cached: tuple[tuple[int, ...], torch.Tensor] | None = None  # (masked positions it was made for, logits)
    guide = _guidance_positions(config, offset, class_ids, user_ids, mask_id)
    copies = 1 if guide is None else 2
    for block, n_steps in zip(blocks, block_steps, strict=True):
        counts = schedule_counts(len(block), n_steps, config.schedule) if schedule else None
        step = 0
        while True:
            open_ = [p for p in block if rec.masked[p]]
            if not open_:
                break
            key = tuple(open_)  # nothing was committed since the cached prediction iff the open positions are the same
            reused = config.reuse and cached is not None and cached[0] == key
            if reused:
                logits = cached[1]
            else:
                where = torch.zeros_like(ids, dtype=torch.bool)
                where[0, [p + offset for p in open_]] = True
                logits = guided_logits(lm, ids, attention, where, guide, config.cfg_scale)
                rec.passes += copies
                rec.processed += copies * ids.shape[1]
                cached = (key, logits)
            draw = draw_tokens(logits, config, generator, banned)
            if counts is not None:
                count = counts[step]
            elif config.strategy == "confidence" and config.steps:  # a pass budget: keep pace to finish in time
                count = math.ceil(len(open_) / max(1, n_steps - step))
            else:
                count = 1
            chosen = _choose(config, draw, count, generator, open_)
            step += 1
            for j in chosen:
                rec.commit(open_[j], int(draw.tokens[j]), float(draw.confidence[j]), float(draw.prob[j]))
                ids[0, open_[j] + offset] = draw.tokens[j]
            rec.frame([open_[j] for j in chosen], reused)
            if counts is not None and step >= len(counts):  # the schedule commits everything by its last step
                break
    n_prompt = len(class_ids) + len(user_ids)
    return _new_trace(lm, config, prompt, label, seed, rec, len(class_ids), n_prompt, decoded, length)


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
    if guide is None:
        return denoise_logits(lm, ids, attention, where)
    uncond = ids.clone()
    uncond[:, guide] = lm.tokenizer.mask_token_id
    both = denoise_logits(lm, torch.cat([ids, uncond]), attention.repeat(2, 1), where.repeat(2, 1)).float()
    cond, free = both.chunk(2)
    return free + scale * (cond - free)


def _choose(config: DecodeConfig, draw: Draw, count: int, generator: torch.Generator, positions: list[int]
            ) -> list[int]:
    """Indices (into the open positions) to commit this step."""
    n = draw.tokens.shape[0]
    if config.strategy == "schedule-random":
        return sorted(torch.randperm(n, generator=generator, device=draw.tokens.device)[:count].tolist())
    if config.strategy == "confidence":
        scores = [confidence_score(float(c), config.confidence) for c in draw.confidence]
        sure = [j for j, s in enumerate(scores) if s >= config.threshold]
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
    config = replace(config or DecodeConfig(), strategy="ar")
    if lm.kind == MASKED:
        raise TextdiffError(f"{lm.name!r} is a masked (diffusion) model; strategy 'ar' needs a left-to-right one "
                            "(e.g. minilm-ar, smollm2, gpt2)")
    class_ids, user_ids, head = _prepare(lm, prompt, length, label, config)
    if length < 1:
        raise TextdiffError("left-to-right decoding needs a length of at least 1")
    mask_id = lm.tokenizer.mask_token_id
    if mask_id is not None and mask_id in user_ids:
        raise TextdiffError(f"infilling ({lm.tokenizer.mask_token} in the text) needs a masked (diffusion) model")
    prefix = head + class_ids + user_ids
    if not prefix:
        raise TextdiffError("left-to-right decoding needs a prompt or a start token")
    _check_window(lm, len(prefix) + length)
    generator, seed = _generator(config, lm.device)
    banned = _banned(lm)
    n_prompt = len(class_ids) + len(user_ids)
    body = class_ids + user_ids + [-1] * length
    rec = _Recorder(lm, body, [i >= n_prompt for i in range(len(body))], mask_id if mask_id is not None else -1)
    ids = torch.tensor([prefix], device=lm.device)
    logits, past = _next_logits(lm, ids, None, config.use_cache)
    rec.passes, rec.processed = 1, ids.shape[1]
    for i in range(length):
        draw = draw_tokens(logits, config, generator, banned)
        token = draw.tokens[:1]
        rec.commit(n_prompt + i, int(token), float(draw.confidence[0]), float(draw.prob[0]))
        rec.frame([n_prompt + i], reused=False)
        if i == length - 1:
            break
        ids = torch.cat([ids, token[None]], dim=1)
        step_ids = token[None] if config.use_cache else ids
        logits, past = _next_logits(lm, step_ids, past, config.use_cache)
        rec.passes += 1
        rec.processed += step_ids.shape[1]
    decoded = [i >= n_prompt for i in range(len(body))]
    return _new_trace(lm, config, prompt, label, seed, rec, len(class_ids), n_prompt, decoded, length)


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
    probs = denoise_logits(lm, batch.input_ids, batch.attention_mask, positions).float().softmax(-1)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        [(lm.tokenizer.convert_ids_to_tokens(int(i)), float(p)) for p, i in zip(ps, ids, strict=True)]
        for ps, ids in zip(top.values, top.indices, strict=True)
    ]
