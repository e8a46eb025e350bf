"""Headless tests of the Streamlit pages (AppTest), with tiny models."""

import json
import math
import re
import shlex
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.charts import chart_height, chart_layers, chart_rows, chart_tables, empty_layers

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_home_page_renders_and_links_to_models():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "textdiff"
    assert "masked-diffusion" in at.markdown[0].value.lower()
    links = {link.proto.page: link.proto.label for link in at.get("page_link")}
    assert set(links) == {"denoise", "compare", "classify", "training", "crossover", "models"}, links
    assert links["models"].startswith("Models:")
    # the live miniature (before its legend): the first frame is the class prompt and "The movie was", then 16
    # masked slots
    miniature = at.get("html")
    assert miniature, "no miniature"
    spans = re.findall(r"<span( title=\"masked\")?[^>]*>([^<]*)</span>", miniature[0].proto.body.split("</div>")[0])
    words = [text for masked, text in spans if not masked]
    assert words == ["positive", "review", ":", "the", "movie", "was"], words
    assert [bool(masked) for masked, _ in spans] == [False] * 6 + [True] * 16
    steps = re.search(r"step 0/(\d+)", at.caption[0].value)  # the default settings: 4 tokens per pass, as pitched
    assert steps and int(steps.group(1)) == 4 and "class prompt `positive`" in at.caption[0].value


def test_models_page_lists_offline_models_and_runs_fill_mask():
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/models.py").run()
    assert not at.exception
    names = at.table[0].value["name"].tolist()
    assert {"minilm", "minilm-ar", "smollm2"} <= set(names)
    at.text_input[0].set_value("tiny").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table.columns) == ["positive review:", "negative review:"] and len(table) == 1


def test_models_page_reads_as_a_table_relative_paths_and_no_raw_records():
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/models.py").run()
    assert not at.exception
    table = at.table[0].value
    assert list(table.columns) == ["name", "kind", "family", "size", "classes", "epochs", "what"]
    rows = {row["name"]: row for row in table.to_dict("records")}
    assert {"checkpoints/imdb-diffusion", "checkpoints/imdb-ar", "checkpoints/smollm2-zero-shot"} <= set(rows), \
        "shipped checkpoints by their path in the repository"
    assert rows["checkpoints/imdb-diffusion"]["kind"] == "diffusion"
    assert rows["checkpoints/imdb-ar"]["kind"] == "left-to-right"
    assert rows["checkpoints/smollm2-zero-shot"]["kind"] == "zero-shot classifier", "never '?'"
    assert rows["checkpoints/imdb-diffusion"]["classes"] == "negative, positive"
    assert float(rows["checkpoints/imdb-diffusion"]["epochs"]) > 1 and rows["minilm"]["size"] == "22.7M"
    assert rows["checkpoints/imdb-diffusion"]["size"] == "22.7M", "counted from the weights' headers"
    for cell in table.astype(str).to_numpy().ravel():
        assert "{" not in cell and "/" not in cell.partition("checkpoints/")[0], f"a raw record or path: {cell}"


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
    at.selectbox[0].set_value("(type your own)").run()
    at.button[0].click().run()
    assert not at.exception and "Paste some text" in at.error[0].value


def test_classify_page_opens_on_an_example_and_names_each_readings_score():
    """Defaults and one press: a decision, not "Paste some text first."; a Monte Carlo reading shows its standard
    errors, exact readings show none; the infill reading's score is log P(c | text); the headline says whether the
    probability is calibrated; one forward pass is "1 forward pass"."""
    at = _on_page("pages/classify.py")
    at.sidebar.selectbox(key="pick_diffusion").set_value("tiny").run()
    at.sidebar.selectbox(key="pick_ar").set_value("tiny-ar").run()
    assert at.selectbox[0].value.startswith("IMDB test review") and at.text_area[0].value.strip()
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert [m.label for m in at.metric] == ["Decision", "Decision"]
    elbo, ar = (t.value for t in at.dataframe)
    assert list(elbo.columns) == ["class", "log P(text | c)", "± s.e."] and (elbo["± s.e."] > 0).all()
    assert list(ar.columns) == ["class", "log P(text | c)"], "exact: no s.e. column"
    for metric in at.metric:  # the untrained tiny models often tie, which the page says instead
        assert metric.value == "tie" or metric.proto.delta.endswith(", uncalibrated"), metric.proto
    assert not [c for c in at.caption if "Calibrated on validation" in c.value]

    at.selectbox[1].set_value("infill").run()
    at.selectbox[2].set_value("infill").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    for table in at.dataframe:
        frame = table.value
        column = "log P(c | text), before calibration"  # beside the calibrated bars: said which it is
        assert list(frame.columns) == ["class", column], "what the infill reading reads, and exact"
        assert abs(sum(math.exp(v) for v in frame[column]) - 1) < 0.02, "a distribution over classes"
    captions = [c.value for c in at.caption if "method `infill`" in c.value]
    assert len(captions) == 2 and all("· 1 forward pass ·" in c for c in captions), captions


@pytest.mark.slow
def test_classify_page_says_the_shipped_models_probability_is_calibrated():
    at = _on_page("pages/classify.py", timeout=300)
    at.selectbox[1].set_value("infill").run()  # one pass each: the cheapest readings of the shipped pair
    at.selectbox[2].set_value("infill").run()
    at.button[0].click().run()
    assert not at.exception and not at.error
    for metric in at.metric:
        assert metric.proto.delta.endswith(", calibrated"), metric.proto
    notes = [c.value for c in at.caption
             if "Calibrated on validation" in c.value and "scores alone also say" in c.value]
    reversals = [w.value for w in at.warning if w.value.startswith("Calibration reverses the verdict")]
    assert len(notes) + len(reversals) == 2, (notes, reversals)


def test_training_dashboard_plots_a_run_and_builds_its_command(tmp_path):
    from train_cli import main

    run = tmp_path / "run"
    assert main(["train", "--model", "tiny", "--data", "rotten_tomatoes", "--conditioning", "class", "--steps", "4",
                 "--batch-size", "4", "--max-length", "32", "--log-every", "1", "--eval-every", "2", "--eval-size",
                 "6", "--eval-samples", "2", "--save-every", "2", "--no-progress", "--out", str(run)]) == 0
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
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 4, "loss, per-level loss, validation accuracy, confusion"
    assert all(chart_rows(c) > 0 for c in charts), [chart_rows(c) for c in charts]
    # each layer draws its own marks (its data after its own filter), not only the chart as a whole
    assert not any(empty_layers(c) for c in charts), [chart_layers(c) for c in charts]
    [confusion] = [t for c in charts for t in chart_tables(c) if "predicted" in t]
    assert confusion["count"] == [1, 1, 1, 1], "the confusion matrix: one cell per (true, predicted) pair"
    command = at.code[0].value
    assert "train_cli.py train" in command and "--conditioning class" in command
    assert "--loss-weighting mean" in command and "--lr-schedule constant_with_warmup" in command, "the run's own"
    out = Path(shlex.split(command.replace("\\\n", " "))[-1]).expanduser()
    assert out.parent == Path.home() / "textdiff-runs" and not out.exists(), "a new run directory, never the run"
    assert "--resume" not in command
    at.number_input[0].set_value(10).run()  # more steps than the run has: continue the run itself
    argv = shlex.split(at.code[0].value.replace("\\\n", " "))
    assert argv[-3:] == ["--out", str(run), "--resume"]


def test_the_reproduce_command_of_a_shipped_checkpoint_writes_to_a_new_run_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "textdiff-runs" / "imdb-diffusion").mkdir(parents=True)  # taken: the command picks another name
    at = _on_page("pages/training.py")
    assert at.selectbox(key="run_choice").value == "checkpoints/imdb-diffusion"
    for steps in (None, 100_000):  # as recorded, and extended: neither may write into checkpoints/
        if steps:
            at.number_input[0].set_value(steps).run()
        argv = shlex.split(at.code[0].value.replace("\\\n", " "))
        out = Path(argv[argv.index("--out") + 1]).expanduser()
        assert out == tmp_path / "textdiff-runs" / "imdb-diffusion-2", argv
        assert "--resume" not in argv


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
        steps[name] = (at.metric[0].label, at.metric[0].value)
    assert steps == {"more": ("Step (of 2)", "2"), "shipped": ("Step (of 6)", "6")}, steps


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
    assert at.selectbox(key="run_choice").value == "checkpoints/imdb-diffusion", "relative to the repository"
    assert at.selectbox(key="run_choice").options[:2] == ["checkpoints/imdb-diffusion", "checkpoints/imdb-ar"]
    assert not at.info, "no 'Choose or type a run directory'"
    import pyarrow as pa

    chart = at.get("vega_lite_chart")[0].proto
    series = set(pa.ipc.open_stream(chart.datasets[0].data.data).read_all().column("series").to_pylist())
    assert series == {f"{run}: {kind}" for run in ("imdb-diffusion", "imdb-ar")
                      for kind in ("loss", "loss (smoothed)")}, "both runs alike, raw and smoothed, on one chart"
    spec = json.loads(chart.spec)
    steps = pa.ipc.open_stream(chart.datasets[0].data.data).read_all().column("step").to_pylist()
    scale = spec["encoding"]["x"]["scale"]
    assert scale["domain"] == [min(steps), max(steps)] and scale["nice"] is False, "the axis ends where the steps do"
    [by_epoch] = [c for c in at.get("vega_lite_chart") if "epoch" in json.dumps(json.loads(c.proto.spec))]
    layers = json.loads(by_epoch.proto.spec)["layer"]
    assert layers[0]["encoding"]["color"]["scale"]["scheme"] == "dark2", "the pair in two hues"
    assert layers[0]["encoding"]["x"]["axis"]["format"] == "~g", "epoch 8, not 8.0"
    drawn = [chart_layers(c) for c in at.get("vega_lite_chart")]
    assert not any(empty_layers(c) for c in at.get("vega_lite_chart")), drawn
    assert [name for name, _ in chart_layers(by_epoch)] == ["line: accuracy", "line: perplexity", "rule: epoch"], drawn

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
    evidence = [c for c in at.get("vega_lite_chart") if "n-gram" in chart_tables(c)[0]]
    assert len(evidence) == 1
    spec = json.loads(evidence[0].proto.spec)
    rows = chart_rows(evidence[0])
    assert rows >= 2 and chart_height(evidence[0]) >= 20 * rows, "a row of pixels per bar, not a discrete height"
    assert spec["encoding"]["y"]["axis"]["labelOverlap"] is False, "every bar's n-gram labelled"
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


def test_paths_inside_the_repository_are_shown_relative_to_it(tmp_path):
    from pages import _shared
    from textdiff_core.errors import TextdiffError

    root = _shared.ROOT
    assert _shared.shown(root / "checkpoints" / "imdb-ar") == "checkpoints/imdb-ar"
    assert _shared.shown(str(tmp_path)) == str(tmp_path), "outside the repository: as is"
    assert _shared.shown("tiny") == "tiny"
    error = TextdiffError(f"{root}/checkpoints/imdb-ar/config.json is not valid JSON")
    assert _shared.said(error) == "checkpoints/imdb-ar/config.json is not valid JSON"


def test_classify_page_starts_on_the_readings_the_shipped_calibrations_chose_and_says_so():
    """The shipped pair's calibration.json chose the infill reading on validation for both: the page starts there
    and says why in a caption; another choice is the user's, and the caption goes."""
    at = _on_page("pages/classify.py")
    assert not at.exception
    assert at.selectbox[1].value == "infill" and at.selectbox[2].value == "infill"
    said = [c.value for c in at.caption if c.value.startswith("Default readings")]
    assert len(said) == 1 and "diffusion `infill`" in said[0] and "left-to-right `infill`" in said[0], said
    assert "chose on validation" in said[0]
    at.selectbox[1].set_value("elbo").run()
    said = [c.value for c in at.caption if c.value.startswith("Default readings")]
    assert len(said) == 1 and "diffusion" not in said[0] and "left-to-right `infill`" in said[0], said
