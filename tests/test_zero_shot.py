"""A zero-shot LM measured like the trained models: its prompt chosen and its bias fitted on validation."""

import json
import math

import pytest
import torch

from textdiff_core.classify import fit_combined, load_classifier
from textdiff_core.data import load_data
from textdiff_core.likelihood import ar_scores
from textdiff_core.models import load_model
from train_cli import main


def test_zero_shot_chooses_a_prompt_and_fits_a_bias_that_load_classifier_applies(tmp_path, capsys):
    out = tmp_path / "zs"
    templates = ["A {label} movie review:", "{label} review:"]
    args = ["zero-shot", "--model", "tiny-ar", "--data", "imdb", "--limit", "12", "--no-progress", "--out", str(out)]
    assert main([*args, *[x for t in templates for x in ("--template", t)]]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((out / "textdiff.json").read_text())
    assert meta["conditioning"] == "zero-shot" and meta["base_model"] == "tiny-ar"
    chosen = meta["class_prompt"]
    candidates = meta["chosen_on"]["candidates"]
    assert set(candidates) == set(templates) and meta["chosen_on"]["n"] == 12
    assert candidates[chosen]["accuracy_with_bias"] == max(c["accuracy_with_bias"] for c in candidates.values())
    assert f"{chosen!r}" in printed and "<- chosen" in printed
    fitted = json.loads((out / "calibration.json").read_text())["ar"]
    bias, temperature = torch.tensor(fitted["bias"], dtype=torch.float64), fitted["temperature"]

    # The expected values, from the exact left-to-right scores of the same 12 validation texts (uniform prior)
    lm = load_model("tiny-ar")
    data = load_data("imdb", "validation", max_samples=12, seed=0)
    labels = torch.tensor([["negative", "positive"].index(data.classes[y]) for y in data.labels])
    ll = {t: torch.tensor([[-s.nll for s in ar_scores(lm, text, [t.format(label=c) for c in ("negative", "positive")])]
                           for text in data.texts], dtype=torch.float64) for t in templates}
    for t in templates:  # the recorded accuracies without a bias are these scores' accuracies
        assert candidates[t]["accuracy"] == pytest.approx((ll[t].argmax(1) == labels).double().mean().item()), t

    def log_loss(b: torch.Tensor, temp: float) -> float:
        return -torch.log_softmax((ll[chosen] + b) / temp, 1).gather(1, labels[:, None]).mean().item()

    # Bayes' rule under the fit, in float64 and in the classifier's order of operations: an untrained model leaves
    # margins of micro-nats between classes once the bias is fitted, so a different rounding would flip some texts
    prior = torch.full((2,), math.log(0.5), dtype=torch.float64)
    decided = ((ll[chosen] + prior + bias) / temperature).argmax(1)
    assert candidates[chosen]["accuracy_with_bias"] == (decided == labels).double().mean().item()
    # the fit lowers the validation log loss of those scores (an untrained model's scores hardly differ between
    # classes, so by little; fit_calibration's own optimum is tested in test_joint.py)
    assert log_loss(bias, temperature) < log_loss(torch.zeros(2, dtype=torch.float64), 1.0), (bias, temperature)
    # and it is the fit of those scores: the same fitter, given the independently computed scores, agrees
    refit = fit_combined(ll[chosen].tolist(), torch.zeros_like(ll[chosen]).tolist(), labels.tolist(),
                         [math.log(0.5)] * 2)
    assert refit.bias == pytest.approx(fitted["bias"], abs=1e-4), (refit.bias, fitted["bias"])
    assert refit.temperature == pytest.approx(temperature, rel=1e-3)

    # load_classifier applies that fit: its posterior is softmax((log P(x|c) + bias) / T) for a new text
    clf = load_classifier(str(out))
    assert clf.prompts == [chosen.format(label=c) for c in ("negative", "positive")]
    text = "a tender, funny and beautifully acted film"
    scores = torch.tensor([-s.nll for s in ar_scores(lm, text, clf.prompts)], dtype=torch.float64)
    posterior = torch.tensor(clf.classify(text).posterior, dtype=torch.float64)
    assert torch.allclose(posterior, torch.softmax((scores + bias) / temperature, 0), atol=1e-5), posterior


@pytest.mark.parametrize("extra, message", [(["--split", "test"], "never on test"),
                                            (["--template", "no label here"], "{label}")])
def test_zero_shot_refuses_test_data_and_templates_without_a_label(tmp_path, capsys, extra, message):
    assert main(["zero-shot", "--model", "tiny-ar", "--limit", "4", "--out", str(tmp_path / "z"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


def test_a_zero_shot_directory_without_its_model_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "textdiff.json").write_text(json.dumps({"conditioning": "zero-shot", "classes": ["a", "b"]}))
    assert main(["classify", "--checkpoint", str(tmp_path), "some text"]) == 2
    assert "base_model" in capsys.readouterr().err
