"""What a generative classifier promises, measured against the same backbone trained discriminatively and TF-IDF:
uncertainty in and out of domain, out-of-distribution detection, robustness, and faithful evidence.

    python train_cli.py promises --out ~/textdiff-runs/promises            # every reading, the default sizes
    python train_cli.py promises --out OUT --n 40 --n-attack 10 --readings diffusion_infill,tfidf   # a smaller run

Per reading (a model and the way it is read, as in the report):
  uncertainty   accuracy, ECE and the area under the risk-coverage curve on the IMDB test split and on Rotten
                Tomatoes (another site, one-sentence reviews; calibration still the one fitted on IMDB validation)
  OOD           AUROC and FPR at 95% TPR of the reading's OOD score, IMDB test reviews against (a) Rotten Tomatoes,
                (b) English text that is not a review (``not_review_texts``: Debian's licence texts and the Python
                standard library's module documentation, as installed), (c) the same IMDB reviews, words shuffled.
                The score: minus the per-token log P(text) for the Bayes readings (the one promise only a generative
                model can make); minus the max softmax probability for the infill readings and TF-IDF; the energy
                for the discriminative head (all of them are kept in the record)
  robustness    accuracy under DeepWordBug typos in 10% and 20% of the words, paired with the clean accuracy; a
                word-substitution attack of the BAE-R kind (``perturb.substitution_attack``) on the first
                ``--attack-words`` words of correctly read reviews: a masked LM (the shipped diffusion model, the
                same proposer for every reading) proposes replacements, kept when the all-MiniLM-L6-v2 sentence
                embedding of the text stays within cosine ``--similarity``; success rate, accuracy under attack,
                words changed per success, and every reading's accuracy on every other reading's adversarial texts
  faithfulness  ERASER comprehensiveness and sufficiency (``perturb.faithfulness``) of each reading's own per-word
                evidence, against random words of the same count

Each (reading, promise) is a resumable piece (``measure.Pieces``): an interrupted run loses at most the one it was
measuring. ``OUT/promises.json`` is the record; copied to ``results/promises.json`` it becomes the report's
``promises`` section.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from textdiff_core.classify import DISCRIMINATIVE, evidence_per_token, load_classifier
from textdiff_core.data import load_data
from textdiff_core.decoding import fill_mask
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import (
    area_under_risk_coverage,
    bootstrap_interval,
    expected_calibration_error,
    ood_detection,
    paired_difference,
    risk_coverage,
    wilson_interval,
)
from textdiff_core.experiments.measure import Pieces, fingerprint, hardware
from textdiff_core.models import load_model, minilm_path
from textdiff_core.paths import write_atomic
from textdiff_core.perturb import FRACTIONS, faithfulness, substitution_attack, typos, word_evidence

LICENCES = Path("/usr/share/common-licenses")  # Debian's base-files: the licence texts every Debian system has
STDLIB = Path(ast.__file__).parent  # the standard library of the running Python
OOD_SETS = ("rotten_tomatoes", "not_reviews", "shuffled")
TYPO_RATES = (0.1, 0.2)


@dataclass
class Reading:
    key: str  # as in results.json
    label: str  # as shown
    role: str  # "diffusion", "ar", "discriminative" or "tfidf": which checkpoint
    method: str  # the classify method


READINGS = [
    Reading("diffusion", "diffusion ELBO", "diffusion", "elbo"),
    Reading("diffusion_infill", "diffusion infill", "diffusion", "infill"),
    Reading("ar", "left-to-right twin (exact)", "ar", "ar"),
    Reading("ar_infill", "left-to-right infill", "ar", "infill"),
    Reading("discriminative", "discriminative head", "discriminative", DISCRIMINATIVE),
    Reading("tfidf", "TF-IDF + logistic regression", "tfidf", "tfidf"),
]
BAYES = ("elbo", "ar")  # readings with a likelihood of the text


def not_review_texts(n: int, seed: int = 0, min_words: int = 30, max_words: int = 200) -> list[dict]:
    """Up to ``n`` passages of real English that is not a review: the paragraphs of Debian's licence texts and the
    module docstrings of the Python standard library, as installed (never written for this), each of at least
    ``min_words`` words, cut at ``max_words``, exact duplicates dropped, drawn with a seeded shuffle. Each is
    {"text", "source"}."""
    passages: dict[str, str] = {}
    for path in sorted(LICENCES.glob("*")) if LICENCES.is_dir() else []:
        if path.is_file():
            for paragraph in path.read_text(errors="replace").split("\n\n"):
                passages.setdefault(_passage(paragraph, max_words), str(path))
    for path in sorted(STDLIB.glob("*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(errors="replace")))
        except (SyntaxError, ValueError):
            continue
        for paragraph in (doc or "").split("\n\n"):
            passages.setdefault(_passage(paragraph, max_words), f"python {sys.version_info.major}."
                                                                 f"{sys.version_info.minor} stdlib {path.name}")
    kept = [{"text": t, "source": s} for t, s in passages.items() if len(t.split(" ")) >= min_words]
    random.Random(seed).shuffle(kept)
    return kept[:n]


def _passage(paragraph: str, max_words: int) -> str:
    return " ".join(paragraph.split()[:max_words])


def shuffled(texts: list[str], seed: int = 0) -> list[str]:
    """Each text with its words in a seeded random order: the same words, no syntax."""
    rng = random.Random(seed)
    out = []
    for text in texts:
        words = text.split()
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


def load_reading(reading: Reading, models: dict[str, str]):
    return load_classifier(models[reading.role], reading.method)


def read(clf, texts: list[str], samples: int, seed: int = 0) -> list[dict]:
    """Every text read once: the decision, the calibrated posterior and the OOD scores the reading has (higher:
    less like the training texts)."""
    rows = []
    for i, text in enumerate(texts):
        generator = torch.Generator().manual_seed(seed + i)
        p = clf.classify(text, samples=samples, generator=generator)
        scores = {"max_softmax": -max(p.posterior)}
        if clf.method in BAYES:
            scores["log_p_per_token"] = -evidence_per_token(p, clf.log_prior)
        if p.energy is not None:
            scores["energy"] = p.energy
        elif clf.method == "tfidf":  # the logistic regression's logits, centred: (-z/2, z/2)
            z = float(clf.pipeline.decision_function([text])[0])
            scores["energy"] = -float(torch.logsumexp(torch.tensor([-z / 2, z / 2]), 0))
        rows.append({"label": p.classes.index(p.label), "posterior": p.posterior, "ood": scores,
                     "flagged": p.ood})  # the app's OOD flag (None where the reading has no threshold)
    return rows


def primary_score(reading: Reading) -> str:
    """The OOD score a reading is judged by (the app's flag uses the same)."""
    return {"elbo": "log_p_per_token", "ar": "log_p_per_token", DISCRIMINATIVE: "energy"}.get(reading.method,
                                                                                           "max_softmax")


def uncertainty(rows: list[dict], labels: list[int]) -> dict:
    """Accuracy with its interval, ECE, and the risk-coverage curve with its area (and a bootstrap interval)."""
    correct = [r["label"] == y for r, y in zip(rows, labels, strict=True)]
    confidence = [max(r["posterior"]) for r in rows]
    aurc = area_under_risk_coverage(confidence, correct)
    pairs = list(zip(confidence, correct, strict=True))
    low, high = bootstrap_interval(lambda s: area_under_risk_coverage([c for c, _ in s], [k for _, k in s]), pairs,
                                   resamples=500)
    return {"n": len(rows), "accuracy": sum(correct) / len(rows), "ci95": list(wilson_interval(sum(correct),
                                                                                              len(rows))),
            "ece": expected_calibration_error(confidence, correct), "aurc": aurc, "aurc_ci95": [low, high],
            "risk_coverage": risk_coverage(confidence, correct), "correct": correct}


def ood(in_rows: list[dict], out_rows: list[dict], score: str) -> dict:
    """AUROC (with a bootstrap interval) and FPR at 95% TPR of one OOD score, in- against out-of-distribution."""
    a, b = [r["ood"][score] for r in in_rows], [r["ood"][score] for r in out_rows]
    found = ood_detection(a, b)
    low, high = bootstrap_interval(lambda x, y: ood_detection(x, y)["auroc"], a, b, resamples=500)
    return found | {"auroc_ci95": [low, high], "score": score}


def first_words(text: str, n: int) -> str:
    return " ".join(text.split()[:n])


def robustness_to_typos(clf, texts: list[str], labels: list[int], clean: list[bool], samples: int) -> dict:
    """Accuracy with typos in 10% and 20% of the words, each paired with the clean accuracy on the same texts."""
    out = {}
    for rate in TYPO_RATES:
        noisy = [typos(t, rate, seed=i)[0] for i, t in enumerate(texts)]
        correct = [r["label"] == y for r, y in zip(read(clf, noisy, samples), labels, strict=True)]
        out[f"{round(100 * rate)}"] = {"accuracy": sum(correct) / len(correct),
                                       "ci95": list(wilson_interval(sum(correct), len(correct))),
                                       "against_clean": paired_difference(correct, clean), "example": noisy[0]}
    return out


class Proposer:
    """A masked LM's single-word replacements for one word of a text (BAE's R operation): the word masked, the top
    ``k`` whole-word tokens (no sub-word pieces, letters only), with the word's punctuation kept around them."""

    def __init__(self, checkpoint: str, k: int = 20) -> None:
        self.lm, self.k = load_model(checkpoint), k

    def __call__(self, words: list[str], i: int) -> list[str]:
        word = words[i]
        start = next((j for j, c in enumerate(word) if c.isalnum()), len(word))
        end = len(word) - next((j for j, c in enumerate(reversed(word)) if c.isalnum()), len(word))
        if start >= end:
            return []
        masked = " ".join(words[:i] + [word[:start] + self.lm.tokenizer.mask_token + word[end:]] + words[i + 1:])
        top = fill_mask(self.lm, masked, top_k=self.k * 2)[0]
        core = word[start:end].lower()
        picks = [t for t, _ in top if t.isalpha() and t.lower() != core][: self.k]
        return [word[:start] + t + word[end:] for t in picks]


class Polarity:
    """Which replacement words would change what a review says rather than how: a word whose log-count ratio in
    the IMDB training split (Wang & Manning 2012: log of its smoothed frequency in positive reviews over that in
    negative ones) leans toward the other class by more than ``limit`` nats is not offered (0.3 by default: it bars
    "entertaining", +0.39, from a negative review, and also some topical words, e.g. "horror", -0.54, from a
    positive one, so the attack it allows is a conservative one). Without it a masked LM
    proposes antonyms ("a very bad film" -> "a very entertaining film"), which flip the true label, not just the
    classifier; sentence encoders rate them as similar (Morris et al. 2020 found such label-changing substitutions
    common in BAE and TextFooler examples). A statistic of the data, not of any classifier attacked."""

    def __init__(self, limit: float = 0.3, data: str = "imdb") -> None:
        train = load_data(data, "train")
        if len(train.classes) != 2:
            raise TextdiffError(f"the polarity constraint needs two classes, {data} has {len(train.classes)}")
        counts = [{}, {}]
        for text, label in zip(train.texts, train.labels, strict=True):
            for word in set(_bare(w) for w in text.split()):
                counts[label][word] = counts[label].get(word, 0) + 1
        vocabulary = set(counts[0]) | set(counts[1])
        totals = [sum(c.values()) + len(vocabulary) for c in counts]
        self.limit, self.ratio = limit, {w: math.log((counts[1].get(w, 0) + 1) / totals[1])
                                         - math.log((counts[0].get(w, 0) + 1) / totals[0]) for w in vocabulary}

    def allowed(self, word: str, label: int) -> bool:
        """``word`` may replace a word of a text of class ``label`` (0 or 1)."""
        lean = self.ratio.get(_bare(word), 0.0)
        return (lean if label == 0 else -lean) <= self.limit


def _bare(word: str) -> str:
    return word.lower().strip(".,!?;:\"'()")


class Similarity:
    """Cosine similarity of all-MiniLM-L6-v2 sentence embeddings (mean-pooled, normalised), the sentence-encoder
    constraint of BAE and BERT-Attack with the encoder this product already packages."""

    def __init__(self, threshold: float) -> None:
        # deferred: transformers takes seconds to import
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        self.model = AutoModel.from_pretrained(minilm_path()).eval()
        self.threshold, self.cache = threshold, {}

    @torch.no_grad()
    def embed(self, text: str) -> torch.Tensor:
        if text not in self.cache:
            batch = self.tokenizer([text], return_tensors="pt", truncation=True, max_length=256)
            hidden = self.model(**batch).last_hidden_state[0]
            mask = batch["attention_mask"][0].unsqueeze(-1).float()
            vector = (hidden * mask).sum(0) / mask.sum()
            if len(self.cache) > 2000:  # an attack asks about one original and its candidates: keep it small
                self.cache.clear()
            self.cache[text] = vector / vector.norm()
        return self.cache[text]

    def __call__(self, a: str, b: str) -> bool:
        return float(self.embed(a) @ self.embed(b)) >= self.threshold


def stop_words() -> frozenset[str]:
    # deferred: scikit-learn is slow to import
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def probabilities(clf, samples: int):
    """``texts -> [posterior]`` of a classifier, each text read with the same seed (the ELBO's noise fixed)."""
    def call(texts: list[str]) -> list[list[float]]:
        return [clf.classify(t, samples=samples, generator=torch.Generator().manual_seed(0)).posterior
                for t in texts]
    return call


def attack(clf, texts: list[str], labels: list[int], samples: int, proposer, similar, polarity, max_words: int,
           show: int = 5) -> dict:
    """The word-substitution attack on every text: success rate over the texts read correctly, accuracy under
    attack over all, words changed per success; the first ``show`` successes, uncurated, beside their originals."""
    ask, skip = probabilities(clf, samples), stop_words()
    attacks, right_before, right_after = [], 0, 0
    for text, label in zip(texts, labels, strict=True):
        posterior = ask([text])[0]
        if max(range(len(posterior)), key=posterior.__getitem__) != label:  # already wrong: nothing to attack
            attacks.append({"original": text, "adversarial": text, "label": label, "attacked": False})
            continue
        right_before += 1

        def propose(words: list[str], i: int, label: int = label) -> list[str]:
            return [c for c in proposer(words, i) if polarity is None or polarity.allowed(c, label)]

        a = substitution_attack(ask, text, label, propose, similar, max_words=max_words, skip=skip)
        right_after += not a.success
        attacks.append(a.to_dict() | {"attacked": True})
    successes = [a for a in attacks if a.get("success")]
    return {"n": len(texts), "accuracy_clean": right_before / len(texts),
            "accuracy_under_attack": right_after / len(texts),
            "attack_success_rate": len(successes) / right_before if right_before else None,
            "words_changed_per_success": (sum(len(a["changed"]) for a in successes) / len(successes)
                                          if successes else None),
            "queries_mean": sum(a.get("queries", 0) for a in attacks) / len(texts),
            "samples": [{k: a[k] for k in ("original", "adversarial", "changed", "p_before", "p_after")}
                        for a in successes[:show]], "attacks": attacks}


def transfer(clf, adversarial: list[dict], samples: int) -> dict | None:
    """Accuracy of ``clf`` on another reading's successful adversarial texts, beside its accuracy on their
    originals."""
    done = [a for a in adversarial if a.get("success")]
    if not done:
        return None
    ask = probabilities(clf, samples)
    def right(texts: list[str]) -> list[bool]:
        return [max(range(len(p)), key=p.__getitem__) == a["label"] for p, a in zip(ask(texts), done, strict=True)]

    on_original, on_adversarial = right([a["original"] for a in done]), right([a["adversarial"] for a in done])
    return {"n": len(done), "accuracy_original": sum(on_original) / len(done),
            "accuracy_adversarial": sum(on_adversarial) / len(done)}


def word_level_evidence(clf, text: str, predicted: int) -> list[float] | None:
    """The reading's own per-word evidence for its decision (higher: speaks more for ``predicted``), None where
    its tokens cannot be laid on the words. Bayes readings: log p(x_i | predicted) - log p(x_i | other) per token;
    infill and discriminative: occlusion; TF-IDF: its n-grams' contributions to the log-odds."""
    if clf.method == "tfidf":
        sign = 1.0 if predicted == len(clf.classes) - 1 else -1.0
        weights: dict[str, float] = {}
        for gram, value in clf.evidence(text):
            parts = gram.split(" ")
            for part in parts:
                weights[part] = weights.get(part, 0.0) + sign * value / len(parts)
        return [weights.get(w.lower().strip(".,!?;:\"'()"), 0.0) for w in text.split(" ")]
    model = clf.models if not isinstance(clf.models, dict) else next(iter(clf.models.values()))
    if clf.method in ("infill", DISCRIMINATIVE):
        ids, deltas = clf.infill_evidence(text, max_windows=1)
        values = deltas[:, predicted].tolist()
    else:
        p = clf.classify(text, samples=8, generator=torch.Generator().manual_seed(0))
        other = 1 - predicted
        ids = p.scores[predicted].token_ids
        values = [b - a for a, b in zip(p.scores[predicted].token_nll, p.scores[other].token_nll, strict=True)]
    encoded = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(encoded["input_ids"][: len(ids)]) != list(ids):
        return None
    return word_evidence(text, encoded["offset_mapping"][: len(ids)], values)


def faithful(clf, texts: list[str], samples: int) -> dict:
    """ERASER comprehensiveness and sufficiency of the reading's evidence, mean over texts, against random words."""
    ask = probabilities(clf, samples)
    rows, skipped = [], 0
    for i, text in enumerate(texts):
        posterior = ask([text])[0]
        predicted = max(range(len(posterior)), key=posterior.__getitem__)
        evidence = word_level_evidence(clf, text, predicted)
        if evidence is None:
            skipped += 1
            continue
        rows.append(faithfulness(lambda t, c=predicted: ask([t])[0][c], text, evidence, seed=i))
    out = {"n": len(rows), "skipped": skipped}
    for f in FRACTIONS:
        key = f"{round(100 * f)}"
        for name in ("evidence_comprehensiveness", "random_comprehensiveness", "evidence_sufficiency",
                     "random_sufficiency"):
            values = [r[key][name] for r in rows]
            out[f"{name}_{key}"] = sum(values) / len(values) if values else None
        paired = [r[key]["evidence_comprehensiveness"] - r[key]["random_comprehensiveness"] for r in rows]
        out[f"comprehensiveness_over_random_{key}_ci95"] = (list(bootstrap_interval(
            lambda v: sum(v) / len(v), paired, resamples=500)) if len(paired) > 1 else None)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``train_cli.py promises``."""
    parser.add_argument("--out", default=None, help="directory for promises.json and its resumable pieces (needed)")
    parser.add_argument("--root", default=".", help="the repository whose checkpoints/ are read (default: here)")
    parser.add_argument("--diffusion", default=None,
                        help="diffusion checkpoint (default: ROOT/checkpoints/imdb-diffusion)")
    parser.add_argument("--ar", default=None, help="left-to-right checkpoint (default: ROOT/checkpoints/imdb-ar)")
    parser.add_argument("--discriminative", default=None,
                        help="discriminative checkpoint (default: ROOT/checkpoints/imdb-discriminative; its reading "
                             "is left out when there is none)")
    parser.add_argument("--baseline", default="tfidf", help="TF-IDF reference: tfidf or tfidf:DATA")
    parser.add_argument("--readings", default=",".join(r.key for r in READINGS),
                        help="readings to measure, comma-separated")
    parser.add_argument("--n", type=int, default=200,
                        help="texts of each set: IMDB test (in distribution), Rotten Tomatoes, not reviews, shuffled")
    parser.add_argument("--samples", type=int, default=4, help="ELBO Monte Carlo samples per reading of a text")
    parser.add_argument("--n-attack", type=int, default=40, help="IMDB test reviews attacked per reading")
    parser.add_argument("--attack-words", type=int, default=40, help="the first this many words of each is attacked")
    parser.add_argument("--max-words", type=int, default=5, help="an attack substitutes at most this many words")
    parser.add_argument("--candidates", type=int, default=20, help="the masked LM's replacements tried per word")
    parser.add_argument("--similarity", type=float, default=0.85,
                        help="least cosine similarity of the sentence embeddings of original and adversarial text")
    parser.add_argument("--polarity", type=float, default=0.3,
                        help="the attack offers no word leaning toward the other class by more than this many nats "
                             "(log-count ratio in the IMDB training split); 0: no such constraint")
    parser.add_argument("--n-faith", type=int, default=40, help="IMDB test reviews whose evidence is checked")
    parser.add_argument("--faith-words", type=int, default=60, help="the first this many words of each")
    parser.add_argument("--fresh", action="store_true", help="measure every piece anew")


@dataclass
class Sets:
    """The texts every reading is measured on."""

    imdb: object  # TextDataset: IMDB test, the in-distribution texts
    rotten_tomatoes: object  # TextDataset: Rotten Tomatoes test
    not_reviews: list[dict]
    shuffled: list[str]
    attack_texts: list[str]
    attack_labels: list[int]
    faith_texts: list[str]

    @classmethod
    def of(cls, args: argparse.Namespace) -> Sets:
        imdb = load_data("imdb", "test", max_samples=args.n, seed=0)
        rt = load_data("rotten_tomatoes", "test", max_samples=args.n, seed=0)
        not_reviews = not_review_texts(args.n)
        if len(not_reviews) < 2:
            raise TextdiffError(f"too few texts that are not reviews here ({len(not_reviews)}): {LICENCES} and the "
                                "standard library's documentation were read")
        # balanced draws of their own (a subset's first rows would all be of its first class)
        attack = load_data("imdb", "test", max_samples=args.n_attack, seed=0)
        faith = load_data("imdb", "test", max_samples=args.n_faith, seed=0)
        return cls(imdb, rt, not_reviews, shuffled(imdb.texts), [first_words(t, args.attack_words) for t in
                                                                 attack.texts], list(attack.labels),
                   [first_words(t, args.faith_words) for t in faith.texts])

    def describe(self) -> dict:
        sources = sorted({p["source"].split(" stdlib ")[0] if " stdlib " in p["source"] else p["source"]
                          for p in self.not_reviews})
        return {"imdb_test": len(self.imdb), "rotten_tomatoes_test": len(self.rotten_tomatoes),
                "not_reviews": {"n": len(self.not_reviews), "sources": sources},
                "shuffled": "the IMDB test texts above, their words in a seeded random order",
                "attack": {"n": len(self.attack_texts)}, "faithfulness": {"n": len(self.faith_texts)}}


def _models(args: argparse.Namespace, root: Path) -> dict[str, str]:
    return {"diffusion": args.diffusion or str(root / "checkpoints" / "imdb-diffusion"),
            "ar": args.ar or str(root / "checkpoints" / "imdb-ar"),
            "discriminative": args.discriminative or str(root / "checkpoints" / "imdb-discriminative"),
            "tfidf": args.baseline}


def _chosen(args: argparse.Namespace, models: dict[str, str]) -> list[Reading]:
    keys = [k.strip() for k in args.readings.split(",") if k.strip()]
    unknown = sorted(set(keys) - {r.key for r in READINGS})
    if unknown:
        raise TextdiffError(f"unknown reading {unknown[0]!r}; choose from {', '.join(r.key for r in READINGS)}")
    chosen = []
    for r in READINGS:
        if r.key not in keys:
            continue
        if r.role != "tfidf" and not Path(models[r.role]).is_dir():
            print(f"note: no {models[r.role]}; the {r.label} reading is left out", flush=True)
            continue
        chosen.append(r)
    if not chosen:
        raise TextdiffError("no reading to measure")
    return chosen


def measure_reading(r: Reading, clf, sets: Sets, args: argparse.Namespace, pieces: Pieces, attack_tools) -> dict:
    """Every promise of one reading, each a resumable piece."""
    samples = args.samples
    rows = {name: pieces.get(f"{r.key}: read {name}", lambda texts=texts: read(clf, texts, samples))
            for name, texts in (("imdb", sets.imdb.texts), ("rotten_tomatoes", sets.rotten_tomatoes.texts),
                                ("not_reviews", [p["text"] for p in sets.not_reviews]), ("shuffled", sets.shuffled))}
    imdb, rt = uncertainty(rows["imdb"], sets.imdb.labels), uncertainty(rows["rotten_tomatoes"],
                                                                         sets.rotten_tomatoes.labels)
    scores = sorted(rows["imdb"][0]["ood"])
    detection = {name: {s: ood(rows["imdb"], rows[name], s) for s in scores} for name in OOD_SETS}
    noisy = pieces.get(f"{r.key}: typos", lambda: robustness_to_typos(clf, sets.imdb.texts, sets.imdb.labels,
                                                                     imdb["correct"], samples))
    attacked = pieces.get(f"{r.key}: attack", lambda: attack(clf, sets.attack_texts, sets.attack_labels, samples,
                                                             *attack_tools(), args.max_words))
    faith = pieces.get(f"{r.key}: faithfulness", lambda: faithful(clf, sets.faith_texts, samples))
    primary = primary_score(r)
    flags = {name: [row["flagged"] for row in rows[name]] for name in rows}
    flag = None if any(f is None for f in flags["imdb"]) else {
        "false_positive_rate": sum(flags["imdb"]) / len(flags["imdb"]),
        "detected": {name: sum(flags[name]) / len(flags[name]) for name in OOD_SETS}}
    return {"label": r.label, "ood_flag": flag, "checkpoint": r.role, "method": r.method, "ood_score": primary,
            "ood_auroc": {name: detection[name][primary]["auroc"] for name in OOD_SETS},
            "accuracy_under_attack": attacked["accuracy_under_attack"],
            "attack_success_rate": attacked["attack_success_rate"],
            "comprehensiveness_10": faith["evidence_comprehensiveness_10"],
            "ece_rotten_tomatoes": rt["ece"],
            "uncertainty": {"imdb_test": imdb, "rotten_tomatoes": rt}, "ood": detection, "typos": noisy,
            "attack": {k: v for k, v in attacked.items() if k != "attacks"}, "faithfulness": faith}


def run_promises(args: argparse.Namespace, argv: list[str]) -> int:
    if not args.out:
        raise TextdiffError("promises needs --out, the directory for promises.json")
    for flag in ("n", "n_attack", "attack_words", "max_words", "candidates", "n_faith", "faith_words", "samples"):
        if getattr(args, flag) < 1:
            raise TextdiffError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if not 0 < args.similarity <= 1:
        raise TextdiffError(f"--similarity must be in (0, 1], got {args.similarity}")
    root, out = Path(args.root).resolve(), Path(args.out)
    models = _models(args, root)
    readings = _chosen(args, models)
    sets = Sets.of(args)
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("fresh", "out", "root")}
    key = {"settings": settings, "hardware": hardware(), "models": {r.role: fingerprint(models[r.role])
                                                                    for r in readings}}
    pieces = Pieces(out / "promises.partial.json", key, fresh=args.fresh)
    tools: list = []

    def attack_tools():  # loaded once, on the first attack that runs
        if not tools:
            tools.extend([Proposer(models["diffusion"], args.candidates), Similarity(args.similarity),
                          Polarity(args.polarity) if args.polarity > 0 else None])
        return tools

    started = time.time()
    result = {"command": shlex.join(["python", "train_cli.py", "promises", *argv]), "hardware": hardware(),
              "settings": settings, "sets": sets.describe(), "readings": {}}
    classifiers = {}
    for r in readings:
        print(f"{r.label}…", flush=True)
        classifiers[r.key] = load_reading(r, models)
        result["readings"][r.key] = measure_reading(r, classifiers[r.key], sets, args, pieces, attack_tools)
    for r in readings:  # every reading on every other reading's adversarial texts
        transfers = {}
        for s in readings:
            if s.key != r.key:
                adversarial = pieces.done[f"{s.key}: attack"]["value"]["attacks"]
                transfers[s.key] = pieces.get(f"{r.key} on {s.key}'s attacks", lambda a=adversarial, c=classifiers[
                    r.key]: transfer(c, a, args.samples))
        result["readings"][r.key]["attack"]["transfer_from"] = transfers
    result["seconds"] = round(time.time() - started, 1)
    result["finished_at"] = time.strftime("%Y-%m-%d %H:%M")
    text = json.dumps(result, indent=1, default=str) + "\n"
    write_atomic(out / "promises.json", lambda tmp: tmp.write_text(text))
    pieces.finish()
    print(f"wrote {out / 'promises.json'}")
    return 0

