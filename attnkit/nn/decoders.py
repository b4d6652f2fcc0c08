"""Decoders of encoder-decoder models, on attnkit attention: a Transformer decoder (causal
self-attention, cross-attention, pre-LN) and a recurrent decoder with input feeding whose
cross-attention takes any score (additive = Bahdanau, general/dot = Luong, mlp, your own).

Both run two ways that give the same numbers: over a whole target prefix at once (teacher
forcing while training) and one step at a time with a cache (decoding): the Transformer
keeps each layer's keys and values, the recurrent decoder its state. A cache is a flat dict
of tensors whose first dimension is the batch, so beam search reorders it with one
``index_select`` per entry. ``DECODERS`` names them for configs."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..attention import Attention, AttentionSpec, MultiHeadAttention
from ..attention.dropout import Dropout
from ..attention.masks import causal
from ..config import require_positive
from ..errors import ConfigError
from .registry import DECODERS
from .rnn import run_recurrence
from .transformer import sinusoidal_positions


class DecoderLayer(nn.Module):
    """Pre-LN: causal self-attention, cross-attention over the encoder output, feed-forward."""

    def __init__(self, dim: int, spec: AttentionSpec, ff_dim: int, dropout: float):
        super().__init__()
        self.self_attn = MultiHeadAttention(dim, spec=spec)
        self.cross_attn = MultiHeadAttention(dim, spec=spec)
        self.ff = nn.Sequential(nn.Linear(dim, ff_dim), nn.ReLU(), Dropout(dropout), nn.Linear(ff_dim, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = Dropout(dropout)

    def forward(self, x, cross_kv, src_lengths, self_kv=None, need_weights: bool = False):
        """``x [B, T, D]``; ``self_kv``: the keys/values of earlier positions (a step), else
        the whole prefix attends causally. Returns ``(x, cross weights, (k, v) of x)``."""
        h = self.norm1(x)
        k, v = self.self_attn.project_kv(h)
        if self_kv is not None:
            k, v = torch.cat([self_kv[0], k], 2), torch.cat([self_kv[1], v], 2)
        # a step's query is the newest position: it sees every cached key, so no mask is needed
        a, _ = self.self_attn(h, kv=(k, v), mask=None if self_kv is not None else causal())
        x = x + self.drop(a)
        c, w = self.cross_attn(self.norm2(x), kv=cross_kv, lengths=src_lengths, need_weights=need_weights)
        x = x + self.drop(c)
        return x + self.drop(self.ff(self.norm3(x))), w, (k, v)


@DECODERS.register("transformer")
class TransformerDecoder(nn.Module):
    """``(embedded target [B, T, dim], memory [B, S, dim]) -> [B, T, dim]``, pre-LN, sinusoidal
    positions; ``attention`` is an AttentionSpec dict for both attentions (``heads: 4``)."""

    def __init__(self, dim: int, layers: int = 3, ff_dim: int | None = None, attention: dict | None = None,
                 dropout: float = 0.1, max_len: int = 256):
        super().__init__()
        require_positive("decoder", dim=dim, layers=layers, max_len=max_len)
        spec = AttentionSpec.from_dict({"heads": 4, **(attention or {})}, where="decoder.attention")
        if spec.mask:
            raise ConfigError("decoder.attention.mask: the decoder's self-attention is causal by construction; "
                              "leave mask out")
        self.dim, self.max_len, self.num_layers = dim, max_len, layers
        self.register_buffer("pos_table", sinusoidal_positions(max_len, dim), persistent=False)
        self.layers = nn.ModuleList(DecoderLayer(dim, spec, ff_dim or 4 * dim, dropout) for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim)
        self.drop = Dropout(dropout)
        self.out_dim = dim

    def start(self, memory: torch.Tensor, src_lengths: torch.Tensor) -> dict:
        """What decoding keeps: every layer's cross-attention keys/values (computed once) and
        empty self-attention caches."""
        state = {"src_lengths": src_lengths, "step": torch.zeros(memory.shape[0], dtype=torch.long)}
        for i, layer in enumerate(self.layers):
            state[f"ck{i}"], state[f"cv{i}"] = layer.cross_attn.project_kv(memory)
        return state

    def _check_len(self, n: int) -> None:
        if n > self.max_len:
            raise ConfigError(f"model.decoder.max_len: a target of {n} positions is longer than max_len = "
                              f"{self.max_len}")

    def forward(self, y: torch.Tensor, state: dict, need_weights: bool = False):
        """The whole prefix ``y [B, T, dim]`` at once; returns ``(out, cross weights per layer)``."""
        t = y.shape[1]
        self._check_len(t)
        x = self.drop(y + self.pos_table[:t])
        weights = []
        for i, layer in enumerate(self.layers):
            x, w, _ = layer(x, (state[f"ck{i}"], state[f"cv{i}"]), state["src_lengths"], need_weights=need_weights)
            weights.append(w)
        return self.final_norm(x), weights

    def step(self, y: torch.Tensor, state: dict, need_weights: bool = False):
        """One new position ``y [N, 1, dim]`` after those in ``state``'s cache; returns
        ``(out [N, 1, dim], cross weights per layer, new state)``."""
        pos = int(state["step"][0]) if state["step"].numel() else 0
        self._check_len(pos + 1)
        x = self.drop(y + self.pos_table[pos:pos + 1])
        new = dict(state)
        weights = []
        for i, layer in enumerate(self.layers):
            past = (state[f"sk{i}"], state[f"sv{i}"]) if f"sk{i}" in state else None
            x, w, (new[f"sk{i}"], new[f"sv{i}"]) = layer(x, (state[f"ck{i}"], state[f"cv{i}"]),
                                                         state["src_lengths"], self_kv=past, need_weights=need_weights)
            weights.append(w)
        new["step"] = state["step"] + 1
        return self.final_norm(x), weights, new


RNN_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RNNDecoder(nn.Module):
    """A recurrent decoder with input feeding (Luong et al., 2015): each step reads the
    previous word and the previous attentional vector, attends over the encoder output with
    ``attention.score`` (``additive``, ``general``, ``dot``, ``mlp`` ...), and outputs
    ``tanh(W [h; context])``. The encoder output is projected to ``hidden`` once per sentence
    (the keys and values), and the score's key projection is cached with it."""

    def __init__(self, dim: int, memory_dim: int, hidden: int = 256, layers: int = 1, cell: str = "gru",
                 attention: dict | None = None, dropout: float = 0.1):
        super().__init__()
        require_positive("decoder", hidden=hidden, layers=layers)
        if cell not in RNN_CELLS:
            raise ConfigError(f"decoder.type: unknown cell {cell!r}; known: {', '.join(RNN_CELLS)}")
        opts = {"score": "additive", **(attention or {})}
        score = opts.pop("score")
        self.cell, self.hidden, self.num_layers = cell, hidden, layers
        self.rnn = RNN_CELLS[cell](dim + hidden, hidden, num_layers=layers, batch_first=True,
                                   dropout=dropout if layers > 1 else 0.0)
        self.memory_proj = nn.Linear(memory_dim, hidden)
        self.bridge = nn.Linear(memory_dim, hidden * layers)
        self.attn = Attention(hidden, hidden, score=score, **opts)
        self.combine = nn.Linear(2 * hidden, hidden, bias=False)
        self.drop = Dropout(dropout)
        self.out_dim = hidden

    def start(self, memory: torch.Tensor, src_lengths: torch.Tensor) -> dict:
        """Keys/values (the projected encoder output), the initial state from the mean of the
        encoder output (over real positions), and a zero attentional vector."""
        n = memory.shape[0]
        real = (torch.arange(memory.shape[1], device=memory.device)[None] < src_lengths[:, None]).to(memory.dtype)
        mean = (memory * real[..., None]).sum(1) / src_lengths.clamp(min=1)[:, None].to(memory.dtype)
        h0 = torch.tanh(self.bridge(mean)).view(n, self.num_layers, self.hidden)
        keys = self.memory_proj(memory)
        state = {"keys": keys, "kf": self.attn.score.prepare_keys(keys.unsqueeze(1)), "src_lengths": src_lengths,
                 "h": h0, "feed": memory.new_zeros(n, self.hidden)}
        if self.cell == "lstm":
            state["c"] = torch.zeros_like(h0)
        return state

    def step(self, y: torch.Tensor, state: dict, need_weights: bool = False):
        """One step: ``y [N, 1, dim]`` -> ``(out [N, 1, hidden], [weights [N, 1, S]], new state)``."""
        inp = torch.cat([y, state["feed"][:, None]], -1)
        h = state["h"].transpose(0, 1).contiguous()  # (layers, N, H)
        hx = (h, state["c"].transpose(0, 1).contiguous()) if self.cell == "lstm" else h
        top, hx = run_recurrence(self.rnn, inp, hx)
        ctx, w = self.attn(top, state["keys"], lengths=state["src_lengths"], need_weights=need_weights,
                           kf=state["kf"])
        feed = torch.tanh(self.combine(torch.cat([top, ctx], -1)))
        new = dict(state)
        if self.cell == "lstm":
            new["h"], new["c"] = hx[0].transpose(0, 1), hx[1].transpose(0, 1)
        else:
            new["h"] = hx.transpose(0, 1)
        new["feed"] = feed[:, 0]
        return self.drop(feed), [w], new

    def forward(self, y: torch.Tensor, state: dict, need_weights: bool = False):
        """The whole prefix, step by step (input feeding makes each step wait for the last)."""
        outs, weights = [], []
        for t in range(y.shape[1]):
            out, w, state = self.step(y[:, t:t + 1], state, need_weights)
            outs.append(out)
            weights.append(w[0])
        return torch.cat(outs, 1), [torch.cat(weights, 1) if need_weights else None]


@DECODERS.register("gru")
class GRUDecoder(RNNDecoder):
    """:class:`RNNDecoder` with GRU cells."""

    def __init__(self, dim: int, memory_dim: int, hidden: int = 256, layers: int = 1, attention: dict | None = None,
                 dropout: float = 0.1):
        super().__init__(dim, memory_dim, hidden, layers, "gru", attention, dropout)


@DECODERS.register("lstm")
class LSTMDecoder(RNNDecoder):
    """:class:`RNNDecoder` with LSTM cells."""

    def __init__(self, dim: int, memory_dim: int, hidden: int = 256, layers: int = 1, attention: dict | None = None,
                 dropout: float = 0.1):
        super().__init__(dim, memory_dim, hidden, layers, "lstm", attention, dropout)


def embed_scale(dim: int) -> float:
    """The factor token embeddings are multiplied by before positions are added (Vaswani et al.)."""
    return math.sqrt(dim)
