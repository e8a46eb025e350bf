"""Decoding: diffusion decoding from masked models, left-to-right decoding from causal models, and fill-mask.

Both decoders return a ``Trace`` (see ``trace``) and share one sampling function (``sample_rows``), so the only
difference between them is the order in which positions are committed.

Diffusion (``diffusion_decode``): the sequence is  [CLS] class-prompt user-text [MASK]*length [SEP];  the class
prompt and the user's text are never masked, and ``[MASK]`` written inside the user's text is filled too
(infilling). Each step runs the model once on the whole sequence (logits only at the masked positions of the current
block) and commits some masked positions: how many and which is the strategy's (``textdiff_core.strategies``, one
module each: confidence, topk, schedule-random, schedule-confidence, entropy-bound). ``block_size`` decodes the
masked positions in blocks of that many, left to right (semi-autoregressive); a strategy's steps are then shared
out over the blocks. Our models take no time input, so when a step commits nothing the next step's prediction would
be identical: it is reused instead of recomputed (MDLM's cache trick; ``reuse=False`` recomputes it, for
comparison). With blocks, ``cache="prefix"`` or ``"dual"`` runs the passes inside a block against the keys and
values kept from the pass that opened it (``kv_cache``). ``diffusion_decode_batch`` and ``ar_decode_batch`` decode
several seeds as one batch.

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
import secrets
import time
from dataclasses import asdict, dataclass, replace

import torch

from textdiff_core.denoisers import denoise_logits
from textdiff_core.errors import TextdiffError
from textdiff_core.kv_cache import BlockCache
from textdiff_core.kv_cache import supports as cache_supported
from textdiff_core.models import LoadedModel
from textdiff_core.settings import CAUSAL, CLASSIFIER, MASKED
from textdiff_core.strategies.base import (
    SCHEDULES,
    DecodeConfig,
    Draw,
    Scores,
    Strategy,
    strategies,
    strategy_named,
    strategy_names,
)
from textdiff_core.tokens import decode_text, encode, special_ids, token_style, tokenize_texts
from textdiff_core.trace import CONFIDENCE_MEASURES, Frame, Trace

DEFAULT_STRATEGY = {MASKED: "confidence", CAUSAL: "ar"}  # the strategy each kind of model decodes with by default
_VIEWS = {  # names read from here by code that predates the registry: live views of it
    "STRATEGIES": lambda: strategy_names(),
    "DIFFUSION_STRATEGIES": lambda: strategy_names(MASKED),
    "STRATEGY_NAMES": lambda: {s.name: (s.title, s.description) for s in strategies()},  # name -> (title, what)
    "SCHEDULES": lambda: SCHEDULES,
}


def __getattr__(name: str) -> object:
    """``STRATEGIES``, ``DIFFUSION_STRATEGIES``, ``STRATEGY_NAMES`` and ``SCHEDULES``, as the registry has them now
    (``textdiff_core.strategies.base``): a strategy registered after this module was imported is in them too."""
    if name in _VIEWS:
        return _VIEWS[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_config(kind: str, strategy: str | None = None, length: int | None = None) -> DecodeConfig:
    """The settings a user meets when they give none (the CLI, Denoise and Compare all start here), for a
    ``kind`` of model (MASKED or CAUSAL) and ``length`` new tokens, optionally with a hand-picked ``strategy``
    (a causal model always decodes left to right).

    Each strategy holds its defaults (``Strategy.default_settings``). Sampling (temperature 1, nucleus 0.9) for both
    kinds: greedy decoding loops. Diffusion: confidence decoding at 0.9 within a quarter of the length in forward
    passes (``default_pass_budget``), positions at least 3 apart, in semi-autoregressive blocks of 32 with the dual KV
    cache. A hand-picked diffusion strategy keeps the sampling, blocks and cache. Chosen on held-out seeds
    (``bench/decoding_defaults.py``; docs/experiments.md has the figures: at 4 tokens per pass the entropy-bounded
    strategy wrote text 2-3x less likely under an independent reference).
    """
    name = strategy if kind == MASKED and strategy else DEFAULT_STRATEGY[MASKED if kind == MASKED else CAUSAL]
    return DecodeConfig(**strategy_named(name).default_settings(length))


def default_pass_budget(length: int, block_size: int | None = None) -> int | None:
    """The pass budget the default strategy gives ``length`` new tokens in blocks of ``block_size``: a quarter of
    them, at least one pass per block (None: no new tokens, no budget; ``Strategy.default_steps``)."""
    return strategy_named(DEFAULT_STRATEGY[MASKED]).default_steps(length, block_size)


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

    ``label`` puts that class's prompt first (class-conditional checkpoints). See the module docstring and the
    strategies (``textdiff_core.strategies``); the trace has one frame per step.
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
    refuse_classifier(lm)
    strategy = _diffusion_strategy(lm, config)
    if samples < 1:
        raise TextdiffError(f"the number of samples must be at least 1, got {samples}")
    layout = _Layout.of(lm, prompt, length, label, config)
    n_positions, n_blocks = len(layout.todo), len(layout.blocks)
    strategy.check(config, n_positions, n_blocks)
    batch = _DiffusionBatch(lm, config, strategy, layout, samples)
    block_steps = _split(strategy.steps(config, n_positions) or n_positions, n_blocks)
    for block, n_steps in zip(layout.blocks, block_steps, strict=True):
        batch.decode_block(block, n_steps)
    return batch.traces(prompt, label, length)


def _diffusion_strategy(lm: LoadedModel, config: DecodeConfig) -> Strategy:
    """The config's strategy, once it is a diffusion strategy and the model a masked one."""
    if config.strategy not in strategy_names(MASKED):
        raise TextdiffError(f"diffusion decoding needs a diffusion strategy ({', '.join(strategy_names(MASKED))}), "
                            f"got {config.strategy!r}")
    if lm.kind != MASKED:
        raise TextdiffError(f"{lm.name!r} is a left-to-right model; strategy {config.strategy!r} needs a diffusion "
                            "model (use strategy 'ar' for this one)")
    return strategy_named(config.strategy)


@dataclass
class _Layout:
    """A diffusion run's sequence, [head] class prompt, user text and masks [tail], and what is decoded in it: the
    masked positions of ``body`` (``todo``), in left-to-right ``blocks``."""

    class_ids: list[int]
    user_ids: list[int]
    head: list[int]  # [start], before the body
    body: list[int]  # class prompt, user text, masks: the positions a trace shows
    tail: list[int]  # [end], after the body
    decoded: list[bool]  # per body position: decoded by the model (a mask of the user's text or a new one)
    todo: list[int]  # the decoded positions
    blocks: list[list[int]]  # ``todo`` in blocks of ``config.block_size`` (one block without)

    @classmethod
    def of(cls, lm: LoadedModel, prompt: str, length: int, label: str | None, config: DecodeConfig) -> _Layout:
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
        size = config.block_size or len(todo)
        blocks = [todo[i : i + size] for i in range(0, len(todo), size)]
        return cls(class_ids, user_ids, head, body, tail, decoded, todo, blocks)


class _DiffusionBatch:
    """The state of ``samples`` sequences decoded together: their ids, recorders, generators, last predictions and
    the block KV cache; ``decode_block`` decodes one block of all of them."""

    def __init__(self, lm: LoadedModel, config: DecodeConfig, strategy: Strategy, layout: _Layout,
                 samples: int) -> None:
        self.lm, self.config, self.strategy, self.layout, self.samples = lm, config, strategy, layout, samples
        first_seed = _generator(config, lm.device)[1]
        self.seeds = [first_seed + r for r in range(samples)]
        self.generators = [torch.Generator(device=lm.device).manual_seed(seed) for seed in self.seeds]
        self.ends = end_ids(lm, config)
        self.banned = _banned(lm, self.ends)
        self.offset = len(layout.head)
        self.ids = torch.tensor([layout.head + layout.body + layout.tail] * samples, device=lm.device)
        mask_id = lm.tokenizer.mask_token_id
        self.recs = [_Recorder(lm, layout.body, [t == mask_id for t in layout.body],
                               mask_id if mask_id is not None else -1) for _ in range(samples)]
        self.guide = _guidance_positions(config, self.offset, layout.class_ids, layout.user_ids, mask_id)
        self.copies = 1 if self.guide is None else 2
        self.kv = BlockCache(lm, samples * self.copies) if config.cache != "none" and cache_supported(lm) else None
        self.cached: list[tuple[tuple[int, ...], torch.Tensor] | None] = [None] * samples  # (open positions, logits)
        self.beyond_pace = strategy.beyond_pace(config, len(layout.todo))

    def decode_block(self, block: list[int], n_steps: int) -> None:
        """Step until every sample has committed the whole block, or the strategy has no step left for it."""
        step = [0] * self.samples
        since_refresh: list[int | None] = [None] * self.samples  # passes since the cache was filled (None: fill it)
        queries = [p + self.offset for p in block] if self.config.cache == "dual" else \
            list(range(block[0] + self.offset, self.ids.shape[1]))  # prefix cache: the block and all after it run
        while True:
            open_ = {r: [p for p in block if self.recs[r].masked[p]] for r in range(self.samples)}
            counts = {r: self.strategy.count(self.config, step=step[r], steps=n_steps, size=len(block),
                                             left=len(open_[r])) for r in range(self.samples) if open_[r]}
            active = [r for r, count in counts.items() if count is not None]
            if not active:
                break
            reused, partial = self._predict(active, open_, queries, since_refresh)
            for r in active:
                step[r] += 1
                self._commit(r, open_[r], counts[r], r in reused, r in partial)

    def _predict(self, active: list[int], open_: dict[int, list[int]], queries: list[int],
                 since_refresh: list[int | None]) -> tuple[set[int], list[int]]:
        """Make sure each active sample has a prediction at its open positions: reused when nothing changed, else
        from a full pass (filling the cache) or a cached partial one. Returns (reused, partial) samples."""
        config, kv = self.config, self.kv
        reused = {r for r in active if config.reuse and self.cached[r] is not None
                  and self.cached[r][0] == tuple(open_[r])}
        full = [r for r in active if r not in reused and (kv is None or since_refresh[r] is None or (
            config.cache_refresh and since_refresh[r] >= config.cache_refresh))]
        partial = [r for r in active if r not in reused and r not in full]
        for rows, is_partial in ((full, False), (partial, True)):
            if not rows:
                continue
            logits = _batch_logits(self.lm, kv, self.ids, rows, open_, self.offset, self.guide, config,
                                   queries if is_partial else None, self.samples)
            for r, row_logits in zip(rows, logits, strict=True):
                self.cached[r] = (tuple(open_[r]), row_logits)
                self.recs[r].passes += self.copies
                self.recs[r].processed += self.copies * (len(queries) if is_partial else self.ids.shape[1])
                if kv is not None:
                    since_refresh[r] = 1 if not is_partial else since_refresh[r] + 1
        return reused, partial

    def _commit(self, r: int, positions: list[int], count: int, reused: bool, cached: bool) -> None:
        """Sample ``r``'s step: the strategy chooses among its open ``positions``, tokens are drawn there; where one
        is end-of-text, the text ends (what follows is end-of-text too, and is not decoded)."""
        config, rec = self.config, self.recs[r]
        scores = score_positions(self.cached[r][1], config, self.banned, entropy=self.strategy.uses_entropy)
        chosen = self.strategy.choose(config, scores, count, self.generators[r], positions, self.beyond_pace)
        tokens, probs = sample_rows(scores, chosen, config, self.generators[r])
        for j, token, prob in zip(chosen, tokens.tolist(), probs.tolist(), strict=True):
            rec.commit(positions[j], token, float(scores.confidence[j]), prob)
            self.ids[r, positions[j] + self.offset] = token
        ended = [positions[j] for j, token in zip(chosen, tokens.tolist(), strict=True) if token in self.ends]
        if ended:
            end_token = rec.ids[min(ended)]
            for q in self.layout.todo:
                if q > min(ended) and rec.masked[q]:
                    rec.close(q, end_token)
                    self.ids[r, q + self.offset] = end_token
        rec.frame([positions[j] for j in chosen], reused, cached)

    def traces(self, prompt: str, label: str | None, length: int) -> list[Trace]:
        """One trace per sample, as decoded so far."""
        layout, config = self.layout, self.config
        n_prompt = len(layout.class_ids) + len(layout.user_ids)
        traces = []
        for rec, seed in zip(self.recs, self.seeds, strict=True):
            trace = _new_trace(self.lm, config, prompt, label, seed, rec, len(layout.class_ids), n_prompt,
                               layout.decoded, length, self.ends)
            if config.cache != "none" and self.kv is None:
                trace.settings["cache_fallback"] = (f"{type(self.lm.model).__name__} cannot take a block KV cache "
                                                    "here; every pass ran the whole sequence")
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


def _choose(config: DecodeConfig, scores: Scores | Draw, count: int, generator: torch.Generator | None,
            positions: list[int], beyond_pace: bool = True) -> list[int]:
    """Indices (into the open positions) to commit this step, as the config's strategy chooses them
    (``Strategy.choose``; the decoder asks its strategy directly). ``beyond_pace`` False: exactly ``count``."""
    return strategy_named(config.strategy).choose(config, scores, count, generator, positions, beyond_pace)


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


def refuse_classifier(lm: LoadedModel) -> None:
    """A one-line error for a model with a classification head: it reads text, it cannot write any."""
    if lm.kind == CLASSIFIER:
        raise TextdiffError(f"{lm.name!r} is a discriminative classifier (a classification head on the encoder): it "
                            "classifies text but cannot write or fill any; give a diffusion or left-to-right model")


@torch.no_grad()
def ar_decode_batch(
    lm: LoadedModel, prompt: str = "", length: int = 32, config: DecodeConfig | None = None, label: str | None = None,
    samples: int = 1,
) -> list[Trace]:
    """``ar_decode`` for ``samples`` sequences in one batch (one KV cache), sample i seeded by the seed + i."""
    config = replace(config or DecodeConfig(), strategy="ar")
    refuse_classifier(lm)
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
    """Decode with ``config`` (or a default one) updated by ``settings``: a left-to-right strategy (ar) runs
    ``ar_decode``, the others ``diffusion_decode``. Example: ``generate(lm, "The movie was", 16, strategy="topk",
    k=2)``."""
    config = replace(config or DecodeConfig(), **settings)
    config.validate()
    decode = ar_decode if strategy_named(config.strategy).kind == CAUSAL else diffusion_decode
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
    decode = ar_decode_batch if strategy_named(config.strategy).kind == CAUSAL else diffusion_decode_batch
    return decode(lm, prompt, length, config, label, samples)


@torch.no_grad()
def fill_mask(lm: LoadedModel, text: str, prefix: str | None = None, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (token, probability) for each [MASK] in ``text``, given an optional never-masked ``prefix``.

    ``text`` writes masks as the tokenizer's mask token (``[MASK]`` for BERT, ``<mask>`` for RoBERTa).
    """
    refuse_classifier(lm)
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
