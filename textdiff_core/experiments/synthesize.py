"""Synthetic reviews with a judge: generate N per class, keep only what a calibrated classifier reads as the intended
class, drop duplicates and anything near a validation or test review, and record why each row was kept or dropped.

Generators:
  a class-conditional checkpoint (diffusion or its left-to-right twin): the class prompt leads, decoding as
      ``decoding.default_config`` gives (optionally with classifier-free guidance, ``cfg_scale``)
  a causal instruct LM (``smollm2``, or any causal model): asked per class, through its chat template when it has one
Rows are decoded in batches (``generate_samples``) and appended to the CSV as they come, so an interrupted run keeps
what it wrote and a rerun with the same settings continues from there.

The judge is a classifier loaded with ``classify.load_classifier`` (by default the generator's own checkpoint at the
reading its calibration fitted on validation; ``tfidf`` for the discriminative reference). A row is kept when the
judge's calibrated probability of the intended class is at least ``threshold``. The judge's accuracy on real
validation reviews is recorded beside every use. Duplicates (within the synthetic set and against the real training
reviews) and leaks (near a validation or test review) are found by the Jaccard similarity of word n-gram sets,
computed exactly with scikit-learn's ``CountVectorizer`` and sparse products.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from textdiff_core.classify import load_classifier
from textdiff_core.data import load_data
from textdiff_core.decoding import default_config, generate_samples
from textdiff_core.denoisers import chat_prompt
from textdiff_core.errors import TextdiffError
from textdiff_core.models import kind_of, load_model
from textdiff_core.paths import write_atomic
from textdiff_core.records import best_reading, cross_fitted_accuracy, read_calibrations
from textdiff_core.settings import CAUSAL, MASKED, LoadOptions, check_finite, check_writable

COLUMNS = ("text", "label", "kept", "reason", "judge_label", "judge_prob", "generator", "seed", "decoding")
GENERATORS = ("checkpoint", "instruct")
INSTRUCTION = "Write a short {label} movie review."


@dataclass
class SynthConfig:
    """Every setting of a synthesis run (recorded in the run's JSON sidecar)."""

    checkpoint: str  # the generator: a class-conditional checkpoint, or a causal LM with --generator instruct
    out: str  # the CSV written (its sidecar: the same path + ".json")
    per_class: int = 4  # rows generated per class, before judging
    generator: str = "checkpoint"  # checkpoint (class prompt) or instruct (asked per class)
    classes: list[str] | None = None  # instruct generators: the classes to ask for (default: negative, positive)
    length: int = 96  # new tokens per review
    batch_size: int = 8  # samples decoded as one batch
    seed: int = 0  # row i of class c is seeded seed + 100_000 c + i
    cfg_scale: float = 1.0  # checkpoint generators: classifier-free guidance on the class (1 = off)
    judge: str | None = None  # a classifier (load_classifier name); default: the checkpoint itself, or tfidf
    judge_method: str | None = None  # its reading (default: the one its calibration chose, else its default)
    threshold: float = 0.9  # keep a row when the judge's calibrated P(intended class) is at least this
    ngram: int = 3  # word n-grams compared for duplicates and leaks
    duplicate_jaccard: float = 0.5  # drop a row this similar to a kept row or a real training review
    leak_jaccard: float = 0.3  # drop a row this similar to a validation or test review
    data: str = "imdb"  # the real data whose splits are compared against
    judge_check: int = 300  # real validation reviews a judge with no record of its accuracy is measured on
    trust_remote_code: bool = False  # run modeling code shipped with the generator or judge (only trusted ones)

    def load_options(self) -> LoadOptions:
        """How this run loads its models when the caller gives no ``LoadOptions``."""
        return LoadOptions(trust_remote_code=self.trust_remote_code)

    def __post_init__(self) -> None:
        if self.per_class < 1:
            raise TextdiffError(f"--per-class must be at least 1, got {self.per_class}")
        if self.generator not in GENERATORS:
            raise TextdiffError(f"unknown generator {self.generator!r}; choose one of {', '.join(GENERATORS)}")
        if self.length < 1 or self.batch_size < 1 or self.ngram < 1 or self.judge_check < 2:
            raise TextdiffError("--length, --batch-size and --ngram must be at least 1, --judge-check at least 2")
        for name in ("threshold", "duplicate_jaccard", "leak_jaccard"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise TextdiffError(f"--{name.replace('_', '-')} must be in [0, 1], got {value}")
        check_finite(self)
        out = Path(self.out).expanduser()
        if out.is_dir():
            raise TextdiffError(f"--out {self.out} is a directory; give a CSV file path")
        check_writable(out, "--out")


@dataclass
class SynthReport:
    """The counts at each stage, and what the judge is worth."""

    generated: int = 0
    judged_other: int = 0  # the judge read another class, or was not sure enough
    duplicates: int = 0
    leaks: int = 0
    kept: int = 0
    judge: dict = field(default_factory=dict)
    seconds: float = 0.0


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and set(COLUMNS) - set(rows[0]):
        raise TextdiffError(f"{path} exists but is not a synthesis CSV (columns {', '.join(rows[0])}); "
                            "give another --out")
    return rows


def _append(path: Path, rows: list[dict]) -> None:
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
        f.flush()


def _rewrite(path: Path, rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(path, write)


def generate_rows(config: SynthConfig, progress: bool = True, options: LoadOptions | None = None) -> list[dict]:
    """Generate what the CSV still lacks (per class, in seed order) and return every row, old and new."""
    out = Path(config.out).expanduser()
    rows = _read_rows(out)
    kind = CAUSAL if config.generator == "instruct" else (kind_of(config.checkpoint) or MASKED)
    lm = load_model(config.checkpoint, kind, options=options or config.load_options())
    if config.generator == "checkpoint":
        classes = [str(c) for c in lm.checkpoint.classes]
        if not lm.checkpoint.class_prompted or len(classes) < 2:
            raise TextdiffError(f"{config.checkpoint} is not class-conditional (no class prompt in its textdiff.json); "
                                "use --generator instruct for a general language model")
    else:
        classes = list(config.classes or ["negative", "positive"])
    decoding = default_config(kind, length=config.length)
    if kind == MASKED:
        decoding.cfg_scale = config.cfg_scale
    settings = json.dumps({k: v for k, v in asdict(decoding).items() if k != "seed"} | {"length": config.length},
                          sort_keys=True)
    done = {(r["label"], int(r["seed"])) for r in rows}
    todo = [(c, config.seed + 100_000 * i + j) for i, c in enumerate(classes) for j in range(config.per_class)
            if (c, config.seed + 100_000 * i + j) not in done]
    bar = tqdm(total=len(classes) * config.per_class, initial=len(classes) * config.per_class - len(todo),
               desc="synthesize", disable=not progress)
    while todo:
        label = todo[0][0]
        batch = [s for c, s in todo if c == label][: config.batch_size]
        if batch != list(range(batch[0], batch[0] + len(batch))):  # seeds of one batch are consecutive
            batch = batch[:1]
        if config.generator == "checkpoint":
            prompt, condition = "", label
        else:
            instruction = INSTRUCTION.format(label=label)
            prompt = chat_prompt(lm.tokenizer, instruction) if getattr(lm.tokenizer, "chat_template", None) \
                else instruction
            condition = None
        decoding.seed = batch[0]
        traces = generate_samples(lm, prompt, config.length, decoding, condition, len(batch))
        new = [{"text": " ".join(t.generated_text.split()), "label": label, "kept": "", "reason": "not judged yet",
                "judge_label": "", "judge_prob": "", "generator": config.checkpoint, "seed": t.seed,
                "decoding": settings} for t in traces]
        _append(out, new)  # written as it comes: an interruption loses at most this batch
        rows += new
        todo = [(c, s) for c, s in todo if (c, s) not in {(label, t.seed) for t in traces}]
        bar.update(len(new))
    bar.close()
    return rows


def _judge_accuracy(clf, judge: str) -> dict:
    """What the judge is worth on real validation reviews, from its own record where it has one."""
    record = {"judge": judge, "method": getattr(clf, "method", None)}
    combined = read_calibrations(judge).get("combined") if Path(judge).is_dir() else None
    accuracy = cross_fitted_accuracy(judge)
    reading = "bayes" if record["method"] == "elbo" else record["method"]
    if combined and reading in accuracy:
        record |= {"validation_accuracy": accuracy[reading], "validation_n": combined.get("n"),
                   "validation_on": combined.get("fitted_on"), "how": "cross-fitted calibration"}
    return record


def judge_rows(rows: list[dict], config: SynthConfig, progress: bool = True, options: LoadOptions | None = None
               ) -> dict:
    """Fill judge_label and judge_prob of every row not judged yet; returns the judge's record."""
    judge = config.judge or (config.checkpoint if config.generator == "checkpoint" else "tfidf")
    method = config.judge_method or best_reading(judge, "ar" if kind_of(judge) == CAUSAL else "elbo")
    clf = load_classifier(judge, method, options=options or config.load_options())
    generator = torch.Generator().manual_seed(config.seed)
    for row in tqdm([r for r in rows if r["judge_prob"] == ""], desc="judge", disable=not progress):
        if row["label"] not in clf.classes:
            raise TextdiffError(f"the judge {judge} knows classes {clf.classes}, not {row['label']!r}")
        if not row["text"].strip():
            row["judge_label"], row["judge_prob"] = "", 0.0
            continue
        p = clf.classify(row["text"], generator=generator)
        row["judge_label"], row["judge_prob"] = p.label, round(p.posterior[clf.classes.index(row["label"])], 4)
    record = _judge_accuracy(clf, judge)
    if "validation_accuracy" not in record:  # no record of its own: measure it on real validation reviews
        record |= _measured_accuracy(clf, config.data, generator, config.judge_check)
    return record | {"calibrated": bool(getattr(clf, "calibration", None))}


def _measured_accuracy(clf, data: str, generator: torch.Generator, reviews: int) -> dict:
    """The judge's accuracy on ``reviews`` class-balanced validation reviews of ``data``."""
    val = load_data(data, "validation", min_classes=2, max_samples=reviews, seed=0)
    right = sum(clf.classify(text, generator=generator).label == val.classes[label]
                for text, label in zip(val.texts, val.labels, strict=True))
    return {"validation_accuracy": right / len(val), "validation_n": len(val), "validation_on": f"{data} validation",
            "how": "measured here"}


def jaccard(a: list[str], b: list[str], n: int = 3) -> torch.Tensor:
    """[len(a), len(b)] Jaccard similarity of the word n-gram sets of each pair (0 where both sets are empty).

    The n-grams go through scikit-learn's ``HashingVectorizer`` (2^22 buckets, binary): a set's size is its row sum
    and the intersection of two sets the dot product of their rows, so thousands of pairs cost one sparse product."""
    # deferred: scikit-learn is slow to import and only this path needs it
    from sklearn.feature_extraction.text import HashingVectorizer

    if not a or not b:
        return torch.zeros(len(a), len(b))
    vectorizer = HashingVectorizer(analyzer="word", ngram_range=(n, n), binary=True, norm=None, alternate_sign=False,
                                   n_features=2**22, token_pattern=r"(?u)\b\w+\b")
    x, y = vectorizer.transform(a), vectorizer.transform(b)
    inter = torch.from_numpy((x @ y.T).toarray()).double()
    sizes_a, sizes_b = (torch.from_numpy(m.sum(1).A1).double() for m in (x, y))
    union = sizes_a[:, None] + sizes_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), 0.0)


def filter_rows(rows: list[dict], config: SynthConfig, real: dict[str, list[str]]) -> SynthReport:
    """Decide kept / dropped (with the reason) for every row, in order: the judge, duplicates, leaks."""
    report = SynthReport(generated=len(rows))
    candidates = []
    for row in rows:
        prob = float(row["judge_prob"] or 0)
        if row["judge_label"] != row["label"] or prob < config.threshold:
            row["kept"], row["reason"] = "false", (f"judge: P({row['label']}) = {prob:.3f} < {config.threshold} "
                                                   f"(it read {row['judge_label'] or 'nothing'})")
            report.judged_other += 1
        else:
            candidates.append(row)
    texts = [r["text"] for r in candidates]
    held_out = real.get("validation", []) + real.get("test", [])
    near_train = jaccard(texts, real.get("train", []), config.ngram).amax(1) if real.get("train") and texts \
        else torch.zeros(len(texts))
    near_held = jaccard(texts, held_out, config.ngram).amax(1) if held_out and texts else torch.zeros(len(texts))
    within = jaccard(texts, texts, config.ngram)
    for i, row in enumerate(candidates):
        twin = max((float(within[i, j]) for j in range(i) if candidates[j]["kept"] == "true"), default=0.0)
        if twin >= config.duplicate_jaccard:
            row["kept"], row["reason"] = "false", f"near-duplicate of a kept synthetic row (Jaccard {twin:.2f})"
            report.duplicates += 1
        elif float(near_train[i]) >= config.duplicate_jaccard:
            row["kept"], row["reason"] = "false", (f"near-duplicate of a real training review "
                                                   f"(Jaccard {float(near_train[i]):.2f})")
            report.duplicates += 1
        elif float(near_held[i]) >= config.leak_jaccard:
            row["kept"], row["reason"] = "false", (f"near a validation or test review "
                                                   f"(Jaccard {float(near_held[i]):.2f})")
            report.leaks += 1
        else:
            row["kept"], row["reason"] = "true", f"judge: P({row['label']}) = {float(row['judge_prob']):.3f}"
            report.kept += 1
    return report


def real_texts(data: str) -> dict[str, list[str]]:
    """The real reviews of every split of ``data`` (what synthetic rows must not duplicate or leak)."""
    return {split: load_data(data, split=split, label_col=None).texts for split in ("train", "validation", "test")}


def synthesize(config: SynthConfig, progress: bool = True, real: dict[str, list[str]] | None = None,
               options: LoadOptions | None = None) -> SynthReport:
    """Generate, judge and filter; rewrite the CSV with every row's verdict and write its JSON sidecar. ``options``
    (how models load) default to the config's ``trust_remote_code``."""
    started = time.perf_counter()
    out = Path(config.out).expanduser()
    rows = generate_rows(config, progress, options)
    judge = judge_rows(rows, config, progress, options)
    report = filter_rows(rows, config, real if real is not None else real_texts(config.data))
    report.judge, report.seconds = judge, round(time.perf_counter() - started, 2)
    _rewrite(out, rows)
    sidecar = out.with_name(out.name + ".json")
    sidecar.write_text(json.dumps({"config": asdict(config), "report": asdict(report)}, indent=1) + "\n")
    return report


def provenance(path: str | Path, samples: int | None = 3) -> dict | None:
    """What a synthetic set is, for a reader: its generator and settings, the counts at each stage and the judge's
    own accuracy (from the JSON record beside the CSV), and the first ``samples`` kept and dropped rows with why (None:
    every row).
    None when ``path`` is not a synthesis CSV with its record."""
    path = Path(path).expanduser()
    sidecar = path.with_name(path.name + ".json")
    if path.suffix.lower() != ".csv" or not path.is_file() or not sidecar.is_file():
        return None
    try:
        record = json.loads(sidecar.read_text())
        rows = _read_rows(path)
    except (ValueError, OSError, TextdiffError):
        return None
    config, report = record.get("config") or {}, record.get("report") or {}
    kept = [r for r in rows if r.get("kept") == "true"]
    dropped = [r for r in rows if r.get("kept") == "false"]
    return {"path": str(path), "generator": config.get("checkpoint"), "kind": config.get("generator"),
            "per_class": config.get("per_class"), "length": config.get("length"), "threshold": config.get("threshold"),
            "judge": report.get("judge") or {}, "counts": {k: report.get(k) for k in
                                                         ("generated", "judged_other", "duplicates", "leaks", "kept")},
            "kept": [{"label": r["label"], "text": r["text"], "judge_prob": r.get("judge_prob")}
                     for r in kept[:samples]],
            "dropped": [{"label": r["label"], "text": r["text"], "reason": r.get("reason")} for r in dropped[:samples]]}
