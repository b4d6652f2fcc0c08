"""Small generated data files for end-to-end run tests."""
import gzip
import random
import struct

import numpy as np
import pytest


def make_text_files(tmp_path):
    """TSV train/dev/test: label 'pos' iff the word 'good' occurs."""
    rng = random.Random(0)
    words = ["the", "film", "was", "plot", "a", "very", "movie", "bad", "dull", "fine"]

    def row():
        ws = [rng.choice(words) for _ in range(rng.randint(3, 8))]
        pos = rng.random() < 0.5
        if pos:
            ws.insert(rng.randint(0, len(ws)), "good")
        return " ".join(ws), "pos" if pos else "neg"

    paths = {}
    for split, n in (("train", 300), ("dev", 80), ("test", 80)):
        p = tmp_path / f"{split}.tsv"
        p.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in (row() for _ in range(n))),
                     encoding="utf-8")
        paths[split] = p
    return paths


def make_conll_files(tmp_path):
    """CoNLL files where capitalised words after 'mr' are B-PER, other capitalised words B-LOC."""
    rng = random.Random(1)
    names, places, filler = ["Smith", "Jones", "Brown"], ["Paris", "Rome", "Oslo"], ["went", "to", "the", "city"]

    def sentence():
        toks = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                toks += [("mr", "O"), (rng.choice(names), "B-PER")]
            else:
                toks += [(rng.choice(filler), "O"), (rng.choice(places), "B-LOC")]
        return "\n".join(f"{w} X X {t}" for w, t in toks)

    paths = {}
    for split, n in (("train", 200), ("dev", 40)):
        p = tmp_path / f"{split}.txt"
        p.write_text("-DOCSTART- -X- -X- O\n\n" + "\n\n".join(sentence() for _ in range(n)) + "\n", encoding="utf-8")
        paths[split] = p
    return paths


def write_idx(path, array):
    """An IDX file (gzip): magic, dims, then uint8 data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_mnist_folder(tmp_path):
    """A tiny MNIST-format folder: class k is a bright k-th row band on 12x12 images."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 240), ("t10k", 60)):
        labels = rng.integers(0, 4, n)
        images = rng.integers(0, 60, (n, 12, 12))
        for i, k in enumerate(labels):
            images[i, 3 * k:3 * k + 3] += 180
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def text_files(tmp_path):
    """See :func:`make_text_files`."""
    return make_text_files(tmp_path)


@pytest.fixture
def conll_files(tmp_path):
    """See :func:`make_conll_files`."""
    return make_conll_files(tmp_path)


@pytest.fixture
def mnist_folder(tmp_path):
    """See :func:`make_mnist_folder`."""
    return make_mnist_folder(tmp_path)
