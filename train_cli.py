#!/usr/bin/env python
"""textdiff command line (``python train_cli.py --help``): the commands live in ``textdiff_core/cli/``."""

import sys

from textdiff_core.cli import build_parser, main  # noqa: F401 (build_parser: the parser, for tests and docs)

if __name__ == "__main__":
    sys.exit(main())
