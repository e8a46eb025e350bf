"""Decoding strategies, one module each, and their registry (``base``).

A strategy decides which masked positions each step of diffusion decoding commits (or, for a left-to-right model,
that there is one per pass, in order). Each is declared once, as a ``Strategy`` subclass decorated with
``@register``: its name, title and description, the ``DecodeConfig`` settings it reads and the defaults it starts
from, how many positions a step commits (``count``), which ones (``choose``) and what it refuses (``check``). The
decoders, ``generate --strategy`` (its choices and help) and the Denoise and Compare pages (their selectors and
settings) read it all from the registry.

Adding a strategy is one file here and one test: every module of this package is imported below, so a new module
that registers a strategy is all it takes.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
