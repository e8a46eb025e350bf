"""Decoding benchmark: `python -m bench.decoding --help`; the code lives in textdiff_core.decoding_bench."""

from textdiff_core.decoding_bench import *  # noqa: F401,F403
from textdiff_core.decoding_bench import main

if __name__ == "__main__":
    raise SystemExit(main())
