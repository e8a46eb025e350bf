"""Where textdiff keeps derived files that are expensive to rebuild (e.g. the converted SmolLM2 weights)."""

import os
from collections.abc import Callable
from pathlib import Path

from textdiff_core.errors import TextdiffError


def cache_location() -> Path:
    """``$TEXTDIFF_CACHE`` if set, else ``~/.cache/textdiff`` (the one place that variable is read)."""
    return Path(os.environ.get("TEXTDIFF_CACHE", Path.home() / ".cache" / "textdiff"))


def cache_dir() -> Path:
    """``cache_location()``, created on first use."""
    path = cache_location()
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary path)`` beside ``path``, then rename it into place: a reader, or a run that fails or is
    killed half-way, never sees a half-written file (the old one, if any, stays until the new one is complete)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial{path.suffix}")  # same suffix: writers that go by it still do
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_file(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """``write_atomic`` for an output the user named: its directory made first, and a failure said in one line (a
    ``TextdiffError``) rather than a traceback."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(path, write)
    except OSError as exc:
        raise TextdiffError(f"cannot write {path}: {exc.strerror or exc}") from exc


def relative_to_root(obj, root: Path):
    """Paths inside repository ``root`` as relative paths, in any nesting of dicts and lists, so that a generated
    record (results.json, bench/results.json) reads the same wherever it was made."""
    prefix = str(Path(root).resolve())
    if isinstance(obj, dict):
        return {k: relative_to_root(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [relative_to_root(v, root) for v in obj]
    if isinstance(obj, str) and (obj == prefix or obj.startswith(prefix + "/")):
        return obj[len(prefix):].lstrip("/") or "."
    return obj
