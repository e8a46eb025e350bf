"""One training loop, three objectives: masked diffusion (MDLM), left-to-right, and discriminative, on Accelerate.

The objectives differ only in what the model sees and which positions it is scored on:
  diffusion       mask text tokens at rate t (see ``noise``), predict them with bidirectional attention, weight by 1/t
  ar              feed the text as is, predict token i from positions < i with causal attention
  discriminative  feed the text as is (no prompt), predict its class from the [CLS] head (cross-entropy): the
                  same backbone as a classifier trained for the job, the reference for the generative readings
Class handling: ``none`` (unconditional), ``class`` (one model; a never-masked class prompt such as
"negative review:" before the text), ``joint`` (the class word is one more token to model: diffusion masks it by its
own coin and weights its loss; left to right puts the class prompt before the text or after it, with equal
probability), ``per-class`` (one model per class, as in the RoBERTa variable-masking recipe of
``bigsnarfdude/text-diffusion``).

Everything that decides the result is a function of (seed, step): the data order, the masks and (restored from the
checkpoint) the dropout RNG, so ``--resume`` continues exactly where an interrupted run stopped. A checkpoint is
Accelerate's ``save_state`` (optimizer, scheduler, RNG) in a ``save_pretrained`` directory, written to a temporary
directory and renamed into place, so a kill leaves the last complete checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import textdiff_core
from textdiff_core.checkpoint import SIDECAR, CheckpointMeta, format_prompt
from textdiff_core.checkpoint import write as write_sidecar
from textdiff_core.classify import class_scores
from textdiff_core.data import SPLIT_FRACTIONS, TextDataset, load_data
from textdiff_core.discriminative import first_window_logits
from textdiff_core.errors import TextdiffError
from textdiff_core.likelihood import infill_scores
from textdiff_core.models import (
    LoadedModel,
    SelectedLogits,
    device_name,
    head_labels,
    kind_of,
    load_model,
    quiet_transformers,
    save_model,
    torch_dtype,
)
from textdiff_core.noise import apply_mask, bin_label, rate_bins, sample_mask_rates, weighted_nll
from textdiff_core.settings import (
    CLASS_PROMPTED,
    CLASSIFIER,
    KIND_NAMES,
    MASKED,
    OBJECTIVES,
    LoadOptions,
    NoiseConfig,
    TrainConfig,
    default_warmup_steps,
)
from textdiff_core.tokens import ClassSlot, EncodedBatch, class_slot, collate, special_ids, tokenize_texts

N_BINS = 10  # masking-level bins for the per-level loss log
CHECKPOINT_RE = re.compile(r"^step-(\d+)$")


def epoch_batches(n_examples: int, batch_size: int) -> int:
    """Micro-batches in one pass over the data (``batch_indices`` drops the last partial batch)."""
    return max(1, n_examples // batch_size)


def epoch_end_step(epoch: int, n_examples: int, batch_size: int, micro_per_step: int) -> int:
    """The first optimizer step by which ``epoch`` whole passes over the data are complete."""
    return -(-epoch * epoch_batches(n_examples, batch_size) // micro_per_step)


def epochs_completed(step: int, n_examples: int, batch_size: int, micro_per_step: int) -> int:
    """Whole passes over the data completed after ``step`` optimizer steps."""
    return step * micro_per_step // epoch_batches(n_examples, batch_size)


def _seed_from(*parts: object) -> int:
    """A 60-bit seed from any tuple, stable across runs, machines and processes."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def batch_indices(n_examples: int, batch_size: int, global_batch: int, seed: int) -> list[int]:
    """Examples of the ``global_batch``-th micro-batch of the run: epochs of seeded permutations, no partial batch."""
    per_epoch = max(1, n_examples // batch_size)
    epoch, offset = divmod(global_batch, per_epoch)
    order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(_seed_from(seed, "epoch", epoch)))
    return order[offset * batch_size : (offset + 1) * batch_size].tolist()


def latest_checkpoint(out: str | Path) -> Path | None:
    """The newest complete checkpoint (``checkpoints/step-N``; temporary directories are never complete)."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT_RE.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def holds_checkpoint(out: str | Path) -> bool:
    """Whether directory ``out`` holds a model or a run, at its top or one level down (per-class runs, a campaign's
    twins): a textdiff.json, weights, or resumable checkpoints."""
    out = Path(out)
    if not out.is_dir():
        return False
    return any((d / SIDECAR).is_file() or any(d.glob("*.safetensors")) or latest_checkpoint(d) is not None
               for d in [out, *(p for p in out.iterdir() if p.is_dir())])


def refuse_overwrite(out: str | Path, overwrite: bool, resumable: bool = False, how: str = "") -> None:
    """Refuse, in one line, to write into an ``out`` that holds a checkpoint, unless the caller was told to
    ``overwrite`` it or continues it (``resumable``); ``how`` names the way to continue, for the message. Called
    before anything loads or is written."""
    if overwrite or resumable or not holds_checkpoint(out):
        return
    raise TextdiffError(f"{out} already holds a checkpoint; {how}pass --overwrite to write over it, or choose "
                        "another --out")


def can_resume(out: str | Path) -> bool:
    """Whether ``out`` (or, for a per-class run, one of its class directories) has a resumable checkpoint."""
    out = Path(out)
    return out.is_dir() and any(latest_checkpoint(d) is not None
                                for d in [out, *(p for p in out.iterdir() if p.is_dir())])


class _Stats:
    """Loss sums since the last log line, per process, kept on the device; summed across processes when logged."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        # [loss numerator, loss denominator, tokens] and per-bin [nll sum, masked-token count]
        self.totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.bins = torch.zeros(2, N_BINS, dtype=torch.float64, device=self.device)
        self.label = torch.zeros(3, dtype=torch.float64, device=self.device)  # class word: nll sum, count, correct

    def add(self, num: torch.Tensor, den: torch.Tensor, n_tokens: torch.Tensor, bin_nll: torch.Tensor | None,
            bin_count: torch.Tensor | None, label: torch.Tensor | None) -> None:
        """Add one micro-batch's sums (``micro_batch_loss``); tensor arithmetic only, so the host never waits."""
        self.totals += torch.stack([num.detach().double(), den.detach().double(), n_tokens.double()])
        if bin_nll is not None:
            self.bins += torch.stack([bin_nll.double(), bin_count.double()])
        if label is not None:
            self.label += label.to(self.device)

    def collect(self, accelerator) -> dict:
        """The sums over all processes since the last call, on the host, then start afresh.

        This is the loop's one device sync, made at log steps only. Returns ``loss``, ``tokens``, the mean loss per
        masking-rate bin (``by_bin``, bins with masked tokens only) and the class word's ``label_loss`` and
        ``label_accuracy`` (None without class-word targets).
        """
        totals = accelerator.reduce(self.totals.clone(), "sum")
        bins = accelerator.reduce(self.bins.clone(), "sum")
        label = accelerator.reduce(self.label.clone(), "sum")
        host = torch.cat([totals, bins.flatten(), label]).tolist()  # one copy to the host
        num, den, tokens = host[:3]
        bin_nll, bin_count = host[3 : 3 + N_BINS], host[3 + N_BINS : 3 + 2 * N_BINS]
        label_nll, label_n, label_correct = host[3 + 2 * N_BINS :]
        self.reset()
        return {
            "loss": num / max(den, 1.0),
            "tokens": tokens,
            "by_bin": {b: bin_nll[b] / bin_count[b] for b in range(N_BINS) if bin_count[b] > 0},
            "label_loss": label_nll / label_n if label_n > 0 else None,
            "label_accuracy": label_correct / label_n if label_n > 0 else None,
        }


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name or "norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


@dataclass
class JointLabel:
    """The class word as one more token of a micro-batch (``--conditioning joint``)."""

    positions: torch.Tensor  # [B] index of each row's class word; -1 where it is not a target (class-first AR rows)
    mask_prob: float | None  # diffusion: chance the class word is masked (None: the row's text rate t)
    weight: float  # its loss counts as this many text tokens


@dataclass
class ClassTargets:
    """Each row's class as the target of a micro-batch (``--objective discriminative``)."""

    labels: torch.Tensor  # [B] class index of each row, drawn with its text (the same batch indices)


def micro_batch_loss(
    forward: torch.nn.Module, batch, objective: str, noise: NoiseConfig, mask_token_id: int | None, generator,
    label: JointLabel | ClassTargets | None = None, input_mask_prob: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(numerator, denominator, per-bin nll sums, per-bin counts, class-word [nll sum, count, correct]) of one
    micro-batch's loss; the last is None without ``label``, the bins are None but for diffusion. ``label``: the
    class word to model (joint) or each row's class to predict (discriminative, whose last item is then the
    head's [nll sum, count, correct]).

    ``forward(input_ids, attention_mask, positions)`` returns logits at the selected positions (with no positions,
    a classification model's [B, C]).
    """
    if objective == "diffusion":
        return _diffusion_loss(forward, batch, noise, mask_token_id, generator, label)
    if objective == "discriminative":
        return _discriminative_loss(forward, batch, label)
    return _left_to_right_loss(forward, batch, mask_token_id, generator, label, input_mask_prob)


def _discriminative_loss(forward, batch, targets: ClassTargets):
    """``micro_batch_loss`` of a classification model: cross-entropy of the head's logits (the text's window, no
    prompt) against each row's class; the mean over rows."""
    logits = forward(batch.input_ids, batch.attention_mask).float()
    labels = targets.labels.to(logits.device)
    nll = F.cross_entropy(logits, labels, reduction="none")
    correct = (logits.detach().argmax(-1) == labels).sum()
    rows = torch.tensor(float(len(labels)), device=logits.device)
    stats = torch.stack([nll.detach().sum(), rows, correct.float()]).double()
    return nll.sum(), rows, None, None, stats


def _diffusion_loss(forward, batch, noise: NoiseConfig, mask_token_id: int, generator, label: JointLabel | None):
    """``micro_batch_loss`` of a masked model: text tokens masked at each row's rate t, the class word (joint) by its
    own coin; the loss weighted as ``noise.weighting`` says, and binned by masking rate."""
    rows = torch.arange(batch.input_ids.shape[0], device=batch.input_ids.device)
    rates = sample_mask_rates(batch.input_ids.shape[0], noise, generator)
    noisy, masked = apply_mask(batch.input_ids, batch.target_mask, rates, mask_token_id, generator)
    selected = masked
    if label is not None:  # mask the class word by its own coin (or at the text's rate)
        chance = rates if label.mask_prob is None else torch.full_like(rates, label.mask_prob)
        coin = (torch.rand(rates.shape, generator=generator) < chance).to(noisy.device)
        label_rows, label_pos = rows[coin], label.positions.to(noisy.device)[coin]
        noisy[label_rows, label_pos] = mask_token_id
        selected = masked.clone()
        selected[label_rows, label_pos] = True
    logits = forward(noisy, batch.attention_mask, selected)
    full = torch.zeros(masked.shape, dtype=torch.float32, device=logits.device)
    full[selected] = F.cross_entropy(logits.float(), batch.input_ids[selected], reduction="none")
    nll = full * masked
    num, den = weighted_nll(nll, masked, rates, batch.target_mask, noise.weighting)
    seq_bins = rate_bins(rates, N_BINS).to(nll.device)
    bin_nll = torch.zeros(N_BINS, device=nll.device).index_add_(0, seq_bins, nll.detach().sum(1))
    bin_count = torch.zeros(N_BINS, device=nll.device).index_add_(0, seq_bins, masked.sum(1).float())
    label_stats = None
    if label is not None:
        label_nll = full[label_rows, label_pos]
        if noise.weighting == "elbo":  # an unbiased term of the joint bound: 1/p for a token masked with chance p
            num = num + label.weight * (label_nll / chance.to(nll.device)[coin]).sum()
            den = den + label.weight * len(rows)
        else:
            num = num + label.weight * label_nll.sum()
            den = den + label.weight * len(label_rows)
        label_stats = _label_stats(logits, selected, label_rows, label_pos, batch.input_ids, label_nll)
    return num, den, bin_nll, bin_count, label_stats


def _left_to_right_loss(forward, batch, mask_token_id: int | None, generator, label: JointLabel | None,
                        input_mask_prob: float):
    """``micro_batch_loss`` of a causal model: the logits at position i-1 predict the token at i, for every text
    token i (and the class word, weighted, when it follows the text); ``input_mask_prob`` hides text inputs."""
    rows = torch.arange(batch.input_ids.shape[0], device=batch.input_ids.device)
    targets_mask, weights = batch.target_mask.clone(), batch.target_mask.float()
    if label is not None:
        has = label.positions.to(rows.device) >= 0
        label_rows, label_pos = rows[has], label.positions.to(rows.device)[has]
        targets_mask[label_rows, label_pos] = True
        weights[label_rows, label_pos] = label.weight
    predictors = torch.zeros_like(targets_mask)
    predictors[:, :-1] = targets_mask[:, 1:]
    inputs = batch.input_ids
    if input_mask_prob:  # the inputs of text tokens hidden at random; every target is the real token
        hide = (torch.rand(inputs.shape, generator=generator) < input_mask_prob).to(inputs.device)
        inputs = inputs.masked_fill(hide & batch.target_mask, mask_token_id)
    logits = forward(inputs, batch.attention_mask, predictors)
    targets = batch.input_ids[:, 1:][targets_mask[:, 1:]]
    nll = F.cross_entropy(logits.float(), targets, reduction="none")
    w = weights[:, 1:][targets_mask[:, 1:]].to(nll.device)
    label_stats = None
    if label is not None:
        is_label = torch.zeros_like(targets_mask)
        is_label[label_rows, label_pos] = True
        picked = is_label[:, 1:][targets_mask[:, 1:]]
        correct = (logits[picked].argmax(-1) == targets[picked]).sum()
        label_stats = torch.stack([nll[picked].detach().sum(), picked.sum().float(), correct.float()]).double()
    return (nll * w).sum(), w.sum(), None, None, label_stats


def _label_stats(logits, selected, label_rows, label_pos, input_ids, label_nll) -> torch.Tensor:
    """[nll sum, count, correct] of the masked class words (correct: arg max over the whole vocabulary)."""
    where = torch.zeros_like(selected)
    where[label_rows, label_pos] = True
    picked = where[selected]
    correct = (logits[picked].argmax(-1) == input_ids[label_rows, label_pos]).sum()
    return torch.stack([label_nll.detach().sum(), picked.sum().float(), correct.float()]).double()


def train(config: TrainConfig, progress: bool = True, options: LoadOptions | None = None) -> Path:
    """Train as configured; returns the output directory (a ``save_pretrained`` directory with textdiff.json).
    ``options``: how the starting model loads (``settings.LoadOptions``; weights are fp32 whatever they say)."""
    # deferred: accelerate takes seconds to import
    from accelerate import Accelerator

    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # on CPU, torchrun's ranks form a gloo group only when cpu=True
        gradient_accumulation_steps=config.grad_accum,
        mixed_precision="bf16" if torch.cuda.is_available() else "no",
        step_scheduler_with_optimizer=False,  # the lr schedule counts optimizer steps, whatever the number of processes
    )
    _save_pretrained_in_checkpoints(accelerator)
    out = Path(config.out)
    needs_classes = config.labelled
    data = load_data(
        config.data,
        "train",
        text_col=config.text_col,
        label_col=config.label_col if needs_classes else None,
        min_classes=2 if needs_classes else 1,
        max_samples=config.max_samples,
        seed=config.seed,
    )
    _check_start(config)
    started = time.time()
    if config.conditioning == "per-class":
        summaries = {}
        for index, name in enumerate(data.classes):
            members = [i for i, label in enumerate(data.labels) if label == index]
            summaries[name] = _train_one(config, data.subset(members), out / name, None, accelerator, progress, name,
                                         options)
        if accelerator.is_main_process:
            meta = _meta(config, data, accelerator, time.time() - started, summaries[data.classes[0]])
            meta |= {"class_dirs": {name: name for name in data.classes}, "per_class": summaries}
            write_sidecar(out, meta)
    else:
        prompted = config.conditioning != "none"  # discriminative: the class is the target, never a prompt
        prompts = [format_prompt(config.class_prompt, name) for name in data.classes] if prompted else None
        _train_one(config, data, out, prompts, accelerator, progress, None, options)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return out


def _check_start(config: TrainConfig) -> None:
    """Refuse, in one line, a starting model of the wrong kind for the objective (a classification head goes on an
    encoder: a diffusion model, or a discriminative one to continue)."""
    start, needed = kind_of(config.model), OBJECTIVES[config.objective]
    if config.resume or start in (None, needed) or (needed == CLASSIFIER and start == MASKED):
        return
    if needed == CLASSIFIER:
        raise TextdiffError(f"model {config.model!r} is a {KIND_NAMES[start]} model; objective discriminative puts "
                            "a classification head on an encoder (a diffusion or discriminative model, e.g. minilm)")
    raise TextdiffError(
        f"model {config.model!r} is a {KIND_NAMES[start]} model; objective {config.objective!r} "
        f"needs a {KIND_NAMES[needed]} one "
        f"(e.g. {'minilm' if config.objective == 'diffusion' else 'minilm-ar'})"
    )


def _meta(config: TrainConfig, data: TextDataset, accelerator, seconds: float, summary: dict) -> dict:
    device = accelerator.device
    hardware = device_name(device)
    return {
        "textdiff_version": textdiff_core.__version__,
        "objective": config.objective,
        "conditioning": config.conditioning,
        "classes": data.classes,
        "class_prompt": config.class_prompt if config.conditioning in CLASS_PROMPTED else None,
        "joint": {"label_mask_prob": config.label_mask_prob, "label_weight": config.label_weight,
                  "orders": "class before or after the text, p = 0.5" if config.objective == "ar" else None}
        if config.conditioning == "joint" else None,
        "base_model": config.model,
        "max_length": config.max_length,
        "noise": config.noise.to_dict() if config.objective == "diffusion" else None,
        "data": data.describe(),
        "split": {"name": "train", "fractions": SPLIT_FRACTIONS, "rule": "sha1(clean text) bucket, see data.split_of"},
        "steps": summary["steps"],
        "tokens_seen": summary["tokens_seen"],
        "epochs": summary.get("epochs"),  # passes over this run's training data (steps x examples per step / n)
        "final_loss": summary["final_loss"],
        "train_time_s": round(seconds, 1),
        "num_processes": accelerator.num_processes,
        "hardware": f"{accelerator.num_processes} x {hardware}, {torch.get_num_threads()} threads",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.to_dict(),
    } | lineage(config.model, summary["steps"], summary["tokens_seen"], seconds, summary.get("epochs"))


def lineage(start: str, steps: int, tokens_seen: int, seconds: float, epochs: float | None = None) -> dict:
    """When training started from a textdiff checkpoint, what that checkpoint had been trained on, and the totals.

    ``{}`` for a run from base weights (an offline name, a hub id, a directory without textdiff.json). Otherwise
    ``continued_from`` (the parent's base model, steps, tokens, time, hardware and config, its own parent nested
    inside) and ``total_steps`` / ``total_tokens_seen`` / ``total_epochs`` / ``total_train_time_s`` over the whole
    chain, so that a model card can say "1600 steps, then 800 more" instead of only the last stage (``total_epochs``
    sums each stage's passes over its own data).
    """
    path = Path(start).expanduser()
    parent = CheckpointMeta.read(path) if path.is_dir() else CheckpointMeta()
    if not parent.steps:
        return {}
    return {
        "continued_from": parent.as_parent(),
        "total_steps": parent.steps_in_all + steps,
        "total_tokens_seen": parent.tokens_in_all + tokens_seen,
        "total_train_time_s": round(parent.train_time_in_all + seconds, 1),
    } | ({"total_epochs": round(before + epochs, 4)}
         if epochs is not None and (before := parent.epochs_in_all()) is not None else {})


def with_epochs(meta: dict) -> dict:
    """``meta`` with ``epochs`` (and, for a continued run, ``total_epochs``) filled in when the run predates them."""
    out, run = dict(meta), CheckpointMeta.from_dict(meta)
    epochs = run.own_epochs()
    if run.epochs is None and epochs is not None:
        out["epochs"] = epochs
    parent = run.parent
    if parent and run.total_epochs is None and epochs is not None:
        if not parent.data and parent.config.get("data") == run.config.get("data"):  # the parent's data is this run's
            parent = CheckpointMeta.from_dict(parent.raw | {"data": run.data})
        before = parent.epochs_in_all()
        if before is not None:
            out["total_epochs"] = round(before + epochs, 4)
    return out


def lineage_metrics(meta: dict, own: list[str]) -> tuple[list[str], str | None]:
    """metrics.jsonl lines for a whole lineage: the parent's lines, then this run's with its steps offset.

    ``own`` are this run's lines. Returns the lines and, when the parent's metrics.jsonl cannot be read (its directory
    is gone), a one-line reason; then only this run's lines come back, unshifted.
    """
    run = CheckpointMeta.from_dict(meta)
    parent = run.parent
    if not parent:
        return own, None
    source = Path(run.base_model).expanduser() / "metrics.jsonl"
    if not source.is_file():
        return own, f"no {source}: the metrics of the first {parent.steps} steps are not included"
    offset = parent.steps_in_all or 0
    shifted = []
    for line in own:
        record = json.loads(line)
        record["step"] += offset
        shifted.append(json.dumps(record))
    return source.read_text().splitlines() + shifted, None


@dataclass
class _Inputs:
    """A run's training texts and class prompts as token ids, ready to be cut into micro-batches."""

    text_ids: list[list[int]]  # each text: whole for random crops, its first max_length tokens for start crops
    labels: list[int]  # each text's class
    prompt_ids: list[list[int]] | None  # each class's prompt (conditioning class and joint)
    slot: ClassSlot | None  # where the class word sits in a prompt (joint)
    head: int  # tokens before the prompt: 1 with a [start] token, else 0


def _inputs(tokenizer, data: TextDataset, prompts: list[str] | None, config: TrainConfig) -> _Inputs:
    """Tokenize once what every micro-batch draws from."""
    # random crops need the whole text; start crops only its beginning (cap the work for very long texts)
    text_length = None if config.crop == "random" else config.max_length
    return _Inputs(
        text_ids=tokenize_texts(tokenizer, data.texts, max_length=text_length),
        labels=data.labels,
        prompt_ids=tokenize_texts(tokenizer, prompts) if prompts else None,
        slot=class_slot(tokenizer, prompts) if config.conditioning == "joint" else None,
        head=int(special_ids(tokenizer)[0] is not None),
    )


def _micro_batch(
    inputs: _Inputs, tokenizer, config: TrainConfig, step: int, micro: int, rank: int, world: int, device
) -> tuple[EncodedBatch, JointLabel | ClassTargets | None, torch.Generator]:
    """Micro-batch ``micro`` of optimizer step ``step`` on process ``rank``: its texts, the window of each and (joint,
    left to right) the side of the class prompt, all a function of (seed, step, micro, rank).

    Returns the batch on ``device``, the class word to model (joint) or each row's class to predict
    (discriminative: the labels of the same indices as the texts) and the generator, which goes on to draw the
    batch's masks in ``micro_batch_loss``.
    """
    global_batch = (step * config.grad_accum + micro) * world + rank
    idx = batch_indices(len(inputs.text_ids), config.batch_size, global_batch, config.seed)
    generator = torch.Generator().manual_seed(_seed_from(config.seed, "noise", step, micro, rank))
    texts = [inputs.text_ids[i] for i in idx]
    if config.crop == "random":  # a random window of each long text (the part scoring windows see too)
        texts = [t[int(torch.randint(max(1, len(t) - config.max_length + 3), (1,), generator=generator)):]
                 for t in texts]
    prompt_ids = inputs.prompt_ids
    classes = [inputs.labels[i] for i in idx] if prompt_ids else []
    prefixes = [prompt_ids[y] for y in classes] if prompt_ids else None
    suffixes, after = None, None
    if inputs.slot is not None and config.objective == "ar":  # the class before or after the text, p = 0.5
        after = (torch.rand(len(idx), generator=generator) < 0.5).tolist()
        prefixes = [[] if a else prompt_ids[y] for a, y in zip(after, classes, strict=True)]
        suffixes = [prompt_ids[y] if a else None for a, y in zip(after, classes, strict=True)]
    batch = collate(tokenizer, texts, prefixes, config.max_length, suffixes)
    joint = None
    if inputs.slot is not None:
        positions = ([batch.suffix_start[r] + inputs.slot.index if a else -1 for r, a in enumerate(after)]
                     if after is not None else [inputs.head + inputs.slot.index] * len(idx))
        joint = JointLabel(torch.tensor(positions), config.label_mask_prob, config.label_weight)
    if config.objective == "discriminative":
        return batch.to(device), ClassTargets(torch.tensor([inputs.labels[i] for i in idx])), generator
    return batch.to(device), joint, generator


def _optimizer_step(
    forward, optimizer, scheduler, accelerator, inputs: _Inputs, tokenizer, config: TrainConfig, step: int,
    stats: _Stats,
) -> None:
    """Optimizer step ``step``: ``grad_accum`` micro-batches forward and backward, gradient clipping, AdamW, then the
    lr schedule. The losses are added to ``stats`` on the device."""
    for micro in range(config.grad_accum):
        batch, label, generator = _micro_batch(inputs, tokenizer, config, step, micro, accelerator.process_index,
                                               accelerator.num_processes, accelerator.device)
        with accelerator.accumulate(forward):
            num, den, bin_nll, bin_count, label_stats = micro_batch_loss(
                forward, batch, config.objective, config.noise, tokenizer.mask_token_id, generator, label,
                config.input_mask_prob,
            )
            accelerator.backward(num / den.clamp(min=1.0))
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(forward.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        stats.add(num, den, batch.attention_mask.sum(), bin_nll, bin_count, label_stats)
    scheduler.step()


@dataclass
class _Due:
    """What follows optimizer step ``step`` besides the step itself."""

    log: bool  # write a metrics.jsonl line (always before an evaluation, a checkpoint or at an epoch's end)
    evaluate: bool  # validate (``_validate``) into that line
    checkpoint: bool  # write checkpoints/step-N
    stop: bool  # end here (``--stop-after``) with a resumable checkpoint and no final model
    epochs_completed: int | None  # whole passes over the data when this step completes one, else None


def _stops_at(step: int, total: int, config: TrainConfig) -> bool:
    """Whether a run at ``step`` has reached ``--stop-after`` short of its last step."""
    return config.stop_after is not None and config.stop_after <= step < total


def _due(step: int, total: int, config: TrainConfig, n_examples: int, micro_per_step: int) -> _Due:
    """The timetable of logging, validation and checkpoints after optimizer step ``step``."""
    stop = _stops_at(step, total, config)
    checkpoint = bool(config.save_every and step % config.save_every == 0 and step < total) or stop
    epochs = epochs_completed(step, n_examples, config.batch_size, micro_per_step)
    boundary = epochs > epochs_completed(step - 1, n_examples, config.batch_size, micro_per_step)
    evaluate = bool(config.eval_every and (step % config.eval_every == 0 or step == total)) or (
        boundary and config.validates_at_epochs)
    log = step % config.log_every == 0 or step == total or checkpoint or evaluate or boundary  # no stats lost
    return _Due(log, evaluate, checkpoint, stop, epochs if boundary else None)


def _log_record(step: int, sums: dict, lr: float, tokens_per_s: float, elapsed_s: float, epoch: float,
                epochs_done: int | None, objective: str) -> dict:
    """One metrics.jsonl line from ``_Stats.collect``'s sums."""
    record = {
        "step": step,
        "loss": round(sums["loss"], 5),
        "lr": lr,
        "tokens_per_s": round(tokens_per_s, 1),
        "elapsed_s": round(elapsed_s, 2),
        "epoch": round(epoch, 4),
    }
    if epochs_done is not None:  # every training example seen epochs_completed times
        record |= {"epoch_boundary": True, "epochs_completed": epochs_done}
    if objective == "diffusion":
        record["loss_by_mask_rate"] = {bin_label(b, N_BINS): round(loss, 5) for b, loss in sums["by_bin"].items()}
    if objective == "discriminative":  # the head's arg-max accuracy on the training batches since the last line
        record["train_accuracy"] = round(sums["label_accuracy"], 4)
    elif sums["label_loss"] is not None:  # the class word's own loss and arg-max accuracy (joint)
        record["label_loss"] = round(sums["label_loss"], 5)
        record["label_accuracy"] = round(sums["label_accuracy"], 4)
    return record


def _summary(step: int, tokens_seen: int, last_loss: float, epoch: float) -> dict:
    """What a run (or a stop of one) trained: the fields of textdiff.json that ``_meta`` takes from the loop."""
    return {"steps": step, "tokens_seen": tokens_seen, "final_loss": round(last_loss, 5), "epochs": round(epoch, 4)}


@dataclass
class _Run:
    """One model's training as ``_set_up`` prepares it: what ``_run_steps`` steps, logs and checkpoints, and
    ``_save_final`` saves."""

    config: TrainConfig
    data: TextDataset
    out: Path
    prompts: list[str] | None  # each class's prompt (conditioning class and joint)
    label: str | None  # the class of this model of a per-class set
    accelerator: Any
    model: torch.nn.Module  # the network, as validation reads it
    tokenizer: Any
    forward: torch.nn.Module  # ``SelectedLogits(model)`` as Accelerate prepared it, which training calls
    optimizer: Any
    scheduler: Any
    inputs: _Inputs
    total: int  # optimizer steps of the whole run
    per_step: int  # examples per optimizer step, over all processes
    micro_per_step: int  # micro-batches per optimizer step, over all processes
    state: dict  # step, elapsed_s, tokens_seen: the counters a checkpoint records
    resumed: bool  # the state (and the RNG) came from a checkpoint
    validation: TextDataset | None = None  # the fixed validation subset (main process, when the run validates)

    @property
    def kind(self) -> str:
        return OBJECTIVES[self.config.objective]

    def epoch(self, step: int) -> float:
        """Passes over the training data after ``step`` optimizer steps."""
        return step * self.per_step / len(self.data)


def _train_one(
    config: TrainConfig,
    data: TextDataset,
    out: Path,
    prompts: list[str] | None,
    accelerator,
    progress: bool,
    label: str | None,
    options: LoadOptions | None = None,
) -> dict:
    """Train one model on ``data`` into ``out``; returns a summary (steps, tokens, final loss).

    ``_set_up`` loads the model (or the checkpoint to resume) and its optimizer; ``_run_steps`` runs the optimizer
    steps (``_optimizer_step``: its micro-batches, ``_micro_batch`` and ``micro_batch_loss``), each followed, as
    ``_due`` says, by a metrics.jsonl line (``_log``, ``_validate``) and a checkpoint (``_save_checkpoint``); then
    ``_save_final`` writes the model.
    """
    run = _set_up(config, data, out, prompts, accelerator, label, options)
    step, last_loss, stopped = _run_steps(run, progress)
    summary = _summary(step, run.state["tokens_seen"], last_loss, run.epoch(step))
    if stopped:  # a chunk of a longer run: the checkpoint is written, the final model is not
        return summary | {"stopped": True, "total_steps": run.total}
    _save_final(run, summary)
    return summary


def _starting_model(config: TrainConfig, out: Path, accelerator, options: LoadOptions | None,
                    classes: list[str] | None = None):
    """The model training starts from, in fp32 on the run's device (with ``--resume``, the latest checkpoint's), and
    that checkpoint (None: a fresh start). ``classes``: the head's outputs (discriminative)."""
    resume_from = latest_checkpoint(out) if config.resume else None
    if config.resume and resume_from is None and accelerator.is_main_process:
        tqdm.write(f"no complete checkpoint in {out / 'checkpoints'}; starting from {config.model}")
    head = classes if config.objective == "discriminative" else None
    loaded = load_model(str(resume_from or config.model), OBJECTIVES[config.objective], device=accelerator.device,
                        dtype=torch.float32, options=options, labels=head)
    if config.input_mask_prob and loaded.tokenizer.mask_token_id is None:
        raise TextdiffError(f"{config.model!r} has no [MASK] token to hide inputs with (--input-mask-prob)")
    if config.objective == "diffusion" and loaded.tokenizer.mask_token_id is None:
        raise TextdiffError(f"{config.model!r} has no [MASK] token; diffusion training needs one")
    return loaded, resume_from


def _set_up(config: TrainConfig, data: TextDataset, out: Path, prompts: list[str] | None, accelerator,
            label: str | None, options: LoadOptions | None) -> _Run:
    """Everything a run needs before its first step: the model, the tokenized inputs, the step count, AdamW and the
    lr schedule (their state restored on resume), the validation subset, and ``out`` cleared of what a killed run
    left behind (log lines past the checkpoint, half-written checkpoints)."""
    # deferred: transformers takes seconds to import
    from transformers import get_scheduler

    loaded, resume_from = _starting_model(config, out, accelerator, options, data.classes)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.train()
    inputs = _inputs(tokenizer, data, prompts, config)
    per_step = config.batch_size * config.grad_accum * accelerator.num_processes  # examples per optimizer step
    micro_per_step = config.grad_accum * accelerator.num_processes
    total = config.steps or max(1, math.ceil((config.epochs or 1.0) * len(data) / per_step))
    warmup = config.warmup_steps if config.warmup_steps is not None else default_warmup_steps(total)

    optimizer = _optimizer(model, config)
    scheduler = get_scheduler(config.lr_schedule, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    accelerator.free_memory()  # per-class runs train several models in turn: save_state holds only this one
    forward, optimizer, scheduler = accelerator.prepare(SelectedLogits(model), optimizer, scheduler)

    state = {"step": 0, "elapsed_s": 0.0, "tokens_seen": 0}
    if resume_from is not None:
        state = _load_checkpoint(resume_from, accelerator, optimizer, scheduler)
        if accelerator.is_main_process:
            tqdm.write(f"resuming from {resume_from} (step {state['step']} of {total})")
    run = _Run(config, data, out, prompts, label, accelerator, model, tokenizer, forward, optimizer, scheduler, inputs,
               total, per_step, micro_per_step, state, resumed=resume_from is not None)
    if (config.eval_every or config.validates_at_epochs) and accelerator.is_main_process:
        labelled = config.conditioning in CLASS_PROMPTED or config.objective == "discriminative"
        run.validation = load_data(config.data, "validation", text_col=config.text_col,
                                   label_col=config.label_col if labelled else None,
                                   min_classes=2 if labelled else 1, max_samples=config.eval_size, seed=0)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        _truncate_metrics(out / "metrics.jsonl", state["step"])
        for stale in (out / "checkpoints").glob(".tmp-step-*"):  # a save that was killed half-way
            shutil.rmtree(stale, ignore_errors=True)
    return run


def _run_steps(run: _Run, progress: bool) -> tuple[int, float, bool]:
    """The optimizer steps from the run's counters to its end (or ``--stop-after``), each followed by what ``_due``
    says; returns (the step reached, the last loss logged, whether the run stopped short of its end). Ctrl-C writes
    a checkpoint of the steps done, then goes on up."""
    config, accelerator, state = run.config, run.accelerator, run.state
    stats = _Stats(accelerator.device)
    step, last_loss = state["step"], float("nan")
    desc = f"train {config.objective}" + (f" [{run.label}]" if run.label else "")
    bar = tqdm(total=run.total, initial=step, desc=desc, disable=not (progress and accelerator.is_local_main_process),
               dynamic_ncols=True)
    clock = window_start = time.time()
    if not run.resumed:
        torch.manual_seed(_seed_from(config.seed, "dropout", accelerator.process_index) % 2**63)  # restored on resume
    stopped = _stops_at(step, run.total, config)  # resumed at --stop-after already: nothing to do
    try:
        while step < run.total and not stopped:
            _optimizer_step(run.forward, run.optimizer, run.scheduler, accelerator, run.inputs, run.tokenizer, config,
                            step, stats)
            step += 1
            bar.update(1)
            due = _due(step, run.total, config, len(run.data), run.micro_per_step)
            stopped = due.stop
            if due.log:
                last_loss = _log(run, step, due, stats.collect(accelerator), window_start, clock, bar)
                window_start = time.time()
            if due.checkpoint:
                state |= {"step": step, "elapsed_s": state["elapsed_s"] + time.time() - clock}
                clock = time.time()
                meta = None
                if stopped and accelerator.is_main_process:  # what the weights are, for an export of this stop
                    summary = _summary(step, state["tokens_seen"], last_loss, run.epoch(step))
                    meta = _meta(config, run.data, accelerator, state["elapsed_s"], summary) | {
                        "stopped_at": {"step": step, "of_steps": run.total}}
                _save_checkpoint(run.out, accelerator, run.tokenizer, state, config, meta)
    except KeyboardInterrupt:
        if step > state["step"]:
            state |= {"step": step, "elapsed_s": state["elapsed_s"] + time.time() - clock}
            _save_checkpoint(run.out, accelerator, run.tokenizer, state, config)
        bar.close()
        raise
    bar.close()
    if not stopped:
        state |= {"step": step, "elapsed_s": state["elapsed_s"] + time.time() - clock}
    return step, last_loss, stopped


def _log(run: _Run, step: int, due: _Due, sums: dict, window_start: float, clock: float, bar) -> float:
    """Log optimizer step ``step`` from ``_Stats.collect``'s ``sums`` (since ``window_start``): the progress bar, the
    tokens seen and, on the main process, a metrics.jsonl line, with a validation when due (``clock``: when the
    state's ``elapsed_s`` was last brought up to date). Returns the loss logged."""
    loss, tokens_per_s = sums["loss"], sums["tokens"] / max(time.time() - window_start, 1e-9)
    run.state["tokens_seen"] += int(sums["tokens"])
    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
    if run.accelerator.is_main_process:
        record = _log_record(step, sums, run.scheduler.get_last_lr()[0], tokens_per_s,
                             run.state["elapsed_s"] + time.time() - clock, run.epoch(step), due.epochs_completed,
                             run.config.objective)
        if due.evaluate:
            run.model.eval()
            record |= _validate(run.model, run.tokenizer, run.kind, run.validation, run.prompts, run.config)
            run.model.train()
            shown = ({"val_ppl": f"{record['val_perplexity']:.1f}"} if "val_perplexity" in record
                     else {"val_acc": f"{record['val_accuracy']:.3f}"})  # a discriminative head has no perplexity
            bar.set_postfix(loss=f"{loss:.3f}", **shown)
        with (run.out / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    return loss


def _save_final(run: _Run, summary: dict) -> None:
    """Write the trained model into ``out`` (main process) in ``save_dtype``, with its textdiff.json."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        meta = _meta(run.config, run.data, accelerator, run.state["elapsed_s"], summary)
        if run.label is not None:
            meta |= {"class_name": run.label, "conditioning_role": "one model of a per-class set"}
        unwrapped = accelerator.unwrap_model(run.forward).model
        save_model(unwrapped, run.tokenizer, run.out, meta, dtype=torch_dtype(run.config.save_dtype))
    accelerator.wait_for_everyone()


def _validate(model, tokenizer, kind: str, data: TextDataset, prompts: list[str] | None, config: TrainConfig) -> dict:
    """Classifier accuracy and perplexity on a fixed validation subset, from the first window of each text.

    A cheap monitor (few ELBO samples, no prior, no calibration), always with the same masks so steps compare.
    ``val_perplexity`` is exp(sum NLL / sum tokens) of each text given its own class prompt (none for unconditional
    runs), read off the same scores: the ELBO bound for diffusion, exact for left to right (``corpus_perplexity``
    with one window). Joint models are also read by infilling the class word (``val_accuracy_infill``). A
    discriminative head gives ``val_accuracy`` and ``val_loss`` and no perplexity (``_validate_head``).
    """
    lm = LoadedModel(model, tokenizer, kind, config.model)
    if kind == CLASSIFIER:
        return _validate_head(lm, data, config)
    generator = torch.Generator().manual_seed(_seed_from(config.seed, "validation"))
    started, correct, nll, tokens = time.time(), 0, 0.0, 0
    labels = data.labels if prompts else [0] * len(data)
    for text, label in zip(data.texts, labels, strict=True):
        scores = class_scores(lm, text, prompts or [None], config.eval_samples, generator, config.max_length,
                              max_windows=1)
        correct += int(min(range(len(scores)), key=lambda c: scores[c].nll) == label)
        nll, tokens = nll + scores[label].nll, tokens + scores[label].n_tokens
    record = {"val_n": len(data), "val_perplexity": round(math.exp(nll / max(tokens, 1)), 4), "val_tokens": tokens}
    if prompts:
        record["val_accuracy"] = round(correct / len(data), 4)
    record["val_seconds"] = round(time.time() - started, 1)
    if config.conditioning == "joint":
        slot, started, correct = class_slot(tokenizer, prompts), time.time(), 0
        for text, label in zip(data.texts, data.labels, strict=True):
            read = infill_scores(lm, text, slot, config.max_length, max_windows=1)
            correct += int(read.log_posteriors[0].argmax().item() == label)
        record |= {"val_accuracy_infill": round(correct / len(data), 4),
                   "val_seconds_infill": round(time.time() - started, 1)}
    return record


def _validate_head(lm: LoadedModel, data: TextDataset, config: TrainConfig) -> dict:
    """A discriminative run's monitor: accuracy (arg max of the head) and mean cross-entropy on the first window of
    each validation text, batched; it models no text, so it has no perplexity to report."""
    started, classes = time.time(), head_labels(lm.model)
    unknown = sorted(set(data.classes) - set(classes))
    if unknown:
        raise TextdiffError(f"validation labels {unknown} are not classes of the head ({classes})")
    targets = torch.tensor([classes.index(data.classes[y]) for y in data.labels])
    logits = first_window_logits(lm, data.texts, config.max_length)
    return {"val_n": len(data), "val_accuracy": round((logits.argmax(-1) == targets).float().mean().item(), 4),
            "val_loss": round(F.cross_entropy(logits, targets).item(), 5),
            "val_seconds": round(time.time() - started, 1)}


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint we resume from), so the log has no duplicates."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


def _save_pretrained_in_checkpoints(accelerator) -> None:
    """Have ``save_state`` write the weights by ``save_pretrained``, ``load_state`` leave them to ``from_pretrained``.

    A checkpoint is then Accelerate's state (optimizer, scheduler, RNG of each process) in a ``save_pretrained``
    directory, which ``export``, ``--resume`` and the campaign's epoch exports read like any model.
    """

    def save_weights(models: list, weights: list, output_dir: str) -> None:
        if accelerator.is_main_process:
            with quiet_transformers():
                for model in models:
                    accelerator.unwrap_model(model).model.save_pretrained(output_dir)
        weights.clear()  # not again as Accelerate's own model file

    def skip_weights(models: list, input_dir: str) -> None:
        models.clear()  # loaded already: the run's model is read from the checkpoint directory

    accelerator.register_save_state_pre_hook(save_weights)
    accelerator.register_load_state_pre_hook(skip_weights)


def _save_checkpoint(out: Path, accelerator, tokenizer, state: dict, config: TrainConfig,
                     meta: dict | None = None) -> Path:
    """Write ``checkpoints/step-N`` atomically: ``accelerator.save_state`` and the tokenizer go to a temporary
    directory, which is synced to disk and then renamed, so a kill leaves the last complete checkpoint.

    ``trainer_state.json`` holds the run's counters and config; ``meta`` (a stop of a chunked run) is written as the
    checkpoint's textdiff.json, so it exports like a finished run.
    """
    root = out / "checkpoints"
    final = root / f"step-{state['step']:07d}"
    tmp = root / f".tmp-step-{state['step']:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        tokenizer.save_pretrained(tmp)
        (tmp / "trainer_state.json").write_text(json.dumps(state | {"config": config.to_dict()}, indent=2))
        if meta is not None:
            write_sidecar(tmp, meta)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for path in tmp.rglob("*"):
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        complete = sorted(p for p in root.iterdir() if CHECKPOINT_RE.match(p.name))
        for old in complete[: max(0, len(complete) - config.keep_checkpoints)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def _load_checkpoint(path: Path, accelerator, optimizer, scheduler) -> dict:
    """Restore the optimizer, scheduler and RNG state saved in ``path`` and return the run's counters (step, elapsed
    seconds, tokens seen); the weights were loaded from the same directory.

    Checkpoints from before ``save_state`` (optimizer.pt, scheduler.pt, rng-N.pt) are refused in one line.
    """
    if (path / "optimizer.bin").exists():
        accelerator.load_state(str(path))
    elif (path / "optimizer.pt").exists():
        raise TextdiffError(f"{path} is a checkpoint in the earlier layout (optimizer.pt), which --resume no longer "
                            "reads; its weights still load (--model), or train the run again")
    else:
        raise TextdiffError(f"{path} has no optimizer state (optimizer.bin); --resume cannot continue from it")
    state = json.loads((path / "trainer_state.json").read_text())
    state.pop("config", None)
    return state
