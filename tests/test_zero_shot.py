"""A zero-shot LM measured like the trained models: its prompt chosen and its bias fitted on validation."""

import json

import pytest

from textdiff_core.classify import load_classifier
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
    clf = load_classifier(str(out))
    assert clf.prompts == [chosen.format(label=c) for c in ("negative", "positive")]
    assert clf.calibration.bias == pytest.approx(fitted["bias"]) and clf.calibration.temperature == pytest.approx(
        fitted["temperature"])


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
