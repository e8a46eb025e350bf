"""The discriminative objective: the same backbone with a classification head, trained by the one training loop and
read by everything that reads a classifier (classify, calibrate, evaluate, occlusion evidence)."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from textdiff_core.classify import DISCRIMINATIVE, load_classifier
from textdiff_core.cli import main
from textdiff_core.discriminative import energy, head_reading, max_softmax
from textdiff_core.errors import ModelError
from textdiff_core.models import kind_of, load_model
from textdiff_core.settings import CLASSIFIER, TrainConfig

FILLER = "the a film movie story plot acting was it this really quite".split()
CUES = {"negative": "dreadful", "positive": "wonderful"}  # one word decides each toy review's class


def _toy_csv(path: Path, n: int = 300) -> Path:
    """Separable toy reviews: eight filler words and one cue word at a random place."""
    rng, rows = random.Random(0), []
    for i in range(n):
        label = ("negative", "positive")[i % 2]
        words = [rng.choice(FILLER) for _ in range(8)]
        words.insert(rng.randrange(9), CUES[label])
        rows.append(f"{' '.join(words)},{label}")
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--objective", "discriminative", "--model", "tiny", "--data", str(data), "--max-length", "32",
            "--batch-size", "8", "--lr", "3e-3", "--log-every", "5", "--save-every", "0", "--no-progress",
            "--out", str(out), *extra]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return _toy_csv(tmp_path_factory.mktemp("toy") / "toy.csv")


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("disc") / "run"
    assert main(_train_args(toy, out, "--steps", "30", "--eval-every", "10", "--eval-size", "40")) == 0
    return out


@pytest.fixture()
def checkpoint(trained, tmp_path) -> Path:
    """A copy per test: calibrate writes calibration.json beside the weights."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def test_the_head_learns_the_labels_and_the_run_records_a_discriminative_checkpoint(trained):
    records = _records(trained)
    losses = [r["loss"] for r in records]
    assert losses[-1] < 0.2 < 0.6 < losses[0], losses
    assert records[-1]["train_accuracy"] == 1.0 and records[0]["train_accuracy"] < 0.8, "ignored labels stay at 50%"
    evals = [r for r in records if "val_accuracy" in r]
    assert evals and evals[-1]["val_accuracy"] >= 0.9, "shuffled labels would leave validation at chance"
    assert all("val_perplexity" not in r and "loss_by_mask_rate" not in r for r in records), "no fake perplexity"
    assert all(r["val_loss"] > 0 for r in evals)
    meta = json.loads((trained / "textdiff.json").read_text())
    assert meta["objective"] == "discriminative" and meta["conditioning"] == "none" and meta["steps"] == 30
    assert meta["classes"] == ["negative", "positive"] and sum(meta["data"]["class_counts"].values()) > 200
    assert meta["noise"] is None and meta["class_prompt"] is None
    config = json.loads((trained / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert kind_of(str(trained)) == CLASSIFIER


def test_a_new_head_is_the_same_every_time():
    heads = [load_model("tiny", CLASSIFIER, labels=["negative", "positive"]).model.classifier.weight for _ in "ab"]
    assert heads[0].shape == (2, 64) and torch.equal(*heads)


def test_each_rows_label_comes_with_its_own_text(toy, tmp_path):
    """The labels of a micro-batch are drawn from the same (seed, step, micro, rank) indices as its texts."""
    import textdiff_core.train as train_mod
    from textdiff_core.data import load_data

    config = TrainConfig(out=str(tmp_path / "x"), objective="discriminative", model="tiny", data=[str(toy)],
                         max_length=32, batch_size=8, grad_accum=2)
    data = load_data(config.data, "train", min_classes=2)
    lm = load_model("tiny", CLASSIFIER, labels=data.classes)
    inputs = train_mod._inputs(lm.tokenizer, data, None, config)
    for step in range(3):
        for micro in range(2):
            batch, targets, _ = train_mod._micro_batch(inputs, lm.tokenizer, config, step, micro, 0, 1, "cpu")
            for row, label in zip(batch.input_ids.tolist(), targets.labels.tolist(), strict=True):
                assert CUES[data.classes[label]] in lm.tokenizer.decode(row)


def test_a_resumed_run_ends_with_the_weights_of_a_straight_one(toy, tmp_path):
    # windows of the reviews, drawn by the seed; every step logged, so that both logs have the same lines
    common = ["--steps", "8", "--max-length", "8", "--crop", "random", "--log-every", "1"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(_train_args(toy, straight, *common)) == 0
    assert main(_train_args(toy, stopped, *common, "--save-every", "3", "--stop-after", "5")) == 0
    assert not (stopped / "model.safetensors").exists()
    assert kind_of(str(stopped / "checkpoints" / "step-0000003")) == CLASSIFIER, "read from its config alone"
    assert main(_train_args(toy, stopped, *common, "--save-every", "3", "--resume")) == 0
    assert [r["loss"] for r in _records(stopped)] == [r["loss"] for r in _records(straight)]
    a, b = load_file(straight / "model.safetensors"), load_file(stopped / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_classify_reads_the_head_over_every_window(trained):
    clf = load_classifier(str(trained))
    assert clf.method == DISCRIMINATIVE and clf.classes == ["negative", "positive"] and clf.exact
    p = clf.classify("the film was dreadful really quite")
    assert p.label == "negative" and sum(p.posterior) == pytest.approx(1.0)
    assert p.classes[max(range(2), key=p.posterior.__getitem__)] == p.label and p.forward_passes == 1
    assert p.max_softmax == pytest.approx(max_softmax(p.log_likelihood))
    assert p.energy == pytest.approx(energy(p.log_likelihood)) and p.energy < 0
    assert p.ood is None, "no calibration yet: nothing to place the energy against"
    long = " ".join(["the film was wonderful really quite"] * 12)  # 72 tokens: three windows of 30
    clf.max_length = 32
    p = clf.classify(long)
    read = head_reading(clf.models, long, 32)
    assert len(read.windows) == p.forward_passes == p.scores[0].windows == 3
    assert p.log_likelihood == pytest.approx(read.logits.mean(0).tolist()), "the mean of the windows' logits"
    assert p.label == "positive"


def test_occlusion_evidence_puts_the_deciding_word_first(trained):
    clf = load_classifier(str(trained))
    text = "the film was dreadful really quite"
    ids, evidence = clf.infill_evidence(text)
    words = [clf.models.tokenizer.decode([i]) for i in ids]
    assert evidence.shape == (len(ids), 2) and words[3] == "dreadful"
    masked = clf.classify(text.replace("dreadful", "[MASK]"))
    assert clf.classify(text).label == "negative" != masked.label, "occluding the cue flips the decision"
    assert int(evidence[:, 0].argmax()) == 3 and evidence[3, 0] > 1.0, evidence


def test_evaluate_writes_its_report_and_calibrate_fits_the_reading(checkpoint, toy, tmp_path, capsys):
    report_file = tmp_path / "r.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(toy), "--split", "test", "--limit", "12",
                 "--out", str(report_file)]) == 0
    report = json.loads(report_file.read_text())
    assert report["n"] == 12 and report["method"] == DISCRIMINATIVE and report["accuracy"] >= 0.9
    assert report["forward_passes_mean"] == 1.0 and report["samples_max"] == 0 and not report["calibrated"]
    assert main(["calibrate", "--checkpoint", str(checkpoint), "--data", str(toy), "--no-progress"]) == 0
    fitted = json.loads((checkpoint / "calibration.json").read_text())[DISCRIMINATIVE]
    assert fitted["fitted_on"] == f"{toy}/validation" and len(fitted["ood_reference"]) == fitted["n"] > 10
    assert fitted["temperature"] > 0 and len(fitted["bias"]) == 2
    clf = load_classifier(str(checkpoint))
    p = clf.classify("the film was wonderful really quite")
    assert p.calibrated and p.ood is not None and 0.0 <= p.ood_percentile <= 100.0
    capsys.readouterr()
    assert main(["classify", "--checkpoint", str(checkpoint), "the film was wonderful really quite"]) == 0
    out = capsys.readouterr().out
    assert "method discriminative" in out and "logit =" in out and "energy" in out and "percentile" in out
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(toy), "--split", "test", "--limit", "12",
                 "--out", str(report_file)]) == 0
    assert json.loads(report_file.read_text())["calibrated"]


@pytest.mark.parametrize("extra,message", [
    (["--conditioning", "class"], "conditioning none"),
    (["--conditioning", "joint"], "conditioning none"),
    (["--conditioning", "per-class"], "conditioning none"),
    (["--input-mask-prob", "0.1"], "input-mask-prob"),
    (["--model", "tiny-ar"], "on an encoder"),
])
def test_bad_discriminative_settings_fail_in_one_line(toy, tmp_path, capsys, extra, message):
    assert main(_train_args(toy, tmp_path / "bad", "--steps", "1", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "bad").exists()


def test_unlabelled_data_and_mismatched_readings_fail_in_one_line(trained, tmp_path, capsys):
    texts = tmp_path / "texts.csv"
    texts.write_text("text\n" + "\n".join(f"a film number {i}" for i in range(40)) + "\n")
    assert main(_train_args(texts, tmp_path / "u", "--steps", "1")) == 2
    assert "unlabelled" in capsys.readouterr().err
    assert main(["classify", "--checkpoint", str(trained), "--method", "elbo", "a film"]) == 2
    err = capsys.readouterr().err.strip()
    assert "one reading is discriminative" in err and "\n" not in err
    assert main(["classify", "--checkpoint", "tiny", "--method", "discriminative", "a film"]) == 2
    assert "classification head" in capsys.readouterr().err
    assert main(["perplexity", "--checkpoint", str(trained), "--data", str(texts), "--limit", "2",
                 "--out", str(tmp_path / "p.json"), "--no-progress"]) == 2
    assert "gives no likelihood of its text" in capsys.readouterr().err
    with pytest.raises(ModelError, match="needs the class names"):
        load_model("tiny", CLASSIFIER)
    with pytest.raises(ModelError, match="was trained on classes"):
        load_model(str(trained), CLASSIFIER, labels=["bad", "good"])


def test_a_classifier_writes_no_text_and_says_so_in_one_line(trained, capsys):
    for command in (["generate", "--checkpoint", str(trained), "--length", "4"],
                    ["fill-mask", "--checkpoint", str(trained), "the film was [MASK] ."]):
        assert main(command) == 2, command
        err = capsys.readouterr().err.strip()
        assert "discriminative" in err and "\n" not in err and "Traceback" not in err, err
