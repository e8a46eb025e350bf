"""The classify / calibrate / evaluate commands end to end on a tiny class-conditional checkpoint."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from train_cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "tiny-class"
    assert main(["train", "--model", "tiny", "--data", "rotten_tomatoes", "--conditioning", "class", "--quick-test",
                 "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.fixture()
def checkpoint(trained, tmp_path):
    """A copy per test: calibrate writes calibration.json beside the weights, and no test may see another's."""
    return Path(shutil.copytree(trained, tmp_path / "tiny-class"))


def test_calibrate_then_evaluate_writes_a_consistent_report(checkpoint, tmp_path, capsys):
    assert main(["calibrate", "--checkpoint", str(checkpoint), "--data", "rotten_tomatoes", "--limit", "8",
                 "--samples", "2", "--no-progress"]) == 0
    assert "validation accuracy (8 texts)" in capsys.readouterr().out
    fitted = json.loads((checkpoint / "calibration.json").read_text())["elbo"]
    assert fitted["fitted_on"] == "rotten_tomatoes/validation" and len(fitted["ood_reference"]) == 8
    report_file = tmp_path / "r.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", "rotten_tomatoes", "--limit", "10",
                 "--samples", "2", "--adaptive", "--no-progress", "--out", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["n"] == 10 and report["split"] == "test" and report["calibrated"]
    assert report["accuracy"] == pytest.approx(sum(report["confusion"][i][i] for i in range(2)) / 10)
    assert "accuracy" in capsys.readouterr().out


def test_calibrate_fits_on_the_validation_texts_it_records(checkpoint, monkeypatch, capsys):
    """The texts calibration scores are the validation split's (the 8 that --limit takes of it), never a test text,
    and the calibration records that split: a calibration fitted on test while saying "validation" would leak the
    test set into every later evaluate report."""
    from textdiff_core.classify import Classifier
    from textdiff_core.data import load_data

    scored = []
    real = Classifier.classify

    def spy(self, text, *args, **kwargs):
        scored.append(text)
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Classifier, "classify", spy)
    assert main(["calibrate", "--checkpoint", str(checkpoint), "--data", "rotten_tomatoes", "--limit", "8",
                 "--samples", "1", "--no-progress"]) == 0
    capsys.readouterr()
    validation = load_data("rotten_tomatoes", "validation", min_classes=1, max_samples=8, seed=0).texts
    test = set(load_data("rotten_tomatoes", "test", min_classes=1).texts)
    assert len(validation) == 8 and not test & set(validation), "the two splits hold different texts"
    assert sorted(scored) == sorted(validation), "calibrated on exactly the validation texts --limit takes"
    assert not test & set(scored), "no test text reaches the calibration"
    fitted = json.loads((checkpoint / "calibration.json").read_text())["elbo"]
    assert fitted["fitted_on"] == "rotten_tomatoes/validation" and fitted["n"] == len(scored) == 8


def test_paired_compares_two_evaluate_reports_review_by_review(checkpoint, tmp_path, capsys):
    files = {}
    for name, method in (("elbo", "elbo"), ("indep", "elbo-indep")):
        files[name] = tmp_path / f"{name}.json"
        assert main(["evaluate", "--checkpoint", str(checkpoint), "--method", method, "--data", "rotten_tomatoes",
                     "--limit", "12", "--samples", "2", "--no-progress", "--out", str(files[name])]) == 0
    a, b = (json.loads(files[n].read_text()) for n in ("elbo", "indep"))
    assert a["labels"] == b["labels"] and len(a["labels"]) == 12
    capsys.readouterr()
    assert main(["paired", str(files["elbo"]), str(files["indep"])]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    right = [[p == y for p, y in zip(r["predictions"], r["labels"], strict=True)] for r in (a, b)]
    a_only = sum(x and not y for x, y in zip(*right, strict=True))
    b_only = sum(y and not x for x, y in zip(*right, strict=True))
    assert f"A - B: {100 * (a['accuracy'] - b['accuracy']):+.1f} points" in line
    assert f"right only by A: {a_only}, only by B: {b_only}" in line

    fewer = tmp_path / "fewer.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", "rotten_tomatoes", "--limit", "6",
                 "--samples", "2", "--no-progress", "--out", str(fewer)]) == 0
    assert main(["paired", str(files["elbo"]), str(fewer)]) == 2
    assert "not on the same texts" in capsys.readouterr().err
    assert main(["paired", str(files["elbo"]), str(tmp_path / "missing.json")]) == 2


def _classify(checkpoint, capsys) -> tuple[str, dict[str, tuple[float, float]]]:
    """classify's output, and per class its printed (P(c|x), log P(x|c))."""
    assert main(["classify", "--checkpoint", str(checkpoint), "--samples", "2", "A warm, funny film."]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^ +(\w+) +P\(c\|x\) = ([\d.]+) +log P\(x\|c\) = +(-?[\d.]+) ± ", out, re.M)
    return out, {name: (float(post), float(ll)) for name, post, ll in rows}


def test_classify_prints_class_posteriors_and_ood(checkpoint, capsys):
    out, rows = _classify(checkpoint, capsys)
    assert out.startswith("class: ") and set(rows) == {"negative", "positive"}, out
    assert "OOD: unknown (no calibration" in out
    ll = torch.tensor([rows[c][1] for c in ("negative", "positive")], dtype=torch.float64)
    # without calibration: Bayes' rule under the uniform prior of the balanced training data
    assert torch.allclose(torch.tensor([rows[c][0] for c in ("negative", "positive")], dtype=torch.float64),
                          torch.softmax(ll, 0),
                          atol=2e-3), rows
    # a calibration applies its bias and temperature to the same likelihoods (same seed), and its OOD reference
    # places the text: below every validation text is flagged, above every one is not
    for reference, verdict, percentile in (([1e9] * 4, "FLAGGED", "0th"), ([-1e9] * 4, "no", "100th")):
        (checkpoint / "calibration.json").write_text(json.dumps(
            {"elbo": {"temperature": 2.0, "bias": [0.0, 3.0], "ood_reference": reference}}))
        out, calibrated = _classify(checkpoint, capsys)
        assert [calibrated[c][1] for c in ("negative", "positive")] == [rows[c][1] for c in ("negative", "positive")]
        expected = torch.softmax((ll + torch.tensor([0.0, 3.0], dtype=torch.float64)) / 2.0, 0)
        assert torch.allclose(torch.tensor([calibrated[c][0] for c in ("negative", "positive")], dtype=torch.float64),
                              expected,
                              atol=2e-3), (calibrated, expected)
        assert f"OOD: {verdict} (evidence per token at the {percentile} percentile" in out, out


def test_classify_says_when_the_calibration_reverses_the_scores_verdict(checkpoint, capsys):
    out, rows = _classify(checkpoint, capsys)
    raw = max(rows, key=lambda c: rows[c][0])  # uncalibrated: what the scores alone pick
    other = ({"negative", "positive"} - {raw}).pop()
    assert "reverses" not in out
    bias = [0.0, 0.0]
    bias[["negative", "positive"].index(other)] = 50.0  # far past any score difference of a tiny model
    (checkpoint / "calibration.json").write_text(json.dumps({"elbo": {"temperature": 1.0, "bias": bias,
                                                                      "ood_reference": []}}))
    out, _ = _classify(checkpoint, capsys)
    assert out.startswith(f"class: {other} "), out
    assert f"note: Calibration reverses the verdict: the scores alone say {raw} (" in out, out
    # a calibration that keeps the verdict says nothing of a reversal
    bias = [0.0, 0.0]
    bias[["negative", "positive"].index(raw)] = 50.0
    (checkpoint / "calibration.json").write_text(json.dumps({"elbo": {"temperature": 1.0, "bias": bias,
                                                                      "ood_reference": []}}))
    out, _ = _classify(checkpoint, capsys)
    assert out.startswith(f"class: {raw} ") and "reverses" not in out, out


def test_zero_shot_with_a_causal_model(capsys):
    """Any causal LM classifies by Bayes' rule over its exact scores of the text after each class's prompt."""
    from textdiff_core.likelihood import ar_scores
    from textdiff_core.models import load_model
    from textdiff_core.records import ZERO_SHOT_PROMPT

    classes, text = ["bad", "good", "neutral"], "It was fine."
    assert main(["classify", "--checkpoint", "tiny-ar", "--classes", ",".join(classes), text]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^ +(\w+) +P\(c\|x\) = ([\d.]+) +log P\(x\|c\) = +(-?[\d.]+) ± ", out, re.M)
    assert [name for name, _, _ in rows] == classes, out
    prompts = [ZERO_SHOT_PROMPT.format(label=c) for c in classes]
    expected = torch.tensor([-s.nll for s in ar_scores(load_model("tiny-ar"), text, prompts)], dtype=torch.float64)
    assert len(set(expected.tolist())) == 3, "the prompts give three different scores (an untrained model: barely)"
    assert [float(ll) for _, _, ll in rows] == [round(v, 2) for v in expected.tolist()]
    posterior = torch.softmax(expected, 0)  # no calibration, uniform prior
    assert [float(p) for _, p, _ in rows] == [round(v, 3) for v in posterior.tolist()]
    assert out.startswith(f"class: {classes[int(expected.argmax())]} "), out


def test_classification_errors_exit_2(checkpoint, capsys):
    assert main(["calibrate", "--checkpoint", str(checkpoint), "--split", "test"]) == 2
    assert "never on the test split" in capsys.readouterr().err
    assert main(["classify", "--checkpoint", str(checkpoint), "   "]) == 2
    assert main(["classify", "--checkpoint", "tiny-ar", "--method", "elbo", "text"]) == 2
    assert main(["classify", "--checkpoint", str(checkpoint), "--samples", "0", "text"]) == 2


def test_evidence_by_rate_runs_on_a_checkpoint_and_refuses_bad_settings(checkpoint, tmp_path, capsys):
    from bench import evidence_by_rate

    out = tmp_path / "evidence.json"
    assert evidence_by_rate.main(["--checkpoint", str(checkpoint), "--data", "rotten_tomatoes", "--limit", "6",
                                  "--grid", "4", "--samples", "1", "--max-windows", "1", "--no-progress",
                                  "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n"] == 6 and len(result["terms"]) == 6 and len(result["rows"]) == 4 + 3
    assert sorted(result["labels"]) == [0, 0, 0, 1, 1, 1]  # class-balanced
    assert "| all (the ELBO) |" in capsys.readouterr().out
    assert evidence_by_rate.main(["--checkpoint", str(checkpoint), "--data", "rotten_tomatoes", "--grid", "0"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def _csv(path, n=30):
    rows = ["text,label"] + [f"review {i}: the film was {'great' if i % 2 else 'awful'} number {i},"
                             f"{'positive' if i % 2 else 'negative'}" for i in range(n)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_evaluate_and_calibrate_use_every_row_of_a_file_and_say_so(checkpoint, tmp_path, capsys):
    data = _csv(tmp_path / "mine.csv")
    out = tmp_path / "r.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--samples", "1",
                 "--no-progress", "--out", str(out)]) == 0
    assert f"using 30 rows of {data}, split all: every row of the file" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["n"] == 30 and report["split"] == "all"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", "rotten_tomatoes", "--limit", "4",
                 "--samples", "1", "--no-progress"]) == 0
    assert "using 4 rows of rotten_tomatoes, split test (--limit 4)" in capsys.readouterr().out

    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(checkpoint, copy)
    assert main(["calibrate", "--checkpoint", str(copy), "--data", str(data), "--samples", "1",
                 "--no-progress"]) == 0
    out_text = capsys.readouterr().out
    assert "using 30 rows" in out_text and f"fitted on every row of {data}" in out_text
    assert json.loads((copy / "calibration.json").read_text())["elbo"]["fitted_on"] == f"{data}/all"
    assert main(["calibrate", "--checkpoint", str(copy), "--data", "rotten_tomatoes", "--split", "all"]) == 2
    assert "includes its test split" in capsys.readouterr().err


def test_evaluate_on_the_file_a_model_was_trained_on_keeps_to_its_test_split(tmp_path, capsys):
    data = _csv(tmp_path / "train.csv", 60)
    out = tmp_path / "m"
    assert main(["train", "--model", "tiny", "--data", str(data), "--conditioning", "class", "--quick-test",
                 "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out), "--data", str(data), "--samples", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"was trained on {data}, so only its test split is used" in printed and "split test" in printed


def test_classify_without_a_method_uses_the_reading_the_shipped_calibration_chose(capsys):
    text = "An absolute delight from start to finish, with wonderful performances and a moving story."
    assert main(["classify", "--checkpoint", "checkpoints/imdb-diffusion", text]) == 0
    out, err = capsys.readouterr()
    assert "method infill" in out
    assert err == ("note: method infill, the reading its calibration chose on validation (89.3% against 81.3% for "
                   "elbo); --method chooses another\n")
    assert main(["classify", "--checkpoint", "checkpoints/imdb-diffusion", "--method", "elbo", "--samples", "2",
                 text]) == 0
    out, err = capsys.readouterr()
    assert "method elbo" in out and err == "", "a method given: no note"
