import math

import pytest
import torch

from textdiff_core.errors import TextdiffError
from textdiff_core.noise import apply_mask, rate_bins, sample_mask_rates, weighted_nll
from textdiff_core.settings import NoiseConfig
from textdiff_core.tokens import EncodedBatch
from textdiff_core.train import micro_batch_loss

MASK = 3


def _maskable(batch: int, length: int, prefix: int = 4, pad_from: int | None = None) -> torch.Tensor:
    m = torch.ones(batch, length, dtype=torch.bool)
    m[:, : prefix + 1] = False  # [CLS] + protected prompt
    m[:, -1] = False  # [SEP]
    if pad_from is not None:
        m[::2, pad_from:] = False  # padding on every other row
    return m


def test_masking_never_touches_protected_positions():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (64, 40), generator=g)
    maskable = _maskable(64, 40, pad_from=25)
    for rates in (torch.ones(64), torch.rand(64, generator=g)):
        noisy, masked = apply_mask(ids, maskable, rates, MASK, g)
        assert not masked[~maskable].any()
        assert torch.equal(noisy[~maskable], ids[~maskable])
        assert torch.equal(noisy == MASK, masked)
    noisy, masked = apply_mask(ids, maskable, torch.ones(64), MASK, g)
    assert torch.equal(masked, maskable), "t = 1 masks every maskable token"


@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 1.0])
def test_masked_fraction_matches_t_in_expectation(t):
    g = torch.Generator().manual_seed(1)
    n, length = 400, 100
    maskable = _maskable(n, length)
    _, masked = apply_mask(torch.randint(10, 1000, (n, length)), maskable, torch.full((n,), t), MASK, g)
    frac = masked.sum().item() / maskable.sum().item()
    se = math.sqrt(t * (1 - t) / maskable.sum().item()) + 1e-9
    assert abs(frac - t) < 4 * se + 1e-9
    assert 6 * se < 0.2 * t  # power: a rate off by a fifth of itself fails


def test_each_sequence_is_masked_at_its_own_rate():
    """The tiny-diffusion bug guard: the noise level attached to a sequence agrees with the mask it gets."""
    g = torch.Generator().manual_seed(2)
    config = NoiseConfig(t_sampling="iid")
    rates = sample_mask_rates(32, config, g)
    maskable = torch.ones(32, 2000, dtype=torch.bool)
    _, masked = apply_mask(torch.randint(10, 1000, (32, 2000)), maskable, rates, MASK, g)
    realized = masked.float().mean(1)
    assert (realized - rates).abs().max() < 0.05
    assert torch.corrcoef(torch.stack([realized, rates]))[0, 1] > 0.99


def test_rate_sampling_modes():
    g = torch.Generator().manual_seed(3)
    eps = 1e-3
    for mode in ("iid", "antithetic", "stratified"):
        t = sample_mask_rates(16, NoiseConfig(t_sampling=mode, eps=eps), g)
        assert t.shape == (16,) and (t >= eps).all() and (t <= 1).all()
    anti = sample_mask_rates(16, NoiseConfig(t_sampling="antithetic", eps=eps), g).sort().values
    assert torch.allclose(anti + anti.flip(0), torch.full((16,), 2 * eps + (1 - eps)), atol=1e-6)
    strat = sample_mask_rates(16, NoiseConfig(t_sampling="stratified", eps=0.0 + 1e-9), g).sort().values
    assert torch.equal(torch.floor(strat * 16).long(), torch.arange(16)), "one rate in each sixteenth of [0, 1)"
    levels = sample_mask_rates(8, NoiseConfig(masking_rates="levels", levels=(0.25, 0.5)), g)
    assert len(set(levels.tolist())) == 1 and levels[0].item() in (0.25, 0.5)


def test_stratified_rates_have_lower_variance_of_batch_mean():
    g = torch.Generator().manual_seed(4)
    means = {m: torch.stack([sample_mask_rates(8, NoiseConfig(t_sampling=m), g).mean() for _ in range(2000)])
             for m in ("iid", "stratified")}
    assert means["stratified"].var() < 0.2 * means["iid"].var()


@pytest.mark.parametrize("mode", ["iid", "stratified"])
def test_t_beta_draws_beta_a_1_rates(mode):
    """t ~ Beta(a, 1): mean a / (a + 1) and P(t <= x) = x^a; a = 1 is the uniform schedule, draw for draw."""
    g = torch.Generator().manual_seed(5)
    t = torch.cat([sample_mask_rates(16, NoiseConfig(t_sampling=mode, eps=1e-9, t_beta=2.0), g) for _ in range(2000)])
    below = (t <= 0.5).float()
    # standard errors as if the draws were independent: stratified draws vary less, so these are upper bounds
    se_mean, se_below = t.std().item() / math.sqrt(len(t)), below.std().item() / math.sqrt(len(t))
    assert abs(t.mean().item() - 2 / 3) < 4 * se_mean
    assert abs(below.mean().item() - 0.25) < 4 * se_below
    # power: Beta(1.5, 1) (mean 0.6, P(t <= 0.5) = 0.354) would fail both by a wide margin
    assert 6 * se_mean < 2 / 3 - 0.6 and 6 * se_below < 0.354 - 0.25
    a = sample_mask_rates(16, NoiseConfig(t_sampling=mode), torch.Generator().manual_seed(6))
    b = sample_mask_rates(16, NoiseConfig(t_sampling=mode, t_beta=1.0), torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    if mode == "stratified":  # still one draw per stratum, now strata of equal probability under Beta(2, 1)
        s = sample_mask_rates(16, NoiseConfig(t_sampling=mode, eps=1e-9, t_beta=2.0), g).sort().values
        assert torch.equal(torch.floor(s**2 * 16).long(), torch.arange(16))


def test_bad_noise_settings_raise_one_line_errors():
    with pytest.raises(TextdiffError, match="unknown masking rates"):
        NoiseConfig(masking_rates="cosine-ish")
    with pytest.raises(TextdiffError, match="levels"):
        NoiseConfig(masking_rates="levels", levels=(0.0, 0.5))
    with pytest.raises(TextdiffError, match="eps"):
        NoiseConfig(eps=1.5)
    with pytest.raises(TextdiffError, match="t_beta"):
        NoiseConfig(t_beta=0.0)
    with pytest.raises(TextdiffError, match="continuous masking rates only"):
        NoiseConfig(masking_rates="levels", t_beta=2.0)
    with pytest.raises(TextdiffError, match="bound"):
        NoiseConfig(weighting="elbo", t_beta=2.0)


def test_rate_bins():
    assert rate_bins(torch.tensor([0.001, 0.1, 0.15, 0.95, 1.0])).tolist() == [0, 0, 1, 9, 9]


class FactorisedToy(torch.nn.Module):
    """p(x_i | anything) = softmax(table[i]): a model whose exact likelihood is known, sum_i log q_i(x_i)."""

    def __init__(self, length: int, vocab: int) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(length, vocab, generator=torch.Generator().manual_seed(5)))

    def forward(self, input_ids, attention_mask, positions):
        return self.table.expand(input_ids.shape[0], -1, -1)[positions]


@pytest.mark.parametrize("t_sampling", ["iid", "stratified", "antithetic"])
def test_elbo_weighted_loss_is_unbiased_for_a_factorised_model(t_sampling):
    length, vocab, batch = 12, 7, 8
    toy = FactorisedToy(length, vocab)
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(4, vocab, (batch, length), generator=g)
    maskable = torch.ones(batch, length, dtype=torch.bool)
    maskable[:, 0] = False
    enc = EncodedBatch(ids, torch.ones_like(ids), maskable, [False] * batch)
    logp = torch.log_softmax(toy.table, -1).detach()
    exact = -(logp.gather(1, ids.T).T * maskable).sum() / maskable.sum()  # exact NLL per token
    config = NoiseConfig(t_sampling=t_sampling, eps=1e-3, weighting="elbo")
    estimates = []
    with torch.no_grad():
        for _ in range(3000):
            num, den, _, _, _ = micro_batch_loss(toy, enc, "diffusion", config, MASK, g)
            estimates.append((num / den).item())
    est = torch.tensor(estimates)
    se = est.std() / math.sqrt(len(est))
    assert abs(est.mean() - exact) < 4 * se, (est.mean().item(), exact.item(), se.item())
    assert se < 0.05 * exact  # the test has power: a 10% bias would fail it


def test_mean_weighting_is_the_plain_mean_over_masked_tokens():
    nll = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    masked = torch.tensor([[True, True, False, False]])
    maskable = torch.tensor([[True, True, True, False]])
    num, den = weighted_nll(nll, masked, torch.tensor([0.5]), maskable, "mean")
    assert (num / den).item() == pytest.approx(1.5)
    num, den = weighted_nll(nll, masked, torch.tensor([0.5]), maskable, "elbo")
    assert (num / den).item() == pytest.approx((1 + 2) / 0.5 / 3)
