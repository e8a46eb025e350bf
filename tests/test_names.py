"""Renamed settings keep their old names working: the ``seed`` classification method, a trace's ``spacing``."""

import json

import pytest
import torch

from textdiff_core.classify import load_classifier
from textdiff_core.decoding import generate
from textdiff_core.models import load_model
from textdiff_core.trace import Trace
from train_cli import main

TEXT = "A tender, funny film with a wonderful cast."


def test_the_seed_method_is_mlm_loss_under_its_old_name():
    new = load_classifier("tiny", "mlm-loss")
    with pytest.warns(FutureWarning, match="now called 'mlm-loss'"):
        old = load_classifier("tiny", "seed")
    assert old.method == new.method == "mlm-loss"
    a, b = (clf.classify(TEXT, generator=torch.Generator().manual_seed(3)) for clf in (new, old))
    assert a.log_likelihood == b.log_likelihood and a.forward_passes == b.forward_passes == 5 * 2


@pytest.mark.slow
def test_a_calibration_fitted_under_the_old_name_still_applies(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "tiny", "--data", "rotten_tomatoes", "--conditioning", "class", "--quick-test",
                 "--no-progress", "--out", str(out)]) == 0
    fitted = {"temperature": 2.0, "bias": [0.5, -0.5], "ood_reference": [0.0, 1.0]}
    (out / "calibration.json").write_text(json.dumps({"seed": fitted}))
    clf = load_classifier(str(out), "mlm-loss")
    assert clf.calibration.temperature == 2.0 and clf.calibration.bias == [0.5, -0.5]


def test_cli_accepts_both_method_names(tmp_path, capsys):
    for method in ("mlm-loss", "seed"):
        assert main(["classify", "--checkpoint", "tiny", "--method", method, TEXT]) == 0
        assert "method mlm-loss" in capsys.readouterr().out


def test_a_trace_written_with_spacing_reads_as_token_style():
    trace = generate(load_model("tiny", device="cpu"), "The movie was", 4, strategy="topk", k=2)
    data = json.loads(trace.to_json())
    data["spacing"] = data.pop("token_style")
    assert Trace.from_dict(data) == trace and trace.token_style == "wordpiece"
