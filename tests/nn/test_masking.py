"""Padding helpers: masks and lengths from their definitions, on every test device."""
import torch

from attnkit.nn.masking import full_lengths, padding_mask


def test_padding_mask_matches_definition(device):
    """``mask[b, t] = t < lengths[b]``, on the lengths' device."""
    lengths = torch.tensor([3, 0, 5, 1], device=device)
    mask = padding_mask(lengths, 5)
    assert mask.dtype == torch.bool and mask.device == lengths.device
    want = [[t < n for t in range(5)] for n in lengths.tolist()]
    assert mask.tolist() == want


def test_full_lengths_is_the_sequence_length_of_every_row(device):
    """``[B]`` long lengths, all ``T``, on the input's device."""
    x = torch.zeros(3, 7, 2, device=device)
    lengths = full_lengths(x)
    assert lengths.dtype == torch.long and lengths.device == x.device
    assert lengths.tolist() == [7, 7, 7]
