"""Subwords for translation: one joint BPE or unigram model trained from both sides of the
training pairs with Hugging Face ``tokenizers`` (not re-implemented), saved in the run.

Text is NFKC-normalised and split at spaces the SentencePiece way (a word's first piece
carries ``▁``), so :meth:`SubwordModel.decode` gives back detokenised text. Ids 0-3 are
``<pad>``, ``<unk>``, ``<s>``, ``</s>`` for every model."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError, DataError
from ..files import write_json

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
KINDS = ("bpe", "unigram")


class SubwordModel:
    """A trained subword model: ``encode(text) -> ids``, ``decode(ids) -> text``."""

    kind = "subwords"

    def __init__(self, tokenizer):
        self.tok = tokenizer
        vocab = tokenizer.get_vocab()
        if [vocab.get(s) for s in SPECIALS] != list(range(len(SPECIALS))):
            raise DataError(f"subword model: ids 0-3 must be {', '.join(SPECIALS)}")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, model: str = "bpe",
              min_frequency: int = 2) -> SubwordModel:
        """Learn a ``model`` (``bpe`` or ``unigram``) of about ``vocab_size`` pieces from ``texts``."""
        return cls(train_tokenizer(texts, vocab_size, model, min_frequency))

    def __len__(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """The piece ids of one text (no ``<s>``/``</s>``)."""
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """:meth:`encode` of many texts (in parallel inside ``tokenizers``)."""
        return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """The piece strings of ``ids`` (``▁`` marks a word start)."""
        return [self.tok.id_to_token(int(i)) or "<unk>" for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        """Detokenised text of ``ids``; stops at ``</s>``, drops the other specials."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i > EOS_ID:
                out.append(i)
        return self.tok.decode(out, skip_special_tokens=True)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model as JSON (atomically)."""
        write_json(path, {"kind": self.kind, "tokenizer": json.loads(self.tok.to_str())})

    @classmethod
    def load(cls, path: str | os.PathLike) -> SubwordModel:
        """Read a model written by :meth:`save`."""
        from tokenizers import Tokenizer

        p = Path(path)
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(obj, dict) or obj.get("kind") != cls.kind:
                raise DataError(f"{p}: expected a subword model, found {obj.get('kind') if isinstance(obj, dict) else obj!r}")
            return cls(Tokenizer.from_str(json.dumps(obj["tokenizer"])))
        except FileNotFoundError:
            raise DataError(f"{p}: file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, Exception) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"{p}: not a valid subword model ({type(e).__name__}: {e})") from None


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, model: str = "bpe", min_frequency: int = 2,
                    specials: list[str] = SPECIALS, lowercase: bool = False):
    """A Hugging Face ``tokenizers.Tokenizer`` (``model``: ``bpe`` or ``unigram``) of about
    ``vocab_size`` pieces learnt from ``texts``; ``specials`` take the first ids, in order."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if model not in KINDS:
        raise ConfigError(f"data.subwords.model: unknown {model!r}; known: {', '.join(KINDS)}")
    if vocab_size < len(specials) + 1:
        raise ConfigError(f"data.subword_vocab: must be > {len(specials)}, got {vocab_size}")
    if model == "bpe":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(specials), show_progress=False)
    else:
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(specials), unk_token="<unk>",
                                          show_progress=False)
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]) if lowercase \
        else normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts if isinstance(texts, list) else list(texts), trainer)
    return tok
