"""Attributions through Captum: gradient x input ("saliency") and integrated gradients
(Sundararajan et al., 2017), over the token embeddings of text models and over the pixels of
image models.

Both explain one scalar per example: the probability of the ``target`` class (for a tagger,
of the target tag at word ``word``). Scores are signed: positive = evidence for the target.
Per-position scores are the sum over the embedding dimension (text) or over the channels
(images). Baselines: the padding embedding for text (zero for attnkit embeddings; ``[PAD]``
between the kept ``[CLS]``/``[SEP]`` for pretrained backbones, as in Captum's BERT tutorial),
a black image for pixels (gradient x input is taken relative to it, so that a normalised
background does not light up)."""
from __future__ import annotations

import torch

from ..registry import Registry

ATTRIBUTIONS: Registry = Registry("attribution method")


def _forward(model, keys: list[str]):
    """``f(first input, *rest) -> class probabilities [B, C]`` for Captum; the last extra
    argument is the word index (taggers), the others the batch's other tensors."""

    def f(first, *rest):
        *others, word = rest
        batch = dict(zip(keys, (first, *others)))
        logits = model(batch)["logits"]
        if logits.dtype in (torch.float16, torch.bfloat16):  # softmax in at least float32
            logits = logits.float()
        if logits.dim() == 3:  # token classification: the word being explained
            logits = logits[torch.arange(logits.shape[0], device=logits.device), word]
        return torch.softmax(logits, -1)
    return f


def _split(batch: dict, first: str) -> tuple[list[str], tuple]:
    keys = [first] + [k for k, v in batch.items() if k != first and isinstance(v, torch.Tensor)
                      and k not in ("labels", "tags")]
    return keys, tuple(batch[k] for k in keys[1:])


def _word(batch: dict, word) -> torch.Tensor:
    """The word index per example (taggers; ignored by classifiers): one int for all, or ``[B]``."""
    n = next(iter(batch.values())).shape[0]
    w = torch.as_tensor(0 if word is None else word, dtype=torch.long)
    return w.expand(n).clone() if w.dim() == 0 else w


def _text_attr(captum_cls, model, batch, target, word, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    layer = model.embedding_layer()
    keys, extra = _split(batch, "tokens")
    method = captum_cls(_forward(model, keys), layer)
    args = (*extra, _word(batch, word))
    if "n_steps" in kwargs:
        baselines = model.attribution_baseline(batch["tokens"], batch["lengths"])
        attr, delta = method.attribute(batch["tokens"], baselines=baselines, target=target,
                                       additional_forward_args=args, return_convergence_delta=True, **kwargs)
    else:
        attr, delta = method.attribute(batch["tokens"], target=target, additional_forward_args=args), None
    return attr.sum(-1).detach(), delta


def _image_attr(captum_cls, model, batch, target, black: float = 0.0, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    keys, extra = _split(batch, "images")
    images = batch["images"].detach()
    f = _forward(model, keys)

    def shifted(delta, *rest):  # the input is (image - black): gradient x input is relative to black
        return f(delta + black, *rest)
    method = captum_cls(shifted)
    delta_in = (images - black).requires_grad_()  # Captum would set it (with a warning)
    args = (*extra, _word(batch, None))
    if "n_steps" in kwargs:
        attr, delta = method.attribute(delta_in, baselines=torch.zeros_like(images), target=target,
                                       additional_forward_args=args, return_convergence_delta=True, **kwargs)
    else:
        attr, delta = method.attribute(delta_in, target=target, additional_forward_args=args), None
    return attr.sum(1).detach(), delta


def _attribute(kind: str, model, batch: dict, target: torch.Tensor, word=None, black: float = 0.0, **kwargs):
    from captum import attr as A

    was_training = model.training
    model.eval()
    try:
        if model.embedding_layer() is None:
            cls = A.IntegratedGradients if kind == "ig" else A.InputXGradient
            return _image_attr(cls, model, batch, target, black, **kwargs)
        cls = A.LayerIntegratedGradients if kind == "ig" else A.LayerGradientXActivation
        return _text_attr(cls, model, batch, target, word, **kwargs)
    finally:
        model.train(was_training)


@ATTRIBUTIONS.register("saliency")
def saliency(model, batch: dict, target: torch.Tensor, word=None, black: float = 0.0) -> torch.Tensor:
    """Gradient x input of the target's probability: ``[B, T]`` per token (``[B, H, W]`` per
    pixel for images; ``black`` is the value of a black pixel after normalisation)."""
    return _attribute("saliency", model, batch, target, word, black)[0]


@ATTRIBUTIONS.register("ig")
def integrated_gradients(model, batch: dict, target: torch.Tensor, word=None, steps: int = 50,
                         internal_batch_size: int | None = 256, return_delta: bool = False, black: float = 0.0):
    """Integrated gradients of the target's probability from the baseline (``steps``
    Gauss-Legendre points): ``[B, T]`` or ``[B, H, W]``; with ``return_delta`` also Captum's
    convergence delta per example (sum of attributions minus ``f(x) - f(baseline)``)."""
    attr, delta = _attribute("ig", model, batch, target, word, black, n_steps=steps,
                             internal_batch_size=internal_batch_size)
    return (attr, delta) if return_delta else attr
