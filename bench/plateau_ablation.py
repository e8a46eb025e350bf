#!/usr/bin/env python
"""What keeps the crossover's diffusion twin on the unigram plateau? One setting at a time, from its recipe.

Every run trains a small masked-diffusion model from scratch on the first U reviews of the training split (the
crossover's nested subset) with the crossover's WordPiece tokenizer, and every ``--every`` steps reads the
cross-entropy of a fixed 50% mask of the first 64 text tokens of fixed validation reviews, minus a unigram model of
the same U reviews (counts + 1) on the same positions: the level of a model that uses no context. A run *leaves the
plateau* at the first reading at least 0.1 nats below that level; it stops ``--after`` steps later (to show the
break holds) or at ``--steps``.

The recipes (``RECIPES``): ``grid`` is the crossover's (Hugging Face's post-LayerNorm BERT, dropout 0.1, lr 2e-4
after 100 warm-up steps, weight decay 0.1, AdamW betas 0.9/0.999, the 1/t ELBO weighting, 128-token windows, the
class prompt with its class word masked half the time at weight 16) at the probe's size (2 layers, 128 wide);
``probe`` is the recipe that left it (a pre-LayerNorm encoder of PyTorch's layers with a bare tied output layer, no
dropout, lr 1e-3 after 500, weight decay 0.01, betas 0.9/0.98, the plain mean loss, 64-token windows, no class
prompt). Each other recipe changes one setting of one of the two.

Each run is resumable (``OUT/<recipe>/state.pt`` every ``--every`` steps); ``OUT/ablation.json`` holds every
reading and is rewritten after each. Running the command again continues where it stopped.

    nice python -m bench.plateau_ablation --out ~/textdiff-runs/ablation            # every recipe, in order
    nice python -m bench.plateau_ablation --out ~/textdiff-runs/ablation grid probe # only these
    python -m bench.plateau_ablation --out results/plateau-ablation --render results/plateau-ablation/ablation.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from textdiff_core.data import load_data
from textdiff_core.experiments.crossover import wrap_tokenizer
from textdiff_core.noise import apply_mask, sample_mask_rates, weighted_nll
from textdiff_core.settings import NoiseConfig

TOKENIZER = "results/crossover-tokenizer.json"
LEAVES = -0.1  # nats below the unigram level that count as having left the plateau


@dataclass(frozen=True)
class Recipe:
    """One from-scratch diffusion recipe: architecture, optimiser, objective and data settings."""

    arch: str = "hf"  # "hf": Hugging Face's BERT (post-LN) or RoBERTa-PreLayerNorm (pre-LN), each with an embedding
    #                   LayerNorm and a dense + GELU + LayerNorm transform before the tied output layer; "plain": an
    #                   encoder of PyTorch's own layers, where the two are settings (``embed_norm``, ``head_transform``)
    norm: str = "post"  # LayerNorm placement: "post" (after each residual sum, BERT) or "pre" (before each block)
    embed_norm: bool = False  # plain only: a LayerNorm on the embeddings, as BERT's
    head_transform: bool = False  # plain only: dense + GELU + LayerNorm before the tied output layer, as BERT's
    dropout: float = 0.1  # hidden and attention dropout
    init_std: float = 0.02  # initializer_range: std of every weight matrix and embedding at initialisation
    lr: float = 2e-4  # peak learning rate, constant after warm-up
    warmup: int = 100  # linear warm-up steps
    weight_decay: float = 0.1  # AdamW, on matrices only
    beta2: float = 0.999  # AdamW's second-moment decay
    weighting: str = "elbo"  # "elbo": sum of NLL/t over maskable tokens; "mean": plain mean over masked tokens
    window: int = 128  # training window, in text tokens ([CLS], the class prompt and [SEP] on top)
    label_weight: float = 16.0  # the class word's loss counts as this many text tokens; 0: no class prompt at all
    layers: int = 2
    width: int = 128


GRID = Recipe()
PROBE = Recipe(arch="plain", norm="pre", dropout=0.0, lr=1e-3, warmup=500, weight_decay=0.01, beta2=0.98,
               weighting="mean", window=64, label_weight=0.0)
RECIPES = {  # in the order they run: the probe, then one setting of the grid's at a time on it, then the grid
    "probe": PROBE,
    "probe+head-transform": replace(PROBE, head_transform=True),
    "probe+embed-norm": replace(PROBE, embed_norm=True),
    "probe+hf": replace(PROBE, arch="hf"),  # RoBERTa-PreLayerNorm: both of the above, Hugging Face's layers
    "probe+elbo": replace(PROBE, weighting="elbo"),
    "probe+lr2e-4": replace(PROBE, lr=2e-4),
    "probe+post-ln": replace(PROBE, norm="post"),
    "probe+dropout0.1": replace(PROBE, dropout=0.1),
    "probe+wd0.1": replace(PROBE, weight_decay=0.1),
    "probe+prompt16": replace(PROBE, label_weight=16.0),
    "probe+warmup100-beta0.999": replace(PROBE, warmup=100, beta2=0.999),
    "probe+window128": replace(PROBE, window=128),
    "grid": GRID,
    "grid+lr1e-3+mean": replace(GRID, lr=1e-3, weighting="mean"),
    "grid+pre-ln": replace(GRID, norm="pre"),
    "grid+lr1e-3": replace(GRID, lr=1e-3),
    "grid+mean": replace(GRID, weighting="mean"),
    "grid+no-dropout": replace(GRID, dropout=0.0),
    "grid+window64": replace(GRID, window=64),
    "grid+no-prompt": replace(GRID, label_weight=0.0),
    "probe+init0.006": replace(PROBE, init_std=0.006),
}


def build_model(recipe: Recipe, vocab_size: int, pad_id: int, seed: int):
    """A masked LM of the recipe's shape, seeded; the output layer tied to the embeddings."""
    from transformers import BertConfig, BertForMaskedLM, RobertaPreLayerNormConfig, RobertaPreLayerNormForMaskedLM

    shape = dict(vocab_size=vocab_size, hidden_size=recipe.width, num_hidden_layers=recipe.layers,
                 num_attention_heads=max(1, recipe.width // 64), intermediate_size=4 * recipe.width,
                 hidden_dropout_prob=recipe.dropout, attention_probs_dropout_prob=recipe.dropout,
                 initializer_range=recipe.init_std, pad_token_id=pad_id, max_position_embeddings=520)
    torch.manual_seed(seed)
    if recipe.arch == "plain":
        return PlainEncoder(recipe, vocab_size, pad_id)
    if recipe.norm == "post":
        return BertForMaskedLM(BertConfig(**shape))
    return RobertaPreLayerNormForMaskedLM(RobertaPreLayerNormConfig(**shape))


class PlainEncoder(torch.nn.Module):
    """An encoder written out of PyTorch's own layers: learned positions, pre- or post-LayerNorm blocks (a final
    LayerNorm after pre-LN ones), and the tied embedding matrix as the output layer; BERT's embedding LayerNorm and
    its head's dense + GELU + LayerNorm transform only where the recipe asks for them."""

    def __init__(self, recipe: Recipe, vocab_size: int, pad_id: int) -> None:
        super().__init__()
        w = recipe.width
        self.tokens = torch.nn.Embedding(vocab_size, w, padding_idx=pad_id)
        self.positions = torch.nn.Embedding(520, w)
        self.embed_norm = torch.nn.LayerNorm(w) if recipe.embed_norm else torch.nn.Identity()
        self.drop = torch.nn.Dropout(recipe.dropout)
        layer = torch.nn.TransformerEncoderLayer(w, max(1, w // 64), 4 * w, recipe.dropout, activation="gelu",
                                                 batch_first=True, norm_first=recipe.norm == "pre")
        self.encoder = torch.nn.TransformerEncoder(layer, recipe.layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(w) if recipe.norm == "pre" else torch.nn.Identity()
        self.transform = (torch.nn.Sequential(torch.nn.Linear(w, w), torch.nn.GELU(), torch.nn.LayerNorm(w))
                          if recipe.head_transform else torch.nn.Identity())
        self.bias = torch.nn.Parameter(torch.zeros(vocab_size))
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                torch.nn.init.normal_(p, std=recipe.init_std)
            elif name.endswith("bias") and "norm" not in name:
                torch.nn.init.zeros_(p)

    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(input_ids) + self.positions(torch.arange(input_ids.shape[1]))
        return self.norm(self.encoder(self.drop(self.embed_norm(x))))

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.transform(hidden) @ self.tokens.weight.T + self.bias


def masked_logits(model, input_ids: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Logits at the ``where`` positions only (the vocabulary projection is half the cost otherwise)."""
    if isinstance(model, PlainEncoder):
        return model.head(model.hidden(input_ids)[where])
    hidden = model.base_model(input_ids=input_ids).last_hidden_state[where]
    head = model.cls if hasattr(model, "cls") else model.lm_head
    return head(hidden)


class Data:
    """Token ids of the U training reviews and of the validation windows, the unigram level, the prompts."""

    def __init__(self, tokenizer_file: str, reviews: int, val_reviews: int) -> None:
        from tokenizers import Tokenizer

        self.tok = wrap_tokenizer(Tokenizer.from_file(tokenizer_file))
        train = load_data("imdb", "train", max_samples=reviews, min_classes=2, seed=0)
        val = load_data("imdb", "validation", max_samples=val_reviews, min_classes=2, seed=0)
        self.classes = train.classes
        enc = lambda texts: self.tok(texts, add_special_tokens=False)["input_ids"]  # noqa: E731
        self.train_ids, self.train_labels = enc(train.texts), train.labels
        self.prompt_ids = [enc([f"{c} review:"])[0] for c in self.classes]  # the crossover's class prompt
        val_ids = [ids[:64] for ids in enc(val.texts)]
        keep = [i for i, ids in enumerate(val_ids) if len(ids) == 64]
        self.val_ids = torch.tensor([val_ids[i] for i in keep])
        self.val_labels = [val.labels[i] for i in keep]
        g = torch.Generator().manual_seed(0)
        self.val_mask = torch.rand(self.val_ids.shape, generator=g) < 0.5
        counts = Counter(t for ids in self.train_ids for t in ids)
        total = sum(counts.values()) + len(self.tok)
        logp = torch.tensor([math.log((counts[t] + 1) / total) for t in range(len(self.tok))])
        self.unigram = -logp[self.val_ids[self.val_mask]].mean().item()

    def rows(self, text: list[int], label: int, with_prompt: bool) -> tuple[list[int], int]:
        """[CLS] (prompt) text [SEP]; the class word's position (-1 without a prompt)."""
        prompt = self.prompt_ids[label] if with_prompt else []
        return [self.tok.cls_token_id, *prompt, *text, self.tok.sep_token_id], (1 if with_prompt else -1)

    def batch(self, recipe: Recipe, size: int, g: torch.Generator):
        """``size`` random windows of random reviews: ids [B, L], maskable text positions, class word positions."""
        with_prompt = recipe.label_weight > 0
        n_prompt = len(self.prompt_ids[0]) if with_prompt else 0
        room = recipe.window  # text tokens; [CLS], the prompt and [SEP] come on top
        ids, label_pos = [], []
        for i in torch.randint(len(self.train_ids), (size,), generator=g).tolist():
            text = self.train_ids[i]
            start = torch.randint(max(1, len(text) - room + 1), (1,), generator=g).item()
            row, pos = self.rows(text[start:start + room], self.train_labels[i], with_prompt)
            ids.append(row)
            label_pos.append(pos)
        width = max(map(len, ids))
        pad = self.tok.pad_token_id
        x = torch.tensor([r + [pad] * (width - len(r)) for r in ids])
        maskable = torch.zeros_like(x, dtype=torch.bool)
        for b, r in enumerate(ids):
            maskable[b, 1 + n_prompt:len(r) - 1] = True
        return x, maskable, torch.tensor(label_pos)

    def val_inputs(self, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation windows with the fixed 50% mask applied, in the layout the recipe trains on."""
        rows = [self.rows(ids.tolist(), y, recipe.label_weight > 0)[0]
                for ids, y in zip(self.val_ids, self.val_labels, strict=True)]
        x = torch.tensor(rows)
        offset = 1 + (len(self.prompt_ids[0]) if recipe.label_weight > 0 else 0)
        where = torch.zeros_like(x, dtype=torch.bool)
        where[:, offset:offset + 64] = self.val_mask
        return x.masked_fill(where, self.tok.mask_token_id), where


@torch.no_grad()
def validation_ce(model, data: Data, recipe: Recipe) -> float:
    model.eval()
    x, where = data.val_inputs(recipe)
    target = data.val_ids[data.val_mask]
    total = 0.0
    for lo in range(0, len(x), 64):
        logits = masked_logits(model, x[lo:lo + 64], where[lo:lo + 64])
        n = int(where[lo:lo + 64].sum())
        total += torch.nn.functional.cross_entropy(logits, target[:n], reduction="sum").item()
        target = target[n:]
    model.train()
    return total / int(where.sum())


def train_step(model, data: Data, recipe: Recipe, noise: NoiseConfig, batch_size: int, g: torch.Generator) -> float:
    x, maskable, label_pos = data.batch(recipe, batch_size, g)
    rates = sample_mask_rates(len(x), noise, g)
    noisy, masked = apply_mask(x, maskable, rates, data.tok.mask_token_id, g)
    rows = torch.arange(len(x))
    hide = torch.zeros(len(x), dtype=torch.bool)
    if recipe.label_weight > 0:  # the class word: masked on a coin of 1/2, its loss weighted as the crossover's
        hide = torch.rand(len(x), generator=g) < 0.5
        noisy[rows[hide], label_pos[hide]] = data.tok.mask_token_id
    where = masked.clone()
    where[rows[hide], label_pos[hide]] = True
    logits = masked_logits(model, noisy, where)
    nll_flat = torch.nn.functional.cross_entropy(logits, x[where], reduction="none")
    nll = torch.zeros(x.shape)
    nll[where] = nll_flat
    label_nll = nll[rows[hide], label_pos[hide]]
    nll[rows[hide], label_pos[hide]] = 0.0
    num, den = weighted_nll(nll, masked, rates, maskable, recipe.weighting)
    if hide.any():
        if recipe.weighting == "elbo":  # 1/p for a word masked with chance p = 1/2
            num = num + recipe.label_weight * (label_nll / 0.5).sum()
            den = den + recipe.label_weight * len(x)
        else:
            num = num + recipe.label_weight * label_nll.sum()
            den = den + recipe.label_weight * int(hide.sum())
    loss = num / den.clamp(min=1.0)
    loss.backward()
    return loss.item()


def run(name: str, recipe: Recipe, data: Data, args: argparse.Namespace, results: dict, save) -> None:
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(recipe, len(data.tok), data.tok.pad_token_id, seed=0)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    other = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, recipe.beta2))
    noise = NoiseConfig(masking_rates="continuous", t_sampling="stratified", weighting=recipe.weighting)
    g = torch.Generator().manual_seed(1)
    record = results["runs"].setdefault(name, {"recipe": asdict(recipe), "readings": [], "left_at": None,
                                               "seconds": 0.0, "finished": False})
    step = 0
    if (out / "state.pt").is_file():
        state = torch.load(out / "state.pt", weights_only=True)  # tensors, dicts and ints only
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        g.set_state(state["rng"])
        step = state["step"]
        record["readings"] = [r for r in record["readings"] if r["step"] <= step]
    if record["finished"]:
        return
    if step == 0:
        record["parameters"] = sum(p.numel() for p in model.parameters())
        record["readings"] = [{"step": 0, "minus_unigram": round(validation_ce(model, data, recipe) - data.unigram, 4)}]
    stop = args.steps
    if record["left_at"] is not None:
        stop = min(stop, record["left_at"] + args.after)
    started = time.time()
    while step < stop:
        for group in opt.param_groups:
            group["lr"] = recipe.lr * min(1.0, (step + 1) / recipe.warmup)
        loss = train_step(model, data, recipe, noise, args.batch_size, g)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        step += 1
        if step % args.every == 0 or step == stop:
            gap = validation_ce(model, data, recipe) - data.unigram
            record["readings"].append({"step": step, "minus_unigram": round(gap, 4), "train_loss": round(loss, 4)})
            if record["left_at"] is None and gap <= LEAVES:
                record["left_at"] = step
                stop = min(args.steps, step + args.after)
            record["seconds"] += time.time() - started
            started = time.time()
            record["finished"] = step >= stop
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "rng": g.get_state(), "step": step},
                       out / "state.pt")
            save()
            print(f"{name} step {step}: {gap:+.3f} nats against the unigram level "
                  f"({record['seconds'] / step:.3f} s/step)", flush=True)


def changed(recipe: dict) -> str:
    """The settings where a recorded recipe differs from the probe's."""
    probe, recipe = asdict(PROBE), asdict(Recipe()) | recipe  # fields a record predates take their defaults
    off_probe = [f"{k} {v}" for k, v in recipe.items() if probe[k] != v]
    return ", ".join(off_probe) or "the probe's"


def render(results: dict) -> str:
    """The ablation as a markdown table: per recipe, how it differs from the probe, the step it left the plateau
    (or how far it ran without), and its gap to the unigram level at steps 2,000, 5,000 and its last reading."""
    lines = [f"Written by `{results['command']}`: U = {results['unique_reviews']:,} reviews, "
             f"{results['validation_windows']} validation windows, unigram level {results['unigram_nats']:.3f} nats; "
             f"a run leaves the plateau at the first reading {-results['leaves_below']:.1f} nats below it.", "",
             "| recipe | differs from the probe in | left the plateau at step | at 2,000 | at 5,000 | last reading |",
             "|---|---|---|---|---|---|"]
    order = [n for n in RECIPES if n in results["runs"]] + [n for n in results["runs"] if n not in RECIPES]
    for name in order:
        run = results["runs"][name]
        at = {r["step"]: r["minus_unigram"] for r in run["readings"]}
        last = run["readings"][-1]
        left = (f"{run['left_at']:,}" if run["left_at"] is not None else
                f"not by {last['step']:,}" + ("" if run["finished"] else " (running)"))
        cells = [f"{at[step]:+.3f}" if step in at else "" for step in (2000, 5000)]
        lines.append(f"| {name} | {changed(run['recipe'])} | {left} | {cells[0]} | {cells[1]} | "
                     f"{last['minus_unigram']:+.3f} at {last['step']:,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipes", nargs="*", help=f"recipes to run, in order (default: all: {', '.join(RECIPES)})")
    p.add_argument("--out", required=True, help="directory for OUT/ablation.json and each run's state")
    p.add_argument("--steps", type=int, default=5000, help="steps of a run that does not leave the plateau")
    p.add_argument("--after", type=int, default=500, help="steps a run goes on after it leaves the plateau")
    p.add_argument("--every", type=int, default=250, help="steps between validation readings")
    p.add_argument("--reviews", type=int, default=1600, help="U: unique training reviews")
    p.add_argument("--val-reviews", type=int, default=200, help="validation reviews (those with 64 text tokens read)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tokenizer", default=TOKENIZER)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--render", metavar="FILE", help="train nothing: write OUT/ablation.json as a markdown table")
    args = p.parse_args(argv)
    if args.render:
        source = Path(args.out) / "ablation.json"
        Path(args.render).write_text(render(json.loads(source.read_text())))
        print(f"wrote {args.render} from {source}")
        return 0
    unknown = [r for r in args.recipes if r not in RECIPES]
    if unknown:
        p.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(RECIPES)}")
    torch.set_num_threads(args.threads)
    data = Data(args.tokenizer, args.reviews, args.val_reviews)
    path = Path(args.out) / "ablation.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    results |= {"command": "python -m bench.plateau_ablation " + " ".join(argv if argv is not None else sys.argv[1:]),
                "unique_reviews": args.reviews, "validation_windows": len(data.val_ids),
                "unigram_nats": round(data.unigram, 4), "leaves_below": LEAVES, "batch_size": args.batch_size,
                "threads": args.threads}

    def save() -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        tmp.replace(path)

    print(f"unigram level {data.unigram:.3f} nats on {len(data.val_ids)} validation windows", flush=True)
    for name in args.recipes or list(RECIPES):
        run(name, RECIPES[name], data, args, results, save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
