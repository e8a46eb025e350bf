"""The class as one more token: joint training's masking and orders, the infill reading and its evidence."""

import math

import pytest
import torch

from textdiff_core.classify import Classifier
from textdiff_core.errors import TextdiffError
from textdiff_core.likelihood import infill_occlusion, infill_scores
from textdiff_core.models import load_model
from textdiff_core.settings import NoiseConfig
from textdiff_core.tokens import class_slot, collate, tokenize_texts
from textdiff_core.train import JointLabel, micro_batch_loss
from train_cli import main

PROMPTS = ["negative review:", "positive review:"]
TEXT = "a tender , funny film with a great cast , though the ending drags on and on . " * 3


@pytest.fixture(scope="module", params=["tiny", "tiny-ar"])
def lm(request):
    torch.manual_seed(0)
    model = load_model(request.param)
    model.model.eval()
    return model


def test_class_slot_finds_the_one_differing_token():
    tok = load_model("tiny").tokenizer
    slot = class_slot(tok, PROMPTS)
    assert slot.index == 0
    assert slot.token_ids == tok.convert_tokens_to_ids(["negative", "positive"])
    assert class_slot(tok, ["a dull film:", "a bright film:"]).index == 1
    with pytest.raises(TextdiffError, match="exactly one token"):
        class_slot(tok, ["very negative review:", "positive review:"])
    with pytest.raises(TextdiffError, match="exactly one token"):
        class_slot(tok, ["negative review:", "negative review:"])


def test_infill_posteriors_are_distributions_one_pass_per_window(lm):
    slot = class_slot(lm.tokenizer, PROMPTS)
    read = infill_scores(lm, TEXT, slot, max_length=24)
    assert read.log_posteriors.shape == (len(read.windows), 2) and len(read.windows) > 2
    assert torch.allclose(read.log_posteriors.exp().sum(1), torch.ones(len(read.windows)), atol=1e-5)
    assert read.token_ids == tokenize_texts(lm.tokenizer, [TEXT])[0]
    prediction = Classifier(lm, ["negative", "positive"], PROMPTS, "infill", max_length=24).classify(TEXT)
    assert sum(prediction.posterior) == pytest.approx(1.0, abs=1e-6)
    assert prediction.forward_passes == len(read.windows)


def test_windows_combine_as_a_product_of_experts(lm):
    """log P(c | x) = sum_w log P(c | x_w) - (W - 1) log P(c), normalised: checked against a hand computation."""
    prior = [math.log(0.3), math.log(0.7)]
    clf = Classifier(lm, ["negative", "positive"], PROMPTS, "infill", log_prior=prior, max_length=24)
    read = infill_scores(lm, TEXT, clf.slot, max_length=24)
    windows = read.log_posteriors.tolist()
    by_hand = [sum(w[c] for w in windows) - (len(windows) - 1) * prior[c] for c in range(2)]
    norm = math.log(sum(math.exp(v) for v in by_hand))
    expected = [math.exp(v - norm) for v in by_hand]
    assert clf.classify(TEXT).posterior == pytest.approx(expected, rel=1e-5)


def test_the_slot_layouts_of_both_kinds():
    """Masked: [CLS] [MASK] review : text [SEP], logits at the [MASK]. Left to right: [CLS] text [SEP] negative ...,
    logits at the [SEP] that predicts the class word."""
    from textdiff_core.likelihood import _infill_rows

    for name in ("tiny", "tiny-ar"):
        lm = load_model(name)
        slot = class_slot(lm.tokenizer, PROMPTS)
        text = tokenize_texts(lm.tokenizer, ["a fine film"])[0]
        batch, positions = _infill_rows(lm, slot, [text])
        row, where = batch.input_ids[0].tolist(), positions[0].nonzero().item()
        if name == "tiny":
            assert row == [101, lm.tokenizer.mask_token_id, *slot.prompt_ids[0][1:], *text, 102]
            assert where == 1
        else:
            assert row == [101, *text, 102, *slot.prompt_ids[0], 102]
            assert where == 1 + len(text) and row[where + 1] == slot.token_ids[0]


def test_occlusion_evidence_equals_a_per_token_loop(lm):
    slot = class_slot(lm.tokenizer, PROMPTS)
    window = tokenize_texts(lm.tokenizer, ["a tender , funny film"])[0]
    full, delta = infill_occlusion(lm, window, slot, max_tokens=40)  # several batches
    assert delta.shape == (len(window), 2)
    intact = infill_scores(lm, lm.tokenizer.decode(window), slot).log_posteriors[0]
    assert torch.allclose(full, intact, atol=1e-5)
    for i in range(len(window)):
        if lm.kind == "masked":
            occluded = window[:i] + [lm.tokenizer.mask_token_id] + window[i + 1:]
        else:
            occluded = window[:i] + window[i + 1:]
        from textdiff_core.likelihood import _infill_rows
        from textdiff_core.models import logits_at

        batch, positions = _infill_rows(lm, slot, [occluded])
        with torch.no_grad():
            logits = logits_at(lm.model, batch.input_ids, batch.attention_mask, positions)
        one = torch.log_softmax(logits[:, slot.token_ids], -1)[0]
        assert torch.allclose(delta[i], full - one, atol=1e-5), i


class Recorder(torch.nn.Module):
    """Uniform logits; remembers what it was shown."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab, self.inputs = vocab, []

    def forward(self, input_ids, attention_mask, positions):
        self.inputs.append((input_ids.clone(), positions.clone()))
        return torch.zeros(int(positions.sum()), self.vocab, requires_grad=True)


@pytest.mark.parametrize("prob", [0.5, 0.2, None])
def test_joint_masking_masks_the_class_word_at_its_probability_and_never_the_rest_of_the_prompt(prob):
    tok = load_model("tiny").tokenizer
    slot = class_slot(tok, PROMPTS)
    text = tokenize_texts(tok, ["a tender and funny film"])[0]
    rows = 64
    batch = collate(tok, [text] * rows, [slot.prompt_ids[r % 2] for r in range(rows)], 32)
    label = JointLabel(torch.full((rows,), 1 + slot.index), prob, 16.0)
    toy = Recorder(len(tok))
    g = torch.Generator().manual_seed(1)
    masked_label, trials, prompt_rest = 0, 0, []
    noise = NoiseConfig()
    for _ in range(40):
        micro_batch_loss(toy, batch, "diffusion", noise, tok.mask_token_id, g, label)
        noisy, _ = toy.inputs[-1]
        masked_label += int((noisy[:, 1 + slot.index] == tok.mask_token_id).sum())
        trials += rows
        prompt_rest.append(noisy[:, 2:1 + len(slot.prompt_ids[0])])
    expected = prob if prob is not None else 0.5  # t ~ U(eps, 1): the class word is masked with chance E[t] ~ 1/2
    se = math.sqrt(expected * (1 - expected) / trials)
    assert abs(masked_label / trials - expected) < 4 * se, (masked_label / trials, expected)
    assert 6 * se < 0.1, se  # power: a masking probability 10 points off fails
    rest = torch.cat(prompt_rest)
    assert (rest == torch.tensor(slot.prompt_ids[0][1:])).all()  # "review :" is never masked
    assert (noisy[:, 0] == tok.cls_token_id).all()


def test_the_class_word_loss_counts_as_label_weight_text_tokens():
    tok = load_model("tiny").tokenizer
    slot = class_slot(tok, PROMPTS)
    text = tokenize_texts(tok, ["a film"])[0]
    batch = collate(tok, [text] * 4, [slot.prompt_ids[0]] * 4, 16)
    toy = Recorder(len(tok))
    g = torch.Generator().manual_seed(0)
    label = JointLabel(torch.full((4,), 1), 1.0, 16.0)  # always masked
    num, den, _, _, stats = micro_batch_loss(toy, batch, "diffusion", NoiseConfig(), tok.mask_token_id, g, label)
    _, positions = toy.inputs[-1]
    text_masked = int(positions[:, 2:].sum())
    assert den.item() == pytest.approx(text_masked + 16 * 4)
    assert num.item() == pytest.approx(math.log(len(tok)) * (text_masked + 16 * 4), rel=1e-5)
    assert stats[1].item() == 4


def test_the_twin_draws_both_orders_with_equal_probability(tmp_path, monkeypatch):
    import textdiff_core.train as train_mod

    orders = []
    real = train_mod.collate

    def spy(tokenizer, texts, prefixes, max_length, suffixes=None):
        if suffixes is not None:
            orders.extend(s is not None for s in suffixes)
            for p, s in zip(prefixes, suffixes, strict=True):
                assert (len(p) == 0) == (s is not None)  # the class prompt goes before or after, never both
        return real(tokenizer, texts, prefixes, max_length, suffixes)

    monkeypatch.setattr(train_mod, "collate", spy)
    assert main(["train", "--objective", "ar", "--model", "tiny-ar", "--conditioning", "joint", "--data", "imdb",
                 "--max-samples", "16", "--max-length", "24", "--batch-size", "16", "--steps", "2", "--no-progress",
                 "--save-every", "0", "--out", str(tmp_path / "ar")]) == 0
    assert len(orders) == 32 and 0 < sum(orders) < 32, "the training loop draws an order per row"

    # The draw itself, many times over (no training): 400 micro-batches of 16 rows of both classes.
    monkeypatch.setattr(train_mod, "collate", real)
    tokenizer = load_model("tiny-ar").tokenizer
    config = train_mod.TrainConfig(out=str(tmp_path / "x"), objective="ar", model="tiny-ar", conditioning="joint",
                                   max_length=24, batch_size=16)
    data = type("Data", (), {"texts": [f"review number {i} of the film" for i in range(64)],
                             "labels": [i % 2 for i in range(64)]})()
    inputs = train_mod._inputs(tokenizer, data, ["negative review:", "positive review:"], config)
    after, classes = [], []
    for step in range(400):
        batch, joint, _ = train_mod._micro_batch(inputs, tokenizer, config, step, 0, 0, 1, torch.device("cpu"))
        after.append(joint.positions >= 0)
        classes.append(torch.tensor([inputs.labels[i] for i in
                                     train_mod.batch_indices(64, 16, step, config.seed)]))
    after, classes = torch.stack(after).float(), torch.stack(classes)
    n = after.numel()
    share = after.mean().item()
    se = math.sqrt(share * (1 - share) / n)
    assert abs(share - 0.5) < 4 * se, (share, se)
    # power: an order drawn 60:40 lies 10 points off, beyond the tolerance by more than two standard errors
    assert 4 * se + 2 * se < 0.10, se
    # one coin per row, not per micro-batch: neighbours in a batch agree half the time (a batch-wide coin: always)
    agree = (after[:, 1:] == after[:, :-1]).float()
    agree_se = agree.std().item() / math.sqrt(agree.numel())
    assert abs(agree.mean().item() - 0.5) < 4 * agree_se and 6 * agree_se < 0.10, (agree.mean(), agree_se)
    # and not tied to the class: the share after the text is the same for both classes
    by_class = [after[classes == c] for c in (0, 1)]
    diff = (by_class[1].mean() - by_class[0].mean()).item()
    diff_se = math.sqrt(sum(b.var().item() / b.numel() for b in by_class))
    assert abs(diff) < 4 * diff_se and 6 * diff_se < 0.10, (diff, diff_se)


def test_a_joint_checkpoint_records_its_recipe_and_reads_both_ways(tmp_path):
    import json

    out = tmp_path / "joint"
    assert main(["train", "--model", "tiny", "--conditioning", "joint", "--quick-test", "--no-progress",
                 "--label-mask-prob", "t", "--label-weight", "4", "--eval-every", "5", "--eval-size", "4",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "textdiff.json").read_text())
    assert meta["conditioning"] == "joint" and meta["class_prompt"] == "{label} review:"
    assert meta["joint"]["label_mask_prob"] is None and meta["joint"]["label_weight"] == 4.0
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"val_accuracy", "val_accuracy_infill", "label_loss", "label_accuracy"} <= set(last)
    for method in ("infill", "elbo"):
        assert main(["classify", "--checkpoint", str(out), "--method", method, "--samples", "2", "a fine film"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--conditioning", "joint", "--class-prompt", "{label} stuff:", "--data", "FILE"], "exactly one token"),
    (["--conditioning", "joint", "--label-mask-prob", "0"], "label-mask-prob"),
    (["--conditioning", "joint", "--label-weight", "-1"], "label-weight"),
])
def test_bad_joint_settings_fail_in_one_line(tmp_path, capsys, args, message):
    csv = tmp_path / "d.csv"
    csv.write_text("text,label\n" + "".join(f"text {i},{'very bad' if i % 2 else 'good'}\n" for i in range(20)))
    args = [str(csv) if a == "FILE" else a for a in args]
    code = main(["train", "--model", "tiny", "--quick-test", "--no-progress", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_infill_needs_one_model_with_a_class_word(tmp_path, capsys):
    assert main(["train", "--model", "tiny", "--conditioning", "per-class", "--quick-test", "--no-progress",
                 "--out", str(tmp_path / "pc")]) == 0
    assert main(["classify", "--checkpoint", str(tmp_path / "pc"), "--method", "infill", "a film"]) == 2
    assert "one model with a class prompt" in capsys.readouterr().err
    assert main(["classify", "--checkpoint", "tiny", "--method", "infill", "--classes", "very bad,good",
                 "a film"]) == 2
    assert "exactly one token" in capsys.readouterr().err


def test_fit_combined_recovers_the_weight_of_the_infill_reading():
    from textdiff_core.classify import fit_combined

    g = torch.Generator().manual_seed(3)
    n = 4000
    bayes, infill = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    truth = bayes + 2.0 * infill + torch.tensor([0.0, 0.7])
    labels = torch.multinomial(torch.softmax(truth, 1), 1, generator=g)[:, 0].tolist()
    fitted = fit_combined(bayes.tolist(), infill.tolist(), labels, [math.log(0.5)] * 2)
    assert fitted.weight == pytest.approx(2.0, rel=0.15)
    assert fitted.bias[1] == pytest.approx(0.7, abs=0.15) and fitted.temperature == pytest.approx(1.0, rel=0.15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_combined_stays_finite_when_the_bayes_reading_adds_nothing(seed):
    """ELBO sums of whole reviews that say nothing beyond the infill reading: the best fit gives Bayes no weight
    (an infinite temperature in the calibration's form), which once diverged to NaN. It must stay finite and read
    as well as the infill reading alone."""
    from textdiff_core.classify import fit_combined

    g = torch.Generator().manual_seed(seed)
    n = 150
    labels = torch.randint(0, 2, (n,), generator=g)
    bayes = -3000 + 30 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    margin = 2.5 * (2 * labels - 1) + 2 * torch.randn(n, generator=g, dtype=torch.float64)
    infill = torch.stack([-torch.nn.functional.softplus(margin), -torch.nn.functional.softplus(-margin)], 1)
    prior = [math.log(0.5)] * 2

    def log_loss(b, i, cal):
        logits = (b + cal.weight * i + torch.tensor(prior, dtype=torch.float64)
                  + torch.tensor(cal.bias, dtype=torch.float64)) / cal.temperature
        return torch.nn.functional.cross_entropy(logits, labels).item()

    combined = fit_combined(bayes.tolist(), infill.tolist(), labels.tolist(), prior)
    alone = fit_combined(infill.tolist(), torch.zeros_like(infill).tolist(), labels.tolist(), prior)
    assert all(math.isfinite(v) for v in (combined.weight, combined.temperature, *combined.bias))
    assert log_loss(bayes, infill, combined) <= log_loss(infill, torch.zeros_like(infill), alone) + 1e-3


def test_calibrate_combined_records_two_fold_accuracies_and_classify_applies_the_weight(tmp_path, capsys):
    import json

    from textdiff_core.classify import load_classifier

    out = tmp_path / "joint"
    assert main(["train", "--model", "tiny-ar", "--objective", "ar", "--conditioning", "joint", "--quick-test",
                 "--no-progress", "--out", str(out)]) == 0
    assert main(["calibrate", "--checkpoint", str(out), "--method", "combined", "--limit", "16",
                 "--no-progress"]) == 0
    assert "two folds" in capsys.readouterr().out
    fitted = json.loads((out / "calibration.json").read_text())["combined"]
    assert set(fitted["cross_fitted_accuracy"]) == {"bayes", "infill", "combined"} and fitted["n"] == 16
    combined = load_classifier(str(out), "combined")
    assert combined.calibration.weight == pytest.approx(fitted["weight"])
    text = "a tender and funny film"
    bayes = load_classifier(str(out), "ar").classify(text).log_likelihood
    infill = load_classifier(str(out), "infill").classify(text).log_likelihood
    got = combined.classify(text).log_likelihood
    assert got == pytest.approx([b + fitted["weight"] * i for b, i in zip(bayes, infill, strict=True)], rel=1e-5)
