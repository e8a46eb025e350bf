"""A discriminative reference: TF-IDF (word 1-2-grams) + logistic regression, trained on a dataset's train split.

Every table that shows a generative classifier shows this row beside it, so the reader sees what a cheap
discriminative classifier gets on the same texts. It speaks the ``Classifier`` interface (``classify`` returns a
``Prediction``), so ``evaluate``, the report and the Classify page treat it like any other checkpoint. Its per-token
evidence is each word's weight times its TF-IDF value (the linear model's exact decomposition of the log-odds).

The fitted pipeline is cached under ``~/.cache/textdiff/`` (scikit-learn's joblib format, our own file): fitting
on the 20,000 IMDB training reviews takes about half a minute on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys
import time
from pathlib import Path

from textdiff_core.data import load_data
from textdiff_core.errors import TextdiffError
from textdiff_core.likelihood import TextScore
from textdiff_core.paths import cache_location
from textdiff_core.prediction import Prediction
from textdiff_core.records import Calibration

NAME = "tfidf"  # the checkpoint name that selects this baseline; "tfidf:SPEC" trains on SPEC's train split
METHOD = "tfidf"
# C chosen on IMDB validation: 1, 4, 16, 64 gave 89.0, 89.4, 89.8, 89.5% (docs/experiments.md)
SETTINGS = {"ngram_range": (1, 2), "min_df": 2, "max_features": 200_000, "sublinear_tf": True, "C": 16.0}


def _cache_dir() -> Path:
    return cache_location()


def _tag(data: str) -> str:
    """The data spec as part of a file name: the cache says which data a fit is of, without reading the data."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", data)[-48:].strip("-.") or "data"


def fit_note(data: str = "imdb") -> str:
    """What the first use of the baseline on ``data`` does, for the CLI's note and the app's spinner (16 s measured
    on the IMDB train split, 2 CPU cores)."""
    return f"fitting the TF-IDF reference on the {data} train split once per machine (about 15 s on 2 CPU cores)"


def is_fitted(data: str = "imdb") -> bool:
    """Whether a fit on ``data`` is cached (a quick look: the data itself is not read, so not hashed either)."""
    return any(_cache_dir().glob(f"tfidf-{_tag(data)}-*.joblib"))


class TfidfBaseline:
    """TF-IDF + logistic regression with the generative classifiers' interface."""

    method = METHOD
    exact = True

    def __init__(self, pipeline, classes: list[str], data: str) -> None:
        self.pipeline, self.classes, self.data = pipeline, list(classes), data
        self.calibration = Calibration(bias=[0.0] * len(classes))  # logistic regression is calibrated by its loss
        self.log_prior = [-math.log(len(classes))] * len(classes)

    def classify(self, text: str, samples: int = 0, adaptive: bool = False, z: float = 2.0, round_samples: int = 2,
                 generator=None) -> Prediction:
        """The posterior of one text; the 'log-likelihood' columns hold the model's log-posteriors."""
        if not text.strip():
            raise TextdiffError("the text is empty")
        started = time.time()
        log_post = self.pipeline.predict_log_proba([text])[0].tolist()
        best = max(range(len(self.classes)), key=log_post.__getitem__)
        scores = [TextScore(-v, 0.0, [], [], [], [-v], 1) for v in log_post]
        return Prediction(label=self.classes[best], classes=self.classes, posterior=[math.exp(v) for v in log_post],
                          log_likelihood=log_post, log_likelihood_se=[0.0] * len(log_post), scores=scores,
                          samples=0, forward_passes=0, seconds=time.time() - started)

    def evidence(self, text: str) -> list[tuple[str, float]]:
        """(word or bigram, contribution to the log-odds of the last class over the first) for the text's n-grams."""
        vectorizer, model = self.pipeline.named_steps["tfidf"], self.pipeline.named_steps["lr"]
        row = vectorizer.transform([text])
        names = vectorizer.get_feature_names_out()
        weights = model.coef_[0] if model.coef_.shape[0] == 1 else model.coef_[-1] - model.coef_[0]
        return sorted(((names[j], float(v * weights[j])) for j, v in zip(row.indices, row.data, strict=True)),
                      key=lambda kv: -abs(kv[1]))


def load_baseline(data: str = "imdb", progress: bool = True) -> TfidfBaseline:
    """The baseline trained on ``data``'s train split (a built-in dataset or a CSV/JSONL file), cached on disk."""
    # deferred: only the TF-IDF cache needs joblib
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    train = load_data(data, "train", min_classes=2, seed=0)
    digest = hashlib.sha1(("\n".join(train.texts) + repr(train.labels) + repr(SETTINGS)).encode()).hexdigest()[:16]
    cache = _cache_dir() / f"tfidf-{_tag(data)}-{digest}.joblib"
    if cache.is_file():
        try:
            pipeline, classes = joblib.load(cache)
            return TfidfBaseline(pipeline, classes, data)
        except Exception:  # a cache written by another scikit-learn version: fit again
            cache.unlink(missing_ok=True)
    if progress:
        print(f"{fit_note(data)}: {len(train):,} texts", file=sys.stderr)
    settings = dict(SETTINGS)
    c = settings.pop("C")
    pipeline = Pipeline([("tfidf", TfidfVectorizer(**settings)), ("lr", LogisticRegression(C=c, max_iter=2000))])
    pipeline.fit(train.texts, train.labels)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp-{os.getpid()}")
    joblib.dump((pipeline, list(train.classes)), tmp)
    os.replace(tmp, cache)
    return TfidfBaseline(pipeline, list(train.classes), data)
