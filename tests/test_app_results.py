"""Results belong to their inputs: a failed run clears the old result, and a result names the inputs it was computed
from once the widgets have moved on (AppTest, tiny models)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _on_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page(page).run()
    at.sidebar.selectbox(key="pick_diffusion").set_value("tiny").run()
    at.sidebar.selectbox(key="pick_ar").set_value("tiny-ar").run()
    at.sidebar.selectbox(key="pick_reference").set_value("tiny-ar").run()
    assert not at.exception
    return at


def _notes(at: AppTest) -> str:
    return " ".join(i.value for i in at.info)


def test_classify_a_refused_text_never_shows_the_previous_decision():
    at = _on_page("pages/classify.py")
    at.checkbox[1].uncheck().run()  # the diffusion model alone: quicker
    at.text_area[0].set_value("A tender, funny film.").run()
    at.button[0].click().run()
    assert not at.exception and not at.error and [m.label for m in at.metric] == ["Decision"]
    at.text_area[0].set_value("A dull film.").run()
    assert "computed from earlier inputs: text 'A tender, funny film.'" in _notes(at), "an old result says whose"
    at.text_area[0].set_value("word " * 5000).run()
    at.button[0].click().run()
    assert "limit here is" in at.error[0].value
    assert not at.metric and not at.get("html"), "no decision under the error"


def test_denoise_a_failed_run_clears_the_old_trace_and_a_kept_one_names_its_inputs():
    at = _on_page("pages/denoise.py")
    at.slider(key="denoise_length").set_value(8).run()
    at.button(key="denoise_run").click().run()
    assert not at.exception and not at.error and at.metric
    assert "earlier inputs" not in _notes(at)
    at.text_area(key="denoise_prompt").set_value("A new prompt").run()
    assert "computed from earlier inputs: prompt 'The movie was'" in _notes(at)
    at.slider(key="denoise_length").set_value(0).run()  # nothing to generate: an error
    at.button(key="denoise_run").click().run()
    assert "nothing to generate" in at.error[0].value
    assert not at.metric and not at.get("html") and "denoise_trace" not in at.session_state


def test_compare_a_failed_run_clears_the_old_result_and_a_kept_one_names_its_inputs():
    at = _on_page("pages/compare.py")
    at.slider(key="compare_length").set_value(6).run()
    at.checkbox(key="compare_score").uncheck().run()
    at.button(key="compare_run").click().run()
    assert not at.exception and not at.error and len(at.get("html")) == 2
    at.slider(key="compare_length").set_value(7).run()
    assert "computed from earlier inputs: new tokens 6" in _notes(at)
    at.text_area(key="compare_prompt").set_value("x " * 600).run()  # longer than the tiny models' window
    at.button(key="compare_run").click().run()
    assert len(at.error) == 2 and all("positions" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("html") and not at.metric, "no frame or figure of the earlier run"
    assert "earlier inputs" not in _notes(at)
