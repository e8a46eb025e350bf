"""Decoding: every strategy finishes and keeps the prompt, seeds reproduce, a trained model commits several tokens per
pass, the KV cache and prediction reuse change cost but not output, infilling, class prompts, CLI, bad settings."""

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F

from textdiff_core import decoding
from textdiff_core.cli import build_parser, main
from textdiff_core.decoding import DecodeConfig, draw_tokens, generate, measure_confidence
from textdiff_core.errors import TextdiffError
from textdiff_core.models import load_model, logits_at, save_model
from textdiff_core.strategies.schedules import schedule_counts
from textdiff_core.tokens import encode, tokenize_texts

PROMPT = "The movie was"
SENTENCE = "the cat sat on the mat ."


@pytest.fixture(scope="module")
def masked():
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="module")
def causal():
    return load_model("tiny-ar", device="cpu")


@pytest.fixture(scope="module")
def trained():
    """The tiny masked model after learning one sentence by heart (80 steps of masked training, ~4 s)."""
    lm = load_model("tiny", device="cpu")
    batch = encode(lm.tokenizer, [SENTENCE] * 32)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(lm.model.parameters(), lr=3e-3)
    lm.model.train()
    for _ in range(80):
        rate = torch.rand(32, 1, generator=generator)
        mask = (torch.rand(batch.input_ids.shape, generator=generator) < rate) & batch.target_mask
        mask[:, 1] |= ~mask.any(1)
        noisy = batch.input_ids.masked_fill(mask, lm.tokenizer.mask_token_id)
        logits = logits_at(lm.model, noisy, batch.attention_mask, mask)
        loss = F.cross_entropy(logits, batch.input_ids[mask])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lm.model.eval()
    return lm


def _prompt_ids(lm, text=PROMPT):
    return tokenize_texts(lm.tokenizer, [text])[0]


DIFFUSION_CASES = [
    {"strategy": "confidence", "threshold": 0.5},
    {"strategy": "confidence", "confidence": "entropy", "threshold": 0.01},
    {"strategy": "topk", "k": 3, "confidence": "margin"},
    {"strategy": "schedule-random", "steps": 4, "schedule": "cosine"},
    {"strategy": "schedule-confidence", "steps": 5, "schedule": "exp"},
    {"strategy": "schedule-random", "steps": 20, "schedule": "linear"},
    {"strategy": "schedule-confidence", "steps": 4, "block_size": 4},
    {"strategy": "confidence", "block_size": 3, "temperature": 1.0, "top_p": 0.9},
    {"strategy": "confidence", "threshold": 0.99, "steps": 3},
    {"strategy": "confidence", "threshold": 0.99, "steps": 4, "block_size": 5},
]


@pytest.mark.parametrize("settings", DIFFUSION_CASES, ids=lambda s: "-".join(map(str, s.values())))
def test_every_diffusion_strategy_fills_every_mask_and_keeps_the_prompt(masked, settings):
    trace = generate(masked, PROMPT, 10, **settings)
    prompt = _prompt_ids(masked)
    assert trace.n_prompt_tokens == len(prompt) and trace.n_decoded == 10
    for frame in trace.frames:
        assert frame.ids[: len(prompt)] == prompt, "the prompt never changes"
        assert not any(frame.masked[: len(prompt)])
    last = trace.frames[-1]
    assert not any(last.masked) and masked.tokenizer.mask_token_id not in last.ids
    assert set(last.ids).isdisjoint(masked.tokenizer.all_special_ids), "special tokens are never generated"
    committed = [p for f in trace.frames for p in f.committed]
    assert sorted(committed) == list(range(len(prompt), len(prompt) + 10)), "each position committed exactly once"
    assert all(last.confidence[p] is not None and 0 <= last.prob[p] <= 1 for p in committed)
    assert trace.final_text.startswith("the movie was") and trace.generated_text
    passes = [f.forward_passes for f in trace.frames]
    assert passes == sorted(passes) and trace.forward_passes == passes[-1] >= 1


def test_left_to_right_fills_every_position_one_per_pass_and_keeps_the_prompt(causal):
    trace = generate(causal, PROMPT, 6, strategy="ar")
    prompt = _prompt_ids(causal)
    assert len(trace.frames) == 7 and trace.forward_passes == 6
    assert all(f.ids[: len(prompt)] == prompt for f in trace.frames)
    for i, frame in enumerate(trace.frames):  # not generated yet = masked
        assert frame.masked == [False] * (len(prompt) + i) + [True] * (6 - i)
        assert frame.committed == ([len(prompt) + i - 1] if i else [])


@pytest.mark.parametrize("strategy", ["confidence", "schedule-random", "ar"])
def test_greedy_is_deterministic_and_a_seed_reproduces_sampling(masked, causal, strategy):
    lm = causal if strategy == "ar" else masked
    greedy = [generate(lm, PROMPT, 8, strategy=strategy, steps=4, seed=s).frames[-1].ids for s in (0, 0, 1)]
    assert greedy[0] == greedy[1]
    if strategy != "schedule-random":  # there the seed also picks the positions, and so the contexts
        assert greedy[0] == greedy[2], "greedy decoding does not depend on the seed"
    sampled = [generate(lm, PROMPT, 8, strategy=strategy, steps=4, temperature=1.0, seed=s).frames[-1].ids
               for s in (7, 7, 8)]
    assert sampled[0] == sampled[1] and sampled[0] != sampled[2]
    rerun = generate(lm, PROMPT, 8, strategy=strategy, steps=4, temperature=1.0, seed=None)
    assert isinstance(rerun.seed, int), "a fresh seed is drawn and recorded"
    again = generate(lm, PROMPT, 8, strategy=strategy, steps=4, temperature=1.0, seed=rerun.seed)
    assert again.frames[-1].ids == rerun.frames[-1].ids


def test_confidence_decoding_commits_several_tokens_per_pass_on_a_trained_model(trained):
    for settings in ({"strategy": "confidence", "threshold": 0.9}, {"strategy": "topk", "k": 3}):
        trace = generate(trained, "", 7, **settings)
        assert trace.final_text == "the cat sat on the mat."
        assert trace.tokens_per_pass > 1, (settings, trace.forward_passes)
    threshold = generate(trained, "", 7, strategy="confidence", threshold=0.9)
    assert threshold.forward_passes < 7 and max(len(f.committed) for f in threshold.frames) > 1


def test_a_pass_budget_bounds_confidence_decoding_and_commits_the_most_confident_first(masked):
    free = generate(masked, PROMPT, 12, strategy="confidence", threshold=0.99)  # untrained: nothing reaches 0.99
    assert free.forward_passes == 12
    for budget in (1, 3, 5, 12):
        trace = generate(masked, PROMPT, 12, strategy="confidence", threshold=0.99, steps=budget)
        assert trace.forward_passes == budget and trace.n_decoded == 12
        counts = [len(f.committed) for f in trace.frames[1:]]
        assert sum(counts) == 12 and max(counts) - min(counts) <= 1, counts  # keeps an even pace
    first = generate(masked, PROMPT, 12, strategy="confidence", threshold=0.99, steps=3).frames[1]
    assert len(first.committed) == 4
    schedule = generate(masked, PROMPT, 12, strategy="schedule-confidence", steps=3).frames[1]
    assert first.committed == schedule.committed, "with nothing above the threshold it is low-confidence remasking"
    easy = generate(masked, PROMPT, 12, strategy="confidence", threshold=1e-9, steps=6)
    assert easy.forward_passes == 1, "the threshold still commits everything it can at once"


@pytest.mark.parametrize("strategy", ["topk", "confidence"])
def test_spacing_keeps_the_positions_of_one_pass_apart(masked, strategy):
    settings = {"strategy": strategy, "k": 3, "threshold": 0.99, "steps": 4}  # 12 positions, 3 per pass
    plain = generate(masked, PROMPT, 12, **settings)
    spaced = generate(masked, PROMPT, 12, spacing=3, **settings)
    assert spaced.forward_passes == plain.forward_passes == 4 and not any(spaced.frames[-1].masked)
    first = spaced.frames[1].committed
    assert len(first) == 3 and min(b - a for a, b in zip(first, first[1:], strict=False)) >= 3
    every = [p for f in spaced.frames for p in f.committed]
    assert sorted(every) == sorted(p for f in plain.frames for p in f.committed), "each position exactly once"


def test_kv_cache_gives_the_same_greedy_tokens_with_less_compute(causal):
    with warnings.catch_warnings():  # the cache goes by the name this transformers takes, not a deprecated one
        warnings.simplefilter("error", FutureWarning)
        cached = generate(causal, PROMPT, 12, strategy="ar", use_cache=True)
    recomputed = generate(causal, PROMPT, 12, strategy="ar", use_cache=False)
    assert cached.frames[-1].ids == recomputed.frames[-1].ids
    assert cached.forward_passes == recomputed.forward_passes == 12
    n = len(_prompt_ids(causal)) + 1  # [CLS] + prompt
    assert cached.frames[-1].tokens_processed == n + 11
    assert recomputed.frames[-1].tokens_processed == sum(n + i for i in range(12))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_reusing_an_unchanged_prediction_saves_passes_and_changes_nothing(masked, temperature):
    settings = {"strategy": "schedule-random", "steps": 12, "temperature": temperature, "seed": 3}
    reused = generate(masked, PROMPT, 5, reuse=True, **settings)
    fresh = generate(masked, PROMPT, 5, reuse=False, **settings)
    assert [f.ids for f in reused.frames] == [f.ids for f in fresh.frames]
    assert [f.confidence for f in reused.frames] == [f.confidence for f in fresh.frames]
    assert reused.forward_passes == 5 < fresh.forward_passes, "one pass per distinct state"
    assert any(f.reused for f in reused.frames) and not any(f.reused for f in fresh.frames)


def test_schedule_counts():
    for schedule in decoding.SCHEDULES:
        for n, steps in ((10, 4), (7, 7), (3, 9), (1, 1)):
            counts = schedule_counts(n, steps, schedule)
            assert len(counts) == steps and sum(counts) == n and min(counts) >= 0
    assert schedule_counts(4, 10, "linear").count(0) == 6
    assert schedule_counts(20, 5, "linear") == [4] * 5
    cosine, exp = schedule_counts(20, 5, "cosine"), schedule_counts(20, 5, "exp")
    assert cosine[0] < cosine[-1] and exp[0] > exp[-1], "cosine starts slow, exp starts fast"


def test_semi_autoregressive_blocks_finish_left_to_right(masked):
    trace = generate(masked, PROMPT, 9, strategy="confidence", block_size=3, threshold=0.01)
    start = trace.n_prompt_tokens
    block_of = {}
    for frame in trace.frames:
        for p in frame.committed:
            block_of[p] = frame.step
    finished = [max(block_of[p] for p in range(start + b * 3, start + b * 3 + 3)) for b in range(3)]
    begun = [min(block_of[p] for p in range(start + b * 3, start + b * 3 + 3)) for b in range(3)]
    assert finished[0] < begun[1] and finished[1] < begun[2]


def test_infilling_keeps_the_text_around_the_masks(masked):
    text = "The [MASK] [MASK] was wonderful, but the [MASK] dragged"
    given = _prompt_ids(masked, text)
    for length in (0, 3):
        trace = generate(masked, text, length, strategy="topk", k=2)
        final = trace.frames[-1].ids
        assert len(final) == len(given) + length
        for i, token in enumerate(given):
            if token == masked.tokenizer.mask_token_id:
                assert trace.decoded[i] and final[i] != token
            else:
                assert not trace.decoded[i] and final[i] == token
        assert "was wonderful, but the" in trace.final_text and "[MASK]" not in trace.final_text
        assert trace.n_decoded == 3 + length


def test_class_conditional_generation_puts_the_class_prompt_first(masked, causal):
    meta = {"classes": ["negative", "positive"], "class_prompt": "{label} review:"}
    for lm, strategy in ((masked, "confidence"), (causal, "ar")):
        conditional = dataclasses.replace(lm, meta=meta)
        trace = generate(conditional, PROMPT, 4, strategy=strategy, label="positive")
        head = _prompt_ids(lm, "positive review:")
        assert trace.n_class_tokens == len(head)
        assert all(f.ids[: len(head)] == head and f.ids[len(head) : trace.n_prompt_tokens] == _prompt_ids(lm)
                   for f in trace.frames)
        assert not any(trace.decoded[: trace.n_prompt_tokens])
        assert trace.label == "positive" and "positive review" not in trace.final_text
        with pytest.raises(TextdiffError, match="unknown label 'neutral'"):
            generate(conditional, PROMPT, 4, strategy=strategy, label="neutral")
    with pytest.raises(TextdiffError, match="not class-conditional"):
        generate(masked, PROMPT, 4, label="positive")


BAD = [
    ({"steps": 0, "strategy": "schedule-random"}, 4, "steps must be at least 1"),
    ({}, -1, "length must be >= 0"),
    ({"threshold": 0.0}, 4, "threshold"),
    ({"threshold": 1.5}, 4, "threshold"),
    ({"temperature": 0.0, "top_k": 5}, 4, "temperature 0"),
    ({"temperature": 0.0, "top_p": 0.9}, 4, "temperature 0"),
    ({"temperature": -1.0}, 4, "temperature"),
    ({"temperature": 1.0, "top_p": 0.0}, 4, "top-p"),
    ({"temperature": 1.0, "top_k": 0}, 4, "top-k"),
    ({"strategy": "topk", "k": 0}, 4, "k must be"),
    ({"strategy": "topk", "spacing": 0}, 4, "spacing must be"),
    ({"strategy": "beam"}, 4, "unknown strategy"),
    ({"schedule": "quadratic"}, 4, "unknown schedule"),
    ({"confidence": "vibes"}, 4, "unknown confidence"),
    ({"block_size": 0}, 4, "block size"),
    ({"strategy": "schedule-random", "steps": 2, "block_size": 1}, 4, "at least one step per block"),
    ({}, 0, "nothing to generate"),
    ({}, 600, "at most 512"),
]


@pytest.mark.parametrize("settings,length,message", BAD, ids=[b[2] for b in BAD])
def test_bad_settings_raise_one_line_errors(masked, settings, length, message):
    with pytest.raises(TextdiffError, match=message) as info:
        generate(masked, PROMPT, length, **settings)
    assert "\n" not in str(info.value)


def test_strategies_need_the_right_kind_of_model(masked, causal):
    with pytest.raises(TextdiffError, match="needs a diffusion"):
        generate(causal, PROMPT, 4, strategy="confidence")
    with pytest.raises(TextdiffError, match="needs a left-to-right"):
        generate(masked, PROMPT, 4, strategy="ar")
    with pytest.raises(TextdiffError, match="infilling"):
        generate(causal, "The [MASK] was", 4, strategy="ar")


def test_sampling_filters_and_confidence_measures():
    logits = torch.tensor([[4.0, 3.0, 1.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    greedy = draw_tokens(logits, DecodeConfig())
    assert greedy.tokens.tolist() == [0, 3]
    g = torch.Generator().manual_seed(0)
    for config in (DecodeConfig(temperature=5.0, top_k=1), DecodeConfig(temperature=5.0, top_p=1e-3)):
        assert all(draw_tokens(logits, config, g).tokens.tolist() == [0, 3] for _ in range(20))
    nucleus = {int(draw_tokens(logits[:1], DecodeConfig(temperature=1.0, top_p=0.8), g).tokens) for _ in range(200)}
    assert nucleus == {0, 1}, "p(0) = 0.71 < 0.8, so the nucleus is {0, 1}"
    banned = draw_tokens(logits, DecodeConfig(), banned=torch.tensor([0, 3]))
    assert banned.tokens.tolist() == [1, 1] and banned.prob[0] > greedy.prob[0]
    probs = logits.softmax(-1)
    top, margin = measure_confidence(probs, "max-prob"), measure_confidence(probs, "margin")
    entropy = measure_confidence(probs, "entropy")
    assert torch.all(margin <= top) and torch.all(entropy <= 0)
    assert torch.allclose(greedy.prob, top) and torch.allclose(greedy.confidence, top)


def test_cli_generate_prints_text_and_passes_and_writes_exports(tmp_path, capsys):
    out = tmp_path / "trace"
    assert main(["generate", "--checkpoint", "tiny", "--prompt", PROMPT, "--length", "6", "--strategy", "topk",
                 "--k", "2", "--json", f"{out}.json", "--gif", f"{out}.gif", "--html", f"{out}.html"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("the movie was")
    assert lines[1].startswith("3 forward passes,") and " s, 6 tokens (2.00 per pass)" in lines[1]
    assert all((tmp_path / f"trace.{ext}").stat().st_size > 0 for ext in ("json", "gif", "html"))
    assert main(["generate", "--checkpoint", "tiny-ar", "--strategy", "ar", "--length", "3", "--no-cache",
                 "--top-p", "0.9"]) == 0
    text, passes = capsys.readouterr().out.splitlines()
    assert passes.startswith("3 forward passes") and "strategy ar" in passes


def test_cli_label_uses_the_checkpoint_class_prompt(tmp_path, capsys, masked):
    meta = {"objective": "diffusion", "classes": ["negative", "positive"], "class_prompt": "{label} review:"}
    save_model(masked.model, masked.tokenizer, tmp_path / "cc", meta)
    assert main(["generate", "--checkpoint", str(tmp_path / "cc"), "--label", "negative", "--length", "3",
                 "--json", str(tmp_path / "t.json")]) == 0
    from textdiff_core.trace import Trace

    trace = Trace.from_json(tmp_path / "t.json")
    assert trace.label == "negative" and trace.frames[0].tokens[:3] == ["negative", "review", ":"]
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(tmp_path / "cc"), "--label", "mixed", "--length", "3"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown label 'mixed'")


@pytest.mark.parametrize("args,message", [
    (["--steps", "0", "--strategy", "schedule-random"], "steps must be at least 1"),
    (["--length", "-2"], "length must be >= 0"),
    (["--threshold", "1.2"], "threshold must be in (0, 1]"),
    (["--temperature", "0", "--top-k", "5"], "temperature 0 is greedy"),
    (["--checkpoint", "tiny-ar", "--strategy", "topk"], "needs a diffusion model; 'tiny-ar' is a left-to-right one"),
    (["--checkpoint", "tiny", "--strategy", "ar"], "needs a left-to-right model; 'tiny' is a diffusion one"),
    (["--label", "positive"], "not class-conditional"),
])
def test_cli_generate_errors_exit_2_with_one_line(capsys, args, message):
    base = ["generate", "--checkpoint", "tiny", "--prompt", PROMPT, "--length", "3"]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_cli_choices_match_the_library():
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["generate"]._actions}
    assert tuple(actions["strategy"].choices) == decoding.STRATEGIES
    assert tuple(actions["schedule"].choices) == decoding.SCHEDULES
    from textdiff_core.trace import CONFIDENCE_MEASURES

    assert tuple(actions["confidence"].choices) == CONFIDENCE_MEASURES


def test_cli_generate_defaults_come_from_the_model_kind(tmp_path):
    """No flags: decoding.default_config for the model's kind and length (sampled confidence decoding within a
    quarter of the length in passes, in blocks with the dual cache, for a masked model; sampled left to right for a
    causal one); --steps 0 lifts the budget; a smaller block needs at least one pass per block."""
    from textdiff_core.trace import Trace

    base = ["generate", "--checkpoint", "tiny", "--prompt", PROMPT, "--length", "10"]
    assert main([*base, "--json", str(tmp_path / "d.json")]) == 0
    default = Trace.from_json(tmp_path / "d.json")
    expected = {k: v for k, v in dataclasses.asdict(decoding.default_config("masked", length=10)).items()
                if k not in ("seed", "stop_at_end")}  # stop_at_end is recorded resolved
    assert {k: default.settings[k] for k in expected} == expected
    assert default.strategy == "confidence" and default.settings["temperature"] == 1.0
    assert default.settings["top_p"] == 0.9 and default.settings["cache"] == "dual"
    assert default.forward_passes == 3 == decoding.default_pass_budget(10) and default.n_decoded == 10
    assert main([*base, "--steps", "0", "--json", str(tmp_path / "free.json")]) == 0
    free = Trace.from_json(tmp_path / "free.json")  # the untrained tiny model is never 90% sure: one per pass
    assert free.settings["steps"] is None and free.forward_passes == 10
    assert main([*base, "--block-size", "2", "--json", str(tmp_path / "b.json")]) == 0
    assert Trace.from_json(tmp_path / "b.json").forward_passes == 5, "at least one pass per block"
    assert main([*base, "--temperature", "0", "--json", str(tmp_path / "g.json")]) == 0
    greedy = Trace.from_json(tmp_path / "g.json")
    assert greedy.settings["temperature"] == 0 and greedy.settings["top_p"] is None
    assert main([*base, "--checkpoint", "tiny-ar", "--json", str(tmp_path / "ar.json")]) == 0  # no --strategy
    twin = Trace.from_json(tmp_path / "ar.json")
    assert twin.strategy == "ar" and twin.forward_passes == 10 and twin.settings["top_p"] == 0.9
