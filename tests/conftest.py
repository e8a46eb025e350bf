"""Test settings: never touch the network, keep CPU threads fixed, make tiny models quickly."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests use tiny models, which gain nothing from threads; on a busy 2-core machine two threads wait on each other
# (measured 25x slower). Subprocesses (torchrun, the kill-and-resume test) inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
