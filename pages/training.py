"""Training dashboard: loss curves (total and per masking level), validation accuracy, settings, and the command
that reproduces or extends a run. Training itself runs from the command line."""

import json
import shlex
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from pages._shared import CHECKPOINTS, new_run_dir, resolve, said, shown, sidebar
from textdiff_core.checkpoint import CheckpointMeta
from textdiff_core.errors import TextdiffError
from textdiff_core.experiments.campaign import STATUS, epoch_curves, shipped_curves, shipped_epoch
from textdiff_core.experiments.synthesize import provenance
from textdiff_core.settings import TrainConfig
from textdiff_core.train import latest_checkpoint

sidebar()
st.title("Training dashboard")
st.caption("Point it at any run directory written by `train_cli.py train --out DIR` (it refreshes on rerun).")

RUNS = Path.home() / "textdiff-runs"  # read on every run: the page follows $HOME
def step_axis(steps) -> alt.X:
    """Whole steps (never "2.1"), the axis spanning the steps logged and no further (Vega's nice rounding drew
    10,008 steps on an axis to 11,000)."""
    return alt.X("step:Q", axis=alt.Axis(format="d", tickMinStep=1),
                 scale=alt.Scale(domain=[int(min(steps)), int(max(steps))], nice=False))


EPOCH_FORMAT = "~g"  # 8, not "8.0"; 7.5 where a run ships mid-epoch


SHIPPED_PAIR = (CHECKPOINTS / "imdb-diffusion", CHECKPOINTS / "imdb-ar")  # the page opens on these two curves
NO_TWIN = "(none)"


def home(path: Path) -> str:
    """``~/textdiff-runs/x`` for a path under the home directory (as a shell expands it), else the path."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)


def shell_words(words: list[str]) -> str:
    """``shlex.join``, but a path under the home directory keeps its ``~`` unquoted where the rest is shell-safe."""
    quoted = [shlex.quote(w) for w in words]
    for i, w in enumerate(words):
        short = home(Path(w)) if w.startswith("/") else w
        if short.startswith("~/") and shlex.quote(short[2:]) == short[2:]:
            quoted[i] = short
    return " ".join(quoted)


def resumable_copy(run: Path) -> bool:
    """A run's resumable ``OUT/checkpoints/step-N`` copy (a snapshot of a run, not a run of its own)."""
    return (run.name.startswith("step-") and run.parent.name == "checkpoints") or run.parent.name == "epochs"


def run_dirs() -> list[str]:
    """Every run with a metrics.jsonl: the shipped pair first, then everything under the runs folder (those inside the
    repository as relative paths)."""
    found = [shown(p) for p in SHIPPED_PAIR if (p / "metrics.jsonl").is_file()]
    for root in (CHECKPOINTS, RUNS):
        if root.is_dir():
            for metrics in sorted(root.glob("**/metrics.jsonl")):
                if not resumable_copy(metrics.parent) and shown(metrics.parent) not in found:
                    found.append(shown(metrics.parent))
    return found


def read_metrics(run: Path) -> list[dict]:
    """The logged steps of a run (a line being written right now is skipped)."""
    records = []
    for line in (run / "metrics.jsonl").read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) \
                and isinstance(record.get("loss"), (int, float)):  # a line of something else: not a logged step
            records.append(record)
    return records


known = run_dirs()
choice = st.selectbox("Run directory", [*known, "other…"] if known else ["other…"], key="run_choice")
typed = st.text_input("Path of the run directory", key="run_path") if choice == "other…" else choice
run = Path(resolve(str(Path(typed).expanduser()))) if typed else Path(typed)
if (run / STATUS).is_file():  # a campaign directory: its diffusion twin, beside the left-to-right one
    run = run / "diffusion"
twins = [k for k in known if k != shown(run)]
pair_names = [shown(p) for p in SHIPPED_PAIR]
default_twin = pair_names[1] if shown(run) == pair_names[0] and pair_names[1] in twins else NO_TWIN
if (run.parent / STATUS).is_file():  # a campaign twin opens beside the other
    sibling = shown(run.parent / ("ar" if run.name == "diffusion" else "diffusion"))
    twins += [sibling] if sibling not in twins and (Path(resolve(sibling)) / "metrics.jsonl").is_file() else []
    default_twin = sibling if sibling in twins else NO_TWIN
twin_choice = st.selectbox("Compare its loss with", [NO_TWIN, *twins], index=[NO_TWIN, *twins].index(default_twin),
                           key=f"run_twin_{run}", help="Another run's loss curve on the same chart (the shipped "
                                                       "diffusion model opens beside its left-to-right twin).")

if not str(run) or str(run) == ".":
    st.info("Choose or type a run directory.")
    st.stop()
if not run.is_dir():
    st.error(f"Not a directory: {shown(run)}")
    st.stop()
metrics_file = run / "metrics.jsonl"
if not metrics_file.is_file():
    st.error(f"No metrics.jsonl in {shown(run)}: is it a training run's output directory?")
    st.stop()

records = read_metrics(run)
if not records:
    st.warning("The run has not logged a step yet.")
    st.stop()
frame = pd.DataFrame(records)
try:
    meta = CheckpointMeta.read(run)
    state_file = max(run.glob("checkpoints/step-*/trainer_state.json"), default=None)
    config = meta.config or (json.loads(state_file.read_text()).get("config") if state_file else {}) or {}
    if not isinstance(config, dict):
        raise TextdiffError(f"the settings recorded in {run} are not a JSON object")
except (TextdiffError, ValueError, OSError) as exc:
    st.error(f"{shown(run)}: {said(exc)}")
    st.stop()

last = records[-1]
cols = st.columns(4)
planned = config.get("steps")
if meta.total_steps and last["step"] > (planned or 0):  # an exported continuation: the curve spans its lineage
    planned = meta.total_steps
cols[0].metric(f"Step (of {planned:,})" if planned else "Step", f"{last['step']:,}")  # a narrow card cuts "a / b"
cols[1].metric("Loss", f"{last['loss']:.3f}")
cols[2].metric("Tokens / s", f"{last.get('tokens_per_s', 0):,.0f}")
cols[3].metric("Status", "finished" if meta.raw else "running or interrupted")

st.subheader("Loss")
smooth = st.slider("Smoothing (steps in the moving average)", 1, 50, 5)
frame["loss (smoothed)"] = frame["loss"].rolling(smooth, min_periods=1).mean()
long = frame.melt(id_vars="step", value_vars=["loss", "loss (smoothed)"], var_name="series", value_name="value")
twin_path = Path(resolve(twin_choice)) if twin_choice != NO_TWIN else None
twin_records = read_metrics(twin_path) if twin_path else []
if twin_records:  # the other run's loss, raw and smoothed alike, named by its folder
    twin = pd.DataFrame(twin_records)
    twin["loss (smoothed)"] = twin["loss"].rolling(smooth, min_periods=1).mean()
    long["series"] = f"{run.name}: " + long["series"]
    other = twin.melt(id_vars="step", value_vars=["loss", "loss (smoothed)"], var_name="series", value_name="value")
    other["series"] = f"{Path(twin_choice).name}: " + other["series"]
    long = pd.concat([long, other])
    st.caption("Diffusion loss is the masked-token loss, left-to-right loss the next-token loss: both in nats per "
               "token, but not the same quantity.")
series = list(dict.fromkeys(long["series"]))  # each run's raw loss (light) then smoothed (dark), run by run
st.altair_chart(alt.Chart(long).mark_line().encode(
    x=step_axis(long["step"]), y=alt.Y("value:Q", title="loss (nats / token)", scale=alt.Scale(zero=False)),
    color=alt.Color("series:N", sort=series, scale=alt.Scale(domain=series, scheme="paired")),
    tooltip=["step", "series", alt.Tooltip("value:Q", format=".3f")]).configure_legend(labelLimit=0), width="stretch")

if "loss_by_mask_rate" in frame:
    st.subheader("Loss per masking level")
    st.caption("Mean −log p of masked tokens, by the sequence's masking rate t. Fully masked is hardest; all fall.")
    rows = [{"step": r["step"], "mask rate": k, "loss": v} for r in records for k, v in
            (r.get("loss_by_mask_rate") or {}).items()]
    bins = pd.DataFrame(rows)
    bins["loss"] = bins.groupby("mask rate")["loss"].transform(lambda s: s.rolling(smooth, min_periods=1).mean())
    st.altair_chart(alt.Chart(bins).mark_line().encode(
        x=step_axis(bins["step"]), y=alt.Y("loss:Q", scale=alt.Scale(zero=False)),
        color=alt.Color("mask rate:N", scale=alt.Scale(scheme="viridis")),
        tooltip=["step", "mask rate", alt.Tooltip("loss:Q", format=".3f")]), width="stretch")

if "val_accuracy" in frame:
    st.subheader("Validation accuracy during training")
    val = frame.dropna(subset=["val_accuracy"])
    st.caption(f"A cheap monitor: {int(val['val_n'].iloc[-1])} fixed validation texts, first window only, no "
               "calibration. The final figures come from `train_cli.py evaluate`.")
    st.altair_chart(alt.Chart(val).mark_line(point=True).encode(
        x=step_axis(val["step"]), y=alt.Y("val_accuracy:Q", scale=alt.Scale(domain=[0.4, 1.0]), title="accuracy"),
        tooltip=["step", alt.Tooltip("val_accuracy:Q", format=".3f")]), width="stretch")

pair = [(run, records)] + ([(twin_path, twin_records)] if twin_records else [])
curves = pd.DataFrame([row for path, recs in pair for row in epoch_curves(shipped_curves(path) or recs, path.name)])
if not curves.empty:
    st.subheader("Validation by epoch" + (": the pair" if len(pair) == 2 else ""))
    shipped = pd.DataFrame([{"run": path.name, "epoch": e} for path, _ in pair if (e := shipped_epoch(path))])
    st.caption("Each classifier reading's accuracy (solid, left axis) and the validation perplexity (dashed, right "
               "axis; the ELBO bound for diffusion, exact for left to right), each text given its class, on the "
               "same fixed validation texts at every epoch boundary. Grey rules: the epoch each run ships at" +
               ("." if not shipped.empty else " (none chosen yet)."))
    base = alt.Chart(curves).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(format=EPOCH_FORMAT, tickMinStep=1)),
        color=alt.Color("run:N", scale=alt.Scale(scheme="dark2")),  # two hues, not two blues
        detail="reading:N", tooltip=["run", "reading", alt.Tooltip("epoch:Q", format=EPOCH_FORMAT), "step",
                                     alt.Tooltip("value:Q", format=".4g")])
    accuracy = base.transform_filter(alt.datum.measure == "accuracy").mark_line(point=True).encode(
        y=alt.Y("value:Q", title="accuracy", scale=alt.Scale(domain=[0.4, 1.0])), shape="reading:N")
    perplexity = base.transform_filter(alt.datum.measure == "perplexity").mark_line(
        point=True, strokeDash=[5, 3]).encode(y=alt.Y("value:Q", title="perplexity", scale=alt.Scale(type="log")))
    layers = [accuracy, perplexity]
    if not shipped.empty:
        layers.append(alt.Chart(shipped).mark_rule(color="grey", strokeDash=[2, 2]).encode(
            x="epoch:Q", tooltip=["run", alt.Tooltip("epoch:Q", title="shipped at epoch", format=EPOCH_FORMAT)]))
    # a fixed height: the rule layer has no y, so Vega-Lite would size the chart as discrete (0 px once stretched)
    st.altair_chart(alt.layer(*layers).resolve_scale(y="independent").properties(height=320).configure_legend(
        labelLimit=0), width="stretch")

reports = sorted(run.glob("eval*.json"))
if reports:
    st.subheader("Evaluation reports")
    pick = st.selectbox("Report", [r.name for r in reports])
    try:
        report = json.loads((run / pick).read_text())
        low, high = report["accuracy_ci95"]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        st.error(f"{pick} is not an evaluate report ({type(exc).__name__}: {exc})")
        st.stop()
    low, high = report["accuracy_ci95"]
    st.write(f"**{report.get('method')}** on `{report.get('data')}/{report.get('split')}`: accuracy "
             f"**{report['accuracy']:.1%}** (95% CI {low:.1%}–{high:.1%}, n = {report['n']}), ECE {report['ece']:.3f}")
    left, right = st.columns(2)
    classes = report["classes"]
    confusion = pd.DataFrame([{"true": classes[i], "predicted": classes[j], "count": report["confusion"][i][j]}
                              for i in range(len(classes)) for j in range(len(classes))])
    left.altair_chart(alt.Chart(confusion).mark_rect().encode(
        x="predicted:N", y="true:N", color=alt.Color("count:Q", scale=alt.Scale(scheme="blues")),
        tooltip=["true", "predicted", "count"]).properties(title="Confusion matrix", height=250),
        width="stretch")
    rel = pd.DataFrame(report.get("reliability") or [])
    if not rel.empty:
        diagonal = pd.DataFrame({"confidence": [0, 1], "accuracy": [0, 1]})
        right.altair_chart((alt.Chart(diagonal).mark_line(strokeDash=[4, 4], color="grey").encode(
            x="confidence:Q", y="accuracy:Q") + alt.Chart(rel).mark_line(point=True).encode(
            x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1])), y=alt.Y("accuracy:Q", scale=alt.Scale(
                domain=[0, 1])), tooltip=["bin", "count", alt.Tooltip("accuracy:Q", format=".2f")])).properties(
            title="Reliability diagram", height=250), width="stretch")

synthetic = [p for p in (provenance(spec) for spec in (config.get("data") or [])) if p]
if synthetic:
    st.subheader("Synthetic data in this run")
for item in synthetic:
    counts, judge = item["counts"], item["judge"]
    st.markdown(f"**{shown(Path(item['path']))}**: written by `{shown(Path(str(item['generator'])))}` "
                f"({item['kind']}, {item['per_class']} per class, {item['length']} new tokens); kept where the judge "
                f"read the intended class with P >= {item['threshold']}.")
    st.table(pd.DataFrame([{"stage": stage, "rows": counts.get(key)} for stage, key in (
        ("generated", "generated"), ("dropped: judge read another class or was unsure", "judged_other"),
        ("dropped: near-duplicate", "duplicates"), ("dropped: near a validation or test review", "leaks"),
        ("kept", "kept"))]).set_index("stage"))
    if judge:
        st.caption("The judge: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in judge.items()
                                             if not isinstance(v, dict | list)))
    kept_col, dropped_col = st.columns(2)
    kept_col.markdown("Kept (the first few)")
    for row in item["kept"]:
        kept_col.caption(f"{row['label']} (P {row['judge_prob']}): {row['text'][:300]}")
    dropped_col.markdown("Dropped (the first few), and why")
    for row in item["dropped"]:
        dropped_col.caption(f"{row['label']}: {row['text'][:300]} — {row['reason']}")

st.subheader("Settings")
st.json(config or meta.raw, expanded=False)

st.subheader("Reproduce or extend")
try:  # every setting the run recorded, spelled out: its own values, not today's defaults
    recorded = TrainConfig.from_record(config) if config else None
except (TextdiffError, TypeError) as exc:
    recorded = None
    st.warning(f"The recorded settings do not make a training command: {exc}")
if recorded:
    flags = recorded.to_args(skip=lambda name: name in ("out", "steps", "epochs", "resume"))
    steps = st.number_input("Steps", min_value=1, value=int(config.get("steps") or last["step"]))
    processes = st.number_input("Processes (GPUs)", min_value=1, max_value=64, value=1)
    # Never the run itself unless to resume it: a new directory under the runs folder, so the command as shown
    # cannot overwrite this run or a shipped checkpoint (train refuses an --out holding one anyway).
    resumable = latest_checkpoint(run) is not None and not run.resolve().is_relative_to(CHECKPOINTS.resolve())
    extend = resumable and steps > last["step"]
    out = run if extend else new_run_dir(RUNS, run.name)
    flags += ["--steps", str(steps), "--out", str(out)] + (["--resume"] if extend else [])
    launcher = ["python"] if processes == 1 else ["accelerate", "launch", "--num_processes", str(processes)]
    lines, i = [shlex.join([*launcher, str(Path("train_cli.py")), "train"])], 0
    while i < len(flags):  # one "--flag value" per line: readable, and a narrow column never breaks inside a flag
        n = 2 if i + 1 < len(flags) and not flags[i + 1].startswith("--") else 1
        lines.append(shell_words(flags[i:i + n]))
        i += n
    st.code(" \\\n    ".join(lines), language="bash")
    st.caption("Run from the repository's root. " + (
        "With --resume it continues this run from its last complete checkpoint; a larger --steps extends the "
        "lr schedule." if extend else
        f"It trains afresh into a new directory, {home(out)}" + (
            "; to continue this run instead, set more steps than it has." if resumable else ".")))
elif not config:
    st.info("This run recorded no settings (not written by train_cli.py).")
