"""Real only against real + synthetic: the arms' rows, the point chosen on validation and read on test, the paired
differences, and a tiny experiment end to end (resuming to the same result)."""

import csv
import json
import shlex
from pathlib import Path

import pytest
import torch

from tests.test_crossover import TINY, _with
from textdiff_core.experiments.augment import choose, synthetic_rows
from textdiff_core.experiments.render import augment_lines
from textdiff_core.experiments.synthesize import COLUMNS
from train_cli import main

REPOSITORY = Path(__file__).resolve().parents[1]


def _synthetic(path, per_class=20, kept=True):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="")  # a synthesize CSV's columns
        writer.writeheader()
        for i in range(per_class):
            for label, word in (("negative", "dreadful"), ("positive", "wonderful")):
                text = f"a {word} zqx film number {i}, {word} acting and a {word} plot"
                writer.writerow({"text": text, "label": label, "kept": "true" if kept else "false", "reason": "judge"})
            writer.writerow({"text": f"dropped review {i}", "label": "positive", "kept": "false",
                             "reason": "judge: P(positive) = 0.2 < 0.9"})
    path.with_name(path.name + ".json").write_text(json.dumps({"config": {"checkpoint": "tiny"},
                                                               "report": {"generated": 3 * per_class,
                                                                          "kept": 2 * per_class}}))
    return path


def test_a_synthetic_arm_takes_kept_rows_class_balanced_in_order(tmp_path):
    path = _synthetic(tmp_path / "s.csv", per_class=5)
    texts, labels = synthetic_rows(str(path), ["negative", "positive"], 5)
    assert labels == ["negative"] * 3 + ["positive"] * 2
    assert texts[0].startswith("a dreadful zqx film number 0") and texts[3].startswith("a wonderful zqx film number 0")
    assert not any("dropped" in t for t in texts)
    with pytest.raises(Exception, match="too few"):
        synthetic_rows(str(path), ["negative", "positive"], 12)


def _point(bits_val, acc_val, bits_test, acc_test):
    """One validated point of 4 texts of 10 tokens each: validation values and test values."""
    def side(bits, acc):
        right = round(acc * 4)
        return {"nll": [bits * 10 / 1.4426950408889634] * 4, "tokens": [10] * 4, "bytes": [40] * 4,
                "bayes": [1] * right + [0] * (4 - right), "infill": [0] * 4}
    return side(bits_val, acc_val) | {"test": side(bits_test, acc_test), "epoch": 1.0}


def test_the_point_is_chosen_on_validation_and_read_on_test():
    points = {10: _point(5.0, 0.5, 4.0, 1.0), 20: _point(4.5, 0.75, 6.0, 0.25), 40: _point(4.8, 0.75, 3.0, 1.0)}
    chosen = choose(points)
    assert chosen["likelihood_step"] == 20 and chosen["test_bits_per_token"] == pytest.approx(6.0)
    assert chosen["classification_step"] == 20 and chosen["reading"] == "bayes", "the earlier of two tied points"
    assert chosen["test_accuracy"] == 0.25, "test is read where validation chose, not where test is best"
    assert choose({}) is None


def test_a_tiny_experiment_compares_each_arm_with_real_only_on_the_same_test_reviews(tmp_path, capsys):
    synthetic = _synthetic(tmp_path / "judged.csv")
    args = _with(_with(TINY, "--sizes", "12"), "--steps", "4")
    common = [*args, "--test-size", "4", "--synthetic", str(synthetic), "--out", str(tmp_path / "exp")]
    assert main(["augment", *common]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "exp" / "augment.json").read_text())
    assert result["finished"] and "real+judged" in printed
    rows = [json.loads(line) for line in (tmp_path / "exp" / "u-00012" / "real+judged.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and sum("zqx" in r["text"] for r in rows) == 12
    assert all(r["split"] == "train" for r in rows)
    arms = result["sizes"][0]["arms"]
    for twin in ("diffusion", "ar"):
        real, mixed = arms["real"][twin], arms["real+judged"][twin]
        assert real["test_n"] == mixed["test_n"] == 4 and "against_real" not in real
        vs = mixed["against_real"]
        assert vs["accuracy"]["n"] == 4 and 0 <= vs["accuracy"]["mcnemar_p"] <= 1
        assert vs["bits_per_token"]["difference_bits_per_token"] == pytest.approx(
            mixed["test_bits_per_token"] - real["test_bits_per_token"], abs=1e-6)
    grids = [json.loads((tmp_path / "exp" / "u-00012" / arm / "crossover.json").read_text()) for arm in
             ("real", "real+judged")]
    assert grids[0]["model"]["tokenizer_sha256"] == grids[1]["model"]["tokenizer_sha256"], "one tokenizer"
    assert result["synthetic"]["real+judged"]["report"]["kept"] == 40
    seen = result["synthetic"]["real+judged"]
    assert [(r["label"], " ".join(r["text"].split()[1:2] + r["text"].split()[5:6])) for r in seen["kept_samples"]] == [
        ("negative", "dreadful 0,"), ("negative", "dreadful 1,"), ("positive", "wonderful 0,"),
        ("positive", "wonderful 1,")], "the first two of each class, in seed order"
    assert [r["reason"] for r in seen["dropped_samples"]] == ["judge: P(positive) = 0.2 < 0.9"] * 2
    assert sum(line.startswith("- *") for line in augment_lines(result)) == 6
    assert seen["kept_by_class"] == {"negative": 20, "positive": 20}
    assert any("kept 40 (20 negative, 20 positive)" in line for line in augment_lines(result))
    table = [line for line in augment_lines(result) if line.startswith("| 12 |")]
    assert len(table) == 4 and all("not yet" not in line for line in table)
    assert sum("p=" in line for line in table) == 2, "each synthetic arm's twin against real only"
    before = (tmp_path / "exp" / "augment.json").read_text()
    recorded = shlex.split(result["command"])
    assert recorded[:3] == ["python", "train_cli.py", "augment"]
    assert main(recorded[2:]) == 0  # the recorded command is the same experiment: finished, nothing new is trained
    assert json.loads(before)["sizes"] == json.loads((tmp_path / "exp" / "augment.json").read_text())["sizes"]


def test_bad_experiments_are_one_line_errors(tmp_path, capsys):
    synthetic = _synthetic(tmp_path / "few.csv", per_class=2)
    args = _with(_with(TINY, "--sizes", "12"), "--steps", "4")
    assert main(["augment", *args, "--synthetic", str(synthetic), "--out", str(tmp_path / "a")]) == 2
    assert "--test-size" in capsys.readouterr().err
    assert main(["augment", *args, "--test-size", "4", "--synthetic", str(tmp_path / "missing.csv"), "--out",
                 str(tmp_path / "b")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["augment", *args, "--test-size", "4", "--synthetic", str(synthetic), "--out",
                 str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too few" in err[0]


def test_report_rerender_shows_a_committed_experiment(tmp_path):
    import shutil

    record = {"config": {"ratio": 1.0, "grid": {"steps": [1500], "val_size": 400, "test_size": 400}},
              "synthetic": {}, "finished": False, "sizes": [
        {"unique_reviews": 400, "arms": {"real": {"diffusion": None, "ar": None}}}]}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "augment.json").write_text(json.dumps(record))
    shutil.copy(REPOSITORY / "results.json", tmp_path / "results.json")
    (tmp_path / "README.md").write_text("# readme\n")
    assert main(["report", "--rerender", "--root", str(tmp_path)]) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Real + synthetic reviews, data-constrained" in text and "| 400 | real | diffusion | not yet |" in text


def _trained(tmp_path, objective: str):
    out = tmp_path / f"start-{objective}"
    assert main(["train", "--model", "tiny" if objective == "diffusion" else "tiny-ar", "--objective", objective,
                 "--conditioning", "joint", "--quick-test", "--steps", "2", "--no-eval-epochs", "--no-progress",
                 "--out", str(out)]) == 0
    return str(out)


def test_start_fine_tunes_a_trained_pair_and_scores_it_once_as_the_reference(tmp_path, capsys):
    from safetensors.torch import load_file

    pair = [_trained(tmp_path, "diffusion"), _trained(tmp_path, "ar")]
    synthetic = _synthetic(tmp_path / "judged.csv")
    args = _with(_with(TINY, "--sizes", "12"), "--steps", "3")
    common = [*args, "--test-size", "4", "--synthetic", str(synthetic), "--start", ",".join(pair), "--out",
              str(tmp_path / "exp")]
    assert main(["augment", *common]) == 0
    result = json.loads((tmp_path / "exp" / "augment.json").read_text())
    assert result["finished"] and result["config"]["grid"]["start"] == pair
    grid = json.loads((tmp_path / "exp" / "u-00012" / "real" / "crossover.json").read_text())
    assert grid["model"]["start"] == pair and not (tmp_path / "exp" / "u-00012" / "real" / "init").exists()
    assert "--start" in grid["command"]
    start = load_file(f"{pair[0]}/model.safetensors")
    tuned = load_file(str(tmp_path / "exp" / "u-00012" / "real" / "u-00012" / "diffusion" / "model.safetensors"))
    assert start.keys() == tuned.keys(), "the start checkpoint's own architecture, not the grid's shape"
    assert any(not torch.equal(start[k].float(), tuned[k].float()) for k in start), "and then trained"
    reference = result["sizes"][0]["reference"]
    for twin in ("diffusion", "ar"):
        assert reference[twin]["test_n"] == 4 and "against_real" not in reference[twin]
        assert "against_real" in result["sizes"][0]["arms"]["real+judged"][twin]
    table = [line for line in augment_lines(result) if line.startswith("| 12 |")]
    assert sum("start, not fine-tuned" in line for line in table) == 2 and len(table) == 6
    assert "fine-tuned for 3 steps" in augment_lines(result)[0]
    recorded = shlex.split(result["command"])
    assert "--start" in recorded and "--layers" not in recorded
    assert main(recorded[2:]) == 0, "the recorded command continues the same experiment"


def test_start_refuses_a_pair_in_the_wrong_order(tmp_path, capsys):
    pair = [_trained(tmp_path, "diffusion"), _trained(tmp_path, "ar")]
    synthetic = _synthetic(tmp_path / "judged.csv")
    args = _with(_with(TINY, "--sizes", "12"), "--steps", "3")
    capsys.readouterr()
    assert main(["augment", *args, "--test-size", "4", "--synthetic", str(synthetic), "--start",
                 ",".join(reversed(pair)), "--out", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diffusion checkpoint first" in err[0]
