"""A linear-chain conditional random field (Lafferty et al., 2001) for taggers:
negative log-likelihood by the forward algorithm and Viterbi decoding, over padded batches.
Tested against brute-force enumeration of every tag sequence."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ShapeError


class CRF(nn.Module):
    """Transition scores ``trans[i, j]`` (tag i -> tag j) plus start and end scores."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.trans = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))

    def _check(self, emissions, mask):
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ShapeError(f"emissions: expected [B, T, {self.num_tags}], got {list(emissions.shape)}")
        if mask.shape != emissions.shape[:2]:
            raise ShapeError(f"mask: expected {list(emissions.shape[:2])}, got {list(mask.shape)}")

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``log Z [B]`` summed over all tag sequences of each row's real length."""
        alpha = self.start + emissions[:, 0]  # (B, K)
        for t in range(1, emissions.shape[1]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.trans + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t, None], nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def sequence_score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised score ``[B]`` of the given tag sequences."""
        b = torch.arange(emissions.shape[0], device=emissions.device)
        tags = tags.clamp(min=0)  # padded tags (e.g. -100) are masked out below
        m = mask.to(emissions.dtype)
        score = self.start[tags[:, 0]] + emissions[b, 0, tags[:, 0]]
        for t in range(1, emissions.shape[1]):
            step = self.trans[tags[:, t - 1], tags[:, t]] + emissions[b, t, tags[:, t]]
            score = score + step * m[:, t]
        last = tags[b, mask.long().sum(1).clamp(min=1) - 1]
        return score + self.end[last]

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood over the batch (mask: bool ``[B, T]``, the first
        position of every row real)."""
        self._check(emissions, mask)
        return (self.log_partition(emissions, mask) - self.sequence_score(emissions, tags, mask)).mean()

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`nll`."""
        return self.nll(emissions, tags, mask)

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Best tag sequences ``[B, T]`` by Viterbi (-100 at padding)."""
        self._check(emissions, mask)
        with torch.no_grad():  # not a decorator: mutation testing (mutmut) skips decorated functions
            return self._viterbi(emissions, mask)

    def _viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        bsz, t_len, _ = emissions.shape
        score = self.start + emissions[:, 0]
        back = []
        for t in range(1, t_len):
            cand = score.unsqueeze(2) + self.trans  # (B, K_prev, K)
            best, idx = cand.max(1)
            back.append(idx)
            score = torch.where(mask[:, t, None], best + emissions[:, t], score)
        last = (score + self.end).argmax(1)
        lengths = mask.long().sum(1)
        out = torch.full((bsz, t_len), -100, dtype=torch.long, device=emissions.device)
        cur = last
        for t in range(t_len - 1, -1, -1):
            real = t < lengths
            out[:, t] = torch.where(real, cur, out[:, t])
            if t > 0:  # step back only inside the real part; beyond it the tag stays
                prev = back[t - 1].gather(1, cur.unsqueeze(1)).squeeze(1)
                cur = torch.where(t <= lengths - 1, prev, cur)
        return out
