"""Experiments on top of the library: the crossover grid, the training campaign, synthetic augmentation, the
decoding benchmark and the report. The core (``textdiff_core``'s other modules) never imports this package."""
