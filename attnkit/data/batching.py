"""Padding, length-bucketed batch order, and the in-memory data sets a trainer batches.

A data set here is a plain indexable object (``len``, ``ds[i]``) with
``collate(indices) -> dict of tensors``. The trainer asks :func:`length_bucketed_batches`
for lists of indices and calls ``collate`` on each; to use a ``torch.utils.data.DataLoader``
(worker processes), pass it the indices, not the items::

    DataLoader(range(len(ds)), batch_sampler=batches, collate_fn=ds.collate)
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import torch

from ..errors import ConfigError, DataError, ShapeError
from .conll import ConllData
from .readers import TableData
from .vocab import CharVocab, LabelVocab, Vocab, get_tokenizer

TAG_PAD = -100  # the ignore_index of torch.nn.functional.cross_entropy


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [B, T], lengths [B])`` with T the longest sequence in the batch (at least 1,
    so a batch of empty sequences still has a time axis); both LongTensors."""
    if len(seqs) == 0:
        raise ShapeError("pad_batch needs at least one sequence")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    width = max(int(lengths.max()), 1)
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    if all(isinstance(s, torch.Tensor) for s in seqs):
        flat = torch.cat([s.reshape(-1).long() for s in seqs])
    else:
        flat = torch.tensor(list(chain.from_iterable(seqs)), dtype=torch.long)
    out[torch.arange(width) < lengths[:, None]] = flat  # row-major order matches chain()
    return out, lengths


def _generator(seed: int, epoch: int) -> torch.Generator:
    # One stream per (seed, epoch): a resumed run at epoch e sees the order it saw before.
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)


def length_bucketed_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    bucket_factor: int = 50,
) -> list[list[int]]:
    """Batches of indices (every index exactly once) whose sequences have similar lengths.

    Shuffled (a torch.Generator seeded by ``seed`` and ``epoch``), cut into pools of
    ``batch_size * bucket_factor``, each pool sorted by length and cut into batches, then
    the batch order shuffled: little padding, yet a different mix every epoch. Without
    ``shuffle``, consecutive batches in the original order (for evaluation).
    """
    if batch_size < 1 or bucket_factor < 1:
        raise ConfigError(f"batch_size and bucket_factor must be >= 1; got {batch_size}, "
                          f"{bucket_factor}")
    lengths = lengths.tolist() if isinstance(lengths, (torch.Tensor, np.ndarray)) else lengths
    n = len(lengths)
    if not shuffle:
        return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    return _pooled_batches(lengths, batch_size * bucket_factor, seed, epoch,
                           lambda pool: [pool[i:i + batch_size] for i in range(0, len(pool), batch_size)])


def _pooled_batches(lengths: list[int], pool_size: int, seed: int, epoch: int, cut) -> list[list[int]]:
    """Shuffle (per ``(seed, epoch)``), sort each pool of ``pool_size`` by length, ``cut(pool)``
    it into batches, shuffle the batch order."""
    g = _generator(seed, epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    batches: list[list[int]] = []
    for start in range(0, len(lengths), pool_size):
        batches += cut(sorted(order[start:start + pool_size], key=lengths.__getitem__))  # stable sort
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def token_budget_batches(
    lengths: Sequence[int],
    max_tokens: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    bucket_factor: int = 50,
) -> list[list[int]]:
    """Batches of indices whose padded size ``len(batch) * longest`` stays within
    ``max_tokens`` (a batch of one longer example is allowed): many short sentences or a few
    long ones per batch, so every step costs about the same.

    As :func:`length_bucketed_batches`: shuffled per ``(seed, epoch)``, sorted by length in
    pools (``bucket_factor`` batches of the typical size each), cut, then the batch order
    shuffled; without ``shuffle``, the original order cut greedily (evaluation)."""
    if max_tokens < 1 or bucket_factor < 1:
        raise ConfigError(f"max_tokens and bucket_factor must be >= 1; got {max_tokens}, {bucket_factor}")
    lengths = lengths.tolist() if isinstance(lengths, (torch.Tensor, np.ndarray)) else list(lengths)
    n = len(lengths)
    if not shuffle:
        return _cut_by_budget(list(range(n)), lengths, max_tokens)
    typical = max(1, max_tokens // max(1, int(np.median(lengths)) if n else 1))
    return _pooled_batches(lengths, typical * bucket_factor, seed, epoch,
                           lambda pool: _cut_by_budget(pool, lengths, max_tokens))


def _cut_by_budget(order: list[int], lengths: list[int], max_tokens: int) -> list[list[int]]:
    batches, cur, longest = [], [], 0
    for i in order:
        width = max(longest, lengths[i], 1)
        if cur and width * (len(cur) + 1) > max_tokens:
            batches.append(cur)
            cur, width = [], max(lengths[i], 1)
        cur.append(i)
        longest = width
    if cur:
        batches.append(cur)
    return batches


def _index_tensor(indices: Sequence[int]) -> torch.Tensor:
    return torch.as_tensor(indices, dtype=torch.long)


def _check_same_length(what: str, a: Sequence, b: Sequence | None) -> None:
    if b is not None and len(a) != len(b):
        raise DataError(f"{what}: {len(a)} examples but {len(b)} labels")


def table_label_ids(table: TableData, label_vocab: LabelVocab | None) -> list[int] | None:
    """Label ids of a table's rows (None without labels or vocabulary); a label the
    vocabulary has not seen is a DataError naming its file and line."""
    if label_vocab is None or table.labels is None:
        return None
    return [label_vocab.encode(label, where=f"{table.path}:{line}") for label, line in zip(table.labels, table.lines)]


def conll_tag_ids(data: ConllData, tag_vocab: LabelVocab | None) -> list[list[int]] | None:
    """Tag ids of every sentence (None without a vocabulary); an unseen tag is a DataError
    naming its file and line."""
    if tag_vocab is None:
        return None
    return [[tag_vocab.encode(t, where=f"{data.path}:{start + k}") for k, t in enumerate(sentence_tags)]
            for sentence_tags, start in zip(data.tags, data.lines)]


class TextClassificationData:
    """Token ids and (optional) label ids of texts; ``collate`` gives ``tokens [B, T]``,
    ``lengths [B]`` and ``labels [B]``."""

    def __init__(self, tokens: Sequence[Sequence[int]], labels: Sequence[int] | None = None):
        _check_same_length("TextClassificationData", tokens, labels)
        self.tokens = tokens
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)

    @classmethod
    def from_table(
        cls,
        table: TableData,
        vocab: Vocab,
        label_vocab: LabelVocab | None = None,
        *,
        tokenizer: str = "whitespace",
        max_len: int | None = None,
    ) -> TextClassificationData:
        """Tokenise, encode (at most ``max_len`` tokens) and encode labels of a table; a
        label unseen by ``label_vocab`` is a DataError naming its file and line."""
        tokenize = get_tokenizer(tokenizer)
        tokens = [vocab.encode(tokenize(text))[:max_len] for text in table.texts]
        return cls(tokens, table_label_ids(table, label_vocab))

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict:
        item = {"tokens": self.tokens[i]}
        if self.labels is not None:
            item["label"] = int(self.labels[i])
        return item

    @property
    def lengths(self) -> list[int]:
        """Number of tokens of each example (for :func:`length_bucketed_batches`)."""
        return [len(t) for t in self.tokens]

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The batch of examples ``indices``, padded to its longest text."""
        tokens, lengths = pad_batch([self.tokens[int(i)] for i in indices])
        batch = {"tokens": tokens, "lengths": lengths}
        if self.labels is not None:
            batch["labels"] = self.labels[_index_tensor(indices)]
        return batch


class TokenTaggingData:
    """Token ids, optional character ids per word, and optional tag ids of sentences;
    ``collate`` gives ``tokens [B, T]``, ``lengths [B]``, ``tags [B, T]`` (padded with
    -100, ignored by cross-entropy) and ``chars [B, T, W]`` (padded with 0)."""

    def __init__(
        self,
        tokens: Sequence[Sequence[int]],
        tags: Sequence[Sequence[int]] | None = None,
        chars: Sequence[Sequence[Sequence[int]]] | None = None,
    ):
        for name, other in (("tags", tags), ("chars", chars)):
            if other is None:
                continue
            _check_same_length(f"TokenTaggingData {name}", tokens, other)
            for i, (a, b) in enumerate(zip(tokens, other)):
                if len(a) != len(b):
                    raise DataError(f"sentence {i}: {len(a)} tokens but {len(b)} {name}")
        self.tokens, self.tags, self.chars = tokens, tags, chars

    @classmethod
    def from_conll(
        cls,
        data: ConllData,
        vocab: Vocab,
        tag_vocab: LabelVocab | None = None,
        char_vocab: CharVocab | None = None,
        *,
        max_word_len: int | None = None,
    ) -> TokenTaggingData:
        """Encode a CoNLL file's sentences; a tag unseen by ``tag_vocab`` is a DataError
        naming its file and line."""
        tokens = [vocab.encode(s) for s in data.sentences]
        tags = conll_tag_ids(data, tag_vocab)
        chars = None
        if char_vocab is not None:
            chars = [char_vocab.encode_words(s, max_word_len) for s in data.sentences]
        return cls(tokens, tags, chars)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict:
        item = {"tokens": self.tokens[i]}
        if self.tags is not None:
            item["tags"] = self.tags[i]
        if self.chars is not None:
            item["chars"] = self.chars[i]
        return item

    @property
    def lengths(self) -> list[int]:
        """Number of tokens of each sentence."""
        return [len(t) for t in self.tokens]

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The batch of sentences ``indices``, padded to its longest sentence (and word)."""
        indices = [int(i) for i in indices]
        tokens, lengths = pad_batch([self.tokens[i] for i in indices])
        batch = {"tokens": tokens, "lengths": lengths}
        if self.tags is not None:
            batch["tags"] = pad_batch([self.tags[i] for i in indices], TAG_PAD)[0]
        if self.chars is not None:
            words = [w for i in indices for w in self.chars[i]]
            padded = pad_batch(words)[0] if words else torch.zeros(0, 1, dtype=torch.long)
            chars = torch.zeros(*tokens.shape, padded.shape[1], dtype=torch.long)
            chars[torch.arange(tokens.shape[1]) < lengths[:, None]] = padded
            batch["chars"] = chars
        return batch


class ImageData:
    """Images (uint8 ``[N, H, W]`` or ``[N, C, H, W]``) and optional labels; ``collate``
    gives ``images [B, C, H, W]`` as float32 ``(x / 255 - mean) / std`` and ``labels [B]``.
    Images stay uint8 in memory (4x smaller) and become float batch by batch."""

    def __init__(self, images, labels=None, *, mean: float = 0.0, std: float = 1.0):
        images = torch.as_tensor(images)
        if images.ndim not in (3, 4):
            raise ShapeError(f"images must be [N, H, W] or [N, C, H, W]; got {tuple(images.shape)}")
        if not std > 0:
            raise ConfigError(f"std must be > 0; got {std}")
        _check_same_length("ImageData", images, labels)
        self.images = images
        self.labels = None if labels is None else torch.as_tensor(labels).long()
        self.mean, self.std = float(mean), float(std)

    @staticmethod
    def stats(images) -> tuple[float, float]:
        """``(mean, std)`` of all pixels scaled to [0, 1]: compute on the training images
        and pass the same values to every split."""
        x = torch.as_tensor(images)
        if x.dtype == torch.uint8:  # exact and cheap: a 256-bin histogram, no float copy
            counts = torch.bincount(x.reshape(-1), minlength=256).double()
            values = torch.arange(256, dtype=torch.float64) / 255
            mean = (counts * values).sum() / counts.sum()
            var = (counts * (values - mean) ** 2).sum() / counts.sum()
            return float(mean), float(var.sqrt())
        x = x.double()
        return float(x.mean()), float(x.std(unbiased=False))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item = {"image": self.collate([i])["images"][0]}
        if self.labels is not None:
            item["label"] = int(self.labels[i])
        return item

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The batch of images ``indices``, normalised."""
        index = _index_tensor(indices)
        x = self.images[index]
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        x = (x - self.mean) / self.std
        batch = {"images": x.unsqueeze(1) if x.ndim == 3 else x}
        if self.labels is not None:
            batch["labels"] = self.labels[index]
        return batch
