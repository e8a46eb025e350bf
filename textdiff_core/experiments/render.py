"""The report's rendering: pure functions from a ``results.json`` record to markdown (RESULTS.md, the README's
results block, the checkpoints' model cards), and the few the experiments share over their own records (a grid's
``points_to_go``, a campaign record's ``better_accuracy``, augment's section ``augment_lines``). Nothing here
measures or reads a model; ``measure`` writes the record. Nothing here imports an experiment: they import this.
"""

from __future__ import annotations

import math
from pathlib import Path

from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.settings import LEGACY_DEFAULTS, default_warmup_steps


def _points(share: float) -> str:
    """A difference of two accuracies in percentage points (not a relative change): -0.018 -> '-1.8 points'."""
    return f"{100 * share:+.1f} points"


def targets(result: dict) -> list[str]:
    """The project's targets beside what this report measured, each marked met or not."""
    rows = {r["method"]: r for r in result["classification"]}
    elbo = next((r for m, r in rows.items() if m.startswith("diffusion ELBO, shared noise, adaptive")), None)
    twin = next((r for m, r in rows.items() if m.startswith("left-to-right twin")), None)
    head = result.get("head_to_head")
    if head:  # the larger, paired comparison decides the accuracy targets
        elbo, twin = head["diffusion"], head["ar"]
    ratio = result["perplexity"]["ratio"]

    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines = ["| target | measured | |", "|---|---|---|"]
    n = f" (n={head['n']})" if head else ""
    if elbo:
        lines.append(f"| diffusion ELBO accuracy >= 90%{n} | {elbo['accuracy']:.1%} | "
                     f"{mark(elbo['accuracy'] >= 0.9)} |")
        lines.append(f"| diffusion ELBO median latency < 0.5 s | {elbo['median_latency_s']:.3f} s | "
                     f"{mark(elbo['median_latency_s'] < 0.5)} |")
    if head:
        d = head["paired"]
        gap = (f"{_points(d['difference'])} (95% CI {_points(d['difference_ci95'][0])} to "
               f"{_points(d['difference_ci95'][1])}, "
               f"McNemar p={d['mcnemar_p']:.2g})")
        lines.append(f"| diffusion ELBO within 1 point of the left-to-right twin ({twin['accuracy']:.1%}){n} | {gap} | "
                     f"{mark(d['difference'] >= -0.01)} |")
        lines.append(f"| diffusion ELBO accuracy >= the twin's{n} | {gap} | {mark(d['difference'] >= 0)} |")
    elif elbo and twin:
        lines.append(f"| diffusion ELBO accuracy >= left-to-right twin's ({twin['accuracy']:.1%}) | "
                     f"{elbo['accuracy']:.1%} | {mark(elbo['accuracy'] >= twin['accuracy'])} |")
    infill = (head or {}).get("readings", {}).get("diffusion_infill")
    if infill:
        twin_best = max((head["readings"][k] for k in ("ar", "ar_infill") if k in head["readings"]),
                        key=lambda r: r["accuracy"])
        pair = next(d for d in head["pairs"] if d["a"] == "diffusion_infill" and head["readings"][d["b"]] is twin_best)
        lines.append(f"| diffusion infill accuracy >= 90%{n} | {infill['accuracy']:.1%} | "
                     f"{mark(infill['accuracy'] >= 0.9)} |")
        lines.append(f"| diffusion infill median latency <= 0.1 s | {infill['median_latency_s']:.3f} s | "
                     f"{mark(infill['median_latency_s'] <= 0.1)} |")
        lines.append(f"| diffusion infill >= the better of the twin's readings ({twin_best['label']}, "
                     f"{twin_best['accuracy']:.1%}){n} | {_points(pair['difference'])} (95% CI "
                     f"{_points(pair['difference_ci95'][0])} to {_points(pair['difference_ci95'][1])}, McNemar "
                     f"p={pair['mcnemar_p']:.2g}) | {mark(pair['difference'] >= 0)} |")
    lines.append(f"| ELBO perplexity <= 1.15 x left-to-right exact | {ratio:.3f} x | {mark(ratio <= 1.15)} |")
    if result.get("campaign"):
        lines.append(f"| many epochs: ELBO perplexity <= 1.3 x left-to-right exact (MDLM's gap at equal tokens) | "
                     f"{ratio:.3f} x | {mark(ratio <= 1.3)} |")
    lines += decoding_targets(result.get("decoding") or {}, mark, result.get("decoding_checks"))
    return lines


DEFAULT_METHOD, TWIN_METHOD = "default (blocks, dual cache)", "ar (KV cache)"  # decoding_bench's method names


def decoding_targets(decoding: dict, mark, checks: dict | None = None) -> list[str]:
    """The fast-decoding targets beside what the decoding benchmark measured: the default's wall time against the
    twin's (median over seeds), its text (word entropy, distinct seeds, generative perplexity against one token per
    pass without cache), the cache's approximation (greedy agreement from ``checks``, sampled quality within the
    uncached run's intervals) and batches."""
    rows = {(r["method"], r["length"]): r for r in decoding.get("summary", [])}
    ratios = {r["length"]: r["default_over_twin"] for r in decoding.get("ratios", [])}
    lines = []
    for length, limit in ((128, 0.5), (256, 0.4)):
        if length in ratios:
            lines.append(f"| {length} tokens: default diffusion wall time <= {limit} x the twin's (KV cache), median "
                         f"of {rows[(DEFAULT_METHOD, length)]['runs']} seeds | {ratios[length]:.2f} x "
                         f"({rows[(DEFAULT_METHOD, length)]['wall_s_median']:.2f} s vs "
                         f"{rows[(TWIN_METHOD, length)]['wall_s_median']:.2f} s) | {mark(ratios[length] <= limit)} |")
    default, one = rows.get((DEFAULT_METHOD, 128)), rows.get(("one per pass, no cache", 128))
    if default:
        ok = default["word_entropy_median"] >= 3.8 and default["distinct_texts"] == default["runs"]
        lines.append(f"| 128 tokens: the default's median word entropy >= 3.8 nats per 100 words, distinct texts for "
                     f"distinct seeds | {default['word_entropy_median']:.2f}; {default['distinct_texts']} distinct of "
                     f"{default['runs']} | {mark(ok)} |")
    if default and one and one.get("gen_ppl_ci95"):
        ok = default["gen_ppl"] <= one["gen_ppl_ci95"][1] and default["tokens_per_pass"] >= 4
        lines.append(f"| 128 tokens: the default's generative perplexity no worse than one token per pass without "
                     f"cache (within its 95% interval), >= 4 tokens per pass | {default['gen_ppl']:.0f} vs "
                     f"{one['gen_ppl']:.0f} ({one['gen_ppl_ci95'][0]:.0f}–{one['gen_ppl_ci95'][1]:.0f}); "
                     f"{default['tokens_per_pass']:.1f} tokens per pass | {mark(ok)} |")
    for cache, data in ((checks or {}).get("agreement") or {}).items():
        share = data["by_position_median"]
        lines.append(f"| greedy, one token per pass: the {cache} cache commits the uncached run's token at >= 90% of "
                     f"positions (median of {len(data['by_position'])} prompts; pass by pass on the same state: "
                     f"{data['pass_by_pass']:.1%}) | {share:.1%} | {mark(share >= 0.9)} |")
    uncached = rows.get(("default, no KV cache", 128))
    if default and uncached and uncached.get("gen_ppl_ci95") and uncached.get("word_entropy_ci95"):
        (pl, ph), (el, eh) = uncached["gen_ppl_ci95"], uncached["word_entropy_ci95"]
        cached_entropy = default["word_entropy_mean"]
        ok = pl <= default["gen_ppl"] <= ph and el <= cached_entropy <= eh
        lines.append(f"| 128 tokens, default sampling: the dual cache's generative perplexity and word entropy within "
                     f"the uncached run's 95% intervals | {default['gen_ppl']:.0f} in {pl:.0f}–{ph:.0f}; "
                     f"{cached_entropy:.2f} in {el:.2f}–{eh:.2f} | {mark(ok)} |")
    for model in ("diffusion", "ar"):
        batch = {b["samples"]: b["samples_per_s"] for b in decoding.get("batch", []) if b["model"] == model}
        if 1 in batch and 8 in batch:
            lines.append(f"| {model}: 8 samples in one batch no slower per sample than 1 | {batch[8]:.2f} vs "
                         f"{batch[1]:.2f} samples/s | {mark(batch[8] >= batch[1])} |")
    return lines


def decoding_lines(d: dict) -> list[str]:
    """RESULTS.md's Decoding section from the decoding benchmark's JSON (``bench/decoding.json``)."""
    s = d["settings"]
    lines = [f"From `python -m bench.decoding` ({d['hardware']}, {d['finished_at']}): prompt \"{s['prompt']}\", "
             f"sampling at temperature {s['temperature']} and top-p {s['top_p']}, seeds {s['seeds'][0]}–"
             f"{s['seeds'][-1]}. Wall time: median over seeds; generative perplexity under `{s['reference']}`: "
             "geometric mean with a 95% interval from the seeds' spread; word entropy (nats over the first 100 words; "
             "real reviews 4.1): median; other columns are means.", "",
             "| method | new tokens | forward passes | tokens/pass | positions run | wall (s) | gen. perplexity | "
             "95% interval | word entropy | distinct-2 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["summary"]:
        low, high = r.get("gen_ppl_ci95") or (float("nan"), float("nan"))
        lines.append(f"| {r['method']} | {r['length']} | {r['forward_passes']:.1f} | {r['tokens_per_pass']:.2f} | "
                     f"{r['tokens_processed']:,.0f} | {r.get('wall_s_median', r['wall_s']):.2f} | {r['gen_ppl']:.1f} | "
                     f"{low:.0f}–{high:.0f} | {r.get('word_entropy_median', float('nan')):.2f} | "
                     f"{r.get('distinct_2', float('nan')):.2f} |")
    if d.get("ratios"):
        lines += ["", "Default diffusion wall time over the twin's (KV cache), medians: " + ", ".join(
            f"{r['length']} tokens {r['default_over_twin']:.2f} x" for r in d["ratios"]) + "."]
    if d.get("batch"):
        lines += ["", f"Samples decoded as one batch ({d['batch'][0]['length']} new tokens, the default settings):", "",
                  "| model | N | wall (s) | samples/s |", "|---|---|---|---|"]
        lines += [f"| {b['model']} | {b['samples']} | {b['wall_s']:.2f} | {b['samples_per_s']:.2f} |"
                  for b in d["batch"]]
    return lines


def head_readings(head: dict) -> dict:
    """The paired comparison's readings by key; a record from before it compared every reading has the two."""
    return head.get("readings") or {"diffusion": head["diffusion"] | {"label": "diffusion ELBO, shared noise, "
                                                                      "adaptive"},
                                    "ar": head["ar"] | {"label": "left-to-right twin (exact)"}}


def head_table(head: dict) -> list[str]:
    """The whole-test-split readings and their paired differences, as markdown lines (RESULTS.md and the README)."""
    readings = head_readings(head)
    lines = ["The same reviews for every reading, so differences are judged pair by pair: their intervals are much "
             "narrower than the accuracies' intervals suggest.", "",
             "| reading | accuracy | 95% CI | ECE | median latency (s) | forward passes |", "|---|---|---|---|---|---|"]
    for r in readings.values():
        lines.append(f"| {r['label']} | {r['accuracy']:.1%} | {r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | {r['ece']:.3f} "
                     f"| {r['median_latency_s']:.3f} | {r['forward_passes_mean']:.1f} |")
    pairs = head.get("pairs") or [{"a": "diffusion", "b": "ar", **head["paired"]}]
    lines += ["", "| A − B | difference | 95% CI | right only by A | only by B | McNemar p |",
              "|---|---|---|---|---|---|"]
    for d in pairs:
        lines.append(f"| {readings[d['a']]['label']} − {readings[d['b']]['label']} | **{_points(d['difference'])}** | "
                     f"{_points(d['difference_ci95'][0])} to {_points(d['difference_ci95'][1])} | {d['a_only']} | "
                     f"{d['b_only']} | {d['mcnemar_p']:.2g} |")
    return lines


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def readme_table(result: dict) -> str:
    """The README's results block: every reading on the whole test split, and test perplexity (from results.json)."""
    head = result.get("head_to_head")
    lines = []
    if head:
        readings = head_readings(head)
        lines += [f"IMDB test split, {head['n']:,} reviews, the same reviews for every reading:", "",
                  "| reading | accuracy | 95% CI | median latency (s) |", "|---|---|---|---|"]
        lines += [f"| {r['label']} | {r['accuracy']:.1%} | {r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | "
                  f"{r['median_latency_s']:.3f} |" for r in readings.values()]
    p = result["perplexity"]
    lines += ["", f"Test perplexity ({p['texts']} reviews): diffusion ELBO bound {p['diffusion_elbo_ppl']:.1f}, "
              f"left-to-right exact {p['ar_exact_ppl']:.1f} (ratio {p['ratio']:.2f}). Hardware: {result['hardware']}."]
    lines += decoding_summary(result.get("decoding") or {})
    if result.get("crossover"):
        lines += ["", crossover_answer(result["crossover"]) + " See RESULTS.md."]
    if result.get("promises"):
        lines += ["", promises_summary(result["promises"]) + " See RESULTS.md."]
    return "\n".join(lines).strip() + "\n"


def decoding_summary(d: dict, length: int = 128) -> list[str]:
    """The README's decoding row: the default diffusion decoding against the twin's at ``length`` new tokens."""
    rows = {r["method"]: r for r in d.get("summary", []) if r["length"] == length}
    if DEFAULT_METHOD not in rows or TWIN_METHOD not in rows:
        return []
    diffusion, twin = rows[DEFAULT_METHOD], rows[TWIN_METHOD]

    def said(r: dict) -> str:
        return (f"{r['wall_s_median']:.2f} s in {r['forward_passes']:.0f} forward passes (generative perplexity "
                f"{r['gen_ppl']:.0f}, word entropy {r['word_entropy_median']:.2f})")

    return ["", f"Writing {length} new tokens at the default settings (median of {diffusion['runs']} seeds, one "
            f"machine): diffusion {said(diffusion)}, the twin with its KV cache {said(twin)}; diffusion takes "
            f"{diffusion['wall_s_median'] / twin['wall_s_median']:.2f} x the twin's time."]


def write_readme_table(readme: Path, result: dict) -> bool:
    """Replace the block between the README's results markers with ``readme_table``; False when it has none."""
    text = readme.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    readme.write_text(text[:start + len(README_START)] + "\n" + readme_table(result) + text[end:])
    return True


def results_markdown(result: dict) -> str:
    """RESULTS.md: every section of the record."""
    lines = ["# Results", "", f"Regenerated by `{result['command']}` on {result['finished_at']}.",
             f"Hardware: {result['hardware']}. Total time: {result['seconds'] / 60:.1f} min"
             + (f" (measuring time, over more than one run: {result['resumed_pieces']} piece(s) came from an "
                f"interrupted one)." if result.get("resumed_pieces") else "."), ""]
    lines += ["## Classification: IMDB test split (fixed subset)", "",
              "| method | n | accuracy | 95% CI | ECE | median latency (s) | forward passes |",
              "|---|---|---|---|---|---|---|"]
    for r in result["classification"]:
        lines.append(f"| {r['method']} | {r['n']} | {r['accuracy']:.1%} | {r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | "
                     f"{r['ece']:.3f} | {r['median_latency_s']:.3f} | {r['forward_passes_mean']:.1f} |")
    lines += ["", "Posteriors are calibrated (temperature and per-class bias fitted on the validation split) where the "
              "checkpoint's calibration.json has the method: " + ", ".join(
                  r["method"] for r in result["classification"] if r.get("calibrated")) + "."]
    head = result.get("head_to_head")
    if head:
        scope = "the whole test split" if not result["settings"].get("n_head") else "a fixed subset of the test split"
        lines += ["", f"## Every reading of both models: {scope}, paired (n={head['n']})", ""]
        lines += head_table(head)
    lines += ["", "## Targets", ""] + targets(result)
    p = result["perplexity"]
    lines += ["", "## Perplexity on test text", "",
              f"{p['texts']} test reviews, {p['tokens']:,} tokens ({p['note']}).", "",
              "| model | perplexity |", "|---|---|",
              f"| diffusion, ELBO bound (K={p['elbo_samples']}) | {p['diffusion_elbo_ppl']:.2f} |",
              f"| left-to-right, exact | {p['ar_exact_ppl']:.2f} |",
              f"| ratio | {p['ratio']:.3f} |"]
    if result.get("campaign"):
        lines += ["", "## Many epochs: the pair by epoch", ""] + campaign_lines(result)
    if result.get("crossover"):
        lines += ["", "## When does diffusion win? The data-constrained crossover", ""]
        lines += crossover_lines(result["crossover"])
    if result.get("augment"):
        lines += ["", "## Real + synthetic reviews, data-constrained", ""] + augment_lines(result["augment"])
    if result.get("augment_finetune"):
        lines += ["", "## Real + synthetic reviews, the shipped pair fine-tuned", ""] + augment_lines(
            result["augment_finetune"])
    if result.get("promises"):
        lines += [""] + promises_lines(result["promises"], result.get("promises_about") or {})
    lines += ["", "## Decoding", ""] + decoding_lines(result["decoding"])
    lines += ["", "## Samples (uncurated: the first seeds)", ""]
    for label, texts in result["samples"].items():
        lines += [f"**{label}**", ""] + [f"{i + 1}. {t}" for i, t in enumerate(texts)] + [""]
    return "\n".join(lines) + "\n"


def _ci(pair) -> str:
    if not pair:
        return "–"
    return f"{pair[0]:.3f} to {pair[1]:.3f}" if min(pair) < 0 else f"{pair[0]:.3f}–{pair[1]:.3f}"


def _crossover_cell(row: dict, finished: bool) -> str:
    c = row.get("crossover")
    if c:
        return (f"{c['tokens_seen']:,} tokens (step {c['step']}, epoch {c['epoch']:g}); diffusion − twin "
                f"{c['difference_bits_per_token']:+.3f} ({_ci(c['ci95'])})")
    return "none within budget" if finished else "none so far (in progress)"


USES_CONTEXT_BITS = 0.1  # a twin this close to the unigram level has not learned to use context
PUBLISHED_EXPONENT = 2.174  # Prabhudesai et al. 2025: C_crit grows as U^2.174


def crossover_answer(c: dict) -> str:
    """One line: where diffusion's best bound passes the twin's best loss, per U (the README's results block)."""
    parts = []
    for row in c["runs"]:
        cross = row.get("crossover")
        where = (f"crosses at epoch {cross['epoch']:g}" if cross else
                 "no crossover within budget" if row["finished"] else "no crossover so far")
        parts.append(f"U={row['unique_reviews']:,}: {where}")
    fit = c.get("exponent")
    tail = (f"; C_crit ∝ U^{fit['k']:.2f} (95% {fit['ci95'][0]:.2f}–{fit['ci95'][1]:.2f}; published "
            f"{fit['published']})" if fit else "")
    gaps = [r["best_difference"]["difference_bits_per_token"] for r in c["runs"] if r.get("best_difference")]
    if gaps:
        tail += (f"; at each twin's best, diffusion's loss minus the twin's: {min(gaps):+.2f} to {max(gaps):+.2f} "
                 "bits per token")
    levels = [r["unigram"]["diffusion_best_minus"]["difference_bits_per_token"] for r in c["runs"] if r.get("unigram")]
    if levels:
        tail += (f"; diffusion's best minus a unigram model (the word frequencies of the same reviews, which uses no "
                 f"context): {min(levels):+.3f} to {max(levels):+.3f}")
        if max(levels) > -USES_CONTEXT_BITS:
            tail += (f" — within {USES_CONTEXT_BITS} bits of it at some size, so there the diffusion twin has not "
                     "learned to use context and the grid cannot say when diffusion wins")
    sizes = len((c.get("config") or {}).get("sizes") or c["runs"])
    status = "" if c.get("finished") else f", in progress: {len(c['runs'])} of {sizes} sizes begun"
    return (f"Data-constrained crossover (both twins trained from scratch on U unique training reviews, repeated "
            f"for many epochs; validation loss in bits per token, lower is better{status}): "
            + "; ".join(parts) + tail + ".")


def _per_twin(rates: dict | None) -> str:
    names = {"diffusion": "diffusion", "ar": "left to right"}
    return ", ".join(f"{names.get(k, k)} {v:.2f} s" for k, v in sorted((rates or {}).items()))


def _time_sentence(c: dict) -> str:
    time_ = c.get("time") or {}
    text = (f"Time (a shared 2-core machine; the latest command ran with {c.get('threads', '?')} torch thread(s)): "
            f"{time_.get('training_hours', 0):.1f} h of training, wall clock, in {time_.get('turns', 0)} turns")
    text += f" ({time_['cpu_hours']:.1f} CPU-hours where recorded)" if time_.get("cpu_hours") else ""
    text += (f"; per step at the median turn, wall clock: {_per_twin(time_['seconds_per_step'])}"
             if time_.get("seconds_per_step") else "")
    text += f"; CPU: {_per_twin(time_['cpu_seconds_per_step'])}" if time_.get("cpu_seconds_per_step") else ""
    probe = c.get("probe_seconds_per_step")
    return text + (f"; in the probe before the start: {_per_twin(probe)}." if probe else ".")


def points_to_go(results: dict, row: dict | None = None) -> int:
    """Validation points still to read: of one size's row (those of its plan past its last point read), or of the
    whole grid (sizes not begun counted from the plan)."""
    def left(r: dict) -> int:
        last = r["steps"][-1] if r["steps"] else 0
        return sum(s > last for s in r["validation_steps"])

    if row is not None:
        return left(row)
    begun = {r["unique_reviews"] for r in results["runs"]}
    return sum(left(r) for r in results["runs"]) + sum(
        len(p["points"]) for p in results.get("plan") or [] if p.get("unique_reviews") not in begun)


def crossover_lines(c: dict) -> list[str]:
    """RESULTS.md's crossover section: settings, per-U best points and crossover, the exponent, the no-context level,
    accuracy against U, every validation point and the control arm."""
    return (_crossover_settings(c) + _crossover_bests(c) + _crossover_levels(c) + _crossover_accuracy(c)
            + _crossover_points(c) + _crossover_control(c))


def _crossover_settings(c: dict) -> list[str]:
    """Status, the command and the one paragraph of settings shared by every U and both twins."""
    cfg, t, shape, model = c["config"], c["config"]["train"], c["config"]["shape"], c.get("model") or {}
    done = sum(len(r["steps"]) for r in c["runs"])
    status = ("Finished" if c.get("finished") else
              f"In progress: {done} validation points read, {points_to_go(c)} to go")
    return [f"{status} (updated {c.get('updated_at', '?')}); from `{c['source']}`, written by", "", "```bash",
            c.get("command") or "python train_cli.py crossover …", "```", "",
            f"Both twins of every U (nested subsets of the training split) share one {shape['layers']}-layer, "
            f"{shape['width']}-wide BERT ({model.get('parameters', 0):,} parameters; the left-to-right twin with "
            f"causal attention), one lower-cased WordPiece tokenizer of {model.get('vocab_size', '?')} tokens "
            f"trained on the largest subset, one random initialisation (seed {t['seed']}), AdamW (lr {t['lr']}, "
            f"weight decay {t['weight_decay']}, {t['lr_schedule']}, {t['warmup_steps']} warm-up steps), batches of "
            f"{t['batch_size']} random {t['max_length']}-token windows, {t['conditioning']} conditioning (the class "
            f"word as one more token); the diffusion loss is weighted {t['noise']['weighting']} (the bound). Only "
            f"the objective differs. Validation: the same {cfg['val_size']} reviews of the validation split for "
            f"every U and both twins (their first window, given the review's own class word): the diffusion ELBO "
            f"bound ({cfg['val_samples']} samples, the same masks at every point) and the twin's exact NLL, in bits "
            f"per token, 95% intervals over reviews. Not varied: the architecture, tokenizer, batch, learning rate "
            f"and lr schedule, seed, window length and the class-word settings. " + _time_sentence(c), ""]


def _crossover_bests(c: dict) -> list[str]:
    """Per U: the budget, both twins' best points, their paired difference and the crossover; then the exponent."""
    t = c["config"]["train"]
    lines = ["| U (reviews) | unique tokens | budget: steps (epochs) | points | diffusion best bits/token (epoch) | "
             "twin best (epoch) | diffusion − twin at the bests, 95% CI | crossover |",
             "|---|---|---|---|---|---|---|---|"]
    for row in c["runs"]:
        best, diff = row.get("best") or {}, row.get("best_difference")
        cells = [f"{row['unique_reviews']:,}", f"{row['unique_tokens']:,}" if row.get("unique_tokens") else "–",
                 f"{row['planned_steps']} ({row['planned_steps'] * t['batch_size'] / row['unique_reviews']:g})",
                 f"{len(row['steps'])}" + (f", {points_to_go(c, row)} to go" if points_to_go(c, row) else "")]
        for twin in ("diffusion", "ar"):
            b = best.get(twin)
            cells.append(f"{b['bits_per_token']:.3f} ({b['epoch']:g})" if b else "–")
        cells.append(f"{diff['difference_bits_per_token']:+.3f} ({_ci(diff['ci95'])})" if diff else "–")
        cells.append(_crossover_cell(row, row["finished"]))
        lines.append("| " + " | ".join(cells) + " |")
    fit = c.get("exponent")
    crossing = [r["unique_reviews"] for r in c["runs"] if r.get("crossover")]
    lines += ["", "Crossover: the first validation point at which diffusion's best bound so far is below the twin's "
              "best loss so far (tokens seen by the diffusion twin); its interval is that of the paired per-review "
              "difference between the two best points. " + (
                  f"Fitted over the {fit['n']} sizes that cross: C_crit ∝ U^{fit['k']:.2f} (95% interval "
                  f"{fit['ci95'][0]:.2f} to {fit['ci95'][1]:.2f}), beside the published {fit['published']} "
                  "(Prabhudesai et al. 2025)." if fit else
                  f"{len(crossing)} of {len(c['runs'])} sizes cross{'' if c.get('finished') else ' so far'}"
                  f"{' (' + ', '.join(map(str, crossing)) + ')' if crossing else ''}; the exponent of C_crit ∝ U^k "
                  "needs at least three, so it is not fitted.")]
    return lines


def _crossover_levels(c: dict) -> list[str]:
    """Each U's best points against a unigram model of the same reviews: the level of a model using no context."""
    lines = []
    leveled = [row for row in c["runs"] if row.get("unigram")]
    if leveled:
        lines += ["", "### Against the no-context level", "",
                  "A unigram model of the same U training reviews (token counts plus one) read on the same validation "
                  "windows: the level of a model that uses no context at all. A best point below it (a negative "
                  "difference) uses context; one at it has learnt only which tokens are common.", "",
                  "| U | unigram bits/token (95% CI) | diffusion best − unigram, 95% CI | "
                  "twin best − unigram, 95% CI |",
                  "|---|---|---|---|"]
        for row in leveled:
            u = row["unigram"]
            cells = [f"{row['unique_reviews']:,}", f"{u['bits_per_token']:.3f} ({_ci(u['ci95'])})"]
            cells += [f"{u[f'{t}_best_minus']['difference_bits_per_token']:+.3f} ({_ci(u[f'{t}_best_minus']['ci95'])})"
                      for t in ("diffusion", "ar")]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _crossover_accuracy(c: dict) -> list[str]:
    """Accuracy of every reading against U, at each objective's best-bound point, beside TF-IDF on the same U."""
    cfg = c["config"]
    lines = ["", "### Accuracy against U (validation reviews, at each objective's best-bound point)", "",
              "| U | diffusion Bayes | diffusion infill | twin Bayes | twin infill | TF-IDF + LR on the same U |",
              "|---|---|---|---|---|---|"]
    for row in c["runs"]:
        best = row.get("best") or {}
        cells = [f"{row['unique_reviews']:,}"]
        for twin in ("diffusion", "ar"):
            for reading in ("bayes", "infill"):
                cells.append(_percent((best.get(twin) or {}).get(f"accuracy_{reading}")))
        cells.append(_percent(row.get("tfidf_accuracy")))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"One accuracy on {cfg['val_size']} reviews carries a 95% half-width of up to "
              f"{100 * 1.96 * math.sqrt(0.25 / cfg['val_size']):.1f} points. The best point is chosen by bits per "
              "token on the same reviews, not by accuracy.", ""]
    return lines


def _crossover_points(c: dict) -> list[str]:
    """Every validation point of every U, both twins, in bits per token and per byte."""
    lines = ["### Every validation point", "",
             "| U | step | epoch | tokens seen | diffusion bits/token (95% CI) | twin bits/token (95% CI) | "
             "diffusion bits/byte | twin bits/byte |", "|---|---|---|---|---|---|---|---|"]
    for row in c["runs"]:
        for j, step in enumerate(row["steps"]):
            lines.append(
                f"| {row['unique_reviews']:,} | {step} | {row['epochs'][j]:g} | {row['tokens_seen'][j]:,} | "
                f"{row['diffusion_bits_per_token'][j]:.3f} ({_ci(row['diffusion_bits_per_token_ci95'][j])}) | "
                f"{row['ar_bits_per_token'][j]:.3f} ({_ci(row['ar_bits_per_token_ci95'][j])}) | "
                f"{row['diffusion_bits_per_byte'][j]:.3f} | {row['ar_bits_per_byte'][j]:.3f} |")
    return lines


def _crossover_control(c: dict) -> list[str]:
    """The control arm (the twin with random input-token masking), where it ran."""
    controlled = [row for row in c["runs"] if (row.get("best") or {}).get("ar_masked")]
    lines = ["", "Control arm (the left-to-right twin with random input-token masking, Gao et al., which tells the "
              "objective from the augmentation): " + (f"{str(c['control_arm']).removeprefix('ran: ')}." if controlled
                                                    else "did not run."),
              "", "Dated readings, and side checks of what the curves show: docs/experiments.md."]
    if controlled:
        lines += ["", "| U | control best bits/token (epoch) | twin best (epoch) | diffusion best (epoch) | "
                  "diffusion − control at the bests, 95% CI |", "|---|---|---|---|---|"]
        for row in controlled:
            b, diff = row["best"], row.get("control_difference")
            cells = [f"{row['unique_reviews']:,}"] + [f"{b[t]['bits_per_token']:.3f} ({b[t]['epoch']:g})" if b.get(t)
                                                      else "–" for t in ("ar_masked", "ar", "diffusion")]
            cells.append(f"{diff['difference_bits_per_token']:+.3f} ({_ci(diff['ci95'])})" if diff else "–")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _percent(x) -> str:
    return f"{x:.1%}" if isinstance(x, (int, float)) else "–"


def _number(x) -> str:
    return f"{x:.1f}" if isinstance(x, (int, float)) else "–"


def better_accuracy(record: dict) -> float | None:
    """The better of a record's classifier readings (Bayes over the likelihood, infilled class); None without one."""
    readings = [record[k] for k in ("val_accuracy", "val_accuracy_infill") if isinstance(record.get(k), (int, float))]
    return max(readings) if readings else None


def campaign_lines(result: dict) -> list[str]:
    """RESULTS.md's many-epoch section: both twins by epoch on the validation monitor, the choice, and the shipped
    pair beside the one it replaced."""
    c = result["campaign"]
    r = c["recipe"]
    by_epoch = {twin: {row["epochs_completed"]: row for row in rows} for twin, rows in c["epochs"].items()}
    n = next((row.get("val_n") for rows in c["epochs"].values() for row in rows if row.get("val_n")), "?")
    lines = [f"Both twins trained from their base weights to {r['epochs']} epochs of the same data, seed "
             f"{r['seed']}, batch {r['batch_size']}, lr {r['lr']} ({r['lr_schedule']}), {r['conditioning']} "
             f"conditioning, {r['max_length']}-token crops ({r['steps_per_epoch']:g} steps an epoch). At each epoch's "
             f"end: accuracy of each reading (Bayes over the likelihood; the infilled class word) and perplexity "
             f"(diffusion: ELBO bound; left to right: exact) on the same {n} validation reviews. Shipped: "
             f"diffusion epoch {c['shipped']['diffusion']}, left-to-right epoch {c['shipped']['ar']} ({c['rule']}).",
             "", "| epoch | diffusion Bayes | diffusion infill | diffusion perplexity | twin Bayes | twin infill | "
                 "twin perplexity | perplexity ratio | better reading: diffusion − twin |",
             "|---|---|---|---|---|---|---|---|---|"]
    for epoch in sorted(set(by_epoch["diffusion"]) | set(by_epoch["ar"])):
        d, a = by_epoch["diffusion"].get(epoch, {}), by_epoch["ar"].get(epoch, {})
        ratio = (f"{d['val_perplexity'] / a['val_perplexity']:.3f}"
                 if d.get("val_perplexity") and a.get("val_perplexity") else "–")
        gap = (_points(better_accuracy(d) - better_accuracy(a)) if better_accuracy(d) is not None
               and better_accuracy(a) is not None else "–")
        marks = {twin: " (shipped)" if c["shipped"].get(twin) == epoch else "" for twin in ("diffusion", "ar")}
        cells = [str(epoch), _percent(d.get("val_accuracy")), _percent(d.get("val_accuracy_infill")),
                 _number(d.get("val_perplexity")) + marks["diffusion"], _percent(a.get("val_accuracy")),
                 _percent(a.get("val_accuracy_infill")), _number(a.get("val_perplexity")) + marks["ar"], ratio, gap]
        lines.append("| " + " | ".join(cells) + " |")
    crossing = c.get("crossover_epoch")
    last = [better_accuracy(rows[-1]) for rows in c["epochs"].values()
            if rows and better_accuracy(rows[-1]) is not None]
    noise = ""
    if isinstance(n, int) and last:  # the 95% half-width of one accuracy on the monitor, at the last epoch's level
        p = sum(last) / len(last)
        half = 1.96 * math.sqrt(p * (1 - p) / n)
        noise = (f" One accuracy on {n} reviews carries a 95% half-width of about {100 * half:.1f} points; the "
                 "whole-test-split comparison above is the paired one.")
    lines += ["", ("Crossover: from epoch " + str(crossing) + " on, the diffusion model's better reading is at least "
                   "its twin's at every epoch." if crossing else "No crossover: at the last epoch the diffusion "
                   "model's better reading is below its twin's.") + noise]
    before = c.get("replaced")
    if before:
        lines += ["", f"### Against the pair it replaced (report of {before.get('finished_at')})", "",
                  "| measure | before | now |", "|---|---|---|"]
        old_readings = ((before.get("head_to_head") or {}).get("readings")) or {}
        new_readings = ((result.get("head_to_head") or {}).get("readings")) or {}
        for key, row in new_readings.items():
            if key in old_readings:
                lines.append(f"| {row['label']} (test) | {old_readings[key]['accuracy']:.1%} | {row['accuracy']:.1%} |")
        if before.get("perplexity"):
            lines.append(f"| test perplexity ratio, ELBO / exact | {before['perplexity']['ratio']:.3f} | "
                         f"{result['perplexity']['ratio']:.3f} |")
        old_rows = {(x["method"], x["length"]): x for x in (before.get("decoding") or {}).get("summary", [])}
        for x in (result.get("decoding") or {}).get("summary", []):
            old = old_rows.get((x["method"], x["length"]))
            if old and x["method"].startswith("confidence <="):
                lines.append(f"| Denoise default ({x['method']}), {x['length']} tokens: tokens per pass; generative "
                             f"perplexity | {old['tokens_per_pass']:.2f}; {old['gen_ppl']:.0f} | "
                             f"{x['tokens_per_pass']:.2f}; {x['gen_ppl']:.0f} |")
    return lines


AUGMENT_SAMPLES = 2  # uncurated rows per class of a synthetic set, kept and dropped, in augment's record (seed order)


def _points_of(d: float) -> str:
    return f"{100 * d:+.1f}"


def _judge_line(report: dict) -> str:
    judge = report.get("judge") or {}
    if "validation_accuracy" not in judge:
        return f"judge {judge.get('judge', '?')} (its accuracy on real reviews is not on record)"
    return (f"judge {judge.get('judge')} ({judge.get('method')}), {judge['validation_accuracy']:.1%} on "
            f"{judge.get('validation_n')} real reviews ({judge.get('validation_on')}, {judge.get('how')})")


def augment_lines(result: dict) -> list[str]:
    """RESULTS.md's augment section from ``augment.analyse``'s record: per U, each arm's twins on test at the points
    validation chose, and the differences."""
    grid = result["config"]["grid"]
    start = grid.get("start")
    steps = ", ".join(map(str, grid["steps"]))
    how = (f"The trained pair ({', '.join(f'`{s}`' for s in start)}) fine-tuned for {steps} steps" if start
           else "Twins trained from scratch")
    same = "budget and starting weights" if start else "budget, initialisation and tokenizer"
    out = [f"{how} on U real reviews alone or with {result['config']['ratio']:g} synthetic review(s) per real one "
           f"(the judge's kept rows); the same {same}; each twin's point chosen on "
           f"{grid['val_size']} real validation reviews and read once on {grid['test_size']} real test reviews. "
           "Differences are the synthetic arm minus the real-only arm on the same test reviews (95% intervals; "
           "McNemar p for accuracy); bits per token (perplexity is 2 to that power; the diffusion twin's is its "
           "bound): lower is better.",
           ""] + (["Written by", "", "```bash", result["command"], "```", ""] if result.get("command") else []) + [
           "| U | arm | twin | test bits/token | vs real only | test accuracy (reading) | vs real only, points |",
           "|---|---|---|---|---|---|---|"]

    def cells(r: dict) -> tuple[str, str]:
        bits, (low, high) = r["test_bits_per_token"], r["test_bits_per_token_ci95"]
        return (f"{bits:.3f} ({low:.3f}–{high:.3f}); perplexity {2**bits:,.0f}",
                f"{r['test_accuracy']:.1%} ({r['reading']})")

    for row in result["sizes"]:
        for twin, r in (row.get("reference") or {}).items():
            if r:
                bits, acc = cells(r)
                out.append(f"| {row['unique_reviews']} | start, not fine-tuned | {twin} | {bits} | | {acc} | |")
        for arm, twins in row["arms"].items():
            for twin, r in twins.items():
                if not r:
                    out.append(f"| {row['unique_reviews']} | {arm} | {twin} | not yet | | | |")
                    continue
                vs = r.get("against_real")
                diff = (f"{vs['bits_per_token']['difference_bits_per_token']:+.3f} ("
                        f"{vs['bits_per_token']['ci95'][0]:+.3f} to {vs['bits_per_token']['ci95'][1]:+.3f})"
                        if vs else "–")
                points = (f"{_points_of(vs['accuracy']['difference'])} ("
                          f"{_points_of(vs['accuracy']['difference_ci95'][0])} to "
                          f"{_points_of(vs['accuracy']['difference_ci95'][1])}, p={vs['accuracy']['mcnemar_p']:.2g})"
                          if vs else "–")
                bits, acc = cells(r)
                out.append(f"| {row['unique_reviews']} | {arm} | {twin} | {bits} | {diff} | {acc} | {points} |")
    for arm, s in result.get("synthetic", {}).items():
        report = s.get("report") or {}
        if report:
            counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.items()
                               if isinstance(v, int) and not isinstance(v, bool))
            by_class = ", ".join(f"{n} {label}" for label, n in (s.get("kept_by_class") or {}).items())
            out += ["", f"{arm}: generated by `{s['generator']}`; {counts}" + (f" ({by_class})" if by_class else "")
                    + f"; {_judge_line(report)}."]
        for verdict in ("kept", "dropped"):
            rows = s.get(f"{verdict}_samples") or []
            if rows:
                out += ["", f"The first {AUGMENT_SAMPLES} {verdict} of each class (uncurated, in seed order):", ""]
                out += [f"- *{r['label']}*" + (f" ({r['reason']})" if r.get("reason") else "") + ": "
                        + " ".join(str(r["text"]).split()) for r in rows]
    return out


def _objective(checkpoint: CheckpointMeta) -> str:
    weighting = {"elbo": "the MDLM 1/t ELBO", "mean": "the mean loss over masked tokens"}.get(
        checkpoint.loss_weighting, str(checkpoint.loss_weighting))
    return f"masked diffusion, trained on {weighting}; scored with the ELBO"


def training_lines(meta: dict) -> tuple[str, str]:
    """The card's base-model and training lines, every stage of a checkpoint continued from another one."""
    checkpoint = CheckpointMeta.from_dict(meta)
    stages = checkpoint.lineage()

    def stage(m: CheckpointMeta) -> str:
        config = m.config
        warmup = config.get("warmup_steps")
        warmup = f"{default_warmup_steps(m.steps)} steps, the default" if warmup is None else f"{warmup} steps"
        return (f"{m.steps} steps x {config.get('batch_size')} sequences, lr {config.get('lr')} "
                f"({config.get('lr_schedule')}, warm-up {warmup}), seed {config.get('seed')}, "
                f"{m.tokens_seen:,} tokens, {m.train_time_s / 3600:.1f} h on {m.hardware}")

    text = stage(stages[0]) + "".join(f"; then {stage(m).replace(' steps', ' more steps', 1)}" for m in stages[1:])
    if len(stages) > 1:
        text += (f": {checkpoint.steps_in_all} steps in all, {checkpoint.tokens_in_all:,} tokens, "
                 f"{checkpoint.train_time_in_all / 3600:.1f} h")
    return f"- **Base model:** `{stages[0].base_model}`", f"- **Training:** {text}"


HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "minilm-ar": "sentence-transformers/all-MiniLM-L6-v2",
           "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct", "imdb": "stanfordnlp/imdb",
           "rotten_tomatoes": "cornell-movie-review-data/rotten_tomatoes"}


def card_metadata(meta: dict, role: str) -> list[str]:
    """The card's Hub-style YAML front matter: licence, base model, data sets, metrics, tags."""
    checkpoint = CheckpointMeta.from_dict(meta)
    base = checkpoint.lineage()[0].base_model
    sources = checkpoint.data_specs or ["imdb"]
    datasets = [HUB_IDS[s] for s in sources if s in HUB_IDS]
    lines = ["---", "license: apache-2.0", "language: en", "library_name: transformers"]
    if base in HUB_IDS:
        lines.append(f"base_model: {HUB_IDS[base]}")
    lines += ["datasets:", *(f"- {d}" for d in datasets), "metrics:", "- accuracy", "- perplexity",
              f"pipeline_tag: {'fill-mask' if role == 'diffusion' else 'text-generation'}",
              "tags:", "- textdiff", f"- {'masked-diffusion' if role == 'diffusion' else 'causal-lm'}",
              "- text-classification", "---", ""]
    return lines


def model_card(meta: dict, result: dict, role: str) -> str:
    """A checkpoint's README.md: how it was trained (from its textdiff.json) and what the report measured."""
    checkpoint = CheckpointMeta.from_dict(meta)
    config = checkpoint.config
    rows = [r for r in result["classification"] if r["checkpoint"] == result["settings"][role]]
    base, training = training_lines(meta)
    lines = [
        *card_metadata(meta, role),
        f"# {Path(result['settings'][role]).name}", "",
        base,
        f"- **Objective:** {checkpoint.objective} "
        f"({_objective(checkpoint) if role == 'diffusion' else 'left-to-right'})",
        f"- **Conditioning:** {checkpoint.conditioning}, classes {checkpoint.classes}, "
        f"prompt `{checkpoint.class_prompt}`",
        f"- **Data:** {checkpoint.n_examples} IMDB train-split reviews (fixed sha1 split, see the top-level "
        f"README); {config.get('crop', LEGACY_DEFAULTS['crop'])} crops of {checkpoint.max_length} tokens",
        training,
        "- **Weights:** fp16 safetensors; load with `from_pretrained`, or pass this directory as `--checkpoint`",
        "",
        "## Measured (from `python train_cli.py report`, RESULTS.md)", "",
        "| method | n | accuracy | 95% CI | ECE | median latency (s) |", "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['n']} | {r['accuracy']:.1%} | {r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | "
                     f"{r['ece']:.3f} | {r['median_latency_s']:.3f} |")
    head = result.get("head_to_head")
    if head:
        r = head[role]
        name = "diffusion ELBO, shared noise, adaptive" if role == "diffusion" else "left-to-right twin (exact)"
        scope = "the whole test split" if not result["settings"].get("n_head") else "test subset"
        lines.append(f"| {name}: {scope} | {head['n']} | {r['accuracy']:.1%} | "
                     f"{r['ci95'][0]:.1%}–{r['ci95'][1]:.1%} | {r['ece']:.3f} | {r['median_latency_s']:.3f} |")
    p = result["perplexity"]
    key = "diffusion_elbo_ppl" if role == "diffusion" else "ar_exact_ppl"
    lines += ["", f"Test perplexity: {p[key]:.2f} ({'ELBO bound' if role == 'diffusion' else 'exact'}; "
              f"diffusion / left-to-right = {p['ratio']:.3f}).", ""]
    if role == "diffusion":
        lines += ["## Samples (uncurated: the first seeds)", ""]
        for label, texts in result["samples"].items():
            lines += [f"**{label}**", ""] + [f"{i + 1}. {t}" for i, t in enumerate(texts)] + [""]
    lines += ["## Limitations", "",
              "Trained on CPU for a limited number of steps on movie reviews only: expect review-like text, weak "
              "long-range coherence, and unreliable behaviour on other domains (the classifier's OOD flag helps). "
              "English only; IMDB's label noise and biases are inherited."]
    return "\n".join(lines) + "\n"


def _interval(pair, fmt="{:.3f}") -> str:
    return "–" if not pair else f"{fmt.format(pair[0])}–{fmt.format(pair[1])}"


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1%}"


def _num(x, fmt="{:.3f}") -> str:
    return "–" if x is None else fmt.format(x)


OOD_NAMES = {"rotten_tomatoes": "Rotten Tomatoes", "not_reviews": "not reviews", "shuffled": "shuffled IMDB"}
OOD_SCORE_NAMES = {"log_p_per_token": "−log P(text) per token", "max_softmax": "−max softmax",
                   "energy": "energy"}


def promises_lines(promises: dict, about: dict) -> list[str]:
    """RESULTS.md's sections on what a generative classifier promises, from ``promises.json``'s readings."""
    sets = about.get("sets") or {}
    lines = [f"From `{about.get('command', 'python train_cli.py promises')}` ({about.get('hardware', '?')}, "
             f"{about.get('finished_at', '?')}): {sets.get('imdb_test', '?')} IMDB test reviews, "
             f"{sets.get('rotten_tomatoes_test', '?')} Rotten Tomatoes test sentences, "
             f"{(sets.get('not_reviews') or {}).get('n', '?')} passages that are not reviews, the IMDB reviews with "
             "their words shuffled. Calibration: each checkpoint's, fitted on IMDB validation.", ""]
    return (lines + _uncertainty_lines(promises) + _ood_lines(promises) + _robustness_lines(promises)
            + _faithfulness_lines(promises) + _attack_samples(promises))


def _uncertainty_lines(promises: dict) -> list[str]:
    lines = ["## Uncertainty, in and out of domain", "",
             "Accuracy, expected calibration error and the area under the risk-coverage curve (the mean error when "
             "abstaining on the least confident texts first, over every coverage; lower is better).", "",
             "| reading | IMDB accuracy | ECE | AURC (95% CI) | Rotten Tomatoes accuracy | ECE | AURC (95% CI) |",
             "|---|---|---|---|---|---|---|"]
    for r in promises.values():
        cells = [r["label"]]
        for name in ("imdb_test", "rotten_tomatoes"):
            u = r["uncertainty"][name]
            cells += [f"{u['accuracy']:.1%} ({_interval(u['ci95'], '{:.1%}')})", f"{u['ece']:.3f}",
                      f"{u['aurc']:.3f} ({_interval(u['aurc_ci95'])})"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _ood_lines(promises: dict) -> list[str]:
    lines = ["", "## Out-of-distribution detection", "",
             "AUROC (95% bootstrap interval) and the false-positive rate at 95% true positives (the share of OOD "
             "texts let through when 95% of IMDB test reviews are kept) of each reading's OOD score against IMDB "
             "test reviews; 0.5 is chance.", "",
             "| reading | OOD score | " + " | ".join(f"{n}: AUROC | FPR95" for n in OOD_NAMES.values()) + " |",
             "|---|---|" + "---|---|" * len(OOD_NAMES)]
    for r in promises.values():
        cells = [r["label"], OOD_SCORE_NAMES.get(r["ood_score"], r["ood_score"])]
        for name in OOD_NAMES:
            d = r["ood"][name][r["ood_score"]]
            cells += [f"{d['auroc']:.3f} ({_interval(d['auroc_ci95'])})", f"{d['fpr_at_95_tpr']:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    flagged = {k: r for k, r in promises.items() if r.get("ood_flag")}
    if flagged:
        lines += ["", "The Classify page's OOD flag (a text scoring below the 1st percentile of the checkpoint's "
                  "validation texts): how often it fires on IMDB test reviews (its false-positive rate) and on each "
                  "OOD set.", "", "| reading | IMDB test (false positives) | " + " | ".join(OOD_NAMES.values())
                  + " |", "|---|---|" + "---|" * len(OOD_NAMES)]
        for r in flagged.values():
            f = r["ood_flag"]
            lines.append(f"| {r['label']} | {f['false_positive_rate']:.1%} | "
                         + " | ".join(f"{f['detected'][n]:.1%}" for n in OOD_NAMES) + " |")
    return lines


def _robustness_lines(promises: dict) -> list[str]:
    lines = ["", "## Robustness", "",
             "Typos: one character edit (swap, delete, insert, substitute) in 10% or 20% of the words; the difference "
             "is paired with the clean accuracy on the same reviews. Attack: the word-substitution attack on the "
             "first words of correctly read reviews (success rate over those; accuracy under attack over all).", "",
             "| reading | typos 10%: accuracy (vs clean) | typos 20% | attack success | accuracy under attack | "
             "words changed per success |", "|---|---|---|---|---|---|"]
    for r in promises.values():
        cells = [r["label"]]
        for rate in ("10", "20"):
            t = r["typos"][rate]
            cells.append(f"{t['accuracy']:.1%} ({_points(t['against_clean']['difference'])})")
        a = r["attack"]
        cells += [_pct(a["attack_success_rate"]), _pct(a["accuracy_under_attack"]),
                  _num(a["words_changed_per_success"], "{:.1f}")]
        lines.append("| " + " | ".join(cells) + " |")
    keys = list(promises)
    lines += ["", "Transfer: accuracy of each reading (rows) on the successful adversarial texts of another (columns); "
              "on their originals every reading that attacked them was right.", "",
              "| reading | " + " | ".join(promises[k]["label"] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for k in keys:
        row = promises[k]["attack"].get("transfer_from") or {}
        lines.append(f"| {promises[k]['label']} | " + " | ".join(
            "–" if s == k or not row.get(s) else f"{row[s]['accuracy_adversarial']:.0%} (n={row[s]['n']})"
            for s in keys) + " |")
    return lines


def _faithfulness_lines(promises: dict) -> list[str]:
    lines = ["", "## Faithful evidence", "",
             "ERASER (DeYoung et al. 2020): comprehensiveness, the drop in the predicted class's probability when the "
             "top k% of the reading's own evidence words are removed (higher: the evidence mattered), and "
             "sufficiency, the drop when only they are kept (lower is better), each beside the same count of random "
             "words.", "",
             "| reading | texts | comprehensiveness 10% (random) | 20% (random) | sufficiency 10% (random) | "
             "evidence − random at 10%, 95% CI |", "|---|---|---|---|---|---|"]
    for r in promises.values():
        f = r["faithfulness"]
        lines.append(f"| {r['label']} | {f['n']} | {_num(f['evidence_comprehensiveness_10'])} "
                     f"({_num(f['random_comprehensiveness_10'])}) | {_num(f['evidence_comprehensiveness_20'])} "
                     f"({_num(f['random_comprehensiveness_20'])}) | {_num(f['evidence_sufficiency_10'])} "
                     f"({_num(f['random_sufficiency_10'])}) | {_interval(f['comprehensiveness_over_random_10_ci95'])}"
                     " |")
    return lines


def _marked(text: str, changed: list[int]) -> str:
    return " ".join(f"**{w}**" if i in changed else w for i, w in enumerate(text.split(" ")))


def _attack_samples(promises: dict) -> list[str]:
    lines = ["", "### Successful attacks (uncurated: the first ones found)", ""]
    for r in promises.values():
        samples = r["attack"].get("samples") or []
        lines += [f"**{r['label']}**: {len(samples)} shown", ""]
        for s in samples:
            lines += [f"- original: {_marked(s['original'], s['changed'])}",
                      f"  attacked: {_marked(s['adversarial'], s['changed'])} (P(true class) {s['p_before']:.2f} → "
                      f"{s['p_after']:.2f})"]
        lines.append("")
    return lines


def promises_summary(promises: dict) -> str:
    """The README's line on the promises: per reading, AUROC against text that is not a review, accuracy under
    attack and comprehensiveness of its evidence at 10%."""
    parts = [f"{r['label']} {r['ood_auroc']['not_reviews']:.2f} / {_pct(r['accuracy_under_attack'])} / "
             f"{_num(r['comprehensiveness_10'], '{:.2f}')}" for r in promises.values()]
    return ("What the classifiers promise (OOD AUROC against text that is not a review / accuracy under the word-"
            "substitution attack / ERASER comprehensiveness at 10%): " + "; ".join(parts) + ".")
