"""Training: both objectives learn, checkpoints resume exactly after a kill, several processes work, bad input fails."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from textdiff_core.experiments.render import training_lines
from train_cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data", "rotten_tomatoes", "--max-length", "32", "--no-progress"]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("objective,model", [("diffusion", "tiny"), ("ar", "tiny-ar")])
def test_loss_falls_on_real_text_for_both_objectives(tmp_path, objective, model):
    out = tmp_path / objective
    args = ["train", "--objective", objective, "--model", model, *TINY, "--steps", "40", "--batch-size", "8",
            "--lr", "3e-3", "--log-every", "5", "--max-samples", "2000", "--save-every", "0", "--out", str(out)]
    assert main(args) == 0
    losses = _losses(out)
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 1.0, losses
    meta = json.loads((out / "textdiff.json").read_text())
    assert meta["objective"] == objective and meta["steps"] == 40
    if objective == "diffusion":
        bins = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["loss_by_mask_rate"]
        assert set(bins) <= {f"{i / 10:.1f}-{(i + 1) / 10:.1f}" for i in range(10)} and bins


def test_class_conditioning_records_classes_prompt_and_data_mix(tmp_path):
    extra = tmp_path / "synthetic.csv"
    rows = [f"A wonderful film number {i}.,positive\nA dreadful film number {i}.,negative" for i in range(100)]
    extra.write_text("text,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["train", "--model", "tiny", *TINY, "--data", str(extra), "--conditioning", "class",
                 "--steps", "2", "--batch-size", "4", "--out", str(out)]) == 0
    meta = json.loads((out / "textdiff.json").read_text())
    assert meta["classes"] == ["negative", "positive"]
    assert meta["class_prompt"] == "{label} review:"
    assert [s["spec"] for s in meta["data"]["sources"]] == ["rotten_tomatoes", str(extra)]
    assert 120 < meta["data"]["sources"][1]["n"] < 200, "the file's train split (about 80% of 200 rows)"
    assert meta["noise"]["weighting"] == "mean" and meta["train_time_s"] >= 0


def test_continuing_a_trained_checkpoint_records_its_lineage_and_totals(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--model", "tiny", *TINY, "--batch-size", "4", "--save-every", "0", "--log-every", "1"]
    assert main(["train", *common, "--steps", "3", "--out", str(first)]) == 0
    assert "continued_from" not in json.loads((first / "textdiff.json").read_text()), "base weights have no parent"
    common[1] = str(first)
    assert main(["train", *common, "--steps", "2", "--seed", "1", "--out", str(second)]) == 0
    parent = json.loads((first / "textdiff.json").read_text())
    meta = json.loads((second / "textdiff.json").read_text())
    assert meta["steps"] == 2 and meta["base_model"] == str(first)
    assert meta["continued_from"]["base_model"] == "tiny" and meta["continued_from"]["steps"] == 3
    assert meta["continued_from"]["config"]["seed"] == 0 and meta["config"]["seed"] == 1
    assert meta["total_steps"] == 5
    assert meta["total_tokens_seen"] == parent["tokens_seen"] + meta["tokens_seen"]
    assert meta["total_train_time_s"] >= parent["train_time_s"]
    text = " ".join(training_lines(meta))
    assert "`tiny`" in text and "3 steps" in text and "then 2 more steps" in text and "5 steps in all" in text, text
    assert "warm-up 1 steps, the default" in text and "None" not in text, "the default warm-up, as train.py plans it"
    exported = tmp_path / "exported"
    assert main(["export", str(second), str(exported)]) == 0
    steps = [json.loads(line)["step"] for line in (exported / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5], "the exported curve runs on from the parent's last step"
    assert [json.loads(line)["step"] for line in (second / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    shutil.rmtree(first)
    assert main(["export", str(second), str(tmp_path / "orphan")]) == 0
    assert "metrics of the first 3 steps are not included" in capsys.readouterr().out
    assert len((tmp_path / "orphan" / "metrics.jsonl").read_text().splitlines()) == 2


def test_per_class_conditioning_trains_one_model_per_class(tmp_path):
    out = tmp_path / "pc"
    assert main(["train", "--model", "tiny", *TINY, "--conditioning", "per-class", "--quick-test",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "textdiff.json").read_text())
    assert meta["class_dirs"] == {"negative": "negative", "positive": "positive"}
    for name in ("negative", "positive"):
        sub = json.loads((out / name / "textdiff.json").read_text())
        assert sub["class_name"] == name and (out / name / "model.safetensors").exists()
        other = "positive" if name == "negative" else "negative"
        assert sub["data"]["class_counts"] == {name: 32, other: 0}, "each model sees only its class"


def _weights(run: Path) -> dict:
    return load_file(run / "model.safetensors")


def test_resume_after_sigkill_continues_exactly(tmp_path, capsys):
    common = ["train", "--model", "tiny", *TINY, "--steps", "60", "--batch-size", "4", "--save-every", "10",
              "--log-every", "5", "--lr", "1e-3"]
    straight = tmp_path / "straight"
    assert main([*common, "--out", str(straight)]) == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as this process (conftest): same sums, same losses
    proc = subprocess.Popen([sys.executable, "train_cli.py", *common, "--out", str(killed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((killed / "checkpoints").glob("step-*")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "textdiff.json").exists(), "the run was killed before it finished"
    done = [p for p in (killed / "checkpoints").iterdir() if p.name.startswith("step-")]
    assert done and all((p / "trainer_state.json").exists() for p in done)

    capsys.readouterr()
    assert main([*common, "--out", str(killed), "--resume"]) == 0
    said = capsys.readouterr()
    line = re.search(r"resuming from \S+step-(\d+) \(step (\d+) of 60\)", said.out + said.err)
    assert line and int(line[1]) == int(line[2]) == max(int(p.name[5:]) for p in done), "it names where it continues"
    meta = json.loads((killed / "textdiff.json").read_text())
    assert meta["steps"] == 60
    assert _losses(killed) == _losses(straight), "same losses at every logged step"
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_in_the_earlier_layout_is_refused_in_one_line(tmp_path, capsys):
    """Checkpoints written before Accelerate's save_state (optimizer.pt, scheduler.pt, rng-N.pt) no longer resume."""
    common = ["train", "--model", "tiny", *TINY, "--steps", "4", "--batch-size", "4", "--log-every", "1",
              "--save-every", "2"]
    run = tmp_path / "run"
    assert main([*common, "--stop-after", "2", "--out", str(run)]) == 0
    checkpoint = run / "checkpoints" / "step-0000002"
    for name in ("optimizer", "scheduler"):  # rename Accelerate's files as the earlier code named them
        (checkpoint / f"{name}.bin").rename(checkpoint / f"{name}.pt")
    before = sorted(p.name for p in run.rglob("*"))
    capsys.readouterr()
    assert main([*common, "--resume", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier layout" in err[0] and "Traceback" not in err[0]
    assert sorted(p.name for p in run.rglob("*")) == before, "nothing written"


def test_keyboard_interrupt_saves_a_checkpoint(tmp_path, monkeypatch):
    import textdiff_core.train as train_mod

    calls = {"n": 0}
    real = train_mod.collate

    def interrupting_collate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "collate", interrupting_collate)
    out = tmp_path / "int"
    code = main(["train", "--model", "tiny", *TINY, "--steps", "50", "--batch-size", "4", "--save-every", "0",
                 "--out", str(out)])
    assert code == 130
    assert train_mod.latest_checkpoint(out).name == "step-0000003"


def test_two_processes_train_with_gloo(tmp_path):
    """Two processes split the data and average their gradients: after every step both hold the same weights,
    though each trained on examples the other never saw (tests/ddp_probe.py records both)."""
    import hashlib

    from textdiff_core.models import load_model

    out, probe = tmp_path / "ddp", tmp_path / "probe"
    probe.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        ["torchrun", "--standalone", "--nproc_per_node", "2", "tests/ddp_probe.py", str(probe), "train", "--model",
         "tiny", *TINY, "--quick-test", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((out / "textdiff.json").read_text())
    assert meta["num_processes"] == 2 and meta["steps"] == 5
    ranks = [json.loads((probe / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    # the data is split: in every micro-batch the two processes train on different examples
    for a, b in zip(ranks[0]["rows"], ranks[1]["rows"], strict=True):
        assert (a["step"], a["micro"]) == (b["step"], b["micro"]) and len(a["rows"]) == len(b["rows"]) == 4
        assert not {tuple(r) for r in a["rows"]} & {tuple(r) for r in b["rows"]}, a["step"]
    # the gradients are shared: the steps move the weights (all but the first, at the warm-up's learning rate 0),
    # and move them identically in both processes
    moved = [r["moved"] for r in ranks]
    assert len(ranks[0]["weights"]) == 5 and all(m > 0 for r in moved for m in r[1:]), moved
    assert ranks[0]["weights"] == ranks[1]["weights"], "the processes' weights drifted apart"
    saved = torch.cat([p.detach().flatten() for p in load_model(str(out), dtype=torch.float32).model.parameters()])
    assert hashlib.sha256(saved.numpy().tobytes()).hexdigest() == ranks[0]["weights"][-1], "the model saved is these"


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", "--model", "tiny", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing.csv" in err and "\n" not in err
    assert main(["train", "--objective", "diffusion", "--model", "tiny-ar", *TINY, "--out", str(tmp_path)]) == 2
    assert "needs a diffusion one" in capsys.readouterr().err
    one_class = tmp_path / "one.csv"
    one_class.write_text("text,label\ngood,positive\nfine,positive\n")
    assert main(["train", "--model", "tiny", "--data", str(one_class), "--conditioning", "class",
                 "--out", str(tmp_path / "x")]) == 2
    assert "class" in capsys.readouterr().err
    assert main(["train", "--model", "tiny", *TINY, "--steps", "0", "--out", str(tmp_path / "y")]) == 2


def test_validation_accuracy_is_logged_during_class_conditional_training(tmp_path):
    out = tmp_path / "ev"
    assert main(["train", "--model", "tiny", *TINY, "--conditioning", "class", "--steps", "4", "--batch-size", "4",
                 "--eval-every", "2", "--eval-size", "10", "--eval-samples", "2", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "val_accuracy" in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 and r["val_n"] == 10 for r in evals)


def test_random_crops_train_on_windows_beyond_the_start(tmp_path, monkeypatch):
    import textdiff_core.train as train_mod

    seen = []
    real = train_mod.collate

    def spy(tokenizer, texts, prefixes, max_length, suffixes=None):
        seen.extend(tuple(t[:3]) for t in texts)
        return real(tokenizer, texts, prefixes, max_length, suffixes)

    monkeypatch.setattr(train_mod, "collate", spy)
    for crop in ("start", "random"):
        seen.clear()
        assert main(["train", "--model", "tiny", "--data", "imdb", "--max-samples", "8", "--max-length", "32",
                     "--batch-size", "8", "--steps", "1", "--crop", crop, "--no-progress",
                     "--out", str(tmp_path / crop)]) == 0
        starts = set(seen)
        if crop == "start":
            first = starts
    assert len(starts - first) >= 6, "random windows start elsewhere than the review's first tokens"


def test_a_kill_during_a_save_leaves_the_last_complete_checkpoint(tmp_path):
    """MiniLM's checkpoint (weights + Adam state, ~270 MB) takes long enough to write that the kill lands mid-save."""
    from textdiff_core.train import latest_checkpoint

    out = tmp_path / "save-kill"
    args = ["train", "--model", "minilm", "--data", "rotten_tomatoes", "--max-length", "16", "--batch-size", "2",
            "--steps", "8", "--save-every", "2", "--log-every", "2", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "train_cli.py", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((out / "checkpoints").glob("step-*")):
        time.sleep(0.01)  # wait for one complete checkpoint...
    while time.time() < deadline and not list((out / "checkpoints").glob(".tmp-step-*")):
        time.sleep(0.001)  # ...then for the next save to start
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert list((out / "checkpoints").glob(".tmp-step-*")), "the kill landed during a save"
    last = latest_checkpoint(out)
    assert last.name == "step-0000002" and (last / "trainer_state.json").exists()
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "textdiff.json").read_text())["steps"] == 8
    assert not list((out / "checkpoints").glob(".tmp-step-*")), "the half-written save was cleaned up"


@pytest.mark.parametrize("objective,model", [("diffusion", "tiny"), ("ar", "tiny-ar")])
def test_each_epoch_boundary_logs_accuracy_and_perplexity_given_the_class(tmp_path, objective, model):
    from textdiff_core.data import load_data
    from textdiff_core.likelihood import ar_scores, elbo_scores
    from textdiff_core.models import load_model

    out = tmp_path / objective  # 16 examples, batch 4: epochs end at steps 4 and 8
    assert main(["train", "--objective", objective, "--model", model, *TINY, "--conditioning", "class",
                 "--max-samples", "16", "--batch-size", "4", "--steps", "9", "--log-every", "3", "--eval-size", "6",
                 "--eval-samples", "2", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    boundaries = [r for r in records if r.get("epoch_boundary")]
    assert [(r["step"], r["epochs_completed"]) for r in boundaries] == [(4, 1), (8, 2)]
    assert all("val_accuracy" in r and r["val_perplexity"] > 1 for r in boundaries)
    assert not any("val_perplexity" in r for r in records if not r.get("epoch_boundary")), "only at boundaries"
    meta = json.loads((out / "textdiff.json").read_text())
    assert meta["epochs"] == 9 * 4 / 16

    # the perplexity is the scorers' own on the first window, each text given its class prompt (checked at step 9)
    assert main(["train", "--objective", objective, "--model", str(out), *TINY, "--conditioning", "class",
                 "--max-samples", "16", "--batch-size", "4", "--steps", "1", "--lr", "1e-12", "--eval-every", "1",
                 "--eval-size", "6", "--eval-samples", "2", "--out", str(tmp_path / "again")]) == 0
    logged = json.loads((tmp_path / "again" / "metrics.jsonl").read_text().splitlines()[-1])
    lm = load_model(str(tmp_path / "again"))
    prompts = lm.checkpoint.class_prompts()
    validation = load_data(["rotten_tomatoes"], "validation", max_samples=6, seed=0, min_classes=2)
    nll = tokens = 0
    for text, label in zip(validation.texts, validation.labels, strict=True):  # one window shared by the classes
        if objective == "ar":
            score = ar_scores(lm, text, prompts, max_length=32, max_windows=1)[label]
        else:
            score = elbo_scores(lm, text, prompts, 2, max_length=32, max_windows=1)[label]
        nll, tokens = nll + score.nll, tokens + score.n_tokens
    assert logged["val_tokens"] == tokens
    if objective == "ar":  # exact: the same number, however the texts are batched
        assert logged["val_perplexity"] == pytest.approx(math.exp(nll / tokens), rel=2e-4)
    assert meta["epochs"] == 2.25 and json.loads((tmp_path / "again" / "textdiff.json").read_text())[
        "total_epochs"] == 2.25 + 0.25


def test_a_stopped_run_leaves_a_checkpoint_that_exports_and_resumes_under_the_same_schedule(tmp_path):
    args = ["train", "--model", "tiny", *TINY, "--steps", "6", "--batch-size", "4", "--log-every", "1",
            "--save-every", "0", "--lr-schedule", "linear"]
    assert main([*args, "--stop-after", "2", "--out", str(tmp_path / "run")]) == 0
    assert not (tmp_path / "run" / "textdiff.json").exists(), "no final model yet"
    stop = tmp_path / "run" / "checkpoints" / "step-0000002"
    assert json.loads((stop / "textdiff.json").read_text())["stopped_at"] == {"step": 2, "of_steps": 6}
    assert main([*args, "--stop-after", "4", "--resume", "--out", str(tmp_path / "run")]) == 0
    assert main([*args, "--resume", "--out", str(tmp_path / "run")]) == 0
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    lrs = [[json.loads(line)["lr"] for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
           for r in ("run", "straight")]
    assert lrs[0] == lrs[1] and lrs[0][-1] < lrs[0][1], "one decaying schedule over the six steps"
    a, b = _weights(tmp_path / "run"), _weights(tmp_path / "straight")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_export_fills_in_epochs_for_runs_saved_before_they_were_recorded(tmp_path):
    import json

    run = tmp_path / "run"
    assert main(["train", "--model", "tiny", "--data", "imdb", "--conditioning", "class", "--quick-test",
                 "--no-progress", "--out", str(run)]) == 0
    meta = json.loads((run / "textdiff.json").read_text())
    recorded = meta.pop("epochs")
    meta["continued_from"] = {"steps": 100, "config": {"batch_size": 4}, "data": {"n": 200}}  # an older parent
    (run / "textdiff.json").write_text(json.dumps(meta))
    assert main(["export", str(run), str(tmp_path / "out")]) == 0
    exported = json.loads((tmp_path / "out" / "textdiff.json").read_text())
    assert exported["epochs"] == pytest.approx(recorded, abs=1e-4)
    assert exported["total_epochs"] == pytest.approx(2.0 + recorded, abs=1e-4)
