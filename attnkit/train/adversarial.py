"""Adversarial training and attacks on the token embeddings (``train.adversarial``).

A perturbation ``r`` is added to the output of the model's embedding layer
(``model.embedding_layer()``: word vectors of a model from blocks, a backbone's word-piece
embeddings), each example's ``r`` held to an L2 radius ``epsilon`` over all its embeddings.

* **FGM** (Miyato et al., 2017): one step, ``r = epsilon * g / ||g||`` with ``g`` the gradient
  of the clean loss at the embeddings (from the clean pass itself: no extra forward).
* **PGD** (Madry et al., 2018): ``steps`` ascent steps of size ``alpha`` from the clean
  gradient, each projected back onto the ball; a forward and a gradient per step.

Training adds ``weight x`` the loss at ``embeddings + r`` to the clean loss. The same PGD,
without training, is the attack that ``attnkit evaluate --attack pgd`` scores a model under."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch

from ..config import checked, non_negative, positive
from ..errors import ConfigError

@dataclass
class AdversarialConfig:
    """``train.adversarial``: perturbations of the token embeddings while training."""

    method: Literal["none", "fgm", "pgd"] = checked("none", doc="`fgm` (one step), `pgd` (`steps` projected steps) "
                                                               "or `none`")
    epsilon: float = checked(1.0, positive, doc="L2 radius of each example's perturbation over all its embeddings")
    steps: int = checked(3, positive, doc="PGD: ascent steps")
    alpha: float | None = checked(None, positive, doc="PGD: step size (default 2.5 x epsilon / steps)")
    weight: float = checked(1.0, non_negative, doc="weight of the adversarial loss next to the clean one")

    @property
    def on(self) -> bool:
        """Whether adversarial training is asked for."""
        return self.method != "none"


def per_example_unit(g: torch.Tensor) -> torch.Tensor:
    """``g [B, ...]`` divided by each example's L2 norm (0 stays 0)."""
    norm = g.flatten(1).norm(dim=1).clamp(min=1e-12)
    return g / norm.view(-1, *([1] * (g.dim() - 1)))


def project(r: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``r`` with each example's L2 norm capped at ``epsilon``."""
    norm = r.flatten(1).norm(dim=1).clamp(min=1e-12)
    scale = torch.clamp(epsilon / norm, max=1.0)
    return r * scale.view(-1, *([1] * (r.dim() - 1)))


class EmbeddingShift:
    """Adds a perturbation to the embedding layer's output while active: a given ``r``, or (with
    ``probe=True``) a zero tensor that requires grad, whose ``.grad`` after backward is the
    loss's gradient at the embeddings."""

    def __init__(self, model: torch.nn.Module):
        layer = model.embedding_layer() if hasattr(model, "embedding_layer") else None
        if layer is None:
            raise ConfigError("train.adversarial: this model has no token embedding layer to perturb (an image "
                              "model?); adversarial training here is for text models")
        for m in model.modules():  # a backbone's fast path skips the embedding module in training when sparse
            if getattr(m, "sparse_embeddings", False):
                m.sparse_embeddings = False
        self.layer = layer
        self.delta: torch.Tensor | None = None

    @contextlib.contextmanager
    def shifted(self, r: torch.Tensor | None = None, probe: bool = False):
        """Within: the layer's output is ``output + r`` (``probe``: ``output + zeros`` kept in
        ``self.delta``, requiring grad)."""
        def hook(_module, _inputs, output):
            if probe:
                self.delta = torch.zeros_like(output, requires_grad=True)
                return output + self.delta
            if r is None or r.shape != output.shape:
                raise ConfigError(f"train.adversarial: the perturbation has shape {list(getattr(r, 'shape', []))} "
                                  f"but the embeddings {list(output.shape)}")
            return output + r
        handle = self.layer.register_forward_hook(hook)
        try:
            yield self
        finally:
            handle.remove()


def pgd_delta(shift: EmbeddingShift, loss_at, start_grad: torch.Tensor, epsilon: float, steps: int,
              alpha: float | None = None) -> torch.Tensor:
    """A perturbation within ``epsilon`` that raises ``loss_at()`` (called inside ``shift.shifted``):
    ``steps`` normalised ascent steps from ``start_grad`` (the loss's gradient at r = 0), each
    projected onto the ball. Only the perturbation gets gradients (the parameters' are untouched)."""
    alpha = alpha or 2.5 * epsilon / steps
    r = project(alpha * per_example_unit(start_grad.detach()), epsilon)
    for _ in range(steps - 1):
        r = r.detach().requires_grad_(True)
        with shift.shifted(r):
            loss = loss_at()
        (g,) = torch.autograd.grad(loss, r, allow_unused=True)
        if g is None:
            break
        r = project(r + alpha * per_example_unit(g), epsilon)
    return r.detach()


class Adversary:
    """What the trainer calls: the clean pass under :meth:`probe`, then :meth:`loss` for the
    adversarial term (its graph reaches the parameters; the caller backwards it)."""

    def __init__(self, cfg: AdversarialConfig, model: torch.nn.Module):
        self.cfg = cfg
        self.shift = EmbeddingShift(model)

    def probe(self):
        """The context of the clean forward: records the gradient at the embeddings."""
        return self.shift.shifted(probe=True)

    def loss(self, model, forward, loss_fn, batch: dict) -> torch.Tensor:
        """The loss at the embeddings moved by FGM or PGD (after the clean backward). PGD's
        inner steps run on ``model`` itself; the final pass on ``forward`` (DDP on several ranks)."""
        delta = self.shift.delta
        if delta is None or delta.grad is None:
            raise ConfigError("train.adversarial: the clean pass did not reach the embedding layer")
        g = delta.grad.detach()
        c = self.cfg
        if c.method == "fgm":
            r = c.epsilon * per_example_unit(g)
        else:
            r = pgd_delta(self.shift, lambda: loss_fn(model(batch), batch), g, c.epsilon, c.steps, c.alpha)
        self.shift.delta = None
        with self.shift.shifted(r):
            return loss_fn(forward(batch), batch)
