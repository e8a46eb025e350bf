"""Likelihoods: the count-form ELBO estimator, shared noise, and the exact left-to-right score."""

import itertools
import math

import torch

from textdiff_core.likelihood import ar_scores, draw_noise, elbo_scores, masked_rows_nll, pll_scores
from textdiff_core.models import LoadedModel, load_model
from textdiff_core.tokens import encode


def test_noise_counts_are_stratified_and_pairs_are_antithetic():
    g = torch.Generator().manual_seed(0)
    noise = draw_noise(40, 8, g, antithetic=True)
    counts = noise.masks.sum(1)
    assert torch.allclose(noise.weights, 40 / counts.float())
    firsts = counts[0::2].sort().values
    assert torch.equal(torch.floor((firsts - 1) * 4 / 40).long(), torch.arange(4)), "one count per stratum"
    for a, b in zip(noise.masks[0::2], noise.masks[1::2], strict=True):
        assert (a | b).all() and (a & b).sum() == 1, "the partner masks what the first left visible"


class PositionTable(torch.nn.Module):
    """A masked LM whose prediction at position j is softmax(table[j]), whatever the input: exact likelihood known."""

    def __init__(self, vocab: int, length: int = 64) -> None:
        super().__init__()
        self.config = type("C", (), {"max_position_embeddings": length, "is_decoder": False})()
        self.table = torch.nn.Parameter(torch.randn(length, vocab, generator=torch.Generator().manual_seed(1)))

    def forward(self, input_ids, attention_mask=None):
        return type("O", (), {"logits": self.table[: input_ids.shape[1]].expand(input_ids.shape[0], -1, -1)})()


def test_elbo_is_unbiased_for_a_factorised_model():
    tok = load_model("tiny").tokenizer
    toy = PositionTable(len(tok))
    lm = LoadedModel(toy, tok, "masked", "toy")
    text = "a short text about a film"
    batch = encode(tok, [text], ["positive review:"])
    logp = torch.log_softmax(toy.table, -1)[: batch.input_ids.shape[1]]
    exact = -logp.gather(1, batch.input_ids[0][:, None])[:, 0][batch.target_mask[0]].sum().item()
    g = torch.Generator().manual_seed(2)
    estimates = [elbo_scores(lm, text, ["positive review:"], samples=8, generator=g)[0].nll for _ in range(300)]
    mean = sum(estimates) / len(estimates)
    se = torch.tensor(estimates).std().item() / math.sqrt(len(estimates))
    assert abs(mean - exact) < 4 * se + 1e-6, (mean, exact, se)


def test_exact_ar_score_equals_the_chain_rule_by_hand():
    lm = load_model("tiny-ar")
    text = "the plot was thin but the acting was fine"
    score = ar_scores(lm, text, ["negative review:"])[0]
    ids = encode(lm.tokenizer, [text], ["negative review:"])
    full = ids.input_ids[0].tolist()
    first_text = ids.target_mask[0].nonzero()[0].item()
    by_hand = 0.0
    with torch.no_grad():
        for i in range(first_text, first_text + score.n_tokens):
            logits = lm.model(input_ids=torch.tensor([full[:i]])).logits[0, -1]
            by_hand -= torch.log_softmax(logits, -1)[full[i]].item()
    assert math.isclose(score.nll, by_hand, rel_tol=1e-4)
    assert math.isclose(sum(score.token_nll), score.nll, rel_tol=1e-5) and score.windows == 1


def test_long_texts_are_scored_in_windows_not_truncated():
    lm = load_model("tiny-ar")
    text = " ".join(["word"] * 300)
    score = ar_scores(lm, text, [None], max_length=64)[0]
    assert score.n_tokens == 300 and score.windows == 5
    lm_m = load_model("tiny")
    s2 = elbo_scores(lm_m, text, [None], samples=2, max_length=64)[0]
    assert s2.n_tokens == 300 and s2.windows == 5 and len(s2.token_nll) == 300


def test_shared_noise_lowers_the_variance_of_the_class_difference():
    lm = load_model("tiny")
    text = "an enjoyable film with a clever script and warm performances throughout"
    prompts = ["negative review:", "positive review:"]
    g = torch.Generator().manual_seed(3)
    diffs = {True: [], False: []}
    for shared in (True, False):
        for _ in range(60):
            a, b = elbo_scores(lm, text, prompts, samples=4, generator=g, shared_noise=shared)
            diffs[shared].append(a.nll - b.nll)
    var = {k: torch.tensor(v).var().item() for k, v in diffs.items()}
    assert var[True] < 0.25 * var[False], var


def test_elbo_expectation_equals_the_any_order_average_and_bounds_the_mixture():
    """For L=3 the ELBO's expectation is E_order[-log p_order(x)] (exactly computable), which is >= -log p(x)."""
    lm = load_model("tiny")
    text = "good fun film"
    ids = encode(lm.tokenizer, [text])
    positions = ids.target_mask[0].nonzero()[:, 0].tolist()
    assert len(positions) == 3
    mask_id = lm.tokenizer.mask_token_id
    orders = []
    with torch.no_grad():
        for order in itertools.permutations(range(3)):
            x = ids.input_ids.clone()
            x[0, positions] = mask_id
            logp = 0.0
            for j in order:  # unmask in this order; p(x_j | already unmasked)
                logits = lm.model(input_ids=x).logits[0, positions[j]]
                logp += torch.log_softmax(logits, -1)[ids.input_ids[0, positions[j]]].item()
                x[0, positions[j]] = ids.input_ids[0, positions[j]]
            orders.append(logp)
    any_order = -sum(orders) / len(orders)
    mixture = -math.log(sum(math.exp(v) for v in orders) / len(orders))
    g = torch.Generator().manual_seed(4)
    est = [elbo_scores(lm, text, [None], samples=6, generator=g)[0].nll for _ in range(150)]
    mean = sum(est) / len(est)
    se = torch.tensor(est).std().item() / math.sqrt(len(est))
    assert abs(mean - any_order) < 4 * se + 1e-4, (mean, any_order, se)
    assert any_order >= mixture


def test_batching_every_window_prefix_and_sample_together_changes_no_number():
    """All rows of a text in one padded forward pass give the same scores as one row per pass."""
    lm = load_model("tiny")
    text = " ".join(["the film was long and the music was loud but the cast was good"] * 12)  # several windows
    prompts = ["negative review:", "positive review:", "neutral review:"]
    for scorer in (
        lambda **kw: elbo_scores(lm, text, prompts, samples=4, generator=torch.Generator().manual_seed(3),
                                 max_length=48, **kw),
        lambda **kw: elbo_scores(lm, text, prompts, samples=3, generator=torch.Generator().manual_seed(3),
                                 max_length=48, shared_noise=False, **kw),
    ):
        one_row, batched = scorer(max_tokens=1), scorer(max_tokens=100_000)
        assert one_row[0].windows > 2
        for a, b in zip(one_row, batched, strict=True):
            assert torch.allclose(a.contributions, b.contributions, atol=1e-4)
    short = "the acting was fine but the plot was thin"
    pll = pll_scores(lm, short, prompts[:2], max_length=12)  # windows of 9 text tokens, rows batched
    ids = pll[0].token_ids
    for c, prompt in enumerate(prompts[:2]):
        prefix = lm.tokenizer(prompt, add_special_tokens=False).input_ids
        by_hand = []
        for lo in range(0, len(ids), 12 - 2 - len(prefix)):
            window = ids[lo : lo + 12 - 2 - len(prefix)]
            for i in range(len(window)):
                mask = torch.zeros(len(window), dtype=torch.bool)
                mask[i] = True
                row = masked_rows_nll(lm, [window], [prefix], [mask], max_tokens=1)[0]
                assert (row[~mask] == 0).all()
                by_hand.append(row[i].item())
        assert pll[c].windows > 1
        assert torch.allclose(torch.tensor(pll[c].token_nll), torch.tensor(by_hand), atol=1e-4)
