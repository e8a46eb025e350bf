"""Old names are refused in one line that gives the new one (the ``seed`` classification method, the
``--noise-schedule`` flag); a trace written with ``spacing`` still reads as ``token_style``; a record written with
``noise.schedule`` still reads as ``noise.masking_rates``; no code says "noise schedule" again (docs/glossary.md)."""

import ast
import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from textdiff_core import likelihood
from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.classify import load_classifier
from textdiff_core.decoding import generate
from textdiff_core.errors import TextdiffError
from textdiff_core.experiments.campaign import CampaignConfig, run_campaign
from textdiff_core.models import load_model
from textdiff_core.settings import CAUSAL, CLASSIFIER, KIND_NAMES, MASKED, NoiseConfig, TrainConfig
from textdiff_core.trace import Trace
from train_cli import main

ROOT = Path(__file__).resolve().parents[1]
TEXT = "A tender, funny film with a wonderful cast."
# The masking-rate draw is "masking rates" (NoiseConfig.masking_rates): "schedule" alone is the decoding schedule,
# the learning rate's is the lr schedule. Library code and pages never name the first one otherwise again.
OLD_MASKING_NAMES = re.compile(r"(?<![a-z])noise[ _]schedule|noise\.schedule\b|NoiseConfig\([^)]*\bschedule=",
                               re.IGNORECASE)


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


def _code() -> dict[str, str]:
    """Every Python file of the library and the app, by path."""
    files = [*(ROOT / "textdiff_core").rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "app.py",
             ROOT / "train_cli.py"]
    return {str(f.relative_to(ROOT)): f.read_text() for f in files}


def test_the_masking_rate_draw_has_one_name_in_the_code():
    code = _code()
    assert len(code) > 30 and "textdiff_core/settings.py" in code
    found = [f"{path}:{text.count(chr(10), 0, m.start()) + 1}: {m.group()}"
             for path, text in code.items() for m in OLD_MASKING_NAMES.finditer(text)]
    assert not found, found
    assert "masking_rates" in {f.name for f in fields(NoiseConfig)}
    assert "schedule" not in {f.name for f in fields(NoiseConfig)}
    assert "schedule" not in TrainConfig(out="x").to_dict()["noise"]
    with pytest.raises(TextdiffError, match="^unknown masking rates 'cosine'"):
        NoiseConfig(masking_rates="cosine")


def test_the_kinds_are_named_by_their_constants_and_read_as_the_paradigms():
    """A kind passed to a function or compared with one is MASKED, CAUSAL or CLASSIFIER, never the string (a trace's
    "masked" state is another idea); users read them as "diffusion", "left-to-right" and "discriminative"."""
    found = []
    for path, text in _code().items():
        tree = ast.parse(text)
        for node in ast.walk(tree):
            operands = (node.args + [k.value for k in node.keywords] if isinstance(node, ast.Call) else
                        [node.left, *node.comparators] if isinstance(node, ast.Compare) else [])
            kinds = [o for o in operands if isinstance(o, ast.Constant) and o.value in (MASKED, CAUSAL, CLASSIFIER)]
            if kinds and (isinstance(node, ast.Call) or "kind" in ast.unparse(node)):
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found
    assert KIND_NAMES == {MASKED: "diffusion", CAUSAL: "left-to-right", CLASSIFIER: "discriminative"}


@pytest.mark.parametrize("draw", ["levels", "continuous"])
def test_a_record_written_with_noise_schedule_loads_into_masking_rates(draw, tmp_path):
    """textdiff.json as written before the rename (the shipped checkpoints' own), with the old key's value kept."""
    meta = json.loads((ROOT / "checkpoints" / "imdb-diffusion" / "textdiff.json").read_text())
    assert meta["config"]["noise"]["schedule"] == "continuous", "the shipped record still has the old key"
    meta["config"]["noise"]["schedule"] = draw
    if draw == "levels":
        meta["config"]["noise"]["t_beta"] = 1.0
    (tmp_path / "textdiff.json").write_text(json.dumps(meta))
    config = TrainConfig.from_record(CheckpointMeta.read(tmp_path).config)
    assert config.noise.masking_rates == draw
    written = config.to_dict()["noise"]
    assert written["masking_rates"] == draw and "schedule" not in written
    assert TrainConfig.from_record(config.to_dict()) == config, "and the new record reads back the same"


def test_a_campaign_recorded_with_noise_schedule_is_the_same_campaign(tmp_path):
    """A rerun of a campaign whose campaign.json was written before the rename names only what really differs."""
    config = CampaignConfig(out=str(tmp_path), epochs=2, train=TrainConfig(out="", conditioning="joint"))
    recorded = json.loads(json.dumps(config.to_dict()))
    recorded["train"]["noise"]["schedule"] = recorded["train"]["noise"].pop("masking_rates")
    recorded["epochs"] = 1
    (tmp_path / "campaign.json").write_text(json.dumps({"config": recorded, "twins": {}}))
    with pytest.raises(TextdiffError, match=r"other settings \(epochs\);"):
        run_campaign(config)


def test_the_glossary_defines_each_word_once_and_the_readme_links_it():
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    words = [row.split("|")[1].strip() for row in glossary.splitlines() if row.startswith("| ") and "---" not in row]
    for word in ("objective", "kind", "twin", "reading", "adaptive", "strategy", "masking rates", "decoding schedule",
                 "lr schedule", "block", "KV cache", "pass budget"):
        assert words.count(word) == 1, word
    assert "(docs/glossary.md)" in (ROOT / "README.md").read_text()
