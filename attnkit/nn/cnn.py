"""Convolutional encoders.

* ``textcnn`` (Kim, 2014): several kernel widths over the token sequence, concatenated;
  per-position features so that any pooler follows (``max`` gives the classic
  max-over-time TextCNN, ``attention`` an attention-pooled one).
* ``image_cnn``: conv -> batchnorm -> ReLU (-> pool) blocks; the final feature map is
  returned as a sequence of positions ``[B, H*W, C]`` so attention pooling reads it.
* :class:`CharCNN`: character-level word features for taggers (Ma & Hovy, 2016).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attention.dropout import Dropout
from ..config import require_positive
from ..errors import ConfigError
from .masking import padding_mask
from .registry import ENCODERS


@ENCODERS.register("textcnn")
class TextCNN(nn.Module):
    """``(x [B, T, D], lengths) -> [B, T, channels * len(kernel_sizes)]``, zero at padding."""

    def __init__(self, in_dim: int, channels: int = 100, kernel_sizes=(3, 4, 5), dropout: float = 0.0):
        super().__init__()
        require_positive("encoder", channels=channels)
        if not kernel_sizes or any(k <= 0 for k in kernel_sizes):
            raise ConfigError(f"encoder.kernel_sizes: must be a non-empty list of ints > 0, got {list(kernel_sizes)}")
        # one feature per token ('same' length): widths are padded (k-1)//2 left, k//2 right
        # by hand, as conv's own padding="same" copies the input for even widths
        self.kernel_sizes = list(kernel_sizes)
        self.convs = nn.ModuleList(nn.Conv1d(in_dim, channels, k) for k in kernel_sizes)
        self.out_dim = channels * len(kernel_sizes)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Convolves each width and concatenates the ReLU features."""
        m = padding_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
        xt = (x * m).transpose(1, 2)  # (B, D, T): padding contributes zeros to edge windows
        feats = [torch.relu(conv(F.pad(xt, ((k - 1) // 2, k // 2)))) for k, conv in zip(self.kernel_sizes, self.convs)]
        out = torch.cat(feats, 1).transpose(1, 2)  # (B, T, C*k)
        return self.dropout(out * m)


@ENCODERS.register("image_cnn")
class ImageCNN(nn.Module):
    """``images [B, C, H, W] -> [B, H'*W', channels[-1]]`` through conv/batchnorm/ReLU blocks,
    max-pooled by 2 after each block listed in ``pool_after`` (default: every block)."""

    def __init__(self, in_channels: int = 1, channels=(32, 64, 128), kernel_size: int = 3, pool_after=None,
                 dropout: float = 0.0):
        super().__init__()
        if not channels or any(c <= 0 for c in channels):
            raise ConfigError(f"encoder.channels: must be a non-empty list of ints > 0, got {list(channels)}")
        pool_after = set(range(len(channels))) if pool_after is None else set(pool_after)
        blocks, c_in = [], in_channels
        for i, c in enumerate(channels):
            blocks += [nn.Conv2d(c_in, c, kernel_size, padding=kernel_size // 2, bias=False),
                       nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i in pool_after:
                blocks.append(nn.MaxPool2d(2))
            c_in = c
        self.body = nn.Sequential(*blocks)
        self.dropout = Dropout(dropout)
        self.out_dim = c_in
        self.grid: tuple[int, int] | None = None  # (H', W') of the last feature map

    def forward(self, images: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Feature map as a sequence of spatial positions."""
        f = self.body(images)  # (B, C, H', W')
        self.grid = tuple(f.shape[-2:])  # so position weights can be drawn as a map (explain)
        return self.dropout(f.flatten(2).transpose(1, 2))  # (B, H'*W', C)


class CharCNN(nn.Module):
    """``chars [B, T, W] -> [B, T, channels]``: embed characters, convolve, max over the
    characters of each word (padding characters, id 0, are masked out)."""

    def __init__(self, n_chars: int, char_dim: int = 30, channels: int = 50, kernel_size: int = 3):
        super().__init__()
        self.embed = nn.Embedding(n_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, channels, kernel_size, padding=kernel_size // 2)
        self.out_dim = channels

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """Character features per word."""
        b, t, w = chars.shape
        x = self.embed(chars.reshape(b * t, w)).transpose(1, 2)  # (B*T, char_dim, W)
        f = self.conv(x).masked_fill((chars.reshape(b * t, 1, w) == 0), float("-inf")).amax(-1)
        f = torch.where(torch.isinf(f), torch.zeros_like(f), f)  # words with no characters (padding)
        return f.view(b, t, -1)
