"""A tiny look-alike of ``modeling_dream.py`` in the hub repositories ``Dream-org/Dream-v0-Base-7B`` /
``-Instruct-7B`` (class ``DreamModel``; its sampler is ``generation_utils.py``'s ``DreamGenerationMixin``).

It keeps the real class's interface:
  - ``DreamModel(DreamPreTrainedModel)`` with ``self.model`` (``embed_tokens``, ``layers``, ``norm``) and
    ``self.lm_head``; ``_tied_weights_keys = ["lm_head.weight"]``, a list (transformers 4's form); ``post_init()``
    is called;
  - ``forward(input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, labels, use_cache,
    output_attentions, output_hidden_states, return_dict, cache_position, num_logits_to_keep, **loss_kwargs)``;
  - the attention mask is handed to ``scaled_dot_product_attention`` as it is when it is a tensor, and ignored
    otherwise: the real sampler passes the string ``"full"`` when no row is padded, and with padding a 4-D boolean
    [B, 1, N, N] mask (the outer AND of the padding mask) with position ids ``cumsum(mask) - 1``. A [B, N] mask is
    not an input this class can take (SDPA cannot broadcast it);
  - rotary positions from ``position_ids`` (``arange`` when none are given), computed as the real class computes
    them (``ROPE_INIT_FUNCTIONS["default"]``, a non-persistent ``inv_freq`` buffer, an ``_init_weights`` that
    knows only linear and embedding layers); the logits are shifted: the row at position i predicts token i+1.
The real model's Qwen2 layers are reduced to a few lines: the weights are random.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from .configuration_dream import DreamConfig


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class DreamRotaryEmbedding(nn.Module):
    """As the real file's (copied there from transformers 4.45's LlamaRotaryEmbedding): ``inv_freq`` comes from
    ``ROPE_INIT_FUNCTIONS[rope_type]``, which has no "default" entry in transformers 5, and is a non-persistent
    buffer, which transformers 5 leaves uninitialised when the class's own ``_init_weights`` does not restore it."""

    def __init__(self, dim=None, max_position_embeddings=2048, base=10000, device=None, scaling_factor=1.0,
                 rope_type="default", config: Optional[DreamConfig] = None):  # noqa: UP045
        super().__init__()
        self.rope_kwargs = {}
        if config is None:
            self.rope_kwargs = {"rope_type": rope_type, "factor": scaling_factor, "dim": dim, "base": base,
                                "max_position_embeddings": max_position_embeddings}
            self.rope_type = rope_type
        else:
            scaling = getattr(config, "rope_scaling", None)
            self.rope_type = scaling.get("rope_type", scaling.get("type")) if scaling else "default"
        self.config = config
        self.rope_init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]
        inv_freq, self.attention_scaling = self.rope_init_fn(self.config, device, **self.rope_kwargs)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.original_inv_freq = self.inv_freq

    @torch.no_grad()
    def forward(self, x, position_ids):
        freqs = position_ids[..., None].float() * self.inv_freq.float()
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling)[:, None].to(x.dtype), \
            (emb.sin() * self.attention_scaling)[:, None].to(x.dtype)  # [B, 1, N, d]


class DreamSdpaAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads = config.num_attention_heads
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)

    def forward(self, hidden_states, attention_mask, position_embeddings):
        b, n, _ = hidden_states.shape
        q, k, v = (p(hidden_states).view(b, n, self.heads, -1).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        cos, sin = position_embeddings
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask if isinstance(attention_mask, torch.Tensor) else None,
            is_causal=False)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class DreamDecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn = DreamSdpaAttention(config)
        self.mlp = nn.Sequential(nn.Linear(config.hidden_size, config.intermediate_size), nn.SiLU(),
                                 nn.Linear(config.intermediate_size, config.hidden_size))
        self.input_layernorm = nn.LayerNorm(config.hidden_size)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size)

    def forward(self, x, attention_mask, position_embeddings):
        x = x + self.self_attn(self.input_layernorm(x), attention_mask, position_embeddings)
        return x + self.mlp(self.post_attention_layernorm(x))


class DreamPreTrainedModel(PreTrainedModel):
    config_class = DreamConfig
    base_model_prefix = "model"
    _no_split_modules = ["DreamDecoderLayer"]

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.5)


class DreamBaseModel(DreamPreTrainedModel):
    def __init__(self, config: DreamConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DreamDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size)
        self.rotary_emb = DreamRotaryEmbedding(config=config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, **kwargs):
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if position_ids is None:
            position_ids = torch.arange(x.shape[1], device=x.device)[None].expand(x.shape[0], -1)
        position_embeddings = self.rotary_emb(x, position_ids)
        for layer in self.layers:
            x = layer(x, attention_mask, position_embeddings)
        return BaseModelOutput(last_hidden_state=self.norm(x))


class DreamModel(DreamPreTrainedModel):
    _tied_weights_keys = ["lm_head.weight"]

    def __init__(self, config):
        super().__init__(config)
        self.model = DreamBaseModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor = None,
        attention_mask: Optional[torch.Tensor] = None,  # noqa: UP045 - as the real file writes it
        position_ids: Optional[torch.LongTensor] = None,  # noqa: UP045
        past_key_values=None,
        inputs_embeds: Optional[torch.FloatTensor] = None,  # noqa: UP045
        labels: Optional[torch.LongTensor] = None,  # noqa: UP045
        use_cache: Optional[bool] = None,  # noqa: UP045
        output_attentions: Optional[bool] = None,  # noqa: UP045
        output_hidden_states: Optional[bool] = None,  # noqa: UP045
        return_dict: Optional[bool] = None,  # noqa: UP045
        cache_position: Optional[torch.LongTensor] = None,  # noqa: UP045
        num_logits_to_keep: int = 0,
        **loss_kwargs,
    ):
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             inputs_embeds=inputs_embeds)
        logits = self.lm_head(outputs[0][:, -num_logits_to_keep:, :])
        if not return_dict:
            return (logits,)
        return MaskedLMOutput(logits=logits)
