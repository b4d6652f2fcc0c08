"""Tokenizers and vocabularies: words or characters to ids, labels to ids, saved as JSON.

Word and character vocabularies reserve id 0 for ``<pad>`` (so padded positions embed to
the padding row) and id 1 for ``<unk>``. Orders are deterministic, so the same data gives
the same ids on every machine.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..errors import ConfigError, DataError
from ..files import write_json
from ..registry import Registry

PAD, UNK = "<pad>", "<unk>"
TOKENIZERS: Registry[Callable[..., list[str]]] = Registry("tokenizer")

# Numbers keep their decimal point or thousands separator ("3.5", "1,000") unless a letter
# follows ("2nd" stays a word); words keep inner apostrophes ("don't"); any other
# non-space character is a token of its own.
_WORD_RE = re.compile(r"\d+(?:[.,]\d+)*(?!\w)|\w+(?:['’]\w+)*|[^\w\s]")


@TOKENIZERS.register("words")
def tokenize_words(text: str, lowercase: bool = False) -> list[str]:
    """Split ``text`` into words, numbers and single punctuation marks."""
    return _WORD_RE.findall(text.lower() if lowercase else text)


@TOKENIZERS.register("whitespace")
def tokenize_whitespace(text: str, lowercase: bool = False) -> list[str]:
    """Split on whitespace only: for text that is already tokenised (SST-2, CoNLL)."""
    return (text.lower() if lowercase else text).split()


def get_tokenizer(name: str) -> Callable[..., list[str]]:
    """The tokenizer registered as ``name`` (``"words"`` or ``"whitespace"``)."""
    return TOKENIZERS.get(name, where="tokenizer")


def read_kind_json(path: str | os.PathLike, kind: str, what: str = "vocabulary") -> dict:
    """A JSON object saved with ``"kind": kind`` (vocabularies, a recommender's catalog ...);
    a missing, unreadable or other-kind file is one DataError naming it."""
    p = Path(path)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: not a {what} file ({e})") from None
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        found = obj.get("kind") if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{p}: expected a {kind} {what}, found {found!r}")
    return obj


class Vocab:
    """Tokens <-> ids. ``itos`` starts with ``<pad>``, ``<unk>``, then any extra specials,
    then tokens by frequency (descending) and then alphabetically. Build with
    :meth:`build`."""

    kind = "word"
    pad_id = 0
    unk_id = 1

    def __init__(self, itos: Sequence[str], *, lowercase: bool = False, num_specials: int = 2):
        itos = list(itos)
        if itos[:2] != [PAD, UNK]:
            raise ConfigError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {itos[:2]}")
        if len(set(itos)) != len(itos):
            dupes = sorted(t for t, n in Counter(itos).items() if n > 1)
            raise ConfigError(f"duplicate vocabulary entries: {dupes[:10]}")
        self.itos = itos
        self.stoi = {t: i for i, t in enumerate(itos)}
        self.lowercase = lowercase
        self.num_specials = num_specials

    @staticmethod
    def _units(tokens: Iterable[str]) -> Iterable[str]:
        """What one token list contributes to the counts (CharVocab: its characters)."""
        return tokens

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Iterable[str]],
        *,
        lowercase: bool = False,
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = (),
    ) -> Vocab:
        """Count tokens over ``token_lists``; keep those seen ``min_freq`` times or more, at
        most ``max_size`` entries in all (specials included: it is the embedding size)."""
        specials = [PAD, UNK, *(s for s in specials if s not in (PAD, UNK))]
        if min_freq < 1:
            raise ConfigError(f"min_freq must be >= 1; got {min_freq}")
        if max_size is not None and max_size < len(specials):
            raise ConfigError(f"max_size must be >= {len(specials)} (the special tokens "
                              f"{specials}); got {max_size}")
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(t.lower() if lowercase else t for t in cls._units(tokens))
        kept = sorted((t for t, n in counts.items() if n >= min_freq and t not in specials),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - len(specials)]
        return cls(specials + kept, lowercase=lowercase, num_specials=len(specials))

    def extended(self, tokens: Iterable[str], max_size: int | None = None) -> Vocab:
        """This vocabulary with the ``tokens`` it lacks appended in their order (at most
        ``max_size`` entries in all); every id already given keeps its token."""
        itos, seen = list(self.itos), set(self.itos)
        for t in tokens:
            if max_size is not None and len(itos) >= max_size:
                break
            t = self._norm(t)
            if t not in seen:
                seen.add(t)
                itos.append(t)
        return type(self)(itos, lowercase=self.lowercase, num_specials=self.num_specials)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and self._norm(token) in self.stoi

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and self.itos == other.itos
                and self.lowercase == other.lowercase)

    def _norm(self, token: str) -> str:
        return token.lower() if self.lowercase else token

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; unknown tokens get :attr:`unk_id`."""
        get, unk = self.stoi.get, self.unk_id
        return [get(self._norm(t), unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids``; an id outside the vocabulary is a DataError."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise DataError(f"id {i} is outside the vocabulary (size {len(self.itos)})")
            out.append(self.itos[i])
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (atomically)."""
        write_json(path, {"kind": self.kind, "lowercase": self.lowercase,
                          "num_specials": self.num_specials, "itos": self.itos}, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Read a vocabulary written by :meth:`save`."""
        obj = read_kind_json(path, cls.kind)
        try:
            return cls(obj["itos"], lowercase=bool(obj["lowercase"]),
                       num_specials=int(obj["num_specials"]))
        except (KeyError, TypeError, ConfigError) as e:
            raise DataError(f"{path}: not a valid {cls.kind} vocabulary ({e})") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={len(self)}, lowercase={self.lowercase})"


class CharVocab(Vocab):
    """Characters <-> ids, built from the characters of words: ``build(token_lists)``,
    ``encode(word) -> ids``, ``decode(ids) -> str``."""

    kind = "char"

    @staticmethod
    def _units(tokens: Iterable[str]) -> Iterable[str]:
        return (c for token in tokens for c in token)

    def decode(self, ids: Iterable[int]) -> str:  # type: ignore[override]
        """The word spelled by ``ids`` (specials appear as their names)."""
        return "".join(super().decode(ids))

    def encode_words(self, words: Iterable[str], max_len: int | None = None) -> list[list[int]]:
        """Character ids of each word, each cut to ``max_len`` characters if given."""
        return [self.encode(w[:max_len] if max_len else w) for w in words]


class LabelVocab:
    """Labels <-> ids in sorted order (numeric order when every label is an integer, so
    labels ``"0"``..``"9"`` get ids 0..9)."""

    kind = "label"

    def __init__(self, labels: Sequence[str]):
        self.itos = list(labels)
        self.stoi = {label: i for i, label in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ConfigError(f"duplicate labels in {self.itos}")

    @classmethod
    def build(cls, labels: Iterable[str]) -> LabelVocab:
        """The distinct ``labels``, sorted."""
        distinct = set(labels)
        numeric = all(re.fullmatch(r"-?\d+", str(x)) for x in distinct)
        return cls(sorted(distinct, key=(lambda x: (int(x), x)) if numeric else None))

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, label: object) -> bool:
        return label in self.stoi

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.itos == other.itos

    def encode(self, label: str, where: str | None = None) -> int:
        """The id of ``label``; an unseen label is a DataError naming ``where`` (FILE:LINE)."""
        try:
            return self.stoi[label]
        except (KeyError, TypeError):
            known = ", ".join(map(repr, self.itos[:20]))
            more = f" … ({len(self.itos)} in all)" if len(self.itos) > 20 else ""
            at = f"{where}: " if where else ""
            raise DataError(f"{at}label {label!r} not seen in training data; "
                            f"known: {known}{more}") from None

    def decode(self, i: int) -> str:
        """The label with id ``i``."""
        if not 0 <= int(i) < len(self.itos):
            raise DataError(f"label id {int(i)} is outside 0..{len(self.itos) - 1}")
        return self.itos[int(i)]

    def save(self, path: str | os.PathLike) -> None:
        """Write the labels as JSON (atomically)."""
        write_json(path, {"kind": self.kind, "itos": self.itos}, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelVocab:
        """Read labels written by :meth:`save`."""
        obj = read_kind_json(path, cls.kind)
        if not isinstance(obj.get("itos"), list):
            raise DataError(f"{path}: not a valid label vocabulary (no 'itos' list)")
        return cls(obj["itos"])

    def __repr__(self) -> str:
        return f"LabelVocab({self.itos!r})"
