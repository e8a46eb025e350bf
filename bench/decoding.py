"""Decoding benchmark: ``python -m bench.decoding --help`` (code: ``textdiff_core.experiments.decoding_bench``)."""

from textdiff_core.experiments.decoding_bench import main

if __name__ == "__main__":
    raise SystemExit(main())
