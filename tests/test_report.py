"""The report command end to end on tiny checkpoints (--quick): every section present, numbers consistent."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train_cli import main


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    for objective, model in (("diffusion", "tiny"), ("ar", "tiny-ar")):
        assert main(["train", "--objective", objective, "--model", model, "--data", "imdb", "--conditioning",
                     "class", "--quick-test", "--no-progress", "--out", str(root / objective)]) == 0
    return root


@pytest.fixture()
def tiny_pair(trained_pair, tmp_path):
    """A copy per test (without the resumable checkpoints): the report writes model cards into the pair."""
    return Path(shutil.copytree(trained_pair, tmp_path / "pair", ignore=shutil.ignore_patterns("checkpoints")))


def quick_report(pair, out, *extra):
    return ["report", "--quick", "--diffusion", str(pair / "diffusion"), "--ar", str(pair / "ar"),
            "--reference", "tiny-ar", "--zero-shot", "tiny-ar", "--baseline", "tfidf:rotten_tomatoes",
            "--out-dir", str(out), "--no-progress", *extra]


def test_quick_report_writes_results_md_and_json(tiny_pair, tmp_path):
    out = tmp_path / "out"
    assert main(quick_report(tiny_pair, out)) == 0
    assert not (out / "results.partial.json").exists(), "the pieces of a finished report are not kept"
    card = (tiny_pair / "diffusion" / "README.md").read_text()
    assert "## Measured" in card and "## Samples" in card and "accuracy" in card
    assert "- **Base model:** `tiny`" in card and "- **Training:** 5 steps x" in card and "more steps" not in card
    result = json.loads((out / "results.json").read_text())
    assert len(result["classification"]) == 10
    assert {r["method"] for r in result["classification"]} >= {
        "diffusion infill (class word masked, text visible)", "left-to-right infill (class word after the text)",
        "TF-IDF + logistic regression (discriminative reference)"}
    for row in result["classification"]:
        assert row["ci95"][0] <= row["accuracy"] <= row["ci95"][1]
    assert result["perplexity"]["ratio"] > 0 and result["decoding"]["summary"]
    head = result["head_to_head"]
    paired = head["paired"]
    assert head["n"] == paired["n"] == 12, "--quick pairs 12 test reviews"
    assert paired["difference"] == pytest.approx(head["diffusion"]["accuracy"] - head["ar"]["accuracy"])
    assert paired["difference_ci95"][0] <= paired["difference"] <= paired["difference_ci95"][1]
    readings = head["readings"]
    assert set(readings) == {"diffusion", "diffusion_infill", "ar", "ar_infill", "tfidf"}
    for pair in head["pairs"]:  # every paired difference is the difference of the two accuracies
        assert pair["difference"] == pytest.approx(readings[pair["a"]]["accuracy"] - readings[pair["b"]]["accuracy"])
    assert readings["diffusion_infill"]["forward_passes_mean"] < readings["diffusion"]["forward_passes_mean"]
    text = (out / "RESULTS.md").read_text()
    assert "## Classification" in text and "## Perplexity" in text and "## Decoding" in text
    assert "paired (n=12)" in text and "within 1 point of the left-to-right twin" in text
    assert "diffusion infill − left-to-right twin (exact)" in text and "diffusion infill accuracy >= 90%" in text
    assert "python train_cli.py report --quick" in text


def test_an_interrupted_report_resumes_from_its_finished_pieces(tiny_pair, tmp_path, monkeypatch):
    from textdiff_core.experiments import measure as report

    out = tmp_path / "out"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "perplexity", killed)  # dies after classification and the paired readings
    with pytest.raises(KeyboardInterrupt):
        main(quick_report(tiny_pair, out, "--no-cards"))
    assert not (out / "results.json").exists()
    partial = json.loads((out / "results.partial.json").read_text())["done"]
    assert len([k for k in partial if k.startswith("classification: ")]) == 10
    assert sorted(k for k in partial if k.startswith("paired: ")) == [
        "paired: ar", "paired: ar_infill", "paired: diffusion", "paired: diffusion_infill", "paired: tfidf"]
    monkeypatch.undo()

    measured = []
    real = report.evaluate_classifier
    monkeypatch.setattr(report, "evaluate_classifier", lambda *a, **k: measured.append(1) or real(*a, **k))
    assert main(quick_report(tiny_pair, out, "--no-cards")) == 0
    assert measured == [], "no classifier is measured twice"
    result = json.loads((out / "results.json").read_text())
    assert result["resumed_pieces"] == 15 and result["perplexity"]["ratio"] > 0
    for row in result["classification"]:
        assert row == partial[f"classification: {row['method']}"]["value"]
    assert result["head_to_head"]["paired"]["n"] == 12
    assert result["seconds"] >= sum(piece["seconds"] for piece in partial.values()) - 0.5
    assert "came from an interrupted one" in (out / "RESULTS.md").read_text()
    assert not (out / "results.partial.json").exists()


def test_pieces_are_reused_only_under_the_same_checkpoints_and_settings(tmp_path):
    from textdiff_core.experiments.measure import Pieces, fingerprint

    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    (checkpoint / "calibration.json").write_text("{}")
    before = fingerprint(str(checkpoint))
    (checkpoint / "README.md").write_text("a model card the report rewrites")
    assert fingerprint(str(checkpoint)) == before
    (checkpoint / "calibration.json").write_text('{"bias": 1}')
    assert fingerprint(str(checkpoint)) != before, "a new calibration changes the readings"
    assert fingerprint("smollm2") == "smollm2"

    file = tmp_path / "results.partial.json"
    pieces = Pieces(file, {"models": {"diffusion": before}})
    assert pieces.get("perplexity", lambda: {"ratio": 1.5}) == {"ratio": 1.5}
    assert Pieces(file, {"models": {"diffusion": before}}).get("perplexity", lambda: 1 / 0) == {"ratio": 1.5}
    assert Pieces(file, {"models": {"diffusion": before}}, fresh=True).done == {}, "--fresh"
    assert Pieces(file, {"models": {"diffusion": "other"}}).get("perplexity", lambda: {"ratio": 2}) == {"ratio": 2}
    file.write_text("{half a")  # a torn file is ignored, not an error
    assert Pieces(file, {}).done == {}


def test_export_ships_an_fp16_copy_with_its_calibration(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--model", "tiny", "--data", "rotten_tomatoes", "--conditioning", "class", "--quick-test",
                 "--no-progress", "--out", str(run)]) == 0
    calibration = {"elbo": {"temperature": 1.5, "bias": [0.0, 0.25], "ood_reference": [-3.0, -2.5, -2.0]}}
    (run / "calibration.json").write_text(json.dumps(calibration))
    dest = tmp_path / "ship"
    assert main(["export", str(run), str(dest)]) == 0
    assert json.loads((dest / "config.json").read_text())["dtype"] == "float16"
    trained, shipped = load_file(run / "model.safetensors"), load_file(dest / "model.safetensors")
    assert trained.keys() == shipped.keys()
    for name, weight in trained.items():  # the run's final weights, each rounded to fp16 and nothing else
        assert weight.dtype == torch.float32 and shipped[name].dtype == torch.float16, name
        assert torch.equal(shipped[name], weight.half()), name
    assert json.loads((dest / "calibration.json").read_text()) == calibration
    assert (dest / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()
    assert json.loads((dest / "textdiff.json").read_text())["exported_from"] == str(run)
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2


def _decoding(default_wall=0.8, twin_wall=2.0, entropy=4.0, texts=10, default_ppl=40.0, per_pass=4.0,
              batch8=2.0):
    def row(method, wall, ppl, entropy=4.0, runs=10, per_pass=1.0, texts=10):
        return {"method": method, "length": 128, "runs": runs, "forward_passes": 128 / per_pass,
                "tokens_processed": 1000, "wall_s": wall, "wall_s_median": wall, "tokens_per_pass": per_pass,
                "gen_ppl": ppl, "gen_ppl_ci95": [ppl * 0.8, ppl * 1.25], "word_entropy_median": entropy,
                "word_entropy_mean": entropy, "word_entropy_ci95": [entropy - 0.1, entropy + 0.1],
                "distinct_texts": texts, "distinct": 0.6, "distinct_2": 0.9}

    return {"summary": [row("default (blocks, dual cache)", default_wall, default_ppl, entropy, per_pass=per_pass,
                            texts=texts),
                        row("default, no KV cache", 2 * default_wall, 40.0),
                        row("one per pass, no cache", 9.0, 40.0),
                        row("ar (KV cache)", twin_wall, 30.0)],
            "ratios": [{"length": 128, "default_over_twin": round(default_wall / twin_wall, 3)}],
            "batch": [{"model": m, "length": 128, "samples": n, "wall_s": 1.0, "samples_per_s": rate}
                      for m in ("diffusion", "ar") for n, rate in ((1, 1.0), (8, batch8))]}


def test_decoding_targets_mark_each_target_met_or_not_from_the_benchmark():
    from textdiff_core.experiments.render import decoding_targets

    def marks(**kwargs):
        return [line.endswith("| met |") for line in decoding_targets(_decoding(**kwargs), lambda ok: "met" if ok
                                                                      else "not met")]

    assert marks() == [True] * 6
    assert marks(default_wall=1.2) == [False, True, True, True, True, True], "0.6 x the twin is over 0.5 x"
    assert marks(entropy=3.0)[1] is False and marks(entropy=3.0)[3] is False, "low entropy; outside the uncached"
    assert marks(texts=9)[1] is False, "two seeds wrote the same text"
    assert marks(default_ppl=60.0)[2] is False, "worse than one token per pass beyond its interval"
    assert marks(per_pass=3.0)[2] is False, "fewer than 4 tokens per pass"
    assert marks(batch8=0.9)[4:] == [False, False], "a batch of 8 slower per sample than one"
    checks = {"agreement": {"dual": {"by_position": [0.95, 0.8, 0.99], "by_position_median": 0.95,
                                     "pass_by_pass": 0.99}}}
    line = decoding_targets(_decoding(), lambda ok: "met" if ok else "not met", checks)[3]
    assert "dual cache" in line and "95.0%" in line and line.endswith("| met |")
    assert decoding_targets({"summary": []}, lambda ok: ok) == []


def test_the_readme_block_shows_the_decoding_row(tmp_path):
    from textdiff_core.experiments.render import decoding_summary

    line = decoding_summary(_decoding())[-1]
    assert "diffusion 0.80 s in 32 forward passes" in line and "twin with its KV cache 2.00 s in 128" in line
    assert line.endswith("diffusion takes 0.40 x the twin's time.")
    assert decoding_summary({"summary": []}) == []


@pytest.mark.parametrize("accuracy, shown", [({"bayes": 0.8, "infill": 0.82, "combined": 0.85}, True),
                                             ({"bayes": 0.8, "infill": 0.85, "combined": 0.85}, False)])
def test_the_combined_reading_is_reported_only_where_it_beat_both_on_validation(tmp_path, accuracy, shown):
    from textdiff_core.experiments.measure import combined_earns_its_place

    assert not combined_earns_its_place(str(tmp_path))  # no calibration at all
    (tmp_path / "calibration.json").write_text(json.dumps({"combined": {"cross_fitted_accuracy": accuracy}}))
    assert combined_earns_its_place(str(tmp_path)) is shown


def test_results_record_repository_paths_relative_to_the_repository():
    from textdiff_core.paths import relative_to_root

    root = Path("/some/checkout")
    result = {"settings": {"diffusion": str(root / "checkpoints" / "imdb-diffusion"), "out_dir": str(root),
                           "reference": "smollm2", "other": "/elsewhere/model"},
              "rows": [{"checkpoint": str(root / "checkpoints" / "imdb-ar"), "n": 3}]}
    assert relative_to_root(result, root) == {
        "settings": {"diffusion": "checkpoints/imdb-diffusion", "out_dir": ".", "reference": "smollm2",
                     "other": "/elsewhere/model"},
        "rows": [{"checkpoint": "checkpoints/imdb-ar", "n": 3}]}


def test_report_parses_its_flags_like_every_command(capsys):
    """``report`` is a subparser of the CLI with the report's own flags: a wrong one is refused before any work."""
    from textdiff_core.cli import build_parser

    args = build_parser().parse_args(["report", "--quick", "--n", "7", "--no-cards"])
    assert (args.command, args.quick, args.n, args.cards, args.progress) == ("report", True, 7, False, True)
    with pytest.raises(SystemExit) as exited:
        main(["report", "--no-such-flag"])
    assert exited.value.code == 2 and "--no-such-flag" in capsys.readouterr().err


def test_the_report_reads_a_discriminative_head_beside_the_pair(tiny_pair, tmp_path):
    head = tmp_path / "head"
    assert main(["train", "--objective", "discriminative", "--model", "tiny", "--data", "imdb", "--quick-test",
                 "--no-progress", "--out", str(head)]) == 0
    out = tmp_path / "out"
    assert main(quick_report(tiny_pair, out, "--no-cards", "--discriminative", str(head))) == 0
    result = json.loads((out / "results.json").read_text())
    assert "discriminative head (same backbone, classification head)" in {r["method"] for r in result["classification"]}
    head_to_head = result["head_to_head"]
    assert head_to_head["readings"]["discriminative"]["method"] == "discriminative"
    assert {(p["a"], p["b"]) for p in head_to_head["pairs"]} >= {("diffusion_infill", "discriminative"),
                                                                  ("diffusion", "discriminative")}
    assert "| diffusion infill − discriminative head |" in (out / "RESULTS.md").read_text()
    assert main(quick_report(tiny_pair, out, "--no-cards", "--discriminative", str(tmp_path / "none"))) == 2
