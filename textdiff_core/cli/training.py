"""Commands that train and ship: train, campaign, crossover, augment, few-labels, campaign-ship, export."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import torch

from textdiff_core.checkpoint import exists as checkpoint_exists
from textdiff_core.errors import TextdiffError
from textdiff_core.experiments.augment import AugmentConfig, run_augment
from textdiff_core.experiments.campaign import STATUS, CampaignConfig, run_campaign, ship
from textdiff_core.experiments.crossover import CrossoverConfig, ModelShape, run_crossover
from textdiff_core.experiments.few_labels import MODELS, PER_UNIT, TRAINED, FewLabelsConfig, run_few_labels
from textdiff_core.experiments.render import augment_lines, better_accuracy, points_to_go
from textdiff_core.models import load_model, save_model, torch_dtype
from textdiff_core.settings import DTYPES, add_train_flags, check_output_dir, train_config
from textdiff_core.train import can_resume, lineage_metrics, refuse_overwrite, train, with_epochs

# Training settings a campaign sets for each twin itself; train's flags for them are not the campaign's.
PER_TWIN = {"objective", "model", "steps", "epochs", "resume", "out", "stop_after", "conditioning"}
# ... and those a crossover grid sets for each of its runs (or, for the last four, flags of its own with its defaults)
PER_RUN = PER_TWIN | {"max_samples", "eval_every", "eval_epochs", "eval_size", "eval_samples", "input_mask_prob",
                      "weight_decay", "lr_schedule", "warmup_steps"}


def _no_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _overwrite_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out that already holds a checkpoint (refused otherwise, unless --resume "
                             "continues it)")


def add_train(commands) -> argparse.ArgumentParser:
    """``train``: one flag per training setting (``settings.add_train_flags``), plus the run's own."""
    t = commands.add_parser("train", help="train a masked-diffusion or left-to-right model")
    add_train_flags(t)  # one flag per TrainConfig field: textdiff_core/settings.py
    t.add_argument("--quick-test", action="store_true",
                   help="smoke run: 5 steps on 64 examples, batch 4, 48 tokens (overrides those flags)")
    _no_progress_flag(t)
    _overwrite_flag(t)
    return t


def add_campaign(commands) -> None:
    """``campaign``: the train flags both twins share (the same ``add_train_flags``), plus the campaign's own."""
    c = commands.add_parser("campaign", help="train a diffusion model and its left-to-right twin to N epochs in "
                                             "alternating resumable chunks (run it again to continue)")
    add_train_flags(c, skip=PER_TWIN)
    _no_progress_flag(c)
    c.add_argument("--out", required=True, help="campaign directory: diffusion/, ar/, campaign.json")
    c.add_argument("--overwrite", action="store_true",
                   help="write into an --out that holds a checkpoint but no campaign (refused otherwise)")
    c.add_argument("--epochs", type=int, required=True, help="whole epochs over the training data, per twin")
    c.add_argument("--chunk-epochs", type=int, default=1, help="epochs one twin trains before the other's turn")
    c.add_argument("--conditioning", choices=["none", "class", "joint"], default="joint",
                   help="as for train; joint (the class word is one more token) by default")
    c.add_argument("--diffusion-model", default="minilm", help="where the diffusion twin starts (name or directory)")
    c.add_argument("--ar-model", default="minilm-ar", help="where the left-to-right twin starts (name or directory)")
    c.add_argument("--until-epoch", type=int, default=None,
                   help="stop once both twins stand at this epoch (default: --epochs); run again to go on")
    c.add_argument("--snapshot-dtype", choices=list(DTYPES), default="fp16",
                   help="dtype of the per-epoch exports in OUT/<twin>/epochs/")
    c.add_argument("--max-shard-size", default=None,
                   help="split the exports' weights into files of at most this size, e.g. 15MB")


def add_crossover(commands) -> None:
    """``crossover``: the train flags every run of the grid shares, plus the grid's own."""
    c = commands.add_parser("crossover", help="train diffusion and left-to-right twins from scratch on nested subsets "
                                              "of U reviews to find where diffusion wins (run it again to continue)",
                            epilog="The diffusion twin trains with --loss-weighting elbo unless told otherwise.")
    _grid_flags(c, control=True)


def add_augment(commands) -> None:
    """``augment``: the crossover's flags (its sizes are the real sizes U), plus the synthetic sets."""
    c = commands.add_parser("augment", help="train twins from scratch on U real reviews alone and with each synthetic "
                                            "set added, and compare them on real test reviews (run again to continue)",
                            epilog="Every arm is a crossover grid of one size under OUT/u-NNNNN/<arm>; the analysis "
                                   "is OUT/augment.json.")
    _grid_flags(c, control=False)
    c.add_argument("--synthetic", type=_str_list, required=True,
                   help="synthetic sets (CSVs written by synthesize), comma separated: each one arm, real + its kept "
                        "rows")
    c.add_argument("--ratio", type=float, default=1.0,
                   help="synthetic rows per real review in a synthetic arm (default: 1)")
    c.add_argument("--start", type=_str_list, default=None, metavar="DIFFUSION,AR",
                   help="fine-tune this trained pair (two checkpoints, diffusion first, both joint-conditioned, e.g. "
                        "checkpoints/imdb-diffusion,checkpoints/imdb-ar) in every arm instead of training from "
                        "scratch; the pair itself is scored once as the reference")


def add_few_labels(commands) -> None:
    """``few-labels``: the train flags every unit shares, plus the campaign's own (defaults: ``FewLabelsConfig``)."""
    c = commands.add_parser("few-labels", help="fine-tune the pretrained backbone on n labelled reviews per class as a "
                                               "diffusion model, its twin and a discriminative head, beside TF-IDF, "
                                               "with and without the rest unlabelled (run it again to continue)",
                            epilog="Each (n, seed, model, arm) is a resumable unit under OUT; the record is "
                                   "OUT/few_labels.json. See textdiff_core/experiments/few_labels.py.")
    add_train_flags(c, skip=PER_UNIT)
    _no_progress_flag(c)
    d = {name: f.default_factory() if callable(f.default_factory) else f.default
         for name, f in FewLabelsConfig.__dataclass_fields__.items()}
    show = {name: ",".join(map(str, v)) for name, v in d.items() if isinstance(v, list)}
    c.add_argument("--out", required=True, help="campaign directory: n-NNNNN/seed-S/<model>-<arm>/, few_labels.json")
    c.add_argument("--sizes", type=_int_list, default=d["sizes"],
                   help=f"labelled reviews per class, ascending (nested subsets; default: {show['sizes']})")
    c.add_argument("--seeds", type=_int_list, default=d["seeds"],
                   help=f"seeds of the subset and its training (default: {show['seeds']})")
    c.add_argument("--steps", type=int, default=d["steps"],
                   help=f"the step cap of every trained model (default: {d['steps']})")
    for flag, what in (("points", "validation points, log-spaced from --first-point to the cap"),
                       ("first_point", "step of the first validation point"),
                       ("patience", "stop a run once no reading has improved for this many validation points"),
                       ("val_size", "validation reviews, the same for every model"),
                       ("val_samples", "ELBO Monte Carlo samples per validation review and class"),
                       ("test_size", "fixed test reviews, read once per reading"),
                       ("test_samples", "ELBO Monte Carlo samples per test review and class"),
                       ("unlabelled_steps", "semi-supervised arm: steps of each backbone on the unlabelled rest")):
        c.add_argument("--" + flag.replace("_", "-"), type=int, default=d[flag], help=f"{what} (default: {d[flag]})")
    c.add_argument("--models", type=_str_list, default=d["models"],
                   help=f"models of the labelled arm, among {','.join(MODELS)} (default: {show['models']})")
    c.add_argument("--semi-sizes", type=_none_or(_int_list), default=d["semi_sizes"],
                   help=f"sizes that also get the semi-supervised arm, or none (default: {show['semi_sizes']})")
    c.add_argument("--semi-models", type=_none_or(_str_list), default=d["semi_models"],
                   help=f"models of that arm, among {','.join(TRAINED)}, or none (default: {show['semi_models']})")
    c.add_argument("--diffusion-model", default=d["diffusion_model"],
                   help="pretrained backbone of the diffusion model and the head (name or directory; default: "
                        f"{d['diffusion_model']})")
    c.add_argument("--ar-model", default=d["ar_model"],
                   help=f"pretrained backbone of the left-to-right twin (default: {d['ar_model']})")
    c.add_argument("--zero-shot", default=None,
                   help="also read this zero-shot LM once on the test reviews as a flat reference, e.g. "
                        "checkpoints/smollm2-zero-shot (default: none)")
    c.add_argument("--keep-weights", action="store_true",
                   help="keep each finished unit's run and best weights (default: removed once its result is written)")
    c.add_argument("--plan-only", action="store_true",
                   help="print the plan and the probe's s/step and CPU-hours, then exit (writes nothing)")
    c.add_argument("--probe-steps", type=int, default=4,
                   help="steps of the s/step measurement printed with the plan (0: none; default: 4)")
    c.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")


def _grid_flags(c: argparse.ArgumentParser, control: bool) -> None:
    """The flags of a crossover grid on parser ``c``: the train flags every run shares (the same
    ``add_train_flags``), then the grid's own (``control``: with the control arm's)."""
    add_train_flags(c, skip=PER_RUN)
    _no_progress_flag(c)
    _overwrite_flag(c)
    grid, shape = CrossoverConfig.__dataclass_fields__, ModelShape()
    c.add_argument("--out", required=True, help="grid directory: init/, u-NNNNN/, crossover.json")
    c.add_argument("--sizes", type=_int_list, required=True,
                   help="unique training reviews per grid point, ascending, e.g. 250,1000,4000 (nested subsets)")
    c.add_argument("--steps", type=_int_list, required=True,
                   help="optimizer steps per size, the same for both twins, e.g. 3000,4000,6000; under a constant "
                        "lr schedule with a fixed warm-up a running grid's budgets may be raised (its runs continue)")
    c.add_argument("--points", type=int, default=grid["points"].default,
                   help=f"validation points per size, log-spaced in steps (default: {grid['points'].default})")
    c.add_argument("--first-point", type=int, default=grid["first_point"].default,
                   help=f"step of the first validation point (default: {grid['first_point'].default})")
    c.add_argument("--val-size", type=int, default=grid["val_size"].default,
                   help="validation reviews, the same for every size and twin (default: "
                        f"{grid['val_size'].default})")
    c.add_argument("--val-samples", type=int, default=grid["val_samples"].default,
                   help=f"ELBO Monte Carlo samples per validation text (default: {grid['val_samples'].default})")
    c.add_argument("--layers", type=int, default=shape.layers, help=f"transformer layers (default: {shape.layers})")
    c.add_argument("--width", type=int, default=shape.width, help=f"hidden size (default: {shape.width})")
    c.add_argument("--heads", type=int, default=shape.heads, help=f"attention heads (default: {shape.heads})")
    c.add_argument("--vocab-size", type=int, default=shape.vocab_size,
                   help=f"WordPiece vocabulary trained on the largest subset (default: {shape.vocab_size})")
    c.add_argument("--tokenizer", default=None,
                   help="a tokenizer.json to use (e.g. an earlier grid's OUT/init/tokenizer.json), so that the grid is "
                        "repeated exactly (default: train a WordPiece tokenizer on the largest subset)")
    c.add_argument("--val-data", type=_str_list, default=None,
                   help="where the validation (and test) reviews come from (default: the --data itself)")
    c.add_argument("--test-size", type=int, default=0,
                   help="also score this many test reviews at every point, to report at the point validation chooses "
                        "(default: 0, none)")
    if control:
        _control_flags(c)
    c.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay (default: 0.1, as published)")
    c.add_argument("--lr-schedule", default="constant_with_warmup",
                   help="transformers scheduler name (default: constant_with_warmup)")
    c.add_argument("--warmup-steps", type=int, default=100, help="warm-up steps of every run (default: 100)")
    c.add_argument("--until-size", type=int, default=None, help="stop after this size (run again to go on)")
    c.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 is several times faster on a machine "
                        "whose cores other jobs keep busy (not a setting of the grid: results are read the same way)")
    c.add_argument("--probe-steps", type=int, default=6,
                   help="steps of the s/step measurement printed with the plan before training (0: none)")


def _control_flags(c: argparse.ArgumentParser) -> None:
    c.add_argument("--control-mask", type=float, default=0.0,
                   help="the control arm: also train the left-to-right twin with its text inputs masked at this rate "
                        "(Gao et al.), to tell the objective from the augmentation; may be added to a running grid "
                        "(default: 0, none)")
    c.add_argument("--control-sizes", type=_int_list, default=[],
                   help="the sizes that get the control arm, e.g. 100,200 (default: every size)")


def add_campaign_ship(commands) -> None:
    """``campaign-ship``: make a campaign's best epochs the shipped pair."""
    sh = commands.add_parser("campaign-ship", help="make a campaign's best epochs (chosen on validation) the shipped "
                                                   "pair, and keep its curves for the report")
    sh.add_argument("campaign", help="the campaign directory (campaign --out)")
    sh.add_argument("--dest", default="checkpoints", help="where the shipped pair lives (default: checkpoints)")
    sh.add_argument("--diffusion-epoch", type=int, default=None, help="ship this epoch instead of choosing one")
    sh.add_argument("--ar-epoch", type=int, default=None, help="ship this epoch instead of choosing one")
    sh.add_argument("--partial", action="store_true", help="ship from an unfinished campaign's epochs so far")
    sh.add_argument("--replaced", default="results.json",
                    help="results.json of the pair being replaced, kept for a before/after comparison")


def add_export(commands) -> None:
    """``export``: a trained run as a shippable fp16 checkpoint."""
    e = commands.add_parser("export", help="copy a trained run into a shippable fp16 checkpoint directory")
    e.add_argument("run", help="the run directory (train --out)")
    e.add_argument("dest", help="destination, e.g. checkpoints/imdb-diffusion")
    e.add_argument("--dtype", choices=list(DTYPES), default="fp16", help="dtype of the exported weights")
    e.add_argument("--overwrite", action="store_true",
                   help="replace a checkpoint already in dest (refused otherwise), e.g. a shipped model")


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 250,1000, got {text!r}") from None


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _none_or(parse):
    """A list flag's parser that also reads "none" as the empty list."""
    return lambda text: [] if text.strip().lower() == "none" else parse(text)


def _train_config(args: argparse.Namespace):
    """The TrainConfig of ``train``'s flags (``--quick-test`` overriding a few)."""
    quick = {}
    if getattr(args, "quick_test", False):
        quick = {"steps": getattr(args, "steps", None) or 5, "max_samples": 64, "batch_size": 4, "max_length": 48,
                 "log_every": 1, "save_every": 2}
    return train_config(args, **quick)


def crossover_config(args: argparse.Namespace):
    """The CrossoverConfig of ``crossover``'s flags."""
    sizes, steps = args.sizes, args.steps
    if not hasattr(args, "noise__weighting"):  # the published recipe: the 1/t weighting, so the loss is the bound
        args.noise__weighting = "elbo"  # (an absent train flag sets no attribute: its default is the dataclass's)
    args.objective, args.model, args.resume, args.quick_test = "diffusion", None, False, False
    args.steps, args.epochs, args.stop_after, args.conditioning = None, None, None, "joint"
    config = CrossoverConfig(out=args.out, sizes=sizes, steps=steps, train=_train_config(args), points=args.points,
                             first_point=args.first_point, val_size=args.val_size, val_samples=args.val_samples,
                             shape=ModelShape(args.layers, args.width, args.heads, args.vocab_size),
                             tokenizer=args.tokenizer, control_mask=getattr(args, "control_mask", 0.0),
                             control_sizes=getattr(args, "control_sizes", []), val_data=args.val_data,
                             test_size=args.test_size, start=getattr(args, "start", None))
    return config


def cmd_train(args: argparse.Namespace) -> int:
    config = _train_config(args)
    refuse_overwrite(config.out, args.overwrite, resumable=config.resume and can_resume(config.out),
                     how="it has no resumable checkpoint (checkpoints/step-N) to --resume from; " if config.resume
                     else "pass --resume to continue it, ")
    try:
        out = train(config, progress=not args.no_progress, options=args.load)
    except KeyboardInterrupt:
        print(f"interrupted: the last checkpoint is in {args.out}/checkpoints; continue with --resume", file=sys.stderr)
        return 130
    if config.stop_after is not None and not checkpoint_exists(out):
        print(f"stopped at step {config.stop_after}: the checkpoint is in {out}/checkpoints; continue with --resume")
        return 0
    print(f"saved {out}")
    return 0


def cmd_campaign(args: argparse.Namespace) -> int:
    # its own directory (campaign.json) is how a campaign continues: run again, it resumes
    refuse_overwrite(args.out, args.overwrite, resumable=(Path(args.out) / STATUS).is_file(),
                     how="it is not a campaign's directory (no campaign.json); ")

    args.objective, args.model, args.steps, args.resume, args.quick_test = "diffusion", None, None, False, False
    campaign_epochs, args.epochs, args.stop_after = args.epochs, None, None
    config = CampaignConfig(out=args.out, epochs=campaign_epochs, train=_train_config(args),
                            chunk_epochs=args.chunk_epochs, diffusion_model=args.diffusion_model,
                            ar_model=args.ar_model, snapshot_dtype=args.snapshot_dtype,
                            max_shard_size=args.max_shard_size)
    try:
        status = run_campaign(config, until_epoch=args.until_epoch, progress=not args.no_progress,
                              options=args.load)
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to continue the campaign in {args.out}", file=sys.stderr)
        return 130
    for twin, where in status["twins"].items():
        print(f"{twin}: step {where['step']} of {status['plan']['total_steps']}, epoch {where['epochs_completed']} "
              f"of {config.epochs}" + (f", {where['seconds_per_step']} s/step" if "seconds_per_step" in where else ""))
    return 0


def cmd_crossover(args: argparse.Namespace) -> int:
    config = crossover_config(args)
    if args.threads is not None:
        if args.threads < 1:
            raise TextdiffError(f"threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        results = run_crossover(config, until_size=args.until_size, probe_steps=args.probe_steps,
                                progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to continue the grid in {args.out}", file=sys.stderr)
        return 130
    for row in results["runs"]:
        crossing = row["crossover_tokens"]
        left = points_to_go(results, row)
        print(f"U={row['unique_reviews']}: {len(row['steps'])} points read" + (f", {left} to go" if left else "")
              + "; crossover " + (f"at {crossing:,} tokens" if crossing else
                                  "none within budget" if row["finished"] else "none so far"))
    if results.get("exponent"):
        e = results["exponent"]
        print(f"C_crit ~ U^{e['k']:.2f} (95% {e['ci95'][0]:.2f} to {e['ci95'][1]:.2f}; published {e['published']})")
    print(f"wrote {os.path.join(args.out, 'crossover.json')}" + ("" if results["finished"] else
                                                                 " (in progress: run again to continue)"))
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    config = AugmentConfig(grid=crossover_config(args), synthetic=args.synthetic, ratio=args.ratio)
    if args.threads is not None:
        if args.threads < 1:
            raise TextdiffError(f"threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        result = run_augment(config, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to continue the experiment in {args.out}", file=sys.stderr)
        return 130
    print("\n".join(augment_lines(result)))
    print(f"wrote {os.path.join(args.out, 'augment.json')}" + ("" if result["finished"] else
                                                               " (in progress: run again to continue)"))
    return 0


def few_labels_config(args: argparse.Namespace) -> FewLabelsConfig:
    """The FewLabelsConfig of ``few-labels``'s flags."""
    names = set(FewLabelsConfig.__dataclass_fields__) - {"out", "train"}
    shared = train_config(args, objective="diffusion", conditioning="joint", steps=None)  # --steps is the cap
    return FewLabelsConfig(out=args.out, train=shared, **{name: getattr(args, name) for name in names})


def cmd_few_labels(args: argparse.Namespace) -> int:
    config = few_labels_config(args)
    if args.threads is not None:
        if args.threads < 1:
            raise TextdiffError(f"threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.probe_steps < 0:
        raise TextdiffError(f"probe-steps must be at least 0, got {args.probe_steps}")
    try:
        record = run_few_labels(config, args.probe_steps, plan_only=args.plan_only, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to continue the campaign in {args.out}", file=sys.stderr)
        return 130
    if args.plan_only:
        return 0
    verdict = record["summary"]["labelled"]["verdict"]
    if verdict["wins_below"]:
        where = f"below n = {verdict['wins_below']} per class"
    elif verdict["wins_at_every_n"] or verdict["wins_at_no_n"]:
        where = "at every n compared" if verdict["wins_at_every_n"] else "at no n compared"
    else:
        where = f"at n = {verdict['wins_at']}" if verdict["compared_at"] else "(nothing to compare yet)"
    print(f"{len(record['points'])} points; the best generative reading beats the head {where}; "
          f"{record['cost']['cpu_hours']} CPU-hours so far")
    print(f"wrote {os.path.join(args.out, 'few_labels.json')}" + ("" if record["finished"] else
                                                                 " (in progress: run again to continue)"))
    return 0


def cmd_campaign_ship(args: argparse.Namespace) -> int:
    given = {twin: e for twin, e in (("diffusion", args.diffusion_epoch), ("ar", args.ar_epoch)) if e is not None}
    if any(e < 1 for e in given.values()):
        raise TextdiffError(f"epochs count from 1, got {given}")
    record = ship(args.campaign, args.dest, given or None, partial=args.partial, replaced=args.replaced)
    if "replaced" not in record:
        print(f"note: no {args.replaced}: the report will not compare the new pair with the one it replaced")
    for twin, epoch in record["shipped"].items():
        r = next((r for r in record["epochs"][twin] if r["epochs_completed"] == epoch), {})
        where = os.path.join(args.dest, record["directories"][twin])
        seen = (f"best reading {better_accuracy(r):.3f}, perplexity {r['val_perplexity']:.1f}"
                if better_accuracy(r) is not None and "val_perplexity" in r else "no record")
        print(f"{twin}: epoch {epoch} of {len(record['epochs'][twin])} -> {where} (validation: {seen})")
    crossing = record["crossover_epoch"]
    print("diffusion's better reading " + (f"at or above the twin's from epoch {crossing} on" if crossing else
                                           "not at or above the twin's at the last epoch"))
    print("next: calibrate both (checkpoints/README.md), then python train_cli.py report")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    run, dest = Path(args.run), Path(args.dest)
    check_output_dir(dest, "dest")
    refuse_overwrite(dest, args.overwrite)
    lm = load_model(str(run), device="cpu", dtype=torch.float32, options=args.load)
    if not lm.meta:
        raise TextdiffError(f"{run} has no textdiff.json: export ships finished training runs")
    meta = with_epochs(lm.meta) | {"exported_from": str(run), "weights_dtype": args.dtype}  # epochs: older runs too
    save_model(lm.model, lm.tokenizer, dest, meta, dtype=torch_dtype(args.dtype))
    if (run / "calibration.json").is_file():
        shutil.copy2(run / "calibration.json", dest / "calibration.json")
    if (run / "metrics.jsonl").is_file():  # a continued run's curve starts where its parent's ended
        lines, missing = lineage_metrics(lm.meta, (run / "metrics.jsonl").read_text().splitlines())
        (dest / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
        if missing:
            print(f"note: {missing}")
    size = sum(f.stat().st_size for f in dest.glob("*.safetensors")) / 2**20
    print(f"exported {run} -> {dest} ({args.dtype}, {size:.1f} MB of weights)")
    return 0


COMMANDS = {  # command name -> what runs it
    "train": cmd_train,
    "campaign": cmd_campaign,
    "crossover": cmd_crossover,
    "augment": cmd_augment,
    "few-labels": cmd_few_labels,
    "campaign-ship": cmd_campaign_ship,
    "export": cmd_export,
}
