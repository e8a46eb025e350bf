"""Campaigns: both twins in alternating resumable chunks under one schedule; per-epoch records and snapshots."""

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from textdiff_core.campaign import read_status, twin_config
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
    from textdiff_core.campaign import CampaignConfig
    from textdiff_core.noise import NoiseConfig
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
