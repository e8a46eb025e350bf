"""Old names are refused in one line that gives the new one (the ``seed`` classification method, the
``--noise-schedule`` flag); a trace written with ``spacing`` still reads as ``token_style``."""

import json

import pytest

from textdiff_core import likelihood
from textdiff_core.classify import load_classifier
from textdiff_core.decoding import generate
from textdiff_core.errors import TextdiffError
from textdiff_core.models import load_model
from textdiff_core.trace import Trace
from train_cli import main

TEXT = "A tender, funny film with a wonderful cast."


@pytest.mark.parametrize(("argv", "said"), [
    (["classify", "--checkpoint", "tiny", "--method", "seed", TEXT],
     "error: method 'seed' is now called 'mlm-loss': --method mlm-loss\n"),
    (["evaluate", "--checkpoint", "tiny", "--method=seed"],
     "error: method 'seed' is now called 'mlm-loss': --method mlm-loss\n"),
    (["train", "--out", "x", "--noise-schedule", "levels"], "error: --noise-schedule is now called --masking-rates\n"),
    (["campaign", "--out", "x", "--epochs", "1", "--noise-schedule=levels"],
     "error: --noise-schedule is now called --masking-rates\n"),
])
def test_an_old_name_is_refused_in_one_line_that_gives_the_new_one(argv, said, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err == said


def test_the_library_knows_only_the_current_names():
    assert not hasattr(likelihood, "seed_scores")
    with pytest.raises(TextdiffError, match="unknown method 'seed'"):
        load_classifier("tiny", "seed")
    assert main(["classify", "--checkpoint", "tiny", "--method", "mlm-loss", TEXT]) == 0


def test_a_trace_written_with_spacing_reads_as_token_style():
    trace = generate(load_model("tiny", device="cpu"), "The movie was", 4, strategy="topk", k=2)
    data = json.loads(trace.to_json())
    data["spacing"] = data.pop("token_style")
    assert Trace.from_dict(data) == trace and trace.token_style == "wordpiece"
