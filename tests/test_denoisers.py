"""Published diffusion-LM families through the one denoiser interface, on tiny random look-alikes (tests/lookalikes):
loading (remote code only when allowed, sized first), generate, classify, perplexity, and classifier-free guidance."""

import inspect
import json
import math
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.lookalikes import FAMILIES, make
from textdiff_core import remote_code
from textdiff_core.decoding import DecodeConfig, generate, guided_logits
from textdiff_core.denoisers import check_fits, denoise_logits, estimate_parameters, noise_level
from textdiff_core.errors import ModelError, TextdiffError
from textdiff_core.likelihood import masked_rows_nll
from textdiff_core.models import load_model
from textdiff_core.remote_code import SHIMS
from textdiff_core.settings import LoadOptions
from train_cli import main

TRUSTED = LoadOptions(trust_remote_code=True)  # the look-alikes ship their modeling code


@pytest.fixture(scope="module")
def lookalikes(tmp_path_factory):
    root = tmp_path_factory.mktemp("lookalikes")
    return {f: make(f, root / f) for f in FAMILIES}


@pytest.fixture()
def csv(tmp_path):
    path = tmp_path / "r.csv"
    pd.DataFrame({"text": ["the movie was great", "a dull film with loud music", "i loved this clever story"],
                  "label": ["positive", "negative", "positive"]}).to_csv(path, index=False)
    return path


def test_custom_code_is_refused_in_one_line_without_the_flag(lookalikes, tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(lookalikes["mdlm"]), "--prompt", "the movie", "--length", "4",
                 "--json", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--trust-remote-code" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "t.json").exists()
    with pytest.raises(ModelError, match="--trust-remote-code"):
        load_model(str(lookalikes["llada"]))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("flag_first", [True, False])
def test_generate_and_perplexity_work_for_every_family(family, flag_first, lookalikes, csv, tmp_path, capsys):
    path = str(lookalikes[family])
    flag = ["--trust-remote-code"]

    def run(command, *rest):
        return main(flag + [command, *rest] if flag_first else [command, *flag, *rest])

    trace = tmp_path / "t.json"
    assert run("generate", "--checkpoint", path, "--prompt", "the movie", "--length", "6", "--strategy", "topk",
               "--k", "2", "--chat", "off", "--json", str(trace)) == 0
    frames = json.loads(trace.read_text())["frames"]
    lm = load_model(path, options=TRUSTED)
    mask_id = lm.denoiser.mask_id
    final = frames[-1]["ids"]
    assert len(frames) == 4 and sum(frames[0]["masked"]) == 6 and not any(frames[-1]["masked"])
    assert mask_id not in final[-6:], "no mask left, and the mask is never generated"
    report = tmp_path / "r.json"
    assert run("perplexity", "--checkpoint", path, "--data", str(csv), "--split", "all", "--limit", "3",
               "--samples", "2", "--out", str(report), "--no-progress") == 0
    r = json.loads(report.read_text())
    low, high = r["perplexity_ci95"]
    assert r["n"] == 3 and r["bound"] == "elbo" and low <= r["perplexity"] <= high
    assert r["tokens"] == sum(len(lm.tokenizer(t, add_special_tokens=False).input_ids) for t in
                              pd.read_csv(csv)["text"])
    evaluated = tmp_path / "e.json"
    assert run("evaluate", "--checkpoint", path, "--data", str(csv), "--split", "all", "--limit", "3", "--samples",
               "2", "--prompt-template", "{label} review:", "--out", str(evaluated), "--no-progress") == 0
    e = json.loads(evaluated.read_text())
    assert e["n"] == 3 and 0 <= e["accuracy"] <= 1, e


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_shot_classification_is_bayes_over_elbos_with_class_prompts(family, lookalikes, capsys):
    assert main(["--trust-remote-code", "classify", "--checkpoint", str(lookalikes[family]), "--samples", "2",
                 "--prompt-template", "{label} review:", "a dull film with loud music"]) == 0
    out = capsys.readouterr().out
    posteriors, scores = _posteriors_and_scores(out)
    assert len(posteriors) == 2 and math.isclose(sum(posteriors), 1.0, abs_tol=2e-3), out
    # Bayes' rule with the uniform prior of zero-shot classification, on the printed log-likelihoods; the class
    # prompts must tell the classes apart (the same noise scores both, so one prompt for both would tie them)
    assert scores[0] != scores[1], out
    bayes = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0).tolist()
    assert all(math.isclose(p, b, abs_tol=2e-3) for p, b in zip(posteriors, bayes, strict=True)), (posteriors, bayes)


def _posteriors_and_scores(out: str) -> tuple[list[float], list[float]]:
    """The printed P(c|x) and log-likelihood score of each class."""
    lines = [line for line in out.splitlines() if "P(c|x)" in line]
    posteriors = [float(line.split("P(c|x) = ")[1].split()[0]) for line in lines]
    scores = [float(line.split(" = ")[2].split()[0]) for line in lines]
    return posteriors, scores


def test_mdlm_mask_is_the_extra_last_id_and_its_time_input_follows_the_masked_share(lookalikes):
    lm = load_model(str(lookalikes["mdlm"]), options=TRUSTED)
    vocab = lm.model.config.vocab_size
    assert lm.denoiser.mask_id == vocab - 1 == lm.tokenizer.mask_token_id == len(lm.tokenizer) - 1
    assert lm.denoiser.time_input == "sigma" and not lm.denoiser.attention_mask
    generate(lm, "", 5, strategy="topk", k=5)  # one pass over a fully masked text: the noisiest level
    assert torch.allclose(lm.model.last_timesteps, torch.tensor([-math.log(1e-3)]), atol=1e-4)
    ids = torch.tensor([[0, 5, lm.denoiser.mask_id, 7, lm.denoiser.mask_id, 0]])  # BOS/EOS are not content
    sigma = noise_level(ids, torch.ones_like(ids), lm.denoiser.mask_id, torch.tensor([0]))
    assert torch.allclose(sigma, torch.tensor([-math.log1p(-(1 - 1e-3) * 0.5)]))


@pytest.mark.parametrize("family", ["mdlm", "dream"])
def test_rows_of_different_lengths_score_alike_batched_or_alone(family, lookalikes):
    """MDLM takes no attention mask (rows of one length go together); Dream takes "full" or a 4-D mask with
    position ids: padding must change nothing for either."""
    lm = load_model(str(lookalikes[family]), options=TRUSTED)
    windows = [[10, 11, 12, 13, 14], [20, 21], [30, 31, 32]]
    masks = [torch.tensor([1, 0, 1, 0, 1], dtype=torch.bool), torch.tensor([0, 1], dtype=torch.bool),
             torch.tensor([1, 1, 0], dtype=torch.bool)]
    alone = masked_rows_nll(lm, windows, [[]] * 3, masks, max_tokens=1)
    batched = masked_rows_nll(lm, windows, [[]] * 3, masks, max_tokens=10_000)
    for a, b in zip(alone, batched, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_dream_logits_are_read_one_position_back(lookalikes):
    lm = load_model(str(lookalikes["dream"]), options=TRUSTED)
    assert lm.denoiser.logit_shift == 1
    ids = torch.tensor([[1, 40, 41, lm.denoiser.mask_id, 42]])
    where = ids == lm.denoiser.mask_id
    with torch.no_grad():
        raw = lm.model(input_ids=ids, attention_mask="full").logits  # what Dream's own sampler passes
        got = denoise_logits(lm, ids, torch.ones_like(ids), where)
    assert torch.allclose(got[0], raw[0, 2]) and not torch.allclose(got[0], raw[0, 3])


def test_llada_mask_comes_from_the_config_and_a_flag_overrides_it(lookalikes):
    lm = load_model(str(lookalikes["llada"]), options=TRUSTED)
    config = json.loads((lookalikes["llada"] / "config.json").read_text())
    assert lm.denoiser.mask_id == config["mask_token_id"] == lm.tokenizer.mask_token_id
    assert lm.tokenizer.mask_token == "<|mdm_mask|>" and lm.denoiser.time_input == "none"
    other = load_model(str(lookalikes["llada"]), options=LoadOptions(trust_remote_code=True, mask_id=5))
    assert other.denoiser.mask_id == other.tokenizer.mask_token_id == 5


def test_instruct_prompts_go_through_the_chat_template(lookalikes, tmp_path):
    trace = tmp_path / "t.json"
    assert main(["--trust-remote-code", "generate", "--checkpoint", str(lookalikes["llada"]), "--prompt", "hi there",
                 "--length", "3", "--json", str(trace)]) == 0
    assert json.loads(trace.read_text())["prompt"].startswith("<|start|>user\nhi there<|end|>")


def test_parameters_are_counted_from_the_safetensors_headers_and_large_models_refused(lookalikes):
    lm = load_model(str(lookalikes["dream"]), options=TRUSTED)
    assert estimate_parameters(lookalikes["dream"]) == sum(p.numel() for p in lm.model.state_dict().values())
    with pytest.raises(ModelError, match=r"needs about 18\.9 GiB .*8\.00B parameters x 2 bytes") as e:
        check_fits("big", 8_000_000_000, torch.bfloat16, torch.device("cuda"), free=10 * 2**30)
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="--allow-large-cpu"):
        check_fits("big", 2_000_000_000, torch.float32, torch.device("cpu"), free=2**40)
    check_fits("big", 2_000_000_000, torch.float32, torch.device("cpu"), allow_large_cpu=True, free=2**40)
    assert estimate_parameters("/nonexistent", {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 126464}
                               ) == 12 * 32 * 4096**2 + 126464 * 4096


# ---- classifier-free guidance ----


@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    from textdiff_core.models import save_model

    lm = load_model("tiny")
    meta = {"objective": "diffusion", "conditioning": "class", "classes": ["negative", "positive"],
            "class_prompt": "{label} review:"}
    return load_model(str(save_model(lm.model, lm.tokenizer, tmp_path_factory.mktemp("cfg") / "m", meta)))


def test_guided_logits_are_uncond_plus_scale_times_the_difference(class_model):
    lm = class_model
    mask = lm.tokenizer.mask_token_id
    ids = torch.tensor([[101, 3893, 3319, 1024, 1996, mask, mask, 102]])
    att, where, guide = torch.ones_like(ids), ids == mask, [1, 2, 3]
    uncond = ids.clone()
    uncond[0, guide] = mask
    with torch.no_grad():
        cond_l, free_l = denoise_logits(lm, ids, att, where), denoise_logits(lm, uncond, att, where)
        for s in (0.0, 1.0, 2.5):
            assert torch.allclose(guided_logits(lm, ids, att, where, guide, s), free_l + s * (cond_l - free_l),
                                  atol=1e-4)


def test_guidance_changes_class_conditional_generation_and_costs_a_second_copy(class_model):
    plain = generate(class_model, "", 8, label="positive", strategy="topk", k=2, seed=3)
    same = generate(class_model, "", 8, label="positive", strategy="topk", k=2, seed=3, cfg_scale=1.0)
    strong = generate(class_model, "", 8, label="positive", strategy="topk", k=2, seed=3, cfg_scale=4.0)
    assert same.frames[-1].ids == plain.frames[-1].ids and same.forward_passes == plain.forward_passes
    assert strong.forward_passes == 2 * plain.forward_passes and strong.settings["cfg_scale"] == 4.0
    assert strong.frames[-1].ids != plain.frames[-1].ids
    with pytest.raises(TextdiffError, match="condition to guide by"):
        generate(class_model, "", 4, cfg_scale=2.0)
    with pytest.raises(TextdiffError, match="guidance scale"):
        DecodeConfig(cfg_scale=-1).validate()


# ---- the Denoise page ----


@pytest.mark.parametrize("family", FAMILIES)
def test_denoise_page_runs_every_family_once_remote_code_is_trusted(family, lookalikes):
    from streamlit.testing.v1 import AppTest

    from pages._shared import CUSTOM
    from tests.test_app import APP

    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/denoise.py").run()
    at.sidebar.selectbox(key="pick_diffusion").set_value(CUSTOM).run()
    at.sidebar.text_input(key="custom_diffusion").set_value(str(lookalikes[family])).run()
    at.slider(key="denoise_length").set_value(6).run()
    if family != "modernbert":  # native: no custom code to trust
        at.button(key="denoise_run").click().run()
        assert not at.exception and "--trust-remote-code" in at.error[0].value and "\n" not in at.error[0].value
        at.sidebar.checkbox(key="trust_remote_code").check().run()
    at.button(key="denoise_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    trace = at.session_state["denoise_trace"]
    assert trace.n_decoded == 6 and not any(trace.frames[-1].masked)
    shimmed = [i.value for i in at.info if "loaded with shims" in i.value]
    assert len(shimmed) == (family != "modernbert"), [i.value for i in at.info]  # native code needs none


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_shot_infill_reads_the_class_slot_through_the_denoiser(family, lookalikes, capsys, monkeypatch):
    import textdiff_core.likelihood as likelihood

    calls = []
    real = likelihood.denoise_logits
    monkeypatch.setattr(likelihood, "denoise_logits", lambda *a, **k: calls.append(1) or real(*a, **k))
    # the look-alikes' small BPE vocabularies split most words; one-letter class names are one token each
    assert main(["--trust-remote-code", "classify", "--checkpoint", str(lookalikes[family]), "--method", "infill",
                 "--classes", "a,i", "--prompt-template", "{label} review:", "a dull film with loud music"]) == 0
    out = capsys.readouterr().out
    posteriors, scores = _posteriors_and_scores(out)
    assert len(posteriors) == 2 and math.isclose(sum(posteriors), 1.0, abs_tol=2e-3), out
    assert calls, "the slot's logits come through the family's denoiser (time input, shift)"
    # one window, uniform prior: the posterior is the softmax of the slot's scores, which differ between classes
    assert scores[0] != scores[1] and "1 forward pass," in out, out
    slot = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0).tolist()
    assert all(math.isclose(p, b, abs_tol=2e-3) for p, b in zip(posteriors, slot, strict=True)), (posteriors, slot)


@pytest.mark.parametrize("family", ["mdlm", "dream"])
def test_classify_and_compare_pages_run_a_family_once_remote_code_is_trusted(family, lookalikes):
    from streamlit.testing.v1 import AppTest

    from pages._shared import CUSTOM
    from tests.test_app import APP

    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/classify.py").run()
    at.sidebar.selectbox(key="pick_diffusion").set_value(CUSTOM).run()
    at.sidebar.text_input(key="custom_diffusion").set_value(str(lookalikes[family])).run()
    at.checkbox[1].uncheck().run()  # the left-to-right twin: not needed here
    at.text_area[0].set_value("a dull film with loud music").run()
    at.button[0].click().run()
    assert "--trust-remote-code" in at.error[0].value or "trust" in at.error[0].value.lower()
    at.sidebar.checkbox(key="trust_remote_code").check().run()
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(at.metric) == 1
    at.switch_page("pages/compare.py").run()
    at.sidebar.selectbox(key="pick_ar").set_value("tiny-ar").run()
    at.button(key="compare_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    sides = at.session_state["compare"]["sides"]
    assert len(sides) == 2, "the look-alike's diffusion trace beside the left-to-right one"


# ---- the real classes' interfaces, and what transformers 5 needs of them ----


def _flash_attn_import(source: str) -> str:
    return source.replace("import torch\n", "import flash_attn  # noqa: F401 - as the hub file does\nimport torch\n", 1)


def test_lookalikes_lack_what_the_real_classes_lack(lookalikes):
    """The look-alikes keep the real classes' gaps, so textdiff is tested against them (see tests/lookalikes)."""
    mdlm = load_model(str(lookalikes["mdlm"]), options=TRUSTED).model
    assert "get_input_embeddings" not in vars(type(mdlm)) and not type(mdlm)._tied_weights_keys
    with pytest.raises(NotImplementedError):
        mdlm.get_input_embeddings()
    assert isinstance(mdlm.backbone.vocab_embed.embedding, torch.nn.Parameter)
    assert "attention_mask" not in inspect.signature(type(mdlm).forward).parameters
    llada = load_model(str(lookalikes["llada"]), options=TRUSTED).model
    assert list(inspect.signature(vars(type(llada))["tie_weights"].__wrapped__).parameters) == ["self"]
    dream = load_model(str(lookalikes["dream"]), options=TRUSTED)
    assert type(dream.model)._tied_weights_keys == ["lm_head.weight"]  # the class as published
    ids = torch.tensor([[1, 40, 41, 42]])
    with pytest.raises(ModelError, match="failed in forward"):  # a [B, N] integer mask is not Dream's input
        dream.model(input_ids=ids, attention_mask=torch.ones_like(ids))


@pytest.mark.parametrize("family, shims", [("mdlm", ["post_init"]), ("llada", ["post_init", "tie_weights"]),
                                           ("dream", ["rope_default", "rotary_buffers"])])
def test_each_family_loads_through_named_shims_that_it_needs(family, shims, lookalikes, monkeypatch, capsys):
    lm = load_model(str(lookalikes[family]), options=TRUSTED)
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(lm.notes) == 1 and len(notes) == 1 and lm.notes[0] in notes[0], err
    assert lm.notes[0].split("loaded with shims: ")[1] == "; ".join(f"{s} ({SHIMS[s]})" for s in shims)
    # without them, transformers 5 refuses (or, for Dream, silently leaves positions uninitialised); the refusal
    # names the version, not "corrupt files"
    monkeypatch.setattr(remote_code, "apply_shims", lambda cls: None)
    monkeypatch.setattr(remote_code, "restore_rotary_buffers", lambda model: False)
    for module in [m for m in sys.modules if m.startswith("transformers_modules")]:
        monkeypatch.delitem(sys.modules, module)  # a fresh, unshimmed copy of the model's code
    with pytest.raises(ModelError, match=r"does not load under transformers 5\.") as refused:
        load_model(str(lookalikes[family]), options=TRUSTED)
    assert "corrupt" not in str(refused.value) and "\n" not in str(refused.value)


def test_dream_rotary_frequencies_are_restored_after_loading(lookalikes):
    lm = load_model(str(lookalikes["dream"]), options=TRUSTED)
    rotary = lm.model.model.rotary_emb
    dim = lm.model.config.hidden_size // lm.model.config.num_attention_heads
    assert torch.allclose(rotary.inv_freq, 1.0 / 10000.0 ** (torch.arange(0, dim, 2).float() / dim))
    ids = torch.tensor([[1, 40, 41, lm.denoiser.mask_id, 42]])
    again = load_model(str(lookalikes["dream"]), options=TRUSTED)
    with torch.no_grad():
        assert torch.equal(lm.model(input_ids=ids, attention_mask="full").logits,
                           again.model(input_ids=ids, attention_mask="full").logits)


def test_dream_with_tied_embeddings_maps_its_list_of_tied_keys(tmp_path, monkeypatch):
    path = make("dream", tmp_path / "dream-tied")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    weights = load_file(path / "model.safetensors")  # a tied checkpoint stores the shared matrix once
    save_file({k: v for k, v in weights.items() if k != "lm_head.weight"}, path / "model.safetensors",
              metadata={"format": "pt"})
    lm = load_model(str(path), options=TRUSTED)
    assert lm.model.lm_head.weight is lm.model.model.embed_tokens.weight
    assert "tied_keys_list" in lm.notes[0]
    real = remote_code.apply_shims

    def all_but_the_tied_keys_shim(cls):
        real(cls)
        del cls.get_expanded_tied_weights_keys  # transformers' own again

    monkeypatch.setattr(remote_code, "apply_shims", all_but_the_tied_keys_shim)
    for module in [m for m in sys.modules if m.startswith("transformers_modules")]:
        monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ModelError, match=r"does not load under transformers 5\..*AttributeError"):
        load_model(str(path), options=TRUSTED)


def test_a_cuda_only_import_is_named_in_one_line(tmp_path, capsys):
    path = make("mdlm", tmp_path / "mdlm-flash", edit=_flash_attn_import)
    assert main(["--trust-remote-code", "generate", "--checkpoint", str(path), "--prompt", "The movie was",
                 "--length", "16", "--json", str(tmp_path / "g.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "flash_attn (CUDA-only" in err and "corrupt" not in err, err
    assert not (tmp_path / "g.json").exists()


@pytest.mark.parametrize("command", ["generate", "perplexity"])
def test_contract_commands_on_an_mdlm_layout_directory(command, lookalikes, csv, tmp_path):
    """The published MDLM's layout: model_type mdlm, auto_map to AutoModelForMaskedLM, custom code without
    get_input_embeddings, the mask the last vocabulary id, unknown to its tokenizer."""
    path = str(lookalikes["mdlm"])
    config = json.loads((lookalikes["mdlm"] / "config.json").read_text())
    assert config["model_type"] == "mdlm" and "AutoModelForMaskedLM" in config["auto_map"]
    out = tmp_path / "out.json"
    if command == "generate":
        assert main(["--trust-remote-code", "generate", "--checkpoint", path, "--prompt", "The movie was",
                     "--length", "16", "--json", str(out)]) == 0
        frames = json.loads(out.read_text())["frames"]
        assert sum(frames[0]["masked"]) == 16 and not any(frames[-1]["masked"])
    else:
        assert main(["--trust-remote-code", "perplexity", "--checkpoint", path, "--data", str(csv), "--split",
                     "all", "--limit", "5", "--out", str(out)]) == 0
        assert json.loads(out.read_text())["n"] == 3  # the file holds 3 texts
