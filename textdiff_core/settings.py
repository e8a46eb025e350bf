"""Settings of a training run, on the lowest floor: ``TrainConfig`` and ``NoiseConfig`` (each checks itself when
made), the ``train`` command line generated from them (one flag per field: a new setting gets its flag without anyone
writing one, and back: ``config_args``), the settings a recorded run predates (``LEGACY_DEFAULTS``), ``LoadOptions``,
how a model is loaded (the CLI's loading flags, generated from its fields the same way), and ``DTYPES``, the one
table of weights' dtypes.

A setting's flag is described by its field's metadata, the way ``transformers.HfArgumentParser`` reads one: ``help``
(every field that is a flag has one), and only where the flag differs from ``--field-name`` parsed as the field's type:
``flag`` (another name), ``choices``, ``type`` (a parser), ``action`` and ``none`` (how None is spelled on the command
line). Defaults live in the dataclasses alone: an absent flag leaves the field's default. Nothing here imports torch
or the rest of the package (but ``errors``).
"""

from __future__ import annotations

import argparse
import math
import os
import types
import typing
from collections.abc import Callable, Collection, Iterator
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path

from textdiff_core.errors import TextdiffError

# The kinds of network: bidirectional (diffusion), left-to-right, and an encoder with a classification head
# (discriminative: P(class | text) directly, the same-backbone reference for the generative readings).
MASKED, CAUSAL, CLASSIFIER = "masked", "causal", "classifier"
KIND_NAMES = {MASKED: "diffusion", CAUSAL: "left-to-right", CLASSIFIER: "discriminative"}  # what users read (messages)
# objective a model is trained with -> kind of network it needs
OBJECTIVES = {"diffusion": MASKED, "ar": CAUSAL, "discriminative": CLASSIFIER}
CONDITIONINGS = ("none", "class", "joint", "per-class")
CLASS_PROMPTED = ("class", "joint")  # conditionings with one model and a class prompt ("{label} review:")
# Weights' dtypes: the name flags and records use -> torch's name for it (``models.torch_dtype`` resolves it, so that
# this floor needs no torch). Every dtype flag's choices and every check of a dtype name read this table.
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def default_warmup_steps(total_steps: int) -> int:
    """Warm-up of a run that does not set ``warmup_steps``: 5% of its planned optimizer steps."""
    return max(1, total_steps // 20)

def check_finite(settings: object) -> None:
    """A one-line TextdiffError for a number field of a settings dataclass that is NaN or infinite (argparse's
    ``float`` reads "nan" and "inf"; no setting here means either)."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        for v in value if isinstance(value, tuple | list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise TextdiffError(f"{f.name.replace('_', '-')} must be a finite number, got {v}")


def check_output_dir(path: str | os.PathLike, what: str = "out") -> None:
    """Refuse, before any work, an output directory that cannot be one: an existing file, or a path under a file."""
    given = Path(path).expanduser()
    for existing in (given, *given.parents):
        if existing.exists():
            if not existing.is_dir():
                where = "is" if existing == given else f"lies under {existing}, which is"
                raise TextdiffError(f"{what} {path} {where} a file, not a directory; give a directory")
            return


def check_writable(path: str | os.PathLike, what: str = "out") -> None:
    """``check_output_dir`` for a file path's directory, and refuse one the user cannot write to (checked before a
    command loads a model, so that it never fails at the end of its work)."""
    given = Path(path).expanduser()
    if given.is_dir():
        raise TextdiffError(f"cannot write {what} {path}: it is a directory; give a file path")
    nearest = next(p for p in (given.parent, *given.parent.parents) if p.exists())
    if not nearest.is_dir():
        raise TextdiffError(f"cannot write {what} {path}: {nearest} is a file, not a directory")
    if not os.access(nearest, os.W_OK):
        raise TextdiffError(f"cannot write {what} {path}: {nearest} is not writable")


# ---- how a model is loaded (``models.load_model``) ----


@dataclass
class LoadOptions:
    """How ``models.load_model`` loads a model: the CLI's loading flags and the app's sidebar, passed explicitly."""

    # In the order of their flags (``add_load_flags``); ``top_level_only``: a flag before the command name only.
    trust_remote_code: bool = field(default=False, metadata={
        "help": "run modeling code shipped with a model (MDLM, LLaDA, Dream); only for models you trust"})
    allow_large_cpu: bool = field(default=False, metadata={
        "help": "load a model of over 1B parameters on CPU (slow; meant for a GPU)"})
    mask_id: int | None = field(default=None, metadata={
        "help": "diffusion models: the mask token id (default: from the model's config or tokenizer)"})
    logit_shift: int | None = field(default=None, metadata={
        "help": "diffusion models: 1 if position i's logits predict token i+1 (Dream; default: config)",
        "choices": (0, 1)})
    time_input: str | None = field(default=None, metadata={
        "help": "diffusion models: pass the noise level as timesteps (sigma: MDLM; default from config)",
        "choices": ("none", "sigma")})
    context_length: int | None = field(default=None, metadata={
        "help": "diffusion models: positions the model takes (default from config)"})
    dtype: str | None = field(default=None, metadata={
        "help": "dtype to load weights in (default: bf16 on GPU, fp32 on CPU)", "flag": "--model-dtype",
        "choices": tuple(DTYPES)})
    allow_pickle: bool = field(default=False, metadata={
        "help": "also load pickled .bin/.pt weights (they can run code; only for files you trust)",
        "top_level_only": True})

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in DTYPES:
            raise TextdiffError(f"unknown model dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.mask_id is not None and self.mask_id < 0:
            raise TextdiffError(f"mask-id must be a token id >= 0, got {self.mask_id}")
        if self.logit_shift not in (None, 0, 1):
            raise TextdiffError(f"logit-shift must be 0 or 1, got {self.logit_shift}")
        if self.time_input not in (None, "none", "sigma"):
            raise TextdiffError(f"time-input must be none or sigma, got {self.time_input!r}")
        if self.context_length is not None and self.context_length < 1:
            raise TextdiffError(f"context-length must be at least 1, got {self.context_length}")

    def denoiser_overrides(self) -> dict:
        """What these options say about a masked model's ``denoisers.Denoiser`` (only the fields given)."""
        given = {"mask_id": self.mask_id, "logit_shift": self.logit_shift, "time_input": self.time_input,
                 "context_length": self.context_length}
        return {k: v for k, v in given.items() if v is not None}


# ---- parsers of the flags whose values are not one word ----


def _levels(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated rates like 0.1,0.5,1.0, got {text!r}") from None


def _probability_or_t(text: str) -> float | None:
    if text.strip().lower() == "t":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1] or t, got {text!r}") from None


def _data(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# ---- masking noise (``noise`` applies it) ----

MASKING_RATES = ("continuous", "levels")  # how masking rates are drawn (``NoiseConfig.masking_rates``)
T_SAMPLING = ("iid", "antithetic", "stratified")
WEIGHTINGS = ("elbo", "mean")
DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass
class NoiseConfig:
    """How masking rates are drawn during training and how the masked-token losses are weighted."""

    masking_rates: str = field(default="continuous", metadata={
        "help": "how masking rates are drawn: continuous (t ~ U(eps, 1) per sequence, see --t-sampling and "
                "--t-beta) or levels (one rate per batch from --levels)",
        "choices": MASKING_RATES})
    t_sampling: str = field(default="stratified", metadata={
        "help": 'continuous only: "iid", "antithetic" (u, 1-u) or "stratified" (one per stratum)',
        "choices": T_SAMPLING})
    levels: tuple[float, ...] = field(default=DEFAULT_LEVELS, metadata={
        "help": 'rates for the "levels" masking rates', "type": _levels})
    eps: float = field(default=1e-3, metadata={
        "help": "smallest t for the continuous masking rates (the 1/t weight is at most 1/eps)"})
    weighting: str = field(default="mean", metadata={
        "help": '"mean" (unweighted mean over masked tokens) or "elbo" (1/t, the MDLM bound)',
        "flag": "--loss-weighting", "choices": WEIGHTINGS})
    t_beta: float = field(default=1.0, metadata={
        "help": "continuous only: t ~ Beta(t_beta, 1) on (eps, 1); 1 is uniform, > 1 favours high rates"})

    def __post_init__(self) -> None:
        self.levels = tuple(float(x) for x in self.levels)
        check_finite(self)
        if self.masking_rates not in MASKING_RATES:
            raise TextdiffError(f"unknown masking rates {self.masking_rates!r}; choose one of "
                                f"{', '.join(MASKING_RATES)}")
        if self.t_sampling not in T_SAMPLING:
            raise TextdiffError(f"unknown t sampling {self.t_sampling!r}; choose one of {', '.join(T_SAMPLING)}")
        if self.weighting not in WEIGHTINGS:
            raise TextdiffError(f"unknown loss weighting {self.weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
        if not 0.0 < self.t_beta <= 100.0:
            raise TextdiffError(f"t_beta must be in (0, 100], got {self.t_beta}")
        if self.t_beta != 1.0 and self.masking_rates != "continuous":
            raise TextdiffError("t_beta shapes the continuous masking rates only; levels draws from its list")
        if self.t_beta != 1.0 and self.weighting == "elbo":  # the 1/t weights assume t ~ U(eps, 1)
            raise TextdiffError("t_beta != 1 with the elbo weighting would no longer estimate the bound; use the "
                                "mean weighting or t_beta 1")
        if not 0.0 < self.eps < 1.0:
            raise TextdiffError(f"eps must be in (0, 1), got {self.eps}")
        if not self.levels or any(not 0.0 < x <= 1.0 for x in self.levels):
            raise TextdiffError(f"masking levels must be in (0, 1], got {list(self.levels)}")

    def to_dict(self) -> dict:
        return asdict(self) | {"levels": list(self.levels)}



# ---- a training run (``train`` runs it) ----


@dataclass
class TrainConfig:
    """Every setting of a training run; recorded in the run's textdiff.json."""

    out: str = field(metadata={"help": "output directory: final model, metrics.jsonl, checkpoints/"})
    objective: str = field(default="diffusion", metadata={
        "help": "diffusion: masked tokens at rate t, bidirectional attention; ar: left-to-right next-token loss; "
                "discriminative: a classification head on the encoder, cross-entropy against each text's label "
                "(labelled data, conditioning none)",
        "choices": tuple(OBJECTIVES)})
    model: str = field(default="minilm", metadata={
        "help": "start from: offline name (minilm, minilm-ar, smollm2, tiny, tiny-ar), a directory or a hub id "
                "(default: minilm for diffusion and discriminative, minilm-ar for ar; discriminative starts from an "
                "encoder, a new head initialised under a fixed seed)"})
    data: list[str] = field(default_factory=lambda: ["imdb"], metadata={
        "help": "dataset(s): imdb, rotten_tomatoes, a .csv/.jsonl file, or a hub dataset id; several (comma "
                "separated or repeated) are mixed, and the mix is recorded with the checkpoint (default: imdb)",
        "type": _data, "action": "extend"})
    text_col: str = field(default="text", metadata={"help": "column of the text in CSV/JSONL files"})
    label_col: str | None = field(default="label", metadata={"help": "column of the label in CSV/JSONL files"})
    conditioning: str = field(default="none", metadata={
        "help": "none: unconditional; class: one model with a never-masked class prompt; joint: the class word is "
                "one more token to model (diffusion: masked by its own coin; left to right: the class prompt before "
                "or after the text), read back by --method infill; per-class: one model per class; discriminative "
                "takes none only (the class is its target, never a prompt)",
        "choices": CONDITIONINGS})
    class_prompt: str = field(default="{label} review:", metadata={
        "help": "prefix for conditioning class/joint; {label} is the class name"})
    label_mask_prob: float | None = field(default=0.5, metadata={
        "help": "joint, diffusion: chance that the class word is masked in a training sequence (t: the sequence's "
                "own masking rate)",
        "type": _probability_or_t, "none": "t"})
    label_weight: float = field(default=16.0, metadata={
        "help": "joint: the class word's loss counts as this many text tokens"})
    steps: int | None = field(default=None, metadata={"help": "optimizer steps (per model); default: one epoch"})
    epochs: float | None = field(default=None, metadata={"help": "alternative to steps"})
    batch_size: int = field(default=16, metadata={"help": "sequences per micro-batch per process"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    lr: float = field(default=2e-4, metadata={"help": "peak AdamW learning rate"})
    lr_schedule: str = field(default="constant_with_warmup", metadata={
        "help": "transformers scheduler name (MDLM's choice); linear, cosine, ..."})
    warmup_steps: int | None = field(default=None, metadata={
        "help": "default: default_warmup_steps, 5% of the steps"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and LayerNorm)"})
    max_length: int = field(default=128, metadata={
        "help": "tokens per sequence including prompt and special tokens"})
    crop: str = field(default="random", metadata={
        "help": 'texts longer than max_length: a "random" window each time, or always the "start"',
        "choices": ("random", "start")})
    max_samples: int | None = field(default=None, metadata={
        "help": "use at most this many training examples (class-balanced)"})
    seed: int = field(default=0, metadata={"help": "data order, masks, dropout"})
    save_every: int = field(default=100, metadata={
        "help": "write a resumable checkpoint every N steps (0: only at the end)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "how many resumable checkpoints to keep"})
    log_every: int = field(default=10, metadata={"help": "write a metrics.jsonl line every N steps"})
    resume: bool = field(default=False, metadata={
        "help": "continue from the latest complete checkpoint in out/checkpoints"})
    save_dtype: str = field(default="fp32", metadata={
        "help": "dtype of the final weights: fp32, fp16 or bf16", "choices": tuple(DTYPES)})
    eval_every: int = field(default=0, metadata={
        "help": "validate on a fixed subset every N steps (0: never): accuracy (class/joint/discriminative), "
                "perplexity (not discriminative)"})
    eval_epochs: bool | None = field(default=None, metadata={
        "help": "also validate at every whole-epoch boundary; None: when eval_every is set, conditioning is class "
                "or joint, or the objective is discriminative (every run that can be read as a classifier)"})
    eval_size: int = field(default=200, metadata={
        "help": "validation texts for that (class-balanced, the same every time)"})
    eval_samples: int = field(default=4, metadata={
        "help": "ELBO Monte Carlo samples per text for that (diffusion; left-to-right is exact)"})
    stop_after: int | None = field(default=None, metadata={
        "help": "end this invocation at this step with a resumable checkpoint and no final model; the lr schedule "
                "still spans all steps (chunked runs, see campaign)"})
    input_mask_prob: float = field(default=0.0, metadata={
        "help": "ar only: chance each text input token is replaced by [MASK] while its target stays (random token "
                "masking, Gao et al.: the augmentation without the objective)"})
    noise: NoiseConfig = field(default_factory=NoiseConfig)  # diffusion only; its fields are flags of their own

    def __post_init__(self) -> None:
        check_finite(self)
        check_output_dir(self.out)
        if self.objective not in OBJECTIVES:
            raise TextdiffError(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.conditioning not in CONDITIONINGS:
            raise TextdiffError(f"unknown conditioning {self.conditioning!r}; choose one of {', '.join(CONDITIONINGS)}")
        if self.objective == "discriminative" and self.conditioning != "none":
            raise TextdiffError(f"objective discriminative predicts the class, so it takes no class prompt or class "
                                f"model: use --conditioning none, not {self.conditioning}")
        if self.conditioning in CLASS_PROMPTED and "{label}" not in self.class_prompt:
            raise TextdiffError(f"--class-prompt must contain {{label}}, got {self.class_prompt!r}")
        for name in ("batch_size", "grad_accum", "max_length", "log_every"):
            if getattr(self, name) < 1:
                raise TextdiffError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise TextdiffError(f"steps must be at least 1, got {self.steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise TextdiffError(f"epochs must be positive, got {self.epochs}")
        if self.lr <= 0:
            raise TextdiffError(f"lr must be positive, got {self.lr}")
        if self.save_dtype not in DTYPES:
            raise TextdiffError(f"unknown save dtype {self.save_dtype!r}; choose one of {', '.join(DTYPES)}")
        if (self.eval_every or self.eval_epochs) and self.conditioning == "per-class":
            raise TextdiffError("validation during training needs one model (conditioning none, class or joint), "
                                "not per-class")
        if self.stop_after is not None and self.stop_after < 1:
            raise TextdiffError(f"stop-after must be at least 1, got {self.stop_after}")
        if self.label_mask_prob is not None and not 0.0 < self.label_mask_prob <= 1.0:
            raise TextdiffError(f"label-mask-prob must be in (0, 1] (or t), got {self.label_mask_prob}")
        if not self.label_weight > 0.0 or math.isinf(self.label_weight):
            raise TextdiffError(f"label-weight must be positive and finite, got {self.label_weight}")
        if self.crop not in ("start", "random"):
            raise TextdiffError(f"unknown crop {self.crop!r}; choose start or random")
        if not 0.0 <= self.input_mask_prob < 1.0:
            raise TextdiffError(f"input-mask-prob must be in [0, 1), got {self.input_mask_prob}")
        if self.input_mask_prob and self.objective == "discriminative":
            raise TextdiffError("input-mask-prob masks a left-to-right model's inputs; the discriminative objective "
                                "reads its text as is")
        if self.input_mask_prob and self.objective != "ar":
            raise TextdiffError("input-mask-prob masks a left-to-right model's inputs; diffusion masks by its rate t")
        if self.max_samples is not None and self.max_samples < 1:
            raise TextdiffError(f"max-samples must be at least 1, got {self.max_samples}")

    def to_dict(self) -> dict:
        return asdict(self) | {"noise": self.noise.to_dict()}

    def to_args(self, skip=lambda name: False) -> list[str]:
        """The ``train`` flags that recreate this config, every setting spelled out but those ``skip(name)`` names
        (``config_args``)."""
        return config_args(self, skip)

    @classmethod
    def from_record(cls, record: dict) -> TrainConfig:
        """The config a run recorded (textdiff.json's ``config``), settings it predates at their values then."""
        return config_from_record(record)

    @property
    def validates_at_epochs(self) -> bool:
        """Whether a validation record is written at each whole-epoch boundary (see ``eval_epochs``)."""
        if self.eval_epochs is not None:
            return self.eval_epochs
        return bool(self.eval_every) or self.conditioning in CLASS_PROMPTED or self.objective == "discriminative"

    @property
    def labelled(self) -> bool:
        """Whether the run needs each text's class: as a prompt or class model (conditioning), or as the target."""
        return self.conditioning != "none" or self.objective == "discriminative"



# ---- the command lines' flags, generated from the dataclasses' fields ----


def settings() -> Iterator[tuple[str, Field, type]]:
    """(name, field, type) of every training setting: TrainConfig's fields, NoiseConfig's as ``noise.<name>``."""
    for owner, prefix in ((TrainConfig, ""), (NoiseConfig, "noise.")):
        hints = typing.get_type_hints(owner)
        for f in fields(owner):
            if owner is TrainConfig and f.name == "noise":
                continue
            yield prefix + f.name, f, hints[f.name]


def _base_type(hint: type) -> type:
    """int for ``int | None``, list for ``list[str]``, ..."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def _default(f: Field):
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _help(name: str, f: Field) -> str:
    """The help of a field's flag: its metadata's (a field that is a flag without one is a bug, caught here)."""
    if not f.metadata.get("help"):
        raise TypeError(f"setting {name} has no help: give its field metadata={{'help': ...}}")
    return f.metadata["help"]


def _flag(name: str, f: Field) -> str:
    return f.metadata.get("flag") or "--" + name.rpartition(".")[2].replace("_", "-")


# Each training setting's flag as its field's metadata describes it, but the help, by setting name ("noise." for
# NoiseConfig's): a view of the fields, for code that knows a setting by its name.
FLAGS: dict[str, dict] = {name: {k: v for k, v in f.metadata.items() if k != "help"} for name, f, _ in settings()}


def add_train_flags(parser: argparse.ArgumentParser, skip: Collection[str] = ()) -> None:
    """One flag per training setting but those named in ``skip``; absent flags leave the dataclass defaults
    (``train_config``). Every command that takes training settings (train, campaign, crossover) calls this."""
    for name, f, hint in settings():
        if name in skip:
            continue
        spec, kind = FLAGS[name], _base_type(hint)
        helptext, default = _help(name, f), _default(f)
        if default not in (None, MISSING, False) and "default:" not in helptext:
            shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else default
            helptext += f" (default: {shown})"
        kwargs: dict = {"dest": name.replace(".", "__"), "help": helptext.replace("%", "%%")}
        if f.default is MISSING and f.default_factory is MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = argparse.SUPPRESS
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = spec.get("type", kind)
            for key in ("choices", "action"):
                if key in spec:
                    kwargs[key] = spec[key]
            if "choices" not in kwargs:
                kwargs["metavar"] = _flag(name, f)[2:].upper().replace("-", "_")
        parser.add_argument(_flag(name, f), **kwargs)


def train_config(args: argparse.Namespace, **overrides):
    """The TrainConfig of parsed ``add_train_flags`` flags (plus ``overrides``, by field name)."""
    given: dict[str, dict] = {"": {}, "noise.": {}}
    for name, _, _ in settings():
        value = overrides.get(name, getattr(args, name.replace(".", "__"), MISSING))
        if value is MISSING or value is None and "none" not in FLAGS[name]:
            continue  # not given: the dataclass default (None from a caller also means "not given")
        prefix, _, field_name = name.rpartition(".")
        given[prefix + "." if prefix else ""][field_name] = value
    config = given[""]
    if "model" not in config:
        config["model"] = "minilm-ar" if config.get("objective") == "ar" else "minilm"
    return TrainConfig(**config, noise=NoiseConfig(**given["noise."]))


def _value(name: str, value) -> str:
    if value is None:
        return FLAGS[name]["none"]
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def config_args(config, skip: Callable[[str], bool] = lambda name: False) -> list[str]:
    """The ``train`` flags that recreate ``config``: every setting spelled out (not only those that differ from
    today's defaults, which may change), except settings for which ``skip(name)`` is true."""
    args: list[str] = []
    for name, f, hint in settings():
        if skip(name):
            continue
        owner = config.noise if name.startswith("noise.") else config
        value = getattr(owner, name.rpartition(".")[2])
        flag = _flag(name, f)
        if _base_type(hint) is bool:
            if value is not None and value != _default(f):
                args.append(flag if value else "--no-" + flag[2:])
        elif value is not None or "none" in FLAGS[name]:
            args += [flag, _value(name, value)]
    return args


def _load_dest(f: Field) -> str:
    return _flag(f.name, f)[2:].replace("-", "_")


def add_load_flags(parser: argparse.ArgumentParser, top: bool) -> None:
    """One flag per ``LoadOptions`` field: before the command name (``top``: absent flags leave the field's
    default) and after it (then absent flags do not reset the former; ``top_level_only`` fields are not there)."""
    hints = typing.get_type_hints(LoadOptions)
    for f in fields(LoadOptions):
        if f.metadata.get("top_level_only") and not top:
            continue
        kind = _base_type(hints[f.name])
        kwargs: dict = {"dest": _load_dest(f), "default": f.default if top else argparse.SUPPRESS,
                        "help": _help(f.name, f)}
        if kind is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs |= {"type": kind} if kind is not str else {}
            kwargs |= {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
        parser.add_argument(_flag(f.name, f), **kwargs)


def load_options(args: argparse.Namespace) -> LoadOptions:
    """The ``LoadOptions`` of parsed ``add_load_flags`` flags (checked when made)."""
    return LoadOptions(**{f.name: getattr(args, _load_dest(f)) for f in fields(LoadOptions)})


# Settings a run recorded before they existed, or before their default changed: their value at the time.
LEGACY_DEFAULTS = {"crop": "start", "lr_schedule": "linear", "noise.weighting": "elbo", "eval_epochs": False}


def config_from_record(record: dict):
    """The TrainConfig of a recorded ``config`` dict (textdiff.json); settings it lacks take ``LEGACY_DEFAULTS``,
    else today's defaults (a setting added later, whose default is the behaviour from before)."""
    known = {name for name, _, _ in settings()}
    top = {k: v for k, v in record.items() if k != "noise" and k in known}
    recorded_noise = dict(record.get("noise") or {})
    # Records written before the rename (the shipped checkpoints among them) call masking_rates "schedule": the one
    # place the old key is read, so that no other module ever sees it.
    if "schedule" in recorded_noise:
        recorded_noise.setdefault("masking_rates", recorded_noise.pop("schedule"))
    noise = {k: v for k, v in recorded_noise.items() if f"noise.{k}" in known}
    for name, value in LEGACY_DEFAULTS.items():
        prefix, _, key = name.rpartition(".")
        (noise if prefix else top).setdefault(key, value)
    return TrainConfig(**top, noise=NoiseConfig(**noise))
