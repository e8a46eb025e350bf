"""The classify / calibrate / evaluate commands end to end on a tiny class-conditional checkpoint."""

import json

import pytest

from train_cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "tiny-class"
    assert main(["train", "--model", "tiny", "--data", "rotten_tomatoes", "--conditioning", "class", "--quick-test",
                 "--no-progress", "--out", str(out)]) == 0
    return out


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


def test_classify_prints_class_posteriors_and_ood(checkpoint, capsys):
    assert main(["classify", "--checkpoint", str(checkpoint), "--samples", "2", "A warm, funny film."]) == 0
    out = capsys.readouterr().out
    assert out.startswith("class: ") and "P(c|x)" in out and "OOD:" in out


def test_zero_shot_with_a_causal_model(capsys):
    assert main(["classify", "--checkpoint", "tiny-ar", "--classes", "bad,good,neutral", "It was fine."]) == 0
    out = capsys.readouterr().out
    assert out.count("P(c|x)") == 3


def test_classification_errors_exit_2(checkpoint, capsys):
    assert main(["calibrate", "--checkpoint", str(checkpoint), "--split", "test"]) == 2
    assert "never on the test split" in capsys.readouterr().err
    assert main(["classify", "--checkpoint", str(checkpoint), "   "]) == 2
    assert main(["classify", "--checkpoint", "tiny-ar", "--method", "elbo", "text"]) == 2
    assert main(["classify", "--checkpoint", str(checkpoint), "--samples", "0", "text"]) == 2
