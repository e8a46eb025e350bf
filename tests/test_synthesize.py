"""Synthetic reviews with a judge, on a tiny class-conditional model: every row's verdict and reason, a judge that
keeps nothing or everything, a duplicate and a leaked held-out review dropped, an interrupted run that continues."""

import csv
import json
from pathlib import Path

import pytest

from textdiff_core.errors import TextdiffError
from textdiff_core.experiments.synthesize import SynthConfig, generate_rows, jaccard, synthesize
from textdiff_core.models import load_model, save_model
from train_cli import main

CLASSES = ["negative", "positive"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    lm = load_model("tiny", device="cpu")
    meta = {"objective": "diffusion", "conditioning": "class", "classes": CLASSES, "class_prompt": "{label} review:"}
    return str(save_model(lm.model, lm.tokenizer, tmp_path_factory.mktemp("synth") / "cc", meta))


def _config(checkpoint, tmp_path, **settings) -> SynthConfig:
    return SynthConfig(checkpoint=checkpoint, out=str(tmp_path / "s.csv"), per_class=3, length=12, batch_size=2,
                       **{"judge_check": 8} | settings)


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_judge_that_keeps_everything_or_nothing(checkpoint, tmp_path):
    everything = synthesize(_config(checkpoint, tmp_path, threshold=0.0, duplicate_jaccard=1.0, leak_jaccard=1.0),
                            progress=False, real={})
    rows = _rows(tmp_path / "s.csv")
    assert len(rows) == 6 and sorted(r["label"] for r in rows) == ["negative"] * 3 + ["positive"] * 3
    kept = [r for r in rows if r["kept"] == "true"]
    assert everything.generated == 6 and everything.kept == len(kept)
    assert all(r["judge_label"] == r["label"] for r in kept), "kept only where the judge read the intended class"
    assert everything.judged_other == sum(r["judge_label"] != r["label"] for r in rows)
    record = json.loads((tmp_path / "s.csv.json").read_text())
    assert record["report"]["generated"] == 6 and record["config"]["threshold"] == 0.0

    nothing = synthesize(_config(checkpoint, tmp_path / "b", threshold=1.0), progress=False, real={})
    assert nothing.kept == 0 and nothing.judged_other == 6
    assert all(r["kept"] == "false" and r["reason"].startswith("judge:") for r in _rows(tmp_path / "b" / "s.csv"))


def test_a_duplicate_and_a_leaked_review_are_dropped_with_their_reason(tmp_path):
    from textdiff_core.experiments.synthesize import filter_rows

    def row(text):
        return {"text": text, "label": "positive", "judge_label": "positive", "judge_prob": 1.0}

    rows = [row("a warm and clever film with a fine cast"), row("a warm and clever film with a fine cast"),
            row("the worst script i have seen in years"), row("what a dull and loud movie this was"),
            row("nothing like anything anyone has written before")]
    real = {"train": ["the worst script i have seen in years, avoid it"], "validation": [],
            "test": ["honestly what a dull and loud movie this was to sit through"]}
    config = SynthConfig(checkpoint="unused", out=str(tmp_path / "s.csv"), threshold=0.9)
    report = filter_rows(rows, config, real)
    assert [r["kept"] for r in rows] == ["true", "false", "false", "false", "true"]
    assert "kept synthetic row" in rows[1]["reason"] and "real training review" in rows[2]["reason"]
    assert "validation or test" in rows[3]["reason"]
    assert (report.kept, report.duplicates, report.leaks, report.judged_other) == (2, 2, 1, 0)
    rows[4]["judge_prob"] = 0.5  # under the threshold: the judge drops it first
    assert filter_rows(rows, config, real).judged_other == 1 and rows[4]["reason"].startswith("judge:")


def test_jaccard_of_word_trigrams():
    a = ["the cat sat on the mat", "nothing alike here at all"]
    b = ["the cat sat on the mat", "the cat sat on a hat"]
    similarity = jaccard(a, b, 3)
    assert similarity[0, 0] == pytest.approx(1.0) and similarity[1, 0] == 0.0
    assert similarity[0, 1] == pytest.approx(2 / 6)  # {the cat sat, cat sat on} of 4 + 4 - 2 trigrams


def test_an_interrupted_run_continues_with_the_seeds_it_lacks(checkpoint, tmp_path, monkeypatch):
    import textdiff_core.experiments.synthesize as synthesize_module

    config = _config(checkpoint, tmp_path)
    full = generate_rows(config, progress=False)
    path = tmp_path / "s.csv"
    with path.open() as f:
        lines = f.readlines()
    path.write_text("".join(lines[:3]))  # header and two rows: as if killed after the first batch
    calls = []
    real = synthesize_module.generate_samples
    monkeypatch.setattr(synthesize_module, "generate_samples", lambda *a, **k: calls.append(a[-1]) or real(*a, **k))
    again = generate_rows(config, progress=False)
    assert sum(calls) == 4, "only the four missing rows are decoded"
    assert [(r["label"], int(r["seed"]), r["text"]) for r in again] == \
        [(r["label"], int(r["seed"]), r["text"]) for r in full], "the same seed writes the same review"
    assert len(_rows(path)) == 6


def test_cli_contract_and_bad_settings(checkpoint, tmp_path, capsys):
    data = tmp_path / "real.csv"
    data.write_text("text,label\n" + "".join(f"a real review number {i},{CLASSES[i % 2]}\n" for i in range(40)))
    out = tmp_path / "S.csv"
    assert main(["synthesize", "--checkpoint", checkpoint, "--per-class", "4", "--out", str(out), "--data",
                 str(data), "--length", "8", "--no-progress"]) == 0
    rows = _rows(out)
    assert {"text", "label", "kept"} <= set(rows[0]) and len(rows) == 8
    assert sorted(r["label"] for r in rows) == ["negative"] * 4 + ["positive"] * 4
    printed = capsys.readouterr().out
    assert "generated 8;" in printed and "judge:" in printed
    assert main(["synthesize", "--checkpoint", checkpoint, "--per-class", "0", "--out", str(out)]) == 2
    assert main(["synthesize", "--checkpoint", "tiny", "--per-class", "1", "--out", str(tmp_path / "x.csv")]) == 2
    assert "not class-conditional" in capsys.readouterr().err
    with pytest.raises(TextdiffError, match="threshold"):
        SynthConfig(checkpoint=checkpoint, out=str(out), threshold=1.5)


def test_the_default_judge_reading_is_the_one_its_calibration_found_best(tmp_path):
    from textdiff_core.records import best_reading

    def checkpoint(accuracy):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        (folder / "calibration.json").write_text(json.dumps({"combined": {"cross_fitted_accuracy": accuracy}}))
        return str(folder)

    assert best_reading(checkpoint({"bayes": 0.81, "infill": 0.89, "combined": 0.89})) == "infill"
    assert best_reading(checkpoint({"bayes": 0.91, "infill": 0.89})) == "elbo"
    assert best_reading(checkpoint({"bayes": 0.89, "infill": 0.89})) == "infill", "a tie goes to the cheaper reading"
    assert best_reading(str(tmp_path / "nothing")) is None


def test_training_data_from_a_synthetic_set_takes_only_the_rows_its_judge_kept(tmp_path):
    from textdiff_core.data import load_data

    path = tmp_path / "s.csv"
    rows = [{"text": f"kept review number {i} with words", "label": CLASSES[i % 2], "kept": "true"} for i in range(6)]
    rows += [{"text": f"dropped review number {i} with words", "label": CLASSES[i % 2], "kept": "false"}
             for i in range(6)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "kept"])
        writer.writeheader()
        writer.writerows(rows)
    texts = load_data(str(path), "all").texts
    assert sorted(texts) == sorted(r["text"] for r in rows[:6])
    for row in rows:
        row["kept"] = "false"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "kept"])
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(TextdiffError, match="keeps none of its rows"):
        load_data(str(path), "all")


def test_the_training_page_shows_a_synthetic_sets_provenance_counts_and_samples(checkpoint, tmp_path):
    from streamlit.testing.v1 import AppTest

    from textdiff_core.experiments.synthesize import provenance

    config = _config(checkpoint, tmp_path, judge="tfidf", threshold=0.5)
    report = synthesize(config, progress=False)
    rows = _rows(tmp_path / "s.csv")
    assert provenance(tmp_path / "s.csv")["counts"]["generated"] == report.generated == len(rows) == 6
    assert 0 < report.kept < 6, "the page is to show kept and dropped rows both"
    assert provenance(tmp_path / "nothing.csv") is None
    run = tmp_path / "run"
    assert main(["train", "--model", "tiny", "--data", f"rotten_tomatoes,{tmp_path / 's.csv'}", "--steps", "2",
                 "--batch-size", "4", "--max-length", "32", "--log-every", "1", "--no-progress", "--out",
                 str(run)]) == 0
    at = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=120).run()
    at.switch_page("pages/training.py").run()
    at.selectbox(key="run_choice").set_value("other…").run()
    at.text_input(key="run_path").set_value(str(run)).run()
    assert not at.exception and not at.error
    assert "Synthetic data in this run" in [h.value for h in at.subheader]
    stages = at.table[0].value
    assert stages.loc["generated", "rows"] == 6 and stages.loc["kept", "rows"] == report.kept
    captions = [c.value for c in at.caption]
    dropped = [r for r in rows if r["kept"] == "false"]
    assert all(any(r["reason"] in c for c in captions) for r in dropped[:3]), "each dropped sample says why"


def test_a_judge_without_a_record_of_its_accuracy_is_measured_on_real_validation_reviews(checkpoint, tmp_path):
    report = synthesize(_config(checkpoint, tmp_path, judge="tfidf", judge_check=300), progress=False)
    judge = report.judge
    assert judge["how"] == "measured here" and judge["validation_n"] == 300
    assert 0.8 < judge["validation_accuracy"] <= 1.0, "TF-IDF reads real IMDB reviews well; near 0.5 means a defect"
    sidecar = json.loads((tmp_path / "s.csv.json").read_text())
    assert sidecar["report"]["judge"]["validation_accuracy"] == judge["validation_accuracy"]


def test_an_instruct_lm_is_asked_per_class_through_its_chat_template(checkpoint, tmp_path, monkeypatch):
    import textdiff_core.experiments.synthesize as synth

    lm = load_model("tiny-ar", device="cpu")
    lm.tokenizer.chat_template = "{% for m in messages %}<user>{{ m['content'] }}</user>{% endfor %}<assistant>"
    instruct = str(save_model(lm.model, lm.tokenizer, tmp_path / "instruct", {"objective": "ar"}))
    asked = []
    real_generate = synth.generate_samples

    def spy(lm, prompt, length, decoding, condition, n):
        asked.append((prompt, condition, n))
        return real_generate(lm, prompt, length, decoding, condition, n)

    monkeypatch.setattr(synth, "generate_samples", spy)
    data = tmp_path / "real.csv"
    data.write_text("text,label\n" + "".join(f"a real review number {i},{CLASSES[i % 2]}\n" for i in range(40)))
    report = synthesize(_config(instruct, tmp_path, generator="instruct", judge=checkpoint, data=str(data)),
                        progress=False)
    assert report.generated == 6
    assert asked == [(f"<user>Write a short {c} movie review.</user><assistant>", None, n) for c in CLASSES
                     for n in (2, 1)], "batches of 2, each class asked in its own words, no class prompt"
    rows = _rows(tmp_path / "s.csv")
    assert [r["label"] for r in rows] == ["negative"] * 3 + ["positive"] * 3
    assert {r["generator"] for r in rows} == {instruct} and all(r["kept"] in ("true", "false") for r in rows)
