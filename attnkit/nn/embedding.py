"""Token embeddings: random init (xavier / kaiming / normal) or pretrained vectors read from
a text file (word2vec/GloVe text format), with an optional frozen flag."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..attention.dropout import Dropout
from ..config import require_positive
from ..errors import ConfigError, DataError
from ..files import atomic_write
from .registry import EMBEDDINGS

INITS = {
    "xavier": nn.init.xavier_uniform_,
    "kaiming": lambda w: nn.init.kaiming_uniform_(w, a=math.sqrt(5)),
    "normal": lambda w: nn.init.normal_(w, std=0.1),
}


def _vector_lines(path: str | Path):
    """``(line number, [word, v1, ...])`` of a word-vector text file (a word2vec ``count dim``
    header line and lines without a word are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pretrained vector file not found")
    with path.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip().split(" ")
            if lineno == 1 and len(parts) == 2 and all(x.isdigit() for x in parts):
                continue  # word2vec header
            if parts[0]:
                yield lineno, parts


def read_vectors(path: str | Path, vocab: dict[str, int], dim: int,
                 lowercase: bool = False) -> tuple[torch.Tensor, int]:
    """Rows of ``vocab`` found in a word-vector text file (``word v1 ... vD`` per line; a
    word2vec ``count dim`` header line is skipped). With ``lowercase`` (a lower-cased
    vocabulary) a file word is looked up lower-cased, the first of its spellings wins.
    Returns ``(vectors [V, D] with NaN for words not found, number found)``."""
    out = torch.full((len(vocab), dim), float("nan"))
    done: set[int] = set()
    for lineno, parts in _vector_lines(path):
        if len(parts) != dim + 1:
            raise DataError(f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts) - 1} numbers")
        idx = vocab.get(parts[0].lower() if lowercase else parts[0])
        if idx is None or idx in done:
            continue
        try:
            out[idx] = torch.tensor([float(x) for x in parts[1:]])
        except ValueError:
            raise DataError(f"{path}:{lineno}: not a number in the vector of {parts[0]!r}") from None
        done.add(idx)
    return out, len(done)


def vector_words(path: str | Path) -> list[str]:
    """The words of a word-vector text file, in file order (the vectors are not parsed)."""
    return [parts[0] for _, parts in _vector_lines(path)]


def write_vectors(path: str | Path, words: list[str], vectors: torch.Tensor) -> None:
    """``word v1 ... vD`` per line, the text format :func:`read_vectors` reads, written
    atomically row by row; a word that is empty or holds a space is refused."""
    if len(words) != len(vectors):
        raise ValueError(f"{len(words)} words but {len(vectors)} vectors")
    bad = [w for w in words if not w or any(c.isspace() for c in w)]
    if bad:
        raise DataError(f"{path}: a word of a vector file cannot be empty or hold a space: {bad[0]!r}")

    def write(f):
        for w, v in zip(words, vectors):
            f.write((w + " " + " ".join(f"{x:.5g}" for x in v.tolist()) + "\n").encode("utf-8"))
    atomic_write(path, write)


@EMBEDDINGS.register("tokens")
class TokenEmbedding(nn.Module):
    """``tokens [B, T] -> [B, T, dim]``; row ``pad_id`` is zero and gets no gradient.

    ``word_dropout``: while training, each word is read as the unknown word ``unk_id`` with
    this probability, so the unknown-word vector learns what an unseen word looks like (with
    ``min_freq: 1`` it would otherwise never train, and every unseen test word would get an
    untrained vector)."""

    def __init__(self, vocab_size: int, dim: int, *, pad_id: int = 0, init: str = "normal",
                 dropout: float = 0.0, freeze: bool = False, pretrained: torch.Tensor | None = None,
                 word_dropout: float = 0.0, unk_id: int = 1):
        super().__init__()
        require_positive("embedding", vocab_size=vocab_size, dim=dim)
        if not 0 <= word_dropout < 1:
            raise ConfigError(f"embedding.word_dropout: must be in [0, 1), got {word_dropout!r}")
        self.word_dropout, self.unk_id, self.pad_id = word_dropout, unk_id, pad_id
        if init not in INITS:
            raise ConfigError(f"embedding.init: unknown {init!r}; known: {', '.join(INITS)}")
        self.out_dim = dim
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        INITS[init](self.embed.weight.data)
        if pretrained is not None:
            if tuple(pretrained.shape) != (vocab_size, dim):
                raise ConfigError(f"embedding.pretrained: expected shape [{vocab_size}, {dim}], got "
                                  f"{list(pretrained.shape)}")
            known = ~torch.isnan(pretrained).any(-1)  # words without a vector keep their random init
            self.embed.weight.data[known] = pretrained[known]
        self.embed.weight.data[pad_id] = 0
        self.embed.weight.requires_grad_(not freeze)
        self.dropout = Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Embeds token ids (some read as unknown while training, with ``word_dropout``)."""
        if self.training and self.word_dropout > 0:
            drop = (torch.rand(tokens.shape, device=tokens.device) < self.word_dropout) & (tokens != self.pad_id)
            tokens = tokens.masked_fill(drop, self.unk_id)
        return self.dropout(self.embed(tokens))
