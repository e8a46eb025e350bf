"""The crossover grid: nested subsets, twins from one initialisation, the crossover detector, the exponent fit, and a
tiny grid that resumes after an interruption to the same results as one uninterrupted run."""

import json
import math
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import textdiff_core.experiments.crossover as xo
import textdiff_core.experiments.grid as grid_module
import textdiff_core.train as train_module
from textdiff_core.cli import build_parser, main
from textdiff_core.cli.training import crossover_config
from textdiff_core.experiments.crossover import (
    best_so_far,
    find_crossover,
    fit_exponent,
    validation_steps,
)
from textdiff_core.experiments.grid import paired_difference, ratio_interval, read_results
from textdiff_core.train import TrainConfig

# two sizes of a tiny grid: 1 layer, 32 wide, a 300-token vocabulary, 4 x 32-token batches
TINY = ["--data", "imdb", "--sizes", "12,24", "--steps", "4,6", "--points", "2", "--first-point", "2",
        "--val-size", "4", "--val-samples", "2", "--layers", "1", "--width", "32", "--heads", "2",
        "--vocab-size", "300", "--batch-size", "4", "--max-length", "32", "--warmup-steps", "1", "--lr", "1e-3",
        "--save-every", "100", "--probe-steps", "0", "--no-progress"]
def _with(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with ``flag``'s value replaced."""
    at = args.index(flag) + 1
    return [*args[:at], value, *args[at + 1:]]


CURVES = ("diffusion_bits_per_token", "ar_bits_per_token", "diffusion_accuracy_bayes", "ar_accuracy_infill")


def test_crossover_is_the_first_point_where_diffusions_best_so_far_is_below_the_twins():
    ar = [6.0, 5.0, 4.5, 4.6, 4.8, 5.0]  # the twin overfits after its third point
    assert find_crossover([6.5, 5.5, 4.9, 4.7, 4.4, 4.3], ar) == 4  # 4.4 < 4.5, the twin's best so far
    assert find_crossover([6.5, 5.5, 4.9, 4.6, 4.55, 4.5], ar) is None  # equal is not below
    assert find_crossover([5.9, 6.0, 7.0], [6.0, 5.0, 4.0]) == 0  # ahead at the first point, whatever follows
    assert find_crossover([6.5, 4.4, 9.0, 9.0], [6.0, 5.0, 4.5, 4.0]) == 1  # a best point counts after it too
    assert best_so_far([3.0, 2.0, 2.0, 2.5, 1.0]) == [0, 1, 1, 1, 4]


def test_the_unigram_level_counts_the_training_reviews_plus_one_and_reads_each_window():
    from textdiff_core.models import load_model
    from textdiff_core.tokens import tokenize_texts

    tok = load_model("tiny").tokenizer
    train = ["good good film", "bad film"]
    counts = {}
    for t in (t for ids in tokenize_texts(tok, train) for t in ids):
        counts[t] = counts.get(t, 0) + 1
    total = sum(counts.values()) + len(tok)
    text = "good film bad"
    ids = tokenize_texts(tok, [text])[0]
    level = xo.unigram_reference(tok, train, [text, text], [2, 3])
    assert level["tokens"] == [2, 3]
    assert level["nll"][0] == pytest.approx(-sum(math.log((counts.get(t, 0) + 1) / total) for t in ids[:2]))
    assert level["nll"][1] > level["nll"][0]  # one more token read
    unseen = xo.unigram_reference(tok, train, ["zebra"], [1])["nll"][0]
    assert unseen == pytest.approx(math.log(total)), "a token the reviews never use has count 0 plus one"
    with pytest.raises(xo.TextdiffError, match="fewer than its window"):
        xo.unigram_reference(tok, train, [text], [len(ids) + 1])


def test_exponent_fit_recovers_a_power_law_and_needs_three_sizes():
    sizes = [100, 400, 1600, 6400]
    fit = fit_exponent(sizes, [3.0 * u**2.0 * (1.05 if i % 2 else 0.95) for i, u in enumerate(sizes)])
    assert fit["k"] == pytest.approx(2.0, abs=0.05) and fit["ci95"][0] < 2.0 < fit["ci95"][1]
    assert fit["published"] == 2.174 and fit["n"] == 4
    assert fit_exponent(sizes[:2], [1.0, 2.0]) is None


def test_ratio_interval_and_paired_difference():
    rate, ci = ratio_interval([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert rate == 2.0 and ci == [2.0, 2.0]  # every text at the same rate: no spread
    rate, ci = ratio_interval([1.0, 5.0, 2.0, 4.0], [1.0, 1.0, 1.0, 1.0])
    assert rate == 3.0 and ci[0] < 3.0 < ci[1]
    a = {"nll": [1.0, 2.0, 3.0], "tokens": [2, 2, 2]}
    b = {"nll": [1.5, 2.5, 3.4], "tokens": [2, 2, 2]}
    diff = paired_difference(a, b)
    assert diff["difference_bits_per_token"] < 0 and diff["ci95"][1] < 0  # A lower on every text
    with pytest.raises(Exception, match="same validation windows"):
        paired_difference(a, {"nll": [1, 2, 3], "tokens": [2, 2, 3]})


def test_validation_steps_are_log_spaced_and_end_at_the_budget():
    steps = validation_steps(50, 1200, 8)
    assert steps[0] == 50 and steps[-1] == 1200 and steps == sorted(set(steps)) and len(steps) == 8
    ratios = [b / a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(ratios) / min(ratios) < 1.1
    assert validation_steps(3, 4, 5) == [3, 4] and validation_steps(5, 5, 3) == [5]


def test_subsets_are_nested_and_balanced_and_validation_is_apart(tmp_path):
    config = xo.CrossoverConfig(out=str(tmp_path), sizes=[10, 40, 160], steps=[5, 5, 5], first_point=1,
                                train=TrainConfig(out="", conditioning="joint"))
    small, medium, large = (set(grid_module.subset(config, u).texts) for u in config.sizes)
    assert small < medium < large and (len(small), len(medium), len(large)) == (10, 40, 160)
    assert grid_module.subset(config, 40).class_counts() == {"negative": 20, "positive": 20}
    assert not large & set(grid_module.validation_set(config).texts)


def test_the_recorded_command_repeats_the_grid_exactly(tmp_path):
    args = build_parser().parse_args(["crossover", *TINY, "--tokenizer", "t.json", "--out", str(tmp_path)])
    config = crossover_config(args)
    again = crossover_config(build_parser().parse_args(shlex.split(xo.command_line(config))[2:]))
    assert again.to_dict() == config.to_dict() == xo.CrossoverConfig.from_dict(config.to_dict()).to_dict()
    assert config.train.noise.weighting == "elbo" and config.train.weight_decay == 0.1


def test_bad_grids_are_one_line_errors(capsys):
    assert main(["crossover", "--out", "/tmp/x", "--sizes", "10,20", "--steps", "5"]) == 2
    assert "one --steps per --sizes" in capsys.readouterr().err
    assert main(["crossover", "--out", "/tmp/x", "--sizes", "20,10", "--steps", "5,5"]) == 2
    assert "ascending" in capsys.readouterr().err
    assert main(["crossover", "--out", "/tmp/x", "--sizes", "10", "--steps", "5", "--first-point", "9"]) == 2
    assert "past the smallest budget" in capsys.readouterr().err


@pytest.mark.slow  # about 15 s: three tiny grids
def test_a_tiny_grid_writes_the_contract_and_an_interrupted_run_resumes_to_the_same_results(tmp_path, monkeypatch,
                                                                                          capsys):
    straight = tmp_path / "straight"
    assert main(["crossover", *TINY, "--out", str(straight)]) == 0
    results = read_results(straight)
    assert results["finished"] and [r["unique_reviews"] for r in results["runs"]] == [12, 24]
    assert results["config"]["train"]["noise"]["weighting"] == "elbo"  # the bound, unless told otherwise
    assert results["config"]["train"]["weight_decay"] == 0.1
    for row in results["runs"]:
        assert {"unique_reviews", "epochs", "tokens_seen", "diffusion_bits_per_token", "ar_bits_per_token",
                "crossover_tokens"} <= set(row)
        assert row["steps"] == row["validation_steps"] and len(row["diffusion_bits_per_token"]) == len(row["steps"])
        assert all(math.isfinite(v) and v > 0 for v in row["diffusion_bits_per_token"] + row["ar_bits_per_token"])
        assert row["tokens_seen"] == sorted(row["tokens_seen"]) and row["tokens_seen"][0] > 0
        assert 0 <= row["tfidf_accuracy"] <= 1 and row["unique_tokens"] > row["unique_reviews"]
        assert set(row["best"]) == {"diffusion", "ar"}
        level = json.loads((straight / f"u-{row['unique_reviews']:05d}" / "unigram.json").read_text())
        assert level["tokens"] == json.loads((straight / f"u-{row['unique_reviews']:05d}" / "validation.json")
                                             .read_text())["diffusion"]["2"]["tokens"], "the same windows"
        assert row["unigram"]["bits_per_token"] > 0 and "difference_bits_per_token" in row["unigram"]["ar_best_minus"]
    assert results["runs"][0]["epochs"][-1] == pytest.approx(6 * 4 / 12 * 4 / 6, abs=0.01)  # 4 steps x 4 / 12
    # both twins start from one initialisation: the same tensors under the same names
    d, a = (load_file(straight / "init" / t / "model.safetensors") for t in ("diffusion", "ar"))
    assert d.keys() == a.keys() and all(torch.equal(d[k], a[k]) for k in d)
    out = capsys.readouterr().out
    assert "U=12: 2 points read; crossover " in out and "so far" not in out.split("U=12: 2 points read")[1]

    # interrupt once in training (the loop saves a checkpoint) and once in validation, then run again
    # (named tokenizer: a fresh WordPiece training may break ties between merges otherwise)
    resumed, tiny = tmp_path / "resumed", [*TINY, "--tokenizer", str(straight / "init" / "tokenizer.json")]
    real_step, real_validate, calls = train_module._optimizer_step, grid_module.validate, {"step": 0, "validate": 0}

    def step_then_stop(*args, **kwargs):
        calls["step"] += 1
        if calls["step"] == 6:  # the diffusion twin of U=12, in its second stretch: step 4 of 4
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    def validate_then_stop(*args, **kwargs):
        calls["validate"] += 1
        if calls["validate"] == 4:
            raise KeyboardInterrupt
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(train_module, "_optimizer_step", step_then_stop)
    monkeypatch.setattr(grid_module, "validate", validate_then_stop)
    assert main(["crossover", *tiny, "--out", str(resumed)]) == 130
    assert (resumed / "u-00012" / "diffusion" / "checkpoints" / "step-0000003").is_dir(), "saved when interrupted"
    assert main(["crossover", *tiny, "--out", str(resumed)]) == 130
    partial = read_results(resumed)
    assert not partial["finished"] and partial["runs"][0]["steps"], "the points so far are written"
    assert main(["crossover", *tiny, "--out", str(resumed)]) == 0
    again = read_results(resumed)
    assert again["model"]["tokenizer_sha256"] == results["model"]["tokenizer_sha256"]
    for one, two in zip(results["runs"], again["runs"], strict=True):
        for key in (*CURVES, "tokens_seen", "steps", "crossover_tokens"):
            assert one[key] == two[key], key
    history = len(again["history"])
    assert main(["crossover", *tiny, "--out", str(resumed)]) == 0  # finished: nothing more to do
    assert len(read_results(resumed)["history"]) == history
    changed = _with(tiny, "--steps", "4,5")  # a lower budget: refused (a higher one continues)
    assert main(["crossover", *changed, "--out", str(resumed)]) == 2
    assert "other settings (steps)" in capsys.readouterr().err
    assert json.loads((resumed / "u-00012" / "validation.json").read_text())["ar"]


def _point(step: int, nll_per_token: float, size: int, right: int) -> dict:
    """Validation of four reviews of 10 tokens each at ``step`` (batch 4): NLL in nats, ``right`` of 4 correct."""
    nll = [10 * nll_per_token * f for f in (0.9, 1.1, 0.95, 1.05)]
    return {"nll": nll, "tokens": [10] * 4, "bytes": [40] * 4, "bayes": [1] * right + [0] * (4 - right),
            "infill": [1] * 4, "epoch": step * 4 / size, "tokens_seen": step * 100}


def _grid(size: int, steps: list[int], diffusion: list[float], ar: list[float], planned: int,
          unigram: dict | None = None) -> dict:
    points = {"diffusion": {s: _point(s, v, size, 2) for s, v in zip(steps, diffusion, strict=True)},
              "ar": {s: _point(s, v, size, 3) for s, v in zip(steps, ar, strict=True)}}
    plan = {"steps": planned, "points": [10, 20, 40, 80]}
    return xo.analyse_size(size, plan, points, {"accuracy": 0.6, "ci95": [0.2, 0.9]}, 5000, unigram)


def test_analysis_of_hand_built_curves_and_its_report_section():
    from textdiff_core.experiments.render import crossover_answer, crossover_lines

    crossing = _grid(100, [10, 20, 40, 80], [5.0, 4.0, 3.2, 3.1], [4.5, 3.5, 3.4, 3.6], 80,
                     unigram={"nll": [10 * 3.3 * f for f in (0.9, 1.1, 0.95, 1.05)], "tokens": [10] * 4})
    assert crossing["unigram"]["bits_per_token"] == pytest.approx(3.3 / math.log(2), abs=1e-4)
    assert crossing["unigram"]["diffusion_best_minus"]["difference_bits_per_token"] == pytest.approx(
        (3.1 - 3.3) / math.log(2), abs=1e-4)  # the best bound is the last point's
    assert crossing["unigram"]["ar_best_minus"]["difference_bits_per_token"] == pytest.approx(
        (3.4 - 3.3) / math.log(2), abs=1e-4)
    assert crossing["finished"] and crossing["crossover_tokens"] == 4000 and crossing["crossover"]["step"] == 40
    assert crossing["crossover"]["ar_best_step"] == 40 and crossing["crossover"]["diffusion_best_step"] == 40
    low, high = crossing["crossover"]["ci95"]
    assert crossing["crossover"]["difference_bits_per_token"] == pytest.approx((3.2 - 3.4) / math.log(2), abs=1e-4)
    assert low < crossing["crossover"]["difference_bits_per_token"] < high < 0
    assert crossing["best"]["ar"]["step"] == 40 and crossing["best"]["diffusion"]["accuracy_bayes"] == 0.5
    partial = _grid(400, [10, 20], [5.0, 4.5], [4.0, 3.5], 80)
    assert not partial["finished"] and partial["crossover_tokens"] is None and partial["crossover"] is None
    results = {"runs": [crossing, partial], "finished": False, "exponent": xo.analyse([crossing, partial]),
               "source": "results/crossover.json", "updated_at": "2026-12-05T18:00:00+00:00",
               "command": "python train_cli.py crossover …",
               "plan": [{"unique_reviews": 100, "points": [10, 20, 40, 80]},
                        {"unique_reviews": 400, "points": [10, 20, 40, 80]}], "model": {"parameters": 7},
               "config": xo.CrossoverConfig(out="x", sizes=[100, 400], steps=[80, 80], first_point=10,
                                            train=TrainConfig(out="", conditioning="joint")).to_dict()}
    assert results["exponent"] is None
    text = "\n".join(crossover_lines(results))
    assert "In progress: 6 validation points read, 2 to go" in text and "none so far (in progress)" in text
    assert "4,000 tokens (step 40, epoch 1.6)" in text and "not fitted" in text
    assert "1 of 2 sizes cross so far (100);" in text
    assert "| 100 | 50.0% | 100.0% | 75.0% | 100.0% | 60.0% |" in text
    assert "did not run" in text
    level = text.split("### Against the no-context level")[1].split("###")[0]
    assert "\n| 100 | 4.761 (" in level and "| -0.289 (-0.314 to -0.263) |" in level and "| +0.144 (" in level
    assert "\n| 400 |" not in level, "no row for a size without its level"
    crossing_control = _grid(100, [10, 20, 40, 80], [5.0, 4.0, 3.2, 3.1], [4.5, 3.5, 3.4, 3.6], 80)
    assert "control_difference" not in crossing_control
    answer = crossover_answer(results)
    assert "U=100: crosses at epoch 1.6" in answer and "U=400: no crossover so far" in answer
    gaps = sorted(r["best_difference"]["difference_bits_per_token"] for r in results["runs"])
    assert f"diffusion's loss minus the twin's: {gaps[0]:+.2f} to {gaps[1]:+.2f} bits per token" in answer
    assert "U unique training reviews" in answer and "lower is better" in answer, "its terms said"
    assert "which uses no context): -0.289 to -0.289" in answer
    assert "has not learned to use context" not in answer, "0.289 bits below the level: it uses context"
    results["runs"][0]["unigram"]["diffusion_best_minus"]["difference_bits_per_token"] = -0.02
    assert "has not learned to use context" in crossover_answer(results), "on the level: said so"


def test_report_rerender_adds_the_section_and_the_readme_line_without_measuring(tmp_path):
    import shutil

    grid = _grid(100, [10, 20], [5.0, 3.0], [4.5, 3.5], 20)
    config = xo.CrossoverConfig(out="x", sizes=[100], steps=[20], first_point=10,
                                train=TrainConfig(out="", conditioning="joint"))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "crossover.json").write_text(json.dumps({"runs": [grid], "finished": True, "exponent": None,
                                                         "config": config.to_dict(), "plan": [{"points": [10, 20]}],
                                                         "history": [{"twin": "ar"}]}))
    shutil.copy(Path(__file__).resolve().parents[1] / "results.json", tmp_path / "results.json")
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- results:start -->\nold\n<!-- results:end -->\n")
    assert main(["report", "--rerender", "--root", str(tmp_path)]) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## When does diffusion win? The data-constrained crossover" in text and "Finished" in text
    assert "## Many epochs: the pair by epoch" in text, "the rest of the report is kept"
    assert "U=100: crosses at epoch 0.8" in readme.read_text() and "old" not in readme.read_text()
    assert "history" not in json.loads((tmp_path / "results.json").read_text())["crossover"]
    assert main(["report", "--rerender", "--out-dir", str(tmp_path / "none")]) == 2


def test_input_token_masking_hides_text_inputs_of_the_left_to_right_twin_and_keeps_its_targets():
    from test_joint import Recorder

    from textdiff_core.errors import TextdiffError
    from textdiff_core.models import load_model
    from textdiff_core.settings import NoiseConfig
    from textdiff_core.tokens import collate, tokenize_texts
    from textdiff_core.train import micro_batch_loss

    tok = load_model("tiny").tokenizer
    text = tokenize_texts(tok, ["a tender and funny film about two brothers and their dog"])[0]
    prompt = tokenize_texts(tok, ["negative review:"])[0]
    batch = collate(tok, [text] * 64, [prompt] * 64, 32)
    results = {}
    for p in (0.0, 0.3):
        toy = Recorder(len(tok))
        num, den, *_ = micro_batch_loss(toy, batch, "ar", NoiseConfig(), tok.mask_token_id,
                                        torch.Generator().manual_seed(0), None, p)
        results[p] = (toy.inputs[-1], den.item())
    (clean, positions), den = results[0.0]
    (hidden, same_positions), den_masked = results[0.3]
    assert torch.equal(clean, batch.input_ids) and torch.equal(positions, same_positions) and den == den_masked
    masked = hidden == tok.mask_token_id
    assert not (masked & ~batch.target_mask).any(), "never the prompt or the special tokens"
    share = masked.sum().item() / batch.target_mask.sum().item()
    assert 0.2 < share < 0.4 and torch.equal(hidden[~masked], batch.input_ids[~masked])
    with pytest.raises(TextdiffError, match="left-to-right"):
        TrainConfig(out="x", objective="diffusion", input_mask_prob=0.1)


@pytest.mark.slow  # about 12 s: a one-size grid three times
def test_the_control_arm_joins_a_running_grid_and_its_rate_cannot_change(tmp_path, capsys):
    one = [x if x not in ("12,24", "4,6") else {"12,24": "12", "4,6": "4"}[x] for x in TINY]
    out = tmp_path / "grid"
    assert main(["crossover", *one, "--out", str(out)]) == 0
    before = read_results(out)
    stored = json.loads((out / "crossover.json").read_text())  # as a grid recorded before the control arm existed
    for key in ("control_mask", "control_sizes"):
        del stored["config"][key]
    del stored["config"]["train"]["input_mask_prob"]
    (out / "crossover.json").write_text(json.dumps(stored))
    assert main(["crossover", *one, "--control-mask", "0.3", "--out", str(out)]) == 0
    after = read_results(out)
    assert [h["twin"] for h in after["history"][len(before["history"]):]] == ["ar_masked", "ar_masked"]
    row, old = after["runs"][0], before["runs"][0]
    assert all(row[k] == old[k] for k in CURVES), "the twins' points are kept"
    assert len(row["ar_masked_bits_per_token"]) == len(row["steps"]) and "ar_masked" in row["best"]
    assert row["ar_masked_bits_per_token"] != row["ar_bits_per_token"] and "control_difference" in row
    assert after["control_arm"].startswith("ran") and "--control-mask 0.3" in after["command"]
    assert main(["crossover", *one, "--control-mask", "0.2", "--out", str(out)]) == 2
    assert "control_mask" in capsys.readouterr().err


@pytest.mark.slow  # about 10 s: a one-size grid, then its budget raised
def test_a_budget_raised_under_a_constant_schedule_continues_the_same_runs(tmp_path, capsys):
    one = _with(_with(_with(TINY, "--sizes", "12"), "--steps", "8"), "--points", "4")  # points 2, 3, 5, 8
    out = tmp_path / "grid"
    assert main(["crossover", *one, "--out", str(out)]) == 0
    before = read_results(out)["runs"][0]
    longer = _with(one, "--steps", "20")  # points 2, 4, 9, 20: step 4 was passed before the raise
    assert main(["crossover", *longer, "--out", str(out)]) == 0
    after = read_results(out)
    row = after["runs"][0]
    assert row["finished"] and row["steps"] == [2, 3, 5, 8, 9, 20] and before["steps"] == [2, 3, 5, 8]
    assert {(p["twin"], p["step"]) for p in after["skipped_points"]} == {("diffusion", 4), ("ar", 4)}
    for key in CURVES:  # the points measured before are the same points now
        old = dict(zip(before["steps"], before[key], strict=True))
        assert all(old[s] == v for s, v in zip(row["steps"], row[key], strict=True) if s in old), key
    assert after["budget_history"][0]["from"] == [8] and after["budget_history"][0]["to"] == [20]
    straight = tmp_path / "straight"  # the same budget from the start gives the same readings at its own points
    assert main(["crossover", *longer, "--tokenizer", str(out / "init" / "tokenizer.json"), "--out",
                 str(straight)]) == 0
    fresh = read_results(straight)["runs"][0]
    for key in CURVES:
        grown = dict(zip(row["steps"], row[key], strict=True))
        assert all(grown[s] == v for s, v in zip(fresh["steps"], fresh[key], strict=True) if s != 4), key
    assert fresh["steps"] == [2, 4, 9, 20]
    shorter = _with(one, "--steps", "7")
    assert main(["crossover", *shorter, "--out", str(out)]) == 2
    assert "other settings (steps)" in capsys.readouterr().err
    linear = [*longer, "--lr-schedule", "linear"]
    assert main(["crossover", *linear, "--out", str(out)]) == 2


def test_the_plan_uses_the_median_step_time_of_the_turns_so_far():
    turns = [{"twin": "diffusion", "from_step": 0, "to_step": 50, "seconds_per_step": s} for s in (1.0, 3.0, 2.0)]
    turns += [{"twin": "ar_masked", "from_step": 0, "to_step": 50, "seconds_per_step": 4.0},
              {"twin": "ar", "from_step": 50, "to_step": 55, "seconds_per_step": 9.0}]  # too short to count
    assert xo.measured_rates(turns) == {"diffusion": 2.0, "ar": 4.0}
    assert xo.measured_rates(turns[:3]) is None and xo.measured_rates(turns, "cpu_seconds_per_step") is None
    config = xo.CrossoverConfig(out="x", sizes=[100, 200], steps=[3600, 1800], first_point=10, control_mask=0.25,
                                control_sizes=[100], train=TrainConfig(out="", conditioning="joint"))
    rows = xo.plan(config, {"diffusion": 2.0, "ar": 4.0})
    assert [r["hours_training"] for r in rows] == [10.0, 3.0]  # 3600 x (2 + 4 + 4) s; 1800 x (2 + 4) s
    assert rows[0]["runs"] == ["diffusion", "ar", "ar_masked"] and rows[1]["epochs"] == 144.0


def test_the_reported_cost_sums_every_turn_and_takes_the_median_step():
    from textdiff_core.experiments.measure import crossover_time
    from textdiff_core.experiments.render import _time_sentence

    turns = [{"twin": "diffusion", "from_step": 0, "to_step": 100, "seconds": 360.0, "seconds_per_step": 3.6,
              "cpu_seconds_per_step": 1.8},
             {"twin": "ar", "from_step": 0, "to_step": 100, "seconds": 720.0, "seconds_per_step": 7.2,
              "cpu_seconds_per_step": 3.6},
             {"twin": "ar", "from_step": 100, "to_step": 300, "seconds": 1800.0, "seconds_per_step": 9.0}]
    cost = crossover_time(turns)
    assert cost["turns"] == 3 and cost["training_hours"] == 0.8  # (360 + 720 + 1800) s
    assert cost["cpu_hours"] == 0.15  # (180 + 360) CPU s; the last turn recorded none
    assert cost["seconds_per_step"] == {"diffusion": 3.6, "ar": 8.1}
    text = _time_sentence({"time": cost, "threads": 2, "probe_seconds_per_step": {"diffusion": 1.0, "ar": 2.0}})
    assert "0.8 h of training, wall clock, in 3 turns (0.1 CPU-hours" in text and "2 torch thread(s)" in text
    assert "wall clock: left to right 8.10 s, diffusion 3.60 s; CPU: left to right 3.60 s, diffusion 1.80 s" in text
