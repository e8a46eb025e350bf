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
    assert 6 * se < 0.02 * exact  # power: a 2% bias (one token in 50 weighted wrongly) fails


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
    # power: a sample variance of 60 draws has a log standard error of about sqrt(2 / 59), a ratio of two sqrt(4 / 59);
    # unshared noise (a true ratio of 1) would have to come out more than 4 of those low to pass
    assert math.log(0.25) < -4 * math.sqrt(4 / 59)


class LeftNeighbourToy(torch.nn.Module):
    """A masked LM that knows the text: logit 2 for each position's true token, 10 when its left neighbour is
    visible, 0 for every other token. Its conditionals depend on what is masked, so the orders of unmasking give
    different likelihoods, and weighting the masked tokens other than by L/k changes the expectation."""

    def __init__(self, true_ids: torch.Tensor, mask_id: int, vocab: int) -> None:
        super().__init__()
        self.config = type("C", (), {"max_position_embeddings": 64, "is_decoder": False})()
        self.true_ids, self.mask_id, self.vocab = true_ids, mask_id, vocab
        self.unused = torch.nn.Parameter(torch.zeros(1))  # LoadedModel reads its device from a parameter

    def forward(self, input_ids, attention_mask=None):
        rows, length = input_ids.shape
        left_visible = torch.ones(rows, length, dtype=torch.bool)
        left_visible[:, 1:] = input_ids[:, :-1] != self.mask_id
        logits = torch.zeros(rows, length, self.vocab)
        true = self.true_ids[:length].expand(rows, -1)
        logits.scatter_(2, true[..., None], (2.0 + 8.0 * left_visible.float())[..., None])
        return type("O", (), {"logits": logits})()


def test_elbo_expectation_equals_the_any_order_average_and_bounds_the_mixture():
    """For L=3 the ELBO's expectation is E_order[-log p_order(x)] (exactly computable), which is >= -log p(x) of the
    mixture over orders; on a model whose orders disagree, the estimator's mean resolves both."""
    tok = load_model("tiny").tokenizer
    text = "good fun film"
    ids = encode(tok, [text])
    positions = ids.target_mask[0].nonzero()[:, 0].tolist()
    assert len(positions) == 3
    mask_id = tok.mask_token_id
    lm = LoadedModel(LeftNeighbourToy(ids.input_ids[0], mask_id, len(tok)), tok, "masked", "toy")

    def masked_nll(masked: tuple[int, ...]) -> float:
        """sum over the masked positions of -log p(x_j | the others visible)"""
        x = ids.input_ids.clone()
        x[0, [positions[j] for j in masked]] = mask_id
        logp = torch.log_softmax(lm.model(input_ids=x).logits[0], -1)
        return -sum(logp[positions[j], ids.input_ids[0, positions[j]]].item() for j in masked)

    orders = []
    with torch.no_grad():
        for order in itertools.permutations(range(3)):  # unmask in this order; p(x_j | already unmasked)
            logp, hidden = 0.0, set(range(3))
            for j in order:
                x = ids.input_ids.clone()
                x[0, [positions[h] for h in hidden]] = mask_id
                logp += torch.log_softmax(lm.model(input_ids=x).logits[0, positions[j]], -1)[
                    ids.input_ids[0, positions[j]]].item()
                hidden.discard(j)
            orders.append(logp)
        # the count form: k ~ U{1..L}, a uniform k-subset masked, weight L/k; and the unweighted mean (the seed's)
        subsets = {k: list(itertools.combinations(range(3), k)) for k in (1, 2, 3)}
        elbo = sum(3 / k * sum(masked_nll(m) for m in subsets[k]) / len(subsets[k]) for k in (1, 2, 3)) / 3
        unweighted = sum(sum(masked_nll(m) for m in subsets[k]) / len(subsets[k]) for k in (1, 2, 3)) / 3
    any_order = -sum(orders) / len(orders)
    mixture = -math.log(sum(math.exp(v) for v in orders) / len(orders))
    assert math.isclose(elbo, any_order, rel_tol=1e-6), "the identity the test rests on"

    g = torch.Generator().manual_seed(4)
    est = torch.tensor([elbo_scores(lm, text, [None], samples=6, generator=g)[0].nll for _ in range(150)])
    mean, se = est.mean().item(), est.std().item() / math.sqrt(len(est))
    assert abs(mean - any_order) < 4 * se + 1e-4, (mean, any_order, se)
    assert mean - 4 * se > mixture, (mean, mixture, se)
    # power: the tolerance is under a third of the distance to what a mis-weighted estimator (masked tokens not
    # weighted by L/k) or one of the mixture would give
    assert 6 * se < min(abs(unweighted - any_order), any_order - mixture), (se, unweighted, any_order, mixture)


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
