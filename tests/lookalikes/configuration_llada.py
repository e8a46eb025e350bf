"""Mirrors ``configuration_llada.py`` of the hub repositories ``GSAI-ML/LLaDA-8B-Base`` / ``-Instruct`` (class
``LLaDAConfig``): the OLMo-style field names (``d_model``, ``n_layers``, ``n_heads``, ``max_sequence_length``,
``mask_token_id``, ``weight_tying``); tiny defaults here."""

from transformers import PretrainedConfig


class LLaDAConfig(PretrainedConfig):
    model_type = "llada"

    def __init__(self, vocab_size=320, d_model=32, n_layers=2, n_heads=2, max_sequence_length=128,
                 mask_token_id=126336, weight_tying=False, use_cache=False, **kwargs):
        self.vocab_size = vocab_size
        self.embedding_size = vocab_size
        self.d_model = d_model
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.max_sequence_length = max_sequence_length
        self.mask_token_id = mask_token_id
        self.weight_tying = weight_tying
        self.use_cache = use_cache
        super().__init__(**kwargs)

    @property
    def num_hidden_layers(self):
        return self.n_layers

    @property
    def hidden_size(self):
        return self.d_model
