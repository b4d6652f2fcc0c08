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
    """Force many tiles on small inputs (odd sizes then end mid-tile)."""
    from attnkit.attention.backends import blocksparse, chunked

    monkeypatch.setattr(blocksparse.BlockSparseBackend, "block_q", 16)
    monkeypatch.setattr(blocksparse.BlockSparseBackend, "block_k", 16)
    monkeypatch.setattr(chunked.ChunkedBackend, "budget", 2048)
