"""Saliency and integrated gradients (through Captum) against float64 references written
from the definitions, on random inputs of several shapes."""
import pytest
import torch
from torch import nn

from attnkit.explain import integrated_gradients, saliency
from attnkit.models import ModelConfig
from attnkit.tasks import build_model


def text_model(encoder):
    torch.manual_seed(0)
    cfg = ModelConfig(embedding={"dim": 6}, encoder=encoder, pooler={"type": "attention", "score": "additive"})
    return build_model("text_classification", cfg, vocab_size=20, num_classes=3).double().eval()


def image_model():
    torch.manual_seed(0)
    cfg = ModelConfig(encoder={"type": "image_cnn", "channels": [4, 4]}, pooler={"type": "attention"})
    return build_model("image_classification", cfg, num_classes=3, in_channels=1).double().eval()


def batch_of(b, t):
    lengths = torch.randint(1, t + 1, (b,))
    lengths[0] = t
    tokens = torch.randint(2, 20, (b, t)) * (torch.arange(t) < lengths[:, None])
    return {"tokens": tokens, "lengths": lengths}


def prob_from_embeddings(model, batch, emb, target):
    """p(target) with the embedding layer's output replaced by ``emb``."""
    handle = model.embedding.register_forward_hook(lambda m, i, o: emb)
    try:
        p = torch.softmax(model(batch)["logits"], -1)
    finally:
        handle.remove()
    return p.gather(1, target[:, None]).squeeze(1)


def reference_saliency(model, batch, target):
    emb = model.embedding(batch["tokens"]).detach().requires_grad_()
    grad, = torch.autograd.grad(prob_from_embeddings(model, batch, emb, target).sum(), emb)
    return (grad * emb).sum(-1)


def reference_ig(model, batch, target, steps=400):
    """Midpoint Riemann sum from the zero (padding) embedding (all steps in one batch)."""
    x = model.embedding(batch["tokens"]).detach()
    base = model.embedding(torch.zeros_like(batch["tokens"])).detach()
    alphas = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    path = (base + alphas[:, None, None, None] * (x - base)).reshape(-1, *x.shape[1:]).requires_grad_()
    big = {k: v.repeat(steps, *([1] * (v.dim() - 1))) for k, v in batch.items()}
    grad, = torch.autograd.grad(prob_from_embeddings(model, big, path, target.repeat(steps)).sum(), path)
    return (grad.view(steps, *x.shape).mean(0) * (x - base)).sum(-1)


ENCODERS = [{"type": "lstm", "hidden": 5}, {"type": "transformer", "dim": 6, "layers": 1, "attention": {"heads": 2},
                                            "dropout": 0.0}]


@pytest.mark.parametrize("encoder", ENCODERS, ids=["lstm", "transformer"])
@pytest.mark.parametrize("b,t", [(1, 4), (3, 7)])
def test_saliency_is_gradient_times_input(encoder, b, t):
    model, batch = text_model(encoder), batch_of(b, t)
    target = torch.randint(0, 3, (b,))
    got = saliency(model, batch, target)
    torch.testing.assert_close(got, reference_saliency(model, batch, target), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("encoder", ENCODERS, ids=["lstm", "transformer"])
@pytest.mark.parametrize("b,t", [(1, 5), (2, 6)])
def test_integrated_gradients_match_the_path_integral_and_are_complete(encoder, b, t):
    model, batch = text_model(encoder), batch_of(b, t)
    target = torch.randint(0, 3, (b,))
    got, delta = integrated_gradients(model, batch, target, steps=64, return_delta=True)
    want = reference_ig(model, batch, target)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)
    x_emb = model.embedding(batch["tokens"]).detach()
    zero = model.embedding(torch.zeros_like(batch["tokens"])).detach()
    gap = prob_from_embeddings(model, batch, x_emb, target) - prob_from_embeddings(model, batch, zero, target)
    torch.testing.assert_close(got.sum(1), gap.detach(), rtol=1e-4, atol=1e-6)  # completeness
    assert float(delta.abs().max()) < 1e-4


def test_image_saliency_and_ig_are_relative_to_a_black_image():
    model = image_model()
    images = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    black = -0.5
    target = torch.tensor([0, 2])
    x = images.clone().requires_grad_()
    p = torch.softmax(model({"images": x})["logits"], -1).gather(1, target[:, None]).sum()
    grad, = torch.autograd.grad(p, x)
    got = saliency(model, {"images": images}, target, black=black)
    assert got.shape == (2, 12, 12)
    torch.testing.assert_close(got, (grad * (images - black)).sum(1), rtol=1e-7, atol=1e-10)
    ig = integrated_gradients(model, {"images": images}, target, steps=400, black=black)  # ReLU kinks: many steps
    with torch.no_grad():
        probs = torch.softmax(model({"images": images})["logits"], -1).gather(1, target[:, None]).squeeze(1)
        dark = torch.softmax(model({"images": torch.full_like(images, black)})["logits"], -1)
    torch.testing.assert_close(ig.sum((1, 2)), probs - dark.gather(1, target[:, None]).squeeze(1), rtol=1e-3,
                               atol=1e-5)


def smooth_image_model(in_channels):
    """A small image classifier with every kink removed (softplus for ReLU, no max-pooling) and
    random weights, so integrated gradients converge fast and can be compared pixel by pixel."""
    torch.manual_seed(in_channels)
    cfg = ModelConfig(encoder={"type": "image_cnn", "channels": [4, 4], "pool_after": []}, pooler={"type": "attention"})
    model = build_model("image_classification", cfg, num_classes=3, in_channels=in_channels).double().eval()
    body = model.encoder.body
    for i, m in enumerate(body):
        if isinstance(m, nn.ReLU):
            body[i] = nn.Softplus()
    with torch.no_grad():
        model.head.net[1].weight.normal_(0.0, 0.5)
        model.head.net[1].bias.zero_()
        for m in body:
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                for t in (m.running_mean, m.weight, m.bias):
                    t.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model


def reference_image_ig(model, images, target, black, steps=400):
    """IG from the formula: (x - x') * mean over midpoints a of d p_target(x' + a (x - x')) / dx,
    x' the all-``black`` image, summed over channels (all steps in one batch)."""
    base = torch.full_like(images, black)
    alphas = (torch.arange(steps, dtype=images.dtype) + 0.5) / steps
    path = (base + alphas[:, None, None, None, None] * (images - base)).reshape(-1, *images.shape[1:])
    path.requires_grad_()
    p = torch.softmax(model({"images": path})["logits"], -1).gather(1, target.repeat(steps)[:, None]).sum()
    grad, = torch.autograd.grad(p, path)
    return (grad.view(steps, *images.shape).mean(0) * (images - base)).sum(1)


@pytest.mark.parametrize("b,c,h,w", [(1, 1, 5, 6), (2, 3, 6, 7), (3, 2, 8, 8)])
def test_image_ig_matches_the_path_integral_pixel_by_pixel(b, c, h, w):
    """Image IG == an independent float64 Riemann sum of the path integral at every pixel; a
    permutation of the returned map (same sum, so complete too) fails that comparison."""
    model = smooth_image_model(c)
    gen = torch.Generator().manual_seed(b * c)
    images = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 3, (b,), generator=gen)
    black = -0.5
    got = integrated_gradients(model, {"images": images}, target, steps=48, black=black)
    want = reference_image_ig(model, images, target, black)
    assert got.shape == (b, h, w)
    atol = 1e-5 * float(want.abs().max())
    assert float(want.abs().max()) > 1e-3, float(want.abs().max())  # the map is not trivially small
    torch.testing.assert_close(got, want, rtol=0, atol=atol)
    order = torch.roll(torch.arange(h * w), 1)  # moves every pixel
    permuted = got.flatten(1)[:, order].view_as(got)
    torch.testing.assert_close(permuted.sum((1, 2)), got.sum((1, 2)))
    assert float((permuted - want).abs().max()) > 100 * atol
