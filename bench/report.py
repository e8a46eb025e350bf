"""The report moved to ``textdiff_core.report`` (run it as ``python train_cli.py report``); kept for old imports."""

from textdiff_core.report import *  # noqa: F401,F403
from textdiff_core.report import main

if __name__ == "__main__":
    raise SystemExit(main())
