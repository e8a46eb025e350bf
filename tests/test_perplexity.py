"""The perplexity command: exact for causal models, the ELBO bound with its Monte Carlo error for masked ones,
each text given its class prompt where the model is class-conditional."""

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from textdiff_core.evaluate import corpus_perplexity
from textdiff_core.models import load_model, save_model
from textdiff_core.tokens import encode
from train_cli import main

TEXTS = ["the plot was thin but the acting was fine", "a warm and clever film", "dull, long and loud",
         "i laughed all the way through and would watch it again"]


@pytest.fixture()
def csv(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": TEXTS, "label": ["negative", "positive", "negative", "positive"]}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def saved_class_checkpoint(tmp_path_factory):
    """The tiny masked model saved as a class-conditional checkpoint (its sidecar names the classes and prompt)."""
    lm = load_model("tiny")
    meta = {"objective": "diffusion", "conditioning": "class", "classes": ["negative", "positive"],
            "class_prompt": "{label} review:", "max_length": 64}
    return save_model(lm.model, lm.tokenizer, tmp_path_factory.mktemp("ppl") / "tiny-class", meta)


@pytest.fixture()
def class_checkpoint(saved_class_checkpoint, tmp_path):
    """A copy per test: a test may rewrite its sidecar (e.g. to read it as a joint checkpoint)."""
    return Path(shutil.copytree(saved_class_checkpoint, tmp_path / "tiny-class"))


def test_exact_perplexity_equals_exp_mean_nll_from_a_hand_loop(csv, tmp_path):
    out = tmp_path / "r.json"
    assert main(["perplexity", "--checkpoint", "tiny-ar", "--data", str(csv), "--split", "all", "--out", str(out),
                 "--no-progress"]) == 0
    report = json.loads(out.read_text())
    lm = load_model("tiny-ar")
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for text in TEXTS:
            batch = encode(lm.tokenizer, [text])
            ids = batch.input_ids[0].tolist()
            for i in batch.target_mask[0].nonzero()[:, 0].tolist():  # p(x_i | everything before it), one at a time
                logits = lm.model(input_ids=torch.tensor([ids[:i]])).logits[0, -1]
                nll -= torch.log_softmax(logits, -1)[ids[i]].item()
                tokens += 1
    assert report["n"] == 4 and report["tokens"] == tokens and report["bound"] == "exact"
    assert math.isclose(report["perplexity"], math.exp(nll / tokens), rel_tol=1e-4)
    low, high = report["perplexity_ci95"]
    assert low < report["perplexity"] < high
    assert report["perplexity_ci95_mc"] == [report["perplexity"]] * 2, "an exact score has no Monte Carlo error"
    assert not list(tmp_path.glob(".r.json.*")), "no temporary file left behind"


def test_the_elbo_interval_shrinks_with_more_samples():
    lm = load_model("tiny")
    widths = {}
    for k in (2, 32):
        r = corpus_perplexity(lm, TEXTS, samples=k, seed=1, progress=False)
        assert r["bound"] == "elbo" and r["samples"] == k
        widths[k] = {key: math.log(r[key][1] / r[key][0]) for key in ("perplexity_ci95", "perplexity_ci95_mc")}
    # Monte Carlo error falls as 1/sqrt(K): 16x the samples, about a quarter of the width (allow a wide margin)
    assert widths[32]["perplexity_ci95_mc"] < 0.5 * widths[2]["perplexity_ci95_mc"], widths
    assert widths[32]["perplexity_ci95"] < widths[2]["perplexity_ci95"], widths


def test_each_text_is_scored_given_its_own_class_prompt(class_checkpoint, csv, tmp_path):
    out = tmp_path / "r.json"
    assert main(["perplexity", "--checkpoint", str(class_checkpoint), "--data", str(csv), "--split", "all",
                 "--samples", "4", "--out", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["conditioned_on_class"]
    assert [t["prompt"] for t in report["texts"]] == [f"{t['label']} review:" for t in report["texts"]]
    lm = load_model(str(class_checkpoint))
    texts = TEXTS  # the file's order (no --limit)
    given = corpus_perplexity(lm, texts, [f"{t['label']} review:" for t in report["texts"]], 4, progress=False)
    wrong = corpus_perplexity(lm, texts, [("positive" if t["label"] == "negative" else "negative") + " review:"
                                          for t in report["texts"]], 4, progress=False)
    none = corpus_perplexity(lm, texts, None, 4, progress=False)
    assert math.isclose(report["perplexity"], given["perplexity"], rel_tol=1e-5)
    assert not math.isclose(report["perplexity"], wrong["perplexity"], rel_tol=1e-5)
    assert not math.isclose(report["perplexity"], none["perplexity"], rel_tol=1e-5)


def test_integer_labels_are_class_indices_and_joint_models_are_conditioned_too(class_checkpoint, tmp_path):
    meta = json.loads((class_checkpoint / "textdiff.json").read_text()) | {"conditioning": "joint"}
    (class_checkpoint / "textdiff.json").write_text(json.dumps(meta))
    data = tmp_path / "ints.csv"
    pd.DataFrame({"text": TEXTS[:2], "label": [1, 0]}).to_csv(data, index=False)
    out = tmp_path / "r.json"
    assert main(["perplexity", "--checkpoint", str(class_checkpoint), "--data", str(data), "--split", "all",
                 "--samples", "2", "--out", str(out), "--no-progress"]) == 0
    assert [t["prompt"] for t in json.loads(out.read_text())["texts"]] == ["positive review:", "negative review:"]


def test_a_failed_run_leaves_the_previous_report_alone(class_checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("{}")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": TEXTS[:2], "label": ["neutral", "positive"]}).to_csv(bad, index=False)
    assert main(["perplexity", "--checkpoint", str(class_checkpoint), "--data", str(bad), "--split", "all",
                 "--out", str(out), "--no-progress"]) == 2
    assert "not classes of the checkpoint" in capsys.readouterr().err
    assert out.read_text() == "{}"
