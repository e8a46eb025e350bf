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
