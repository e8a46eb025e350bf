"""The ``train`` command line, generated from ``TrainConfig``: one flag per field (``NoiseConfig``'s too), so a new
setting gets its flag without anyone writing one, and back: the flags that recreate a config (``config_args``).

A flag is ``--field-name`` and its help is the field's trailing comment in ``train.py`` / ``noise.py`` (or
``help`` in the field's metadata); ``FLAGS`` below holds only what differs from that: other names, choices, parsers.
Defaults live in the dataclasses alone: an absent flag leaves the field's default.
"""

from __future__ import annotations

import argparse
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, fields

from textdiff_core.noise import SCHEDULES, T_SAMPLING, WEIGHTINGS, NoiseConfig


def _levels(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated rates like 0.1,0.5,1.0, got {text!r}") from None


def _probability_or_t(text: str) -> float | None:
    if text.strip().lower() == "t":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1] or t, got {text!r}") from None


def _data(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# What differs from "--field-name, parsed as the field's type": keyed by field name ("noise." for NoiseConfig's).
FLAGS: dict[str, dict] = {
    "objective": {"choices": ("diffusion", "ar"),
                  "help": "diffusion: masked tokens at rate t, bidirectional attention; ar: left-to-right next-token "
                          "loss"},
    "model": {"help": "start from: offline name (minilm, minilm-ar, smollm2, tiny, tiny-ar), a directory or a hub id "
                      "(default: minilm for diffusion, minilm-ar for ar)"},
    "data": {"type": _data, "action": "extend",
             "help": "dataset(s): imdb, rotten_tomatoes, a .csv/.jsonl file, or a hub dataset id; several (comma "
                     "separated or repeated) are mixed, and the mix is recorded with the checkpoint (default: imdb)"},
    "conditioning": {"choices": ("none", "class", "joint", "per-class"),
                     "help": "none: unconditional; class: one model with a never-masked class prompt; joint: the "
                             "class word is one more token to model (diffusion: masked by its own coin; left to "
                             "right: the class prompt before or after the text), read back by --method infill; "
                             "per-class: one model per class"},
    "label_mask_prob": {"type": _probability_or_t, "none": "t",
                        "help": "joint, diffusion: chance that the class word is masked in a training sequence (t: "
                                "the sequence's own masking rate)"},
    "crop": {"choices": ("random", "start")},
    "save_dtype": {"choices": ("fp32", "fp16", "bf16")},
    "noise.schedule": {"flags": ("--masking-rates", "--noise-schedule"), "choices": SCHEDULES,
                       "help": "how masking rates are drawn: continuous (t ~ U(eps, 1) per sequence, see --t-sampling "
                               "and --t-beta) or levels (one rate per batch from --levels); --noise-schedule is its "
                               "old name"},
    "noise.t_sampling": {"choices": T_SAMPLING},
    "noise.levels": {"type": _levels},
    "noise.weighting": {"flags": ("--loss-weighting",), "choices": WEIGHTINGS},
}


def _comments(cls: type) -> dict[str, str]:
    """Each field's trailing comment in the class body (continued on following comment-only lines)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source (a frozen build): the flags lose their help, nothing else
        return {}
    out, last = {}, None
    for line in source.splitlines():
        field_line = re.match(r"^    (\w+): [^#]*?(?:#\s?(.*))?$", line)
        continued = re.match(r"^\s+#\s*(.*)$", line)
        if field_line and not line.lstrip().startswith("#"):
            last = field_line.group(1)
            if field_line.group(2):
                out[last] = field_line.group(2).strip()
        elif continued and last in out:
            out[last] += " " + continued.group(1).strip()
        else:
            last = None
    return out


def settings() -> Iterator[tuple[str, Field, type]]:
    """(name, field, type) of every training setting: TrainConfig's fields, NoiseConfig's as ``noise.<name>``."""
    from textdiff_core.train import TrainConfig

    for owner, prefix in ((TrainConfig, ""), (NoiseConfig, "noise.")):
        hints = typing.get_type_hints(owner)
        for f in fields(owner):
            if owner is TrainConfig and f.name == "noise":
                continue
            yield prefix + f.name, f, hints[f.name]


def _base_type(hint: type) -> type:
    """int for ``int | None``, list for ``list[str]``, ..."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def _default(f: Field):
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _flag(name: str) -> str:
    return "--" + name.rpartition(".")[2].replace("_", "-")


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per training setting; absent flags leave the dataclass defaults (``train_config``)."""
    from textdiff_core.train import TrainConfig

    help_by_name = {**_comments(TrainConfig), **{f"noise.{k}": v for k, v in _comments(NoiseConfig).items()}}
    for name, f, hint in settings():
        spec = FLAGS.get(name, {})
        kind = _base_type(hint)
        helptext = f.metadata.get("help") or spec.get("help") or help_by_name.get(name, "")
        default = _default(f)
        if default not in (None, MISSING, False) and "default:" not in helptext:
            shown = ",".join(map(str, default)) if isinstance(default, list | tuple) else default
            helptext += f" (default: {shown})"
        kwargs: dict = {"dest": name.replace(".", "__"), "help": helptext.replace("%", "%%")}
        if f.default is MISSING and f.default_factory is MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = argparse.SUPPRESS
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = spec.get("type", kind)
            for key in ("choices", "action"):
                if key in spec:
                    kwargs[key] = spec[key]
            if "choices" not in kwargs:
                kwargs["metavar"] = _flag(name)[2:].upper().replace("-", "_")
        parser.add_argument(*spec.get("flags", (_flag(name),)), **kwargs)


def train_config(args: argparse.Namespace, **overrides):
    """The TrainConfig of parsed ``add_train_flags`` flags (plus ``overrides``, by field name)."""
    from textdiff_core.train import TrainConfig

    given: dict[str, dict] = {"": {}, "noise.": {}}
    for name, _, _ in settings():
        value = overrides.get(name, getattr(args, name.replace(".", "__"), MISSING))
        if value is MISSING or value is None and "none" not in FLAGS.get(name, {}):
            continue  # not given: the dataclass default (None from a caller also means "not given")
        prefix, _, field_name = name.rpartition(".")
        given[prefix + "." if prefix else ""][field_name] = value
    config = given[""]
    if "model" not in config:
        config["model"] = "minilm-ar" if config.get("objective") == "ar" else "minilm"
    return TrainConfig(**config, noise=NoiseConfig(**given["noise."]))


def _value(name: str, value) -> str:
    if value is None:
        return FLAGS[name]["none"]
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def config_args(config, skip: Callable[[str], bool] = lambda name: False) -> list[str]:
    """The ``train`` flags that recreate ``config``: every setting spelled out (not only those that differ from
    today's defaults, which may change), except settings for which ``skip(name)`` is true."""
    args: list[str] = []
    for name, f, hint in settings():
        if skip(name):
            continue
        owner = config.noise if name.startswith("noise.") else config
        value = getattr(owner, name.rpartition(".")[2])
        flag = FLAGS.get(name, {}).get("flags", (_flag(name),))[0]
        if _base_type(hint) is bool:
            if value is not None and value != _default(f):
                args.append(flag if value else "--no-" + flag[2:])
        elif value is not None or "none" in FLAGS.get(name, {}):
            args += [flag, _value(name, value)]
    return args


# Settings a run recorded before they existed, or before their default changed: their value at the time.
LEGACY_DEFAULTS = {"crop": "start", "lr_schedule": "linear", "noise.weighting": "elbo", "eval_epochs": False}


def config_from_record(record: dict):
    """The TrainConfig of a recorded ``config`` dict (textdiff.json); settings it lacks take ``LEGACY_DEFAULTS``,
    else today's defaults (a setting added later, whose default is the behaviour from before)."""
    from textdiff_core.train import TrainConfig

    known = {name for name, _, _ in settings()}
    top = {k: v for k, v in record.items() if k != "noise" and k in known}
    noise = {k: v for k, v in (record.get("noise") or {}).items() if f"noise.{k}" in known}
    for name, value in LEGACY_DEFAULTS.items():
        prefix, _, key = name.rpartition(".")
        (noise if prefix else top).setdefault(key, value)
    return TrainConfig(**top, noise=NoiseConfig(**noise))
