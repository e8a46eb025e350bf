"""What every decoding strategy shares: the settings it reads from (``DecodeConfig``, each field's help in its
metadata), the model's scores it chooses from (``Scores``, ``Draw``), the interface it implements (``Strategy``)
and the registry that lists the strategies (``register``, ``strategies``, ``strategy_named``).

A strategy is one class, registered once: its name, how it is shown, the settings it reads and starts from, how
many positions each step commits and which ones. The decoders (``decoding``), the ``generate`` command and the
Denoise and Compare pages read everything they show or do per strategy from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch

from textdiff_core.errors import TextdiffError
from textdiff_core.kv_cache import CACHE_MODES
from textdiff_core.settings import CAUSAL, MASKED
from textdiff_core.trace import CONFIDENCE_MEASURES

SCHEDULES = ("linear", "cosine", "exp")  # the values of DecodeConfig.schedule (see schedules.schedule_counts)
DEFAULT_ENTROPY_BOUND = 32.0  # nats: the entropy-bound strategy's default, about 5 tokens per pass on the shipped model
DEFAULT_BLOCK_SIZE = 32  # the default semi-autoregressive block: the unit of the block KV cache
DEFAULT_SPACING = 3  # the diffusion strategies' default spacing (read by those that list it)
# What default_config gives every strategy (greedy decoding loops), and every diffusion strategy besides: blocks of 32
# with the dual KV cache, and the spacing and entropy bound that the strategies reading them start from (recorded in
# every diffusion trace, as they always were).
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 0.9}
DIFFUSION_DEFAULTS = {"steps": None, "entropy_bound": DEFAULT_ENTROPY_BOUND, "block_size": DEFAULT_BLOCK_SIZE,
                      "cache": "dual", "spacing": DEFAULT_SPACING}


def _setting(default: object, help: str) -> object:
    return field(default=default, metadata={"help": help})


@dataclass
class DecodeConfig:
    """Every decoding setting; recorded in the trace. A strategy reads the settings it lists (``Strategy.reads``)
    and those of every strategy of its kind; it ignores the rest. Each field's help is in its metadata."""

    strategy: str = _setting("confidence", "how the positions each step commits are chosen: a registered strategy")
    steps: int | None = _setting(None, "how many steps (forward passes) to decode in, as each strategy reads them")
    schedule: str = _setting("linear", "how many positions each step of a schedule commits: linear (the same "
                                       "number every step), cosine (few early, many late) or exp (many early, few "
                                       "late)")
    threshold: float = _setting(0.9, "commit the positions whose confidence score is at least this, in (0, 1]")
    k: int = _setting(4, "positions committed per step")
    entropy_bound: float = _setting(DEFAULT_ENTROPY_BOUND, "commit the most certain positions while their entropies "
                                                           "sum to at most this many nats")
    confidence: str = _setting("max-prob", "confidence measure: max-prob, margin (top-1 - top-2) or entropy "
                                           "(compared as exp(-entropy))")
    temperature: float = _setting(0.0, "0: greedy; > 0: sample")
    top_k: int | None = _setting(None, "sample among the k most likely tokens (needs a temperature > 0)")
    top_p: float | None = _setting(None, "sample from the nucleus of probability p (needs a temperature > 0)")
    seed: int | None = _setting(0, "seed of sampling and of random positions (None: a fresh seed, recorded in the "
                                   "trace)")
    block_size: int | None = _setting(None, "diffusion: decode the masked positions in left-to-right blocks of this "
                                            "many (None: one block)")
    spacing: int = _setting(1, "prefer positions at least this far apart when several are committed in one pass "
                               "(neighbours depend on each other most; 1: no preference)")
    reuse: bool = _setting(True, "diffusion: reuse the last prediction when nothing changed since it was made")
    use_cache: bool = _setting(True, "left-to-right: KV cache (each pass runs only the new token)")
    cfg_scale: float = _setting(1.0, "diffusion: classifier-free guidance on the label (else the prompt): logits = "
                                     "uncond + s * (cond - uncond); 1 = off, 0 = unconditional, > 1 = stronger")
    cache: str = _setting("none", "diffusion: approximate block KV cache; prefix: cache what precedes the block, "
                                  "dual: also the masked suffix (BERT-like models; others fall back to full passes)")
    cache_refresh: int | None = _setting(None, "diffusion with a cache: also refresh it every this many passes in a "
                                               "block")
    stop_at_end: bool | None = _setting(None, "end the text where the model writes its end-of-text token (None: "
                                              "for models that learned to, i.e. published diffusion LMs and general "
                                              "LMs, not textdiff's own)")

    def validate(self) -> None:
        """Raise ``TextdiffError`` (one line) for any setting that cannot work."""
        if self.strategy not in _REGISTRY:
            raise TextdiffError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(strategy_names())}")
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


SETTINGS = {f.name: f for f in fields(DecodeConfig)}  # name -> field (its help: SETTINGS[name].metadata["help"])


@dataclass
class Scores:
    """The model's distribution at N positions and each position's confidence: all that choosing positions needs.
    Tokens are drawn afterwards, only where positions are committed (``decoding.sample_rows``): sampling with top-p
    sorts the whole vocabulary, which at 30k tokens costs as much as a forward pass when done at every open
    position."""

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


class Strategy:
    """A decoding strategy: subclass, fill in the class attributes, implement ``choose`` (and ``count`` when a step
    may commit more than one position), and decorate with ``@register``.

    A diffusion strategy is asked, at each step of a block, how many of the block's open positions to commit
    (``count``) and which ones (``choose``); the decoder then draws the tokens there. A left-to-right strategy
    (kind CAUSAL) chooses nothing: the left-to-right decoder commits one position per pass, in order.
    """

    name: ClassVar[str]  # what DecodeConfig.strategy, --strategy and a trace say
    title: ClassVar[str]  # its name wherever it is shown (Denoise, Compare)
    description: ClassVar[str]  # what it does, in one line
    kind: ClassVar[str] = MASKED  # the kind of model it decodes: MASKED (diffusion) or CAUSAL (left to right)
    order: ClassVar[int] = 50  # where it stands in lists (choices, selectors): lower first
    reads: ClassVar[tuple[str, ...]] = ()  # the DecodeConfig settings it reads, beyond those of its whole kind
    notes: ClassVar[dict[str, str]] = {}  # setting -> what that setting means to this strategy (when its own)
    defaults: ClassVar[dict[str, object]] = {}  # settings default_config gives it, beyond the shared defaults
    uses_entropy: ClassVar[bool] = False  # ``choose`` reads each position's entropy
    budget: ClassVar[bool] = False  # ``steps`` is a budget of forward passes, with a default (``default_steps``)
    optional_steps: ClassVar[bool] = False  # reads ``steps`` but goes without (None: it sets its own pace)

    def default_settings(self, length: int | None = None) -> dict[str, object]:
        """The settings ``default_config`` gives this strategy for ``length`` new tokens, by name."""
        shared = DIFFUSION_DEFAULTS if self.kind == MASKED else {}
        return {"strategy": self.name, **SAMPLING_DEFAULTS, **shared, **self.defaults}

    def default_steps(self, length: int, block_size: int | None = None) -> int | None:
        """The steps a user who gives none gets for ``length`` new tokens in blocks of ``block_size`` (None: none)."""
        return None

    def steps(self, config: DecodeConfig, n_positions: int) -> int | None:
        """The steps this strategy spreads over the blocks of ``n_positions`` masked positions (None: it keeps no
        count of steps)."""
        return None

    def check(self, config: DecodeConfig, n_positions: int, n_blocks: int) -> None:
        """Raise ``TextdiffError`` (one line) when ``config`` cannot decode ``n_positions`` masked positions in
        ``n_blocks`` blocks."""
        steps = self.steps(config, n_positions)
        if steps is not None and steps < n_blocks:
            raise TextdiffError(f"{steps} steps cannot decode {n_blocks} blocks; give at least one step per block")

    def count(self, config: DecodeConfig, *, step: int, steps: int, size: int, left: int) -> int | None:
        """How many positions to commit at ``step`` (from 0) of a block of ``size`` positions given ``steps`` steps,
        with ``left`` positions still open; None: the strategy has no step left in this block."""
        return 1

    def beyond_pace(self, config: DecodeConfig, n_positions: int) -> bool:
        """Whether a step may commit more positions than its count, when ``choose`` finds them worth it."""
        return True

    def choose(self, config: DecodeConfig, scores: Scores | Draw, count: int, generator: torch.Generator | None,
               positions: list[int], beyond_pace: bool = True) -> list[int]:
        """Indices into the open ``positions`` (and the rows of ``scores``) to commit this step, sorted."""
        raise NotImplementedError(f"strategy {self.name!r} chooses no positions (a {self.kind} strategy)")


class Paced(Strategy):
    """A strategy that goes at its own pace unless ``steps`` is given, and then commits ceil(open / steps left)
    positions per step (as a floor or a ceiling: ``choose`` says which)."""

    optional_steps = True

    def steps(self, config: DecodeConfig, n_positions: int) -> int | None:
        return config.steps

    def count(self, config: DecodeConfig, *, step: int, steps: int, size: int, left: int) -> int | None:
        return math.ceil(left / max(1, steps - step)) if config.steps else 1


def spread(order: list[int], count: int, positions: list[int], spacing: int, chosen: list[int]) -> list[int]:
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


_REGISTRY: dict[str, Strategy] = {}  # name -> the strategy, in registration order


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: add a strategy to the registry (one instance of it), after checking what it declares."""
    name = getattr(cls, "name", "")
    if not name or name in _REGISTRY:
        raise ValueError(f"a strategy needs a name of its own, got {name!r} ({cls.__name__})")
    if not (getattr(cls, "title", "") and getattr(cls, "description", "")):
        raise ValueError(f"strategy {name!r} needs a title and a description")
    if cls.kind not in (MASKED, CAUSAL):
        raise ValueError(f"strategy {name!r}: kind must be {MASKED!r} or {CAUSAL!r}, got {cls.kind!r}")
    unknown = (set(cls.reads) | set(cls.defaults)) - set(SETTINGS)
    if unknown or not set(cls.notes) <= set(cls.reads):
        raise ValueError(f"strategy {name!r} names settings DecodeConfig lacks or notes settings it does not read: "
                         f"{sorted(unknown or set(cls.notes) - set(cls.reads))}")
    if cls.kind == MASKED and cls.choose is Strategy.choose:
        raise ValueError(f"diffusion strategy {name!r} must implement choose")
    _REGISTRY[name] = cls()
    return cls


def unregister(name: str) -> None:
    """Take a strategy out of the registry (a test's toy strategy, say)."""
    del _REGISTRY[name]


def strategies(kind: str | None = None) -> list[Strategy]:
    """The registered strategies (of ``kind``, MASKED or CAUSAL, when given), in their order."""
    return sorted((s for s in _REGISTRY.values() if kind is None or s.kind == kind), key=lambda s: s.order)


def strategy_names(kind: str | None = None) -> tuple[str, ...]:
    """The names of ``strategies(kind)``."""
    return tuple(s.name for s in strategies(kind))


def strategy_named(name: str) -> Strategy:
    """The registered strategy called ``name``; a one-line ``TextdiffError`` when there is none."""
    if name not in _REGISTRY:
        raise TextdiffError(f"unknown strategy {name!r}; choose one of {', '.join(strategy_names())}")
    return _REGISTRY[name]
