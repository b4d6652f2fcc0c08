"""Read the real data sets in ../shared/data and check their documented counts."""
from collections import Counter
from pathlib import Path

import pytest

from attnkit.data import read_conll, read_mnist, read_parallel, read_table

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def need(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (the shared data folder "
                    "sits beside the repository as ../shared/data)")
    return path


def test_sst2_dev():
    t = read_table(need("sst2", "dev.tsv"), "sentence", "label")
    assert len(t) == 872 and t.skipped == 0
    assert Counter(t.labels) == {"0": 428, "1": 444}
    assert t.texts[0] == "it 's a charming and often affecting journey ."
    assert t.lines[0] == 2 and t.lines[-1] == 873


def test_sst2_test_has_no_labels():
    path = need("sst2", "test.tsv")
    t = read_table(path, "sentence", None)
    assert len(t) == 1821 and t.labels is None


def test_conll_valid():
    d = read_conll(need("conll2003", "valid.txt"))
    assert len(d) == 3250 and d.skipped == 0
    assert sum(map(len, d.sentences)) == 51362
    assert sum(tag.startswith("B-") for tags in d.tags for tag in tags) == 5942
    assert {tag[2:] for tags in d.tags for tag in tags} - {""} == {"PER", "LOC", "ORG", "MISC"}


def test_mnist_test():
    images, labels = read_mnist(need("mnist"), "test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert Counter(labels.tolist())[1] == 1135


def test_multi30k_val():
    d = read_parallel(need("multi30k", "val.en"), need("multi30k", "val.de"))
    assert len(d) == 1014
