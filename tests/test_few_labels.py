"""The few-labels campaign: nested class-balanced subsets, one budget rule for every trained model (the step of each
reading chosen on validation, the test read once with those weights), the verdict as a pure function of the points,
and a tiny campaign that, killed twice and continued, writes the few_labels.json of one uninterrupted run."""

import csv
import json
import random
import shlex

import pytest

import textdiff_core.experiments.few_labels as fl
import textdiff_core.train as train_module
from textdiff_core.cli import build_parser, main
from textdiff_core.cli.training import few_labels_config
from textdiff_core.data import load_data

POINT_KEYS = {"n_per_class", "seed", "reading", "accuracy", "arm"}  # the contract


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny labelled CSV: 120 training, 16 validation and 16 test reviews of two classes."""
    rng, rows = random.Random(0), []
    words = {"negative": "bad awful dull boring poor".split(), "positive": "good great lovely superb fine".split()}
    for i in range(152):
        label = ("negative", "positive")[i % 2]
        text = " ".join(rng.choice(words[label] + ["the", "film", "plot", "was"]) for _ in range(14)) + f" #{i}"
        rows.append({"text": text, "label": label, "split": "train" if i < 120 else "validation" if i < 136
                     else "test"})
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def tiny(data: str, out) -> list[str]:
    """A tiny campaign: n = 2, 4 per class, one seed, a 4-step cap read at steps 2 and 4, the semi arm at n = 2."""
    return ["few-labels", "--data", data, "--sizes", "2,4", "--seeds", "0", "--steps", "4", "--points", "2",
            "--first-point", "2", "--val-size", "4", "--test-size", "6", "--val-samples", "1", "--test-samples",
            "1", "--batch-size", "4", "--max-length", "32", "--semi-sizes", "2", "--unlabelled-steps", "2",
            "--diffusion-model", "tiny", "--ar-model", "tiny-ar", "--zero-shot", "tiny-ar", "--probe-steps", "0",
            "--no-progress", "--out", str(out)]


class Calls:
    """Counts ``few_labels.train`` calls and records each ``read_correct`` as (model path, reading, split)."""

    def __init__(self, monkeypatch) -> None:
        self.train, self.reads = 0, []
        real_train, real_read = fl.train, fl.read_correct

        def counted_train(*args, **kwargs):
            self.train += 1
            return real_train(*args, **kwargs)

        def recorded_read(lm, reading, data, *args):
            self.reads.append((lm.name, reading, data.split))
            return real_read(lm, reading, data, *args)

        monkeypatch.setattr(fl, "train", counted_train)
        monkeypatch.setattr(fl, "read_correct", recorded_read)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """One uninterrupted tiny campaign: its directory, its record and what it called."""
    out = tmp_path_factory.mktemp("straight")
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = Calls(monkeypatch)
        assert main(tiny(data, out)) == 0
    return out, fl.read_results(out), calls


def _stable(record: dict) -> dict:
    """What two runs of the same units agree on: the points and the summary, timings aside."""
    return {"points": [{k: v for k, v in p.items() if k not in fl.TIMING} for p in record["points"]],
            "summary": record["summary"], "command": record["command"]}


def _config(data: str, out, *extra: str):
    return few_labels_config(build_parser().parse_args([*tiny(data, out), *extra]))


# ----------------------------------------------------------------------------------------------- subsets


def test_subsets_are_nested_class_balanced_prefixes_that_differ_by_seed(data, tmp_path):
    config = _config(data, tmp_path, "--sizes", "2,4,8,16", "--seeds", "0,1,2", "--semi-sizes", "2,4")
    for seed in config.seeds:
        sets = [set(fl.subset(config, n, seed, 2).texts) for n in config.sizes]
        assert all(a < b for a, b in zip(sets, sets[1:], strict=False)), "the subset for n is inside that for 2n"
        assert fl.subset(config, 8, seed, 2).class_counts() == {"negative": 8, "positive": 8}
    assert len({frozenset(fl.subset(config, 8, s, 2).texts) for s in config.seeds}) == 3, "seeds differ"
    # the loop's own subset (train --max-samples under the unit's seed) is the same reviews
    unit = fl.Unit(4, 1, "diffusion", fl.LABELLED)
    t = fl._Campaign(config, False, print).unit_config(unit, tmp_path / "run")
    loop = load_data(t.data, "train", label_col=t.label_col, min_classes=2, max_samples=t.max_samples, seed=t.seed)
    assert loop.texts == fl.subset(config, 4, 1, 2).texts
    fixed = set(fl.fixed_reviews(config, "validation").texts) | set(fl.fixed_reviews(config, "test").texts)
    assert not fixed & set(fl.subset(config, 16, 0, 2).texts)
    split = load_data(data, "train", min_classes=2)
    pool = set(fl.unlabelled_pool(config, split))
    labelled = set().union(*(fl.subset(config, 4, s, 2).texts for s in config.seeds))
    assert not pool & labelled and pool | labelled == set(split.texts), "the rest of the training split"


# ----------------------------------------------------------------------------------------------- budget rule


def test_each_reading_keeps_its_best_validation_step_and_a_run_stops_after_patience_points():
    points = {10: {"elbo": 0.5, "infill": 0.6}, 20: {"elbo": 0.7, "infill": 0.6}, 40: {"elbo": 0.7, "infill": 0.5},
              80: {"elbo": 0.6, "infill": 0.55}}
    assert fl.best_steps(points) == {"elbo": 20, "infill": 10}  # the earliest on ties
    assert fl.stops_early(points, 2) and not fl.stops_early(points, 3)  # elbo's best (20) is not before [20, 40, 80]
    assert not fl.stops_early({10: {"elbo": 0.5}}, 1) and fl.stops_early({10: {"elbo": 0.5}, 20: {"elbo": 0.4}}, 1)


def test_every_trained_model_has_one_cap_and_one_validation_schedule_and_is_tested_at_its_chosen_step(straight):
    out, record, calls = straight
    results = [json.loads((out / u.name / "result.json").read_text()) for u in fl.units(fl.FewLabelsConfig.from_dict(
        record["config"])) if u.model in fl.TRAINED]
    assert len(results) == 9 and {r["model"] for r in results} == set(fl.TRAINED)
    assert {r["cap"] for r in results} == {4} and all(r["validation_steps"] == [2, 4] for r in results)
    assert {r["validation_n"] for r in results} == {4} and record["validation"]["n"] == 4
    for r in results:
        curve = {int(s): p for s, p in r["validation"].items()}
        assert {reading: b["step"] for reading, b in r["best"].items()} == fl.best_steps(curve)
        for reading, b in r["best"].items():
            assert b["validation_accuracy"] == curve[b["step"]][reading]
    # validation read at every point; the test once per reading, with the weights of its best step only
    tests = [(path, reading) for path, reading, split in calls.reads if split == "test"]
    assert len(tests) == sum(len(r["test"]) for r in results) == len(set(tests))
    assert all(path.endswith(f"best-{reading}") for path, reading in tests)
    assert len([s for _, _, s in calls.reads if s == "validation"]) == sum(
        len(r["validation"]) * len(r["test"]) for r in results)
    assert all(len(r["test"][reading]["correct"]) == 6 for r in results for reading in r["test"])


# ----------------------------------------------------------------------------------------------- the record


def test_few_labels_json_keeps_the_contract_and_its_command_repeats_the_campaign(straight, data):
    out, record, _ = straight
    assert record["finished"] and shlex.split(record["command"])[:3] == ["python", "train_cli.py", "few-labels"]
    again = few_labels_config(build_parser().parse_args(shlex.split(record["command"])[2:]))
    assert again.to_dict() == record["config"] == fl.FewLabelsConfig.from_dict(record["config"]).to_dict()
    points = record["points"]
    assert all(POINT_KEYS <= set(p) and 0 <= p["accuracy"] <= 1 for p in points)
    assert {p["arm"] for p in points} == {"labelled", "semi-supervised"}
    labelled = {(p["n_per_class"], p["reading"]) for p in points if p["arm"] == "labelled"}
    readings = {"elbo", "infill", "ar", "ar_infill", "discriminative", "tfidf"}
    assert labelled == {(n, r) for n in (2, 4) for r in readings}
    assert {p["reading"] for p in points if p["arm"] == "semi-supervised"} == readings - {"tfidf"}
    assert all(p["unlabelled_reviews"] == 120 - 4 for p in points if p["arm"] == "semi-supervised")
    assert record["references"]["zero-shot"]["n"] == 6 and "correct" not in json.dumps(record)
    assert [r["n_per_class"] for r in record["summary"]["labelled"]["paired"]] == [2, 4]
    assert {"mcnemar_p", "difference", "difference_ci95"} <= set(record["summary"]["labelled"]["paired"][0]["pooled"])
    assert {r["reading"] for r in record["summary"]["semi_minus_labelled"]} == readings - {"tfidf"}
    units = record["cost"]["units"]
    assert len(units) == 11 + 2 + 1 and all(u["cpu_seconds"] >= 0 for u in units)  # units, stage 1, zero-shot
    assert record["cost"]["cpu_hours"] == round(sum(u["cpu_seconds"] for u in units) / 3600, 3)
    assert not list(out.glob("n-*/seed-*/*/run")), "finished units leave their weights behind only when asked"


def _points(rows: list[tuple], arm: str = "labelled") -> list[dict]:
    """Points from (n, seed, reading, test accuracy, validation accuracy)."""
    return [{"n_per_class": n, "seed": s, "reading": r, "accuracy": a, "validation_accuracy": v, "arm": arm}
            for n, s, r, a, v in rows]


def test_the_n_below_which_a_generative_reading_wins_is_read_off_the_points():
    rows = [(8, 0, "elbo", 0.70, 0.70), (8, 0, "infill", 0.80, 0.60), (8, 0, "discriminative", 0.60, 0.6),
            (16, 0, "elbo", 0.75, 0.80), (16, 0, "discriminative", 0.70, 0.7),
            (32, 0, "elbo", 0.80, 0.80), (32, 0, "discriminative", 0.85, 0.9),
            (64, 0, "elbo", 0.90, 0.90), (64, 0, "discriminative", 0.85, 0.9)]
    assert fl.generative_wins_below(_points(rows)) == 32  # 64 wins again, but not below 32 throughout
    verdict = fl.few_label_verdict(_points(rows))
    assert verdict["wins_at"] == [8, 16, 64] and not verdict["wins_at_every_n"]
    # the best generative reading is chosen on validation: at n = 8 that is elbo (0.70), not infill's test 0.80
    assert fl.curve(_points(rows))[0]["best_generative"] == "elbo"
    never = [(8, 0, "ar", 0.5, 0.5), (8, 0, "discriminative", 0.6, 0.6)]
    assert fl.generative_wins_below(_points(never)) is None and fl.few_label_verdict(_points(never))["wins_at_no_n"]
    always = [(8, s, "ar", 0.7, 0.7) for s in (0, 1)] + [(8, 0, "discriminative", 0.6, 0.6),
                                                          (8, 1, "discriminative", 0.9, 0.6)]
    assert fl.few_label_verdict(_points(always))["wins_at_no_n"], "the mean over seeds decides (0.7 < 0.75)"
    assert fl.few_label_verdict(_points(rows[:5]))["wins_at_every_n"]
    assert fl.few_label_verdict(_points(rows), "semi-supervised")["compared_at"] == []


# ----------------------------------------------------------------------------------------------- resume, cost


def test_a_campaign_killed_twice_and_continued_writes_what_one_straight_run_does(straight, data, tmp_path,
                                                                                 monkeypatch, capsys):
    out, record, first = straight
    resumed = tmp_path / "resumed"
    real_step, steps = train_module._optimizer_step, {"n": 0}

    def step_then_stop(*args, **kwargs):
        steps["n"] += 1
        if steps["n"] == 6:  # the twin of n = 2, in its first stretch
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "_optimizer_step", step_then_stop)
    assert main(tiny(data, resumed)) == 130
    monkeypatch.setattr(train_module, "_optimizer_step", real_step)
    assert (resumed / "n-00002/seed-0/ar-labelled/run/checkpoints/step-0000001").is_dir(), "saved when interrupted"
    partial = fl.read_results(resumed)
    assert not partial["finished"] and {p["model"] for p in partial["points"]} == {"tfidf", "diffusion"}

    real_read, reads = fl.read_correct, {"n": 0}

    def read_then_stop(*args, **kwargs):
        reads["n"] += 1
        if reads["n"] == 8:  # in the validation of a later unit
            raise KeyboardInterrupt
        return real_read(*args, **kwargs)

    monkeypatch.setattr(fl, "read_correct", read_then_stop)
    assert main(tiny(data, resumed)) == 130
    monkeypatch.undo()
    calls = Calls(monkeypatch)
    assert main(tiny(data, resumed)) == 0
    assert calls.train < first.train, "finished units are not trained again"
    assert _stable(fl.read_results(resumed)) == _stable(record) | {"command": _stable(record)["command"].replace(
        str(out), str(resumed))}
    again = Calls(monkeypatch)
    assert main(tiny(data, resumed)) == 0 and again.train == 0 and again.reads == [], "nothing left to do"
    assert main([*tiny(data, resumed), "--steps", "6"]) == 2
    assert "other settings (steps)" in capsys.readouterr().err


def test_the_plan_only_probe_prints_units_and_seconds_per_step_and_writes_nothing(data, tmp_path, capsys):
    args = [*tiny(data, tmp_path / "plan"), "--models", "diffusion,tfidf", "--semi-models", "none", "--plan-only",
            "--probe-steps", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2 labelled and 0 semi-supervised trained units" in out and "probe: s/step {'diffusion': " in out
    assert "CPU-hours" in out and not (tmp_path / "plan" / "few_labels.json").exists()
    config = _config(data, tmp_path, "--models", "diffusion,ar,discriminative,tfidf")
    probe = {"seconds_per_step": {"diffusion": 200.0, "ar": 100.0, "discriminative": 100.0}, "cpu_per_wall": 2.0,
             "seconds_per_review": {"elbo": 0.0, "infill": 0.0, "ar": 0.0, "ar_infill": 0.0, "discriminative": 0.0}}
    plan = fl.plan(config, 2, probe)
    # 3 units (400 s/step in all) at each of 2 sizes and the semi size, 4 steps each; 2 steps of each stage-1 run
    assert plan["at_most_hours"] == (3 * 400 * 4 + 2 * 300) / 3600 == 1.5 and plan["at_most_cpu_hours"] == 3.0


# ----------------------------------------------------------------------------------------------- the command


def test_help_exits_0_and_bad_flags_are_one_line_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["few-labels", "--help"])
    assert exit_.value.code == 0 and "--plan-only" in capsys.readouterr().out
    base = ["few-labels", "--out", str(tmp_path / "x"), "--probe-steps", "0"]
    for extra, said in ((["--sizes", "16,8"], "ascending"), (["--semi-sizes", "4"], "among the sizes"),
                        (["--models", "bert"], "unknown models"), (["--steps", "5"], "past the step cap"),
                        (["--seeds", "1,1"], "distinct"), (["--threads", "0"], "threads"),
                        (["--class-prompt", "review:"], "{label}")):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(SystemExit) as exit_:
        main([*base, "--sizes", "eight"])
    assert exit_.value.code == 2 and "expected whole numbers" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "x").exists()
