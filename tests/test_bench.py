"""The benchmark suite runs end to end (tiny models) and reports consistent, measured figures."""

import json
import math
import statistics

import pytest
import torch

from bench import run as bench


def test_quick_benchmark_writes_every_section(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert "NaN" not in out.read_text(), "strict JSON: a single seed's missing interval is null, not NaN"
    assert str(bench.ROOT) not in out.read_text(), "the shipped models by repository-relative paths"
    assert result["hardware"]["device"] in ("cpu", "cuda") and result["hardware"]["torch_threads"] >= 1

    peak = result["matmul"]["gflops"]
    assert peak > 0 and math.isclose(peak, 2 * 256**3 / result["matmul"]["best_s"] / 1e9)
    scoring = result["scoring"]
    assert scoring["gflop_per_pass"] > 0 and scoring["copies_per_pass"] == 32
    per_round = scoring["fraction_per_round"]  # against a peak re-measured before each timed pass
    assert len(per_round) == 5 and all(0 < r for r in per_round)
    assert math.isclose(scoring["fraction_of_matmul_peak"], statistics.median(per_round))

    methods = {r["method"]: r for r in result["classification"]}
    assert set(methods) == {"elbo", "elbo (adaptive, z=2)", "mlm-loss (15% mask x5)", "pll", "ar (exact)", "zero-shot",
                            "infill (class word masked)", "ar infill (class word after the text)"}
    for r in methods.values():
        assert 0 < r["latency_median_s"] <= r["latency_p95_s"] and r["reviews_per_s"] > 0
        assert 0 <= r["accuracy"] <= 1 and r["reviews"] == (1 if r["method"] == "pll" else 4)
    assert methods["ar (exact)"]["forward_passes_mean"] == 2  # one exact pass per class
    assert methods["elbo"]["forward_passes_mean"] == 2 * 2  # samples x classes, one window
    assert methods["infill (class word masked)"]["forward_passes_mean"] == 1  # every class from one pass

    decoders = {r["method"]: r for r in result["decoding"]["summary"]}
    assert decoders["ar (KV cache)"]["forward_passes"] == 8 and decoders["topk"]["forward_passes"] == 2
    assert {r["objective"] for r in result["training"]} == {"diffusion", "ar"}
    assert all(r["tokens_per_s"] > 0 for r in result["training"])
    assert "| elbo |" in bench.table(result)


class MaskCountToy(torch.nn.Module):
    """A masked LM whose -log p of every masked token is log(V - 1 + e^s), s = 12 + (masks in the row) + 2 [the
    positive prompt]: the ELBO's integrand then rises with the masking rate, so every rate stratum has its own exact
    expectation (an untrained model's integrand is flat in the rate and cannot tell strata apart)."""

    def __init__(self, tokenizer, positive_id: int) -> None:
        super().__init__()
        self.config = type("C", (), {"max_position_embeddings": 64, "is_decoder": False})()
        self.vocab, self.mask_id, self.sink, self.positive_id = len(tokenizer), tokenizer.mask_token_id, \
            tokenizer.unk_token_id, positive_id
        self.unused = torch.nn.Parameter(torch.zeros(1))  # LoadedModel reads its device from a parameter

    def forward(self, input_ids, attention_mask=None):
        s = 12.0 + (input_ids == self.mask_id).sum(1) + 2.0 * (input_ids == self.positive_id).any(1)
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.sink] = s[:, None].float()
        return type("O", (), {"logits": logits})()


def test_evidence_by_rate_strata_average_to_the_elbo_and_report_each_stratum(tmp_path):
    from bench import evidence_by_rate as ebr
    from textdiff_core.classify import Classifier
    from textdiff_core.likelihood import elbo_scores
    from textdiff_core.models import LoadedModel, load_model

    tok = load_model("tiny").tokenizer
    prompts = ["negative review:", "positive review:"]
    positive_id = tok(prompts[1], add_special_tokens=False).input_ids[0]
    lm = LoadedModel(MaskCountToy(tok, positive_id), tok, "masked", "toy")
    clf = Classifier(lm, ["negative", "positive"], prompts)
    text = "a dull film with a plot that goes nowhere"
    n = len(tok(text, add_special_tokens=False).input_ids)
    grid, runs = 4, 40

    # Exact: k masks give the term n * log(V - 1 + e^s) (L/k weight x k tokens); stratum g draws u in [g/G, (g+1)/G)
    # and k = 1 + floor(u n), i.e. k with probability G x |[(k-1)/n, k/n) & [g/G, (g+1)/G)|.
    def term(k: int, c: int) -> float:
        return n * math.log(len(tok) - 1 + math.exp(12.0 + k + 2.0 * c))

    exact = torch.tensor([[sum(grid * max(0.0, min(k / n, (g + 1) / grid) - max((k - 1) / n, g / grid)) * term(k, c)
                                for k in range(1, n + 1)) for c in range(2)] for g in range(grid)], dtype=torch.float64)
    assert torch.allclose(exact.mean(0), torch.tensor([sum(term(k, c) for k in range(1, n + 1)) / n
                                                       for c in range(2)], dtype=torch.float64)), "strata tile [0, 1)"

    g = torch.Generator().manual_seed(0)
    draws = torch.stack([ebr.rate_terms(clf, text, grid=grid, samples=4, generator=g) for _ in range(runs)]).double()
    assert draws.shape == (runs, grid, 2)
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(runs)
    tolerance = 4 * se + 1e-3 * exact
    assert ((mean - exact).abs() < tolerance).all(), (mean, exact, se)
    # power: each stratum's tolerance is under half the gap to its neighbours' expectations (about n^2 / G nats), so
    # a stratum drawn at another stratum's rates, or a column scored under the other class's prompt, fails
    gaps = exact.diff(dim=0).abs().min()
    assert tolerance.max() < 0.5 * gaps and tolerance.max() < 0.5 * (exact[:, 1] - exact[:, 0]).abs().min(), \
        (tolerance, gaps)

    # the strata's mean is the ELBO: the scorer's own estimate has the same expectation
    ref = elbo_scores(lm, text, prompts, samples=256, generator=torch.Generator().manual_seed(1))
    for c in range(2):
        assert abs(ref[c].nll - exact[:, c].mean().item()) < 4 * ref[c].nll_se + 1e-3 * ref[c].nll, (ref[c], exact)
    assert 4 * max(r.nll_se for r in ref) < 0.5 * abs(exact[:, 1].mean() - exact[:, 0].mean())

    fake = torch.tensor([[[5.0, 6.0], [1.0, 3.0]], [[6.0, 5.0], [4.0, 2.0]], [[5.0, 5.5], [3.0, 1.0]]])  # [N, G, C]
    result = ebr.summarise(fake, [0, 1, 0])
    rows = {r["rates"]: r for r in result["rows"]}
    assert [r["accuracy"] for r in result["rows"][:2]] == pytest.approx([1.0, 2 / 3])
    assert rows["all (the ELBO)"]["accuracy"] == pytest.approx(2 / 3)  # means 3/4.5 (right), 5/3.5, 4/3.25 (wrong)
    assert abs(rows["0.000-0.500"]["evidence_mean"] - (1.0 + 1.0 + 0.5) / 3) < 1e-6
    assert "| all (the ELBO) | 66.7% |" in ebr.table(result)
