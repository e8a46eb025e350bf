"""``textdiff.json``, the metadata beside every model textdiff saves: its one reader and writer, its schema with the
defaults of keys a checkpoint does not have, and what other modules ask of it (classes, class prompts, lineage and
its totals, epochs).

The file is a JSON object; ``read`` returns it as written, ``CheckpointMeta`` is the typed view with defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from textdiff_core.errors import ModelError
from textdiff_core.settings import LEGACY_DEFAULTS

SIDECAR = "textdiff.json"  # written last by save_model, so a directory that has it is a complete save
LINEAGE_KEYS = ("base_model", "steps", "tokens_seen", "epochs", "train_time_s", "hardware", "finished_at", "config",
                "continued_from", "total_steps", "total_tokens_seen", "total_epochs", "total_train_time_s")


def read(path: str | Path) -> dict:
    """The textdiff.json of a model directory as written, or {} when there is none."""
    file = Path(path) / SIDECAR
    if not file.is_file():
        return {}
    return read_json_object(file)


def read_json_object(file: Path) -> dict:
    """A JSON object from ``file``, or a one-line ModelError naming the file (unreadable, not JSON, not an object)."""
    try:
        value = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{file} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ModelError(f"{file} should hold a JSON object, not {type(value).__name__}")
    return value


def write(path: str | Path, meta: dict) -> Path:
    """Write ``meta`` as the textdiff.json of directory ``path`` (callers write it after the weights)."""
    file = Path(path) / SIDECAR
    file.write_text(text(meta))
    return file


def text(meta: dict) -> str:
    """``meta`` as textdiff.json holds it (for writers that put the file in place themselves, e.g. atomically)."""
    return json.dumps(meta, indent=2) + "\n"


def exists(path: str | Path) -> bool:
    """Whether directory ``path`` holds a textdiff.json (a complete textdiff save)."""
    return (Path(path) / SIDECAR).is_file()


def format_prompt(template: str, label: str) -> str:
    """The class prompt of class ``label`` from ``template`` ("{label} review:"): the one place one is formatted."""
    return template.format(label=label)


@dataclass
class CheckpointMeta:
    """The keys other modules read, with their defaults; everything else stays in ``raw``."""

    objective: str | None = None  # "diffusion" or "ar"; None: not trained by textdiff
    conditioning: str = "none"  # none, class, joint, per-class, or zero-shot (a pretrained LM with a chosen prompt)
    classes: list[str] = field(default_factory=list)  # class names, in the order of the model's scores
    class_prompt: str | None = None  # never-masked prompt per class, "{label}" replaced by the class name
    class_dirs: dict[str, str] = field(default_factory=dict)  # per-class: class name -> subdirectory of its model
    max_length: int | None = None  # tokens per sequence the model was trained on
    base_model: str | None = None  # where training started
    noise: dict = field(default_factory=dict)  # diffusion: how masking rates were drawn and losses weighted
    config: dict = field(default_factory=dict)  # every training setting (TrainConfig.to_dict)
    data: dict = field(default_factory=dict)  # data mix, class counts, split
    steps: int | None = None  # optimizer steps of this run (its own stage of the lineage)
    tokens_seen: int = 0  # training tokens of this run
    epochs: float | None = None  # passes over this run's data; None in checkpoints saved before it was recorded
    train_time_s: float = 0.0
    num_processes: int = 1  # data-parallel processes: an optimizer step takes batch_size x grad_accum x this examples
    hardware: str | None = None
    continued_from: dict | None = None  # the parent's metadata when training continued a checkpoint
    total_steps: int | None = None  # continued runs: over the whole lineage (see the *_in_all properties)
    total_tokens_seen: int | None = None
    total_epochs: float | None = None
    total_train_time_s: float | None = None
    raw: dict = field(default_factory=dict, repr=False)  # the file as written

    @classmethod
    def from_dict(cls, meta: dict | None) -> CheckpointMeta:
        meta = meta or {}
        known = {f.name for f in fields(cls)} - {"raw"}
        values = {k: v for k, v in meta.items() if k in known and v is not None}
        return cls(**values, raw=meta)

    @classmethod
    def read(cls, path: str | Path) -> CheckpointMeta:
        return cls.from_dict(read(path))

    @property
    def class_prompted(self) -> bool:
        """One model that reads a class prompt (conditioning class or joint, or a zero-shot prompt)."""
        return bool(self.class_prompt and self.classes)

    def prompt_for(self, label: str) -> str:
        """The class prompt of class ``label``."""
        if not self.class_prompt:
            raise ModelError("this checkpoint has no class prompt")
        return format_prompt(self.class_prompt, label)

    def class_prompts(self) -> list[str]:
        """The class prompt of each class, in class order."""
        return [self.prompt_for(name) for name in self.classes]

    @property
    def class_counts(self) -> dict[str, int]:
        """Training examples per class (the prior), {} when not recorded."""
        return dict((self.data or {}).get("class_counts") or {})

    @property
    def n_examples(self) -> int | None:
        """Training examples of this run, None when not recorded."""
        return self.data.get("n")

    @property
    def data_specs(self) -> list[str]:
        """The data specs this run trained on ("imdb", a file path), [] when not recorded."""
        return [source.get("spec", "") for source in self.data.get("sources", [])]

    @property
    def loss_weighting(self) -> str:
        """Diffusion: how masked-token losses were weighted ("elbo" or "mean"; runs that predate it used the ELBO)."""
        return self.noise.get("weighting", LEGACY_DEFAULTS["noise.weighting"])

    @property
    def steps_in_all(self) -> int | None:
        """Optimizer steps over the whole lineage (this run's own for a run from base weights)."""
        return self.total_steps if self.total_steps is not None else self.steps

    @property
    def tokens_in_all(self) -> int:
        """Training tokens over the whole lineage."""
        return self.total_tokens_seen if self.total_tokens_seen is not None else self.tokens_seen

    @property
    def train_time_in_all(self) -> float:
        """Training seconds over the whole lineage."""
        return self.total_train_time_s if self.total_train_time_s is not None else self.train_time_s

    def epochs_in_all(self) -> float | None:
        """Passes over the training data over the whole lineage (each stage over its own data), else this run's."""
        return self.total_epochs if self.total_epochs is not None else self.own_epochs()

    def own_epochs(self) -> float | None:
        """Passes over this run's data: recorded, or (checkpoints saved before ``epochs`` was recorded) recomputed
        from its steps, batch and data size; None when those are not recorded either."""
        if self.epochs is not None:
            return self.epochs
        n, batch_size = self.n_examples, self.config.get("batch_size")
        if not (self.steps and n and batch_size):
            return None
        per_step = batch_size * self.config.get("grad_accum", 1) * self.num_processes
        return round(self.steps * per_step / n, 4)

    @property
    def parent(self) -> CheckpointMeta | None:
        """The checkpoint training continued from, None for a run from base weights."""
        return CheckpointMeta.from_dict(self.continued_from) if self.continued_from else None

    def as_parent(self) -> dict:
        """What a run continued from this checkpoint records of it (its ``continued_from``)."""
        return {key: self.raw[key] for key in LINEAGE_KEYS if key in self.raw}

    def lineage(self) -> list[CheckpointMeta]:
        """Every training stage's metadata, oldest first (one for a run that started from a base model)."""
        stages = [self]
        while (parent := stages[-1].parent) is not None:
            stages.append(parent)
        return stages[::-1]


def class_prompts(meta: dict) -> list[str]:
    """The never-masked prompt of each class of a class-prompted checkpoint's metadata, in class order."""
    return CheckpointMeta.from_dict(meta).class_prompts()
