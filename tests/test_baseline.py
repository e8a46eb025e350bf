"""The TF-IDF + logistic regression reference row."""

import json
import random

import pytest

from textdiff_core.classify import load_classifier
from train_cli import main

GOOD = ["wonderful", "moving", "brilliant", "superb", "delightful"]
BAD = ["dreadful", "boring", "awful", "tedious", "clumsy"]


@pytest.fixture()
def reviews(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTDIFF_CACHE", str(tmp_path / "cache"))
    rng = random.Random(0)
    rows = []
    for i in range(400):
        label = i % 2
        words = rng.sample(GOOD if label else BAD, 2) + rng.sample(["the", "film", "plot", "cast", "was"], 3)
        rng.shuffle(words)
        rows.append(f'"{" ".join(words)} {i}",{"positive" if label else "negative"}')
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


def test_the_baseline_learns_its_train_split_and_is_cached(reviews, tmp_path):
    clf = load_classifier(f"tfidf:{reviews}")
    assert clf.classes == ["negative", "positive"] and clf.method == "tfidf"
    p = clf.classify("a wonderful and brilliant film")
    assert p.label == "positive" and sum(p.posterior) == pytest.approx(1.0)
    assert clf.evidence("a wonderful but tedious film")[0][0] in ("wonderful", "tedious")
    assert len(list((tmp_path / "cache").glob("tfidf-*.joblib"))) == 1
    assert load_classifier(f"tfidf:{reviews}").classify("dreadful, awful").label == "negative"  # from the cache


def test_evaluate_reports_the_baseline_like_any_checkpoint(reviews, tmp_path):
    out = tmp_path / "r.json"
    assert main(["evaluate", "--checkpoint", f"tfidf:{reviews}", "--data", str(reviews), "--split", "test",
                 "--no-progress", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["method"] == "tfidf" and report["accuracy"] > 0.9 and report["n"] > 10


def test_the_baseline_has_one_method(reviews, capsys):
    assert main(["classify", "--checkpoint", f"tfidf:{reviews}", "--method", "elbo", "a film"]) == 2
    assert "one method" in capsys.readouterr().err
