"""Sentence pairs as subword ids, batched for encoder-decoder models."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import DataError
from .batching import pad_batch
from .readers import ParallelData
from .subwords import SubwordModel


class TranslationData:
    """Source ids and (optional) target ids of sentence pairs. ``collate`` gives ``src [B, S]``,
    ``src_lengths [B]`` and, with targets, ``tgt_in [B, T]`` (``<s>`` + target) and
    ``tgt_out [B, T]`` (target + ``</s>``, padded with -100), ``tgt_lengths [B]``, and the raw
    ``references`` (a list of strings)."""

    def __init__(self, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None, bos_id: int, eos_id: int,
                 pad_id: int = 0, references: list[str] | None = None):
        if tgt is not None and len(tgt) != len(src):
            raise DataError(f"TranslationData: {len(src)} sources but {len(tgt)} targets")
        self.src, self.tgt = list(src), (None if tgt is None else list(tgt))
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.references = references  # the raw target sentences (scored by BLEU)

    @classmethod
    def from_pairs(cls, data: ParallelData, sw: SubwordModel, max_len: int | None = None,
                   on_long: str = "raise") -> TranslationData:
        """Encode both sides; a side longer than ``max_len`` pieces is an error naming the file
        and line (``on_long="skip"``: left out, as ``data.on_error: skip`` asks)."""
        src, tgt = sw.encode_batch(data.sources), sw.encode_batch(data.targets)
        keep = list(range(len(src)))
        if max_len:
            long = [i for i in keep if len(src[i]) > max_len or len(tgt[i]) + 1 > max_len]
            if long and on_long == "raise":
                i = long[0]
                side, path, n = (("source", data.src_path, len(src[i])) if len(src[i]) > max_len
                                 else ("target", data.tgt_path, len(tgt[i]) + 1))
                raise DataError(f"{path}:{data.lines[i]}: the {side} sentence is {n} subwords, longer than the "
                                f"model's limit of {max_len} ({len(long)} such pair(s) in all); raise "
                                f"model.encoder.max_len and model.decoder.max_len, or set data.on_error: skip to "
                                f"leave them out (never cut silently)")
            skipped = set(long)
            keep = [i for i in keep if i not in skipped]
        return cls([src[i] for i in keep], [tgt[i] for i in keep], sw.bos_id, sw.eos_id, sw.pad_id,
                   references=[data.targets[i] for i in keep])

    def __len__(self) -> int:
        return len(self.src)

    @property
    def lengths(self) -> list[int]:
        """The larger side of each pair, in tokens (for token-budget batches)."""
        if self.tgt is None:
            return [len(s) for s in self.src]
        return [max(len(s), len(t) + 1) for s, t in zip(self.src, self.tgt)]

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The batch of pairs ``indices``, each side padded to its longest."""
        idx = [int(i) for i in indices]
        src, src_len = pad_batch([self.src[i] or [self.eos_id] for i in idx], self.pad_id)
        batch = {"src": src, "src_lengths": src_len}
        if self.references is not None:
            batch["references"] = [self.references[i] for i in idx]  # the raw text BLEU is scored against
        if self.tgt is not None:
            tgt_in, tgt_len = pad_batch([[self.bos_id, *self.tgt[i]] for i in idx], self.pad_id)
            tgt_out, _ = pad_batch([[*self.tgt[i], self.eos_id] for i in idx], -100)
            batch.update(tgt_in=tgt_in, tgt_out=tgt_out, tgt_lengths=tgt_len)
        return batch
