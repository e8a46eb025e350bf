"""Headless tests of the Streamlit pages (AppTest), with tiny models."""

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_home_page_renders_and_links_to_models():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "textdiff"
    assert "masked-diffusion" in at.markdown[0].value.lower()
    links = {link.proto.page: link.proto.label for link in at.get("page_link")}
    assert set(links) == {"denoise", "compare", "classify", "training", "models"}, links
    assert links["models"].startswith("Models:")
    # the live miniature (before its legend): the first frame is the class prompt and "The movie was", then 16
    # masked slots
    miniature = at.get("html")
    assert miniature, "no miniature"
    spans = re.findall(r"<span( title=\"masked\")?[^>]*>([^<]*)</span>", miniature[0].proto.body.split("</div>")[0])
    words = [text for masked, text in spans if not masked]
    assert words == ["positive", "review", ":", "the", "movie", "was"], words
    assert [bool(masked) for masked, _ in spans] == [False] * 6 + [True] * 16
    assert "step 0/16" in at.caption[0].value and "class prompt `positive`" in at.caption[0].value


def test_models_page_lists_offline_models_and_runs_fill_mask():
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/models.py").run()
    assert not at.exception
    names = at.dataframe[0].value["name"].tolist()
    assert {"minilm", "minilm-ar", "smollm2"} <= set(names)
    at.text_input[0].set_value("tiny").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    table = at.dataframe[1].value
    assert list(table.columns) == ["positive review:", "negative review:"] and len(table) == 1


def test_models_page_shows_a_one_line_error_for_a_bad_model():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/models.py").run()
    at.text_input[0].set_value("/no/such/model/dir").run()
    at.button[0].click().run()
    assert not at.exception
    assert "not found" in at.error[0].value


def _on_page(page: str, timeout: int = 120) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    at.switch_page(page).run()
    return at


def test_classify_page_scores_with_tiny_models_and_draws_heatmaps():
    at = _on_page("pages/classify.py")
    assert not at.exception
    at.sidebar.selectbox(key="pick_diffusion").set_value("tiny").run()
    at.sidebar.selectbox(key="pick_ar").set_value("tiny-ar").run()
    at.text_area[0].set_value("A tender, funny and beautifully acted film.").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert {m.label for m in at.metric} == {"Decision"} and len(at.metric) == 2
    assert len(at.get("html")) >= 2, "a heatmap per classifier"
    assert "tender" in at.get("html")[0].proto.body


def test_classify_page_refuses_empty_text():
    at = _on_page("pages/classify.py")
    at.sidebar.selectbox(key="pick_diffusion").set_value("tiny").run()
    at.button[0].click().run()
    assert not at.exception and "Paste some text" in at.error[0].value


def test_training_dashboard_plots_a_run_and_builds_its_command(tmp_path):
    from train_cli import main

    run = tmp_path / "run"
    assert main(["train", "--model", "tiny", "--data", "rotten_tomatoes", "--conditioning", "class", "--steps", "4",
                 "--batch-size", "4", "--max-length", "32", "--log-every", "1", "--eval-every", "2", "--eval-size",
                 "6", "--eval-samples", "2", "--no-progress", "--out", str(run)]) == 0
    report = {"method": "elbo", "data": "rotten_tomatoes", "split": "test", "accuracy": 0.5, "n": 4,
              "accuracy_ci95": [0.15, 0.85], "ece": 0.1, "classes": ["negative", "positive"],
              "confusion": [[1, 1], [1, 1]], "reliability": [{"bin": "0.5-0.6", "confidence": 0.55,
                                                              "accuracy": 0.5, "count": 4}]}
    (run / "eval-test.json").write_text(__import__("json").dumps(report))
    at = _on_page("pages/training.py")
    at.selectbox(key="run_choice").set_value("other…").run()
    at.text_input(key="run_path").set_value(str(run)).run()
    assert not at.exception and not at.error
    assert at.metric[0].value.startswith("4")
    assert len(at.get("vega_lite_chart")) >= 4, "loss, per-level loss, validation accuracy, confusion"
    command = at.code[0].value
    assert "train_cli.py train" in command and "--conditioning class" in command and str(run) in command
    assert "--loss-weighting mean" in command and "--lr-schedule constant_with_warmup" in command, "the run's own"


def test_training_dashboard_counts_an_exported_continuation_over_its_whole_lineage(tmp_path):
    from train_cli import main

    common = ["--data", "rotten_tomatoes", "--batch-size", "4", "--max-length", "32", "--log-every", "1",
              "--no-progress"]
    assert main(["train", "--model", "tiny", *common, "--steps", "4", "--out", str(tmp_path / "first")]) == 0
    assert main(["train", "--model", str(tmp_path / "first"), *common, "--steps", "2", "--out",
                 str(tmp_path / "more")]) == 0
    assert main(["export", str(tmp_path / "more"), str(tmp_path / "shipped")]) == 0
    at = _on_page("pages/training.py")
    at.selectbox(key="run_choice").set_value("other…").run()
    steps = {}
    for name in ("more", "shipped"):
        at.text_input(key="run_path").set_value(str(tmp_path / name)).run()
        assert not at.exception and not at.error
        steps[name] = at.metric[0].value
    assert steps == {"more": "2 / 2", "shipped": "6 / 6"}, steps


def test_the_model_picker_offers_finished_runs_of_the_right_kind(tmp_path, monkeypatch):
    import json

    from pages import _shared

    for name, objective in (("d1", "diffusion"), ("a1", "ar")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "textdiff.json").write_text(json.dumps({"objective": objective}))
    (tmp_path / "unfinished").mkdir()  # no textdiff.json: still training, never offered
    monkeypatch.setattr(_shared, "RUNS", tmp_path)
    diffusion, ar = _shared.options("diffusion"), _shared.options("ar")
    assert str(tmp_path / "d1") in diffusion and str(tmp_path / "a1") not in diffusion
    assert str(tmp_path / "a1") in ar and str(tmp_path / "d1") not in ar
    assert not any("unfinished" in o for o in diffusion + ar)
    assert diffusion[-1] == ar[-1] == _shared.CUSTOM


def test_defaults_are_the_shipped_models_judged_by_an_independent_reference():
    from pages import _shared

    assert _shared.options("diffusion")[0] == "checkpoints/imdb-diffusion"
    assert _shared.options("ar")[0] == "checkpoints/imdb-ar"
    reference = _shared.options("reference")
    assert reference[0] == "smollm2", "the twin must not judge its own text against the diffusion model's"
    assert "checkpoints/imdb-ar" in reference and len(reference) == len(set(reference))


def test_shipped_names_resolve_whatever_the_working_directory(tmp_path, monkeypatch):
    from pages import _shared

    monkeypatch.chdir(tmp_path)  # the server started from elsewhere: relative names must not be taken as hub ids
    assert _shared.resolve("checkpoints/imdb-diffusion") == str(_shared.ROOT / "checkpoints" / "imdb-diffusion")
    assert _shared.resolve("minilm") == "minilm" and _shared.resolve("gpt2") == "gpt2"


def test_training_page_opens_on_the_shipped_pair_on_a_fresh_checkout(tmp_path, monkeypatch):
    """No ~/textdiff-runs yet: the page opens on the shipped diffusion model's curve beside its twin's."""
    import json

    monkeypatch.setenv("HOME", str(tmp_path))
    at = _on_page("pages/training.py")
    assert not at.exception and not at.error
    root = Path(APP).parent / "checkpoints"
    assert at.selectbox(key="run_choice").value == str(root / "imdb-diffusion")
    assert at.selectbox(key="run_choice").options[:2] == [str(root / "imdb-diffusion"), str(root / "imdb-ar")]
    assert not at.info, "no 'Choose or type a run directory'"
    import pyarrow as pa

    chart = at.get("vega_lite_chart")[0].proto
    series = set(pa.ipc.open_stream(chart.datasets[0].data.data).read_all().column("series").to_pylist())
    assert {"imdb-diffusion: loss", "imdb-ar: loss (smoothed)"} <= series, "both curves on one chart"

    runs = tmp_path / "textdiff-runs"  # every run under the runs folder, but no resumable step copies
    for run in (runs / "a", runs / "checkpoints" / "b", runs / "a" / "checkpoints" / "step-2"):
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 5.0}) + "\n")
    at = _on_page("pages/training.py")
    options = at.selectbox(key="run_choice").options
    assert str(runs / "a") in options and str(runs / "checkpoints" / "b") in options
    assert not any("step-2" in o for o in options)


def test_classify_page_reads_by_infilling_with_occlusion_evidence_and_shows_the_tfidf_reference(tmp_path,
                                                                                                  monkeypatch):
    import textdiff_core.baseline as baseline

    real = baseline.load_baseline
    monkeypatch.setenv("TEXTDIFF_CACHE", str(tmp_path))
    monkeypatch.setattr(baseline, "load_baseline", lambda data="imdb", progress=True: real("rotten_tomatoes", False))
    at = _on_page("pages/classify.py")
    at.sidebar.selectbox(key="pick_diffusion").set_value("tiny").run()
    at.sidebar.selectbox(key="pick_ar").set_value("tiny-ar").run()
    at.checkbox[3].check().run()  # the TF-IDF reference
    at.selectbox[1].set_value("infill").run()  # diffusion reading
    at.selectbox[2].set_value("infill").run()  # left-to-right reading
    at.text_area[0].set_value("A tender, funny and beautifully acted film.").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert len(at.metric) == 3
    bodies = [h.proto.body for h in at.get("html")]
    assert len(bodies) == 2 and all("tender" in b for b in bodies), "an occlusion heatmap per infill reading"
    assert any("occlusion" in m.value for m in at.markdown)
    assert any("contribution to the log-odds" in m.value for m in at.markdown), "the TF-IDF n-gram evidence"
    assert [c.value for c in at.caption if "method `infill`" in c.value].__len__() == 2


def test_model_lists_skip_a_zero_shot_directory_which_holds_no_weights(tmp_path):
    import json

    from pages import _shared

    (tmp_path / "zs").mkdir()
    (tmp_path / "zs" / "textdiff.json").write_text(json.dumps({"conditioning": "zero-shot", "base_model": "smollm2"}))
    assert _shared.trained(_shared.CAUSAL, tmp_path, relative=False) == []
    assert _shared.trained(_shared.MASKED, tmp_path, relative=False) == []
    assert not any("zero-shot" in o for role in _shared.ROLES for o in _shared.options(role))


@pytest.mark.slow
def test_classify_page_reads_the_zero_shot_reference_with_its_prompt_and_bias_chosen_on_validation():
    at = _on_page("pages/classify.py", timeout=300)
    boxes = {box.label: box for box in at.checkbox}
    boxes["Diffusion"].uncheck()
    boxes["Left-to-right twin"].uncheck()
    boxes["Zero-shot reference LM"].check()
    at.text_area[0].set_value("A tender, funny and beautifully acted film.").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.main.subheader] == ["Zero-shot"]
    assert any("`checkpoints/smollm2-zero-shot`" in c.value for c in at.caption), "calibrated, not bare smollm2"
