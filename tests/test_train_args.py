"""The train flags come from TrainConfig, and a config gives back the flags that recreate it."""

import json
import typing
from dataclasses import MISSING, replace
from pathlib import Path

import pytest

from textdiff_core.cli import build_parser, main
from textdiff_core.cli.training import _train_config
from textdiff_core.settings import FLAGS, NoiseConfig, TrainConfig, _base_type, _default, settings, train_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "checkpoints" / name for name in ("imdb-diffusion", "imdb-ar")]


def _parse(args: list[str]) -> TrainConfig:
    return _train_config(build_parser().parse_args(["train", *args]))


def _other_value(name: str, f, hint):
    """A valid value of the setting other than its default."""
    default, kind = _default(f), _base_type(hint)
    choices = FLAGS.get(name, {}).get("choices")
    if choices:
        return next(c for c in choices if c != default)
    if name == "noise.levels":
        return (0.25, 0.75)
    if name == "noise.t_beta":
        return 2.0
    if name == "label_mask_prob":
        return None  # "t"
    if name == "input_mask_prob":
        return 0.15
    if kind is bool:
        return not default if default is not None else True
    if kind is int:
        return (default or 0) + 3
    if kind is float:
        return 0.25 if default in (None, MISSING) else default / 2
    if kind is list:
        return ["rotten_tomatoes", "extra.csv"]
    return "{label} said:" if name == "class_prompt" else f"other-{name}"


def test_every_setting_has_a_flag_with_help():
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    for name, _, _ in settings():
        action = actions[name.replace(".", "__")]
        assert action.help and len(action.help) > 10, f"{name} has no help"


@pytest.mark.parametrize("name", [name for name, _, _ in settings()])
def test_every_setting_round_trips_through_its_flags(name):
    base = TrainConfig(out="/tmp/run", **({"objective": "ar"} if name == "input_mask_prob" else {}))  # ar only
    f, hint = next((f, h) for n, f, h in settings() if n == name)
    value = _other_value(name, f, hint)
    if name.startswith("noise."):
        config = replace(base, noise=replace(NoiseConfig(), **{name[6:]: value}))
    else:
        config = replace(base, **{name: value})
    assert config != base, "the test must change the setting"
    again = _parse(config.to_args())
    assert again == config and again.to_dict() == config.to_dict()


def test_the_masking_rates_flag_sets_the_masking_rates():
    config = _parse(["--out", "x", "--masking-rates", "levels", "--levels", "0.5,1.0"])
    assert config.noise.masking_rates == "levels" and config.noise.levels == (0.5, 1.0)


def test_absent_flags_leave_the_dataclass_defaults_and_quick_test_overrides_a_few():
    assert _parse(["--out", "x"]) == TrainConfig(out="x")
    assert _parse(["--out", "x", "--objective", "ar"]).model == "minilm-ar"
    quick = _parse(["--out", "x", "--quick-test", "--lr", "1e-3"])
    assert (quick.steps, quick.batch_size, quick.max_length, quick.lr) == (5, 4, 48, 1e-3)
    assert train_config(build_parser().parse_args(["train", "--out", "x"]), seed=7).seed == 7


def test_a_record_without_later_settings_reads_as_the_run_was():
    record = json.loads((SHIPPED[0] / "textdiff.json").read_text())["config"]
    assert TrainConfig.from_record(record).eval_epochs == record["eval_epochs"], "a recorded setting is kept"
    # the same record as written before --t-beta and --eval-epochs existed
    record = {k: v for k, v in record.items() if k != "eval_epochs"}
    record["noise"] = {k: v for k, v in record["noise"].items() if k != "t_beta"}
    config = TrainConfig.from_record(record)
    assert config.noise.t_beta == 1.0 and config.eval_epochs is False  # what such runs did
    old = {k: v for k, v in record.items() if k != "noise"}
    assert {k: v for k, v in config.to_dict().items() if k in old} == old
    assert typing.get_type_hints(TrainConfig)  # (the hints the flags are built from resolve)


@pytest.mark.slow
@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: p.name)
def test_the_reproduce_command_of_a_shipped_run_records_the_same_config(shipped, tmp_path):
    """Run for 5 steps, the shipped run's command records the run's own config (but for the steps and --out)."""
    record = json.loads((shipped / "textdiff.json").read_text())["config"]
    config = replace(TrainConfig.from_record(record), out=str(tmp_path / "run"), steps=5, resume=False)
    assert main(["train", *config.to_args(), "--no-progress"]) == 0
    recorded = json.loads((tmp_path / "run" / "textdiff.json").read_text())["config"]
    for key, value in record.items():
        if key not in ("out", "steps", "resume"):
            if key == "noise":  # recorded before masking_rates had its name: read as it, written as it
                value = {"masking_rates" if k == "schedule" else k: v for k, v in value.items()}
            assert recorded[key] == value if key != "noise" else value.items() <= recorded[key].items(), key
