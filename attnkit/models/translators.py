"""Encoder-decoder models for translation, from blocks:

    source ids -> embedding -> encoder (transformer | gru | lstm) -> decoder (transformer | gru | lstm) -> vocabulary

Source and target share one subword vocabulary (a joint BPE model), so by default they share
one embedding, tied to the output layer where the sizes allow. ``forward`` runs the whole
target prefix at once (teacher forcing); ``start``/``step`` decode one token at a time with a
cache, which is what :mod:`attnkit.models.search` drives."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_keys
from ..errors import ConfigError
from ..nn import DECODERS, ENCODERS, TokenEmbedding
from ..nn.decoders import embed_scale
from .builder import build_block
from .classifiers import TaskModel
from .model_config import ModelConfig

EMBEDDING_KEYS = ("dim", "dropout", "shared")
HEAD_KEYS = ("tie", "label_smoothing")


class Translator(TaskModel):
    """``{src, src_lengths, tgt_in} -> logits [B, T, V]`` (and ``cross_attention [B, T, S]``,
    the last decoder layer's weights averaged over heads, with ``need_weights``)."""

    target = "tgt_out"

    def __init__(self, cfg: ModelConfig, vocab_size: int, pad_id: int = 0, bos_id: int = 2, eos_id: int = 3, **_):
        super().__init__()
        emb = {"dim": 256, "dropout": 0.0, "shared": True, **cfg.embedding}
        check_keys(emb, EMBEDDING_KEYS, "model.embedding")
        head = {"tie": True, "label_smoothing": 0.1, **cfg.head}
        check_keys(head, HEAD_KEYS, "model.head")
        if not 0 <= float(head["label_smoothing"]) < 1:
            raise ConfigError(f"model.head.label_smoothing: must be in [0, 1), got {head['label_smoothing']!r}")
        dim = int(emb["dim"])
        self.pad_id, self.bos_id, self.eos_id, self.vocab_size = pad_id, bos_id, eos_id, vocab_size
        self.label_smoothing = float(head["label_smoothing"])
        enc = {"type": "transformer", **cfg.encoder}
        if enc["type"] == "transformer":
            enc = {"dim": dim, **enc}
        self.encoder = build_block(ENCODERS, enc, "model.encoder", dim)
        dec = {"type": "transformer" if enc["type"] == "transformer" else "gru", **(cfg.decoder or {})}
        self.transformer = dec["type"] == "transformer"
        if self.transformer:
            self.memory_proj = (nn.Linear(self.encoder.out_dim, dim) if self.encoder.out_dim != dim
                                else nn.Identity())
            self.decoder = build_block(DECODERS, dec, "model.decoder", dim)
        else:
            self.memory_proj = nn.Identity()
            self.decoder = build_block(DECODERS, dec, "model.decoder", dim, self.encoder.out_dim)
        self.scale = embed_scale(dim) if self.transformer else 1.0
        self.embedding = self._embedding(vocab_size, dim, float(emb["dropout"]))
        self.tgt_embedding = (self.embedding if emb["shared"]
                              else self._embedding(vocab_size, dim, float(emb["dropout"])))
        self.out = nn.Linear(self.decoder.out_dim, vocab_size, bias=False)
        if head["tie"] and self.decoder.out_dim == dim:
            self.out.weight = self.tgt_embedding.embed.weight
        elif head["tie"] and "tie" in cfg.head:
            raise ConfigError(f"model.head.tie: the decoder's output ({self.decoder.out_dim}) and the embedding "
                              f"({dim}) differ in size; set tie: false or make them equal")

    def _embedding(self, vocab_size: int, dim: int, dropout: float) -> TokenEmbedding:
        e = TokenEmbedding(vocab_size, dim, pad_id=self.pad_id, dropout=dropout)
        nn.init.normal_(e.embed.weight, 0.0, dim ** -0.5)  # times sqrt(dim): unit scale (shared with the output)
        with torch.no_grad():
            e.embed.weight[self.pad_id] = 0
        return e

    @property
    def max_target_len(self) -> int | None:
        """The longest target the decoder reads (None: no limit)."""
        return getattr(self.decoder, "max_len", None)

    @property
    def max_source_len(self) -> int | None:
        """The longest source the encoder reads (None: no limit)."""
        return getattr(self.encoder, "max_len", None) if self.transformer else None

    # ------------------------------------------------------------------ teacher forcing
    def start(self, batch: dict) -> dict:
        """Encode the source; the decoder's initial state (batch first)."""
        src, lengths = batch["src"], batch["src_lengths"]
        memory = self.encoder(self.embedding(src) * self.scale, lengths)
        return self.decoder.start(self.memory_proj(memory), lengths)

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        """Logits of every target position given the gold prefix (nothing without a target:
        translations come from :mod:`attnkit.models.search`)."""
        if "tgt_in" not in batch:
            return {}
        state = self.start(batch)
        y = self.tgt_embedding(batch["tgt_in"]) * self.scale
        h, weights = self.decoder(y, state, need_weights)
        out = {"logits": self.out(h)}
        if need_weights:
            out["cross_attention"] = _head_mean(weights[-1])
        return out

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        """Label-smoothed cross-entropy per target token (padding ignored)."""
        logits = out["logits"]
        return F.cross_entropy(_wide(logits.reshape(-1, logits.shape[-1])), batch["tgt_out"].reshape(-1),
                               ignore_index=-100, label_smoothing=self.label_smoothing)

    def predict(self, out: dict, batch: dict | None = None) -> torch.Tensor:
        """Teacher-forced arg-max tokens (translations come from :mod:`attnkit.models.search`)."""
        return out["logits"].argmax(-1)

    # ------------------------------------------------------------------ one step at a time
    def step(self, tokens: torch.Tensor, state: dict, need_weights: bool = False):
        """Log-probabilities ``[N, V]`` of the token after ``tokens [N]`` (the last token of each
        prefix), the new state, and the cross-attention ``[N, S]`` (with ``need_weights``)."""
        y = self.tgt_embedding(tokens[:, None]) * self.scale
        h, weights, state = self.decoder.step(y, state, need_weights)
        logp = torch.log_softmax(_wide(self.out(h[:, 0])), -1)
        w = _head_mean(weights[-1])[:, 0] if need_weights else None
        return logp, state, w

    def embedding_layer(self):
        """The source embedding (attributions are over source words)."""
        return self.embedding


def _wide(t: torch.Tensor) -> torch.Tensor:
    """Half-precision logits in fp32 for the softmax (fp32 and fp64 unchanged)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def _head_mean(w: torch.Tensor | None) -> torch.Tensor | None:
    """``[B, heads, T, S]`` -> ``[B, T, S]``; ``[B, T, S]`` unchanged."""
    if w is None:
        return None
    return w.mean(1) if w.dim() == 4 else w
