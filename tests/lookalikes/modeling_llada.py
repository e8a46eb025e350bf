"""A tiny look-alike of ``modeling_llada.py`` in the hub repositories ``GSAI-ML/LLaDA-8B-Base`` / ``-Instruct``
(class ``LLaDAModelLM``, "Extremely barebones HF model wrapper").

It keeps the real class's interface, including what transformers 5 trips over:
  - ``class LLaDAModelLM(PreTrainedModel)`` with ``base_model_prefix = "model"``, ``self.model = LLaDAModel(...)``
    whose ``transformer`` holds ``wte`` (``nn.Embedding``), the blocks and ``ff_out``; ``__init__`` never calls
    ``post_init()``;
  - ``get_input_embeddings`` (``model.transformer.wte``) and an argument-less ``tie_weights(self)``, which
    transformers 5's ``from_pretrained`` calls with ``missing_keys=`` and ``recompute_mapping=``;
  - ``forward(input_ids, inputs_embeds, attention_mask, attention_bias, past_key_values, labels, use_cache,
    output_attentions, output_hidden_states, return_dict, cache_position)``: a [B, N] attention mask is taken (as
    an additive bias on the keys), no time input, a ``CausalLMOutputWithPast``.
The real model's blocks (RoPE, SwiGLU, RMSNorm) are reduced to a few lines: the weights are random.
"""

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_llada import LLaDAConfig


class LLaDABlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_heads = config.n_heads
        self.attn_norm = nn.LayerNorm(config.d_model)
        self.att_proj = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.attn_out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.ff_norm = nn.LayerNorm(config.d_model)
        self.ff = nn.Sequential(nn.Linear(config.d_model, 2 * config.d_model), nn.SiLU(),
                                nn.Linear(2 * config.d_model, config.d_model))

    def forward(self, x, attention_bias):
        b, s, _ = x.shape
        q, k, v = self.att_proj(self.attn_norm(x)).view(b, s, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_bias, is_causal=False)
        x = x + self.attn_out(attended.transpose(1, 2).reshape(b, s, -1))
        return x + self.ff(self.ff_norm(x))


class LLaDAModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.embedding_size, config.d_model),
            wpe=nn.Embedding(config.max_sequence_length, config.d_model),
            blocks=nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers)),
            ln_f=nn.LayerNorm(config.d_model),
        ))
        if not config.weight_tying:
            self.transformer.update({"ff_out": nn.Linear(config.d_model, config.embedding_size, bias=False)})

    def forward(self, input_ids, input_embeddings=None, attention_mask=None, attention_bias=None):
        x = self.transformer.wte(input_ids) if input_embeddings is None else input_embeddings
        x = x + self.transformer.wpe(torch.arange(x.shape[1], device=x.device))[None]
        bias = None
        if attention_mask is not None:  # [B, N] -> an additive bias that hides padded keys
            keep = attention_mask.to(dtype=torch.float).view(x.shape[0], -1)[:, None, None, :]
            bias = (1.0 - keep) * torch.finfo(x.dtype).min
        if attention_bias is not None:
            bias = attention_bias if bias is None else bias + attention_bias
        for block in self.transformer.blocks:
            x = block(x, bias)
        x = self.transformer.ln_f(x)
        if self.config.weight_tying:
            return F.linear(x, self.transformer.wte.weight)
        return self.transformer.ff_out(x)


class LLaDAModelLM(PreTrainedModel):
    """Extremely barebones HF model wrapper."""

    config_class = LLaDAConfig
    base_model_prefix = "model"
    _no_split_modules = ["LLaDABlock"]

    def __init__(self, config: LLaDAConfig, model: Optional[LLaDAModel] = None, init_params: bool = False):  # noqa: UP045
        super().__init__(config)
        self.model = model if model is not None else LLaDAModel(config)

    def forward(
        self,
        input_ids: torch.LongTensor = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,  # noqa: UP045 - as the real file writes it
        attention_mask: Optional[torch.Tensor] = None,  # noqa: UP045
        attention_bias: Optional[torch.Tensor] = None,  # noqa: UP045
        past_key_values=None,
        labels: Optional[torch.LongTensor] = None,  # noqa: UP045
        use_cache: Optional[bool] = None,  # noqa: UP045
        output_attentions: Optional[bool] = None,  # noqa: UP045
        output_hidden_states: Optional[bool] = None,  # noqa: UP045
        return_dict: Optional[bool] = None,  # noqa: UP045
        cache_position=None,
    ):
        if use_cache:
            raise ValueError("use_cache is not supported by this look-alike")
        logits = self.model(input_ids, inputs_embeds, attention_mask, attention_bias)
        if labels is not None:
            raise ValueError("LLaDA computes no loss here")
        if not (return_dict if return_dict is not None else self.config.use_return_dict):
            return (logits,)
        return CausalLMOutputWithPast(logits=logits)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.transformer.wte

    def set_input_embeddings(self, value: torch.nn.Module):
        self.model.transformer.wte = value

    def get_output_embeddings(self):
        if self.config.weight_tying:
            return self.model.transformer.wte
        return self.model.transformer.ff_out

    def set_output_embeddings(self, value: torch.nn.Module):
        if self.config.weight_tying:
            self.model.transformer.wte = value
        else:
            self.model.transformer.ff_out = value

    def tie_weights(self):
        if self.config.weight_tying:
            self.model.transformer.ff_out = self.model.transformer.wte
