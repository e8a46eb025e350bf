"""A campaign: a masked-diffusion model and its left-to-right twin trained to the same number of epochs on the same
data, seed, batch and lr schedule, in alternating resumable chunks.

Each twin is one ``train`` run (``OUT/diffusion``, ``OUT/ar``) whose ``steps`` cover the whole campaign, so the
lr schedule is the campaign's and not restarted per chunk; a chunk is the same run stopped at an epoch's
last step (``TrainConfig.stop_after``) and continued with ``resume``, which is bit-exact. The twins take turns,
``chunk_epochs`` at a time, so they never stand more than one chunk apart; within a chunk each epoch is its own
stop, so a kill at any moment loses at most the steps since the last checkpoint (``save_every``) and never more than
one epoch. Running the campaign again continues it. After each epoch the weights are exported (fp16, like
``train_cli.py export``) to ``OUT/<twin>/epochs/epoch-NNN`` so that the shipped epoch can be chosen on validation
later, and ``OUT/campaign.json`` says where each twin stands. The device is whatever ``train`` picks: CUDA when
present, else the CPU.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from textdiff_core.checkpoint import CheckpointMeta, exists
from textdiff_core.data import load_data
from textdiff_core.errors import TextdiffError
from textdiff_core.experiments.render import better_accuracy
from textdiff_core.models import kind_of, load_model, save_model, torch_dtype
from textdiff_core.settings import DTYPES, KIND_NAMES, LoadOptions, check_output_dir
from textdiff_core.train import (
    OBJECTIVES,
    TrainConfig,
    epoch_batches,
    epoch_end_step,
    latest_checkpoint,
    lineage_metrics,
    train,
)

TWINS = ("diffusion", "ar")  # the order of turns within a chunk; a twin's directory is OUT/<objective>
STATUS = "campaign.json"


@dataclass
class CampaignConfig:
    """Every setting of a campaign; recorded in campaign.json, and a rerun must repeat them."""

    out: str  # campaign directory: diffusion/ and ar/ (train runs), campaign.json
    epochs: int  # whole passes over the training data, per twin
    train: TrainConfig  # shared settings; objective, model, out, steps, epochs, resume and stop_after are per twin
    chunk_epochs: int = 1  # epochs one twin trains before the other takes its turn
    diffusion_model: str = "minilm"  # where the diffusion twin starts: offline name, directory or hub id
    ar_model: str = "minilm-ar"  # where the left-to-right twin starts
    snapshot_dtype: str = "fp16"  # dtype of the per-epoch exports
    max_shard_size: str | None = None  # split the exports' weights into files of at most this size (e.g. "15MB")

    def __post_init__(self) -> None:
        check_output_dir(self.out)
        if self.epochs < 1 or self.chunk_epochs < 1:
            raise TextdiffError(f"epochs and chunk-epochs must be at least 1, got {self.epochs}, {self.chunk_epochs}")
        if self.snapshot_dtype not in DTYPES:
            raise TextdiffError(f"unknown snapshot dtype {self.snapshot_dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.train.conditioning == "per-class":
            raise TextdiffError("a campaign trains one model per objective: conditioning none, class or joint")

    def to_dict(self) -> dict:
        return asdict(self) | {"train": self.train.to_dict()}

    def model(self, twin: str) -> str:
        return self.diffusion_model if twin == "diffusion" else self.ar_model


def plan(config: CampaignConfig, n_examples: int) -> dict:
    """Steps of the campaign: one process, ``grad_accum`` micro-batches per step; epoch e ends at its last batch."""
    t = config.train
    ends = [epoch_end_step(e, n_examples, t.batch_size, t.grad_accum) for e in range(1, config.epochs + 1)]
    return {"n_examples": n_examples, "steps_per_epoch": epoch_batches(n_examples, t.batch_size) / t.grad_accum,
            "total_steps": ends[-1], "epoch_end_steps": ends}


def twin_config(config: CampaignConfig, twin: str, total_steps: int) -> TrainConfig:
    """The one ``train`` run of a twin: the campaign's whole lr schedule, resumed every time it is started."""
    return replace(config.train, out=str(Path(config.out) / twin), objective=twin, model=config.model(twin),
                   steps=total_steps, epochs=None, resume=True, stop_after=None)


def standing(run: Path, total_steps: int) -> int:
    """Steps a twin has completed: ``total_steps`` when its final model is written, else its latest checkpoint's."""
    if CheckpointMeta.read(run).steps == total_steps:
        return total_steps
    checkpoint = latest_checkpoint(run)
    return json.loads((checkpoint / "trainer_state.json").read_text())["step"] if checkpoint else 0


def snapshot_dir(run: Path, epoch: int) -> Path:
    return run / "epochs" / f"epoch-{epoch:03d}"


def export_snapshot(run: Path, epoch: int, step: int, config: CampaignConfig, options: LoadOptions | None = None
                    ) -> Path | None:
    """Export the twin's weights at ``step`` (the end of ``epoch``) to ``epochs/epoch-NNN``; None when they are gone.

    The source is the stop's checkpoint (it carries a textdiff.json), or the final model at the last epoch. The
    export has the run's metrics up to that step, like ``train_cli.py export``.
    """
    dest = snapshot_dir(run, epoch)
    if exists(dest):
        return dest
    source = run / "checkpoints" / f"step-{step:07d}"
    if not exists(source):
        source = run
        if CheckpointMeta.read(run).steps != step:
            return None
    lm = load_model(str(source), device="cpu", dtype=torch.float32, options=options)
    meta = lm.meta | {"exported_from": str(source), "weights_dtype": config.snapshot_dtype, "campaign_epoch": epoch}
    save_model(lm.model, lm.tokenizer, dest, meta, dtype=torch_dtype(config.snapshot_dtype),
               max_shard_size=config.max_shard_size)
    if (run / "metrics.jsonl").is_file():
        own = [line for line in (run / "metrics.jsonl").read_text().splitlines()
               if line.strip() and json.loads(line)["step"] <= step]
        lines, _ = lineage_metrics(lm.meta, own)
        (dest / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    return dest


def read_status(out: str | Path) -> dict:
    """campaign.json of a campaign directory, or {} when there is none; a one-line error when it is not one."""
    path = Path(out) / STATUS
    if not path.is_file():
        return {}
    try:
        status = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise TextdiffError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(status, dict) or not isinstance(status.get("twins", {}), dict):
        raise TextdiffError(f"{path} is not a campaign's status (a JSON object with its twins)")
    return status


def _as_written_today(recorded: dict) -> dict:
    """A campaign.json's config as this version writes it: its training settings read as ``TrainConfig.from_record``
    reads a recorded run's (earlier names, settings added since)."""
    train = recorded.get("train")
    if isinstance(train, dict):
        recorded = recorded | {"train": TrainConfig.from_record(train).to_dict()}
    return json.loads(json.dumps(recorded))


def _write_status(out: Path, status: dict) -> None:
    tmp = out / f".{STATUS}.{os.getpid()}.tmp"  # a ship beside a running campaign never shares its temporary file
    tmp.write_text(json.dumps(status | {"updated_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2)
                   + "\n")
    os.replace(tmp, out / STATUS)


def run_campaign(config: CampaignConfig, until_epoch: int | None = None, progress: bool = True,
                 options: LoadOptions | None = None) -> dict:
    """Bring both twins to ``until_epoch`` (default: all ``epochs``), continuing wherever a previous call stopped.

    Returns the status written to campaign.json: the plan, each twin's step, completed epochs, snapshots and
    measured seconds per step, and the history of turns (twin, epoch, steps, seconds) in the order they ran.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TextdiffError("a campaign runs in one process (one GPU or the CPU); launch it with python, not torchrun")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    status, wanted = read_status(out), json.loads(json.dumps(config.to_dict()))  # as campaign.json holds it
    stored = _as_written_today(status["config"]) if status else None
    if status and stored != wanted:
        changed = sorted(k for k in wanted if stored.get(k) != wanted[k])
        raise TextdiffError(f"{out} holds a campaign with other settings ({', '.join(changed)}); rerun it with the "
                            f"same flags, or give another --out")
    for twin in TWINS:  # train() skips this check when resuming, and every chunk resumes
        if kind_of(config.model(twin)) not in (None, OBJECTIVES[twin]):
            raise TextdiffError(f"{config.model(twin)!r} is a {KIND_NAMES[kind_of(config.model(twin))]} model; the "
                                f"{twin} twin needs a {KIND_NAMES[OBJECTIVES[twin]]} one")
    t = config.train
    labelled = t.conditioning != "none"
    data = load_data(t.data, "train", text_col=t.text_col, label_col=t.label_col if labelled else None,
                     min_classes=2 if labelled else 1, max_samples=t.max_samples, seed=t.seed)
    steps = plan(config, len(data))
    ends, total = steps["epoch_end_steps"], steps["total_steps"]
    target = min(until_epoch or config.epochs, config.epochs)
    twins = status.get("twins") or {twin: {"objective": twin, "model": config.model(twin)} for twin in TWINS}
    status = {"config": config.to_dict(), "plan": steps, "history": status.get("history", []), "twins": twins} | (
        {"shipped": status["shipped"]} if "shipped" in status else {})  # campaign-ship's choice outlives a rerun

    def update(twin: str) -> None:
        run = out / twin
        step = standing(run, total)
        done = sum(step >= end for end in ends)
        snapshots = [str(snapshot_dir(run, e).relative_to(out)) for e in range(1, done + 1)
                     if exists(snapshot_dir(run, e))]
        status["twins"][twin] |= {"step": step, "epochs_completed": done, "snapshots": snapshots,
                                  "finished": step >= total}
        _write_status(out, status)

    for twin in TWINS:
        update(twin)
    for first in range(0, target, config.chunk_epochs):
        for twin in TWINS:
            run, run_config = out / twin, twin_config(config, twin, total)
            for epoch in range(first + 1, min(first + config.chunk_epochs, target) + 1):
                end, before = ends[epoch - 1], standing(out / twin, total)
                if before < end:
                    started = time.time()
                    train(replace(run_config, stop_after=end if end < total else None), progress=progress,
                          options=options)
                    seconds = time.time() - started
                    status["history"].append({"twin": twin, "epoch": epoch, "from_step": before, "to_step": end,
                                              "seconds": round(seconds, 1)})
                    status["twins"][twin]["seconds_per_step"] = round(seconds / (end - before), 4)
                if export_snapshot(run, epoch, end, config, options) is None:  # only after a kill between stop, export
                    missing = status["twins"][twin].setdefault("missing_snapshots", [])
                    missing += [epoch] if epoch not in missing else []
                update(twin)
    return status


READINGS = {"val_accuracy": "accuracy (Bayes over the likelihood)", "val_accuracy_infill": "accuracy (infilled class)",
            "val_perplexity": "perplexity (ELBO bound / exact)"}


def epoch_curves(records: list[dict], run: str) -> list[dict]:
    """Validation readings of one run against epochs, one row per (record, reading), for a chart.

    The epoch is the whole number at an epoch-boundary record and the fractional ``epoch`` elsewhere (runs that
    validated every N steps); records without an ``epoch`` are skipped.
    """
    rows = []
    for r in records:
        epoch = r.get("epochs_completed") if r.get("epoch_boundary") else r.get("epoch")
        if epoch is None:
            continue
        rows += [{"run": run, "epoch": float(epoch), "step": r.get("step"), "reading": name, "value": r[key],
                  "measure": "perplexity" if key == "val_perplexity" else "accuracy"}
                 for key, name in READINGS.items() if isinstance(r.get(key), (int, float))]
    return rows


def shipped_epoch(run: Path) -> float | None:
    """The epoch a run ships at: a campaign's choice (``shipped`` in campaign.json, by twin) for a campaign twin,
    else where a finished or exported run stopped; None when neither is known."""
    try:
        campaign = read_status(run.parent)
    except TextdiffError:  # an unreadable campaign.json: no choice known
        return None
    if campaign:
        return (campaign.get("shipped") or {}).get(run.name)
    return CheckpointMeta.read(run).epochs_in_all()


SHIP_RECORD = "shipped-campaign.json"  # beside the shipped pair: the campaign's settings, curves and choice


def read_ship_record(dest: str | Path) -> dict | None:
    """The shipped-campaign.json ``ship`` wrote into ``dest`` (the shipped pair's parent), or None when there is none;
    a one-line error when it cannot be read."""
    path = Path(dest) / SHIP_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise TextdiffError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("epochs"), dict):
        raise TextdiffError(f"{path} is not a record written by campaign-ship")
    return record


def shipped_curves(checkpoint: str | Path) -> list[dict] | None:
    """Every epoch-boundary record of the campaign twin shipped as ``checkpoint``, also those after the epoch it ships
    at; None when it did not come from a campaign (or its record cannot be read)."""
    checkpoint = Path(checkpoint)
    try:
        record = read_ship_record(checkpoint.parent)
    except TextdiffError:
        return None
    twin = next((t for t, name in (record or {}).get("directories", {}).items() if name == checkpoint.name), None)
    return record["epochs"].get(twin) if twin else None


def epoch_records(run: Path) -> dict[int, dict]:
    """A twin's epoch-boundary validation records by whole epoch (a resumed run's repeat of one: the last wins)."""
    records = {}
    path = run / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if r.get("epoch_boundary") and isinstance(r.get("epochs_completed"), int):
            records[r["epochs_completed"]] = r
    return dict(sorted(records.items()))


SHIP_RULE = ("the epoch whose better classifier reading is most accurate on the validation monitor; ties go to the "
             "lower validation perplexity, then to the earlier epoch")


def choose_epoch(records: dict[int, dict]) -> int:
    """The epoch to ship, on validation only (``SHIP_RULE``)."""
    scored = [(e, better_accuracy(r), r.get("val_perplexity", math.inf)) for e, r in records.items()]
    scored = [s for s in scored if s[1] is not None]
    if not scored:
        raise TextdiffError("no epoch-boundary validation records to choose from")
    return min(scored, key=lambda s: (-s[1], s[2], s[0]))[0]


def crossover(curves: dict[str, dict[int, dict]]) -> int | None:
    """The first epoch from which the diffusion twin's better reading is at least the left-to-right twin's at every
    later epoch both reached; None when it never holds to the end."""
    first = None
    for epoch in sorted(set(curves["diffusion"]) & set(curves["ar"])):
        d, a = better_accuracy(curves["diffusion"][epoch]), better_accuracy(curves["ar"][epoch])
        if d is None or a is None:  # an epoch without both readings neither makes nor breaks a run of them
            continue
        first = (first or epoch) if d >= a else None
    return first


def ship(out: str | Path, dest: str | Path, epochs: dict[str, int] | None = None, partial: bool = False,
         replaced: str | Path | None = None, names: dict[str, str] | None = None) -> dict:
    """Make a campaign's chosen epochs the shipped pair.

    For each twin: the epoch given in ``epochs`` or chosen on validation (``choose_epoch``); its snapshot replaces
    ``dest/<name>`` (``names``: imdb-diffusion and imdb-ar), whose calibration and model card belong to the old
    weights and go with them. The choice goes into the campaign's campaign.json (``shipped``, read by the Training
    page), and ``dest/shipped-campaign.json`` keeps what the report and the Training page need once the campaign
    directory is gone: the settings, plan and history, every epoch-boundary record of both twins, the choice, and
    (``replaced``: a results.json) the figures of the pair it replaced, so that the report can put the two side by
    side.
    """
    out, dest = Path(out), Path(dest)
    names = names or {"diffusion": "imdb-diffusion", "ar": "imdb-ar"}
    status = read_status(out)
    if not status:
        raise TextdiffError(f"{out} is not a campaign directory (no {STATUS})")
    if not all(isinstance(status.get(k), dict) for k in ("config", "plan", "twins")):
        raise TextdiffError(f"{out / STATUS} lacks the settings, plan or twins that `campaign` writes")
    unfinished = [t for t in TWINS if not status["twins"].get(t, {}).get("finished")]
    if unfinished and not partial:
        raise TextdiffError(f"the campaign in {out} is not finished ({', '.join(unfinished)}); run it to the end, or "
                            f"ship from the epochs done so far with --partial")
    curves = {twin: epoch_records(out / twin) for twin in TWINS}
    chosen = {}
    for twin in TWINS:
        epoch = (epochs or {}).get(twin) or choose_epoch(curves[twin])
        if not exists(snapshot_dir(out / twin, epoch)):
            raise TextdiffError(f"no snapshot of the {twin} twin at epoch {epoch} in {out / twin / 'epochs'}")
        chosen[twin] = epoch
    dest.mkdir(parents=True, exist_ok=True)
    for twin, epoch in chosen.items():
        target = dest / names[twin]
        staging = dest / f".{names[twin]}.shipping"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(snapshot_dir(out / twin, epoch), staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    given = [twin for twin in TWINS if (epochs or {}).get(twin)]
    rule = SHIP_RULE + (f"; given by hand: {', '.join(given)}" if given else "")
    status["shipped"] = chosen | {"rule": rule}
    _write_status(out, status)
    record = {"config": status["config"], "plan": status["plan"], "history": status["history"],
              "shipped": chosen, "rule": rule, "directories": names,
              "epochs": {twin: list(curves[twin].values()) for twin in TWINS},
              "crossover_epoch": crossover(curves)}
    if replaced and Path(replaced).is_file():
        previous = json.loads(Path(replaced).read_text())
        head = previous.get("head_to_head") or {}
        record["replaced"] = {"finished_at": previous.get("finished_at"), "command": previous.get("command"),
                              "head_to_head": {"n": head.get("n"), "readings": head.get("readings")},
                              "perplexity": previous.get("perplexity"),
                              "decoding": {"summary": (previous.get("decoding") or {}).get("summary")}}
    (dest / SHIP_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return record
