import re

from textdiff_core.models import load_model
from textdiff_core.tokens import encode


def test_layout_start_prefix_text_end_and_padding():
    tok = load_model("tiny").tokenizer
    batch = encode(tok, ["the movie was great", "bad"], ["positive review:", "negative review:"], max_length=32)
    first = batch.input_ids[0].tolist()
    prefix = tok("positive review:", add_special_tokens=False)["input_ids"]
    text = tok("the movie was great", add_special_tokens=False)["input_ids"]
    assert first == [tok.cls_token_id, *prefix, *text, tok.sep_token_id]
    assert batch.target_mask[0].tolist() == [False] * (1 + len(prefix)) + [True] * len(text) + [False]
    assert batch.attention_mask[1].sum() < batch.attention_mask[0].sum()
    assert not batch.target_mask[1][batch.attention_mask[1] == 0].any(), "padding is never a target"
    assert batch.truncated == [False, False]


def test_long_texts_are_cut_and_flagged_never_the_prefix():
    tok = load_model("tiny").tokenizer
    batch = encode(tok, ["word " * 100], ["negative review:"], max_length=16)
    assert batch.input_ids.shape[1] == 16 and batch.truncated == [True]
    assert batch.input_ids[0, -1].item() == tok.sep_token_id
    prefix = tok("negative review:", add_special_tokens=False)["input_ids"]
    assert batch.input_ids[0, 1 : 1 + len(prefix)].tolist() == prefix


def test_decode_text_joins_punctuation_as_review_text_writes_it_and_keeps_the_tokens():
    """A WordPiece decode puts spaces around every mark ("don ' t", "10 : 10"); decode_text joins them as reviews
    write them, and the text it gives tokenizes back to the very same ids (the model's output, only spaced right)."""
    from textdiff_core.data import load_data
    from textdiff_core.models import load_model
    from textdiff_core.tokens import decode_text, tokenize_texts

    tok = load_model("tiny").tokenizer
    for written in ["i don't think it's good, 10:10 (really) - she's \"great\"... a well-made film! 5.5/10.",
                    "it cost 10,000 dollars -- and [sic] i paid $5; 50% of it: bad."]:
        ids = tokenize_texts(tok, [written])[0]
        assert " ' " in tok.decode(ids) or " : " in tok.decode(ids)  # what the plain decode gives
        assert decode_text(tok, ids) == written
    reviews = load_data("imdb", "validation", max_samples=50, seed=0).texts
    for ids in tokenize_texts(tok, reviews, max_length=200):
        text = decode_text(tok, ids)
        assert tokenize_texts(tok, [text])[0] == ids, text
        assert " ' s " not in text and "don ' t" not in text


def test_generated_text_of_the_shipped_model_is_detokenized():
    from textdiff_core.decoding import generate
    from textdiff_core.models import load_model
    from textdiff_core.tokens import tokenize_texts

    lm = load_model("checkpoints/imdb-diffusion")
    for seed in range(3):
        trace = generate(lm, "It's", 48, label="positive", seed=seed)
        assert not re.search(r" [,.!?;:)'] | \( | n ' t", trace.final_text), trace.final_text
        written = trace.frames[-1].ids[trace.n_class_tokens:trace.ended_at]
        assert tokenize_texts(lm.tokenizer, [trace.final_text])[0] == written, trace.final_text
