"""A Hugging Face encoder as an attnkit encoder: ``(ids [B, T], lengths [B]) -> h [B, T, H]``.

Two paths compute the same function:

* the **reference** path calls the Hugging Face model itself (any encoder, any PEFT wrapping,
  prefix and prompt tuning included);
* the **fast** path (BERT-structured models: ``embeddings`` + ``encoder.layer[i]`` with
  ``attention.self.{query,key,value}``) walks the same modules with less work per step:
  SDPA with no mask when the batch has no padding, sparse gradients for the word embedding
  (so the optimiser touches only the rows a batch used, see
  :class:`attnkit.train.optim.AdamW`), and, when the head reads only the first position
  (``[CLS]``), a last layer that computes its queries, output projection and feed-forward for
  that position alone (keys and values still see every position); and the hidden-state
  dropouts draw their masks with :func:`attnkit.attention.dropout.dropout` (2.4x faster than
  ``nn.Dropout`` forward and backward on the CPU; the attention probabilities' dropout stays
  inside SDPA).

The fast path is checked against the reference in ``tests/finetune/test_encoder.py``
(outputs and gradients, with and without LoRA/IA3/adapters); it calls the wrapped modules,
so PEFT's LoRA/IA3 layers and attnkit's adapters act inside it unchanged."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attention.dropout import dropout
from ..nn.masking import padding_mask


def base_model(model: nn.Module) -> nn.Module:
    """The bare transformers model inside a PEFT wrapper (or the model itself)."""
    get = getattr(model, "get_base_model", None)
    return get() if get is not None else model


def is_bert_like(model: nn.Module) -> bool:
    """Whether the fast path understands this model's structure (BERT: absolute positions
    from 0, post-LayerNorm layers, GELU feed-forward)."""
    base = base_model(model)
    cfg = getattr(base, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "bert":
        return False
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute" or getattr(cfg, "is_decoder", False):
        return False
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    return layers is not None and all(hasattr(layer.attention, "self") for layer in layers)


class BackboneEncoder(nn.Module):
    """Wraps a transformers encoder (possibly PEFT-wrapped). ``fast`` selects the fast path
    when the structure allows it and no prefix/prompt tuning is active (those inject keys or
    inputs through the Hugging Face forward)."""

    def __init__(self, model: nn.Module, fast: bool = True, sparse_embeddings: bool = True):
        super().__init__()
        self.model = model
        config = base_model(model).config
        self.out_dim = config.hidden_size
        self.pad_id = config.pad_token_id or 0
        peft_config = getattr(model, "peft_config", {}).get("default")
        self.prompt_learning = bool(getattr(peft_config, "is_prompt_learning", False))
        self.fast = fast and is_bert_like(model) and not self.prompt_learning
        self.sparse_embeddings = sparse_embeddings

    @property
    def base(self) -> nn.Module:
        """The bare transformers model (inside PEFT's wrapper, if any)."""
        return base_model(self.model)

    @property
    def layers(self) -> nn.ModuleList:
        """The transformer layers of the backbone."""
        return self.base.encoder.layer

    def bf16_safe_weights(self) -> list[nn.Parameter]:
        """The weights of the layers' (and the pooler's) ``nn.Linear`` modules, which the fast
        path and the heads reach only through their forward (``F.linear``): bf16 autocast may
        keep them in bf16 between calls (:mod:`attnkit.train.bf16_weights`). None on the
        reference path, whose code is not ours."""
        if not self.fast:
            return []
        pooler = getattr(self.base, "pooler", None)
        blocks = [*self.layers, *([pooler] if pooler is not None else [])]
        return [m.weight for block in blocks for m in block.modules() if type(m) is nn.Linear]

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, first_only: bool = False) -> torch.Tensor:
        """Hidden states ``[B, T, H]`` (``[B, 1, H]`` when ``first_only`` on the fast path;
        the reference path returns every position and the caller slices)."""
        if not self.fast:
            return self.reference(ids, lengths)
        return self._fast(ids, lengths, first_only)

    # ------------------------------------------------------------------ reference
    def reference(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The Hugging Face model's own forward."""
        mask = padding_mask(lengths, ids.shape[1])
        ids = ids.masked_fill(~mask, self.pad_id)
        out = self.model(input_ids=ids, attention_mask=mask.long())
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        if h.shape[1] != ids.shape[1]:  # prompt tuning prepends virtual tokens: drop them
            h = h[:, h.shape[1] - ids.shape[1]:]
        return h

    @torch.no_grad()
    def attentions(self, ids: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's own attention weights, one ``[B, heads, T, T]`` per layer, from the
        Hugging Face forward with eager attention (SDPA returns no weights). With prefix or
        prompt tuning, the virtual positions are dropped and each row renormalised over the
        real tokens."""
        T = ids.shape[1]
        mask = padding_mask(lengths, T)
        base = self.base
        before = getattr(base.config, "_attn_implementation", None)
        base.set_attn_implementation("eager")
        try:
            out = self.model(input_ids=ids.masked_fill(~mask, self.pad_id), attention_mask=mask.long(),
                             output_attentions=True)
        finally:
            if before is not None:
                base.set_attn_implementation(before)
        layers = []
        for a in out.attentions:
            a = a[..., -T:, -T:]
            layers.append(a / a.sum(-1, keepdim=True).clamp(min=1e-12))
        return layers

    # ------------------------------------------------------------------ fast path
    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        emb = self.base.embeddings
        word = emb.word_embeddings
        sparse = self.sparse_embeddings and word.weight.requires_grad and self.training
        # sparse rows for training; otherwise the module itself, so hooks on it (attributions) fire
        x = F.embedding(ids, word.weight, word.padding_idx, sparse=True) if sparse else word(ids)
        T = ids.shape[1]
        x = x + emb.position_embeddings.weight[:T]
        if getattr(emb, "token_type_embeddings", None) is not None:
            x = x + emb.token_type_embeddings.weight[0]
        return self._drop(emb.dropout, emb.LayerNorm(x))

    def _drop(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The backbone's dropout ``module`` applied with attnkit's faster mask draw."""
        return dropout(x, module.p, self.training)

    def _layer(self, layer: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, first_only: bool) -> torch.Tensor:
        att = layer.attention
        sa = att.self
        xq = x[:, :1] if first_only else x
        q, k, v = sa.query(xq), sa.key(x), sa.value(x)
        B = x.shape[0]
        heads = sa.num_attention_heads
        d = q.shape[-1] // heads  # the head size (fewer heads after structured pruning, same size)

        def split(t):
            return t.view(B, t.shape[1], heads, d).transpose(1, 2)
        p = sa.dropout.p if self.training else 0.0
        a = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask, dropout_p=p)
        a = a.transpose(1, 2).reshape(B, xq.shape[1], heads * d)
        so = att.output
        h = so.LayerNorm(self._drop(so.dropout, so.dense(a)) + xq)
        out = layer.output
        return out.LayerNorm(self._drop(out.dropout, out.dense(layer.intermediate(h))) + h)

    def _fast(self, ids: torch.Tensor, lengths: torch.Tensor, first_only: bool) -> torch.Tensor:
        T = ids.shape[1]
        x = self._embed(ids)
        mask = None
        if int(lengths.min()) < T:  # keys beyond each length are padding
            mask = padding_mask(lengths, T)[:, None, None, :]
        layers = self.layers
        for i, layer in enumerate(layers):
            x = self._layer(layer, x, mask, first_only and i == len(layers) - 1)
        return x
