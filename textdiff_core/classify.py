"""Generative classification: log P(c | x) = softmax_c( log P(x | c) + log P(c) ), with P(x | c) from a model.

Scorers of log P(x | c):
  class-conditional  one model trained with a never-masked class prompt ("negative review:"), scored per prompt
  per-class          one model per class (the recipe of the RoBERTa variable-masking classifiers)
  zero-shot          a pretrained causal LM prompted per class ("A negative movie review:")
Methods (how a masked model turns into a number; causal models are always exact):
  elbo          the MDLM bound with the same noise for every class (common random numbers)
  elbo-indep    the same bound with fresh noise per class (to measure what sharing buys)
  pll           pseudo-log-likelihood: mask one token at a time (L forward passes per class)
  mlm-loss      the RoBERTa variable-masking recipe's score: mean loss of one 15% mask, 5 samples, fresh noise
                per class
  ar            exact left-to-right likelihood (causal models)
  infill        the class as one more token: P(c | window) read off the class-word slot (masked models: the slot
                masked, the text visible; left-to-right models: the class prompt after the text), one forward pass
                per window for every class. Windows combine as a product of experts,
                log P(c | x) = sum_w log P(c | x_w) - (W - 1) log P(c) + const, reported as
                log P(x | c) + const = sum_w log P(c | x_w) - W log P(c) so that Bayes' rule below applies unchanged.
  discriminative  not generative: a checkpoint trained with ``--objective discriminative`` (a classification head
                on the same encoder) gives P(c | x) = softmax((logits + bias) / T) itself, the logits the mean over
                the text's windows (``discriminative``), one forward pass per window; its "log-likelihood" slot
                carries those logits, its prior is uniform (the head learnt the training frequencies already), and
                its OOD score is the energy, not the evidence per token.
Adaptive sampling (elbo): draw Monte Carlo samples in rounds and stop once the leader's margin over the runner-up
exceeds z standard errors of their paired difference, or at the sample cap.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from textdiff_core.baseline import METHOD as TFIDF_METHOD
from textdiff_core.baseline import fit_note, is_fitted, load_baseline
from textdiff_core.checkpoint import CheckpointMeta, format_prompt
from textdiff_core.discriminative import energy, head_occlusion, head_reading, max_softmax
from textdiff_core.errors import ModelError, TextdiffError
from textdiff_core.gguf_convert import CONVERSION_NOTE, conversion_pending
from textdiff_core.likelihood import (
    TextScore,
    ar_scores,
    elbo_scores,
    infill_occlusion,
    infill_scores,
    mlm_loss_scores,
    pll_scores,
    pool_samples,
)
from textdiff_core.models import LoadedModel, head_labels, kind_of, load_model
from textdiff_core.prediction import Prediction
from textdiff_core.records import (
    ZERO_SHOT,
    ZERO_SHOT_PROMPT,
    Calibration,
    best_reading,
    calibration_for,
    cross_fitted_accuracy,
)
from textdiff_core.settings import CAUSAL, CLASS_PROMPTED, CLASSIFIER, MASKED, LoadOptions
from textdiff_core.tokens import class_slot

DISCRIMINATIVE = "discriminative"  # the reading of a model with a classification head
METHODS = ("elbo", "elbo-indep", "pll", "mlm-loss", "ar", "infill", "combined", DISCRIMINATIVE)


def default_method(kind: str) -> str:
    """The reading of a kind of model when none is asked for: elbo (masked), ar (causal), discriminative (a head)."""
    return {MASKED: "elbo", CLASSIFIER: DISCRIMINATIVE}.get(kind, "ar")


def class_scores(
    lm: LoadedModel,
    text: str,
    prompts: list[str | None],
    samples: int = 8,
    generator: torch.Generator | None = None,
    max_length: int | None = None,
    max_windows: int | None = None,
    method: str | None = None,
) -> list[TextScore]:
    """-log P(text | prompt) for each prompt with one model (see the module docstring for the methods)."""
    method = method or ("elbo" if lm.kind == MASKED else "ar")
    window = {"max_length": max_length, "max_windows": max_windows}
    if method == "ar":
        return ar_scores(lm, text, prompts, **window)
    if method in ("elbo", "elbo-indep"):
        return elbo_scores(lm, text, prompts, samples, generator, shared_noise=method == "elbo", **window)
    if method == "pll":
        return pll_scores(lm, text, prompts, **window)
    if method == "mlm-loss":
        return mlm_loss_scores(lm, text, prompts, generator, **window)
    raise TextdiffError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


class Classifier:
    """Scores log P(x | c) for every class with one of the scorers above, and turns them into a posterior (the
    discriminative reading: the head's logits in their place)."""

    def __init__(
        self,
        models: dict[str, LoadedModel] | LoadedModel,
        classes: list[str],
        prompts: list[str | None],
        method: str | None = None,
        log_prior: list[float] | None = None,
        calibration: Calibration | None = None,
        max_length: int | None = None,
    ) -> None:
        if len(classes) < 2:
            raise TextdiffError(f"a classifier needs at least 2 classes, got {classes}")
        self.models = models  # one model for every class, or {class: model}
        self.classes = list(classes)
        self.prompts = list(prompts)
        first = models if isinstance(models, LoadedModel) else next(iter(models.values()))
        self.method = method or default_method(first.kind)
        if self.method not in METHODS:
            raise TextdiffError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if (self.method == DISCRIMINATIVE) != (first.kind == CLASSIFIER):
            raise TextdiffError(f"{first.name!r} has a classification head: its one reading is {DISCRIMINATIVE}, "
                                f"not {self.method!r}" if first.kind == CLASSIFIER else
                                f"the {DISCRIMINATIVE} reading needs a model with a classification head (train "
                                f"--objective discriminative); {first.name!r} has none")
        uniform = [-math.log(len(classes))] * len(classes)
        self.log_prior = list(log_prior) if log_prior is not None else uniform
        self.calibration = calibration or Calibration(bias=[0.0] * len(classes))
        self.calibrated = calibration is not None  # fitted on validation (calibration.json), not the identity
        self.max_length = max_length
        self.slot = None
        if self.method in ("infill", "combined"):
            if not isinstance(models, LoadedModel) or any(p is None for p in self.prompts):
                raise TextdiffError("the infill reading needs one model with a class prompt (a class-conditional or "
                                    "joint checkpoint, or a zero-shot LM); this is a set of one model per class")
            self.slot = class_slot(models.tokenizer, self.prompts)

    @property
    def exact(self) -> bool:
        return (self.method in ("ar", "pll", "infill", DISCRIMINATIVE)
                or (self.method == "combined" and self.bayes_method == "ar"))

    @property
    def bayes_method(self) -> str:
        """The Bayes reading a combined reading adds the infill reading to: the ELBO, or exact left to right."""
        return "elbo" if self.models.kind == MASKED else "ar"

    def _combined(self, text: str, samples: int, generator: torch.Generator | None) -> list[TextScore]:
        """Bayes + weight x infill per class (weight fitted on validation, ``fit_combined``); the infill term is
        exact, so it shifts every Monte Carlo sample of the Bayes term alike."""
        bayes = class_scores(self.models, text, self.prompts, samples, generator, self.max_length,
                             method=self.bayes_method)
        infill, w = self._infill(text), self.calibration.weight
        out = []
        for b, i in zip(bayes, infill, strict=True):
            shift = w * i.nll
            out.append(TextScore(b.nll + shift, b.nll_se, b.token_ids, [v + shift / b.n_tokens for v in b.token_nll],
                                 b.token_se, [v + shift for v in b.sample_nll], b.windows,
                                 None if b.contributions is None else b.contributions + shift / b.n_tokens))
        return out

    def _infill(self, text: str) -> list[TextScore]:
        """Product of experts over windows, as log P(x | c) + const (see the module docstring)."""
        read = infill_scores(self.models, text, self.slot, self.max_length)
        windows = read.log_posteriors.shape[0]
        totals = read.log_posteriors.sum(0) - windows * torch.tensor(self.log_prior)
        ids = read.token_ids
        return [TextScore(-t, 0.0, ids, [-t / len(ids)] * len(ids), [0.0] * len(ids), [-t], windows)
                for t in totals.tolist()]

    def _discriminative(self, text: str) -> list[TextScore]:
        """The head's logits, the mean over the text's windows, as -nll (the reading's "log-likelihood" slot)."""
        read = head_reading(self.models, text, self.max_length)
        ids, windows = read.token_ids, len(read.windows)
        return [TextScore(-v, 0.0, ids, [-v / len(ids)] * len(ids), [0.0] * len(ids), [-v], windows)
                for v in read.mean.tolist()]

    def infill_evidence(self, text: str, max_windows: int = 2) -> tuple[list[int], torch.Tensor]:
        """Occlusion evidence of the infill (or the discriminative) reading for the first ``max_windows`` windows:
        (token ids, [L, C] change in log P(c | window) when each token alone is occluded; > 0: the token speaks
        for class c). The infill reading's slot sees the token occluded; the head sees it as [MASK]."""
        if self.method == DISCRIMINATIVE:
            read = head_reading(self.models, text, self.max_length, max_windows)
            return read.token_ids, torch.cat([head_occlusion(self.models, window)[1] for window in read.windows])
        if self.slot is None:
            raise TextdiffError(f"occlusion evidence belongs to the infill reading, not to {self.method!r}")
        read = infill_scores(self.models, text, self.slot, self.max_length, max_windows)
        deltas = [infill_occlusion(self.models, window, self.slot)[1] for window in read.windows]
        return read.token_ids, torch.cat(deltas)

    def _score(self, text: str, samples: int, generator: torch.Generator | None) -> list[TextScore]:
        if self.method == "infill":
            return self._infill(text)
        if self.method == DISCRIMINATIVE:
            return self._discriminative(text)
        if self.method == "combined":
            return self._combined(text, samples, generator)
        if isinstance(self.models, LoadedModel):
            return class_scores(self.models, text, self.prompts, samples, generator, self.max_length,
                                method=self.method)
        if self.method == "elbo":  # per-class models: the same masks for every model (same tokenizer)
            state = generator.get_state() if generator is not None else None
            out = []
            for c in self.classes:
                if state is not None:
                    generator.set_state(state)
                out += class_scores(self.models[c], text, [None], samples, generator, self.max_length, method="elbo")
            return out
        return [class_scores(self.models[c], text, [None], samples, generator, self.max_length,
                             method=self.method)[0] for c in self.classes]

    def calibrated_logits(self, log_likelihood: list[float]) -> torch.Tensor:
        """(log P(x|c) + log P(c) + bias_c) / T in float64: log-likelihoods run to hundreds of nats, where float32
        would round away the differences a fitted bias leaves between classes."""
        logits = (torch.tensor(log_likelihood, dtype=torch.float64) + torch.tensor(self.log_prior, dtype=torch.float64)
                  + torch.tensor(self.calibration.bias, dtype=torch.float64))
        return logits / self.calibration.temperature

    def decide(self, log_likelihood: list[float]) -> int:
        """The class Bayes' rule with the fitted calibration picks (the first on an exact tie)."""
        return int(self.calibrated_logits(log_likelihood).argmax())

    def posterior(self, log_likelihood: list[float]) -> list[float]:
        """softmax((log P(x|c) + log P(c) + bias_c) / T): Bayes' rule with the fitted calibration."""
        return torch.softmax(self.calibrated_logits(log_likelihood), 0).tolist()

    def classify(
        self,
        text: str,
        samples: int = 8,
        adaptive: bool = False,
        z: float = 2.0,
        round_samples: int = 2,
        generator: torch.Generator | None = None,
    ) -> Prediction:
        """Classify one text. With ``adaptive``, ELBO samples are drawn ``round_samples`` at a time (shared across
        classes) until the leader leads the runner-up by ``z`` standard errors of the paired difference, or until
        ``samples`` per class are used."""
        started = time.time()
        if self.exact or self.method == "mlm-loss" or not adaptive:
            scores = self._score(text, samples, generator)
            used = 0 if self.exact else len(scores[0].sample_nll)
        else:
            scores, used = None, 0
            while used < samples:
                batch = self._score(text, min(round_samples, samples - used), generator)
                scores = batch if scores is None else [pool_samples(a, b) for a, b in zip(scores, batch, strict=True)]
                used = len(scores[0].sample_nll)
                if used >= 2 and _decided(scores, self._adjust(), z):
                    break
        log_lik = [-s.nll for s in scores]
        post = self.posterior(log_lik)
        best = self.decide(log_lik)
        passes = self._passes(scores, used)
        prediction = Prediction(
            label=self.classes[best], classes=self.classes, posterior=post, log_likelihood=log_lik,
            log_likelihood_se=[s.nll_se if s.nll_se == s.nll_se else 0.0 for s in scores], scores=scores,
            samples=used, forward_passes=passes, seconds=time.time() - started, calibrated=self.calibrated,
            uncalibrated=torch.softmax(torch.tensor(log_lik, dtype=torch.float64)
                                       + torch.tensor(self.log_prior, dtype=torch.float64), 0).tolist(),
        )
        if self.method == DISCRIMINATIVE:  # the head's own scores of how typical the text is
            prediction.max_softmax, prediction.energy = max_softmax(log_lik), energy(log_lik)
        if self.calibration.ood_reference and self.method not in ("infill", "combined"):  # no likelihood: no OOD
            prediction.ood_percentile = ood_percentile(in_distribution_score(prediction, self.log_prior),
                                                       self.calibration.ood_reference)
            prediction.ood = prediction.ood_percentile < OOD_PERCENTILE
        return prediction

    def _adjust(self) -> list[float]:
        return [p + b for p, b in zip(self.log_prior, self.calibration.bias, strict=True)]

    def _passes(self, scores: list[TextScore], used: int) -> int:
        n, windows, classes = scores[0].n_tokens, scores[0].windows, len(self.classes)
        if self.method in ("infill", DISCRIMINATIVE):
            return windows  # every class from one pass per window
        if self.method == "combined":  # the infill windows of the Bayes reading's length (nearly always as many)
            return windows * (1 + (classes if self.bayes_method == "ar" else used * classes))
        if self.method == "ar":
            return windows * classes
        if self.method == "pll":
            return n * classes
        if self.method == "mlm-loss":
            return 5 * windows * classes
        return used * windows * classes


OOD_PERCENTILE = 1.0  # texts whose evidence per token is below this percentile of validation texts are flagged


def _decided(scores: list[TextScore], adjust: list[float], z: float) -> bool:
    """Leader minus runner-up, per shared sample, exceeds z standard errors."""
    means = [-s.nll + a for s, a in zip(scores, adjust, strict=True)]
    order = sorted(range(len(means)), key=means.__getitem__, reverse=True)
    lead, second = order[0], order[1]
    diff = torch.tensor(scores[second].sample_nll) - torch.tensor(scores[lead].sample_nll)  # > 0 favours lead
    margin = diff.mean().item() + adjust[lead] - adjust[second]
    se = diff.std().item() / math.sqrt(len(diff))
    return margin > z * se


def evidence_per_token(prediction: Prediction, log_prior: list[float]) -> float:
    """log P(x) per token = logsumexp_c (log P(x|c) + log P(c)) / n_tokens: how typical the text is."""
    total = torch.logsumexp(torch.tensor(prediction.log_likelihood) + torch.tensor(log_prior), 0).item()
    return total / (prediction.scores[0].n_tokens if prediction.scores else 1)


def in_distribution_score(prediction: Prediction, log_prior: list[float]) -> float:
    """How typical a text looks to the reading that read it (higher: more typical), the value the OOD reference
    holds: the evidence per token of a generative reading, minus the energy of the discriminative one."""
    if prediction.energy is not None:
        return -prediction.energy
    return evidence_per_token(prediction, log_prior)


def ood_percentile(value: float, reference: list[float]) -> float:
    """Percentage of reference values below ``value`` (0 = lower than every validation text)."""
    below = sum(1 for r in reference if r < value)
    return 100.0 * below / max(1, len(reference))


def default_reading(name_or_path: str) -> tuple[str, str] | None:
    """The reading to use when none is asked for: the one the checkpoint's calibration chose on validation
    (``records.best_reading``: cross-fitted accuracy, ties to the cheaper infill reading), with why in a few words;
    None when its calibration records no such choice (the classifier's own default then: elbo for a masked model,
    ar for a left-to-right one)."""
    if not Path(name_or_path).is_dir():
        return None
    bayes = "ar" if kind_of(name_or_path) == CAUSAL else "elbo"
    best = best_reading(name_or_path, bayes)
    if best is None:
        return None
    accuracy = cross_fitted_accuracy(name_or_path)
    other = bayes if best == "infill" else "infill"
    shown = {"infill": accuracy["infill"], bayes: accuracy["bayes"]}
    return best, (f"the reading its calibration chose on validation ({shown[best]:.1%} against {shown[other]:.1%} "
                  f"for {other})")


def first_use(name_or_path: str) -> str | None:
    """The one-off work that loading ``name_or_path`` (a model or classifier name) would do now, said with roughly
    how long it takes: converting SmolLM2 (the name itself, or a zero-shot directory built on it) or fitting the
    TF-IDF reference; None when there is none. A quick look (file checks), for a spinner's or the CLI's note."""
    if name_or_path == "tfidf" or name_or_path.startswith("tfidf:"):
        data = name_or_path.partition(":")[2] or "imdb"
        return None if is_fitted(data) else fit_note(data)
    base = name_or_path
    if Path(name_or_path).is_dir():
        try:
            meta = CheckpointMeta.read(name_or_path)
        except TextdiffError:  # a broken directory: loading it says so
            return None
        base = str(meta.base_model) if meta.conditioning == ZERO_SHOT and meta.base_model else name_or_path
    return CONVERSION_NOTE if base == "smollm2" and conversion_pending() else None


def load_classifier(
    name_or_path: str,
    method: str | None = None,
    classes: list[str] | None = None,
    prompt_template: str | None = None,
    device: str | None = None,
    max_length: int | None = None,
    options: LoadOptions | None = None,
) -> Classifier:
    """A classifier from a checkpoint: class-conditional or per-class (ours), or any LM prompted per class.
    ``options`` (``settings.LoadOptions``) are passed to ``load_model``.

    Our checkpoints know their classes, prompts and training label frequencies (the prior), and carry the
    calibration fitted on validation (``calibration.json``) once ``train_cli.py calibrate`` has been run. A
    directory with a classification head (``train --objective discriminative``) reads as the discriminative
    reading, its classes its head's.
    """
    if name_or_path == "tfidf" or name_or_path.startswith("tfidf:"):  # the discriminative reference, not an LM
        if method not in (None, TFIDF_METHOD):
            raise TextdiffError(f"the tfidf baseline has one method ({TFIDF_METHOD}), not {method!r}")
        return load_baseline(name_or_path.partition(":")[2] or "imdb")
    path = Path(name_or_path)
    meta = CheckpointMeta.read(path) if path.is_dir() else CheckpointMeta()
    if path.is_dir() and kind_of(name_or_path) == CLASSIFIER:
        return _load_discriminative(path, meta, method, classes, device, max_length, options)
    conditioning = meta.conditioning
    if conditioning in ("per-class", *CLASS_PROMPTED) and not meta.classes:
        raise ModelError(f"{path / 'textdiff.json'} names no classes for its {conditioning!r} conditioning")
    if conditioning == "per-class":
        names = meta.classes
        dirs = meta.class_dirs
        missing = [c for c in names if c not in dirs or not (path / str(dirs[c])).is_dir()]
        if missing:  # e.g. a set copied without one of its members
            raise ModelError(f"{path} holds one model per class, but the model of class {missing[0]!r} is missing")
        models: dict[str, LoadedModel] | LoadedModel = {
            c: load_model(str(path / dirs[c]), device=device, options=options) for c in names
        }
        prompts: list[str | None] = [None] * len(names)
    elif conditioning in CLASS_PROMPTED:
        names = meta.classes
        models = load_model(str(path), device=device, options=options)
        prompts = list(meta.class_prompts())
    elif conditioning == ZERO_SHOT:  # a pretrained LM with its prompt chosen (and calibration fitted) on validation
        names = list(meta.classes)
        if len(names) < 2 or "{label}" not in str(meta.class_prompt) or not meta.base_model:
            raise ModelError(f"{path / 'textdiff.json'} needs base_model, classes and a class_prompt with {{label}}")
        models = load_model(str(meta.base_model), device=device, options=options)
        prompts = list(meta.class_prompts())
    else:  # zero-shot: any model, a prompt per class
        names = classes or ["negative", "positive"]
        models = load_model(name_or_path, device=device, options=options)
        template = prompt_template or ZERO_SHOT_PROMPT
        if "{label}" not in template:
            raise TextdiffError(f"the prompt template must contain {{label}}, got {template!r}")
        prompts = [format_prompt(template, c) for c in names]
    if classes and conditioning and list(classes) != list(names):
        raise TextdiffError(f"{name_or_path} was trained on classes {names}, not {classes}")
    counts = meta.class_counts
    log_prior = None
    if counts and all(counts.get(c) for c in names):
        total = sum(counts[c] for c in names)
        log_prior = [math.log(counts[c] / total) for c in names]
    first = models if isinstance(models, LoadedModel) else next(iter(models.values()))
    method = method or default_method(first.kind)
    calibration = calibration_for(path, method, len(names))
    limit = max_length or meta.max_length
    return Classifier(models, names, prompts, method, log_prior, calibration, limit)


def _load_discriminative(path: Path, meta: CheckpointMeta, method: str | None, classes: list[str] | None,
                         device: str | None, max_length: int | None, options: LoadOptions | None) -> Classifier:
    """The discriminative reading of a directory with a classification head: its classes in the head's order, a
    uniform prior (the head's logits hold the training frequencies already), its calibration when fitted."""
    if method not in (None, DISCRIMINATIVE):
        raise TextdiffError(f"{path} has a classification head: its one reading is {DISCRIMINATIVE}, not {method!r}")
    lm = load_model(str(path), CLASSIFIER, device=device, options=options)
    names = head_labels(lm.model)
    if meta.classes and list(meta.classes) != names:
        raise ModelError(f"{path / 'textdiff.json'} names classes {meta.classes}, but the head's are {names}")
    if classes and list(classes) != names:
        raise TextdiffError(f"{path} was trained on classes {names}, not {classes}")
    calibration = calibration_for(path, DISCRIMINATIVE, len(names))
    return Classifier(lm, names, [None] * len(names), DISCRIMINATIVE, None, calibration, max_length or meta.max_length)


def score_matrix(
    classifier: Classifier, texts: list[str], samples: int, seed: int = 0, progress: bool = True,
    adaptive: bool = False, z: float = 2.0,
) -> list[Prediction]:
    """Predictions for many texts; text i uses a generator seeded by (seed, i), so results do not depend on order."""
    out = []
    for i, text in enumerate(tqdm(texts, desc=f"classify ({classifier.method})", disable=not progress)):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        out.append(classifier.classify(text, samples, adaptive=adaptive, z=z, generator=generator))
    return out


def fit_calibration(predictions: list[Prediction], labels: list[int], log_prior: list[float]) -> Calibration:
    """Per-class bias and a temperature that minimise the posterior's log loss on *validation* predictions,
    and the validation texts' per-token evidence (the discriminative reading: minus their energy) as the
    out-of-distribution reference."""
    fitted = _bias_only(predictions, labels, log_prior)
    fitted.ood_reference = sorted(in_distribution_score(p, log_prior) for p in predictions)
    return fitted


def _check_finite(*parameters: torch.Tensor) -> None:
    """A fit that diverged must not be written as a calibration (NaN is not even JSON)."""
    if not all(torch.isfinite(p).all() for p in parameters):
        raise TextdiffError("the calibration fit diverged (non-finite parameters); check the validation scores")


def _spread(scores: torch.Tensor) -> float:
    """Typical size of a reading's differences between classes (the std of each score minus the row's mean)."""
    spread = (scores - scores.mean(1, keepdim=True)).std().item()
    return spread if math.isfinite(spread) and spread > 0 else 1.0


def choose_zero_shot(model: str, classes: list[str], templates: list[str], texts: list[str], labels: list[int],
                     seed: int = 0, progress: bool = True, options: LoadOptions | None = None,
                     ) -> tuple[str, Calibration, dict[str, tuple[float, float]]]:
    """The prompt template of a zero-shot LM with the best validation accuracy once a per-class bias is fitted on
    the same texts, with that fit: (template, calibration, {template: (accuracy before, after the bias)})."""
    readings: dict[str, tuple[float, float]] = {}
    best = None
    for template in templates:
        clf = load_classifier(model, None, classes, template, options=options)
        predictions = score_matrix(clf, texts, 1, seed, progress)
        fitted = fit_calibration(predictions, labels, clf.log_prior)
        accuracies = []
        for calibration in (Calibration(bias=[0.0] * len(classes)), fitted):
            clf.calibration = calibration
            decided = [clf.decide(p.log_likelihood) for p in predictions]
            accuracies.append(sum(d == y for d, y in zip(decided, labels, strict=True)) / len(labels))
        readings[template] = (accuracies[0], accuracies[1])
        if best is None or accuracies[1] > readings[best[0]][1]:
            best = (template, fitted)
    return best[0], best[1], readings


def fit_combined(bayes: list[list[float]], infill: list[list[float]], labels: list[int], log_prior: list[float]
                 ) -> Calibration:
    """Weight of the infill reading added to the Bayes reading, per-class bias and temperature, fitted together by
    minimising the posterior's log loss on *validation* readings ([N, C] log P(x|c) of each reading).

    Fitted as a logistic regression, ``alpha * bayes / sb + beta * infill / si + prior + c``, on readings scaled to
    unit spread between classes (ELBO sums differ by tens of nats, infill log-posteriors by a few), then written in
    the calibration's form: temperature sb / alpha, weight beta * temperature / si. Alpha has a floor of 1e-3, so a
    Bayes reading that adds nothing given the infill reading gives a large, finite temperature instead of diverging.
    """
    b = torch.tensor(bayes, dtype=torch.float64)
    i = torch.tensor(infill, dtype=torch.float64)
    y = torch.tensor(labels)
    prior = torch.tensor(log_prior, dtype=torch.float64)
    sb, si = _spread(b), _spread(i)
    b, i = b / sb, i / si
    c = torch.zeros(b.shape[1] - 1, dtype=torch.float64, requires_grad=True)  # class 0's offset is 0
    log_alpha = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    log_beta = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([c, log_alpha, log_beta], lr=1.0, max_iter=300, line_search_fn="strong_wolfe")

    def logits():
        alpha, beta = 1e-3 + log_alpha.exp(), log_beta.exp()
        return alpha * b + beta * i + prior + torch.cat([torch.zeros(1, dtype=torch.float64), c])

    def loss_fn():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits(), y)
        loss.backward()
        return loss

    optimiser.step(loss_fn)
    _check_finite(c, log_alpha, log_beta)
    with torch.no_grad():
        temperature = sb / (1e-3 + log_alpha.exp()).item()
        weight = log_beta.exp().item() * temperature / si
        # (bayes + weight * infill + prior + bias) / temperature equals logits() when bias = T * (prior + c) - prior
        bias = temperature * (prior + torch.cat([torch.zeros(1, dtype=torch.float64), c])) - prior
        bias = bias - bias[0]
    return Calibration(temperature=temperature, bias=bias.tolist(), weight=weight)


def calibrate_combined(checkpoint: str, texts: list[str], labels: list[int], samples: int = 8, seed: int = 0,
                       progress: bool = True, options: LoadOptions | None = None,
                       ) -> tuple[Calibration, dict[str, float]]:
    """The combined reading's fit on validation texts, and whether it earns its place: accuracies of the Bayes,
    infill and combined readings, each with its own calibration fitted on one half and measured on the other
    (two folds), so the comparison is not flattered by fitting on the texts it is read on."""
    bayes_clf = load_classifier(checkpoint, None, options=options)
    bayes_clf = load_classifier(checkpoint, "elbo" if bayes_clf.models.kind == MASKED else "ar", options=options)
    infill_clf = load_classifier(checkpoint, "infill", options=options)
    bayes = [p.log_likelihood for p in score_matrix(bayes_clf, texts, samples, seed, progress)]
    infill = [p.log_likelihood for p in score_matrix(infill_clf, texts, samples, seed, progress)]
    prior = bayes_clf.log_prior
    folds = [list(range(0, len(texts), 2)), list(range(1, len(texts), 2))]
    correct = {"bayes": 0, "infill": 0, "combined": 0}

    def decide(ll: list[float], cal: Calibration) -> int:
        logits = torch.tensor(ll) + torch.tensor(prior) + torch.tensor(cal.bias)
        return int(logits.argmax())

    for fit_on, read_on in (folds, folds[::-1]):
        pick = lambda rows, idx: [rows[i] for i in idx]  # noqa: E731
        y_fit = pick(labels, fit_on)
        for name, rows in (("bayes", bayes), ("infill", infill)):
            fake = [Prediction("", [], [], ll, [], [], 0, 0, 0.0) for ll in pick(rows, fit_on)]
            cal = _bias_only(fake, y_fit, prior)
            correct[name] += sum(decide(rows[i], cal) == labels[i] for i in read_on)
        cal = fit_combined(pick(bayes, fit_on), pick(infill, fit_on), y_fit, prior)
        correct["combined"] += sum(decide([b + cal.weight * v for b, v in zip(bayes[i], infill[i], strict=True)],
                                          cal) == labels[i] for i in read_on)
    fitted = fit_combined(bayes, infill, labels, prior)
    return fitted, {name: hits / len(texts) for name, hits in correct.items()}


def _bias_only(predictions: list[Prediction], labels: list[int], log_prior: list[float]) -> Calibration:
    """fit_calibration without the out-of-distribution reference (which needs token counts): the combined fit with
    no second reading, so one optimiser serves every calibration."""
    ll = [p.log_likelihood for p in predictions]
    fitted = fit_combined(ll, [[0.0] * len(row) for row in ll], labels, log_prior)
    return Calibration(temperature=fitted.temperature, bias=fitted.bias)
