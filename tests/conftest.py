"""Shared fixtures: devices to test on (CUDA when present), deterministic seeds, and
small tiles so that multi-tile code paths run on small inputs."""
import pytest
import torch

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
