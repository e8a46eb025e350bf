"""No command writes over a checkpoint by accident: train, campaign and export refuse an --out that holds one, in
one line with exit 2, before any model loads and with nothing written, unless told to resume or to --overwrite."""

import json
from pathlib import Path

import pytest

import textdiff_core.cli.training as training_commands
from textdiff_core.experiments.campaign import STATUS
from train_cli import main

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--model", "tiny", "--data", "rotten_tomatoes", "--no-progress"]


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time: what "nothing touched" compares."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.fixture()
def calls(monkeypatch) -> list[str]:
    """Record (instead of running) what would train: the guard alone is under test."""
    seen: list[str] = []
    monkeypatch.setattr(training_commands, "train", lambda config, **kw: seen.append(config.out) or config.out)
    monkeypatch.setattr(training_commands, "run_campaign",
                        lambda config, **kw: seen.append(config.out) or {"twins": {}})
    return seen


def _finished(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "textdiff.json").write_text(json.dumps({"objective": "diffusion", "steps": 4}))
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def test_train_refuses_the_shipped_checkpoint_as_out_and_touches_nothing(calls, capsys):
    shipped = ROOT / "checkpoints" / "imdb-diffusion"
    before = _listing(shipped)
    for extra in ([], ["--resume"]):  # resuming it is no way in either: it has no resumable checkpoint
        assert main([*TRAIN, *extra, "--out", str(shipped)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "already holds a checkpoint" in err and "--overwrite" in err, err
    assert not calls, "refused before anything loads"
    assert _listing(shipped) == before


def test_train_refuses_a_finished_run_unless_told_to_overwrite(tmp_path, calls, capsys):
    run = _finished(tmp_path / "run")
    before = _listing(run)
    assert main([*TRAIN, "--out", str(run)]) == 2
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main([*TRAIN, "--resume", "--out", str(run)]) == 2, "nothing to resume from"
    assert "no resumable checkpoint" in capsys.readouterr().err
    assert not calls and _listing(run) == before
    assert main([*TRAIN, "--overwrite", "--out", str(run)]) == 0
    assert calls == [str(run)]


def test_train_resumes_a_run_with_a_checkpoint_and_writes_freely_into_a_new_or_empty_directory(tmp_path, calls):
    run = _finished(tmp_path / "run")
    (run / "checkpoints" / "step-0000004").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    per_class = tmp_path / "per-class" / "negative" / "checkpoints" / "step-0000002"
    per_class.mkdir(parents=True)
    assert main([*TRAIN, "--resume", "--out", str(run)]) == 0
    assert main([*TRAIN, "--resume", "--conditioning", "per-class", "--out", str(tmp_path / "per-class")]) == 0
    assert main([*TRAIN, "--out", str(tmp_path / "empty")]) == 0
    assert main([*TRAIN, "--out", str(tmp_path / "new")]) == 0
    assert calls == [str(run), str(tmp_path / "per-class"), str(tmp_path / "empty"), str(tmp_path / "new")]


def test_campaign_continues_its_own_directory_but_refuses_a_checkpoint(tmp_path, calls, capsys):
    model = _finished(tmp_path / "model")
    flags = ["campaign", "--epochs", "1", "--data", "rotten_tomatoes", "--no-progress"]
    assert main([*flags, "--out", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a campaign's directory" in err
    assert not calls
    mine = tmp_path / "campaign"
    _finished(mine / "diffusion")
    (mine / STATUS).write_text("{}")
    assert main([*flags, "--out", str(mine)]) == 0, "run again, a campaign continues"
    assert main([*flags, "--overwrite", "--out", str(model)]) == 0
    assert calls == [str(mine), str(model)]


def test_export_refuses_a_destination_that_holds_a_checkpoint(tmp_path, capsys):
    dest = _finished(tmp_path / "dest")
    before = _listing(dest)
    assert main(["export", str(tmp_path / "missing-run"), str(dest)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already holds a checkpoint" in err
    assert _listing(dest) == before
    assert main(["export", str(tmp_path / "missing-run"), str(dest), "--overwrite"]) == 2  # past the guard: no run
    assert "already holds" not in capsys.readouterr().err
