"""Build tiny random look-alikes of the published diffusion LMs as local directories in each family's hub layout.

    make("mdlm", out)  ->  out/config.json (model_type, auto_map -> modeling_mdlm.py), configuration_mdlm.py,
                           modeling_mdlm.py, model.safetensors, tokenizer files

Each ``modeling_<family>.py`` here mirrors the real hub file's classes and interfaces (see its docstring), including
what they lack, so that loading goes through the same transformers paths as the real models: remote code with a
relative import of its configuration file, classes that never call ``post_init`` (MDLM, LLaDA), an argument-less
``tie_weights`` (LLaDA), a list of tied-weight keys (Dream). The weights are written with safetensors directly, as
the real ones were written by an older transformers.

Families: mdlm (GPT-2-style byte-level tokenizer without a mask token; the mask is the extra last vocabulary id),
llada (mask id from config.mask_token_id, a reserved token inside the vocabulary; chat template), dream (shifted
logits; its tokenizer names <|mask|>; chat template), modernbert (native ModernBertForMaskedLM, [MASK], chat template).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).parent
FAMILIES = ("mdlm", "llada", "dream", "modernbert")
SENTENCES = [
    "the movie was great and the acting was fine",
    "a dull film with a thin plot and loud music",
    "i loved every minute of this warm and clever story",
    "the worst script i have seen in years, avoid it",
    "positive review: a joy from start to end",
    "negative review: boring, long and badly acted",
]
CHAT = ("{% for m in messages %}<|start|>{{ m['role'] }}\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|start|>assistant\n{% endif %}")
# family -> the auto_map of its hub config.json (Auto class -> "file.Class")
AUTO_MAP = {
    "mdlm": {"AutoConfig": "configuration_mdlm.MDLMConfig", "AutoModelForMaskedLM": "modeling_mdlm.MDLM"},
    "llada": {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM",
              "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"},
    "dream": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
}


def tokenizer(specials: list[str], **roles: str):
    """A byte-level BPE tokenizer (GPT-2 style: every text encodes) trained here on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(SENTENCES, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


def _classes(out: Path, family: str):
    """The config and model classes from the copied files, imported as a package so the relative import works."""
    import importlib.util
    import sys

    name = f"_lookalike_{family}_{abs(hash(str(out)))}"
    spec = importlib.util.spec_from_file_location(name, out / "__init__.py", submodule_search_locations=[str(out)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    try:
        config_ref, model_ref = AUTO_MAP[family]["AutoConfig"], next(v for k, v in AUTO_MAP[family].items()
                                                                     if k != "AutoConfig")
        found = []
        for ref in (config_ref, model_ref):
            module_name, cls = ref.split(".")
            module = importlib.import_module(f"{name}.{module_name}")
            if "default" not in getattr(module, "ROPE_INIT_FUNCTIONS", {"default": None}):
                # transformers 5 dropped the entry the real Dream file reads; the builder only needs some weights
                module.ROPE_INIT_FUNCTIONS = {**module.ROPE_INIT_FUNCTIONS, "default": _default_rope}
            found.append(getattr(module, cls))
        return found
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def _default_rope(config, device=None, **kwargs):
    dim = config.hidden_size // config.num_attention_heads
    return 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2).float() / dim)), 1.0


def make(family: str, out: str | Path, seed: int = 0, edit: Callable[[str], str] | None = None) -> Path:
    """Write a look-alike of ``family`` into ``out`` (created) and return it.

    ``edit`` rewrites the modeling file's source before it is saved (e.g. to add the real MDLM's flash_attn import,
    or a forward that raises), for tests of what loading and calling do with such code.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if family == "modernbert":
        from transformers import ModernBertConfig, ModernBertForMaskedLM

        tok = tokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], pad_token="[PAD]", unk_token="[UNK]",
                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
        tok.chat_template = CHAT
        config = ModernBertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, max_position_embeddings=256, pad_token_id=tok.pad_token_id,
                                  bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                                  cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id,
                                  global_attn_every_n_layers=1, local_attention=64)
        model = ModernBertForMaskedLM(config)
        with torch.no_grad():  # larger random weights than the init, so that outputs depend on the context
            for p in model.parameters():
                p.normal_(0.0, 0.5) if p.dim() > 1 else None
        model.save_pretrained(out)
        tok.save_pretrained(out)
        return out
    from safetensors.torch import save_file

    for kind in ("configuration", "modeling"):
        shutil.copy(HERE / f"{kind}_{family}.py", out / f"{kind}_{family}.py")
    (out / "__init__.py").touch()  # for importing the copies here; the hub repositories have none
    config_class, model_class = _classes(out, family)
    if family == "mdlm":  # GPT-2 style: one <|endoftext|>, no mask token; the model has one id more
        tok = tokenizer(["<|endoftext|>"], bos_token="<|endoftext|>", eos_token="<|endoftext|>")
        config = config_class(vocab_size=len(tok) + 1, model_length=128)
    elif family == "llada":  # a reserved token inside the vocabulary is the mask, named only by the config
        tok = tokenizer(["<|endoftext|>", "<|eot_id|>", "<|mdm_mask|>"], bos_token="<|endoftext|>",
                        eos_token="<|eot_id|>")
        tok.chat_template = CHAT
        config = config_class(vocab_size=len(tok) + 8, mask_token_id=tok.convert_tokens_to_ids("<|mdm_mask|>"),
                              max_sequence_length=128)
    else:  # dream
        tok = tokenizer(["<|beginoftext|>", "<|endoftext|>", "<|mask|>"], bos_token="<|beginoftext|>",
                        eos_token="<|endoftext|>", mask_token="<|mask|>")
        tok.chat_template = CHAT
        config = config_class(vocab_size=len(tok), mask_token_id=tok.mask_token_id, max_position_embeddings=128,
                              pad_token_id=tok.eos_token_id)
    model = model_class(config)
    with torch.no_grad():  # larger random weights than the default init, so that outputs differ between inputs
        for p in model.parameters():
            p.normal_(0.0, 0.5) if p.dim() > 1 else None
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    (out / "__init__.py").unlink()
    config.auto_map = AUTO_MAP[family]
    config.architectures = [model_class.__name__]
    config.save_pretrained(out)
    tok.save_pretrained(out)
    if edit is not None:
        file = out / f"modeling_{family}.py"
        file.write_text(edit(file.read_text()))
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == config.model_type and saved["auto_map"], saved
    return out
