"""Mirrors ``configuration_dream.py`` of the hub repositories ``Dream-org/Dream-v0-Base-7B`` / ``-Instruct-7B``
(class ``DreamConfig``, Qwen2-style field names, ``model_type = "Dream"``); tiny defaults here."""

from transformers import PretrainedConfig


class DreamConfig(PretrainedConfig):
    model_type = "Dream"

    def __init__(self, vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=2, max_position_embeddings=128, rope_theta=10000.0, rope_scaling=None,
                 tie_word_embeddings=False,
                 mask_token_id=151666, pad_token_id=151643, attention_dropout=0.0, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.mask_token_id = mask_token_id
        self.attention_dropout = attention_dropout
        super().__init__(tie_word_embeddings=tie_word_embeddings, pad_token_id=pad_token_id, **kwargs)
