"""Where textdiff keeps derived files that are expensive to rebuild (e.g. the converted SmolLM2 weights)."""

import os
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """``$TEXTDIFF_CACHE`` if set, else ``~/.cache/textdiff``; created on first use."""
    path = Path(os.environ.get("TEXTDIFF_CACHE", Path.home() / ".cache" / "textdiff"))
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
