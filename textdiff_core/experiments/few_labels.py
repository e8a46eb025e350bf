"""Few labels: does a generative reading need fewer labelled reviews than a discriminative one? (issue 48)

For n labelled reviews per class (``sizes``, log-spaced) and each seed of the subset (``seeds``), every model is
fine-tuned from the *pretrained* backbone, never from a shipped model (those saw every label):
  diffusion       ``train --objective diffusion --conditioning joint`` from ``diffusion_model`` (minilm); readings
                  ``elbo`` (Bayes over the ELBO) and ``infill`` (the class word read back)
  ar              its left-to-right twin, joint, from ``ar_model`` (minilm-ar); readings ``ar`` (exact Bayes) and
                  ``ar_infill``
  discriminative  ``train --objective discriminative``: a head on the diffusion backbone; reading ``discriminative``
  tfidf           TF-IDF + logistic regression (``baseline.SETTINGS``) fitted on the same n reviews; reading ``tfidf``
and, once, a zero-shot LM (``zero_shot``, e.g. checkpoints/smollm2-zero-shot) as a flat reference on the same test
reviews (``references`` in few_labels.json, not a point: it has no n).

Subsets: the first n per class of ``load_data``'s seeded, class-balanced round robin over the training split (what
``train --max-samples`` takes), so under one seed the subset for n is a prefix of the one for 2n. The seed is also
the training seed (data order, masks, dropout); a new head starts from the same fixed initialisation.

The budget rule, one for every trained model: at most ``steps`` optimizer steps (the cap), validated at the same
log-spaced steps (``validation_steps``) on the same ``val_size`` validation reviews (the validation split, seed 0).
Each reading keeps the step of its highest validation *accuracy* (the earliest on ties; the weights of that step are
kept aside), and a run stops early once none of its readings has improved for ``patience`` validation points
(``best_steps``, ``stops_early``). Under the default constant learning rate (after warm-up) a run stopped early is
the start of the run to the cap. The test reviews (a fixed subset of the test split, ``test_size``) are read once
per reading, with the weights validation chose, never to choose anything. Every reading sees the first window
(``max_length`` tokens) of each review; the ELBO's noise is the same for every model (seeded by the review).

The semi-supervised arm is a documented two-stage recipe, not a change to the training loop (which would need
labelled and unlabelled rows in one batch): (1) each backbone is trained once on the rest of the training split,
unlabelled (``unlabelled_steps`` steps, ``--conditioning none``: the text without a class word, for the diffusion
model and the twin alike); the pool leaves out the labelled reviews of the largest ``semi_sizes`` under every seed,
so no labelled review of the arm is in it, and one stage-1 run per backbone serves every n and seed; (2) that model
is fine-tuned on the n labelled reviews exactly as in the labelled arm. The arm's discriminative head sits on the
stage-1 diffusion encoder, so the arm separates what unlabelled text gives a generative reading from what it gives
any encoder.

Resumable units: each (n, seed, model, arm) is a directory ``OUT/n-NNNNN/seed-S/<model>-<arm>/`` whose
``result.json`` (written whole) marks it finished; a rerun skips it. Until then ``progress.json`` holds the
validation points read so far, ``run/`` the training run (continued with the loop's ``--resume``) and
``best-<reading>/`` the weights of each reading's best step. The stage-1 runs are ``OUT/unlabelled/<model>/``.
``OUT/few_labels.json`` (``command``, ``points``, the summary, the plan and the cost in CPU-hours) is rewritten
after every unit. CPU time is ``time.process_time`` of this process over each unit's training, validation and test,
summed over the invocations that worked on it (work lost to a kill since the last write is not counted).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shlex
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from textdiff_core.baseline import SETTINGS
from textdiff_core.checkpoint import CheckpointMeta, format_prompt, read_json_object
from textdiff_core.classify import class_scores, load_classifier
from textdiff_core.data import TextDataset, load_data
from textdiff_core.discriminative import first_window_logits
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import paired_difference, wilson_interval
from textdiff_core.experiments.campaign import standing
from textdiff_core.experiments.crossover import validation_steps
from textdiff_core.experiments.grid import write_json
from textdiff_core.likelihood import infill_scores
from textdiff_core.models import head_labels, load_model
from textdiff_core.settings import TrainConfig, check_finite, check_output_dir
from textdiff_core.tokens import class_slot
from textdiff_core.train import train

RESULTS = "few_labels.json"
TRAINED = ("diffusion", "ar", "discriminative")  # the models fine-tuned from the backbone
MODELS = (*TRAINED, "tfidf")
READINGS = {"diffusion": ("elbo", "infill"), "ar": ("ar", "ar_infill"), "discriminative": ("discriminative",),
            "tfidf": ("tfidf",)}
GENERATIVE = ("elbo", "infill", "ar", "ar_infill")  # the readings of a model of P(text, class)
LABELLED, SEMI = "labelled", "semi-supervised"
ARMS = (LABELLED, SEMI)
STAGE1 = {"diffusion": "diffusion", "ar": "ar", "discriminative": "diffusion"}  # semi arm: whose stage-1 run it starts
# TrainConfig fields each unit sets for itself: not flags of ``few-labels``
PER_UNIT = {"out", "objective", "model", "steps", "epochs", "resume", "stop_after", "conditioning", "max_samples",
            "seed", "eval_every", "eval_epochs", "eval_size", "eval_samples", "input_mask_prob"}
WEIGHT_STATE = ("optimizer", "scheduler", "random_states", "trainer_state")  # a checkpoint's files a best copy skips
TIMING = ("seconds", "cpu_seconds")  # point keys that differ between two runs of the same units


@dataclass
class FewLabelsConfig:
    """Every setting of a few-labels campaign; recorded in few_labels.json, and a rerun must repeat them."""

    out: str  # campaign directory: n-NNNNN/seed-S/<model>-<arm>/, unlabelled/, few_labels.json
    train: TrainConfig  # shared settings (data, batch, lr, max_length, class prompt, noise); per unit: PER_UNIT
    sizes: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128, 512, 2048])  # labelled reviews per class
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # seeds of the subset (and of its training)
    steps: int = 1000  # the step cap of every trained model
    points: int = 8  # validation points, log-spaced from first_point to the cap
    first_point: int = 10  # step of the first validation point
    patience: int = 3  # stop once no reading has improved for this many validation points
    val_size: int = 200  # validation reviews (class-balanced, fixed), the same for every model
    val_samples: int = 4  # ELBO Monte Carlo samples per review and class on validation
    test_size: int = 1000  # test reviews (class-balanced, fixed), read once per reading
    test_samples: int = 8  # ELBO Monte Carlo samples per review and class on test
    models: list[str] = field(default_factory=lambda: list(MODELS))  # which models the labelled arm has
    semi_sizes: list[int] = field(default_factory=lambda: [8, 16, 32])  # sizes that also get the semi arm
    semi_models: list[str] = field(default_factory=lambda: list(TRAINED))  # which trained models it has
    unlabelled_steps: int = 1000  # stage 1 of the semi arm: steps on the unlabelled pool, per backbone
    diffusion_model: str = "minilm"  # the pretrained backbone of diffusion and discriminative
    ar_model: str = "minilm-ar"  # the pretrained backbone of the twin
    zero_shot: str | None = None  # a zero-shot LM (directory or name) read once on the test reviews; None: none
    keep_weights: bool = False  # keep each finished unit's run and best weights (default: removed, disk is finite)

    def __post_init__(self) -> None:
        check_finite(self)
        check_output_dir(self.out)
        if not self.sizes or min(self.sizes) < 1 or any(b <= a for a, b in zip(self.sizes, self.sizes[1:],
                                                                                 strict=False)):
            raise TextdiffError(f"sizes must be ascending and at least 1 (reviews per class), got {self.sizes}")
        if not self.seeds or min(self.seeds) < 0 or len(set(self.seeds)) != len(self.seeds):
            raise TextdiffError(f"seeds must be distinct and at least 0, got {self.seeds}")
        if min(self.steps, self.points, self.first_point, self.patience, self.unlabelled_steps) < 1:
            raise TextdiffError(f"steps, points, first-point, patience and unlabelled-steps must be at least 1, got "
                                f"{self.steps}, {self.points}, {self.first_point}, {self.patience}, "
                                f"{self.unlabelled_steps}")
        if self.first_point > self.steps:
            raise TextdiffError(f"first-point {self.first_point} is past the step cap ({self.steps} steps)")
        if min(self.val_size, self.test_size) < 2 or min(self.val_samples, self.test_samples) < 1:
            raise TextdiffError(f"val-size and test-size must be at least 2 and the samples at least 1, got "
                                f"{self.val_size}, {self.test_size}, {self.val_samples}, {self.test_samples}")
        unknown = sorted(set(self.models) - set(MODELS)) + sorted(set(self.semi_models) - set(TRAINED))
        if unknown or not self.models:
            raise TextdiffError(f"unknown models {unknown or self.models}: models are among {', '.join(MODELS)}, "
                                f"semi-models among {', '.join(TRAINED)}")
        if set(self.semi_sizes) - set(self.sizes):
            raise TextdiffError(f"semi-sizes {self.semi_sizes} must be among the sizes {self.sizes}")
        if "{label}" not in self.train.class_prompt:
            raise TextdiffError(f"--class-prompt must contain {{label}}, got {self.train.class_prompt!r}")

    def to_dict(self) -> dict:
        return asdict(self) | {"train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, record: dict) -> FewLabelsConfig:
        return cls(**record | {"train": TrainConfig.from_record(record["train"])})

    @property
    def semi(self) -> list[int]:
        """The sizes of the semi-supervised arm (none without semi models)."""
        return list(self.semi_sizes) if self.semi_models else []


@dataclass(frozen=True)
class Unit:
    """One resumable point of the campaign: a model trained (or fitted) on n labelled reviews per class."""

    n: int  # labelled reviews per class
    seed: int
    model: str  # a member of MODELS
    arm: str  # a member of ARMS

    @property
    def name(self) -> str:
        return f"n-{self.n:05d}/seed-{self.seed}/{self.model}-{self.arm}"


def units(config: FewLabelsConfig) -> list[Unit]:
    """Every unit, in the order they run: the labelled arm by n (TF-IDF first at each), then the semi arm."""
    order = [Unit(n, s, m, LABELLED) for n in config.sizes for s in config.seeds
             for m in sorted(config.models, key=("tfidf", *TRAINED).index)]
    return order + [Unit(n, s, m, SEMI) for n in config.semi for s in config.seeds for m in config.semi_models]


def command_line(config: FewLabelsConfig) -> str:
    """The ``few-labels`` command that repeats this campaign exactly, every setting spelled out."""
    def join(values: list) -> str:
        return ",".join(map(str, values))

    args = ["python", "train_cli.py", "few-labels", "--sizes", join(config.sizes), "--seeds", join(config.seeds),
            "--steps", str(config.steps), "--points", str(config.points), "--first-point", str(config.first_point),
            "--patience", str(config.patience), "--val-size", str(config.val_size), "--val-samples",
            str(config.val_samples), "--test-size", str(config.test_size), "--test-samples", str(config.test_samples),
            "--models", join(config.models), "--semi-sizes", join(config.semi_sizes) or "none",
            "--semi-models", join(config.semi_models) or "none", "--unlabelled-steps", str(config.unlabelled_steps),
            "--diffusion-model", config.diffusion_model, "--ar-model", config.ar_model]
    args += ["--zero-shot", config.zero_shot] if config.zero_shot else []
    args += ["--keep-weights"] if config.keep_weights else []
    return shlex.join(args + config.train.to_args(skip=lambda name: name in PER_UNIT) + ["--out", config.out])


# ------------------------------------------------------------------------------------------- subsets and data


def subset(config: FewLabelsConfig, n: int, seed: int, n_classes: int) -> TextDataset:
    """The labelled reviews of (n, seed): n per class, the training loop's own ``max_samples`` subset."""
    t = config.train
    return load_data(t.data, "train", text_col=t.text_col, label_col=t.label_col, min_classes=2,
                     max_samples=n * n_classes, seed=seed)


def fixed_reviews(config: FewLabelsConfig, split: str) -> TextDataset:
    """The fixed validation (``val_size``) or test (``test_size``) reviews: class-balanced, seed 0, every model's."""
    t = config.train
    return load_data(t.data, split, text_col=t.text_col, label_col=t.label_col, min_classes=2,
                     max_samples=config.val_size if split == "validation" else config.test_size, seed=0)


def unlabelled_pool(config: FewLabelsConfig, train_split: TextDataset) -> list[str]:
    """The semi arm's unlabelled reviews: the training split less every labelled review of the arm (the largest
    semi size under every seed; smaller sizes are its prefixes)."""
    labelled: set[str] = set()
    for seed in config.seeds:
        labelled |= set(subset(config, max(config.semi), seed, len(train_split.classes)).texts)
    return [t for t in train_split.texts if t not in labelled]


def _labels_as(data: TextDataset, classes: list[str]) -> list[int]:
    """``data``'s labels as indices into ``classes`` (by name: two splits may list their classes apart)."""
    return [classes.index(data.classes[y]) for y in data.labels]


# ------------------------------------------------------------------------------------------- the budget rule


def best_steps(points: dict[int, dict[str, float]]) -> dict[str, int]:
    """Each reading's step of highest validation accuracy, the earliest on ties (``points[step][reading]``)."""
    steps = sorted(points)
    readings = sorted({r for p in points.values() for r in p})
    return {r: max(steps, key=lambda s: (points[s][r], -s)) for r in readings}


def stops_early(points: dict[int, dict[str, float]], patience: int) -> bool:
    """Whether no reading has improved over its best for the last ``patience`` validation points."""
    if not points:
        return False
    last = sorted(points)[-patience:] if len(points) >= patience else None
    return last is not None and all(best < last[0] for best in best_steps(points).values())


def read_correct(lm, reading: str, data: TextDataset, classes: list[str], prompts: list[str], samples: int,
                 seed: int, max_length: int) -> list[int]:
    """1 where ``reading`` of ``lm`` classifies a review of ``data`` right, else 0: the first window of each review;
    Bayes readings (``elbo``, ``ar``) pick the class of least NLL (uniform prior, no calibration), the ELBO's noise
    seeded by (seed, review index) so every model sees the same masks; infill readings the class word's arg max;
    the head its arg max."""
    labels = _labels_as(data, classes)
    if reading == "discriminative":
        names = head_labels(lm.model)
        picks = first_window_logits(lm, data.texts, max_length).argmax(-1).tolist()
        return [int(names[p] == classes[y]) for p, y in zip(picks, labels, strict=True)]
    if reading in ("infill", "ar_infill"):
        slot = class_slot(lm.tokenizer, prompts)
        return [int(infill_scores(lm, text, slot, max_length, max_windows=1).log_posteriors[0].argmax().item() == y)
                for text, y in zip(data.texts, labels, strict=True)]
    correct = []
    for i, (text, y) in enumerate(zip(data.texts, labels, strict=True)):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        scores = class_scores(lm, text, prompts, samples, generator, max_length, max_windows=1,
                              method="elbo" if reading == "elbo" else "ar")
        correct.append(int(min(range(len(scores)), key=lambda c: scores[c].nll) == y))
    return correct


def tfidf_correct(train_set: TextDataset, reviews: list[TextDataset], classes: list[str]) -> list[list[int]]:
    """TF-IDF + logistic regression (``baseline.SETTINGS``; ``min_df`` 1 below 200 reviews, where 2 leaves too few
    features) fitted on ``train_set``, read on each of ``reviews``."""
    # deferred: scikit-learn is slow to import and only this path needs it
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    s = SETTINGS
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=s["ngram_range"], min_df=s["min_df"] if len(train_set) >= 200 else 1,
                        max_features=s["max_features"], sublinear_tf=s["sublinear_tf"]),
        LogisticRegression(C=s["C"], max_iter=2000))
    pipeline.fit(train_set.texts, _labels_as(train_set, classes))
    return [[int(p == y) for p, y in zip(pipeline.predict(d.texts), _labels_as(d, classes), strict=True)]
            for d in reviews]


# ------------------------------------------------------------------------------------------- the analysis


def _accuracy(correct: list[int]) -> dict:
    right, n = sum(correct), len(correct)
    return {"accuracy": right / n, "ci95": [round(x, 5) for x in wilson_interval(right, n)], "n": n}


def curve(points: list[dict], arm: str = LABELLED) -> list[dict]:
    """Per n of ``arm`` (ascending), each reading's mean test and validation accuracy over its seeds, the best
    generative reading (chosen by mean *validation* accuracy, never by test) and whether its mean test accuracy is
    above the discriminative head's (None without both)."""
    rows = []
    for n in sorted({p["n_per_class"] for p in points if p["arm"] == arm}):
        here = [p for p in points if p["arm"] == arm and p["n_per_class"] == n]
        readings = {}
        for reading in sorted({p["reading"] for p in here}):
            mine = [p for p in here if p["reading"] == reading]
            val = [p["validation_accuracy"] for p in mine if p.get("validation_accuracy") is not None]
            readings[reading] = {"accuracy": statistics.fmean(p["accuracy"] for p in mine), "seeds": len(mine),
                                 "validation_accuracy": statistics.fmean(val) if val else None}
        generative = [r for r in GENERATIVE if r in readings and readings[r]["validation_accuracy"] is not None]
        best = max(generative, key=lambda r: readings[r]["validation_accuracy"]) if generative else None
        head = readings.get("discriminative")
        wins = None if best is None or head is None else readings[best]["accuracy"] > head["accuracy"]
        rows.append({"n_per_class": n, "readings": readings, "best_generative": best, "generative_wins": wins})
    return rows


def generative_wins_below(points: list[dict], arm: str = LABELLED) -> int | None:
    """The n below which the best generative reading beats the discriminative head (mean test accuracy over seeds):
    the first n at which it no longer does, when it does at every smaller n. None when there is no such n: it does
    not win at the smallest n, or it wins at every n measured (``few_label_verdict`` tells the two apart)."""
    return few_label_verdict(points, arm)["wins_below"]


def few_label_verdict(points: list[dict], arm: str = LABELLED) -> dict:
    """What a report says of ``arm``: ``wins_below`` (see ``generative_wins_below``), ``wins_at`` (every n where the
    best generative reading is ahead), and whether that is every n or none of those compared."""
    rows = [r for r in curve(points, arm) if r["generative_wins"] is not None]
    wins_at = [r["n_per_class"] for r in rows if r["generative_wins"]]
    below = None
    if rows and rows[0]["generative_wins"]:
        below = next((r["n_per_class"] for r in rows if not r["generative_wins"]), None)
    return {"arm": arm, "compared_at": [r["n_per_class"] for r in rows], "wins_at": wins_at, "wins_below": below,
            "wins_at_every_n": bool(rows) and len(wins_at) == len(rows), "wins_at_no_n": bool(rows) and not wins_at}


def paired_by_n(results: list[dict], arm: str = LABELLED) -> list[dict]:
    """Per n of ``arm``: the best generative reading (by validation accuracy, per seed) minus the discriminative
    head on the same test reviews (``evaluate.paired_difference``: the interval and McNemar's exact p), per seed and
    pooled over seeds (each (seed, review) a pair)."""
    by = {(r["n_per_class"], r["seed"], r["model"]): r for r in results if r.get("arm") == arm}
    rows = []
    for n in sorted({k[0] for k in by}):
        seeds, pooled_a, pooled_b = [], [], []
        for seed in sorted({k[1] for k in by if k[0] == n}):
            head = by.get((n, seed, "discriminative"))
            readings = [(r, by[(n, seed, m)]) for m in ("diffusion", "ar") if (n, seed, m) in by
                        for r in READINGS[m]]
            if head is None or not readings:
                continue
            reading, unit = max(readings, key=lambda ru: (ru[1]["best"][ru[0]]["validation_accuracy"],
                                                          -GENERATIVE.index(ru[0])))
            a, b = unit["test"][reading]["correct"], head["test"]["discriminative"]["correct"]
            seeds.append({"seed": seed, "reading": reading} | _rounded(paired_difference(a, b)))
            pooled_a, pooled_b = pooled_a + a, pooled_b + b
        if seeds:
            rows.append({"n_per_class": n, "seeds": seeds, "pooled": _rounded(paired_difference(pooled_a, pooled_b))})
    return rows


def semi_minus_labelled(results: list[dict]) -> list[dict]:
    """Per n and reading of the semi arm: its test accuracy minus the labelled arm's (same n, seed and test reviews),
    pooled over the seeds both arms have: how much the unlabelled reviews move each reading."""
    by = {(r["n_per_class"], r["seed"], r["model"], r["arm"]): r for r in results}
    rows = []
    for n, model in sorted({(k[0], k[2]) for k in by if k[3] == SEMI}):
        pairs = [(by[k], by[(k[0], k[1], k[2], LABELLED)]) for k in sorted(by)
                 if (k[0], k[2], k[3]) == (n, model, SEMI) and (k[0], k[1], k[2], LABELLED) in by]
        for reading in READINGS[model] if pairs else ():
            a = [x for semi, _ in pairs for x in semi["test"][reading]["correct"]]
            b = [x for _, labelled in pairs for x in labelled["test"][reading]["correct"]]
            rows.append({"n_per_class": n, "reading": reading, "seeds": len(pairs)} | _rounded(paired_difference(a, b)))
    return rows


def _rounded(d: dict) -> dict:
    return {k: round(v, 5) if isinstance(v, float) else [round(x, 5) for x in v] if isinstance(v, list) else v
            for k, v in d.items()}


def points_of(result: dict) -> list[dict]:
    """The points (one per reading) of a finished unit's result."""
    out = []
    for reading, test in result["test"].items():
        best = result["best"].get(reading, {})
        out.append({"n_per_class": result["n_per_class"], "seed": result["seed"], "reading": reading,
                    "accuracy": round(test["accuracy"], 5), "arm": result["arm"], "model": result["model"],
                    "ci95": test["ci95"], "test_n": test["n"],
                    "validation_accuracy": best.get("validation_accuracy"), "validation_n": result["validation_n"],
                    "step": best.get("step"), "steps_trained": result.get("steps_trained"),
                    "stopped_early": result.get("stopped_early"), "cap": result.get("cap"),
                    "labelled_reviews": result["labelled_reviews"],
                    "unlabelled_reviews": result.get("unlabelled_reviews", 0),
                    "seconds": result["seconds"], "cpu_seconds": result["cpu_seconds"]})
    return out


# ------------------------------------------------------------------------------------------- the plan


def plan(config: FewLabelsConfig, n_classes: int, probe: dict | None = None) -> dict:
    """The units and their budgets; with a probe's s/step and s/review, the most hours they can take (every trained
    model to the cap: early stopping ends most runs at small n sooner)."""
    all_units = units(config)
    trained = [u for u in all_units if u.model in TRAINED]
    stage1 = sorted({STAGE1[m] for m in config.semi_models}) if config.semi else []
    per_step = config.train.batch_size * config.train.grad_accum
    out = {"sizes": config.sizes, "seeds": config.seeds, "cap": config.steps,
           "validation_steps": validation_steps(config.first_point, config.steps, config.points),
           "patience": config.patience, "validation_reviews": config.val_size, "test_reviews": config.test_size,
           "units": {"trained_labelled": sum(u.arm == LABELLED for u in trained),
                     "trained_semi_supervised": sum(u.arm == SEMI for u in trained),
                     "unlabelled_pretraining": len(stage1), "tfidf": sum(u.model == "tfidf" for u in all_units),
                     "zero_shot": int(bool(config.zero_shot))},
           "unlabelled_steps": config.unlabelled_steps if stage1 else 0,
           "epochs_at_cap": {n: round(config.steps * per_step / (n * n_classes), 2) for n in config.sizes}}
    if probe:
        points, ratio = len(out["validation_steps"]), probe["cpu_per_wall"]
        seconds = {}
        for model in TRAINED:
            if model in probe["seconds_per_step"]:
                val = sum(probe["seconds_per_review"][r] for r in READINGS[model])
                test = sum(probe["seconds_per_review"][r] * (config.test_samples / config.val_samples
                                                             if r == "elbo" else 1.0) for r in READINGS[model])
                seconds[model] = (config.steps * probe["seconds_per_step"][model] + points * config.val_size * val
                                  + config.test_size * test)
        wall = sum(seconds.get(u.model, 0.0) for u in trained)
        wall += sum(config.unlabelled_steps * probe["seconds_per_step"].get(m, 0.0) for m in stage1)
        wall += probe.get("zero_shot_seconds_per_review", 0.0) * config.test_size
        out |= {"at_most_hours_per_unit": {m: round(s / 3600, 3) for m, s in seconds.items()},
                "at_most_hours": round(wall / 3600, 2), "at_most_cpu_hours": round(wall * ratio / 3600, 2)}
    return out


def say_plan(p: dict, probe: dict | None, say) -> None:
    u = p["units"]
    say(f"plan: n per class {','.join(map(str, p['sizes']))} x seeds {','.join(map(str, p['seeds']))}: "
        f"{u['trained_labelled']} labelled and {u['trained_semi_supervised']} semi-supervised trained units, "
        f"{u['unlabelled_pretraining']} unlabelled pre-training run(s) of {p['unlabelled_steps']} steps, "
        f"{u['tfidf']} TF-IDF fits" + (", one zero-shot reference" if u["zero_shot"] else ""))
    say(f"plan: every trained model at most {p['cap']} steps (epochs at the cap by n: {p['epochs_at_cap']}), "
        f"validated at steps {p['validation_steps']} on {p['validation_reviews']} reviews, stopped after "
        f"{p['patience']} points without a better one; {p['test_reviews']} test reviews")
    if probe:
        say(f"probe: s/step {probe['seconds_per_step']} ({probe['threads']} threads, {probe['cpu_per_wall']} CPU s "
            f"per wall s); s/review on validation {probe['seconds_per_review']}")
        say(f"plan: at most {p['at_most_hours']} h wall, {p['at_most_cpu_hours']} CPU-hours (hours per unit at "
            f"most: {p['at_most_hours_per_unit']}); early stopping ends most small-n runs sooner")


# ------------------------------------------------------------------------------------------- running


class _Clock:
    """Wall and CPU seconds since it was made (``time.process_time``: every thread of this process)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.time(), time.process_time()

    def lap(self) -> tuple[float, float]:
        now, cpu = time.time(), time.process_time()
        lap = (now - self.wall, cpu - self.cpu)
        self.wall, self.cpu = now, cpu
        return lap


def read_results(out: str | Path) -> dict:
    """few_labels.json of a campaign directory (or the file), {} when there is none; one line when broken."""
    path = Path(out)
    path = path / RESULTS if path.is_dir() else path
    if not path.is_file():
        return {}
    data = read_json_object(path)
    if not isinstance(data.get("points"), list):
        raise TextdiffError(f"{path} is not a few-labels record (a JSON object with its points)")
    return data


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _point_source(run: Path, step: int, cap: int) -> Path:
    """The weights of a run at ``step``: its stop's checkpoint, or the final model at the cap."""
    if step == cap and CheckpointMeta.read(run).steps == cap:
        return run
    path = run / "checkpoints" / f"step-{step:07d}"
    if not (path / "config.json").is_file():
        raise TextdiffError(f"no weights of {run} at step {step}; remove {run.parent} to train that unit again")
    return path


def _keep_weights(source: Path, dest: Path) -> None:
    """Copy the weights and tokenizer of ``source`` (a checkpoint or a final model) to ``dest``, whole or not at
    all; the optimizer state and subdirectories stay behind."""
    tmp = dest.parent / f".tmp-{dest.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in source.iterdir():
        if f.is_file() and not f.name.startswith(WEIGHT_STATE):
            shutil.copy2(f, tmp / f.name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


class _Campaign:
    """One invocation: the fixed reviews, the class prompts, and the record it rewrites after every unit."""

    def __init__(self, config: FewLabelsConfig, progress: bool, say) -> None:
        self.config, self.out, self.progress, self.say = config, Path(config.out), progress, say
        t = config.train
        self.train_split = load_data(t.data, "train", text_col=t.text_col, label_col=t.label_col, min_classes=2)
        self.classes = list(self.train_split.classes)
        self.prompts = [format_prompt(t.class_prompt, c) for c in self.classes]
        counts = self.train_split.class_counts()
        if min(counts.values()) < config.sizes[-1]:
            raise TextdiffError(f"the training split has {min(counts.values())} reviews of its rarest class, fewer "
                                f"than the largest size {config.sizes[-1]} per class")
        self.validation, self.test = fixed_reviews(config, "validation"), fixed_reviews(config, "test")
        self.val_steps = validation_steps(config.first_point, config.steps, config.points)
        self.record: dict = {}

    # ---- the units

    def unit_config(self, unit: Unit, out: Path) -> TrainConfig:
        """The ``train`` run of a trained unit: the shared settings, the cap, the unit's subset and seed."""
        c = self.config
        start = {"diffusion": c.diffusion_model, "ar": c.ar_model, "discriminative": c.diffusion_model}[unit.model]
        if unit.arm == SEMI:
            start = str(self.stage1_dir(STAGE1[unit.model]))
        return replace(c.train, out=str(out), objective=unit.model, model=start, steps=c.steps, epochs=None,
                       conditioning="none" if unit.model == "discriminative" else "joint",
                       max_samples=unit.n * len(self.classes), seed=unit.seed, resume=True, stop_after=None,
                       eval_every=0, eval_epochs=False, input_mask_prob=0.0)

    def stage1_dir(self, model: str) -> Path:
        return self.out / "unlabelled" / model

    def stage1_config(self, model: str) -> TrainConfig:
        """Stage 1 of the semi arm: the backbone on the unlabelled pool, the text without a class word."""
        c = self.config
        return replace(c.train, out=str(self.stage1_dir(model)), objective=model,
                       model=c.diffusion_model if model == "diffusion" else c.ar_model, conditioning="none",
                       data=[str(self.out / "unlabelled" / "pool.csv")], text_col="text", label_col=None,
                       max_samples=None, steps=c.unlabelled_steps, epochs=None, seed=0, resume=True,
                       stop_after=None, eval_every=0, eval_epochs=False, input_mask_prob=0.0)

    def run_stage1(self, model: str) -> dict:
        """Train (or continue) one stage-1 run; its unit.json records what it cost and what it saw."""
        here = self.stage1_dir(model)
        done = _read_json(here / "unit.json")
        if done:
            return done
        pool = self.out / "unlabelled" / "pool.csv"
        if not (self.out / "unlabelled" / "pool.json").is_file():
            texts = unlabelled_pool(self.config, self.train_split)
            pool.parent.mkdir(parents=True, exist_ok=True)
            tmp = pool.with_suffix(".tmp")
            with tmp.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["text", "split"])
                writer.writerows([t, "train"] for t in texts)
            tmp.rename(pool)
            write_json(pool.parent / "pool.json", {"reviews": len(texts), "sha256": hashlib.sha256(
                "\n".join(texts).encode()).hexdigest(), "rule": "the training split less the labelled reviews of "
                "the largest semi size under every seed"})
        clock, spent = _Clock(), _read_json(here.parent / f"{model}.progress.json") or {"seconds": 0.0,
                                                                                         "cpu_seconds": 0.0}
        self.say(f"unlabelled pre-training: {model}, {self.config.unlabelled_steps} steps")
        try:
            if standing(here, self.config.unlabelled_steps) < self.config.unlabelled_steps:
                train(self.stage1_config(model), progress=self.progress)
        finally:
            wall, cpu = clock.lap()
            spent = {"seconds": spent["seconds"] + wall, "cpu_seconds": spent["cpu_seconds"] + cpu}
            write_json(here.parent / f"{model}.progress.json", spent)
        shutil.rmtree(here / "checkpoints", ignore_errors=True)  # finished: the final model is what the arm starts
        done = {"model": model, "steps": self.config.unlabelled_steps,
                "unlabelled_reviews": json.loads((pool.parent / "pool.json").read_text())["reviews"],
                "seconds": round(spent["seconds"], 1), "cpu_seconds": round(spent["cpu_seconds"], 1)}
        write_json(here / "unit.json", done)
        return done

    def run_unit(self, unit: Unit) -> dict:
        """A unit's result.json, made now if it is not there yet."""
        here = self.out / unit.name
        done = _read_json(here / "result.json")
        if done:
            return done
        here.mkdir(parents=True, exist_ok=True)
        base = {"unit": unit.name, "n_per_class": unit.n, "seed": unit.seed, "model": unit.model, "arm": unit.arm,
                "labelled_reviews": unit.n * len(self.classes), "validation_n": len(self.validation)}
        if unit.arm == SEMI:
            base["unlabelled_reviews"] = self.run_stage1(STAGE1[unit.model])["unlabelled_reviews"]
        result = base | (self._fit_tfidf(unit) if unit.model == "tfidf" else self._train_unit(unit, here))
        result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_json(here / "result.json", result)
        if not self.config.keep_weights:
            for path in [here / "run", *here.glob("best-*")]:
                shutil.rmtree(path, ignore_errors=True)
        return result

    def _fit_tfidf(self, unit: Unit) -> dict:
        clock = _Clock()
        train_set = subset(self.config, unit.n, unit.seed, len(self.classes))
        val, test = tfidf_correct(train_set, [self.validation, self.test], self.classes)
        wall, cpu = clock.lap()
        return {"best": {"tfidf": {"step": None, "validation_accuracy": round(sum(val) / len(val), 5)}},
                "test": {"tfidf": _accuracy(test) | {"correct": test}}, "seconds": round(wall, 2),
                "cpu_seconds": round(cpu, 2)}

    def _load(self, source: Path):
        return load_model(str(source), device="cpu" if not torch.cuda.is_available() else None,
                          dtype=torch.float32)

    def _read(self, lm, reading: str, data: TextDataset, samples: int, seed: int) -> list[int]:
        return read_correct(lm, reading, data, self.classes, self.prompts, samples, seed,
                            self.config.train.max_length)

    def _train_unit(self, unit: Unit, here: Path) -> dict:
        """Train a unit to each validation point in turn (the loop's --stop-after, then --resume), read the
        validation reviews there, keep each reading's best weights, stop early by ``patience``; then read the test
        reviews once per reading with the weights validation chose."""
        c, run, readings = self.config, here / "run", READINGS[unit.model]
        progress = _read_json(here / "progress.json") or {"points": {}, "done": False, "seconds": 0.0,
                                                          "cpu_seconds": 0.0}
        points = {int(s): p for s, p in progress["points"].items()}
        run_config, clock = self.unit_config(unit, run), _Clock()

        def save() -> None:
            wall, cpu = clock.lap()
            progress.update(points={str(s): p for s, p in sorted(points.items())},
                            seconds=progress["seconds"] + wall, cpu_seconds=progress["cpu_seconds"] + cpu)
            write_json(here / "progress.json", progress)

        try:
            for step in self.val_steps:
                if progress["done"]:
                    break
                if step in points:
                    continue
                if standing(run, c.steps) < step:
                    train(replace(run_config, stop_after=step if step < c.steps else None), progress=self.progress)
                source = _point_source(run, step, c.steps)
                lm = self._load(source)
                points[step] = {r: round(sum(v) / len(v), 5) for r in readings
                                for v in [self._read(lm, r, self.validation, c.val_samples, 0)]}
                for reading, best in best_steps(points).items():
                    if best == step:
                        _keep_weights(source, here / f"best-{reading}")
                progress["done"] = step == c.steps or stops_early(points, c.patience)
                self.say(f"{unit.name}: step {step}/{c.steps}: validation "
                         + ", ".join(f"{r} {a:.3f}" for r, a in points[step].items())
                         + (" (done)" if progress["done"] else ""))
                save()
            best = best_steps(points)
            test = {}
            for reading in readings:
                correct = self._read(self._load(here / f"best-{reading}"), reading, self.test, c.test_samples, 1)
                test[reading] = _accuracy(correct) | {"correct": correct}
        finally:
            save()
        trained = max(points)
        return {"start": run_config.model, "cap": c.steps, "validation_steps": self.val_steps,
                "validation": {str(s): p for s, p in sorted(points.items())},
                "best": {r: {"step": s, "validation_accuracy": points[s][r]} for r, s in best.items()},
                "steps_trained": trained, "stopped_early": trained < c.steps, "test": test,
                "seconds": round(progress["seconds"], 1), "cpu_seconds": round(progress["cpu_seconds"], 1)}

    def run_zero_shot(self) -> dict:
        """The flat reference: the zero-shot LM's reading (its own prompt and calibration) on the test reviews."""
        here = self.out / "zero-shot"
        done = _read_json(here / "result.json")
        if done:
            return done
        clock, c = _Clock(), self.config
        classifier = load_classifier(c.zero_shot, classes=self.classes, max_length=c.train.max_length)
        correct = []
        for text, y in zip(self.test.texts, _labels_as(self.test, self.classes), strict=True):
            scores = class_scores(classifier.models, text, classifier.prompts, max_length=c.train.max_length,
                                  max_windows=1, method="ar")
            correct.append(int(classifier.decide([-s.nll for s in scores]) == y))
        wall, cpu = clock.lap()
        done = {"model": c.zero_shot, "reading": "zero-shot", "prompts": classifier.prompts,
                "calibrated": classifier.calibrated, "test": _accuracy(correct) | {"correct": correct},
                "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1)}
        here.mkdir(parents=True, exist_ok=True)
        write_json(here / "result.json", done)
        return done

    # ---- the record

    def results(self) -> list[dict]:
        """The finished units' results, in plan order."""
        return [r for u in units(self.config) if (r := _read_json(self.out / u.name / "result.json"))]

    def save(self) -> dict:
        results = self.results()
        points = [p for r in results for p in points_of(r)]
        stage1 = [d for m in ("diffusion", "ar") if (d := _read_json(self.stage1_dir(m) / "unit.json"))]
        zero = _read_json(self.out / "zero-shot" / "result.json")
        cost = [{"unit": r["unit"], "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"]} for r in results]
        cost += [{"unit": f"unlabelled/{d['model']}", "seconds": d["seconds"], "cpu_seconds": d["cpu_seconds"]}
                 for d in stage1]
        cost += [{"unit": "zero-shot", "seconds": zero["seconds"], "cpu_seconds": zero["cpu_seconds"]}] if zero else []
        record = self.record | {
            "points": points,
            "references": {"zero-shot": {k: v for k, v in zero.items() if k != "test"}
                           | {k: v for k, v in zero["test"].items() if k != "correct"}} if zero else {},
            "summary": {arm: {"verdict": few_label_verdict(points, arm), "paired": paired_by_n(results, arm),
                              "curve": curve(points, arm)} for arm in ARMS}
            | {"semi_minus_labelled": semi_minus_labelled(results)},
            "unlabelled_pretraining": stage1,
            "cost": {"cpu_hours": round(sum(x["cpu_seconds"] for x in cost) / 3600, 3),
                     "hours": round(sum(x["seconds"] for x in cost) / 3600, 3), "units": cost},
            "finished": len(results) == len(units(self.config)) and (zero is not None or not self.config.zero_shot),
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds")}
        write_json(self.out / RESULTS, record)
        return record


def _resumable(config: FewLabelsConfig, out: Path) -> dict:
    """What ``out`` holds of a campaign with these settings ({} for none); refuses one with other settings (but the
    zero-shot reference, which may be added)."""
    results = read_results(out)
    if not results:
        return results
    wanted = json.loads(json.dumps(config.to_dict()))
    stored = json.loads(json.dumps(FewLabelsConfig.from_dict(results["config"]).to_dict()))
    changed = sorted(k for k in wanted if k not in ("zero_shot", "keep_weights") and stored.get(k) != wanted[k])
    if stored.get("zero_shot") and stored["zero_shot"] != wanted["zero_shot"]:
        changed.append("zero_shot")
    if changed:
        raise TextdiffError(f"{out} holds a few-labels campaign with other settings ({', '.join(changed)}); rerun it "
                            "with the same flags, or give another --out")
    return results


def measure(campaign: _Campaign, steps: int, texts: int = 4) -> dict:
    """Seconds per optimizer step of each trained model (a throw-away ``train`` run of ``steps`` steps on the
    smallest subset: the loop's own clock, the first step's warm-up included), seconds per validation review of each
    reading (``texts`` reviews), and CPU seconds per wall second over it all."""
    config = campaign.config
    out, clock = campaign.out / ".probe", _Clock()
    probe = {"steps": steps, "threads": torch.get_num_threads(), "seconds_per_step": {}, "seconds_per_review": {}}
    few = campaign.validation.subset(range(min(texts, len(campaign.validation))))
    wanted = [m for m in TRAINED if m in config.models or m in config.semi_models]
    for model in wanted:
        run = out / model
        shutil.rmtree(run, ignore_errors=True)
        unit = Unit(config.sizes[0], config.seeds[0], model, LABELLED)
        train(replace(campaign.unit_config(unit, run), steps=steps, resume=False, save_every=0, log_every=steps),
              progress=False)
        probe["seconds_per_step"][model] = round(CheckpointMeta.read(run).raw["train_time_s"] / steps, 4)
        lm = campaign._load(run)
        for reading in READINGS[model]:
            started = time.time()
            campaign._read(lm, reading, few, config.val_samples, 0)
            probe["seconds_per_review"][reading] = round((time.time() - started) / len(few), 4)
    if config.zero_shot:
        classifier = load_classifier(config.zero_shot, classes=campaign.classes, max_length=config.train.max_length)
        started = time.time()
        for text in few.texts:
            class_scores(classifier.models, text, classifier.prompts, max_length=config.train.max_length,
                         max_windows=1, method="ar")
        probe["zero_shot_seconds_per_review"] = round((time.time() - started) / len(few), 4)
    wall, cpu = clock.lap()
    probe["cpu_per_wall"] = round(cpu / max(wall, 1e-9), 3)
    shutil.rmtree(out, ignore_errors=True)
    return probe


def run_few_labels(config: FewLabelsConfig, probe_steps: int = 4, plan_only: bool = False, progress: bool = True,
                   say=print) -> dict:
    """Run (or continue) the campaign: the plan and a probe's s/step first, then every unit in turn (finished ones
    skipped), few_labels.json rewritten after each. ``plan_only``: print the plan and return it, writing nothing.
    Returns what few_labels.json holds (or, with ``plan_only``, the plan and the probe)."""
    out = Path(config.out)
    previous = _resumable(config, out)
    campaign = _Campaign(config, progress, say)
    probe = previous.get("probe")
    if probe is None and probe_steps:
        say(f"probe: {probe_steps} steps of each model, to time the plan")
        probe = measure(campaign, probe_steps)
    the_plan = plan(config, len(campaign.classes), probe)
    say_plan(the_plan, probe, say)
    if plan_only:
        return {"plan": the_plan, "probe": probe}
    out.mkdir(parents=True, exist_ok=True)
    campaign.record = {
        "command": command_line(config), "config": config.to_dict(), "plan": the_plan, "probe": probe,
        "threads": torch.get_num_threads(), "classes": campaign.classes, "prompts": campaign.prompts,
        "validation": {"split": "validation", "n": len(campaign.validation), "samples": config.val_samples},
        "test": {"split": "test", "n": len(campaign.test), "samples": config.test_samples,
                 "window": "the first window of each review (max_length tokens)"},
        "budget_rule": (f"every trained model at most {config.steps} steps, validated at steps "
                        f"{campaign.val_steps}; each reading keeps the step of its best validation accuracy (the "
                        f"earliest on ties); a run stops after {config.patience} points without a better one; test "
                        "read once per reading at that step"),
        "semi_supervised": ("two stages: each backbone trained on the unlabelled pool (the text without a class "
                            "word), then fine-tuned on the n labelled reviews as in the labelled arm; the head of "
                            "the arm on the stage-1 diffusion encoder"),
        "started_at": previous.get("started_at") or datetime.now(UTC).isoformat(timespec="seconds")}
    record = campaign.save()
    for unit in units(config):
        if not (out / unit.name / "result.json").is_file():
            campaign.run_unit(unit)
            record = campaign.save()
    if config.zero_shot:
        campaign.run_zero_shot()
        record = campaign.save()
    return record
