"""The data-constrained crossover: for each unique-data size U, a masked-diffusion model and its left-to-right twin
trained from scratch on the same U reviews to the same budget, validated at log-spaced points.

The grid: nested, fixed subsets of the training split (``load_data``'s seeded class-balanced round robin, whose
first U are the same for every larger U), smallest U first. Both twins of every U share one architecture (a small
BERT, ``ModelShape``), one tokenizer (WordPiece trained on the largest subset, so that the output layer is cheap),
one random initialisation, optimiser, seed, batch and lr schedule: only the objective differs. Each twin is one
``train`` run whose ``steps`` are the U's budget, stopped (``stop_after``) at each validation point and resumed, as
the campaign does; at each point both twins are scored on the same fixed validation reviews (never the subset, never
the test split) by ``grid.validate``: bits per token (the diffusion ELBO bound, the twin's exact NLL) of each text given
its own class word, bits per byte, and both classifier readings (Bayes over the likelihoods; infill of the class
word). ``OUT/crossover.json`` is rewritten after every validation point, so partial results are usable; the per-text
values behind the intervals stay in ``OUT/u-NNNNN/validation.json``. Running the command again continues the grid.
Two settings may change between runs of one grid: the control arm (``control_mask``: a third run per size, the
left-to-right twin with random input-token masking) may be added, and under a constant lr schedule the step budgets may
be raised (``budgets_may_grow``); neither changes a point measured before.

The analysis (``analyse``): per U, each objective's best point so far, the crossover (the first point at which
diffusion's best bound so far is below the twin's best loss so far, with the paired difference's interval), and
where at least three U cross, the exponent k of C_crit = a U^k (Prabhudesai et al. 2025 report 2.174).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import shutil
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from textdiff_core.baseline import SETTINGS
from textdiff_core.checkpoint import CheckpointMeta, format_prompt
from textdiff_core.denoisers import estimate_parameters
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import wilson_interval
from textdiff_core.experiments.campaign import standing
from textdiff_core.experiments.grid import (
    BITS,
    RESULTS,
    TWINS,
    init_dir,
    paired_difference,
    ratio_interval,
    read_results,
    score_point,
    size_dir,
    subset,
    summarise,
    validation_set,
    write_json,
)
from textdiff_core.experiments.render import PUBLISHED_EXPONENT
from textdiff_core.progress import quiet_transformers
from textdiff_core.settings import TrainConfig, check_finite, check_output_dir
from textdiff_core.tokens import tokenize_texts
from textdiff_core.train import train

CONTROL = "ar_masked"  # the control arm: the left-to-right twin with random input-token masking
RUNS = (*TWINS, CONTROL)  # every run a size can have, in the order they take turns at a validation point
CONTROL_SETTINGS = ("control_mask", "control_sizes")  # may be added to a running grid: they add runs, change none
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass
class ModelShape:
    """The one architecture both twins of every U share (a BERT; is_decoder for the left-to-right twin)."""

    layers: int = 4  # transformer layers
    width: int = 256  # hidden size
    heads: int = 4  # attention heads
    vocab_size: int = 4096  # WordPiece vocabulary trained on the largest subset (output layer cost grows with it)

    def __post_init__(self) -> None:
        if min(self.layers, self.width, self.heads) < 1 or self.width % self.heads:
            raise TextdiffError(f"layers, width and heads must be positive and width a multiple of heads, got "
                                f"{self.layers}, {self.width}, {self.heads}")
        if self.vocab_size < 64:
            raise TextdiffError(f"vocab-size must be at least 64, got {self.vocab_size}")


@dataclass
class CrossoverConfig:
    """Every setting of a crossover grid; recorded in crossover.json, and a rerun must repeat them."""

    out: str  # grid directory: init/, u-NNNNN/{diffusion,ar,validation.json}, crossover.json
    sizes: list[int]  # unique training reviews per grid point, ascending (nested subsets)
    steps: list[int]  # optimizer steps per size, the same for both twins (one per size)
    train: TrainConfig  # shared settings; objective, model, out, steps, max_samples, resume, stop_after per run
    points: int = 10  # validation points per size, log-spaced in steps from first_point to the budget
    first_point: int = 25  # step of the first validation point
    val_size: int = 256  # validation reviews (class-balanced, fixed), the same for every size and both twins
    val_samples: int = 4  # ELBO Monte Carlo samples per text and class (same noise for every class and point)
    shape: ModelShape = field(default_factory=ModelShape)
    tokenizer: str | None = None  # a tokenizer.json to use (an earlier grid's OUT/init/tokenizer.json); None: train one
    control_mask: float = 0.0  # > 0: the control arm, a third run per size: the left-to-right twin with its text
    #                            inputs masked at this rate (Gao et al.): the augmentation without the objective
    control_sizes: list[int] = field(default_factory=list)  # sizes that get the control arm (empty: every size)
    val_data: list[str] | None = None  # where the validation (and test) reviews come from (None: the training data)
    test_size: int = 0  # > 0: also score this many test reviews at every point (a point is chosen on validation)
    start: list[str] | None = None  # two trained checkpoints, diffusion then left to right, that the twins continue
    #                                 from (fine-tuning: their own architecture and tokenizer) instead of a fresh
    #                                 initialisation of ``shape``

    def __post_init__(self) -> None:
        check_finite(self)
        check_output_dir(self.out)
        if not self.sizes or len(self.sizes) != len(self.steps):
            raise TextdiffError(f"give one --steps per --sizes entry, got {len(self.sizes)} sizes and "
                                f"{len(self.steps)} step budgets")
        if any(b <= a for a, b in zip(self.sizes, self.sizes[1:], strict=False)) or self.sizes[0] < 2:
            raise TextdiffError(f"sizes must be ascending and at least 2, got {self.sizes}")
        if min(self.steps) < 1 or self.points < 1 or self.first_point < 1:
            raise TextdiffError(f"steps, points and first-point must be at least 1, got {self.steps}, {self.points}, "
                                f"{self.first_point}")
        if self.first_point > min(self.steps):
            raise TextdiffError(f"first-point {self.first_point} is past the smallest budget ({min(self.steps)} steps)")
        if self.test_size < 0 or self.test_size == 1:
            raise TextdiffError(f"test-size must be 0 (none) or at least 2, got {self.test_size}")
        if self.val_size < 2 or self.val_samples < 1:
            raise TextdiffError(f"val-size must be at least 2 and val-samples at least 1, got {self.val_size}, "
                                f"{self.val_samples}")
        if not 0.0 <= self.control_mask < 1.0:
            raise TextdiffError(f"control-mask must be in [0, 1), got {self.control_mask}")
        if set(self.control_sizes) - set(self.sizes):
            raise TextdiffError(f"control-sizes {self.control_sizes} must be among the sizes {self.sizes}")
        if self.train.conditioning != "joint":
            raise TextdiffError("the crossover reads both classifiers, so its twins train with --conditioning joint")
        if self.start is not None:
            self._check_start()
            self.shape = ModelShape()  # unused: the start checkpoints' own architecture (recorded as the default)

    def _check_start(self) -> None:
        if len(self.start) != 2:
            raise TextdiffError(f"--start takes two checkpoints (diffusion,ar), got {len(self.start)}")
        if self.tokenizer:
            raise TextdiffError("--start continues trained checkpoints with their own tokenizers; drop --tokenizer")
        for path, kind in zip(self.start, TWINS, strict=True):
            meta = Path(path).expanduser() / "textdiff.json"
            if not meta.is_file():
                raise TextdiffError(f"--start {path} is not a textdiff checkpoint (no textdiff.json)")
            record = json.loads(meta.read_text()).get("config") or {}
            if record.get("objective") != kind:
                order = "first" if kind == "diffusion" else "second"
                raise TextdiffError(f"--start wants the {kind} checkpoint {order}; {path} was trained with objective "
                                    f"{record.get('objective')!r}")
            if record.get("conditioning") != "joint":
                raise TextdiffError(f"--start {path} was trained with conditioning {record.get('conditioning')!r}; "
                                    "both readings need a joint-conditioned checkpoint")

    def to_dict(self) -> dict:
        return asdict(self) | {"train": self.train.to_dict()}

    def runs(self, size: int) -> tuple[str, ...]:
        """The runs of a size: both twins, and the control arm where it applies."""
        control = self.control_mask > 0 and (not self.control_sizes or size in self.control_sizes)
        return RUNS if control else TWINS

    @classmethod
    def from_dict(cls, record: dict) -> CrossoverConfig:
        """The config crossover.json recorded."""
        return cls(**record | {"train": TrainConfig.from_record(record["train"]),
                               "shape": ModelShape(**record["shape"])})


# TrainConfig fields each run of the grid sets for itself (``_run_config``): not flags of ``crossover``
PER_RUN = {"out", "objective", "model", "steps", "epochs", "resume", "stop_after", "conditioning", "max_samples",
           "eval_every", "eval_epochs", "eval_size", "eval_samples", "input_mask_prob"}


def command_line(config: CrossoverConfig) -> str:
    """The ``crossover`` command that repeats this grid exactly, every setting spelled out."""
    s = config.shape
    args = ["python", "train_cli.py", "crossover", "--sizes", ",".join(map(str, config.sizes)),
            "--steps", ",".join(map(str, config.steps)), "--points", str(config.points),
            "--first-point", str(config.first_point), "--val-size", str(config.val_size),
            "--val-samples", str(config.val_samples)]
    if not config.start:  # start checkpoints bring their own architecture and tokenizer
        args += ["--layers", str(s.layers), "--width", str(s.width), "--heads", str(s.heads), "--vocab-size",
                 str(s.vocab_size)]
    args += ["--tokenizer", config.tokenizer] if config.tokenizer else []
    if config.control_mask:
        args += ["--control-mask", str(config.control_mask)]
        args += ["--control-sizes", ",".join(map(str, config.control_sizes))] if config.control_sizes else []
    args += ["--val-data", ",".join(config.val_data)] if config.val_data else []
    args += ["--test-size", str(config.test_size)] if config.test_size else []
    args += ["--start", ",".join(config.start)] if config.start else []
    args += config.train.to_args(skip=lambda name: name in PER_RUN) + ["--out", config.out]
    return shlex.join(args)


def validation_steps(first: int, total: int, points: int) -> list[int]:
    """Log-spaced steps from ``first`` to ``total`` (both included; repeats after rounding dropped)."""
    if points == 1 or first >= total:
        return [total]
    return sorted({int(round(s)) for s in np.geomspace(first, total, points)} | {total})


# ----------------------------------------------------------------------------------------------------- from scratch


def train_tokenizer(texts: list[str], vocab_size: int, words: list[str]):
    """A lower-cased WordPiece tokenizer (``tokenizers.Tokenizer``) trained on ``texts``, in BERT's layout ([CLS] text
    [SEP], [MASK]); ``words`` (the class words) are made single tokens, so that the class word can be masked or
    predicted. Its trainer breaks ties between equally frequent merges in hash order, so two trainings on the same
    texts can differ in a few tokens: a grid that must be reproduced exactly names its tokenizer file."""
    # deferred: only tokenizer training needs it
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    missing = [w for w in words if tok.token_to_id(w) is None]
    if missing:
        tok.add_tokens(missing)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def wrap_tokenizer(tok):
    """A ``tokenizers.Tokenizer`` as the transformers tokenizer every scorer takes."""
    # deferred: transformers takes seconds to import
    from transformers import BertTokenizerFast

    missing = [t for t in SPECIALS if tok.token_to_id(t) is None]
    if missing:
        raise TextdiffError(f"the tokenizer lacks {', '.join(missing)}; a crossover tokenizer has BERT's specials")
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", do_lower_case=True)


def _start_info(config: CrossoverConfig) -> dict:
    """What ``make_init`` records of ``start`` checkpoints: their parameters, vocabulary and where they are."""
    # deferred: transformers takes seconds to import
    from transformers import AutoConfig

    counts = [estimate_parameters(init_dir(config, t)) for t in TWINS]
    return {"parameters": counts[0], "parameters_ar": counts[1],
            "vocab_size": AutoConfig.from_pretrained(init_dir(config, "diffusion")).vocab_size,
            "tokenizer": "each start checkpoint's own", "start": list(config.start)}


def make_init(config: CrossoverConfig, texts: list[str], classes: list[str]) -> dict:
    """``OUT/init/{diffusion,ar}``: one random initialisation (seeded) of the shape, saved as a masked LM and as the
    same weights in a left-to-right decoder, with the tokenizer; reused when already there. With ``start``
    checkpoints nothing is made: what they are is returned."""
    # deferred: transformers takes seconds to import
    from transformers import BertConfig, BertForMaskedLM, BertLMHeadModel

    if config.start:
        return _start_info(config)
    root = Path(config.out) / "init"
    if (root / "init.json").is_file():  # written last: the twins and the tokenizer are complete
        return json.loads((root / "init.json").read_text())
    # deferred: only tokenizer training needs it
    from tokenizers import Tokenizer

    if config.tokenizer:
        try:
            tok = Tokenizer.from_file(str(Path(config.tokenizer).expanduser()))
        except Exception as exc:  # noqa: BLE001 - a missing or malformed file fails in several ways
            raise TextdiffError(f"cannot read the tokenizer {config.tokenizer} ({type(exc).__name__})") from exc
        source = f"{config.tokenizer} (WordPiece, lower-cased, trained on the reviews of the largest subset)"
    else:
        tok = train_tokenizer(texts, config.shape.vocab_size, [c.lower() for c in classes])
        source = f"WordPiece, lower-cased, trained here on the {len(texts)} reviews of the largest subset"
    tokenizer = wrap_tokenizer(tok)
    s = config.shape
    bert = BertConfig(vocab_size=len(tokenizer), hidden_size=s.width, num_hidden_layers=s.layers,
                      num_attention_heads=s.heads, intermediate_size=4 * s.width,
                      max_position_embeddings=max(512, config.train.max_length),
                      pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        masked = BertForMaskedLM(bert)
    causal = BertLMHeadModel(BertConfig(**bert.to_dict() | {"is_decoder": True}))
    missing, unexpected = causal.load_state_dict(masked.state_dict(), strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise TextdiffError(f"the twins' weights differ in names: {missing[:3]} {unexpected[:3]}")
    shutil.rmtree(root, ignore_errors=True)
    with quiet_transformers():
        for twin, model in (("diffusion", masked), ("ar", causal)):
            model.save_pretrained(root / twin)
            tokenizer.save_pretrained(root / twin)
    info = {"parameters": sum(p.numel() for p in masked.parameters()), "vocab_size": len(tokenizer),
            "tokenizer": source, "tokenizer_sha256": hashlib.sha256(tok.to_str().encode()).hexdigest()}
    (root / "init.json").write_text(json.dumps(info, indent=2) + "\n")
    tok.save(str(root / "tokenizer.json"))  # to name with --tokenizer when the grid is to be repeated exactly
    return info


# ----------------------------------------------------------------------------------------------------- analysis


def best_so_far(values: list[float]) -> list[int]:
    """Index of the minimum of values[: j + 1] for every j (the earlier point on ties)."""
    best, out = 0, []
    for j, v in enumerate(values):
        if v < values[best]:
            best = j
        out.append(best)
    return out


def find_crossover(diffusion: list[float], ar: list[float]) -> int | None:
    """The first validation point at which diffusion's best bound so far is below the twin's best loss so far."""
    bd, ba = best_so_far(diffusion), best_so_far(ar)
    for j in range(min(len(diffusion), len(ar))):
        if diffusion[bd[j]] < ar[ba[j]]:
            return j
    return None


def unigram_reference(tokenizer, train_texts: list[str], texts: list[str], n_tokens: list[int]) -> dict:
    """A unigram model of the training reviews (token counts plus one, over the whole vocabulary) read on the
    validation windows: per text the NLL (nats) of its first ``n_tokens`` tokens. It is the level of a model that
    uses no context, the plateau a diffusion twin sits on before it learns to attend."""
    counts = Counter(t for ids in tokenize_texts(tokenizer, train_texts) for t in ids)
    total = sum(counts.values()) + len(tokenizer)
    nll = []
    for ids, n in zip(tokenize_texts(tokenizer, texts), n_tokens, strict=True):
        if len(ids) < n:
            raise TextdiffError(f"a validation text has {len(ids)} tokens, fewer than its window's {n}")
        nll.append(-sum(math.log((counts[t] + 1) / total) for t in ids[:n]))
    return {"nll": nll, "tokens": list(n_tokens)}


def fit_exponent(sizes: list[int], compute: list[float]) -> dict | None:
    """k of C = a U^k by least squares in log-log, with its 95% t interval; None with fewer than three points."""
    if len(sizes) < 3:
        return None
    # deferred: scipy is slow to import and only this path needs it
    from scipy import stats

    fit = stats.linregress([math.log(u) for u in sizes], [math.log(c) for c in compute])
    half = stats.t.ppf(0.975, len(sizes) - 2) * fit.stderr
    return {"k": fit.slope, "ci95": [fit.slope - half, fit.slope + half], "n": len(sizes),
            "published": PUBLISHED_EXPONENT, "sizes": sizes, "crossover_tokens": compute}


def analyse_size(size: int, plan: dict, points: dict[str, dict[int, dict]], tfidf: dict | None,
                 unique_tokens: int | None = None, unigram: dict | None = None) -> dict:
    """The results of one U: the validation points both twins have reached, as lists, each objective's best point,
    the crossover, the TF-IDF baseline and the unigram level (``unigram_reference``'s per-text values; each
    objective's best minus it, paired). ``points[twin][step]`` holds ``grid.validate``'s per-text values plus the
    point's step, epoch and tokens seen."""
    steps = sorted(set(points.get("diffusion", {})) & set(points.get("ar", {})))
    d = [points["diffusion"][s] for s in steps]
    a = [points["ar"][s] for s in steps]
    sd, sa = [summarise(p) for p in d], [summarise(p) for p in a]
    row = {"unique_reviews": size, "unique_tokens": unique_tokens, "planned_steps": plan["steps"],
           "validation_steps": plan["points"],
           "finished": bool(steps) and steps[-1] == plan["steps"],
           "steps": steps, "epochs": [p["epoch"] for p in d], "tokens_seen": [p["tokens_seen"] for p in d],
           "ar_tokens_seen": [p["tokens_seen"] for p in a]}
    for twin, summ in (("diffusion", sd), ("ar", sa)):
        for key in ("bits_per_token", "bits_per_token_ci95", "bits_per_byte", "bits_per_byte_ci95", "accuracy_bayes",
                    "accuracy_bayes_ci95", "accuracy_infill", "accuracy_infill_ci95"):
            row[f"{twin}_{key}"] = [_round(s[key]) for s in summ]
    row["best"] = {}
    for twin, summ in (("diffusion", sd), ("ar", sa)):
        if summ:
            j = best_so_far([s["bits_per_token"] for s in summ])[-1]
            row["best"][twin] = {"bits_per_token": _round(summ[j]["bits_per_token"]), "step": steps[j],
                                 "epoch": row["epochs"][j], "tokens_seen": row["tokens_seen"][j],
                                 "accuracy_bayes": summ[j]["accuracy_bayes"],
                                 "accuracy_infill": summ[j]["accuracy_infill"]}
    j = find_crossover([s["bits_per_token"] for s in sd], [s["bits_per_token"] for s in sa])
    row["crossover_tokens"] = row["tokens_seen"][j] if j is not None else None
    row["crossover"] = None
    if j is not None:
        bd = best_so_far([s["bits_per_token"] for s in sd])[j]
        ba = best_so_far([s["bits_per_token"] for s in sa])[j]
        row["crossover"] = {"step": steps[j], "epoch": row["epochs"][j], "tokens_seen": row["tokens_seen"][j],
                            "diffusion_best_step": steps[bd], "ar_best_step": steps[ba]} | {
            k: _round(v) for k, v in paired_difference(d[bd], a[ba]).items()}
    if sd and sa:
        bd, ba = best_so_far([s["bits_per_token"] for s in sd])[-1], best_so_far([s["bits_per_token"] for s in sa])[-1]
        row["best_difference"] = {k: _round(v) for k, v in paired_difference(d[bd], a[ba]).items()}
    control = [points.get(CONTROL, {}).get(s) for s in steps]
    if any(control):  # the control arm, on the twins' points (None where it has not reached one yet)
        sc = [summarise(p) if p else None for p in control]
        for key in ("bits_per_token", "bits_per_token_ci95", "bits_per_byte", "accuracy_bayes", "accuracy_infill"):
            row[f"{CONTROL}_{key}"] = [_round(x[key]) if x else None for x in sc]
        have = [j for j, x in enumerate(sc) if x]
        j = have[best_so_far([sc[i]["bits_per_token"] for i in have])[-1]]
        row["best"][CONTROL] = {"bits_per_token": _round(sc[j]["bits_per_token"]), "step": steps[j],
                                "epoch": row["epochs"][j], "tokens_seen": row["tokens_seen"][j],
                                "accuracy_bayes": sc[j]["accuracy_bayes"], "accuracy_infill": sc[j]["accuracy_infill"]}
        bd = best_so_far([x["bits_per_token"] for x in sd])[-1]
        row["control_difference"] = {k: _round(v) for k, v in paired_difference(d[bd], control[j]).items()}
    row["tfidf_accuracy"] = tfidf["accuracy"] if tfidf else None
    row["tfidf_accuracy_ci95"] = tfidf["ci95"] if tfidf else None
    if unigram and sd and sa:
        rate, ci = ratio_interval([x * BITS for x in unigram["nll"]], unigram["tokens"])
        row["unigram"] = {"bits_per_token": _round(rate), "ci95": _round(ci)}
        for twin, summ, texts in (("diffusion", sd, d), ("ar", sa, a)):
            j = best_so_far([s["bits_per_token"] for s in summ])[-1]
            row["unigram"][f"{twin}_best_minus"] = {k: _round(v) for k, v in
                                                    paired_difference(texts[j], unigram).items()}
    return row


def analyse(runs: list[dict]) -> dict | None:
    """The exponent of C_crit = a U^k over the sizes that cross (``fit_exponent``), or None below three."""
    crossing = [r for r in runs if r.get("crossover_tokens")]
    return fit_exponent([r["unique_reviews"] for r in crossing], [r["crossover_tokens"] for r in crossing])


def _round(value):
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def tfidf_accuracy(train_texts: list[str], train_labels: list[int], texts: list[str], labels: list[int]) -> dict:
    """TF-IDF + logistic regression (``baseline.SETTINGS``) fitted on the U labelled reviews, read on validation.
    ``min_df`` is 1 below 200 reviews, where 2 would leave too few features."""
    # deferred: scikit-learn is slow to import and only this path needs it
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    s = SETTINGS
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=s["ngram_range"], min_df=s["min_df"] if len(train_texts) >= 200 else 1,
                        max_features=s["max_features"], sublinear_tf=s["sublinear_tf"]),
        LogisticRegression(C=s["C"], max_iter=2000))
    pipeline.fit(train_texts, train_labels)
    right = int(sum(int(p == y) for p, y in zip(pipeline.predict(texts), labels, strict=True)))
    return {"accuracy": right / len(labels), "ci95": list(wilson_interval(right, len(labels))), "n": len(labels)}


# ------------------------------------------------------------------------------------------------------ the grid


def plan(config: CrossoverConfig, seconds_per_step: dict | None = None) -> list[dict]:
    """Per size: budget in steps, validation points, epochs, and (given measured s/step per twin) hours."""
    rows = []
    for size, steps in zip(config.sizes, config.steps, strict=True):
        per_step = config.train.batch_size * config.train.grad_accum
        row = {"unique_reviews": size, "steps": steps, "points": validation_steps(config.first_point, steps,
                                                                                   config.points),
               "epochs": round(steps * per_step / size, 2), "sequences": steps * per_step,
               "tokens_at_most": steps * per_step * config.train.max_length}
        if seconds_per_step:
            per_step = sum(seconds_per_step[t] for t in TWINS if t in seconds_per_step)
            per_step += seconds_per_step.get("ar", 0.0) if CONTROL in config.runs(size) else 0.0
            row["hours_training"] = round(steps * per_step / 3600, 2)
        row["runs"] = list(config.runs(size))
        rows.append(row)
    return rows


def measure_step_seconds(config: CrossoverConfig, steps: int = 6) -> dict:
    """Seconds per optimizer step of each twin, from a throw-away ``train`` run of ``steps`` steps on the smallest
    subset (the loop's own clock, without loading or saving; the first step's warm-up included)."""
    out, measured = Path(config.out) / ".probe", {}
    for twin in TWINS:
        shutil.rmtree(out / twin, ignore_errors=True)
        run = replace(_run_config(config, twin, config.sizes[0], steps), out=str(out / twin), resume=False,
                      save_every=0, log_every=steps)
        train(run, progress=False)
        measured[twin] = round(CheckpointMeta.read(out / twin).raw["train_time_s"] / steps, 4)
    shutil.rmtree(out, ignore_errors=True)
    return measured


GROWABLE_SCHEDULES = ("constant", "constant_with_warmup")  # the learning rate never depends on the step budget


def budgets_may_grow(old: list[int], config: CrossoverConfig) -> bool:
    """Whether a grid's step budgets may be raised to ``config.steps``: none lower, and an lr schedule (with a fixed
    warm-up) under which a run to more steps is, step for step, the run it continues, so nothing is retrained."""
    t = config.train
    return (len(old) == len(config.steps) and all(b >= a for a, b in zip(old, config.steps, strict=True))
            and t.lr_schedule in GROWABLE_SCHEDULES and t.warmup_steps is not None)


def measured_rates(history: list[dict], key: str = "seconds_per_step") -> dict | None:
    """Median ``key`` per objective over the grid's training turns of at least 10 steps (the control arm counts as
    left to right); None until both objectives have one."""
    by: dict[str, list[float]] = {}
    for turn in history:
        if key in turn and turn["to_step"] - turn["from_step"] >= 10:
            by.setdefault("diffusion" if turn["twin"] == "diffusion" else "ar", []).append(turn[key])
    return {t: round(statistics.median(v), 4) for t, v in by.items()} if len(by) == 2 else None


def _run_config(config: CrossoverConfig, twin: str, size: int, total: int) -> TrainConfig:
    """One run of the grid: ``twin`` (a member of ``RUNS``) on the first ``size`` reviews for ``total`` steps."""
    objective = "ar" if twin == CONTROL else twin
    return replace(config.train, out=str(size_dir(Path(config.out), size) / twin), objective=objective,
                   model=str(init_dir(config, objective)), steps=total, epochs=None, max_samples=size,
                   resume=True, stop_after=None, eval_every=0, eval_epochs=False,
                   input_mask_prob=config.control_mask if twin == CONTROL else 0.0)


def _point_source(run: Path, step: int, total: int) -> Path | None:
    """The weights of a run at ``step``: its stop's checkpoint, or the final model at the last step."""
    if step == total and CheckpointMeta.read(run).steps == total:
        return run
    path = run / "checkpoints" / f"step-{step:07d}"
    return path if (path / "config.json").is_file() else None


def _tokens_seen(source: Path) -> int:
    state = source / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text())["tokens_seen"])
    return int(CheckpointMeta.read(source).tokens_seen or 0)


def run_crossover(config: CrossoverConfig, until_size: int | None = None, probe_steps: int = 6,
                  progress: bool = True, say=print) -> dict:
    """Run (or continue) the grid: every size in turn, smallest first; at each validation point the diffusion twin
    then the left-to-right twin trains to it and is scored; crossover.json is rewritten after every point.

    ``until_size``: stop after that size (run again to go on). ``probe_steps``: steps of the s/step measurement
    printed with the plan before training (0: none). Returns what crossover.json holds.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TextdiffError("the crossover runs in one process; launch it with python, not torchrun")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    results = _resumable(config, out)
    largest = subset(config, config.sizes[-1])
    if len(largest) < config.sizes[-1]:
        raise TextdiffError(f"the training split has {len(largest)} reviews, fewer than the largest size "
                            f"{config.sizes[-1]}")
    init = make_init(config, largest.texts, largest.classes)
    measured = results.get("probe_seconds_per_step")
    if measured is None and probe_steps:
        measured = measure_step_seconds(config, probe_steps)
    rates = measured_rates(results.get("history", [])) or measured  # the turns so far say more than the probe
    grid = _Grid(config, out, largest.classes, progress, say)
    grid.results = _fresh_results(config, results, init, measured, rates, len(grid.validation))
    _say_plan(config, grid.results, say)
    for index, (size, total) in enumerate(zip(config.sizes, config.steps, strict=True)):
        if until_size is not None and size > until_size:
            break
        grid.run_size(size, total, grid.results["plan"][index])
    grid.save()
    return grid.results


def _resumable(config: CrossoverConfig, out: Path) -> dict:
    """What ``out`` holds of a grid with these settings ({} for none); refuses a grid with other settings. A raised
    budget is the one change a grid takes, and it is recorded."""
    results, wanted = read_results(out), json.loads(json.dumps(config.to_dict()))
    if not results:
        return results
    # settings a grid recorded before they existed take their defaults
    stored = json.loads(json.dumps(CrossoverConfig.from_dict(results["config"]).to_dict()))
    changed = sorted(k for k in wanted if k not in CONTROL_SETTINGS and stored.get(k) != wanted[k])
    if stored["control_mask"] and stored["control_mask"] != wanted["control_mask"]:
        changed.append("control_mask")
    if changed == ["steps"] and budgets_may_grow(stored["steps"], config):
        changed = []
        results.setdefault("budget_history", []).append({"from": stored["steps"], "to": config.steps, "at":
                                                         datetime.now(UTC).isoformat(timespec="seconds")})
    if changed:
        raise TextdiffError(f"{out} holds a crossover grid with other settings ({', '.join(changed)}); rerun it with "
                            f"the same flags, or give another --out")
    return results


def _fresh_results(config: CrossoverConfig, results: dict, init: dict, measured: dict | None,
                   rates: dict | None, validation_n: int) -> dict:
    """The record this run writes: its settings and plan, and what earlier runs of the grid measured."""
    return {"command": command_line(config), "config": config.to_dict(), "model": init,
            "probe_seconds_per_step": measured, "plan_seconds_per_step": rates, "plan": plan(config, rates),
            "threads": torch.get_num_threads(),
            "validation": {"split": "validation", "n": validation_n, "samples": config.val_samples,
                           "window": "the first window of each review (max_length tokens)",
                           "likelihood": "each text given its own class word"},
            "started_at": results.get("started_at") or datetime.now(UTC).isoformat(timespec="seconds"),
            "history": results.get("history", []), "runs": results.get("runs", []),
            "budget_history": results.get("budget_history", []),
            "skipped_points": results.get("skipped_points", []),
            "control_arm": (f"ran: the left-to-right twin with its text inputs masked at rate {config.control_mask}"
                            f" for U = {', '.join(map(str, [u for u in config.sizes if CONTROL in config.runs(u)]))}"
                            if config.control_mask else "not run")}


def _say_plan(config: CrossoverConfig, results: dict, say) -> None:
    """The model, the measured seconds per step and the plan per size, before any training."""
    init, measured, rates = results["model"], results["probe_seconds_per_step"], results["plan_seconds_per_step"]
    say(f"model: {init['parameters']:,} parameters, vocabulary {init['vocab_size']}; probe s/step: "
        f"{measured or 'not measured'} ({torch.get_num_threads()} threads)")
    if rates is not measured:
        say(f"plan: at the median s/step of the grid's turns so far (wall clock, machine shared): {rates}")
    total_h = 0.0
    for row in results["plan"]:
        hours = row.get("hours_training")
        total_h += hours or 0.0
        say(f"plan: U={row['unique_reviews']}: {row['steps']} steps per twin, {row['epochs']} epochs, "
            f"{len(row['points'])} validation points" + (f", ~{hours} h of training" if hours else ""))
    if total_h:
        say(f"plan: ~{total_h:.1f} h of training in all, plus validation")
    cpu = measured_rates(results["history"], "cpu_seconds_per_step")
    if cpu:
        cpu_h = sum(r.get("hours_training") or 0.0 for r in plan(config, cpu))
        say(f"plan: ~{cpu_h:.1f} CPU-hours of training at the median CPU s/step so far ({cpu}, "
            f"{torch.get_num_threads()} thread(s))")


class _Grid:
    """One run of the grid: the record it rewrites after every point, and what every size shares (the tokenizer,
    the validation and test reviews, the class prompts)."""

    def __init__(self, config: CrossoverConfig, out: Path, classes: list[str], progress: bool, say) -> None:
        from transformers import AutoTokenizer  # deferred: transformers takes seconds to import

        self.config, self.out, self.results, self.progress, self.say = config, out, {}, progress, say
        self.validation = validation_set(config)
        self.test = validation_set(config, "test") if config.test_size else None
        self.prompts = [format_prompt(config.train.class_prompt, c) for c in classes]
        self.tokenizer = AutoTokenizer.from_pretrained(init_dir(config, "diffusion"))

    def save(self) -> None:
        results, config = self.results, self.config
        results["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["finished"] = len(results["runs"]) == len(config.sizes) and all(r["finished"] for r in results["runs"])
        results["exponent"] = analyse(results["runs"])
        write_json(self.out / RESULTS, results)

    def unigram_level(self, here: Path, train_set, points: dict) -> dict | None:
        """The unigram level on the validation windows (their token counts come with the first point)."""
        path = here / "unigram.json"
        if not path.is_file():
            first = next((p for twin in TWINS for p in points[twin].values()), None)
            if first is None:
                return None
            write_json(path, unigram_reference(self.tokenizer, train_set.texts, self.validation.texts,
                                                first["tokens"]))
        return json.loads(path.read_text())

    def run_size(self, size: int, total: int, row_plan: dict) -> None:
        """Every validation point of one size, both twins, each trained to it and scored; the row recorded after
        each point."""
        here = size_dir(self.out, size)
        here.mkdir(parents=True, exist_ok=True)
        store = here / "validation.json"
        points = json.loads(store.read_text()) if store.is_file() else {}
        points = {t: {int(s): p for s, p in points.get(t, {}).items()} for t in RUNS}
        train_set = subset(self.config, size)
        tfidf_path = here / "tfidf.json"
        if not tfidf_path.is_file():
            write_json(tfidf_path, tfidf_accuracy(train_set.texts, train_set.labels, self.validation.texts,
                                                   self.validation.labels))
        tfidf = json.loads(tfidf_path.read_text())
        unique_tokens = sum(map(len, tokenize_texts(self.tokenizer, train_set.texts)))

        def record() -> None:
            row = analyse_size(size, row_plan, points, tfidf, unique_tokens,
                               self.unigram_level(here, train_set, points))
            runs = [r for r in self.results["runs"] if r["unique_reviews"] != size] + [row]
            self.results["runs"] = sorted(runs, key=lambda r: r["unique_reviews"])
            self.save()

        record()
        for step in row_plan["points"]:
            for twin in self.config.runs(size):
                if step not in points[twin] and self.reach(here / twin, twin, size, step, total):
                    points[twin][step] = self.score(here / twin, twin, size, step, total)
                    write_json(store, {t: {str(s): p for s, p in sorted(points[t].items())} for t in RUNS
                                        if points[t]})
            record()

    def reach(self, run: Path, twin: str, size: int, step: int, total: int) -> bool:
        """Train ``twin`` of ``size`` to ``step`` (its turn recorded in the history); False when the run had passed
        that step before its budget was raised, so the point cannot be read (it is recorded as skipped)."""
        before = standing(run, total)
        if before < step:
            run_config = _run_config(self.config, twin, size, total)
            started, cpu_started = time.time(), time.process_time()
            train(replace(run_config, stop_after=step if step < total else None), progress=self.progress)
            seconds, cpu_seconds = time.time() - started, time.process_time() - cpu_started
            self.results["history"].append({"unique_reviews": size, "twin": twin, "from_step": before,
                                            "to_step": step, "seconds": round(seconds, 1),
                                            "seconds_per_step": round(seconds / (step - before), 4),
                                            "cpu_seconds_per_step": round(cpu_seconds / (step - before), 4),
                                            "threads": torch.get_num_threads()})
        if _point_source(run, step, total) is None and before > step:  # a point of a raised budget it had passed
            skip = {"unique_reviews": size, "twin": twin, "step": step,
                    "reason": f"the run stood at step {before} when its budget was raised"}
            if skip not in self.results["skipped_points"]:
                self.results["skipped_points"].append(skip)
            return False
        return True

    def score(self, run: Path, twin: str, size: int, step: int, total: int) -> dict:
        """The validation (and test) reading of ``twin`` at ``step``, per text, with its epoch and tokens seen."""
        source = _point_source(run, step, total)
        if source is None:  # a kill between a later stop and this point's validation cannot happen in order
            raise TextdiffError(f"no weights of {run} at step {step}; remove {run} to retrain that twin")
        started = time.time()
        per_text = score_point(self.config, source, self.validation, self.test, self.prompts)
        per_step = self.config.train.batch_size * self.config.train.grad_accum
        point = per_text | {"epoch": round(step * per_step / size, 3), "tokens_seen": _tokens_seen(source),
                            "validation_seconds": round(time.time() - started, 1)}
        summary = summarise(point)
        self.say(f"U={size} {twin} step {step}/{total} (epoch {point['epoch']}): "
                 f"{summary['bits_per_token']:.3f} bits/token, Bayes {summary['accuracy_bayes']:.3f}, "
                 f"infill {summary['accuracy_infill']:.3f}")
        return point
