"""What a classifier returns: the record that the generative classifier (``classify``) and the TF-IDF reference
(``baseline``) share, on a floor below both (how a posterior is calibrated: ``records.Calibration``)."""

from __future__ import annotations

from dataclasses import dataclass

from textdiff_core.likelihood import TextScore


@dataclass
class Prediction:
    """A decision with what it rests on."""

    label: str
    classes: list[str]
    posterior: list[float]  # P(c | x), calibrated if the classifier is
    log_likelihood: list[float]  # log P(x | c) estimates (negative NLL totals); the discriminative reading: the logits
    log_likelihood_se: list[float]  # their Monte Carlo standard errors (0 for exact)
    scores: list[TextScore]  # per class: per-token contributions
    samples: int  # Monte Carlo samples per class actually used (0 for exact methods)
    forward_passes: int  # model forward passes (sequences) spent
    seconds: float
    ood_percentile: float | None = None  # where this text's per-token evidence falls among validation texts
    ood: bool | None = None  # flagged as out of distribution
    calibrated: bool = False  # whether the posterior went through a calibration fitted on validation
    uncalibrated: list[float] | None = None  # softmax(log P(x | c) + log P(c)): what the scores alone say
    # The discriminative reading (whose log_likelihood holds the head's logits): its OOD scores, before calibration
    max_softmax: float | None = None  # max_c softmax(logits)_c: low for texts unlike the training texts
    energy: float | None = None  # -logsumexp_c logit_c: high for texts unlike the training texts

    @property
    def confidence(self) -> float:
        return max(self.posterior)

    @property
    def raw_label(self) -> str | None:
        """The class the scores alone pick, before calibration (None when they were not kept)."""
        if not self.uncalibrated:
            return None
        return self.classes[max(range(len(self.classes)), key=self.uncalibrated.__getitem__)]

    def calibration_note(self) -> str | None:
        """One sentence on what the calibration did to the verdict, saying so plainly when it reversed it; None
        for an uncalibrated posterior."""
        if not self.calibrated or not self.uncalibrated:
            return None
        raw = self.raw_label
        raw_p = self.uncalibrated[self.classes.index(raw)]
        if raw != self.label:
            return (f"Calibration reverses the verdict: the scores alone say {raw} ({raw_p:.1%}); the class bias and "
                    f"temperature fitted on validation make it {self.label} ({self.confidence:.1%}).")
        return (f"Calibrated on validation (class bias and temperature); the scores alone also say {raw}, at "
                f"{raw_p:.1%}.")


def ordinal(value: float, digits: int = 0) -> str:
    """A percentile's place in words: 1st, 2nd, 3rd, 11th, 62nd; 62.5th where ``digits`` keep a fraction."""
    shown = f"{value:.{digits}f}"
    if "." in shown and shown.rstrip("0").rstrip(".") != shown.partition(".")[0]:
        return f"{shown}th"
    n = int(round(value))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
