"""A tiny look-alike of ``modeling_mdlm.py`` in the hub repository ``kuleshov-group/mdlm-owt`` (class ``MDLM``).

It keeps the real class's interface, including what it lacks, so that textdiff is tested against what users load:
  - ``class MDLM(transformers.PreTrainedModel)`` with ``base_model_prefix = "mdlm"`` and one attribute,
    ``self.backbone = DITBackbone(config)``; ``__init__`` never calls ``post_init()`` (so under transformers 5 the
    class as published lacks ``all_tied_weights_keys``);
  - no ``get_input_embeddings``, no tied-weight keys; the embedding is ``backbone.vocab_embed``, an
    ``EmbeddingLayer`` holding a raw ``nn.Parameter``, not an ``nn.Embedding``;
  - ``forward(input_ids=None, timesteps=None, output_hidden_states=None, return_dict=None)``: no attention mask;
    a tensor of logits unless ``return_dict`` (the config's ``use_return_dict`` by default);
  - the blocks run under ``torch.autocast("cuda", dtype=torch.bfloat16)`` (a warning, and nothing else, on a CPU).
The real model's DiT (adaLN modulation, rotary positions) is reduced to a few lines: the weights are random.
``last_timesteps`` is the look-alike's own: it keeps the time input of the last call for tests.
"""

import math
import typing

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import modeling_outputs

from .configuration_mdlm import MDLMConfig


class EmbeddingLayer(nn.Module):
    def __init__(self, dim, vocab_dim):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty((vocab_dim, dim)))
        torch.nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))

    def forward(self, x):
        return self.embedding[x]


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))
        self.frequency_embedding_size = frequency_embedding_size

    def forward(self, t):
        half = self.frequency_embedding_size // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class DDiTBlock(nn.Module):
    def __init__(self, dim, n_heads, cond_dim):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(approximate="tanh"), nn.Linear(2 * dim, dim))
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim)

    def forward(self, x, positions, c):
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        h = self.norm1(x) * (1 + scale) + shift + positions
        b, s, _ = h.shape
        q, k, v = self.attn_qkv(h).view(b, s, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=False).transpose(1, 2).reshape(b, s, -1)
        x = x + self.attn_out(attended)
        return x + self.mlp(self.norm2(x))


class DITBackbone(nn.Module):
    def __init__(self, config: MDLMConfig):
        super().__init__()
        self.config = config
        self.vocab_embed = EmbeddingLayer(config.hidden_dim, config.vocab_size)
        self.sigma_map = TimestepEmbedder(config.cond_dim)
        self.positions = nn.Parameter(torch.randn(config.model_length, config.hidden_dim) * 0.1)
        self.blocks = nn.ModuleList(DDiTBlock(config.hidden_dim, config.n_heads, config.cond_dim)
                                    for _ in range(config.n_blocks))
        self.output_layer = nn.Linear(config.hidden_dim, config.vocab_size)

    def forward(self, indices, sigma, output_hidden_states=False):
        if not self.config.time_conditioning:
            sigma = torch.zeros_like(sigma)
        all_hidden_states = []
        x = self.vocab_embed(indices)
        c = F.silu(self.sigma_map(sigma))
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            for block in self.blocks:
                x = block(x, self.positions[: x.shape[1]], c)
                if output_hidden_states:
                    all_hidden_states.append(x)
            logits = self.output_layer(x)
        return logits, all_hidden_states


class MDLM(transformers.PreTrainedModel):
    """HF-compatible model."""

    config_class = MDLMConfig
    base_model_prefix = "mdlm"

    def __init__(self, config: MDLMConfig):
        super().__init__(config)
        self.backbone = DITBackbone(config)
        self.last_timesteps = None

    def forward(
        self,
        input_ids: torch.LongTensor = None,
        timesteps: torch.FloatTensor = None,
        output_hidden_states: typing.Optional[bool] = None,  # noqa: UP045 - as the real file writes it
        return_dict: typing.Optional[bool] = None,  # noqa: UP045
    ):
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else self.config.output_hidden_states)
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict
        self.last_timesteps = timesteps.detach().float().cpu()
        logits, all_hidden_states = self.backbone(indices=input_ids, sigma=timesteps,
                                                  output_hidden_states=output_hidden_states)
        if return_dict:
            return modeling_outputs.MaskedLMOutput(
                logits=logits, hidden_states=all_hidden_states if output_hidden_states else None, loss=None)
        elif output_hidden_states:
            return logits, all_hidden_states
        else:
            return logits
