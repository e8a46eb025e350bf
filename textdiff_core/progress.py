"""Switches for transformers' progress bars and load reports, shared by model loading and the GGUF conversion."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_progress(quiet: bool = True) -> Iterator[None]:
    """Turn transformers' progress bars off while a ``--no-progress`` command runs (the SmolLM2 conversion follows
    the same switch), and back to how they were afterwards."""
    # deferred: transformers takes seconds to import
    from transformers.utils import logging

    bars = logging.is_progress_bar_enabled()
    if quiet:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and bars:
            logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and bars while loading weights whose new head we know about."""
    # deferred: transformers takes seconds to import
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        with quiet_progress():
            yield
    finally:
        logging.set_verbosity(level)
