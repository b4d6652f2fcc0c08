"""Convolutional blocks against their formulas (float64): the image CNN's conv -> batchnorm ->
ReLU -> max-pool stack (train and eval statistics), TextCNN's size checks and width-1 case,
and CharCNN's max over each word's real characters."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnkit.errors import ConfigError
from attnkit.nn import CharCNN, ImageCNN, TextCNN

DT = torch.float64


# ------------------------------------------------------------------ image CNN


def image_cnn_reference(enc, images, train, pool_after, k):
    """k x k conv (no bias, 'same' padding) -> batchnorm (batch or running statistics) -> ReLU, then a
    2x2 max-pool after the blocks listed in ``pool_after``."""
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)]
    x = images
    for i, (conv, bn) in enumerate(zip(convs, norms)):
        assert conv.weight.shape[-2:] == (k, k)
        x = F.conv2d(F.pad(x, (k // 2,) * 4), conv.weight)
        if train:
            mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
        else:
            mean, var = bn.running_mean, bn.running_var
        x = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn.eps)
        x = torch.relu(x * bn.weight[:, None, None] + bn.bias[:, None, None])
        if i in pool_after:
            b, c, h, w = x.shape
            x = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(b, c, h // 2, 2, w // 2, 2).amax((3, 5))
    return x


def test_image_cnn_defaults_in_train_mode():
    """Defaults: one input channel, 3x3 kernels, a max-pool after every block, no dropout;
    batch statistics in train mode. ``grid`` is None until the first call, then (H', W')."""
    torch.manual_seed(0)
    enc = ImageCNN(channels=(3, 4)).to(DT).train()
    assert enc.grid is None and enc.out_dim == 4
    images = torch.randn(2, 1, 8, 8, dtype=DT)
    with torch.no_grad():
        want = image_cnn_reference(enc, images, train=True, pool_after=[0, 1], k=3)
        out = enc(images)
    assert want.shape == (2, 4, 2, 2) and enc.grid == (2, 2)
    assert (want > 0).double().mean() > 0.2
    torch.testing.assert_close(out, want.flatten(2).transpose(1, 2))


@pytest.mark.parametrize("pool_after,grid", [([1], (4, 4)), ([], (8, 8)), ([0, 2], (2, 2))])
def test_image_cnn_eval_with_chosen_pooling_and_kernel(pool_after, grid):
    """Eval mode (running statistics), 5x5 kernels, pooling only after the listed blocks."""
    torch.manual_seed(1)
    enc = ImageCNN(2, channels=(3, 4, 2), kernel_size=5, pool_after=pool_after).to(DT).eval()
    with torch.no_grad():
        for bn in enc.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(std=0.1)
    images = torch.randn(2, 2, 8, 8, dtype=DT)
    with torch.no_grad():
        out = enc(images)
        want = image_cnn_reference(enc, images, train=False, pool_after=pool_after, k=5)
    assert enc.grid == grid and want.shape[-2:] == grid and enc.out_dim == 2
    assert (want > 0).double().mean() > 0.2  # not a trivially all-zero map
    torch.testing.assert_close(out, want.flatten(2).transpose(1, 2))


@pytest.mark.parametrize("channels", [(), (4, 0)])
def test_image_cnn_rejects_empty_or_zero_channels(channels):
    with pytest.raises(ConfigError, match=r"encoder\.channels: must be a non-empty list of ints > 0"):
        ImageCNN(1, channels=channels)


def test_image_cnn_accepts_single_channel_blocks():
    assert ImageCNN(1, channels=(1,))(torch.randn(1, 1, 4, 4)).shape == (1, 4, 1)


# ------------------------------------------------------------------ TextCNN


@pytest.mark.parametrize("kernel_sizes", [(), (3, 0)])
def test_textcnn_rejects_empty_or_zero_kernel_sizes(kernel_sizes):
    with pytest.raises(ConfigError, match=r"encoder\.kernel_sizes: must be a non-empty list of ints > 0"):
        TextCNN(4, channels=2, kernel_sizes=kernel_sizes)


def test_textcnn_rejects_non_positive_channels():
    with pytest.raises(ConfigError, match=r"^encoder\.channels: must be > 0, got 0$"):
        TextCNN(4, channels=0)


def test_textcnn_width_one_is_a_per_token_relu_layer():
    """Kernel width 1 is allowed: ``relu(W x_t + b)`` at real tokens, zero at padding."""
    enc = TextCNN(3, channels=5, kernel_sizes=[1]).to(DT)
    (conv,) = enc.convs
    x = torch.randn(2, 4, 3, dtype=DT)
    out = enc(x, torch.tensor([4, 2]))
    want = torch.relu(x @ conv.weight[:, :, 0].T + conv.bias)
    want[1, 2:] = 0
    torch.testing.assert_close(out, want)


def test_textcnn_default_width():
    """Defaults: 100 channels for each of the widths 3, 4, 5."""
    enc = TextCNN(4)
    assert enc.out_dim == 300
    assert enc(torch.randn(1, 6, 4), torch.tensor([6])).shape == (1, 6, 300)


# ------------------------------------------------------------------ CharCNN


def char_cnn_reference(cnn, chars):
    """Per word: embed its real (non-zero) characters, convolve with zero padding at the word's
    own edges, max over its characters; zero for a word without characters."""
    w_conv, b_conv = cnn.conv.weight, cnn.conv.bias  # (C, D, k), (C,)
    k = w_conv.shape[-1]
    out = torch.zeros(*chars.shape[:2], w_conv.shape[0], dtype=w_conv.dtype)
    for b in range(chars.shape[0]):
        for t in range(chars.shape[1]):
            ids = [c for c in chars[b, t].tolist() if c != 0]
            if not ids:
                continue
            e = cnn.embed.weight[ids]  # (n, D)
            n = len(ids)
            feats = []
            for i in range(n):
                f = b_conv.clone()
                for j in range(k):
                    p = i + j - k // 2
                    if 0 <= p < n:
                        f = f + w_conv[:, :, j] @ e[p]
                feats.append(f)
            out[b, t] = torch.stack(feats).amax(0)
    return out


def test_char_cnn_matches_the_per_word_formula_and_leaves_padding_untrained():
    """Padding characters (id 0) neither change a word's features (the word is convolved as if
    alone) nor receive gradient; 5-wide kernels keep the word's length."""
    torch.manual_seed(0)
    cnn = CharCNN(12, char_dim=3, channels=4, kernel_size=5).to(DT)
    chars = torch.tensor([[[3, 1, 5, 0, 0, 0], [0, 0, 0, 0, 0, 0], [7, 0, 0, 0, 0, 0]],
                          [[2, 4, 6, 8, 10, 11], [1, 1, 0, 0, 0, 0], [9, 3, 0, 0, 0, 0]]])
    out = cnn(chars)
    assert cnn.out_dim == 4 == out.shape[-1]
    torch.testing.assert_close(out, char_cnn_reference(cnn, chars))
    out.sum().backward()
    assert (cnn.embed.weight.grad[0] == 0).all() and (cnn.embed.weight.grad[1] != 0).any()


def test_char_cnn_defaults():
    """Defaults: 30-dim character embeddings, 50 channels."""
    cnn = CharCNN(10)
    assert cnn.embed.embedding_dim == 30 and cnn.out_dim == 50
    assert cnn(torch.tensor([[[1, 2, 0]]])).shape == (1, 1, 50)
