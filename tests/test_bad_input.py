"""Bad input gets a clear one-line error (or, for odd but valid text, a normal result), never a traceback."""

import pytest
import torch

from textdiff_core.classify import Classifier
from textdiff_core.errors import ModelError, TextdiffError
from textdiff_core.models import load_model
from train_cli import main


@pytest.fixture(scope="module")
def tiny_classifier():
    lm = load_model("tiny")
    return Classifier(lm, ["negative", "positive"], ["negative review:", "positive review:"])


@pytest.mark.parametrize("text", ["Great film 🎬🍿 loved it 😍", "这部电影很好看。", "tab\there\x00nul\x07bell\r\nend",
                                  "ünïcödé façade naïve"])
def test_unusual_but_valid_text_is_classified(tiny_classifier, text):
    p = tiny_classifier.classify(text, samples=2, generator=torch.Generator().manual_seed(0))
    assert p.label in ("negative", "positive") and abs(sum(p.posterior) - 1) < 1e-6


@pytest.mark.parametrize("text", ["", "   \n\t  "])
def test_empty_text_is_refused(tiny_classifier, text):
    with pytest.raises(TextdiffError, match="empty"):
        tiny_classifier.classify(text, samples=2)


def test_a_huge_paste_is_refused_quickly(tiny_classifier):
    with pytest.raises(TextdiffError, match="tokens"):
        tiny_classifier.classify("word " * 100_000, samples=2)


def test_half_written_and_mismatched_checkpoints_are_refused(tmp_path):
    lm = load_model("tiny")
    lm.model.save_pretrained(tmp_path / "half")
    lm.tokenizer.save_pretrained(tmp_path / "half")
    weights = tmp_path / "half" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])  # a save killed a third of the way
    with pytest.raises(ModelError, match="could not load"):
        load_model(str(tmp_path / "half"))

    smol_tokenizer_dir = tmp_path / "mismatch"
    lm.model.save_pretrained(smol_tokenizer_dir)
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tiny_vocab = {f"t{i}": i for i in range(40000)} | {"[UNK]": 40000, "[MASK]": 40001}
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(tiny_vocab, unk_token="[UNK]")),
                                   unk_token="[UNK]", mask_token="[MASK]")
    fast.save_pretrained(smol_tokenizer_dir)
    with pytest.raises(ModelError, match="tokenizer|vocabulary"):  # the mask id or the size, whichever is met first
        load_model(str(smol_tokenizer_dir))


def test_cli_settings_out_of_range_exit_2(tmp_path, capsys):
    cases = [
        ["generate", "--checkpoint", "tiny", "--length", "-3"],
        ["generate", "--checkpoint", "tiny", "--strategy", "schedule-random", "--steps", "0", "--length", "4"],
        ["generate", "--checkpoint", "tiny", "--threshold", "1.5", "--length", "4"],
        ["generate", "--checkpoint", "tiny", "--temperature", "0", "--top-p", "0.9", "--length", "4"],
        ["classify", "--checkpoint", "tiny", "--samples", "0", "text"],
        ["train", "--model", "tiny", "--steps", "0", "--out", str(tmp_path / "x")],
        ["train", "--model", "tiny", "--batch-size", "0", "--out", str(tmp_path / "y")],
        ["train", "--model", "tiny", "--t-beta", "-1", "--out", str(tmp_path / "z")],
        ["evaluate", "--checkpoint", "tiny", "--data", str(tmp_path / "nope.csv")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, (argv, err)


@pytest.fixture()
def no_model_loads(monkeypatch):
    """Fail the test if a command gets as far as loading a model: settings are checked before any work."""
    import textdiff_core.classify
    import textdiff_core.cli.generation
    import textdiff_core.cli.scoring
    import textdiff_core.train

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the settings were checked")

    for module in (textdiff_core.train, textdiff_core.classify, textdiff_core.cli.scoring,
                   textdiff_core.cli.generation):
        monkeypatch.setattr(module, "load_model", refuse)


@pytest.mark.parametrize("flags", [["--lr", "nan"], ["--lr", "inf"], ["--weight-decay", "nan"],
                                   ["--label-weight", "nan"], ["--eps", "nan"], ["--t-beta", "inf"]])
def test_train_refuses_numbers_that_are_not_finite_before_any_work(flags, no_model_loads, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "tiny", "--out", str(out), "--steps", "1", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "finite" in err, err
    assert not out.exists(), "nothing written"


def test_train_refuses_an_out_that_is_a_file_before_any_work(no_model_loads, tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    for out, said in ((existing, "is a file"), (existing / "run", "lies under")):
        assert main(["train", "--model", "tiny", "--out", str(out), "--steps", "1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and said in err, err
    assert existing.read_text() == "mine" and list(tmp_path.iterdir()) == [existing]


def test_outputs_that_cannot_be_written_are_refused_before_any_model_loads(no_model_loads, tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    for argv in (["evaluate", "--checkpoint", "tiny", "--out", str(folder)],
                 ["perplexity", "--checkpoint", "tiny", "--data", "imdb", "--out", str(blocker / "p.json")],
                 ["generate", "--checkpoint", "tiny", "--json", str(folder)],
                 ["zero-shot", "--model", "tiny-ar", "--out", str(blocker)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"] and not any(folder.iterdir())
