"""Campaigns: both twins in alternating resumable chunks under one schedule; per-epoch records and snapshots."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from textdiff_core.errors import TextdiffError
from textdiff_core.experiments.campaign import read_status, shipped_curves, twin_config
from textdiff_core.experiments.measure import campaign_record
from textdiff_core.experiments.render import campaign_lines
from textdiff_core.models import load_model
from textdiff_core.train import train
from train_cli import main

# 16 examples, batch 4: four steps an epoch
SHARED = ["--data", "rotten_tomatoes", "--max-samples", "16", "--batch-size", "4", "--max-length", "32",
          "--lr", "1e-3", "--log-every", "1", "--save-every", "100", "--eval-size", "4", "--eval-samples", "2",
          "--diffusion-model", "tiny", "--ar-model", "tiny-ar", "--no-progress"]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _gaps(history: list[dict]) -> list[int]:
    """Epochs between the twins after each turn."""
    stand, gaps = {"diffusion": 0, "ar": 0}, []
    for turn in history:
        stand[turn["twin"]] = turn["epoch"]
        gaps.append(abs(stand["diffusion"] - stand["ar"]))
    return gaps


def test_a_campaign_stopped_between_chunks_resumes_to_the_weights_of_one_uninterrupted_run(tmp_path, capsys):
    out = tmp_path / "campaign"
    command = ["campaign", *SHARED, "--epochs", "2", "--out", str(out)]
    assert main([*command, "--until-epoch", "1"]) == 0  # as if killed after the first chunk
    status = read_status(out)
    assert {t: (s["step"], s["epochs_completed"]) for t, s in status["twins"].items()} == {"diffusion": (4, 1),
                                                                                           "ar": (4, 1)}
    assert not (out / "diffusion" / "textdiff.json").exists(), "no final model before the last epoch"
    assert main(command) == 0  # run again: it continues
    status = read_status(out)
    assert status["plan"]["total_steps"] == 8 and all(s["finished"] for s in status["twins"].values())
    assert [(h["twin"], h["epoch"]) for h in status["history"]] == [("diffusion", 1), ("ar", 1), ("diffusion", 2),
                                                                    ("ar", 2)]
    assert max(_gaps(status["history"])) <= 1
    assert "s/step" in capsys.readouterr().out

    config = _campaign(status["config"], out)
    for twin in ("diffusion", "ar"):  # the same run without stops: one train() over all eight steps
        train(replace(twin_config(config, twin, 8), out=str(tmp_path / "straight" / twin), resume=False,
                      save_every=4), progress=False)
        a, b = (load_file(run / twin / "model.safetensors") for run in (out, tmp_path / "straight"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{twin}: chunked == straight"
        # the epoch-1 snapshot is the straight run's step-4 weights in fp16
        snap = out / twin / "epochs" / "epoch-001"
        meta = json.loads((snap / "textdiff.json").read_text())
        assert meta["campaign_epoch"] == 1 and meta["steps"] == 4 and meta["epochs"] == 1.0
        first = load_file(snap / "model.safetensors")
        step4 = load_file(tmp_path / "straight" / twin / "checkpoints" / "step-0000004" / "model.safetensors")
        assert all(torch.equal(first[k], step4[k].half()) for k in first if first[k].is_floating_point())
        assert max(r["step"] for r in _records(snap)) == 4
        assert (out / twin / "epochs" / "epoch-002" / "textdiff.json").is_file()

        boundaries = [r for r in _records(out / twin) if r.get("epoch_boundary")]
        assert [(r["step"], r["epochs_completed"]) for r in boundaries] == [(4, 1), (8, 2)]
        for r in boundaries:
            assert {"val_accuracy", "val_accuracy_infill", "val_perplexity"} <= r.keys()
            assert r["val_perplexity"] > 1.0 and r["val_n"] == 4


def _campaign(saved: dict, out: Path):
    """The CampaignConfig recorded in campaign.json."""
    from textdiff_core.experiments.campaign import CampaignConfig
    from textdiff_core.settings import NoiseConfig
    from textdiff_core.train import TrainConfig

    t = dict(saved["train"])
    t["noise"] = NoiseConfig(**t["noise"])
    return CampaignConfig(**(saved | {"train": TrainConfig(**t), "out": str(out)}))


def test_twins_stand_within_one_chunk_and_a_rerun_with_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "c"
    small = [a if a != "16" else "8" for a in SHARED]  # 8 examples: two steps an epoch
    assert main(["campaign", *small, "--epochs", "3", "--chunk-epochs", "2", "--out", str(out)]) == 0
    status = read_status(out)
    assert [(h["twin"], h["epoch"]) for h in status["history"]] == [
        ("diffusion", 1), ("diffusion", 2), ("ar", 1), ("ar", 2), ("diffusion", 3), ("ar", 3)]
    assert max(_gaps(status["history"])) == 2, "never more than one chunk (two epochs) apart"
    assert {t: s["step"] for t, s in status["twins"].items()} == {"diffusion": 6, "ar": 6}
    assert all(len(s["snapshots"]) == 3 for s in status["twins"].values())
    assert main(["campaign", *small, "--epochs", "3", "--chunk-epochs", "2", "--out", str(out)]) == 0, "done: no-op"
    assert read_status(out)["history"] == status["history"], "a finished campaign trains nothing more"

    capsys.readouterr()
    assert main(["campaign", *small, "--epochs", "3", "--chunk-epochs", "2", "--lr", "5e-4", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "other settings (train)" in err and "\n" not in err


def test_snapshots_can_be_sharded_into_small_files(tmp_path):
    out = tmp_path / "s"
    small = [a if a != "16" else "8" for a in SHARED]
    assert main(["campaign", *small, "--epochs", "1", "--max-shard-size", "200KB", "--out", str(out)]) == 0
    snap = out / "ar" / "epochs" / "epoch-001"
    shards = sorted(snap.glob("*.safetensors"))
    assert len(shards) > 1 and (snap / "model.safetensors.index.json").is_file()
    for shard in shards:  # within the limit, unless one tensor alone is larger (save_pretrained never splits one)
        tensors = load_file(shard)
        weight_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
        assert weight_bytes <= 200_000 or len(tensors) == 1, shard.name
    assert load_model(str(snap)).meta["campaign_epoch"] == 1, "a sharded snapshot loads"


def _set_validation(run: Path, readings: dict[int, tuple[float, float, float]]) -> None:
    """Rewrite a twin's epoch-boundary readings (Bayes, infill, perplexity), so that the choice is known."""
    lines = []
    for r in _records(run):
        if r.get("epoch_boundary"):
            r["val_accuracy"], r["val_accuracy_infill"], r["val_perplexity"] = readings[r["epochs_completed"]]
        lines.append(json.dumps(r))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_choose_epoch_takes_the_best_reading_then_the_lower_perplexity_then_the_earlier_epoch():
    from textdiff_core.experiments.campaign import choose_epoch, crossover

    def rec(bayes, infill, ppl):
        return {"val_accuracy": bayes, "val_accuracy_infill": infill, "val_perplexity": ppl}

    assert choose_epoch({1: rec(0.7, 0.8, 90), 2: rec(0.85, 0.6, 80), 3: rec(0.8, 0.84, 70)}) == 2
    assert choose_epoch({1: rec(0.7, 0.8, 90), 2: rec(0.8, 0.7, 80), 3: rec(0.8, 0.8, 85)}) == 2, "tie: perplexity"
    assert choose_epoch({1: rec(0.8, 0.7, 80), 2: rec(0.7, 0.8, 80)}) == 1, "full tie: the earlier epoch"
    d = {1: rec(0.7, 0.7, 9), 2: rec(0.8, 0.7, 9), 3: rec(0.7, 0.7, 9), 4: rec(0.9, 0.7, 9), 5: rec(0.9, 0.7, 9)}
    a = {e: rec(0.75, 0.8 if e == 2 else 0.75, 9) for e in d}
    assert crossover({"diffusion": d, "ar": a}) == 4, "the first epoch from which it holds to the end"
    assert crossover({"diffusion": {1: rec(0.9, 0, 9), 2: rec(0.5, 0, 9)}, "ar": {1: rec(0.8, 0, 9),
                                                                                  2: rec(0.8, 0, 9)}}) is None
    assert crossover({"diffusion": {1: rec(0.9, 0, 9), 2: {}}, "ar": {1: rec(0.8, 0, 9), 2: {}}}) == 1


def test_campaign_ship_copies_the_epochs_chosen_on_validation_and_keeps_the_curves(tmp_path, capsys):
    from textdiff_core.experiments.campaign import SHIP_RECORD

    out, dest = tmp_path / "c", tmp_path / "checkpoints"
    small = [a if a != "16" else "8" for a in SHARED]  # 8 examples: two steps an epoch
    command = ["campaign", *small, "--epochs", "3", "--out", str(out)]
    assert main([*command, "--until-epoch", "2"]) == 0
    capsys.readouterr()
    assert main(["campaign-ship", str(out), "--dest", str(dest)]) == 2, "an unfinished campaign needs --partial"
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--partial" in err and "\n" not in err and not dest.exists()
    assert main(command) == 0
    _set_validation(out / "diffusion", {1: (0.6, 0.7, 90.0), 2: (0.7, 0.8, 60.0), 3: (0.8, 0.8, 50.0)})
    _set_validation(out / "ar", {1: (0.7, 0.8, 40.0), 2: (0.75, 0.82, 30.0), 3: (0.7, 0.7, 35.0)})
    (dest / "imdb-ar").mkdir(parents=True)
    (dest / "imdb-ar" / "calibration.json").write_text("{}")  # the old weights' calibration: must not survive
    replaced = tmp_path / "results.json"
    replaced.write_text(json.dumps({"finished_at": "before", "perplexity": {"ratio": 1.6}, "head_to_head": {
        "readings": {"diffusion_infill": {"label": "diffusion infill", "accuracy": 0.8}}}, "decoding": {"summary": [
            {"method": "confidence <= 16 passes", "length": 64, "tokens_per_pass": 4.0, "gen_ppl": 500.0}]}}))

    assert main(["campaign-ship", str(out), "--dest", str(dest), "--replaced", str(replaced)]) == 0
    printed = capsys.readouterr().out
    assert "diffusion: epoch 3 of 3" in printed and "ar: epoch 2 of 3" in printed and "from epoch 3 on" in printed
    assert read_status(out)["shipped"]["diffusion"] == 3 and read_status(out)["shipped"]["ar"] == 2
    for twin, name, epoch in (("diffusion", "imdb-diffusion", 3), ("ar", "imdb-ar", 2)):
        snap, shipped = out / twin / "epochs" / f"epoch-{epoch:03d}", dest / name
        a, b = load_file(snap / "model.safetensors"), load_file(shipped / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        meta = json.loads((shipped / "textdiff.json").read_text())
        assert meta["campaign_epoch"] == epoch and meta["epochs"] == float(epoch) and meta["tokens_seen"] > 0
        assert not (shipped / "calibration.json").exists()
    record = json.loads((dest / SHIP_RECORD).read_text())
    assert [r["epochs_completed"] for r in record["epochs"]["ar"]] == [1, 2, 3] and record["crossover_epoch"] == 3
    assert record["replaced"]["perplexity"]["ratio"] == 1.6 and set(record["replaced"]["decoding"]) == {"summary"}

    # the report's section: every epoch of both twins, the shipped ones marked, the pair it replaced beside it
    result = {"campaign": campaign_record(str(dest / "imdb-diffusion")), "perplexity": {"ratio": 1.2},
              "head_to_head": {"readings": {"diffusion_infill": {"label": "diffusion infill", "accuracy": 0.86}}},
              "decoding": {"summary": [{"method": "confidence <= 16 passes", "length": 64, "tokens_per_pass": 5.0,
                                        "gen_ppl": 300.0}]}}
    text = "\n".join(campaign_lines(result))
    assert "| 3 | 80.0% | 80.0% | 50.0 (shipped) | 70.0% | 70.0% | 35.0 | 1.429 | +10.0 points |" in text
    assert "| 2 | 70.0% | 80.0% | 60.0 | 75.0% | 82.0% | 30.0 (shipped) | 2.000 | -2.0 points |" in text
    assert "from epoch 3 on" in text and "half-width of about 42.4 points" in text  # 1.96 sqrt(.75 .25 / 4)
    assert "| diffusion infill (test) | 80.0% | 86.0% |" in text and "| 1.600 | 1.200 |" in text
    assert "| 4.00; 500 | 5.00; 300 |" in text

    assert main(command) == 0 and read_status(out)["shipped"]["ar"] == 2, "the choice outlives a rerun"
    assert [r["epochs_completed"] for r in shipped_curves(dest / "imdb-diffusion")] == [1, 2, 3]
    assert shipped_curves(tmp_path / "imdb-diffusion") is None, "not beside a ship record"

    capsys.readouterr()
    assert main(["campaign-ship", str(out), "--dest", str(dest), "--ar-epoch", "1", "--replaced",
                 str(tmp_path / "none.json")]) == 0, "an epoch given"
    assert "note: no " in capsys.readouterr().out
    assert json.loads((dest / "imdb-ar" / "textdiff.json").read_text())["campaign_epoch"] == 1
    assert main(["campaign-ship", str(out), "--dest", str(dest), "--ar-epoch", "7"]) == 2, "no such snapshot"


def test_campaign_ship_refuses_a_directory_that_is_not_a_finished_campaign_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = [(tmp_path / "missing", "no campaign.json"), (bad, "{not json"), (bad, "[1, 2]"),
             (bad, '{"twins": {}}')]
    for directory, content in cases:
        if directory == bad:
            (bad / "campaign.json").write_text(content)
        capsys.readouterr()
        assert main(["campaign-ship", str(directory), "--dest", str(tmp_path / "d"), "--partial"]) == 2, content
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert not (tmp_path / "d").exists()
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "shipped-campaign.json").write_text("{cut short")
    assert shipped_curves(tmp_path / "d" / "imdb-diffusion") is None, "the page falls back to the run's own records"
    with pytest.raises(TextdiffError, match="cannot be read"):  # the report refuses it
        campaign_record(str(tmp_path / "d" / "imdb-diffusion"))
