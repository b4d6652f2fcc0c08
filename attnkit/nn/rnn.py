"""Recurrent encoders over padded batches: ``(x [B, T, D], lengths [B]) -> [B, T, out_dim]``.
Sequences are packed, so padding never enters the recurrence (a backward direction starts
at each sequence's own last token); padded outputs are zero."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..attention.dropout import Dropout
from ..config import require_positive
from ..errors import ShapeError
from . import rnn_kernel, token_rows
from .registry import ENCODERS


def run_recurrence(rnn: nn.RNNBase, x, hx=None):
    """``rnn(x, hx)``, in fp32 with autocast off when bf16 autocast is on: oneDNN's bf16
    LSTM/GRU has no kernel on CPUs without bf16 units ("could not create a primitive
    descriptor"), and a recurrence's cost is its elementwise gates, which bf16 does not speed
    up. Everything around it stays under autocast. A padded float32 batch the fused kernel
    takes (``rnn_kernel.usable``: small inference batches; a decoder's steps) runs there."""
    if not torch.is_autocast_enabled("cpu"):
        return _recurrence(rnn, x, hx)
    with torch.autocast("cpu", enabled=False):
        if isinstance(x, torch.nn.utils.rnn.PackedSequence):
            x = x._replace(data=x.data.float())
        else:
            x = x.float()
        if hx is not None:
            hx = tuple(h.float() for h in hx) if isinstance(hx, tuple) else hx.float()
        return _recurrence(rnn, x, hx)


def _recurrence(rnn: nn.RNNBase, x, hx):
    """``rnn(x, hx)``; on the fused kernel where it runs (every sequence of a padded tensor is
    its whole length, as the module takes it)."""
    if isinstance(x, torch.Tensor) and x.dtype == torch.float32 and rnn_kernel.usable(rnn, x, hx):
        return rnn_kernel.run(rnn, x, torch.full((x.shape[0],), x.shape[1], dtype=torch.int64), hx)
    return rnn(x, hx)


def _check_lengths(lengths: torch.Tensor, t: int) -> None:
    """No length past the padded length ``t`` (not while tracing: a graph would bake the check
    in; one read of the values, not three tensor ops)."""
    if not rnn_kernel.tracing() and lengths.numel() and max(lengths.tolist()) > t:
        raise ShapeError(f"lengths: values must be <= the padded length {t}, got {lengths.tolist()}")


class _RNNEncoder(nn.Module):
    cell: type[nn.RNNBase]

    def __init__(self, in_dim: int, hidden: int = 128, layers: int = 1, bidirectional: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        require_positive("encoder", hidden=hidden, layers=layers)
        self.rnn = self.cell(in_dim, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                             dropout=dropout if layers > 1 else 0.0)
        self.out_dim = hidden * (2 if bidirectional else 1)
        self.dropout = Dropout(dropout)

    def encode_tokens(self, embedding: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``self(embedding(tokens), lengths)``; small inference batches over a token embedding
        read the first layer's input projections per token (:mod:`attnkit.nn.token_rows`)."""
        first = token_rows.first_layer_rows(embedding, self, self.rnn, tokens)
        if first is None:
            return self(embedding(tokens), lengths)
        _check_lengths(lengths, tokens.shape[1])
        return self.dropout(rnn_kernel.run(self.rnn, None, lengths, first=first)[0])

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Runs the packed recurrence; returns per-position states, zero at padding."""
        t = x.shape[1]
        _check_lengths(lengths, t)
        if rnn_kernel.usable(self.rnn, x):  # small inference batches: one fused call per layer (lengths < 0: empty)
            return self.dropout(rnn_kernel.run(self.rnn, x, lengths)[0])
        # pack_padded_sequence rejects length 0; such rows come back as zeros below anyway
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = run_recurrence(self.rnn, packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        out = out * (lengths > 0).to(out.dtype).view(-1, 1, 1).to(out.device)
        return self.dropout(out)


@ENCODERS.register("lstm")
class LSTMEncoder(_RNNEncoder):
    """(Bi)LSTM encoder, several layers."""

    cell = nn.LSTM


@ENCODERS.register("gru")
class GRUEncoder(_RNNEncoder):
    """(Bi)GRU encoder, several layers."""

    cell = nn.GRU
