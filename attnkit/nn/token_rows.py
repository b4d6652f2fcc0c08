"""An RNN's first-layer input projections kept per token, for small inference batches.

An LSTM/GRU over an embedding table starts every call with ``W_ih e(t) + b`` for each token
``t``: at inference (no dropout, fixed weights) that row depends on the token alone. The fused
kernel (:mod:`attnkit.nn.rnn_kernel`) computed it as one matrix product per call: for the
distilled SST-2 student (384-dim vectors, BiLSTM hidden 128: rows of 1,024 floats) about a
quarter of its time per sentence. Here each distinct token's row is computed the first time it
is seen (one matrix product over the new tokens) and looked up afterwards (one gather).

The rows live in a table with one row per vocabulary entry, allocated but never written
ahead: memory is used only for the tokens seen (4 KiB per token at 1,024 floats). The table
follows the weights it was made from (same parameters at the same version counters, as the
kernel's packed weights): an optimizer step, ``load_state_dict`` or ``.to()`` start a new one.
After edits through ``.data``, which no version counter sees, ``rnn_kernel.forget(rnn)`` packs
the RNN again, and with new packed weights the rows are made again too.

It runs only where the plain path would compute the same thing and nobody is watching the
parts it skips: a :class:`~attnkit.nn.embedding.TokenEmbedding` in eval mode without
``max_norm`` (which edits the table as it reads it), no forward hooks on the embedding, its
parts or the encoder (attributions hook the embedding's output), no gradient wanted, float32
weights, and an RNN the fused kernel runs (``rnn_kernel.usable``). Elsewhere the caller takes
the plain path: ``encoder(embedding(tokens), lengths)``.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from . import rnn_kernel
from .embedding import TokenEmbedding


@dataclass
class _Rows:
    weight: nn.Parameter  # the embedding table the rows come from
    version: tuple  # (data_ptr, _version) of ``weight`` when the table was made
    w_ih: torch.Tensor  # the kernel's packed first-layer weights they were made with
    bias: torch.Tensor
    table: torch.Tensor  # [V, dirs*G]; row i valid once i is in ``seen``
    seen: set = field(default_factory=set)


_tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # rnn -> _Rows


def _plain(embedding: nn.Module) -> bool:
    """Whether ``embedding(tokens)`` is exactly a row lookup in ``embedding.embed.weight``."""
    if type(embedding) is not TokenEmbedding or embedding.training or embedding.embed.max_norm is not None:
        return False
    return not any(rnn_kernel._hooked(m) for m in (embedding, embedding.embed, embedding.dropout))


def first_layer_rows(embedding: nn.Module, encoder: nn.Module, rnn: nn.RNNBase,
                     tokens: torch.Tensor) -> torch.Tensor | None:
    """``W_ih embedding(tokens) + b`` as ``[B, T, dirs*G]`` float32 (the layout of
    ``rnn_kernel.run``'s ``first``), or None where the plain path must run (see the module
    docstring). ``encoder``: the module that holds ``rnn`` (its hooks count too)."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
        return None
    if not _plain(embedding) or rnn_kernel._hooked(encoder):
        return None
    weight = embedding.embed.weight
    if weight.dtype != torch.float32 or tokens.device != weight.device or weight.is_inference():
        return None
    shape = (*tokens.shape, weight.shape[1])
    if not rnn_kernel.usable_on(rnn, shape, weight.dtype, weight.device, (weight,)):
        return None
    ids = tokens.reshape(-1).tolist()
    if min(ids) < 0 or max(ids) >= weight.shape[0]:  # the embedding says what is wrong
        return None
    layer0 = rnn_kernel.packed(rnn)[0]
    if rnn not in rnn_kernel._packed:  # weights made under inference_mode are packed anew on every call: nothing to keep
        return None
    version = (weight.data_ptr(), weight._version)
    rows = _tables.get(rnn)
    if rows is None or rows.weight is not weight or rows.version != version or rows.w_ih is not layer0[0]:
        with torch.inference_mode(False):  # a normal tensor: written later outside inference mode too
            table = torch.empty(weight.shape[0], layer0[0].shape[1])
        rows = _Rows(weight, version, layer0[0], layer0[1], table)
        _tables[rnn] = rows
    new = set(ids).difference(rows.seen)
    if new:
        idx = torch.tensor(sorted(new), dtype=torch.int64)
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            rows.table[idx] = torch.addmm(rows.bias, weight.detach()[idx], rows.w_ih)
        rows.seen.update(new)  # after the rows are written: another thread reads them only then
    return F.embedding(tokens, rows.table)
