"""Flags from fields: every setting's help is its dataclass field's metadata, the commands that share training
settings add them with one function (no argparse internals), and one table names the weights' dtypes."""

import argparse
import re
from dataclasses import field, fields, replace
from pathlib import Path

import pytest
import torch

from textdiff_core.cli import build_parser, reporting
from textdiff_core.cli.training import PER_RUN, PER_TWIN
from textdiff_core.models import torch_dtype
from textdiff_core.settings import (
    DTYPES,
    LoadOptions,
    NoiseConfig,
    TrainConfig,
    _help,
    config_args,
    settings,
    train_config,
)

PACKAGE = Path(__file__).resolve().parents[1] / "textdiff_core"
# each command that takes training settings, with what it needs besides them, and the settings it does not share
COMMANDS = {
    "train": (["--out", "x"], set()),
    "campaign": (["--out", "x", "--epochs", "1"], PER_TWIN),
    "crossover": (["--out", "x", "--sizes", "10", "--steps", "5"], PER_RUN),
    "augment": (["--out", "x", "--sizes", "10", "--steps", "5", "--synthetic", "s.csv"], PER_RUN),
}


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _help_of(argv: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return _squash(capsys.readouterr().out)


def test_every_setting_that_is_a_flag_has_its_help_in_its_field():
    for name, f, _ in settings():
        assert len(f.metadata.get("help", "")) > 10, f"{name} has no help in its field's metadata"
    for f in fields(LoadOptions):
        assert len(f.metadata.get("help", "")) > 10, f"LoadOptions.{f.name} has no help in its field's metadata"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_help_printed_is_the_fields_metadata(command, monkeypatch, capsys):
    shown = _help_of([command], monkeypatch, capsys)
    skip = COMMANDS[command][1]
    for name, f, _ in settings():
        assert (_squash(f.metadata["help"]) in shown) != (name in skip), name
    for f in fields(LoadOptions):  # the loading flags, after the command name too
        assert (_squash(f.metadata["help"]) in shown) != bool(f.metadata.get("top_level_only")), f.name


def test_the_loading_flags_help_before_the_command_is_their_fields(monkeypatch, capsys):
    shown = _help_of([], monkeypatch, capsys)
    for f in fields(LoadOptions):
        assert _squash(f.metadata["help"]) in shown, f.name


def test_a_field_that_is_a_flag_without_help_is_refused():
    bare = field(default=1)
    bare.name = "bare"
    with pytest.raises(TypeError, match="bare has no help"):
        _help("bare", bare)


def _other_config() -> TrainConfig:
    """A config with every setting away from its default (those train, campaign and crossover share among them)."""
    return replace(TrainConfig(out="x", data=["a.csv", "b.csv"], text_col="review", label_col="sentiment",
                               class_prompt="{label} said:", label_mask_prob=None, label_weight=4.0, batch_size=3,
                               grad_accum=2, lr=1e-3, lr_schedule="linear", warmup_steps=7, weight_decay=0.5,
                               max_length=40, crop="start", max_samples=50, seed=3, save_every=5,
                               keep_checkpoints=4, log_every=2, save_dtype="bf16", eval_every=4, eval_epochs=False,
                               eval_size=9, eval_samples=2),
                   noise=NoiseConfig(masking_rates="levels", levels=(0.25, 0.75), eps=0.01, weighting="elbo"))


def test_a_flag_shared_by_train_campaign_and_crossover_parses_identically_in_each():
    config = _other_config()
    parser = build_parser()
    read = {}
    for command, (own, skip) in COMMANDS.items():
        argv = config_args(config, skip=lambda name, skip=skip: name in skip or name == "out")
        read[command] = vars(parser.parse_args([command, *own, *argv]))
    for command, (_, skip) in COMMANDS.items():
        for name, _, _ in settings():
            if name not in skip and name != "out":
                dest = name.replace(".", "__")
                assert read[command].get(dest, "absent") == read["train"].get(dest, "absent"), (command, name)
    assert train_config(argparse.Namespace(**read["train"])) == config
    # an absent flag leaves the same default everywhere: no attribute, so the dataclass's
    for command, (own, _) in COMMANDS.items():
        assert not hasattr(parser.parse_args([command, *own]), "lr"), command


def test_the_report_and_promises_get_their_own_settings_without_the_loading_flags():
    from textdiff_core.experiments import measure, promises

    args = build_parser().parse_args(["--trust-remote-code", "report", "--quick", "--n", "5"])
    own = vars(reporting._own(args, measure.add_arguments))
    assert own["quick"] is True and own["n"] == 5 and own["root"] == "."
    assert "trust_remote_code" not in own and "command" not in own
    args = build_parser().parse_args(["--trust-remote-code", "promises", "--out", "o", "--n", "5"])
    own = vars(reporting._own(args, promises.add_arguments))
    assert own["out"] == "o" and own["n"] == 5 and "trust_remote_code" not in own and "quick" not in own


def test_one_table_names_the_dtypes_and_every_dtype_flag_takes_its_names():
    assert {name: torch_dtype(name) for name in DTYPES} == {"fp32": torch.float32, "bf16": torch.bfloat16,
                                                            "fp16": torch.float16}
    parser = build_parser()
    dtype_flags = [["train", "--out", "x", "--save-dtype"], ["campaign", "--out", "x", "--epochs", "1",
                                                             "--snapshot-dtype"],
                   ["export", "run", "dest", "--dtype"], ["--model-dtype"]]
    for flag in dtype_flags:
        for name in DTYPES:
            parser.parse_args([*flag, name] + ([] if flag[0] != "--model-dtype" else ["export", "a", "b"]))
        with pytest.raises(SystemExit):
            parser.parse_args([*flag, "fp8"] + ([] if flag[0] != "--model-dtype" else ["export", "a", "b"]))
    for file in PACKAGE.rglob("*.py"):  # nowhere else maps a name to a torch dtype
        assert not re.search(r"[\"'](fp32|fp16|bf16)[\"']\s*:\s*torch\.", file.read_text()), file


def test_flags_are_built_without_source_parsing_or_argparse_internals():
    assert "getsource" not in (PACKAGE / "settings.py").read_text()
    private = re.compile(r"\._(actions|add_action|option_string_actions|group_actions|subparsers|defaults)\b")
    for file in (PACKAGE / "cli").glob("*.py"):
        assert not private.search(file.read_text()), file
