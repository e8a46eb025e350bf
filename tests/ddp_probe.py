"""``train_cli.py train`` under torchrun, recording what each process trained on and its weights after every step.

    PYTHONPATH=. torchrun --standalone --nproc_per_node 2 tests/ddp_probe.py OUT_DIR train ...

Each process writes OUT_DIR/rank-N.json: the token rows of each micro-batch it drew, and after each optimizer step
a SHA-256 of its parameters (equal across processes only if their gradients were averaged) and the size of the
step. tests/test_train.py::test_two_processes_train_with_gloo reads them.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

import textdiff_core.train as train_mod
from train_cli import main

record: dict = {"rows": [], "weights": [], "moved": []}
real_micro_batch, real_optimizer_step = train_mod._micro_batch, train_mod._optimizer_step


def micro_batch(inputs, tokenizer, config, step, micro, rank, world, device):
    batch, joint, generator = real_micro_batch(inputs, tokenizer, config, step, micro, rank, world, device)
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(batch.input_ids, batch.attention_mask, strict=True)]
    record["rows"].append({"step": step, "micro": micro, "rows": rows})
    return batch, joint, generator


def optimizer_step(forward, optimizer, scheduler, accelerator, *args, **kwargs):
    params = list(accelerator.unwrap_model(forward).parameters())
    before = torch.cat([p.detach().flatten().cpu() for p in params])
    real_optimizer_step(forward, optimizer, scheduler, accelerator, *args, **kwargs)
    after = torch.cat([p.detach().flatten().cpu() for p in params])
    record["rank"], record["world"] = accelerator.process_index, accelerator.num_processes
    record["weights"].append(hashlib.sha256(after.numpy().tobytes()).hexdigest())
    record["moved"].append((after - before).norm().item())


train_mod._micro_batch, train_mod._optimizer_step = micro_batch, optimizer_step

if __name__ == "__main__":
    out = Path(sys.argv[1])
    code = main(sys.argv[2:])
    rank = os.environ.get("RANK", "0")
    (out / f"rank-{rank}.json").write_text(json.dumps(record))
    raise SystemExit(code)
