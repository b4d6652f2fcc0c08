"""Helpers for padded batches shared by the blocks."""
from __future__ import annotations

import torch


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Bool ``[B, T]``, True at real positions (``t < lengths[b]``)."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def full_lengths(x: torch.Tensor) -> torch.Tensor:
    """Lengths ``[B]`` for a batch without padding."""
    return torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
