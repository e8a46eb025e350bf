"""The records a classifier keeps beside its checkpoint, on the lowest floor: ``calibration.json`` (one entry per
reading, fitted on validation: its one reader and writer) and the zero-shot directory (``textdiff.json`` naming a
pretrained LM and its chosen prompt, with its calibration). ``checkpoint`` owns ``textdiff.json`` itself.

calibration.json is a JSON object ``{method: {temperature, bias, ood_reference, weight?, fitted_on, n, ...}}``;
``calibrate --method combined`` adds ``cross_fitted_accuracy`` ({bayes, infill, combined}: each reading fitted on one
half of the validation texts and read on the other), from which ``best_reading`` picks the default reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from textdiff_core.checkpoint import SIDECAR
from textdiff_core.checkpoint import text as sidecar_text
from textdiff_core.errors import ModelError
from textdiff_core.paths import write_file

CALIBRATION_FILE = "calibration.json"  # beside a checkpoint: {method: {temperature, bias, ood_reference}}
ZERO_SHOT = "zero-shot"  # a directory that names a pretrained LM, its chosen prompt and (beside it) its calibration
ZERO_SHOT_PROMPT = "A {label} movie review:"
ZERO_SHOT_TEMPLATES = ["A {label} movie review:", "{label} review:", "This is a {label} review of a film:",
                       "Here is a {label} review."]  # the candidates ``zero-shot`` chooses among by default
ZERO_SHOT_REFERENCE = "checkpoints/smollm2-zero-shot"  # the shipped one (`train_cli.py zero-shot`), repository-relative


@dataclass
class Calibration:
    """Fitted on the validation split, never on test."""

    temperature: float = 1.0  # posterior = softmax((log-likelihood + log prior + bias) / temperature)
    bias: list[float] = field(default_factory=list)  # per-class offset (removes a constant preference)
    ood_reference: list[float] = field(default_factory=list)  # sorted per-token log-evidence of validation texts
    weight: float = 1.0  # combined reading: log P(x|c) = Bayes + weight x infill (fitted with the bias)


def read_calibrations(directory: str | Path) -> dict:
    """A checkpoint's calibration.json as written ({method: record}), {} when it has none."""
    file = Path(directory) / CALIBRATION_FILE
    if not Path(directory).is_dir() or not file.is_file():
        return {}
    try:
        value = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _not_calibration(file, exc) from exc
    if not isinstance(value, dict):
        raise _not_calibration(file, TypeError(f"a JSON {type(value).__name__}, not an object"))
    return value


def calibration_for(directory: str | Path, method: str, classes: int) -> Calibration | None:
    """The calibration of reading ``method`` for ``classes`` classes, None when none was fitted; a one-line
    ModelError for a file that is not a calibration, or one fitted for another number of classes."""
    file = Path(directory) / CALIBRATION_FILE
    fitted = read_calibrations(directory).get(method)
    if not fitted:
        return None
    try:
        calibration = Calibration(float(fitted["temperature"]), [float(b) for b in fitted["bias"]],
                                  [float(r) for r in fitted["ood_reference"]], float(fitted.get("weight", 1.0)))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _not_calibration(file, exc) from exc
    if len(calibration.bias) != classes:
        raise ModelError(f"{file} has {len(calibration.bias)} class biases for {classes} classes; run "
                         "train_cli.py calibrate again, or delete it")
    return calibration


def _not_calibration(file: Path, exc: BaseException) -> ModelError:
    return ModelError(f"{file} is not a calibration file ({type(exc).__name__}: {exc}); run train_cli.py "
                      "calibrate again, or delete it")


def write_calibration(directory: str | Path, method: str, record: dict) -> Path:
    """Set reading ``method``'s entry of a checkpoint's calibration.json to ``record`` (the other readings kept),
    written whole or not at all."""
    merged = read_calibrations(directory) | {method: record}
    return write_file(Path(directory) / CALIBRATION_FILE,
                      lambda tmp: tmp.write_text(json.dumps(merged, indent=2) + "\n"))


def cross_fitted_accuracy(directory: str | Path) -> dict:
    """Validation accuracy of each reading ({bayes, infill, combined}) from ``calibrate --method combined``, each
    fitted on one half and read on the other; {} when not recorded."""
    try:
        return dict((read_calibrations(directory).get("combined") or {}).get("cross_fitted_accuracy") or {})
    except ModelError:
        return {}


def best_reading(directory: str | Path, bayes: str = "elbo") -> str | None:
    """The reading a checkpoint's calibration found best on validation (cross-fitted accuracy; ties go to the
    cheaper infill reading): "infill" or ``bayes`` (the model's Bayes reading: "elbo" for a masked model, "ar" for a
    left-to-right one), or None (the classifier's own default) when it records none."""
    accuracy = cross_fitted_accuracy(directory)
    readings = {"infill": accuracy.get("infill"), bayes: accuracy.get("bayes")}
    known = {k: v for k, v in readings.items() if v is not None}
    return max(known, key=lambda k: (known[k], k == "infill")) if known else None


def write_zero_shot(out: str | Path, meta: dict, calibrations: dict) -> Path:
    """A zero-shot directory: ``textdiff.json`` (``meta``: conditioning zero-shot, base model, classes, the chosen
    prompt and how it was chosen) and its calibration.json, each written whole or not at all."""
    out = Path(out)
    write_file(out / SIDECAR, lambda tmp: tmp.write_text(sidecar_text(meta)))
    write_file(out / CALIBRATION_FILE, lambda tmp: tmp.write_text(json.dumps(calibrations, indent=2) + "\n"))
    return out
