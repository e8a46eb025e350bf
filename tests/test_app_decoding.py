"""The Denoise and Compare pages (AppTest, tiny models), and the generated-text metrics they show."""

import json
import math
from pathlib import Path

import pytest
import torch
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from tests.charts import chart_height, chart_layers, chart_rows, chart_tables, empty_layers
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import distinct_n, generative_perplexity
from textdiff_core.likelihood import ar_scores
from textdiff_core.models import load_model, save_model
from textdiff_core.tokens import tokenize_texts
from textdiff_core.trace import Trace

APP = str(Path(__file__).resolve().parents[1] / "app.py")
CUSTOM = "other: a directory or hub id…"  # pages._shared.CUSTOM
METRICS = ["Forward passes", "Wall time", "Tokens / s", "Perplexity", "Distinct-1", "Distinct-2"]


def _on_page(page: str, diffusion: str = "tiny") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page).run()
    at.sidebar.selectbox(key="pick_diffusion").set_value(diffusion).run()
    at.sidebar.selectbox(key="pick_ar").set_value("tiny-ar").run()
    at.sidebar.selectbox(key="pick_reference").set_value("tiny-ar").run()
    assert not at.exception
    return at


def _masks(at: AppTest, which: int = 0) -> int:
    """Grey mask blocks in the which-th frame shown."""
    return at.get("html")[which].proto.body.count('title="masked"')


def _ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


@pytest.fixture()
def downloads(monkeypatch):
    """file name -> bytes of every download button's data (deferred ones are generated as a click would)."""
    files = {}
    add, add_deferred = MediaFileManager.add, MediaFileManager.add_deferred

    def record(self, data, mimetype, coordinates, file_name=None, **kwargs):
        files[file_name] = data
        return add(self, data, mimetype, coordinates, file_name, **kwargs)

    def record_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        files[file_name] = data_callable
        return add_deferred(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", record)
    monkeypatch.setattr(MediaFileManager, "add_deferred", record_deferred)
    return files


# ---- Denoise ----


def test_denoise_page_decodes_scrubs_and_exports(downloads):
    at = _on_page("pages/denoise.py")
    at.slider(key="denoise_length").set_value(12).run()
    at.button(key="denoise_run").click().run()
    _ok(at)
    trace = at.session_state["denoise_trace"]
    assert trace.model == "tiny" and trace.n_decoded == 12
    assert [m.label for m in at.metric] == ["Forward passes", "Wall time", "Tokens / s", "Tokens per pass"]
    assert at.metric[0].value == str(trace.forward_passes)
    last = len(trace.frames) - 1
    assert at.slider(key="denoise_frame").value == last and _masks(at) == 0, "the result is shown first"
    assert ">movie</span>" in at.get("html")[0].proto.body

    at.slider(key="denoise_frame").set_value(2).run()
    _ok(at)
    assert _masks(at) == sum(m and d for m, d in zip(trace.frames[2].masked, trace.decoded, strict=True)) > 0
    assert "Step 2 of" in " ".join(c.value for c in at.caption)
    [chart] = at.get("vega_lite_chart")  # the progress chart: one point per frame, a box with height
    assert chart_rows(chart) == len(trace.frames) and chart_height(chart) >= 100
    assert not empty_layers(chart), chart_layers(chart)  # the curve and the frame shown, each drawn
    [revealed] = [t for t in chart_tables(chart) if len(t.get("% revealed", [])) == len(trace.frames)]
    assert revealed["% revealed"][0] == 0 and revealed["% revealed"][-1] == 100
    x = json.loads(chart.proto.spec)["layer"][0]["encoding"]["x"]
    assert x["axis"]["format"] == "d" and x["axis"]["tickMinStep"] == 1, "whole passes, no half-pass ticks"
    assert x["scale"]["domain"] == [0, trace.forward_passes] and x["scale"]["nice"] is False

    assert [b.proto.label for b in at.download_button] == ["Animated GIF", "HTML player", "Trace (JSON)"]
    gif, page, data = (downloads[n] for n in ("denoise.gif", "denoise.html", "denoise.json"))
    assert gif().startswith(b"GIF8")
    assert page().startswith(b"<!DOCTYPE html>") and b"trace-data" in page()
    assert Trace.from_json(data.decode()) == trace


def test_denoise_play_steps_forward_and_pauses():
    at = _on_page("pages/denoise.py")
    at.slider(key="denoise_length").set_value(6).run()
    at.button(key="denoise_run").click().run()
    last = len(at.session_state["denoise_trace"].frames) - 1
    at.button(key="denoise_play").click().run()  # at the end: playing restarts from the first step
    _ok(at)
    assert at.session_state["denoise_playing"] and at.slider(key="denoise_frame").value == 0
    assert "Pause" in at.button(key="denoise_play").label
    at.run()  # what the fragment's timer does while playing
    assert at.slider(key="denoise_frame").value == 1 and _masks(at) < 6
    at.button(key="denoise_play").click().run()  # pause
    at.run()
    assert not at.session_state["denoise_playing"] and at.slider(key="denoise_frame").value == 1
    assert "Play" in at.button(key="denoise_play").label
    at.button(key="denoise_play").click().run()  # play to the end: it stops there
    for _ in range(last + 2):
        at.run()
    _ok(at)
    assert not at.session_state["denoise_playing"] and at.slider(key="denoise_frame").value == last


def test_denoise_settings_errors_show_an_error_not_a_traceback():
    at = _on_page("pages/denoise.py")
    at.slider(key="denoise_length").set_value(0).run()
    at.button(key="denoise_run").click().run()
    assert not at.exception and "nothing to generate" in at.error[0].value

    at.slider(key="denoise_length").set_value(16).run()
    at.selectbox(key="denoise_strategy").set_value("schedule-random").run()
    at.number_input(key="denoise_steps").set_value(2).run()
    at.number_input(key="denoise_block").set_value(4).run()
    at.button(key="denoise_run").click().run()
    assert not at.exception and "2 steps cannot decode 4 blocks" in at.error[0].value
    assert "denoise_trace" not in at.session_state


def test_denoise_infills_with_a_class_label(tmp_path):
    lm = load_model("tiny", device="cpu")
    meta = {"objective": "diffusion", "classes": ["negative", "positive"], "class_prompt": "{label} review:"}
    save_model(lm.model, lm.tokenizer, tmp_path / "conditional", meta)
    at = _on_page("pages/denoise.py", diffusion=CUSTOM)
    at.sidebar.text_input(key="custom_diffusion").set_value(str(tmp_path / "conditional")).run()
    assert at.selectbox(key="denoise_label").options == ["(none)", "negative", "positive"]
    at.selectbox(key="denoise_label").set_value("positive").run()
    at.text_area(key="denoise_prompt").set_value("The [MASK] was <b>great</b>").run()
    at.slider(key="denoise_length").set_value(0).run()
    at.button(key="denoise_run").click().run()
    _ok(at)
    trace = at.session_state["denoise_trace"]
    assert trace.label == "positive" and trace.n_decoded == 1 and trace.forward_passes == 1
    body = at.get("html")[0].proto.body
    assert "positive" in body and "&lt;" in body and "<b>" not in body, "class prompt shown, text escaped"


# ---- Compare ----


def test_compare_page_runs_both_sides_and_scrubs_them_together():
    at = _on_page("pages/compare.py")
    at.slider(key="compare_length").set_value(8).run()
    at.selectbox(key="compare_strategy").set_value("topk").run()  # k = 4: two passes for 8 tokens
    at.button(key="compare_run").click().run()
    _ok(at)
    labels = [m.label for m in at.metric]
    assert labels == METRICS + METRICS + ["Diffusion time / left-to-right time"], "both sides' metrics, the ratio"
    values = [m.value for m in at.metric]
    assert values[0] == "2" and values[6] == "8", "diffusion: 2 passes; left-to-right: 8"
    assert all(values[i] != "–" for i in (3, 9)), "perplexities"
    [ppl] = at.session_state["compare"]["sides"]["ar"]["ppl"]
    assert math.isfinite(ppl) and ppl > 1
    sides = at.session_state["compare"]["sides"]
    ratio = sides["diffusion"]["trace"].elapsed_s / sides["ar"]["trace"].elapsed_s
    assert values[12] == f"{ratio:.2f}×"
    assert [_masks(at, 0), _masks(at, 1)] == [0, 0], "the sliders start at the end"

    at.slider(key="compare_passes").set_value(1).run()
    _ok(at)
    assert [_masks(at, 0), _masks(at, 1)] == [4, 7], "after one pass: 4 tokens against 1"
    at.radio(key="compare_by").set_value("time").run()
    _ok(at)
    assert at.slider(key="compare_seconds").value > 0 and [_masks(at, 0), _masks(at, 1)] == [0, 0]
    at.slider(key="compare_seconds").set_value(0.0).run()
    assert _masks(at, 0) >= 4 and _masks(at, 1) >= 7
    [chart] = at.get("vega_lite_chart")  # both decoders' progress, one row per frame of each
    frames = {name: len(side["trace"].frames) for name, side in at.session_state["compare"]["sides"].items()}
    table = max(chart_tables(chart), key=lambda t: len(next(iter(t.values()))))
    assert sorted(table["decoder"].count(d) for d in set(table["decoder"])) == sorted(frames.values())
    assert chart_height(chart) >= 100
    assert not empty_layers(chart), chart_layers(chart)  # both curves and the rule at the position shown


def test_compare_page_shows_a_sides_error_and_the_other_side():
    at = _on_page("pages/compare.py")
    at.slider(key="compare_length").set_value(4).run()
    at.checkbox(key="compare_score").uncheck().run()
    at.text_area(key="compare_prompt").set_value("The [MASK] was").run()
    at.button(key="compare_run").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "needs a diffusion model" in at.error[0].value
    assert [m.label for m in at.metric] == METRICS and at.metric[3].value == "–", "perplexity off"


# ---- distinct-n and generative perplexity ----


def test_distinct_n_counts_repeats():
    assert distinct_n("the the the the", 1) == 0.25
    assert distinct_n("the the the the", 2) == pytest.approx(1 / 3)
    assert distinct_n("The cat sat. The cat sat.", 1) == 0.5, "lower-cased words and punctuation"
    assert distinct_n("a fine, original film", 2) == 1.0
    assert distinct_n([5, 5, 7, 5], 1) == 0.5 and distinct_n([5, 7, 5, 7], 2) == pytest.approx(2 / 3)
    assert distinct_n("one", 2) == 0.0 and distinct_n([], 1) == 0.0
    repeated = " ".join(["great movie"] * 20)
    assert distinct_n(repeated, 1) < 0.1 and distinct_n(repeated, 2) < 0.1
    with pytest.raises(ValueError):
        distinct_n("text", 0)


@pytest.fixture(scope="module")
def reference():
    return load_model("tiny-ar", device="cpu")


def test_generative_perplexity_is_exp_mean_nll(reference):
    text, prompt = "a tender and funny film .", "The movie was"
    score = ar_scores(reference, text, [prompt])[0]
    assert generative_perplexity(reference, text, prompt) == pytest.approx(math.exp(score.nll / score.n_tokens))

    # by hand, from the model itself: [CLS] prompt text, each text token predicted from everything before it
    tok = reference.tokenizer
    prompt_ids, text_ids = (tokenize_texts(tok, [t])[0] for t in (prompt, text))
    ids = torch.tensor([[tok.cls_token_id, *prompt_ids, *text_ids]])
    with torch.no_grad():
        logp = reference.model(input_ids=ids).logits.float().log_softmax(-1)[0]
    start = 1 + len(prompt_ids)
    nll = -sum(logp[start + i - 1, t].item() for i, t in enumerate(text_ids))
    assert generative_perplexity(reference, text, prompt) == pytest.approx(math.exp(nll / len(text_ids)), rel=1e-4)
    assert generative_perplexity(reference, text) != pytest.approx(math.exp(nll / len(text_ids)), rel=1e-4), \
        "the prompt conditions the score"


def test_generative_perplexity_refuses_empty_text_and_masked_models(reference):
    with pytest.raises(TextdiffError):
        generative_perplexity(reference, "   ")
    with pytest.raises(TextdiffError):
        generative_perplexity(load_model("tiny", device="cpu"), "some text")


def test_bench_reports_distinct_and_perplexity_from_the_library(reference):
    from textdiff_core.experiments.decoding_bench import perplexity

    trace = Trace(strategy="ar", settings={}, model="tiny-ar", prompt="The movie was", label=None, seed=0,
                  n_class_tokens=0, n_prompt_tokens=3, decoded=[], mask_id=-1, mask_text="", token_style="raw",
                  final_text="", generated_text="a tender film")
    ppl, n = perplexity(reference, trace, "The movie was")
    assert ppl == generative_perplexity(reference, "a tender film", "The movie was") and n == 3
    trace.generated_text = ""
    assert math.isnan(perplexity(reference, trace, "The movie was")[0])


def test_denoise_and_compare_start_from_the_clis_defaults():
    """No change to the widgets: the settings of decoding.default_config, which the CLI uses with no flags
    (confidence within a quarter of the new tokens in passes, sampled, blocks of 32 with the dual cache)."""
    from textdiff_core.decoding import default_config

    default = default_config("masked", length=12)
    at = _on_page("pages/denoise.py")
    at.slider(key="denoise_length").set_value(12).run()
    assert any("threshold alone commits only" in c.value for c in at.caption), "the page says why a budget"
    at.button(key="denoise_run").click().run()
    _ok(at)
    trace = at.session_state["denoise_trace"]
    for name in ("strategy", "steps", "temperature", "top_p", "block_size", "cache", "spacing", "threshold"):
        assert trace.settings[name] == getattr(default, name), name
    assert trace.forward_passes == 3 and trace.n_decoded == 12
    at.number_input(key="denoise_budget").set_value(0).run()  # 0: no limit, the threshold alone
    at.button(key="denoise_run").click().run()
    assert at.session_state["denoise_trace"].forward_passes == 12, "the untrained model commits one per pass"

    at = _on_page("pages/compare.py")
    at.slider(key="compare_length").set_value(12).run()
    at.checkbox(key="compare_score").uncheck().run()
    at.button(key="compare_run").click().run()
    _ok(at)
    sides = at.session_state["compare"]["sides"]
    diffusion, ar = sides["diffusion"]["trace"], sides["ar"]["trace"]
    for name in ("strategy", "steps", "temperature", "top_p", "block_size", "cache", "spacing", "threshold"):
        assert diffusion.settings[name] == getattr(default, name), name
    assert diffusion.forward_passes == 3 and ar.forward_passes == 12
    assert ar.settings["temperature"] == default.temperature and ar.settings["top_p"] == default.top_p


def test_both_pages_decode_several_samples_in_one_batch():
    at = _on_page("pages/denoise.py")
    at.slider(key="denoise_length").set_value(6).run()
    at.number_input(key="denoise_samples").set_value(3).run()
    at.button(key="denoise_run").click().run()
    _ok(at)
    traces = at.session_state["denoise_sample_traces"]
    assert [t.seed for t in traces] == [0, 1, 2] and at.session_state["denoise_trace"] is traces[0]
    assert sum("**seed " in m.value for m in at.markdown) == 3, "every sample's text is listed"

    at = _on_page("pages/compare.py")
    at.slider(key="compare_length").set_value(6).run()
    at.number_input(key="compare_samples").set_value(3).run()
    at.checkbox(key="compare_score").uncheck().run()
    at.button(key="compare_run").click().run()
    _ok(at)
    sides = at.session_state["compare"]["sides"]
    assert all(len(side["traces"]) == 3 for side in sides.values())
    passes = [t.forward_passes for t in sides["diffusion"]["traces"]]
    assert at.metric[0].value.startswith(f"{sum(passes) / 3:.1f}") and " ± " in at.metric[1].value


def test_denoise_and_compare_name_each_strategy_alike():
    from textdiff_core.decoding import DIFFUSION_STRATEGIES, STRATEGY_NAMES

    names = [STRATEGY_NAMES[s][0] for s in DIFFUSION_STRATEGIES]
    assert len(set(names)) == len(names)
    seen = {}
    for page, key in (("pages/denoise.py", "denoise_strategy"), ("pages/compare.py", "compare_strategy")):
        at = AppTest.from_file(APP, default_timeout=120).run()
        at.switch_page(page).run()
        seen[page] = at.selectbox(key=key).options
    assert seen["pages/denoise.py"] == seen["pages/compare.py"] == names, seen
