"""``textdiff.json``, the metadata beside every model textdiff saves: its one reader and writer, its schema with the
defaults of keys a checkpoint does not have, and what other modules ask of it (classes, class prompts, lineage).

The file is a JSON object; ``read`` returns it as written, ``CheckpointMeta`` is the typed view with defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from textdiff_core.errors import ModelError

SIDECAR = "textdiff.json"  # written last by save_model, so a directory that has it is a complete save
CLASS_PROMPTED = ("class", "joint")  # conditionings with one model and a class prompt ("{label} review:")


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
    file.write_text(json.dumps(meta, indent=2) + "\n")
    return file


def exists(path: str | Path) -> bool:
    """Whether directory ``path`` holds a textdiff.json (a complete textdiff save)."""
    return (Path(path) / SIDECAR).is_file()


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
    config: dict = field(default_factory=dict)  # every training setting (TrainConfig.to_dict)
    data: dict = field(default_factory=dict)  # data mix, class counts, split
    continued_from: dict | None = None  # the parent's metadata when training continued a checkpoint
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
        """The class prompt of class ``label``: the one place a class prompt is formatted."""
        if not self.class_prompt:
            raise ModelError("this checkpoint has no class prompt")
        return self.class_prompt.format(label=label)

    def class_prompts(self) -> list[str]:
        """The class prompt of each class, in class order."""
        return [self.prompt_for(name) for name in self.classes]

    @property
    def class_counts(self) -> dict[str, int]:
        """Training examples per class (the prior), {} when not recorded."""
        return dict((self.data or {}).get("class_counts") or {})

    def lineage(self) -> list[dict]:
        """Every training stage's metadata, oldest first (one for a run that started from a base model)."""
        stages = [self.raw]
        while stages[-1].get("continued_from"):
            stages.append(stages[-1]["continued_from"])
        return stages[::-1]


def class_prompts(meta: dict) -> list[str]:
    """The never-masked prompt of each class of a class-prompted checkpoint's metadata, in class order."""
    return CheckpointMeta.from_dict(meta).class_prompts()
