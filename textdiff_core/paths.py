"""Where textdiff keeps derived files that are expensive to rebuild (e.g. the converted SmolLM2 weights)."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$TEXTDIFF_CACHE`` if set, else ``~/.cache/textdiff``; created on first use."""
    path = Path(os.environ.get("TEXTDIFF_CACHE", Path.home() / ".cache" / "textdiff"))
    path.mkdir(parents=True, exist_ok=True)
    return path
