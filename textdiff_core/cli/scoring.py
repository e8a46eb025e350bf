"""Commands that score texts: classify, evaluate, calibrate, paired, perplexity, zero-shot."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch

from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.classify import (
    DISCRIMINATIVE,
    METHODS,
    Calibration,
    calibrate_combined,
    choose_zero_shot,
    default_reading,
    fit_calibration,
    load_classifier,
    score_matrix,
)
from textdiff_core.data import is_file_spec, load_data
from textdiff_core.errors import TextdiffError
from textdiff_core.evaluate import corpus_perplexity, evaluate_classifier, paired_reports
from textdiff_core.models import load_model
from textdiff_core.paths import write_file
from textdiff_core.prediction import ordinal
from textdiff_core.records import CALIBRATION_FILE, ZERO_SHOT, ZERO_SHOT_TEMPLATES, write_calibration, write_zero_shot
from textdiff_core.settings import CLASS_PROMPTED, check_output_dir, check_writable


def add_classifiers(commands) -> None:
    """``classify``, ``evaluate`` and ``calibrate``: one classifier's flags, and each one's own."""
    for name, helptext in (("classify", "classify one text with a generative classifier"),
                           ("evaluate", "classify a labelled split and write a JSON report"),
                           ("calibrate", "fit the prior bias, temperature and OOD reference on validation")):
        c = commands.add_parser(name, help=helptext)
        c.add_argument("--checkpoint", required=True,
                       help="class-conditional, per-class or discriminative checkpoint dir, or any LM (offline name, "
                            "dir, hub id) for zero-shot prompting")
        c.add_argument("--method", choices=list(METHODS), default=None,
                       help=("default: the reading the checkpoint's calibration chose on validation (calibrate "
                             "--method combined records it), else as marked here; " if name != "calibrate" else "") +
                            "elbo: diffusion bound, same noise for every class (default for diffusion models); "
                            "elbo-indep: fresh noise per class; pll: pseudo-log-likelihood; mlm-loss: mean loss of a "
                            "15%% mask x5 (the RoBERTa variable-masking recipe); ar: exact "
                            "left-to-right (default for left-to-right models); infill: P(class | text) read off the "
                            "class-word slot, one pass per window (masked or left-to-right); combined: Bayes + a "
                            "weight x infill, the weight fitted by calibrate --method combined; discriminative: the "
                            "classification head's softmax, the mean of its logits over the windows (the one reading "
                            "of, and the default for, a checkpoint trained with --objective discriminative)")
        c.add_argument("--samples", type=int, default=8, help="Monte Carlo samples per class (the cap if adaptive)")
        c.add_argument("--adaptive", action="store_true",
                       help="draw samples in rounds until the leader leads by --z standard errors")
        c.add_argument("--z", type=float, default=2.0, help="margin in standard errors that stops adaptive sampling")
        c.add_argument("--classes", default=None,
                       help="comma-separated class names for zero-shot models (default: negative,positive)")
        c.add_argument("--prompt-template", default=None,
                       help='zero-shot prompt per class, {label} = class name (default: "A {label} movie review:")')
        c.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo noise")
        c.add_argument("--max-length", type=int, default=None,
                       help="window size in tokens; longer texts are scored in windows (default: the trained length)")
        if name == "classify":
            c.add_argument("text", help="the text to classify")
        else:
            c.add_argument("--data", default="imdb", help="dataset name or CSV/JSONL file")
            c.add_argument("--split", default=None,
                           help="train, validation, test or all (default: all for a CSV/JSONL file, the user's own "
                                f"data; the fixed {'test' if name == 'evaluate' else 'validation'} split for "
                                "imdb, rotten_tomatoes and hub datasets)")
            c.add_argument("--text-col", default="text", help="text column in CSV/JSONL files")
            c.add_argument("--label-col", default="label", help="label column (names or integer indices)")
            c.add_argument("--limit", type=int, default=None, help="at most N examples (class-balanced, fixed)")
            c.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "evaluate":
            c.add_argument("--out", default=None, help="write the JSON report here")


def add_paired(commands) -> None:
    """``paired``: two evaluate reports compared review by review."""
    pr = commands.add_parser("paired", help="compare two evaluate reports on the same texts, review by review")
    pr.add_argument("a", help="evaluate --out JSON (A)")
    pr.add_argument("b", help="evaluate --out JSON (B), on the same --data, --split and --limit")


def add_perplexity(commands) -> None:
    """``perplexity``: per-text NLL and corpus perplexity."""
    pp = commands.add_parser("perplexity", help="per-text NLL and corpus perplexity with a 95%% interval (JSON)")
    pp.add_argument("--checkpoint", required=True, help="trained directory, offline name or hub id")
    pp.add_argument("--data", required=True, help="dataset name or CSV/JSONL file")
    pp.add_argument("--split", default="test", help="train, validation, test (or all: every row, for files)")
    pp.add_argument("--text-col", default="text", help="text column in CSV/JSONL files")
    pp.add_argument("--label-col", default="label",
                    help="label column; class-conditional models score each text given its class prompt")
    pp.add_argument("--limit", type=int, default=None, help="at most N texts (class-balanced, fixed)")
    pp.add_argument("--samples", type=int, default=8, help="diffusion models: Monte Carlo samples of the ELBO per text")
    pp.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo noise")
    pp.add_argument("--max-length", type=int, default=None,
                    help="window size in tokens; longer texts are scored in windows (default: the trained length)")
    pp.add_argument("--out", required=True, help="write the JSON report here (written whole or not at all)")
    pp.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_zero_shot(commands) -> None:
    """``zero-shot``: a pretrained LM's class prompt chosen on validation."""
    zs = commands.add_parser("zero-shot", help="choose a pretrained LM's class prompt on validation and fit its "
                                               "calibration; writes a directory that --checkpoint takes")
    zs.add_argument("--model", default="smollm2", help="the pretrained LM: offline name, directory or hub id")
    zs.add_argument("--classes", default="negative,positive", help="comma-separated class names")
    zs.add_argument("--template", action="append", default=None,
                    help="a candidate prompt, {label} = class name; repeat for several (default: four movie-review "
                         "prompts)")
    zs.add_argument("--data", default="imdb", help="labelled validation data: dataset name or CSV/JSONL file")
    zs.add_argument("--split", default="validation", help="split to choose and fit on (never test)")
    zs.add_argument("--text-col", default="text", help="text column in CSV/JSONL files")
    zs.add_argument("--label-col", default="label", help="label column (names or integer indices)")
    zs.add_argument("--limit", type=int, default=300, help="at most N texts (class-balanced, fixed)")
    zs.add_argument("--seed", type=int, default=0, help="seed of the Monte Carlo noise (diffusion models)")
    zs.add_argument("--out", required=True, help="directory to write (textdiff.json and calibration.json)")
    zs.add_argument("--no-progress", action="store_true", help="no progress bar")


def _default_reading(args: argparse.Namespace) -> None:
    """No --method: the reading the checkpoint's calibration chose on validation, said on stderr (adaptive sampling
    belongs to the Monte Carlo readings, so --adaptive keeps the classifier's own default)."""
    if args.method is not None or args.adaptive:
        return
    chosen = default_reading(args.checkpoint)
    if chosen is not None:
        args.method, why = chosen
        print(f"note: method {args.method}, {why}; --method chooses another", file=sys.stderr)


def _classifier(args: argparse.Namespace):
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if args.samples < 1:
        raise TextdiffError(f"--samples must be at least 1, got {args.samples}")
    if not args.z >= 0 or args.z == float("inf"):  # NaN fails the first test
        raise TextdiffError(f"--z must be a finite number of standard errors >= 0, got {args.z}")
    return load_classifier(args.checkpoint, args.method, classes, args.prompt_template, max_length=args.max_length,
                           options=args.load)


def _labelled(args: argparse.Namespace, classes: list[str]):
    """The labelled rows of --data/--split (the split resolved in place: files default to all of their rows), as
    (dataset, class indices of the checkpoint); says how many rows of which split it took."""
    data = load_data(args.data, args.split, text_col=args.text_col, label_col=args.label_col, min_classes=1,
                     max_samples=args.limit, seed=0)
    limited = f" (--limit {args.limit})" if args.limit else ""
    print(f"using {len(data)} rows of {args.data}, split {args.split}{limited}"
          + (": every row of the file" if args.split == "all" and is_file_spec(args.data) else ""))
    unknown = sorted(set(data.classes) - set(classes))
    if unknown:
        raise TextdiffError(f"labels {unknown} in {args.data} are not classes of the checkpoint ({classes})")
    index = {name: i for i, name in enumerate(classes)}
    return data, [index[data.classes[y]] for y in data.labels]


def _default_split(args: argparse.Namespace, fixed: str) -> None:
    """--split when not given: every row of the user's own file, else the dataset's fixed split ``fixed``; and
    ``fixed`` for a file the checkpoint was trained on too (its other rows are training rows)."""
    if args.split is not None:
        return
    args.split = fixed
    if is_file_spec(args.data):
        meta = CheckpointMeta.read(args.checkpoint) if Path(args.checkpoint).is_dir() else CheckpointMeta()
        trained = {Path(spec).expanduser().resolve() for spec in meta.data_specs}
        if Path(args.data).expanduser().resolve() in trained:
            print(f"note: {args.checkpoint} was trained on {args.data}, so only its {fixed} split is used")
        else:
            args.split = "all"


def _class_name(label: str, classes: list[str]) -> str:
    """A data label as a checkpoint class: its name, or an integer label read as the index of one."""
    if label not in classes and label.isdigit() and int(label) < len(classes):
        return classes[int(label)]
    return label


def cmd_classify(args: argparse.Namespace) -> int:
    _default_reading(args)
    clf = _classifier(args)
    if not args.text.strip():
        raise TextdiffError("the text is empty")
    p = clf.classify(args.text, args.samples, adaptive=args.adaptive, z=args.z,
                     generator=torch.Generator().manual_seed(args.seed))
    passes = f"{p.forward_passes} forward pass" + ("" if p.forward_passes == 1 else "es")
    print(f"class: {p.label}  (confidence {p.confidence:.3f}, method {clf.method}, {passes}, {p.seconds:.2f} s)")
    raws = (torch.log_softmax(torch.tensor(p.log_likelihood, dtype=torch.float64)  # log P(c|x) before calibration
                              + torch.tensor(clf.log_prior, dtype=torch.float64), 0).tolist()
            if clf.method == "infill" else p.posterior)
    for name, post, ll, se, raw in zip(p.classes, p.posterior, p.log_likelihood, p.log_likelihood_se, raws,
                                       strict=True):
        if clf.method == "tfidf":  # a discriminative model: it has no likelihood to show
            print(f"  {name:>16}  P(c|x) = {post:.3f}")
        elif clf.method == DISCRIMINATIVE:  # the head's logit in the likelihood's place
            print(f"  {name:>16}  P(c|x) = {post:.3f}   logit = {ll:7.3f}")
        elif clf.method == "infill":  # the reading gives P(c|x) itself: its log before calibration
            print(f"  {name:>16}  P(c|x) = {post:.3f}   log P(c|x) before calibration = {raw:7.3f}")
        else:
            print(f"  {name:>16}  P(c|x) = {post:.3f}   log P(x|c) = {ll:9.2f} ± {se:.2f}")
    if p.raw_label is not None and p.raw_label != p.label:
        print(f"  note: {p.calibration_note()}")
    windows = p.scores[0].windows
    if windows > 1:
        print(f"  scored in {windows} windows of the model's length (the text is longer than one window)")
    if clf.method == DISCRIMINATIVE:
        scores = f"max softmax probability {p.max_softmax:.3f}, energy {p.energy:.3f}"
        if p.ood is None:
            print(f"  OOD: unknown ({scores}; no calibration for this checkpoint to place them: run train_cli.py "
                  "calibrate)")
        else:
            print(f"  OOD: {'FLAGGED' if p.ood else 'no'} ({scores}; minus the energy at the "
                  f"{ordinal(p.ood_percentile, 1)} percentile of validation texts)")
    elif clf.method in ("infill", "combined", "tfidf"):
        print("  OOD: not available (this reading gives the class posterior, not how typical the text is)")
    elif p.ood is None:
        print("  OOD: unknown (no calibration for this checkpoint; run train_cli.py calibrate)")
    else:
        place = ordinal(p.ood_percentile, 1)
        print(f"  OOD: {'FLAGGED' if p.ood else 'no'} (evidence per token at the {place} percentile of validation "
              "texts)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.out:
        check_writable(args.out, "--out")
    _default_split(args, "test")
    _default_reading(args)
    clf = _classifier(args)
    data, labels = _labelled(args, clf.classes)
    report = evaluate_classifier(clf, data.texts, labels, args.samples, args.adaptive, args.z, args.seed,
                                 progress=not args.no_progress)
    report |= {"checkpoint": args.checkpoint, "data": args.data, "split": args.split, "limit": args.limit,
               "seed": args.seed, "hardware": f"{platform.machine()} CPU x{torch.get_num_threads()} threads"
               if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
               "created": datetime.now(UTC).isoformat(timespec="seconds")}
    low, high = report["accuracy_ci95"]
    print(f"{clf.method} on {args.data}/{args.split}: accuracy {report['accuracy']:.3f} "
          f"[{low:.3f}, {high:.3f}] (n={report['n']}), ECE {report['ece']:.3f}, "
          f"median latency {report['latency_s']['median']:.3f} s, {report['examples_per_s']:.2f} texts/s, "
          f"{report['forward_passes_mean']:.1f} forward passes/text")
    for name, m in report["per_class"].items():
        print(f"  {name:>16}  precision {m['precision']:.3f}  recall {m['recall']:.3f}  f1 {m['f1']:.3f}")
    if args.out:
        write_file(args.out, lambda path: path.write_text(json.dumps(report, indent=2) + "\n"))
        print(f"wrote {args.out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    _default_split(args, "validation")
    if args.split == "test":
        raise TextdiffError("calibration is fitted on validation data, never on the test split")
    if args.split == "all" and not is_file_spec(args.data):
        raise TextdiffError(f"--split all of {args.data} includes its test split; calibrate on --split validation")
    path = Path(args.checkpoint)
    if not path.is_dir():
        raise TextdiffError(f"calibrate writes {CALIBRATION_FILE} into a checkpoint directory; {path} is not one")
    clf = _classifier(args)
    data, labels = _labelled(args, clf.classes)
    if clf.method == "combined":
        return _calibrate_combined(args, path, data, labels)
    predictions = score_matrix(clf, data.texts, args.samples, args.seed, not args.no_progress, args.adaptive, args.z)
    fitted = fit_calibration(predictions, labels, clf.log_prior)
    file = write_calibration(path, clf.method, asdict(fitted) | {
        "fitted_on": f"{args.data}/{args.split}", "n": len(labels), "samples": args.samples,
        "adaptive": args.adaptive})

    def accuracy(calibration: Calibration) -> float:  # the classifier's own decision rule under a calibration
        clf.calibration = calibration
        decided = [clf.decide(p.log_likelihood) for p in predictions]
        return sum(d == y for d, y in zip(decided, labels, strict=True)) / len(labels)

    before, after = accuracy(Calibration(bias=[0.0] * len(clf.classes))), accuracy(fitted)
    print(f"{clf.method}: temperature {fitted.temperature:.3f}, bias {[round(b, 3) for b in fitted.bias]}, "
          f"OOD reference from {len(fitted.ood_reference)} texts -> {file}")
    print(f"{args.split} accuracy ({len(labels)} texts): {before:.1%} before, "
          f"{after:.1%} with the fitted bias (fitted on these texts: not a held-out figure)")
    if args.split == "all":
        print(f"note: fitted on every row of {args.data}; evaluate on texts outside it")
    return 0


def _calibrate_combined(args: argparse.Namespace, path, data, labels: list[int]) -> int:
    """The combined reading's weight, bias and temperature, with two-fold accuracies of all three readings."""
    fitted, accuracy = calibrate_combined(args.checkpoint, data.texts, labels, args.samples, args.seed,
                                          not args.no_progress, args.load)
    file = write_calibration(path, "combined", asdict(fitted) | {
        "fitted_on": f"{args.data}/{args.split}", "n": len(labels), "samples": args.samples,
        "cross_fitted_accuracy": accuracy})
    print(f"combined: Bayes + {fitted.weight:.3f} x infill, temperature {fitted.temperature:.3f}, bias "
          f"{[round(b, 3) for b in fitted.bias]} -> {file}")
    print(f"{args.split}, two folds (fitted on one half, read on the other, {len(labels)} texts): Bayes "
          f"{accuracy['bayes']:.1%}, infill {accuracy['infill']:.1%}, combined {accuracy['combined']:.1%}")
    if accuracy["combined"] <= max(accuracy["bayes"], accuracy["infill"]):
        print("note: the combined reading is no better than the better single reading here; the report leaves it out")
    return 0


def cmd_paired(args: argparse.Namespace) -> int:
    reports = []
    for path in (args.a, args.b):
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise TextdiffError(f"cannot read the report {path}: {exc}") from exc
    d = paired_reports(*reports)
    low, high = d["difference_ci95"]
    for name, r in zip("AB", reports, strict=True):
        print(f"{name}: {r.get('checkpoint')} ({r.get('method')}): accuracy {r['accuracy']:.1%} (n={r['n']})")
    print(f"A - B: {100 * d['difference']:+.1f} points (95% CI {100 * low:+.1f} to {100 * high:+.1f}); right only "
          f"by A: {d['a_only']}, only by B: {d['b_only']}; exact McNemar p = {d['mcnemar_p']:.2g}")
    return 0


def cmd_perplexity(args: argparse.Namespace) -> int:
    if args.samples < 1:
        raise TextdiffError(f"--samples must be at least 1, got {args.samples}")
    check_writable(args.out, "--out")
    lm = load_model(args.checkpoint, options=args.load)
    checkpoint = lm.checkpoint
    conditional = checkpoint.conditioning in CLASS_PROMPTED and checkpoint.class_prompted
    data = load_data(args.data, args.split, text_col=args.text_col, label_col=args.label_col if conditional else None,
                     max_samples=args.limit, seed=0)
    prompts: list[str | None] = [None] * len(data)
    if conditional:
        classes, by_class = checkpoint.classes, dict(zip(checkpoint.classes, checkpoint.class_prompts(), strict=True))
        names = [_class_name(name, classes) for name in data.classes]
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise TextdiffError(f"labels {unknown} in {args.data} are not classes of the checkpoint ({classes}); "
                                "give class names or indices 0-" + str(len(classes) - 1))
        data.classes = names
        prompts = [by_class[names[y]] for y in data.labels]
    report = corpus_perplexity(lm, data.texts, prompts, args.samples, args.seed,
                               args.max_length or checkpoint.max_length, progress=not args.no_progress)
    for record in report["texts"]:
        if data.labels is not None:
            record["label"] = data.classes[data.labels[record["index"]]]
    report |= {"checkpoint": args.checkpoint, "data": args.data, "split": args.split, "limit": args.limit,
               "conditioned_on_class": bool(conditional)}
    out = Path(args.out)
    write_file(out, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))  # all of it or nothing
    low, high = report["perplexity_ci95"]
    given = " given each text's class prompt" if conditional else ""
    print(f"{report['bound']} perplexity {report['perplexity']:.3f} [{low:.3f}, {high:.3f}] over {report['n']} texts, "
          f"{report['tokens']} tokens{given}")
    print(f"wrote {out}")
    return 0


def cmd_zero_shot(args: argparse.Namespace) -> int:
    """Prompt chosen and bias fitted on validation, so the zero-shot LM is measured like the trained models."""
    if args.split in ("test", "all"):
        raise TextdiffError("the prompt is chosen and the calibration fitted on validation data, never on test")
    check_output_dir(args.out, "--out")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    templates = args.template or ZERO_SHOT_TEMPLATES
    bad = [t for t in templates if "{label}" not in t]
    if bad:
        raise TextdiffError(f"every --template must contain {{label}}, got {bad[0]!r}")
    method = load_classifier(args.model, None, classes, templates[0], options=args.load).method
    data, labels = _labelled(args, classes)
    template, fitted, readings = choose_zero_shot(args.model, classes, templates, data.texts, labels, args.seed,
                                                  not args.no_progress, args.load)
    for t, (before, after) in readings.items():
        print(f"  {t!r}: {before:.1%} as is, {after:.1%} with a fitted bias" + ("  <- chosen" if t == template else ""))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    candidates = {t: {"accuracy": before, "accuracy_with_bias": after} for t, (before, after) in readings.items()}
    meta = {"conditioning": ZERO_SHOT, "base_model": args.model, "classes": classes, "class_prompt": template,
            "chosen_on": {"data": args.data, "split": args.split, "n": len(labels), "candidates": candidates}}
    calibration = {method: asdict(fitted) | {"fitted_on": f"{args.data}/{args.split}", "n": len(labels)}}
    write_zero_shot(out, meta, calibration)
    print(f"wrote {out} ({args.model}, prompt {template!r}; fitted on these texts: evaluate on others)")
    return 0


COMMANDS = {  # command name -> what runs it
    "classify": cmd_classify,
    "evaluate": cmd_evaluate,
    "calibrate": cmd_calibrate,
    "paired": cmd_paired,
    "perplexity": cmd_perplexity,
    "zero-shot": cmd_zero_shot,
}
