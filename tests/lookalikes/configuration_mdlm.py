"""Mirrors ``configuration_mdlm.py`` of the hub repository ``kuleshov-group/mdlm-owt`` (class ``MDLMConfig``): the
same field names (``hidden_dim``, ``n_blocks``, ``n_heads``, ``cond_dim``, ``model_length``, ``time_conditioning``);
tiny defaults here."""

import transformers


class MDLMConfig(transformers.PretrainedConfig):
    model_type = "mdlm"

    def __init__(self, vocab_size=50258, model_length=128, hidden_dim=32, cond_dim=16, n_blocks=2, n_heads=2,
                 dropout=0.1, time_conditioning=True, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.model_length = model_length
        self.hidden_dim = hidden_dim
        self.cond_dim = cond_dim
        self.n_blocks = n_blocks
        self.n_heads = n_heads
        self.dropout = dropout
        self.time_conditioning = time_conditioning
