"""Build tiny random look-alikes of the published diffusion LMs as local directories in each family's hub layout.

    make("mdlm", out)  ->  out/config.json (model_type, auto_map -> modeling_lookalike.py), model.safetensors,
                           tokenizer files

Families: mdlm (GPT-2-style byte-level tokenizer without a mask token; the mask is the extra last vocabulary id),
llada (mask id from config.mask_token_id, a reserved token inside the vocabulary; chat template), dream (shifted
logits; its tokenizer names <|mask|>; chat template), modernbert (native ModernBertForMaskedLM, [MASK], chat template).
"""

from __future__ import annotations

import json
import shutil
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
AUTO = {"mdlm": ("AutoModelForMaskedLM", "MDLM", "MDLMConfig"),
        "llada": ("AutoModel", "LLaDAModelLM", "LLaDAConfig"),
        "dream": ("AutoModel", "DreamModel", "DreamConfig")}


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


def make(family: str, out: str | Path, seed: int = 0) -> Path:
    """Write a look-alike of ``family`` into ``out`` (created) and return it."""
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
        ModernBertForMaskedLM(config).save_pretrained(out)
        tok.save_pretrained(out)
        return out
    import importlib.util

    spec = importlib.util.spec_from_file_location("modeling_lookalike", HERE / "modeling_lookalike.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    auto, model_class, config_class = AUTO[family]
    if family == "mdlm":  # GPT-2 style: one <|endoftext|>, no mask token; the model has one id more
        tok = tokenizer(["<|endoftext|>"], bos_token="<|endoftext|>", eos_token="<|endoftext|>")
        config = module.MDLMConfig(vocab_size=len(tok) + 1, model_length=128)
    elif family == "llada":  # a reserved token inside the vocabulary is the mask, named only by the config
        tok = tokenizer(["<|endoftext|>", "<|eot_id|>", "<|mdm_mask|>"], bos_token="<|endoftext|>",
                        eos_token="<|eot_id|>")
        tok.chat_template = CHAT
        config = module.LLaDAConfig(vocab_size=len(tok) + 8, mask_token_id=tok.convert_tokens_to_ids("<|mdm_mask|>"),
                                    max_sequence_length=128)
    else:  # dream
        tok = tokenizer(["<|beginoftext|>", "<|endoftext|>", "<|mask|>"], bos_token="<|beginoftext|>",
                        eos_token="<|endoftext|>", mask_token="<|mask|>")
        tok.chat_template = CHAT
        config = module.DreamConfig(vocab_size=len(tok), mask_token_id=tok.mask_token_id, max_position_embeddings=128)
    config.auto_map = {"AutoConfig": f"modeling_lookalike.{config_class}", auto: f"modeling_lookalike.{model_class}"}
    config.architectures = [model_class]
    getattr(module, model_class)(config).save_pretrained(out)
    tok.save_pretrained(out)
    shutil.copy(HERE / "modeling_lookalike.py", out / "modeling_lookalike.py")
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == config.model_type and saved["auto_map"], saved
    return out
