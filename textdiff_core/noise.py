"""The forward (noising) process of masked diffusion: how much to mask, which tokens, and how to weight the loss.

Absorbing-state diffusion, masking rate linear in time (MDLM, Sahoo et al. 2024): at time t in (0, 1] every
*maskable* token is replaced by [MASK] independently with probability t. The models here take no time input
(MDLM shows absorbing diffusion does not need one), so the only signal the model gets about the noise level is the
mask itself, which by construction agrees with t. Everything else (prompts, special tokens, padding) is protected.

Two ways to pick t (``masking_rates``, the ``--masking-rates`` flag):
  continuous  t ~ U(eps, 1) per sequence, drawn iid, antithetic (u, 1-u) or stratified across the batch;
              optionally t ~ Beta(t_beta, 1) instead (density proportional to t^(t_beta-1): more high rates)
  levels      the RoBERTa variable-masking recipe: one rate for the whole batch, drawn from a fixed list (0.1, ..., 1.0)
Two ways to weight the training loss:
  mean  the plain mean of -log p over masked tokens (the default, and the RoBERTa recipe's loss; not a bound)
  elbo  sum over masked tokens of -log p / t, divided by the number of maskable tokens: an unbiased estimate of the
        MDLM upper bound on -log p(x) per token, so it is a likelihood
Both are sums of proper log scores of the same conditionals p(x_i | x_t), so a model that fits the data optimises
either. They differ in emphasis and, plausibly, in gradient noise: the 1/t weight puts up to 1/eps = 1000 on the
few tokens masked at small t and weighs every t alike, while the mean gives every masked token one vote and so leans
on high mask rates, where the class prompt is the main evidence. Measured on IMDB (README, "Objectives and noise"),
the mean trains a class-conditional model that separates the classes sooner and has the lower ELBO perplexity.
Scoring (classification, perplexity) always uses the ELBO, whichever weighting trained the model.
"""

from __future__ import annotations

import torch

from textdiff_core.settings import (
    NoiseConfig,
)


def sample_mask_rates(batch_size: int, config: NoiseConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """One masking rate t per sequence, shape [batch_size], float32 on CPU."""
    if config.masking_rates == "levels":
        levels = torch.tensor(config.levels)
        pick = torch.randint(len(levels), (1,), generator=generator)
        return levels[pick].expand(batch_size).clone()
    if config.t_sampling == "iid":
        u = torch.rand(batch_size, generator=generator)
    elif config.t_sampling == "antithetic":
        half = torch.rand((batch_size + 1) // 2, generator=generator)
        u = torch.cat([half, 1.0 - half])[:batch_size]
        u = u[torch.randperm(batch_size, generator=generator)]
    else:  # stratified: one draw in each of batch_size equal strata of [0, 1), in random order
        u = (torch.arange(batch_size) + torch.rand(batch_size, generator=generator)) / batch_size
        u = u[torch.randperm(batch_size, generator=generator)]
    if config.t_beta != 1.0:  # inverse CDF of Beta(a, 1), monotone, so stratification carries over
        u = u ** (1.0 / config.t_beta)
    return config.eps + (1.0 - config.eps) * u


def apply_mask(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    rates: torch.Tensor,
    mask_token_id: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask each maskable token independently with its sequence's rate.

    Returns (noisy_ids, masked) where ``masked`` is True exactly where [MASK] was written. Positions where
    ``maskable`` is False (prompt, special tokens, padding) are never touched.
    """
    u = torch.rand(input_ids.shape, generator=generator).to(input_ids.device)
    masked = (u < rates.to(input_ids.device)[:, None]) & maskable
    noisy = input_ids.masked_fill(masked, mask_token_id)
    return noisy, masked


def weighted_nll(
    nll: torch.Tensor, masked: torch.Tensor, rates: torch.Tensor, maskable: torch.Tensor, weighting: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn per-position -log p (zero where not masked) into (numerator, denominator) of the batch loss.

    elbo: sum_b sum_{i masked} nll / t_b over sum_b L_b (maskable tokens) -- the per-token MDLM bound.
    mean: sum of nll over masked tokens over their count -- the RoBERTa variable-masking recipe's loss.
    Returning the two parts lets callers sum them across micro-batches and processes before dividing.
    """
    nll = nll * masked
    if weighting == "elbo":
        num = (nll.sum(dim=1) / rates.to(nll.device)).sum()
        den = maskable.sum().to(nll.dtype)
    else:
        num = nll.sum()
        den = masked.sum().to(nll.dtype)
    return num, den


def rate_bins(rates: torch.Tensor, n_bins: int = 10) -> torch.Tensor:
    """Index of the masking-level bin (0 = t in (0, 0.1], ..., 9 = t in (0.9, 1.0]) for each rate."""
    return (torch.ceil(rates * n_bins) - 1).clamp(0, n_bins - 1).long()


def bin_label(index: int, n_bins: int = 10) -> str:
    """Human-readable label of a masking-level bin, e.g. '0.9-1.0'."""
    return f"{index / n_bins:.1f}-{(index + 1) / n_bins:.1f}"
