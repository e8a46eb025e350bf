import json
import os

import pytest
import torch

from textdiff_core.errors import ModelError
from textdiff_core.models import (
    compute_dtype,
    device_name,
    load_model,
    logits_at,
    minilm_path,
    pick_device,
    save_model,
)
from textdiff_core.settings import LoadOptions
from textdiff_core.tokens import encode


def _batch(tok):
    return encode(tok, ["the movie was great fun", "dull"], ["positive review:", "negative review:"])


@pytest.mark.parametrize("name", ["tiny", "tiny-ar", "minilm", "minilm-ar"])
def test_logits_at_selected_positions_equal_the_full_forward(name):
    lm = load_model(name)
    b = _batch(lm.tokenizer)
    with torch.no_grad():
        full = lm.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits[b.target_mask]
        part = logits_at(lm.model, b.input_ids, b.attention_mask, b.target_mask)
    assert part.shape == (int(b.target_mask.sum()), lm.tokenizer.vocab_size)
    assert torch.allclose(full, part, atol=1e-4)


def test_minilm_ar_is_left_to_right_and_minilm_is_bidirectional():
    for name, causal in (("minilm-ar", True), ("minilm", False)):
        lm = load_model(name)
        b = encode(lm.tokenizer, ["the movie was great fun"])
        changed = b.input_ids.clone()
        changed[0, -2] = lm.tokenizer.convert_tokens_to_ids("awful")
        with torch.no_grad():
            a = lm.model(input_ids=b.input_ids).logits[0, :-2]
            c = lm.model(input_ids=changed).logits[0, :-2]
        assert torch.allclose(a, c, atol=1e-5) == causal, name


def test_minilm_uses_the_packaged_encoder_weights():
    from safetensors.torch import load_file

    packaged = load_file(minilm_path() / "model.safetensors")
    key = next(k for k in packaged if k.endswith("word_embeddings.weight"))
    lm = load_model("minilm")
    assert torch.equal(lm.model.bert.embeddings.word_embeddings.weight, packaged[key])
    assert lm.kind == "masked" and lm.tokenizer.mask_token == "[MASK]"


def test_device_and_dtype_choice(monkeypatch):
    """CUDA when there is one, else CPU; bf16 compute on a GPU, fp32 on a CPU; a model loads on that choice unless
    its load options name another dtype."""
    for present, expected in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda present=present: present)
        assert pick_device() == torch.device(expected)
    assert compute_dtype(torch.device("cpu")) == torch.float32
    assert compute_dtype(torch.device("cuda")) == torch.bfloat16
    assert compute_dtype(torch.device("cuda", 1)) == torch.bfloat16
    lm = load_model("tiny")  # no GPU (patched above): the CPU and fp32
    assert {(p.device.type, p.dtype) for p in lm.model.parameters()} == {("cpu", torch.float32)}
    bf16 = load_model("tiny", options=LoadOptions(dtype="bf16"))
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("name", ["tiny", "tiny-ar"])
def test_save_then_load_gives_identical_outputs(tmp_path, name):
    lm = load_model(name)
    b = _batch(lm.tokenizer)
    save_model(lm.model, lm.tokenizer, tmp_path / "m", {"objective": "diffusion" if name == "tiny" else "ar"})
    again = load_model(str(tmp_path / "m"))
    assert again.kind == lm.kind and again.meta["objective"]
    with torch.no_grad():
        x = lm.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
        y = again.model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
    assert torch.equal(x, y)


def test_fp16_save_is_half_the_size_and_loads_as_fp32_on_cpu(tmp_path):
    lm = load_model("tiny")
    save_model(lm.model, lm.tokenizer, tmp_path / "a", {})
    save_model(lm.model, lm.tokenizer, tmp_path / "b", {}, dtype=torch.float16)
    size = {k: (tmp_path / k / "model.safetensors").stat().st_size for k in "ab"}
    assert size["b"] < 0.55 * size["a"]
    assert json.loads((tmp_path / "b" / "config.json").read_text())["dtype"] == "float16"
    again = load_model(str(tmp_path / "b"), device="cpu")
    assert next(again.model.parameters()).dtype == torch.float32
    b = _batch(lm.tokenizer)
    with torch.no_grad():
        x = lm.model(input_ids=b.input_ids).logits
        y = again.model(input_ids=b.input_ids).logits
    assert torch.allclose(x, y, atol=2e-2)


def test_load_errors_are_one_line_model_errors(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelError, match="could not load 'no-such-org/no-such-model'"):
        load_model("no-such-org/no-such-model")
    with pytest.raises(ModelError, match="is a left-to-right model, but a diffusion model"):
        load_model("minilm-ar", kind="masked")
    per_class = tmp_path / "per-class"  # what `train --conditioning per-class` writes at the top of its run
    per_class.mkdir()
    (per_class / "textdiff.json").write_text('{"class_dirs": {"negative": "negative", "positive": "positive"}}')
    with pytest.raises(ModelError, match=r"one model per class \(negative, positive\).*e\.g\. .*per-class/negative$"):
        load_model(str(per_class))


def test_pickled_weights_are_refused_unless_allowed(tmp_path):
    lm = load_model("tiny")
    out = tmp_path / "pickled"
    lm.model.save_pretrained(out)
    lm.tokenizer.save_pretrained(out)
    (out / "model.safetensors").unlink()  # transformers 5 writes safetensors only: make the pickle by hand
    torch.save(lm.model.state_dict(), out / "pytorch_model.bin")
    assert not list(out.glob("*.safetensors")) and list(out.glob("*.bin"))
    with pytest.raises(ModelError, match="allow-pickle"):
        load_model(str(out))
    assert load_model(str(out), options=LoadOptions(allow_pickle=True)).kind == "masked"


def test_offline_minilm_is_the_same_model_on_every_load():
    a, b = load_model("minilm"), load_model("minilm")
    head_a = a.model.cls.predictions.transform.dense.weight
    assert torch.equal(head_a, b.model.cls.predictions.transform.dense.weight)


def test_device_name_reads_the_cpu_model(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Test CPU 9000\ncpu family\t: 6\nmodel\t\t: 207\n\n"
        "processor\t: 1\nmodel name\t: Other CPU\n"
    )
    name = device_name(torch.device("cpu"), info)
    assert name == f"Test CPU 9000 (family 6, model 207), {os.cpu_count()} cores"
    fallback = device_name(torch.device("cpu"), tmp_path / "missing")  # no /proc/cpuinfo (macOS): still a name
    assert fallback.endswith(f", {os.cpu_count()} cores") and fallback.split(",")[0].strip()


def test_the_cli_loading_flags_reach_load_model_as_options_not_environment(monkeypatch, capsys):
    """--model-dtype, --mask-id and --trust-remote-code travel as one LoadOptions to load_model: nothing is put in
    the environment, and a bad value stops the command in one line before any model loads."""
    from textdiff_core import denoisers
    from train_cli import main

    seen = []
    real = denoisers.denoiser_for

    def ours() -> dict[str, str]:  # the project's variables (torch sets some of its own as it loads)
        return {k: v for k, v in os.environ.items() if k.startswith("TEXTDIFF_")}

    def spy(config, tokenizer, overrides):
        seen.append((overrides, ours()))
        spec = real(config, tokenizer, overrides)
        seen.append(spec)
        return spec

    monkeypatch.setattr(denoisers, "denoiser_for", spy)
    argv = ["--model-dtype", "bf16", "--trust-remote-code", "generate", "--checkpoint", "tiny", "--length", "2",
            "--mask-id", "103", "--steps", "2"]
    before = ours()  # whatever this machine holds (TEXTDIFF_CACHE, a TEXTDIFF_ variable of its own, ...)
    assert main(argv) == 0
    (overrides, environment), spec = seen
    assert overrides == {"mask_id": 103}, "the flags arrive as options"
    assert environment == before, "not as variables: the model loads under the TEXTDIFF_ variables the call began with"
    assert ours() == before, "and the call leaves them as it found them"
    assert spec.dtype == "bfloat16" and spec.mask_id == 103
    capsys.readouterr()
    assert main(["generate", "--checkpoint", "tiny", "--mask-id", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: mask-id must be a token id >= 0, got -1"
    assert len(seen) == 2, "no model was loaded"


def test_catalogue_sizes_a_saved_model_from_its_headers_and_falls_back_to_its_base(tmp_path):
    from textdiff_core.models import catalogue

    lm = load_model("tiny")
    meta = {"objective": "diffusion", "base_model": "minilm"}  # a base of another size, so the two readings differ
    save_model(lm.model, lm.tokenizer, tmp_path / "whole", meta)
    save_model(lm.model, lm.tokenizer, tmp_path / "sharded", meta, max_shard_size="2MB")
    save_model(lm.model, lm.tokenizer, tmp_path / "broken", meta)
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"\x05\x00")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    sizes = {row["name"]: row["size"] for row in catalogue(tmp_path)}
    exact = f"{sum(p.numel() for p in lm.model.parameters()) / 1e6:.1f}M"
    assert sizes[str(tmp_path / "whole")] == sizes[str(tmp_path / "sharded")] == exact == "2.1M"
    assert sizes[str(tmp_path / "broken")] == "22.7M"  # unreadable headers: the base family's published size
