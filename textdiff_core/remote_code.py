"""Loading the published diffusion LMs' own modeling code (``trust_remote_code``) under transformers 5.

The hub repositories of MDLM, LLaDA and Dream were written for transformers 4, and transformers 5 refuses them as
published for reasons a small, named shim fixes; each is applied to the model class before ``from_pretrained``, only
where the class needs it, and reported in one line (``LoadedModel.notes``):

  post_init        ``__init__`` never calls ``post_init()`` (MDLM, LLaDA), so ``from_pretrained`` misses
                   ``all_tied_weights_keys``: it is called once the class's own ``__init__`` returns
  tie_weights      ``tie_weights(self)`` takes no arguments (LLaDA) while ``from_pretrained`` passes
                   ``missing_keys=`` and ``recompute_mapping=``: they are accepted and dropped
  tied_keys_list   ``_tied_weights_keys`` is a list (Dream), transformers 4's form, where transformers 5 reads a
                   mapping {tied parameter: source}: each listed parameter is mapped to the input embeddings' weight
  rope_default     the code reads ``ROPE_INIT_FUNCTIONS["default"]`` (Dream's rotary embedding, copied from
                   transformers 4.45's Llama), an entry transformers 5 removed: the module gets its own copy of the
                   table with the default RoPE frequencies added
  rotary_buffers   a rotary embedding keeps ``inv_freq`` as a non-persistent buffer (Dream) that transformers 5
                   leaves uninitialised after loading unless the class's own ``_init_weights`` restores it (Dream's
                   does not): it is recomputed with the module's own ``rope_init_fn`` after loading

A failure that no shim fixes is named for what it is: a package the modeling code imports that is not installed
(``flash_attn`` is CUDA-only), or modeling code that does not work with the installed transformers; and an
exception raised inside such a model's ``forward`` becomes a one-line ``ModelError`` (``guard_forward``).
"""

from __future__ import annotations

import functools
import inspect
import re
import sys

import torch
from torch import nn

from textdiff_core.errors import ModelError

SHIMS = {
    "post_init": "its __init__ never calls post_init()",
    "tie_weights": "its tie_weights() takes no arguments",
    "tied_keys_list": "its _tied_weights_keys is a list (transformers 4's form)",
    "rope_default": "it reads ROPE_INIT_FUNCTIONS['default'], gone in transformers 5",
    "rotary_buffers": "its rotary inv_freq buffers are not restored after loading",
}
CUDA_ONLY = {"flash_attn": "CUDA-only: it installs and runs only beside an NVIDIA GPU"}


def model_class(name_or_path: str, config, auto_name: str) -> type:
    """The class a custom-code model's ``config.auto_map[auto_name]`` names, imported from its files."""
    # deferred: transformers takes seconds to import
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    reference = (getattr(config, "auto_map", None) or {}).get(auto_name)
    if reference is None:
        raise ModelError(f"{name_or_path}: its config maps no class to {auto_name}")
    return get_class_from_dynamic_module(reference, name_or_path)


def apply_shims(cls: type) -> None:
    """Make ``cls`` loadable by transformers 5 (see the module docstring); idempotent, records what it did."""
    if cls.__dict__.get("_textdiff_shimmed"):
        return
    cls._textdiff_shimmed = True
    cls._textdiff_shims = set()
    own_init = cls.__init__

    @functools.wraps(own_init)
    def __init__(self, *args, **kwargs):  # noqa: N807 - it replaces the class's __init__
        own_init(self, *args, **kwargs)
        if type(self) is cls and not hasattr(self, "all_tied_weights_keys"):
            cls._textdiff_shims.add("post_init")
            self.post_init()

    cls.__init__ = __init__
    tie = cls.__dict__.get("tie_weights")
    if tie is not None and len(inspect.signature(tie).parameters) == 1:  # just self
        @functools.wraps(tie)
        def tie_weights(self, *args, **kwargs):
            if args or kwargs:
                cls._textdiff_shims.add("tie_weights")
            return tie(self)

        cls.tie_weights = tie_weights
    if isinstance(getattr(cls, "_tied_weights_keys", None), list | tuple):
        listed = list(cls._tied_weights_keys)
        expand = cls.get_expanded_tied_weights_keys

        @functools.wraps(expand)
        def get_expanded_tied_weights_keys(self, all_submodels: bool = False):
            if isinstance(self._tied_weights_keys, list | tuple):
                self._tied_weights_keys = _as_mapping(self, listed)
            if getattr(self.config, "tie_word_embeddings", False):  # only then does transformers 5 read the keys
                cls._textdiff_shims.add("tied_keys_list")
            return expand(self, all_submodels)

        cls.get_expanded_tied_weights_keys = get_expanded_tied_weights_keys
    own = {sys.modules.get(c.__module__) for c in cls.__mro__ if c.__module__.startswith("transformers_modules.")}
    for module in own - {None}:  # the model's own files only, never transformers' modules
        table = getattr(module, "ROPE_INIT_FUNCTIONS", None)
        if isinstance(table, dict) and "default" not in table:
            module.ROPE_INIT_FUNCTIONS = {**table, "default": _default_rope}  # this module's copy only
            cls._textdiff_shims.add("rope_default")


def _default_rope(config=None, device=None, seq_len=None, **rope_kwargs) -> tuple[torch.Tensor, float]:
    """transformers 4's default RoPE frequencies, 1 / base^(2i/d), from explicit kwargs or the config."""
    if rope_kwargs:
        base, dim = rope_kwargs["base"], rope_kwargs["dim"]
    else:
        base = config.rope_theta
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        dim = int(head_dim * getattr(config, "partial_rotary_factor", 1.0))
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float().to(device) / dim
    return 1.0 / (base**exponents), 1.0


def restore_rotary_buffers(model: nn.Module) -> bool:
    """Recompute every rotary embedding's non-persistent ``inv_freq`` with its own ``rope_init_fn`` (what its
    ``__init__`` did, on the meta device under transformers 5). True when any value changed."""
    changed = False
    for module in model.modules():
        fn = getattr(module, "rope_init_fn", None)
        if fn is None or "inv_freq" not in getattr(module, "_non_persistent_buffers_set", ()):
            continue
        with torch.no_grad():
            value, _ = fn(module.config, module.inv_freq.device, **getattr(module, "rope_kwargs", {}))
            value = value.to(module.inv_freq.dtype)
            if value.shape != module.inv_freq.shape or not torch.equal(value, module.inv_freq):
                changed = True
                module.inv_freq = value
            if isinstance(getattr(module, "original_inv_freq", None), torch.Tensor):
                module.original_inv_freq = module.inv_freq
    return changed


def _as_mapping(model: nn.Module, listed: list[str]) -> dict[str, str]:
    """transformers 4's list of parameters tied to the input embeddings as transformers 5's {tied: source}."""
    weight = model.get_input_embeddings().weight
    source = next(name for name, p in model.named_parameters(remove_duplicate=False) if p is weight)
    return {name: source for name in listed if name != source}


def applied(cls: type) -> list[str]:
    """The shims that took effect on ``cls`` (in ``SHIMS`` order)."""
    done = getattr(cls, "_textdiff_shims", set())
    return [name for name in SHIMS if name in done]


def note(name: str, cls: type, shims: list[str]) -> str:
    """The one line that says which shims made a model load."""
    # deferred: transformers takes seconds to import
    import transformers

    reasons = "; ".join(f"{s} ({SHIMS[s]})" for s in shims)
    return (f"{name}: {cls.__name__}'s modeling code predates transformers {transformers.__version__}; "
            f"loaded with shims: {reasons}")


def explain_failure(name: str, exc: BaseException) -> ModelError:
    """One line naming why custom modeling code did not load: a missing package, or an incompatibility."""
    # deferred: transformers takes seconds to import
    import transformers

    text = " ".join(str(exc).split())
    if isinstance(exc, ImportError):
        missing = re.search(r"not found in your environment: ([\w\-, .]+?)\. Run", text)
        packages = [p.strip() for p in missing.group(1).split(",")] if missing else [getattr(exc, "name", None)]
        packages = [p for p in packages if p]
        if packages:
            why = "; ".join(f"{p} ({CUDA_ONLY[p]})" if p in CUDA_ONLY else p for p in packages)
            return ModelError(f"{name}'s modeling code imports packages that are not installed here: {why}")
    return ModelError(f"{name}'s modeling code does not load under transformers {transformers.__version__} "
                      f"({type(exc).__name__}: {text[:200]})")


def guard_forward(model: nn.Module, name: str) -> None:
    """Make an exception raised inside a custom-code model's ``forward`` a one-line ``ModelError``."""
    forward = model.forward

    @functools.wraps(forward)
    def guarded(*args, **kwargs):
        try:
            return forward(*args, **kwargs)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - foreign code fails in any way; the user must see which and where
            text = " ".join(str(exc).split())[:200]
            raise ModelError(f"{name}'s own modeling code failed in forward ({type(exc).__name__}: {text}); "
                             "it may need a GPU, other inputs or another transformers version") from exc

    model.forward = guarded
