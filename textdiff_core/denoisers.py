"""One interface over masked-diffusion denoisers: textdiff's own models and the published families.

Every masked model is called through ``denoise_logits`` (decoding, likelihood, classification), which knows the
few ways the families differ, all read from the model's config and overridable (``Denoiser`` fields, CLI flags):

  textdiff    any ``*ForMaskedLM`` (BERT, RoBERTa, ...); mask: the tokenizer's [MASK]
  mdlm        custom code, ``AutoModelForMaskedLM``; mask: the last vocabulary id, unknown to its GPT-2 tokenizer;
              ``forward(input_ids, timesteps)`` with no attention mask; context ``model_length``
  llada       custom code, ``AutoModel``; mask: ``config.mask_token_id`` (126336); context
              ``max_sequence_length``; chat template (instruct models)
  dream       custom code, ``AutoModel``; mask: ``config.mask_token_id`` (151666); logits shifted: position i
              predicts token i+1; attention mask as its sampler passes it ("full", or 4-D with position ids);
              chat template (instruct models)
  modernbert  native ``ModernBertForMaskedLM``; mask: the tokenizer's [MASK]; chat template (chat models)

The published weights need a GPU; this project exercises these families through tiny random look-alikes
(``tests/lookalikes``), not the downloaded models. Custom modeling code runs only when the caller allows it
(``--trust-remote-code``). Loading is sized first: ``estimate_parameters`` and ``check_fits`` refuse, in one line, a
model that cannot fit the device.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from textdiff_core.errors import ModelError

FAMILIES = ("textdiff", "mdlm", "llada", "dream", "modernbert")
TIME_INPUTS = ("none", "sigma")  # sigma: MDLM's log-linear noise level -log(1 - (1 - eps) t) of the masked share t
MDLM_EPS = 1e-3  # the eps of that noise level
# "2d": the [B, N] padding mask of transformers; "4d": what Dream's own sampler passes: the string "full" when no row
# is padded, else a boolean [B, 1, N, N] mask (the outer AND of the padding mask) with position ids cumsum(mask) - 1
MASK_FORMS = ("2d", "4d")
REMOTE_CODE_FLAG = "--trust-remote-code"
LARGE_CPU_PARAMS = 1e9  # on CPU, models above this many parameters need allow_large_cpu
MEMORY_MARGIN = 1.2  # weights x this, plus a fixed allowance, for activations and the runtime
MEMORY_FIXED_GB = 1.0


@dataclass
class Denoiser:
    """How to call one masked model: everything that differs between the families."""

    family: str = "textdiff"
    mask_id: int | None = None  # the id written at masked positions
    logit_shift: int = 0  # 1: the logits at position i predict token i+1 (Dream)
    time_input: str = "none"  # "sigma": pass the noise level as ``timesteps`` (MDLM)
    attention_mask: bool = True  # False: forward takes no attention mask (rows of one length are batched together)
    mask_form: str = "2d"  # "2d": a [B, N] padding mask; "4d": Dream's (see MASK_FORMS)
    context_length: int | None = None  # positions the model takes
    chat_template: bool = False  # wrap prompts in the tokenizer's chat template (instruct models)
    dtype: str | None = None  # weights' dtype as loaded (bf16 on GPU)

    @property
    def plain(self) -> bool:
        """True when the model is called like any HF masked LM (so its head can be applied where needed only)."""
        return self.logit_shift == 0 and self.time_input == "none" and self.attention_mask and self.mask_form == "2d"

    def describe(self) -> dict:
        return asdict(self)


def read_config(path: str | Path) -> dict:
    """A model directory's config.json as a dict ({} when there is none)."""
    file = Path(path) / "config.json"
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{file} is not valid JSON ({exc})") from exc


def family_of(config: dict) -> str:
    """The denoiser family a config (as a dict) belongs to; ``textdiff`` for any ordinary masked LM."""
    model_type = str(config.get("model_type", "")).lower()
    if model_type in ("mdlm", "llada", "dream", "modernbert"):
        return model_type
    return "textdiff"


def needs_remote_code(config: dict) -> bool:
    """True when loading runs modeling code shipped with the model (its config's ``auto_map``)."""
    return bool(config.get("auto_map"))


def refuse_remote_code(name: str, config: dict) -> ModelError:
    """The one-line refusal for custom code the user has not allowed."""
    files = sorted({str(v).split(".")[0] + ".py" for v in (config.get("auto_map") or {}).values()})
    return ModelError(f"{name} runs its own modeling code ({', '.join(files)}); pass {REMOTE_CODE_FLAG} to allow it "
                      "(only for models you trust)")


def auto_class_name(config: dict) -> str:
    """Which transformers Auto class loads a custom-code model: the masked-LM one when mapped, else AutoModel."""
    mapped = config.get("auto_map") or {}
    for name in ("AutoModelForMaskedLM", "AutoModel", "AutoModelForCausalLM"):
        if name in mapped:
            return name
    return "AutoModelForMaskedLM"


def _context_length(config: dict) -> int | None:
    for key in ("max_position_embeddings", "model_length", "max_sequence_length", "n_positions"):
        if config.get(key):
            return int(config[key])
    return None


def denoiser_for(config: dict, tokenizer, overrides: dict | None = None) -> Denoiser:
    """The denoiser settings a model's config implies, then ``overrides`` (fields of ``Denoiser``; None = keep)."""
    family = family_of(config)
    chat = family in ("llada", "dream", "modernbert") and bool(getattr(tokenizer, "chat_template", None))
    spec = Denoiser(family=family, context_length=_context_length(config), chat_template=chat)
    if family == "mdlm":
        mask = config.get("mask_token_id")
        spec = replace(spec, mask_id=int(mask) if mask is not None else int(config["vocab_size"]) - 1,
                       time_input="sigma", attention_mask=False)
    elif family in ("llada", "dream"):
        mask = config.get("mask_token_id")
        spec = replace(spec, mask_id=int(mask) if mask is not None else tokenizer.mask_token_id,
                       logit_shift=1 if family == "dream" else 0, mask_form="4d" if family == "dream" else "2d")
    else:
        spec = replace(spec, mask_id=tokenizer.mask_token_id)
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(changes) - set(Denoiser.__dataclass_fields__)
    if unknown:
        raise ModelError(f"unknown denoiser setting(s): {', '.join(sorted(unknown))}")
    spec = replace(spec, **changes)
    if spec.time_input not in TIME_INPUTS:
        raise ModelError(f"time input must be one of {', '.join(TIME_INPUTS)}, got {spec.time_input!r}")
    if spec.mask_form not in MASK_FORMS:
        raise ModelError(f"attention mask form must be one of {', '.join(MASK_FORMS)}, got {spec.mask_form!r}")
    if spec.logit_shift not in (0, 1):
        raise ModelError(f"logit shift must be 0 or 1, got {spec.logit_shift}")
    return spec


def attach_mask_token(tokenizer, mask_id: int | None, vocab_size: int, name: str) -> None:
    """Make ``tokenizer.mask_token_id`` equal the denoiser's mask id, so every text-side path (layout, infilling,
    banned tokens, display) agrees with the model: name an existing token as the mask, or, for a mask id right after
    the tokenizer's vocabulary (MDLM: 50257 after GPT-2's 50257 tokens), add one there."""
    if mask_id is None:
        raise ModelError(f"{name!r} has no mask token: give its id (--mask-id)")
    if not 0 <= mask_id < vocab_size:
        raise ModelError(f"{name!r}: mask id {mask_id} is outside the model's {vocab_size}-token vocabulary")
    if tokenizer.mask_token_id == mask_id:
        return
    if mask_id < len(tokenizer):
        tokenizer.add_special_tokens({"mask_token": tokenizer.convert_ids_to_tokens(mask_id)})
    elif mask_id == len(tokenizer):
        tokenizer.add_special_tokens({"mask_token": "<|mask|>"})
    if tokenizer.mask_token_id != mask_id:
        raise ModelError(f"{name!r}: mask id {mask_id} is neither a token of its tokenizer ({len(tokenizer)} tokens) "
                         "nor the id right after them; check --mask-id")


def chat_prompt(tokenizer, prompt: str) -> str:
    """``prompt`` as the user's turn of the tokenizer's chat template, ready for the assistant's reply."""
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError("this model's tokenizer has no chat template")
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


# ---- calling the model ----


def noise_level(input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_id: int, special: torch.Tensor
                ) -> torch.Tensor:
    """MDLM's time input per row: sigma = -log(1 - (1 - eps) t), t = masked share of the row's content positions
    (attended, not a special token such as BOS/EOS); a fully masked text gets t = 1, the noisiest level."""
    content = attention_mask.bool() & ~torch.isin(input_ids, special.to(input_ids.device))
    masked = (input_ids == mask_id) & attention_mask.bool()
    t = masked.sum(1).float() / (content | masked).sum(1).clamp(min=1).float()
    return -torch.log1p(-(1 - MDLM_EPS) * t)


def _forward(lm, spec: Denoiser, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Full logits [B, T, vocab] with the family's inputs; position i's row predicts token i (shift undone)."""
    kwargs: dict = {}
    if spec.attention_mask and spec.mask_form == "4d":
        keep = attention_mask.bool()
        if bool(keep.all()):
            kwargs["attention_mask"] = "full"
        else:
            kwargs["attention_mask"] = keep[:, None, None, :] & keep[:, None, :, None]
            kwargs["position_ids"] = (keep.long().cumsum(-1) - 1).masked_fill(~keep, 1)
    elif spec.attention_mask:
        kwargs["attention_mask"] = attention_mask
    if spec.time_input == "sigma":
        special = torch.tensor(sorted({i for i in lm.tokenizer.all_special_ids if i != spec.mask_id}),
                               dtype=torch.long)
        kwargs["timesteps"] = noise_level(input_ids, attention_mask, spec.mask_id, special)
    out = lm.model(input_ids=input_ids, **kwargs)
    # an output object, or what the real classes return without return_dict: a tuple (LLaDA, Dream), a tensor (MDLM)
    logits = out.logits if hasattr(out, "logits") else out[0] if isinstance(out, tuple | list) else out
    if spec.logit_shift:  # row i holds the prediction for token i+1: move it to i+1 (row 0 keeps its own)
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    return logits


def denoise_logits(lm, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
                   ) -> torch.Tensor:
    """Logits [N, vocab] at the N positions where ``positions`` is True (row-major), for any masked model.

    Plain models go through ``logits_at`` (the vocabulary projection only where needed); the others get
    their time input, shift and, without attention-mask support, rows of equal length batched together.
    """
    spec = denoiser_of(lm)
    if spec.plain:
        return logits_at(lm.model, input_ids, attention_mask, positions)
    lengths = attention_mask.sum(1)
    if spec.attention_mask or bool((lengths == input_ids.shape[1]).all()):
        return _forward(lm, spec, input_ids, attention_mask)[positions]
    parts: dict[int, torch.Tensor] = {}  # no attention mask: never let a row see another row's padding
    for length in lengths.unique().tolist():
        rows = (lengths == length).nonzero()[:, 0]
        full = _forward(lm, spec, input_ids[rows, :length], attention_mask[rows, :length])
        for j, r in enumerate(rows.tolist()):
            parts[r] = full[j][positions[r, :length]]
    return torch.cat([parts[r] for r in range(input_ids.shape[0])])


def denoiser_of(lm) -> Denoiser:
    """The model's denoiser settings (set by ``load_model``; derived from the config for models built in code)."""
    spec = getattr(lm, "denoiser", None)
    if spec is None:
        config = lm.model.config.to_dict() if hasattr(lm.model.config, "to_dict") else {}
        spec = Denoiser(mask_id=lm.tokenizer.mask_token_id, context_length=_context_length(config))
    return spec


# ---- logits where they are needed ----


def _body_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """The transformer body and the LM head, when the head can be applied to selected hidden states alone."""
    for attr in ("cls", "lm_head"):  # BERT family; RoBERTa, GPT-2, Llama
        head = getattr(model, attr, None)
        if isinstance(head, nn.Module) and model.base_model is not model:
            return model.base_model, head
    return None


def logits_at(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Logits [N, vocab] at the N positions where ``positions`` is True, in row-major order.

    The vocabulary projection is half of MiniLM's compute, so it is applied only where logits are needed (masked
    positions in training and scoring). Models whose head cannot be split fall back to a full forward pass.
    """
    parts = _body_and_head(model)
    if parts is None:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[positions]
    body, head = parts
    kwargs = {"use_cache": False} if is_causal(model) else {}
    hidden = body(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
    return head(hidden[positions])


def is_causal(model: nn.Module) -> bool:
    """True for left-to-right models (decoder configs, *ForCausalLM, *LMHeadModel)."""
    decoder = bool(getattr(model.config, "is_decoder", False))
    return decoder or type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))


# ---- sizing a model before loading it ----


_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
          "F8_E4M3": 1, "F8_E5M2": 1}


def _safetensors_params(file: Path) -> int:
    """Parameter count from a safetensors file's header (no weights read)."""
    with file.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def safetensors_parameters(directory: str | Path) -> int | None:
    """Parameters in a directory's safetensors files, from their headers; None when it has none or one is unreadable."""
    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors")) if directory.is_dir() else []
    try:
        return sum(_safetensors_params(f) for f in files) or None
    except (OSError, ValueError, struct.error, AttributeError, KeyError, TypeError):
        return None


def estimate_parameters(path: str | Path, config: dict | None = None) -> int | None:
    """Parameters of a model directory: exact from its safetensors headers, else its shard index's total size (at
    the config's dtype), else a transformer's count from the config (12 L d^2 + V d); None when nothing tells."""
    path = Path(path)
    exact = safetensors_parameters(path)
    if exact:
        return exact
    config = config if config is not None else read_config(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        total = json.loads(index.read_text()).get("metadata", {}).get("total_size")
        if total:
            return int(total) // (4 if config.get("torch_dtype", config.get("dtype")) == "float32" else 2)
    width = config.get("hidden_size") or config.get("d_model") or config.get("hidden_dim")
    layers = config.get("num_hidden_layers") or config.get("n_layers") or config.get("n_blocks")
    vocab = config.get("vocab_size")
    if width and layers and vocab:
        return 12 * layers * width**2 + vocab * width
    return None


def available_memory(device: torch.device) -> int:
    """Free bytes on the device: CUDA's free memory, or the machine's available RAM on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def check_fits(name: str, params: int | None, dtype: torch.dtype, device: torch.device,
               allow_large_cpu: bool = False, free: int | None = None) -> None:
    """Refuse, in one line with the estimate, a model that cannot fit the device (or a large one on CPU unasked)."""
    if params is None:
        return
    per = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    need = params * per * MEMORY_MARGIN + MEMORY_FIXED_GB * 2**30
    free = available_memory(device) if free is None else free
    where = "GPU" if device.type == "cuda" else "CPU RAM"
    estimate = f"{params / 1e9:.2f}B parameters x {per} bytes ({str(dtype).removeprefix('torch.')}) + margin"
    if need > free:
        raise ModelError(f"{name} needs about {need / 2**30:.1f} GiB ({estimate}); the {where} has "
                         f"{free / 2**30:.1f} GiB free")
    if device.type == "cpu" and params > LARGE_CPU_PARAMS and not allow_large_cpu:
        raise ModelError(f"{name} has {params / 1e9:.2f}B parameters ({need / 2**30:.1f} GiB): far too slow on a CPU; "
                         "use a GPU, or pass --allow-large-cpu to load it anyway")
