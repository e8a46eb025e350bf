"""Hostile input, one test per case: the CLI answers one ``error: ...`` line and exits 2 (no traceback), every page
answers with ``st.error`` and no result, odd but valid text gets a normal result, and nothing is written half-way."""

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from textdiff_core.models import load_model, save_model
from textdiff_core.paths import write_atomic
from train_cli import main

APP = str(Path(__file__).resolve().parents[1] / "app.py")
CUSTOM = "other: a directory or hub id…"  # pages._shared.CUSTOM
MEGABYTE = "a long review " * (2**20 // 14)  # 1 MB of text
JUNK = "".join(chr(c) for c in range(0, 32)) + bytes(range(128, 256)).decode("latin-1") + "\ufffd\x7f"
WORLD = "Great film 🎬🍿 loved it 😍 这部电影很好看 الفيلم رائع סרט נהדר"
CLASSES = ["negative", "positive"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny class-conditional checkpoint, a per-class pair, and broken copies of the first."""
    root = tmp_path_factory.mktemp("hostile")
    lm = load_model("tiny", device="cpu")
    meta = {"objective": "diffusion", "conditioning": "class", "classes": CLASSES, "class_prompt": "{label} review:",
            "max_length": 64}
    good = root / "good"
    save_model(lm.model, lm.tokenizer, good, meta)
    out = {"good": good}

    def broken(name: str, damage) -> None:
        shutil.copytree(good, root / name)
        damage(root / name)
        out[name] = root / name

    def only_bin(d: Path) -> None:
        import torch

        torch.save(lm.model.state_dict(), d / "pytorch_model.bin")
        (d / "model.safetensors").unlink()

    def truncate(d: Path) -> None:
        weights = d / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])

    broken("only-bin", only_bin)
    broken("truncated", truncate)
    broken("bad-config", lambda d: (d / "config.json").write_text('{"architectures": ["BertForMaskedLM"'))
    broken("bad-tokenizer", lambda d: (d / "tokenizer.json").write_text("{not json at all"))
    broken("bad-textdiff", lambda d: (d / "textdiff.json").write_bytes(b"\xff\xfe{]"))
    broken("bad-calibration", lambda d: (d / "calibration.json").write_text('{"elbo": {"temperature": "hot"}}'))

    per_class = root / "per-class"
    for c in CLASSES:
        save_model(lm.model, lm.tokenizer, per_class / c, {"objective": "diffusion", "conditioning": "none"})
    (per_class / "textdiff.json").write_text(json.dumps(
        {"objective": "diffusion", "conditioning": "per-class", "classes": CLASSES,
         "class_dirs": {c: c for c in CLASSES}}))
    shutil.rmtree(per_class / "positive")  # a set copied without one of its members
    out["member-missing"] = per_class
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Hostile data files."""
    root = tmp_path_factory.mktemp("data")
    rows = [f"review {i} was {'good' if i % 2 else 'bad'}" for i in range(12)]
    labels = [CLASSES[i % 2] for i in range(12)]
    contents = {
        "latin1.csv": ("text,label\n" + "\n".join(f"caf\xe9 {t},{y}" for t, y in zip(rows, labels, strict=True))
                       ).encode("latin-1"),
        "missing-label.csv": ("text,label\n" + "\n".join(f"{t},{y if i != 3 else ''}" for i, (t, y) in
                                                          enumerate(zip(rows, labels, strict=True)))).encode(),
        "unknown-label.csv": ("text,label\n" + "\n".join(f"{t},{'neutral' if i == 5 else y}" for i, (t, y) in
                                                          enumerate(zip(rows, labels, strict=True)))).encode(),
        "nan-label.csv": ("text,label\n" + "\n".join(f"{t},{'NaN' if i == 2 else y}" for i, (t, y) in
                                                      enumerate(zip(rows, labels, strict=True)))).encode(),
        "duplicate-header.csv": ("text,label,text\n" + "\n".join(f"{t},{y},again" for t, y in
                                                                  zip(rows, labels, strict=True))).encode(),
        "no-label-column.csv": ("text,stars\n" + "\n".join(f"{t},5" for t in rows)).encode(),
        "binary.csv": bytes(range(256)) * 4,
        "empty.csv": b"",
    }
    for name, data in contents.items():
        (root / name).write_bytes(data)
    return {name: root / name for name in contents}


def _one_line_error(capsys, argv: list[str], expect: str) -> None:
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert expect.lower() in err.lower(), err


# ---- CLI: text ----

TEXT_CASES = {
    "empty text": ("", "empty"),
    "whitespace-only text": (" \n\t  \r\n", "empty"),
    "1 MB of text": (MEGABYTE, "tokens"),
}


@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_cli_classify_refuses_text(models, capsys, case):
    text, expect = TEXT_CASES[case]
    _one_line_error(capsys, ["classify", "--checkpoint", str(models["good"]), "--samples", "2", text], expect)


@pytest.mark.parametrize("text", [JUNK, WORLD], ids=["control characters and binary junk", "emoji, CJK and RTL"])
@pytest.mark.parametrize("command", ["classify", "generate"])
def test_cli_odd_but_valid_text_gets_a_normal_result(models, capsys, command, text):
    good = str(models["good"])
    argv = (["classify", "--checkpoint", good, "--samples", "2", text] if command == "classify" else
            ["generate", "--checkpoint", good, "--prompt", text, "--length", "4"])
    assert main(argv) == 0
    assert "forward passes" in capsys.readouterr().out


@pytest.mark.parametrize("prompt,extra,expect", [
    (MEGABYTE, [], "takes at most"),
    ("word " * 600, [], "takes at most"),
    ("word " * 600, ["--strategy", "ar", "--checkpoint", "tiny-ar"], "takes at most"),
    ("The movie was", ["--length", "0"], "nothing to generate"),
    ("The movie was", ["--length", "1000000000"], "takes at most"),
    ("The movie was", ["--length", "1000000000", "--strategy", "ar", "--checkpoint", "tiny-ar"], "takes at most"),
    ("The movie was", ["--length", "-1"], "length must be"),
], ids=["1 MB prompt", "prompt over the window", "prompt over the window (ar)", "length 0", "absurd length",
        "absurd length (ar)", "negative length"])
def test_cli_generate_refuses_lengths(capsys, prompt, extra, expect):
    _one_line_error(capsys, ["generate", "--checkpoint", "tiny", "--prompt", prompt, "--length", "4", *extra], expect)


# ---- CLI: settings ----

SETTINGS = {
    "threshold NaN": (["--threshold", "nan"], "threshold"),
    "threshold negative": (["--threshold", "-0.5"], "threshold"),
    "threshold above 1": (["--threshold", "1.5"], "threshold"),
    "temperature NaN": (["--temperature", "nan"], "temperature"),
    "temperature negative": (["--temperature", "-1"], "temperature"),
    "temperature infinite": (["--temperature", "inf"], "temperature"),
    "top-p NaN": (["--top-p", "nan"], "top-p"),
    "top-p zero": (["--top-p", "0"], "top-p"),
    "top-p above 1": (["--top-p", "1.5"], "top-p"),
    "top-k zero": (["--top-k", "0"], "top-k"),
    "k zero": (["--strategy", "topk", "--k", "0"], "k must"),
    "steps negative": (["--steps", "-2"], "steps"),
    "spacing zero": (["--spacing", "0"], "spacing"),
    "block size negative": (["--block-size", "-1"], "block size"),
    "unknown class name": (["--label", "mixed"], "unknown label"),
}


@pytest.mark.parametrize("case", list(SETTINGS))
def test_cli_generate_refuses_settings(models, capsys, case):
    flags, expect = SETTINGS[case]
    _one_line_error(capsys, ["generate", "--checkpoint", str(models["good"]), "--length", "4", *flags], expect)


CLASSIFY_SETTINGS = {
    "samples zero": (["--samples", "0"], "samples"),
    "samples negative": (["--samples", "-3"], "samples"),
    "z NaN": (["--adaptive", "--z", "nan"], "--z"),
    "z negative": (["--adaptive", "--z", "-1"], "--z"),
    "z infinite": (["--adaptive", "--z", "inf"], "--z"),
    "unknown class names": (["--classes", "neutral,mixed"], "not ['neutral', 'mixed']"),
}


@pytest.mark.parametrize("case", list(CLASSIFY_SETTINGS))
def test_cli_classify_refuses_settings(models, capsys, case):
    flags, expect = CLASSIFY_SETTINGS[case]
    _one_line_error(capsys, ["classify", "--checkpoint", str(models["good"]), *flags, "A fine film."], expect)


# ---- CLI: data files ----

DATA_CASES = {
    "latin1.csv": "not UTF-8",
    "missing-label.csv": "no label",
    "unknown-label.csv": "not classes of the checkpoint",
    "nan-label.csv": "no label",
    "duplicate-header.csv": "duplicate column names",
    "no-label-column.csv": "no label column",
    "binary.csv": "not UTF-8",
    "empty.csv": "empty",
}


@pytest.mark.parametrize("name", list(DATA_CASES))
@pytest.mark.parametrize("command", ["evaluate", "calibrate"])
def test_cli_refuses_a_bad_data_file_and_writes_nothing(models, files, tmp_path, capsys, command, name):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(models["good"], checkpoint)
    out = tmp_path / "report.json"
    extra = ["--out", str(out)] if command == "evaluate" else []
    _one_line_error(capsys, [command, "--checkpoint", str(checkpoint), "--data", str(files[name]), "--samples", "1",
                             "--no-progress", *extra], DATA_CASES[name])
    assert not out.exists() and not (checkpoint / "calibration.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"], "no partial or temporary file left behind"


@pytest.mark.parametrize("name", ["latin1.csv", "duplicate-header.csv", "missing-label.csv"])
def test_cli_train_refuses_a_bad_data_file(files, tmp_path, capsys, name):
    _one_line_error(capsys, ["train", "--model", "tiny", "--data", str(files[name]), "--conditioning", "class",
                             "--quick-test", "--no-progress", "--out", str(tmp_path / "run")], DATA_CASES[name])


# ---- CLI: model directories ----

MODEL_CASES = {
    "only-bin": "pickled weights",
    "truncated": "could not load",
    "bad-config": "config.json is not valid JSON",
    "bad-tokenizer": "could not load",
    "bad-textdiff": "textdiff.json is not valid JSON",
    "member-missing": "model of class 'positive' is missing",
}


@pytest.mark.parametrize("name", list(MODEL_CASES))
@pytest.mark.parametrize("command", ["classify", "generate", "fill-mask"])
def test_cli_refuses_a_broken_model_directory(models, capsys, command, name):
    path = str(models[name])
    argv = {"classify": ["classify", "--checkpoint", path, "A fine film."],
            "generate": ["generate", "--checkpoint", path, "--length", "4"]
            + (["--label", "positive"] if name == "member-missing" else []),
            "fill-mask": ["fill-mask", "--checkpoint", path, "The movie was [MASK]."]}[command]
    expect = MODEL_CASES[name]
    if name == "member-missing" and command == "fill-mask":
        expect = "one model per class"
    if name == "member-missing" and command == "generate":
        expect = "not found"
    _one_line_error(capsys, argv, expect)


def test_cli_refuses_a_corrupt_calibration_file_and_calibrate_leaves_it_whole(models, files, tmp_path, capsys):
    _one_line_error(capsys, ["classify", "--checkpoint", str(models["bad-calibration"]), "A fine film."],
                    "not a calibration file")
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(models["bad-calibration"], checkpoint)
    before = (checkpoint / "calibration.json").read_bytes()
    _one_line_error(capsys, ["calibrate", "--checkpoint", str(checkpoint), "--data", "rotten_tomatoes", "--limit",
                             "4", "--samples", "1", "--no-progress"], "not a calibration file")
    assert (checkpoint / "calibration.json").read_bytes() == before


def test_cli_an_unwritable_output_is_one_line_and_no_partial_file(models, tmp_path, capsys):
    (tmp_path / "taken").mkdir()  # --out names a directory
    _one_line_error(capsys, ["generate", "--checkpoint", "tiny", "--length", "2", "--json", str(tmp_path / "taken")],
                    "cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_write_atomic_keeps_the_old_file_when_a_write_fails(tmp_path):
    target = tmp_path / "calibration.json"
    target.write_text("old")

    def half(path: Path) -> None:
        path.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["calibration.json"]
    write_atomic(target, lambda path: path.write_text("new"))
    assert target.read_text() == "new"


# ---- The pages (AppTest) ----


def _page(page: str, diffusion: str = "tiny") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page(page).run()
    if diffusion in ("tiny",):
        at.sidebar.selectbox(key="pick_diffusion").set_value("tiny").run()
    else:
        at.sidebar.selectbox(key="pick_diffusion").set_value(CUSTOM).run()
        at.sidebar.text_input(key="custom_diffusion").set_value(diffusion).run()
    at.sidebar.selectbox(key="pick_ar").set_value("tiny-ar").run()
    at.sidebar.selectbox(key="pick_reference").set_value("tiny-ar").run()
    assert not at.exception, at.exception
    return at


def _page_error(at: AppTest, expect: str) -> None:
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert errors and any(expect.lower() in e.lower() for e in errors), errors
    assert all("\n" not in e for e in errors), errors


DENOISE_CASES = {
    "empty prompt, no new tokens": ("", 0, "nothing to generate"),
    "whitespace prompt, no new tokens": ("  \n\t ", 0, "nothing to generate"),
    "1 MB prompt": (MEGABYTE, 8, "takes at most"),
    "prompt over the window": ("word " * 600, 8, "takes at most"),
}


@pytest.mark.parametrize("case", list(DENOISE_CASES))
def test_denoise_page_refuses(case):
    prompt, length, expect = DENOISE_CASES[case]
    at = _page("pages/denoise.py")
    at.text_area(key="denoise_prompt").set_value(prompt).run()
    at.slider(key="denoise_length").set_value(length).run()
    at.button(key="denoise_run").click().run()
    _page_error(at, expect)
    assert not at.metric and "denoise_trace" not in at.session_state


@pytest.mark.parametrize("text", [JUNK, WORLD], ids=["control characters and binary junk", "emoji, CJK and RTL"])
def test_denoise_page_decodes_odd_but_valid_text(text):
    at = _page("pages/denoise.py")
    at.text_area(key="denoise_prompt").set_value(text).run()
    at.slider(key="denoise_length").set_value(4).run()
    at.button(key="denoise_run").click().run()
    assert not at.exception and not at.error and at.session_state["denoise_trace"].n_decoded == 4


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_denoise_page_refuses_a_broken_model_directory(models, name):
    at = _page("pages/denoise.py", str(models[name]))
    at.slider(key="denoise_length").set_value(4).run()
    at.button(key="denoise_run").click().run()
    expect = {"member-missing": "one model per class"}.get(name, MODEL_CASES[name])
    _page_error(at, expect)
    assert "denoise_trace" not in at.session_state


@pytest.mark.parametrize("prompt,expect", [("word " * 600, "takes at most"), (MEGABYTE, "takes at most")],
                         ids=["prompt over the window", "1 MB prompt"])
def test_compare_page_refuses(prompt, expect):
    at = _page("pages/compare.py")
    at.checkbox(key="compare_score").uncheck().run()
    at.text_area(key="compare_prompt").set_value(prompt).run()
    at.button(key="compare_run").click().run()
    _page_error(at, expect)
    assert len(at.error) == 2 and not at.get("html")


def test_compare_page_refuses_a_broken_model_directory(models):
    at = _page("pages/compare.py", str(models["bad-config"]))
    at.checkbox(key="compare_score").uncheck().run()
    at.slider(key="compare_length").set_value(3).run()
    at.button(key="compare_run").click().run()
    _page_error(at, "config.json is not valid JSON")
    assert len(at.get("html")) == 1, "the left-to-right side still runs"


CLASSIFY_CASES = {
    "empty text": ("", "Paste some text"),
    "whitespace-only text": (" \n\t ", "Paste some text"),
    "1 MB of text": (MEGABYTE, "limit here is"),
}


@pytest.mark.parametrize("case", list(CLASSIFY_CASES))
def test_classify_page_refuses(case):
    text, expect = CLASSIFY_CASES[case]
    at = _page("pages/classify.py")
    at.text_area[0].set_value(text).run()
    at.button[0].click().run()
    _page_error(at, expect)
    assert not at.metric


@pytest.mark.parametrize("text", [JUNK, WORLD], ids=["control characters and binary junk", "emoji, CJK and RTL"])
def test_classify_page_scores_odd_but_valid_text(text):
    at = _page("pages/classify.py")
    at.checkbox[1].uncheck().run()
    at.text_area[0].set_value(text).run()
    at.button[0].click().run()
    assert not at.exception and not at.error and [m.label for m in at.metric] == ["Decision"]


@pytest.mark.parametrize("name", [*MODEL_CASES, "bad-calibration"])
def test_classify_page_refuses_a_broken_model_directory(models, name):
    at = _page("pages/classify.py", str(models[name]))
    at.checkbox[1].uncheck().run()
    at.text_area[0].set_value("A fine film.").run()
    at.button[0].click().run()
    _page_error(at, MODEL_CASES.get(name, "not a calibration file"))
    assert not at.metric


@pytest.mark.parametrize("text,expect", [("", "empty"), ("no mask here", "no [MASK]")], ids=["empty", "no mask"])
def test_models_page_fill_mask_refuses(text, expect):
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("pages/models.py").run()
    at.text_input[0].set_value("tiny").run()
    at.text_input[1].set_value(text).run()
    at.button[0].click().run()
    _page_error(at, expect)


@pytest.mark.parametrize("name", ["bad-config", "bad-textdiff"])
def test_models_page_refuses_a_broken_model_directory(models, name):
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("pages/models.py").run()
    at.text_input[0].set_value(str(models[name])).run()
    at.button[0].click().run()
    _page_error(at, MODEL_CASES[name])


TRAINING_CASES = {
    "binary metrics.jsonl": ({"metrics.jsonl": bytes(range(256))}, "warning"),
    "metrics lines without a loss": ({"metrics.jsonl": b'{"step": 1}\n[1, 2]\n'}, "warning"),
    "corrupt textdiff.json": ({"metrics.jsonl": b'{"step": 1, "loss": 2.0}\n', "textdiff.json": b"{oops"},
                              "textdiff.json is not valid JSON"),
    "corrupt evaluation report": ({"metrics.jsonl": b'{"step": 1, "loss": 2.0}\n', "eval-test.json": b"[]"},
                                  "not an evaluate report"),
}


@pytest.mark.parametrize("case", list(TRAINING_CASES))
def test_training_page_survives_a_damaged_run_directory(tmp_path, case):
    content, expect = TRAINING_CASES[case]
    for name, data in content.items():
        (tmp_path / name).write_bytes(data)
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("pages/training.py").run()
    at.selectbox(key="run_choice").set_value("other…").run()
    at.text_input(key="run_path").set_value(str(tmp_path)).run()
    assert not at.exception, at.exception
    if expect == "warning":
        assert "not logged a step" in at.warning[0].value
    else:
        _page_error(at, expect)


@pytest.mark.parametrize("command", [
    ["generate", "--prompt", "the movie", "--length", "4"],
    ["classify", "--samples", "2", "--prompt-template", "{label} review:", "a dull film"],
    ["perplexity", "--data", "{csv}", "--split", "all", "--limit", "2"],
])
def test_cli_a_remote_code_model_that_raises_in_forward_is_one_line(command, tmp_path, capsys):
    from tests.lookalikes import make

    raising = make("llada", tmp_path / "llada-raises", edit=lambda source: source.replace(
        "        logits = self.model(input_ids, inputs_embeds, attention_mask, attention_bias)",
        "        raise RuntimeError('CUDA error: no kernel image is available for execution on the device')"))
    csv = tmp_path / "r.csv"
    csv.write_text("text,label\nthe movie was great,positive\na dull film,negative\n")
    out = tmp_path / "out.json"
    args = [a.replace("{csv}", str(csv)) for a in command]
    extra = ["--json", str(out)] if command[0] == "generate" else ["--out", str(out)] if command[0] == "perplexity" \
        else []
    assert main(["--trust-remote-code", args[0], "--checkpoint", str(raising), *args[1:], *extra]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "failed in forward" in errors[0] and "Traceback" not in err, err
    assert "no kernel image" in errors[0] and not out.exists()
