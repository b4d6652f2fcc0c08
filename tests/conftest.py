"""Shared fixtures: devices to test on (CUDA when present), deterministic seeds, small tiles
so that multi-tile code paths run on small inputs, and small trained runs of every task
(session scope: trained once, shared by the explanation, report and deployment tests)."""
import atexit
import os
import shutil
import tempfile

import pytest
import torch

from attnkit.run import train
from tests.run.conftest import make_conll_files, make_mnist_folder, make_text_files

# TorchInductor (the compiled FlexAttention tests) compiles into a private cache per test run:
# the shared one under /tmp outlives runs, and a run killed mid-compile left a half-built entry
# there that failed every later run's cache hit (CI, 2026-12-03). A user's own
# TORCHINDUCTOR_CACHE_DIR is kept.
# attnkit's own cache (precision probes, teacher scores) too, always: a test never reads what
# an earlier run or the user left there, nor writes into the user's.
for _var, _prefix in (("TORCHINDUCTOR_CACHE_DIR", "attnkit-test-inductor-"), ("ATTNKIT_CACHE", "attnkit-test-cache-")):
    if _var == "ATTNKIT_CACHE" or _var not in os.environ:
        os.environ[_var] = tempfile.mkdtemp(prefix=_prefix)
        atexit.register(shutil.rmtree, os.environ[_var], ignore_errors=True)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture
def small_tiles(monkeypatch):
    """Force many tiles on small inputs (odd sizes then end mid-tile): 16-wide block-sparse
    tiles, ~16-wide chunked tiles, 16-row query blocks on the weights path, and the
    block-sparse tile path even where one dense call would be chosen (tests that want the
    one-call path set ``BlockSparseBackend.dense_fraction`` back themselves)."""
    from attnkit.attention.backends import blocksparse, chunked, weights

    monkeypatch.setattr(blocksparse.BlockSparseBackend, "block_q", 16)
    monkeypatch.setattr(blocksparse.BlockSparseBackend, "block_k", 16)
    monkeypatch.setattr(blocksparse.BlockSparseBackend, "dense_fraction", 2.0)
    monkeypatch.setattr(chunked.ChunkedBackend, "budget", 2048)
    monkeypatch.setattr(weights, "ROWS_PER_BLOCK", 16)
    return monkeypatch


def _train(tmp_path_factory, name, cfg):
    out = tmp_path_factory.mktemp(name) / "run"
    train(cfg, out=out, progress=False)
    return out


@pytest.fixture(scope="session")
def text_files_s(tmp_path_factory):
    return make_text_files(tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, text_files_s):
    """BiLSTM + additive attention pooling (writes report.html: train.report defaults on)."""
    f = text_files_s
    return _train(tmp_path_factory, "bilstm", {
        "task": "text_classification",
        "data": {"train": str(f["train"]), "dev": str(f["dev"]), "test": str(f["test"]), "text_column": "sentence"},
        "model": {"embedding": {"dim": 16}, "encoder": {"type": "lstm", "hidden": 16},
                  "pooler": {"type": "attention", "heads": 2}},
        "train": {"epochs": 3, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.01}}})


@pytest.fixture(scope="session")
def transformer_run(tmp_path_factory, text_files_s):
    """A 2-layer, 2-head Transformer encoder + attention pooling."""
    f = text_files_s
    return _train(tmp_path_factory, "transformer", {
        "task": "text_classification",
        "data": {"train": str(f["train"]), "dev": str(f["dev"]), "text_column": "sentence"},
        "model": {"embedding": {"dim": 16}, "encoder": {"type": "transformer", "dim": 16, "layers": 2,
                                                        "attention": {"heads": 2}},
                  "pooler": {"type": "attention"}},
        "train": {"epochs": 2, "batch_size": 16, "report": False, "optimizer": {"name": "adam", "lr": 0.005}}})


@pytest.fixture(scope="session")
def tagger_run(tmp_path_factory):
    f = make_conll_files(tmp_path_factory.mktemp("conll"))
    return _train(tmp_path_factory, "tagger", {
        "task": "token_classification",
        "data": {"train": str(f["train"]), "dev": str(f["dev"])},
        "model": {"embedding": {"dim": 16}, "encoder": {"type": "transformer", "dim": 16, "layers": 1,
                                                        "attention": {"heads": 2}}},
        "train": {"epochs": 3, "batch_size": 16, "metric": "f1", "optimizer": {"name": "adam", "lr": 0.01}}})


@pytest.fixture(scope="session")
def image_run(tmp_path_factory):
    folder = make_mnist_folder(tmp_path_factory.mktemp("mnist"))
    return _train(tmp_path_factory, "image", {
        "task": "image_classification",
        "data": {"train": str(folder), "format": "mnist", "dev_fraction": 0.2},
        "model": {"encoder": {"type": "image_cnn", "channels": [8, 8]}, "pooler": {"type": "attention"}},
        "train": {"epochs": 2, "batch_size": 32, "optimizer": {"name": "adam", "lr": 0.01}}})


@pytest.fixture
def dropout_draws(monkeypatch):
    """The ``p`` of every mask attnkit's dropout draws while the test runs, in order."""
    from attnkit.attention.dropout import keep_mask

    drawn = []

    def counting(shape, p):
        drawn.append(p)
        return keep_mask(shape, p)
    monkeypatch.setattr("attnkit.attention.dropout.keep_mask", counting)
    return drawn
