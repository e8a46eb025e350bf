#!/usr/bin/env python
"""textdiff command line (``python train_cli.py --help``): the commands live in ``textdiff_core/cli/``."""

import sys

from textdiff_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
