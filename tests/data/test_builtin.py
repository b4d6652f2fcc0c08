"""Embedded data sets."""
import pytest

from attnkit.data import builtin_dataset, list_builtin_datasets
from attnkit.errors import UnknownNameError


def test_toy_sentiment_splits_and_determinism():
    splits = builtin_dataset("toy_sentiment")
    assert {k: len(v) for k, v in splits.items()} == {"train": 2000, "dev": 500, "test": 500}
    again = builtin_dataset("toy_sentiment")
    assert all(splits[k].texts == again[k].texts and splits[k].labels == again[k].labels
               for k in splits)
    assert builtin_dataset("toy_sentiment", seed=1)["train"].texts != splits["train"].texts
    texts = [t for s in splits.values() for t in s.texts]
    assert len(set(texts)) == len(texts)  # no sentence in two splits
    for name, split in splits.items():
        assert split.path == f"builtin:toy_sentiment/{name}"
        assert split.lines[:2] == [1, 2]
        share = split.labels.count("positive") / len(split)
        assert 0.4 < share < 0.6
        assert all(t == t.lower() and t.strip() == t for t in split.texts)


def test_registry():
    assert "toy_sentiment" in list_builtin_datasets()
    with pytest.raises(UnknownNameError, match="toy_sentiment"):
        builtin_dataset("imagenet")
