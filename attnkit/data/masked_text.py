"""Text for masked-language-model pretraining: texts cut into sequences of word pieces, and
BERT's dynamic masking drawn again every time a batch is made (Devlin et al., 2019; Liu et
al., 2019 "RoBERTa" for masking anew each epoch).

Of the pieces of a sequence (special ids excluded) each is chosen with probability
``fraction`` (at least one per sequence); a chosen piece becomes the mask id 80% of the time,
a random ordinary piece 10% and stays itself 10%, and its original id is the target. Other
positions have target -100 (ignored by the loss)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .batching import pad_batch

IGNORE = -100  # target of a position the loss skips (torch's cross_entropy ignore_index)


def cut_into_sequences(ids: Sequence[Sequence[int]], max_len: int, min_len: int = 2) -> list[list[int]]:
    """Each text's piece ids cut into consecutive sequences of at most ``max_len`` pieces, so
    a long review trains on all of its text; pieces left over shorter than ``min_len`` are dropped."""
    out = []
    for seq in ids:
        for start in range(0, len(seq), max_len):
            part = list(seq[start:start + max_len])
            if len(part) >= min_len or (start == 0 and part):
                out.append(part)
    return out


def mask_tokens(tokens: torch.Tensor, lengths: torch.Tensor, mask_id: int, vocab_size: int, first_ordinary: int,
                fraction: float = 0.15, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` for a padded batch ``tokens [B, T]``: BERT's 80/10/10 masking of
    about ``fraction`` of the ordinary pieces (ids >= ``first_ordinary``) before ``lengths``;
    at least one per sequence that has an ordinary piece. ``generator``: the random source
    (None: torch's global one, which a training checkpoint saves and restores)."""
    b, t = tokens.shape
    ordinary = (torch.arange(t)[None, :] < lengths[:, None]) & (tokens >= first_ordinary)
    draw = torch.rand(b, t, generator=generator)
    chosen = (draw < fraction) & ordinary
    # a sequence with nothing chosen gets its ordinary piece with the smallest draw: every
    # sequence then contributes to the loss, which keeps short sentences from being skipped
    none = ~chosen.any(1) & ordinary.any(1)
    if none.any():
        lowest = draw.masked_fill(~ordinary, 2.0).argmin(1)
        chosen[none, lowest[none]] = True
    targets = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE))
    how = torch.rand(b, t, generator=generator)
    inputs = tokens.clone()
    inputs[chosen & (how < 0.8)] = mask_id
    swap = chosen & (how >= 0.8) & (how < 0.9)
    random_ids = torch.randint(first_ordinary, vocab_size, (b, t), generator=generator)
    inputs[swap] = random_ids[swap]
    return inputs, targets


class MaskedTextData:
    """Sequences of piece ids for the ``masked_lm`` task. ``collate(indices)`` pads them and
    masks anew on every call (``fixed_seed`` set: the same masks every time, for a dev score
    that can be compared between epochs); it gives ``tokens``, ``lengths``, ``targets`` and
    ``predict`` (1 where a piece is to be predicted; 0 elsewhere, padding included)."""

    def __init__(self, sequences: list[list[int]], mask_id: int, vocab_size: int, first_ordinary: int,
                 fraction: float = 0.15, fixed_seed: int | None = None):
        self.sequences = sequences
        self.mask_id, self.vocab_size, self.first_ordinary = mask_id, vocab_size, first_ordinary
        self.fraction, self.fixed_seed = fraction, fixed_seed

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def lengths(self) -> list[int]:
        """Pieces per sequence (for length-bucketed batches)."""
        return [len(s) for s in self.sequences]

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """A padded, freshly masked batch (fixed masks per example with ``fixed_seed``)."""
        tokens, lengths = pad_batch([self.sequences[i] for i in indices])
        if self.fixed_seed is None:
            inputs, targets = mask_tokens(tokens, lengths, self.mask_id, self.vocab_size, self.first_ordinary,
                                          self.fraction)
        else:  # example i is masked the same way whatever batch it is in
            parts = [mask_tokens(tokens[k:k + 1, :int(lengths[k])], lengths[k:k + 1], self.mask_id, self.vocab_size,
                                 self.first_ordinary, self.fraction,
                                 torch.Generator().manual_seed(self.fixed_seed + int(i)))
                     for k, i in enumerate(indices)]
            inputs, targets = torch.zeros_like(tokens), torch.full_like(tokens, IGNORE)
            for k, (x, y) in enumerate(parts):
                inputs[k, :x.shape[1]], targets[k, :y.shape[1]] = x[0], y[0]
        return {"tokens": inputs, "lengths": lengths, "targets": targets, "predict": (targets != IGNORE).long()}
