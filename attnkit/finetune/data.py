"""Text encoded with a pretrained model's own tokenizer.

Classification reuses :class:`attnkit.data.TextClassificationData` (word-piece ids instead of
word ids). Token classification needs word-piece alignment: every word is split into pieces,
the first piece of each word carries the word's tag and the others are ignored; the model
reads its prediction for a word at that first piece, so predictions map back to the original
words and are scored with the same entity F1 as from-scratch taggers."""
from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Sequence

import torch

from ..data import TextClassificationData, pad_batch
from ..data.batching import TAG_PAD, conll_tag_ids, table_label_ids
from ..errors import DataError

log = logging.getLogger("attnkit")


class SavedWithRun:
    """Adapts a transformers object (tokenizer, model config) to the run directory's
    ``save(path)`` protocol: it is written as a folder by ``save_pretrained``."""

    def __init__(self, obj):
        self.obj = obj

    def save(self, path) -> None:
        """``save_pretrained(path)``."""
        self.obj.save_pretrained(str(path))


def encode_texts(tokenizer, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Word-piece ids with the model's special tokens, at most ``max_len`` of them."""
    if not texts:
        return []
    return tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"]


def text_data(tokenizer, texts: Sequence[str], labels: Sequence[int] | None, max_len: int) -> TextClassificationData:
    """A classification data set of word-piece ids."""
    return TextClassificationData(encode_texts(tokenizer, texts, max_len), labels)


def text_data_from_table(tokenizer, table, label_vocab, max_len: int) -> TextClassificationData:
    """A table's texts as word pieces and its labels as ids (unseen labels name file:line)."""
    return text_data(tokenizer, table.texts, table_label_ids(table, label_vocab), max_len)


def _tokenize_words(tokenizer, sentences: list[list[str]]) -> tuple[list[list[int]], list[list[int | None]]]:
    """Word-piece ids (special tokens included, not cut) of pre-split sentences, and the index
    of each word's first piece (None for a word that gives no piece)."""
    if not sentences:
        return [], []
    enc = tokenizer(sentences, is_split_into_words=True, truncation=False)
    firsts = []
    for i, s in enumerate(sentences):
        starts: list[int | None] = [None] * len(s)
        for pos, w in enumerate(enc.word_ids(i)):
            if w is not None and starts[w] is None:
                starts[w] = pos
        firsts.append(starts)
    return list(enc["input_ids"]), firsts


def _shown(word: str) -> str:
    """``repr(word)`` with invisible characters (marks, format and control characters, odd spaces)
    escaped too: U+FE0F shows as ``'\\ufe0f'`` rather than as quotes around nothing visible."""
    def show(c: str) -> str:
        if c == " " or unicodedata.category(c)[0] not in "CMZ":
            return c
        o = ord(c)
        return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
    return "".join(show(c) for c in repr(word))


class WordPieceTaggingData:
    """Sentences as word pieces. ``collate`` gives ``tokens [B, P]`` and ``lengths [B]`` (pieces,
    special tokens included), ``first [B, W]`` (the piece index of each word's first piece),
    ``word_lengths [B]`` and, with tags, ``tags [B, W]`` (word level, padded with -100)."""

    def __init__(self, pieces: list[list[int]], first: list[list[int]], tags: list[list[int]] | None = None):
        self.pieces, self.first, self.tags = pieces, first, tags

    @classmethod
    def encode(cls, tokenizer, sentences: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None = None,
               max_len: int = 512, where: Sequence[str] | None = None,
               word_at: Callable[[int, int], str] | None = None) -> WordPieceTaggingData:
        """Split each sentence's words into pieces; a sentence longer than ``max_len`` pieces
        is a DataError naming it (``where[i]``: file and line), as cutting it would drop words.
        A word the tokenizer maps to no piece (a lone invisible character such as U+FE0F) is read
        as the unknown token, so every word keeps one first piece and its tag; one warning per
        call counts such words and names the first (``word_at(i, w)``: where word ``w`` of sentence
        ``i`` is, e.g. its file and line)."""
        sentences = [list(s) for s in sentences]
        ids, firsts = _tokenize_words(tokenizer, sentences)
        empty = [(i, w) for i, starts in enumerate(firsts) for w, pos in enumerate(starts) if pos is None]
        if empty and tokenizer.unk_token is not None:
            redo = sorted({i for i, _ in empty})
            fixed = {i: list(sentences[i]) for i in redo}
            for i, w in empty:
                fixed[i][w] = tokenizer.unk_token
            redo_ids, redo_firsts = _tokenize_words(tokenizer, [fixed[i] for i in redo])
            for k, i in enumerate(redo):
                ids[i], firsts[i] = redo_ids[k], redo_firsts[k]
        pieces, first = [], []
        for i, s in enumerate(sentences):
            at = f"{where[i]}: " if where is not None else f"sentence {i}: "
            if len(ids[i]) > max_len:
                raise DataError(f"{at}{len(s)} words make {len(ids[i])} word pieces, more than model.finetune.max_len "
                                f"= {max_len}; raise it (up to the model's maximum) or split the sentence")
            missing = sum(pos is None for pos in firsts[i])
            if missing:  # no unknown token, or the tokenizer drops it too
                raise DataError(f"{at}{missing} word(s) produce no word piece with this tokenizer")
            pieces.append(ids[i])
            first.append(firsts[i])
        if empty:
            i, w = empty[0]
            at = (word_at(i, w) if word_at is not None else
                  f"{where[i]}, word {w + 1}" if where is not None else f"sentence {i}, word {w + 1}")
            log.warning(f"{len(empty)} word(s) in {len({i for i, _ in empty})} sentence(s) have no word piece with "
                        f"this tokenizer (e.g. {_shown(sentences[i][w])} at {at}); read as {tokenizer.unk_token}")
        return cls(pieces, first, None if tags is None else [list(t) for t in tags])

    @classmethod
    def from_conll(cls, tokenizer, data, tag_vocab, max_len: int = 512) -> WordPieceTaggingData:
        """A CoNLL file's sentences as word pieces, tags as ids; errors name file and line (one
        word a line: word ``w`` of a sentence is ``w`` lines below its first)."""
        return cls.encode(tokenizer, data.sentences, conll_tag_ids(data, tag_vocab), max_len,
                          where=[f"{data.path}:{line}" for line in data.lines],
                          word_at=lambda i, w: f"{data.path}:{data.lines[i] + w}")

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def lengths(self) -> list[int]:
        """Pieces per sentence (for length-bucketed batches)."""
        return [len(p) for p in self.pieces]

    def collate(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The batch of sentences ``indices``."""
        indices = [int(i) for i in indices]
        tokens, lengths = pad_batch([self.pieces[i] for i in indices])
        first, word_lengths = pad_batch([self.first[i] for i in indices])
        batch = {"tokens": tokens, "lengths": lengths, "first": first, "word_lengths": word_lengths}
        if self.tags is not None:
            batch["tags"] = pad_batch([self.tags[i] for i in indices], TAG_PAD)[0]
        return batch
