"""IDX reader: round trip (plain and gzip), MNIST file names, bad magic, truncation."""
import gzip
import struct

import numpy as np
import pytest

from attnkit.data import read_idx, read_mnist
from attnkit.errors import ConfigError, DataError


def idx_bytes(array: np.ndarray) -> bytes:
    magic = {3: 2051, 1: 2049}[array.ndim]
    return struct.pack(f">i{array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes()


def make_mnist(folder, split="train", n=5, gz=True, sep="-"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = {"train": "train", "test": "t10k"}[split]
    suffix = ".gz" if gz else ""
    for kind, idx, array in (("images", "idx3", images), ("labels", "idx1", labels)):
        data = idx_bytes(array)
        (folder / f"{prefix}-{kind}{sep}{idx}-ubyte{suffix}").write_bytes(
            gzip.compress(data) if gz else data)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([3, 7, 9], dtype=np.uint8)
    for name, array in (("img", images), ("lab", labels)):
        data = idx_bytes(array)
        p = tmp_path / (name + (".gz" if gz else ""))
        p.write_bytes(gzip.compress(data) if gz else data)
        out = read_idx(p)
        assert out.dtype == np.uint8 and out.shape == array.shape
        np.testing.assert_array_equal(out, array)
        assert out.flags.writeable


def test_bad_magic(tmp_path):
    p = tmp_path / "x.idx"
    p.write_bytes(struct.pack(">ii", 2052, 0))
    with pytest.raises(DataError, match="magic number 2052.*2051.*2049") as info:
        read_idx(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("cut, match", [(-1, "truncated"), (10, "truncated inside"),
                                        (2, "too short")])
def test_truncated(tmp_path, cut, match):
    data = idx_bytes(np.zeros((2, 3, 4), np.uint8))
    p = tmp_path / "x.idx"
    p.write_bytes(data[:cut])
    with pytest.raises(DataError, match=match) as info:
        read_idx(p)
    assert str(p) in str(info.value)


def test_trailing_bytes_and_damaged_gzip(tmp_path):
    p = tmp_path / "x.idx"
    p.write_bytes(idx_bytes(np.zeros(3, np.uint8)) + b"\0")
    with pytest.raises(DataError, match="trailing bytes.*need 11 bytes, the file has 12"):
        read_idx(p)
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8)))[:-6])
    with pytest.raises(DataError, match="gzip") as info:
        read_idx(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("gz, sep", [(True, "-"), (False, ".")])
def test_read_mnist(tmp_path, gz, sep):
    images, labels = make_mnist(tmp_path, "test", gz=gz, sep=sep)
    got_images, got_labels = read_mnist(tmp_path, "test")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_mnist_errors(tmp_path):
    with pytest.raises(ConfigError, match="train, test"):
        read_mnist(tmp_path, "valid")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        read_mnist(tmp_path, "train")
    make_mnist(tmp_path, "train", n=5)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DataError, match="5 images but .* 4 labels"):
        read_mnist(tmp_path, "train")
