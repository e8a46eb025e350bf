"""Strategies are declared once (``textdiff_core.strategies``): the registry holds each one's name, title, settings,
defaults, pace and choice; the decoders, ``generate --strategy`` and the Denoise and Compare pages read it. A toy
strategy registered here, in this file alone, decodes and appears in the CLI and on both pages."""

from dataclasses import asdict, fields
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from textdiff_core import decoding
from textdiff_core.cli import build_parser, main
from textdiff_core.decoding import DecodeConfig, default_config, generate
from textdiff_core.errors import TextdiffError
from textdiff_core.models import CAUSAL, MASKED, load_model
from textdiff_core.strategies.base import (
    SETTINGS,
    Strategy,
    register,
    strategies,
    strategy_named,
    strategy_names,
    unregister,
)
from textdiff_core.trace import Trace

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PROMPT = "The movie was"


class Leftmost(Strategy):
    """A toy: the k leftmost open positions per step (left to right, k at a time)."""

    name = "leftmost"
    title = "leftmost first"
    description = "the k leftmost masked positions, in order"
    order = 60
    reads = ("k",)

    def choose(self, config, scores, count, generator, positions, beyond_pace=True):
        return list(range(min(config.k, len(positions))))


@pytest.fixture()
def leftmost():
    register(Leftmost)
    yield strategy_named("leftmost")
    unregister("leftmost")


def _generate_actions() -> dict:
    return {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["generate"]._actions}


def test_the_registry_lists_every_strategy_once_in_order_and_decoding_reads_it():
    assert strategy_names() == ("confidence", "topk", "schedule-random", "schedule-confidence", "entropy-bound", "ar")
    assert strategy_names(MASKED) == strategy_names()[:-1] and strategy_names(CAUSAL) == ("ar",)
    assert decoding.STRATEGIES == strategy_names() and decoding.DIFFUSION_STRATEGIES == strategy_names(MASKED)
    assert decoding.STRATEGY_NAMES == {s.name: (s.title, s.description) for s in strategies()}
    assert len({s.title for s in strategies()}) == len(strategies()), "one title each"
    for s in strategies():
        assert set(s.reads) <= set(SETTINGS) and set(s.notes) <= set(s.reads), s.name
    with pytest.raises(TextdiffError, match="unknown strategy 'beam'; choose one of confidence, topk"):
        strategy_named("beam")


def test_each_strategy_holds_the_defaults_users_meet():
    confidence = asdict(default_config(MASKED, length=12))
    assert confidence == asdict(DecodeConfig(strategy="confidence", steps=3, temperature=1.0, top_p=0.9,
                                             block_size=32, spacing=3, cache="dual"))
    assert confidence["entropy_bound"] == 32.0 and default_config(MASKED).steps is None
    for name in ("topk", "schedule-random", "schedule-confidence", "entropy-bound"):
        assert asdict(default_config(MASKED, name, 12)) == confidence | {"strategy": name, "steps": None}
    ar = asdict(DecodeConfig(strategy="ar", temperature=1.0, top_p=0.9))
    assert asdict(default_config(CAUSAL, None, 7)) == asdict(default_config(MASKED, "ar")) == ar
    assert asdict(default_config(CAUSAL, "topk", 7)) == ar, "a causal model decodes left to right"
    assert decoding.default_pass_budget(10) == 3 and decoding.default_pass_budget(10, 2) == 5
    assert decoding.default_pass_budget(0) is None
    plain = generate(load_model("tiny", device="cpu"), PROMPT, 4)  # generate's own default: DecodeConfig()
    assert {k: plain.settings[k] for k in confidence} == asdict(DecodeConfig()) | {"stop_at_end": False}


def test_each_strategy_owns_its_pace_and_its_check():
    config = DecodeConfig(strategy="schedule-random", steps=4)
    schedule = strategy_named("schedule-random")
    assert [schedule.count(config, step=s, steps=2, size=6, left=6) for s in range(3)] == [3, 3, None]
    with pytest.raises(TextdiffError, match="4 steps cannot decode 5 blocks"):
        schedule.check(config, 10, 5)
    paced = strategy_named("confidence")
    assert paced.count(DecodeConfig(steps=3), step=0, steps=3, size=7, left=7) == 3
    assert paced.count(DecodeConfig(), step=0, steps=7, size=7, left=7) == 1, "no budget: one, then the threshold"
    assert not paced.beyond_pace(DecodeConfig(steps=8), 8) and paced.beyond_pace(DecodeConfig(steps=3), 8)
    strategy_named("topk").check(DecodeConfig(strategy="topk", steps=1), 10, 5)  # keeps no count of steps
    assert [s.name for s in strategies() if s.optional_steps] == ["confidence", "entropy-bound"]
    assert [s.name for s in strategies() if s.uses_entropy] == ["entropy-bound"]


def test_every_decoding_flag_takes_its_help_from_the_config_field():
    actions = _generate_actions()
    for f in fields(DecodeConfig):
        assert len(f.metadata.get("help", "")) > 10, f"{f.name} has no help"
        if f.name in actions and f.name != "strategy":
            assert actions[f.name].help.startswith(f.metadata["help"].replace("%", "%%")), f.name
    assert "read by confidence, topk" in actions["spacing"].help
    assert "entropy-bound: at least this many" in actions["steps"].help
    assert actions["strategy"].help.startswith("confidence [--threshold --confidence --steps --spacing]: every")
    assert actions["strategy"].default is None and actions["cfg_scale"].default == 1.0


def test_a_strategy_declaring_what_the_config_lacks_is_refused():
    class Typo(Leftmost):
        name = "typo"
        reads = ("kk",)

    with pytest.raises(ValueError, match="kk"):
        register(Typo)
    with pytest.raises(ValueError, match="name of its own"):
        register(type("Again", (Leftmost,), {"name": "topk"}))
    assert "typo" not in strategy_names()


def test_a_strategy_registered_in_one_place_decodes_and_shows_in_the_cli_and_both_pages(leftmost, tmp_path):
    assert "leftmost" in decoding.STRATEGIES and "leftmost" in strategy_names(MASKED)
    actions = _generate_actions()
    assert "leftmost" in actions["strategy"].choices
    assert "leftmost [--k]: the k leftmost masked positions" in actions["strategy"].help
    assert "read by topk, leftmost" in actions["k"].help

    trace = generate(load_model("tiny", device="cpu"), PROMPT, 6, strategy="leftmost", k=2)
    start = trace.n_prompt_tokens
    assert [f.committed for f in trace.frames[1:]] == [[start + i, start + i + 1] for i in (0, 2, 4)]
    out = tmp_path / "t.json"
    assert main(["generate", "--checkpoint", "tiny", "--prompt", PROMPT, "--length", "4", "--strategy", "leftmost",
                 "--k", "1", "--json", str(out)]) == 0
    cli = Trace.from_json(out)
    assert cli.strategy == "leftmost" and cli.forward_passes == 4 and cli.settings["block_size"] == 32

    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/denoise.py").run()
    at.sidebar.selectbox(key="pick_diffusion").set_value("tiny").run()
    strategy = at.selectbox(key="denoise_strategy")
    assert strategy.options[-1] == "leftmost first" and "**leftmost first**" in strategy.help
    strategy.set_value("leftmost").run()
    keys = {w.key for w in [*at.slider, *at.number_input, *at.selectbox]}
    assert "denoise_k" in keys and "denoise_threshold" not in keys and "denoise_measure" not in keys, keys
    at.slider(key="denoise_length").set_value(4).run()
    at.number_input(key="denoise_k").set_value(2).run()
    at.button(key="denoise_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    page = at.session_state["denoise_trace"]
    assert page.strategy == "leftmost" and page.forward_passes == 2 and page.settings["k"] == 2

    at.switch_page("pages/compare.py").run()
    assert at.selectbox(key="compare_strategy").options[-1] == "leftmost first"


def test_the_decoders_ask_the_strategy_and_nothing_else(leftmost, monkeypatch):
    """Counting and choosing go through the registered entry: swap its choice and the decoder follows."""
    seen = []

    def choose(self, config, scores, count, generator, positions, beyond_pace=True):
        seen.append(len(positions))
        return [len(positions) - 1]  # the rightmost: right to left

    monkeypatch.setattr(Leftmost, "choose", choose)
    trace = generate(load_model("tiny", device="cpu"), PROMPT, 3, strategy="leftmost")
    start = trace.n_prompt_tokens
    assert [f.committed for f in trace.frames[1:]] == [[start + 2], [start + 1], [start]] and seen == [3, 2, 1]


def test_every_module_of_the_package_is_imported_so_a_new_file_is_all_a_strategy_takes():
    import sys

    package = Path(decoding.__file__).parent / "strategies"
    modules = {f"textdiff_core.strategies.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    assert modules <= set(sys.modules), modules - set(sys.modules)
    homes = {type(s).__module__ for s in strategies()}
    assert homes == modules - {"textdiff_core.strategies.base", "textdiff_core.strategies.schedules"}, homes
