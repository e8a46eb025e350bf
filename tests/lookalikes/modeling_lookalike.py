"""Tiny random look-alikes of the published masked-diffusion LMs, loaded with ``trust_remote_code`` as their hub
repositories are: each family's config class and forward signature, none of their weights or architecture details.

  MDLM   ``MDLM.forward(input_ids, timesteps)`` (no attention mask), the noise level added as a time embedding;
         the mask is the last vocabulary id
  LLaDA  ``LLaDAModelLM.forward(input_ids, attention_mask=None)``, no time input; mask id from the config
  Dream  ``DreamModel.forward(input_ids, attention_mask=None, position_ids=None)``; its logits are read shifted
         (position i predicts token i+1)
The same small bidirectional transformer sits under all three. ``last_timesteps`` keeps the time input of the last
MDLM call, so tests can check what noise level a caller passed.
"""

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast, MaskedLMOutput


class _Config(PretrainedConfig):
    def __init__(self, vocab_size=300, hidden_size=32, num_layers=2, num_heads=2, mask_token_id=None, **kwargs):
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.num_layers, self.num_heads = num_layers, num_heads
        self.mask_token_id = mask_token_id
        super().__init__(**kwargs)


class MDLMConfig(_Config):
    model_type = "mdlm"

    def __init__(self, model_length=128, **kwargs):
        self.model_length = model_length
        super().__init__(**kwargs)

    def positions(self):
        return self.model_length


class LLaDAConfig(_Config):
    model_type = "llada"

    def __init__(self, max_sequence_length=128, **kwargs):
        self.max_sequence_length = max_sequence_length
        super().__init__(**kwargs)

    def positions(self):
        return self.max_sequence_length


class DreamConfig(_Config):
    model_type = "Dream"

    def __init__(self, max_position_embeddings=128, **kwargs):
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)

    def positions(self):
        return self.max_position_embeddings


class _Body(nn.Module):
    def __init__(self, config: _Config) -> None:
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position = nn.Embedding(config.positions(), config.hidden_size)
        layer = nn.TransformerEncoderLayer(config.hidden_size, config.num_heads, 2 * config.hidden_size, dropout=0.0,
                                           batch_first=True)
        self.layers = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, input_ids, attention_mask=None, extra=None):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.embed(input_ids) + self.position(positions)[None]
        if extra is not None:
            h = h + extra[:, None, :]
        padding = None if attention_mask is None else attention_mask == 0
        return self.head(self.layers(h, src_key_padding_mask=padding))


class _Base(PreTrainedModel):
    base_model_prefix = "body"

    def __init__(self, config) -> None:
        super().__init__(config)
        self.body = _Body(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.body.embed

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, 0.5)


class MDLM(_Base):
    config_class = MDLMConfig

    def __init__(self, config) -> None:
        super().__init__(config)
        self.time = nn.Linear(1, config.hidden_size)
        self.last_timesteps = None
        self.post_init()

    def forward(self, input_ids, timesteps, output_hidden_states=False, return_dict=None):
        self.last_timesteps = timesteps.detach().float().cpu()
        time = self.time(timesteps.float().reshape(-1, 1).to(self.time.weight.dtype))
        return MaskedLMOutput(logits=self.body(input_ids, None, time))


class LLaDAModelLM(_Base):
    config_class = LLaDAConfig

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return CausalLMOutputWithPast(logits=self.body(input_ids, attention_mask))


class DreamModel(_Base):
    config_class = DreamConfig

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
        return MaskedLMOutput(logits=self.body(input_ids, attention_mask))
