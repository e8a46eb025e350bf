"""The benchmark suite runs end to end (tiny models) and reports consistent, measured figures."""

import json
import math
import statistics

import pytest

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


def test_evidence_by_rate_strata_average_to_the_elbo_and_report_each_stratum(tmp_path):
    import torch

    from bench import evidence_by_rate as ebr
    from textdiff_core.classify import Classifier
    from textdiff_core.likelihood import elbo_scores
    from textdiff_core.models import load_model

    lm = load_model("tiny")
    clf = Classifier(lm, ["negative", "positive"], ["negative review:", "positive review:"])
    text = "a dull film with a plot that goes nowhere"
    terms = ebr.rate_terms(clf, text, grid=4, samples=64, generator=torch.Generator().manual_seed(0))
    assert terms.shape == (4, 2)
    # the strata's mean is a stratified ELBO estimate: it agrees with the scorer's own (many samples)
    ref = elbo_scores(lm, text, clf.prompts, samples=512, generator=torch.Generator().manual_seed(1))
    for c in range(2):
        assert abs(terms[:, c].mean().item() - ref[c].nll) < 4 * ref[c].nll_se + 0.02 * ref[c].nll

    fake = torch.tensor([[[5.0, 6.0], [1.0, 3.0]], [[6.0, 5.0], [4.0, 2.0]], [[5.0, 5.5], [3.0, 1.0]]])  # [N, G, C]
    result = ebr.summarise(fake, [0, 1, 0])
    rows = {r["rates"]: r for r in result["rows"]}
    assert [r["accuracy"] for r in result["rows"][:2]] == pytest.approx([1.0, 2 / 3])
    assert rows["all (the ELBO)"]["accuracy"] == pytest.approx(2 / 3)  # means 3/4.5 (right), 5/3.5, 4/3.25 (wrong)
    assert abs(rows["0.000-0.500"]["evidence_mean"] - (1.0 + 1.0 + 0.5) / 3) < 1e-6
    assert "| all (the ELBO) | 66.7% |" in ebr.table(result)
