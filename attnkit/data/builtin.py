"""Embedded data sets: generated on the fly, no download, identical on every machine.

``toy_sentiment`` — short movie-review sentences built from templates, labelled
``negative``/``positive``, split train 2,000 / dev 500 / test 500 (no sentence in two
splits, classes balanced within a few percent). Lower-cased and space-tokenised like SST-2,
so the ``whitespace`` tokenizer fits. Some sentences need word order, not just a bag of
words: ``not`` flips the adjective after it, and in ``X , but Y`` the clause after ``but``
decides: a bag-of-words logistic regression reaches only about 68% dev accuracy (measured
with seed 0), while the label is a function of the word sequence, so 100% is reachable.
"""
from __future__ import annotations

import random
from collections.abc import Callable

from ..registry import Registry
from .readers import TableData

BUILTIN_DATASETS: Registry[Callable[[int], dict[str, TableData]]] = Registry("builtin dataset")

_POSITIVE = ["good", "great", "excellent", "wonderful", "delightful", "charming",
             "brilliant", "moving", "funny", "clever", "gripping", "beautiful"]
_NEGATIVE = ["bad", "boring", "awful", "dull", "terrible", "clumsy", "tedious", "weak",
             "messy", "bland", "predictable", "forgettable"]
_NOUNS = ["movie", "film", "plot", "acting", "script", "story", "cast", "ending",
          "soundtrack", "direction", "dialogue", "pacing", "camera work", "lead actor"]
_ADVERBS = ["very", "really", "quite", "truly", "rather", "surprisingly", "simply", ""]
_OPENERS = ["", "honestly , ", "overall , ", "i thought ", "in my opinion "]


def _phrase(rng: random.Random, positive: bool) -> str:
    """``[adverb] adjective`` of the wanted polarity, or ``not`` + the opposite one."""
    if rng.random() < 0.25:
        return "not " + rng.choice(_NEGATIVE if positive else _POSITIVE)
    adverb = rng.choice(_ADVERBS)
    adjective = rng.choice(_POSITIVE if positive else _NEGATIVE)
    return f"{adverb} {adjective}".strip()


def _sentence(rng: random.Random, positive: bool) -> str:
    noun, other = rng.sample(_NOUNS, 2)
    opener = rng.choice(_OPENERS)
    form = rng.randrange(4)
    if form == 0:
        text = f"{opener}the {noun} was {_phrase(rng, positive)}"
    elif form == 1:
        text = f"{opener}the {noun} is {_phrase(rng, positive)} and the {other} is " \
               f"{_phrase(rng, positive)}"
    elif form == 2:  # the clause after "but" decides
        text = f"{opener}the {noun} was {_phrase(rng, not positive)} , but the {other} " \
               f"was {_phrase(rng, positive)}"
    else:
        adjective = _phrase(rng, positive)
        article = "an" if adjective[0] in "aeiou" else "a"
        text = f"{opener.replace('i thought ', '')}{article} {adjective} {noun}"
    return text + rng.choice([" .", " .", " !", ""])


@BUILTIN_DATASETS.register("toy_sentiment")
def toy_sentiment(seed: int = 0) -> dict[str, TableData]:
    """Template sentences with sentiment labels: ``{"train", "dev", "test"}`` tables."""
    sizes = {"train": 2000, "dev": 500, "test": 500}
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    while len(rows) < sum(sizes.values()):
        positive = rng.random() < 0.5
        text = _sentence(rng, positive)
        if text not in seen:  # a duplicate could land in train and test
            seen.add(text)
            rows.append((text, "positive" if positive else "negative"))
    splits, start = {}, 0
    for name, size in sizes.items():
        part = rows[start:start + size]
        start += size
        splits[name] = TableData(
            path=f"builtin:toy_sentiment/{name}",
            texts=[text for text, _ in part],
            labels=[label for _, label in part],
            lines=list(range(1, size + 1)),
        )
    return splits


def builtin_dataset(name: str, *, seed: int = 0) -> dict[str, TableData]:
    """The splits of the embedded data set ``name`` (see :func:`list_builtin_datasets`),
    as :class:`TableData` with paths ``builtin:NAME/SPLIT`` and 1-based row numbers."""
    return BUILTIN_DATASETS.get(name, where="builtin dataset")(seed)


def list_builtin_datasets(pattern: str = "*") -> list[str]:
    """Names of the embedded data sets."""
    return BUILTIN_DATASETS.names(pattern)
