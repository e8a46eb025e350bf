"""ar: left to right, one token per forward pass, in order (``decoding.ar_decode``), for causal models."""

from __future__ import annotations

from textdiff_core.settings import CAUSAL
from textdiff_core.strategies.base import Strategy, register


@register
class LeftToRight(Strategy):
    name = "ar"
    title = "left to right"
    description = "one token per pass, in order"
    kind = CAUSAL
    order = 90
