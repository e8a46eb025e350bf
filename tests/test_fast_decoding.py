"""Fast diffusion decoding on the tiny models. The approximate block KV cache: its passes are the model's own
computation, a refresh after every pass makes cached decoding exact, the stale keys and values are a real
approximation whose work is counted, families without a cache fall back and say so. The entropy-bounded strategy,
and tokens drawn only where positions are committed."""

import json
import math

import pytest
import torch

from tests.lookalikes import make
from textdiff_core.decoding import DecodeConfig, draw_tokens, generate, generate_samples
from textdiff_core.denoisers import denoise_logits
from textdiff_core.errors import TextdiffError
from textdiff_core.kv_cache import BlockCache, supports
from textdiff_core.models import load_model
from textdiff_core.settings import LoadOptions
from train_cli import main

PROMPT = "The movie was"

TRUSTED = LoadOptions(trust_remote_code=True)  # the look-alikes ship their modeling code


@pytest.fixture(scope="module")
def masked():
    lm = load_model("tiny", device="cpu")
    with torch.no_grad(), torch.random.fork_rng():  # larger weights than the init, so that the tokens depend on context
        torch.manual_seed(1)
        for p in lm.model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return lm


def _ids(lm, text="the movie was [MASK] [MASK] and [MASK] , a [MASK] [MASK] film [MASK] ."):
    return torch.tensor([lm.tokenizer(text).input_ids])


def test_a_full_pass_is_the_models_own_forward(masked):
    ids = _ids(masked)
    everywhere = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        ours = BlockCache(masked).full(ids, everywhere)
        theirs = denoise_logits(masked, ids, torch.ones_like(ids), everywhere)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_a_partial_pass_on_a_fresh_cache_is_exact_and_on_a_stale_one_approximate(masked):
    ids = _ids(masked)
    mask = masked.tokenizer.mask_token_id
    block = [i for i, t in enumerate(ids[0].tolist()) if t == mask][:3]
    where = torch.zeros_like(ids, dtype=torch.bool)
    where[0, block] = True
    queries = list(range(block[0], block[-1] + 1))
    with torch.no_grad():
        cache = BlockCache(masked)
        full = cache.full(ids, where)
        assert torch.allclose(cache.partial(ids, queries, where), full, atol=1e-5)
        later = ids.clone()
        later[0, -3] = masked.tokenizer.convert_tokens_to_ids("great")  # a commit outside the queries
        exact = denoise_logits(masked, later, torch.ones_like(later), where)
        stale = cache.partial(later, queries, where)
        assert not torch.allclose(stale, exact, atol=1e-3), "the outside change is unseen: keys and values are stale"
        assert torch.allclose(stale, full, atol=1e-5)
        everything = list(range(ids.shape[1]))  # every key and value fresh: the stale cache must not matter
        assert torch.allclose(cache.partial(later, everything, where), exact, atol=1e-5)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_refresh_after_every_pass_commits_exactly_what_the_uncached_decoder_does(masked, cache, temperature):
    settings = dict(strategy="topk", k=2, block_size=6, temperature=temperature, seed=3)
    plain = generate(masked, PROMPT, 18, **settings)
    cached = generate(masked, PROMPT, 18, cache=cache, cache_refresh=1, **settings)
    assert cached.frames[-1].ids == plain.frames[-1].ids
    assert cached.forward_passes == plain.forward_passes and not any(f.cached for f in cached.frames)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cached_steps_run_only_their_queries_and_are_marked(masked, cache):
    length, block = 18, 6
    trace = generate(masked, PROMPT, length, strategy="topk", k=2, block_size=block, cache=cache)
    width = len(trace.frames[0].ids) + 2  # [CLS] and [SEP] around the body
    n_blocks, per_block = length // block, block // 2
    assert trace.forward_passes == n_blocks * per_block
    assert sum(f.cached for f in trace.frames) == n_blocks * (per_block - 1)
    prompt = len(trace.frames[0].ids) - length + 1  # [CLS] + prompt tokens: where the first block starts
    if cache == "dual":  # a full pass to open each block, then the block alone
        expected = n_blocks * width + n_blocks * (per_block - 1) * block
    else:  # prefix: the block and everything after it
        expected = n_blocks * width + sum((per_block - 1) * (width - (prompt + b * block)) for b in range(n_blocks))
    assert trace.frames[-1].tokens_processed == expected
    assert trace.settings["cache"] == cache and "cache_fallback" not in trace.settings
    uncached = generate(masked, PROMPT, length, strategy="topk", k=2, block_size=block)
    assert trace.frames[-1].tokens_processed < uncached.frames[-1].tokens_processed


def test_a_family_without_a_cache_falls_back_to_full_passes_and_says_so(tmp_path, capsys):
    path = make("mdlm", tmp_path / "mdlm")
    lm = load_model(str(path), options=TRUSTED)
    assert not supports(lm)
    trace = generate(lm, "the movie", 6, strategy="topk", k=2, cache="dual")
    assert "cannot take a block KV cache" in trace.settings["cache_fallback"]
    assert not any(f.cached for f in trace.frames)
    assert main(["--trust-remote-code", "generate", "--checkpoint", str(path), "--prompt", "the movie", "--length",
                 "6", "--cache", "dual"]) == 0
    assert "cannot take a block KV cache" in capsys.readouterr().err


def _reference_nucleus(row: torch.Tensor, top_p: float) -> set[int]:
    """The nucleus by the definition: sort the whole vocabulary, keep tokens until the mass before them reaches p."""
    ordered, order = row.softmax(-1).sort(descending=True)
    before = ordered.cumsum(-1) - ordered
    return set(order[(before < top_p) | (torch.arange(len(row)) == 0)].tolist())


def test_top_p_draws_exactly_from_the_nucleus_also_when_it_reaches_past_the_candidates():
    from textdiff_core.decoding import NUCLEUS_CANDIDATES, sample_rows, score_positions

    vocab = 5000
    assert NUCLEUS_CANDIDATES[-1] < vocab, "the test needs a vocabulary larger than the candidates"
    gen = torch.Generator().manual_seed(0)
    peaked = torch.full((vocab,), -10.0)
    peaked[[7, 11, 13]] = torch.tensor([4.0, 3.5, 3.0])  # nucleus: a few tokens
    middle = torch.randn(vocab, generator=gen) * 2.5  # nucleus: between the first and second candidates
    flat = torch.zeros(vocab)  # nucleus: 90% of the vocabulary, far past the candidates
    logits = torch.stack([peaked, middle, flat])
    config = DecodeConfig(temperature=1.0, top_p=0.9)
    nuclei = [_reference_nucleus(row, 0.9) for row in logits]
    assert len(nuclei[0]) <= 3 and NUCLEUS_CANDIDATES[0] < len(nuclei[1]) < NUCLEUS_CANDIDATES[-1] < len(nuclei[2])
    scores = score_positions(logits, config)
    drawn = [set(), set(), set()]
    for seed in range(200):
        tokens, _ = sample_rows(scores, [0, 1, 2], config, torch.Generator().manual_seed(seed))
        for row, token in enumerate(tokens.tolist()):
            drawn[row].add(token)
    assert all(d <= n for d, n in zip(drawn, nuclei, strict=True)), "a token outside its nucleus was drawn"
    assert drawn[0] == nuclei[0], "every token of a small nucleus is drawn"
    ranks = [row.argsort(descending=True).argsort() for row in logits]  # draws must not stop at the candidates
    assert max(int(ranks[1][t]) for t in drawn[1]) >= NUCLEUS_CANDIDATES[0]
    assert max(int(ranks[2][t]) for t in drawn[2]) >= NUCLEUS_CANDIDATES[-1]


def test_entropy_bound_commits_the_most_certain_positions_within_the_bound():
    logits = torch.tensor([[8.0, 0, 0, 0], [0.0, 0, 0, 0], [5.0, 0, 0, 0], [2.0, 0, 0, 0]])
    draw = draw_tokens(logits, DecodeConfig())
    entropy = draw.entropy.tolist()
    assert sorted(range(4), key=entropy.__getitem__) == [0, 2, 3, 1]
    from textdiff_core.decoding import _choose

    def chosen(bound):
        return _choose(DecodeConfig(strategy="entropy-bound", entropy_bound=bound), draw, 1, None, list(range(4)))

    assert chosen(0.0) == [0], "at least one, the most certain"
    assert chosen(entropy[0] + entropy[2] + 1e-6) == [0, 2]
    assert chosen(entropy[0] + entropy[2] - 1e-6) == [0]
    assert chosen(100.0) == [0, 1, 2, 3]


def test_entropy_bound_sets_its_own_pace(masked):
    tight = generate(masked, PROMPT, 16, strategy="entropy-bound", entropy_bound=0.0)
    loose = generate(masked, PROMPT, 16, strategy="entropy-bound", entropy_bound=1e6)
    assert tight.forward_passes == 16 and loose.forward_passes == 1
    with pytest.raises(TextdiffError, match="entropy bound"):
        DecodeConfig(entropy_bound=-1).validate()


def test_no_cache_means_no_cache_of_any_kind(masked, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["generate", "--checkpoint", "tiny", "--prompt", PROMPT, "--length", "8", "--steps", "8",
                 "--no-cache", "--temperature", "1", "--top-p", "0.9", "--json", str(out)]) == 0
    settings = json.loads(out.read_text())["settings"]
    assert settings["cache"] == "none" and not settings["reuse"] and not settings["use_cache"]
    assert settings["temperature"] == 1 and settings["top_p"] == 0.9 and settings["top_k"] is None
    frames = json.loads(out.read_text())["frames"]
    assert frames[-1]["forward_passes"] == 8 and all(len(f["committed"]) == 1 for f in frames[1:])
    assert main(["generate", "--checkpoint", "tiny", "--prompt", PROMPT, "--length", "8", "--no-cache",
                 "--cache", "dual"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_a_budget_of_a_pass_per_token_commits_exactly_one_token_per_pass(masked):
    """Even where every position clears the threshold: a smaller budget lets them all through at once."""
    paced = generate(masked, PROMPT, 8, strategy="confidence", threshold=1e-6, steps=8, temperature=1.0, seed=0)
    assert paced.forward_passes == 8 and all(len(f.committed) == 1 for f in paced.frames[1:])
    eager = generate(masked, PROMPT, 8, strategy="confidence", threshold=1e-6, steps=4, temperature=1.0, seed=0)
    assert eager.forward_passes == 1, "below one pass per token, everything over the threshold commits"


def test_tokens_are_drawn_only_where_positions_are_committed(masked, monkeypatch):
    """Sampling (top-p sorts the whole vocabulary) happens at committed positions only, not at every open one."""
    rows = []
    real = torch.multinomial
    monkeypatch.setattr(torch, "multinomial", lambda p, *a, **k: rows.append(p.shape[0]) or real(p, *a, **k))
    trace = generate(masked, PROMPT, 16, strategy="topk", k=2, temperature=1.0, top_p=0.9, seed=0)
    assert rows == [2] * 8 and trace.forward_passes == 8


def _writes_end(lm):
    """A copy of ``lm`` whose every prediction is its end-of-text token ([SEP]) by a wide margin."""
    import copy

    other = copy.copy(lm)
    other.model = copy.deepcopy(lm.model)
    head = other.model.get_output_embeddings()
    with torch.no_grad():
        head.bias[lm.tokenizer.sep_token_id] += 100.0
    return other


def test_diffusion_text_ends_where_the_model_commits_end_of_text(masked):
    lm = _writes_end(masked)
    ended = generate(lm, PROMPT, 12, strategy="topk", k=1, block_size=4, stop_at_end=True)
    assert ended.ended_at == ended.frames[1].committed[0] >= ended.n_prompt_tokens
    assert ended.forward_passes == 1, "everything after the first end-of-text is closed, not decoded"
    assert ended.generated_text == "" and ended.final_text.lower() == PROMPT.lower()
    assert ended.settings["stop_at_end"] and ended.n_decoded == 1
    plain = generate(lm, PROMPT, 12, strategy="topk", k=1)  # textdiff's own models: [SEP] is never written
    assert plain.ended_at is None and plain.forward_passes == 12 and "[SEP]" not in plain.final_text
    assert not plain.settings["stop_at_end"]


def test_left_to_right_stops_at_end_of_text():
    causal = load_model("tiny-ar", device="cpu")
    lm = _writes_end(causal)
    ended = generate(lm, PROMPT, 12, strategy="ar", stop_at_end=True)
    assert ended.forward_passes == 1 and ended.ended_at == ended.n_prompt_tokens and ended.generated_text == ""
    assert generate(lm, PROMPT, 12, strategy="ar").forward_passes == 12


def test_word_entropy_separates_a_loop_from_varied_text():
    from textdiff_core.evaluate import word_entropy

    assert word_entropy("good " * 100) == 0.0
    assert word_entropy("it ' s a great movie . " * 30) == pytest.approx(math.log(5))  # it, s, a, great, movie
    assert word_entropy("it's a great movie. " * 30) == pytest.approx(math.log(4))
    varied = " ".join(f"w{i}" for i in range(100))
    assert word_entropy(varied) == pytest.approx(math.log(100))
    assert word_entropy(varied + " extra words beyond the first hundred") == pytest.approx(math.log(100))
    assert word_entropy("") == 0.0 and word_entropy("...!!") == 0.0


@pytest.mark.parametrize("settings", [
    dict(strategy="topk", k=2, temperature=1.0, top_p=0.9),
    dict(strategy="confidence", threshold=0.5, steps=6, block_size=6, cache="dual", temperature=1.0),
    dict(strategy="entropy-bound", entropy_bound=3.0, block_size=6, cache="prefix", temperature=1.0, top_k=50),
    dict(strategy="topk", k=3, cfg_scale=2.0),
])
def test_a_batch_of_samples_decodes_each_as_it_would_alone(masked, settings):
    batch = generate_samples(masked, PROMPT, 12, samples=3, seed=7, **settings)
    assert [t.seed for t in batch] == [7, 8, 9]
    for trace in batch:
        alone = generate(masked, PROMPT, 12, seed=trace.seed, **settings)
        assert trace.frames[-1].ids == alone.frames[-1].ids and trace.forward_passes == alone.forward_passes
        assert [f.committed for f in trace.frames] == [f.committed for f in alone.frames]
    if settings.get("temperature"):
        assert len({t.generated_text for t in batch}) > 1, "distinct seeds, distinct samples"


def test_a_batch_of_left_to_right_samples_decodes_each_as_it_would_alone():
    causal = load_model("tiny-ar", device="cpu")
    batch = generate_samples(causal, PROMPT, 10, samples=3, seed=4, strategy="ar", temperature=1.0)
    for trace in batch:
        alone = generate(causal, PROMPT, 10, seed=trace.seed, strategy="ar", temperature=1.0)
        assert trace.frames[-1].ids == alone.frames[-1].ids and trace.forward_passes == alone.forward_passes == 10
    ended = generate_samples(_writes_end(causal), PROMPT, 10, samples=2, strategy="ar", stop_at_end=True)
    assert all(t.forward_passes == 1 and t.generated_text == "" for t in ended)


@pytest.mark.parametrize("checkpoint, strategy", [("tiny", "topk"), ("tiny-ar", "ar")])
def test_cli_num_samples_prints_and_records_every_sample(checkpoint, strategy, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["generate", "--checkpoint", checkpoint, "--strategy", strategy, "--prompt", PROMPT, "--length",
                 "6", "--num-samples", "3", "--temperature", "1", "--seed", "5", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [s["seed"] for s in data["samples"]] == [5, 6, 7] and data["seed"] == 5
    assert data["samples"][0]["generated_text"] == data["generated_text"]
    printed = capsys.readouterr().out
    assert all(s["final_text"] in printed for s in data["samples"]) and "samples/s" in printed
    assert main(["generate", "--checkpoint", checkpoint, "--strategy", strategy, "--num-samples", "0"]) == 2


def test_the_decoding_benchmark_measures_every_variant_and_batch_throughput():
    from textdiff_core.decoding import default_config
    from textdiff_core.experiments.decoding_bench import parse_args, run

    result = run(parse_args(["--diffusion-model", "tiny", "--ar-model", "tiny-ar", "--reference", "tiny-ar",
                             "--lengths", "8", "--seeds", "0,1", "--strategies", "topk,entropy-bound",
                             "--batch-sizes", "1,2"]))
    rows = {r["method"]: r for r in result["summary"]}
    assert {"default (blocks, dual cache)", "default, prefix cache", "default, no KV cache", "one per pass, no cache",
            "entropy-bound", "topk", "ar (KV cache)", "ar (no cache)"} <= set(rows)
    default = next(r for r in result["runs"] if r["method"] == "default (blocks, dual cache)")
    expected = default_config("masked", length=8)
    assert all(default["settings"][k] == getattr(expected, k) for k in ("strategy", "steps", "block_size", "cache"))
    assert rows["default (blocks, dual cache)"]["tokens_processed"] < rows["default, no KV cache"]["tokens_processed"]
    assert rows["one per pass, no cache"]["forward_passes"] == 8 and rows["ar (KV cache)"]["forward_passes"] == 8
    assert all(0 <= r["word_entropy_median"] and 0 <= r["distinct_2"] <= 1 for r in rows.values())
    assert [(b["model"], b["samples"]) for b in result["batch"]] == [("diffusion", 1), ("diffusion", 2), ("ar", 1),
                                                                   ("ar", 2)]
    assert all(b["samples_per_s"] > 0 for b in result["batch"])


def test_the_decoding_checks_run_end_to_end_on_the_tiny_pair(tmp_path, capsys):
    from bench.decoding_checks import main as checks

    out = tmp_path / "checks.json"
    assert checks(["--diffusion-model", "tiny", "--ar-model", "tiny-ar", "--length", "8", "--seeds", "0",
                   "--batch-sizes", "1,2", "--prompts", "The movie|A film", "--block-size", "4",
                   "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    summary = result["timing"]["summary"]
    assert summary["default (blocks, dual cache)"]["tokens_processed"] < \
        summary["default, no KV cache"]["tokens_processed"]
    for cache in ("prefix", "dual"):
        row = result["agreement"][cache]
        assert len(row["by_position"]) == 2 and row["cached_passes"] > 0 and 0 <= row["pass_by_pass"] <= 1
    assert "pass by pass" in capsys.readouterr().out
