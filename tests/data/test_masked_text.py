"""Dynamic masking for masked-LM pretraining: which pieces are chosen, what they become, and
that dev masks stay fixed while training masks change."""
import torch

from attnkit.data.masked_text import IGNORE, MaskedTextData, cut_into_sequences, mask_tokens

MASK, VOCAB, FIRST = 4, 1000, 5


def test_cut_into_sequences_keeps_every_piece_in_order():
    ids = [list(range(10, 23)), [7], [8, 9]]
    out = cut_into_sequences(ids, 5)
    assert out == [[10, 11, 12, 13, 14], [15, 16, 17, 18, 19], [20, 21, 22], [7], [8, 9]]
    assert cut_into_sequences([list(range(11))], 5) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]  # a lone last piece dropped


def test_masking_proportions_and_targets():
    g = torch.Generator().manual_seed(0)
    b, t = 400, 100
    tokens = torch.randint(FIRST, VOCAB, (b, t), generator=g)
    tokens[:, 0] = 2  # a special piece at the start of every sequence
    lengths = torch.randint(50, t + 1, (b,), generator=g)
    tokens[torch.arange(t)[None, :] >= lengths[:, None]] = 0
    inputs, targets = mask_tokens(tokens, lengths, MASK, VOCAB, FIRST, 0.15, torch.Generator().manual_seed(1))
    chosen = targets != IGNORE
    ordinary = (torch.arange(t)[None, :] < lengths[:, None]) & (tokens >= FIRST)
    assert not (chosen & ~ordinary).any()  # never padding, never a special piece
    assert torch.equal(targets[chosen], tokens[chosen])
    assert torch.equal(inputs[~chosen], tokens[~chosen])  # what is not predicted is not touched
    share = chosen.sum().item() / ordinary.sum().item()
    assert abs(share - 0.15) < 0.01
    n = chosen.sum().item()
    masked = (inputs[chosen] == MASK).sum().item() / n
    kept = (inputs[chosen] == tokens[chosen]).sum().item() / n
    swapped = ((inputs[chosen] != MASK) & (inputs[chosen] != tokens[chosen])).sum().item() / n
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.02 and abs(swapped - 0.1) < 0.02
    assert (inputs[chosen] >= FIRST).logical_or(inputs[chosen] == MASK).all()  # random pieces are ordinary ones


def test_every_sequence_predicts_at_least_one_piece():
    tokens = torch.tensor([[7, 8, 0, 0], [2, 9, 3, 0], [2, 3, 0, 0]])
    lengths = torch.tensor([2, 3, 2])
    for seed in range(20):
        _, targets = mask_tokens(tokens, lengths, MASK, VOCAB, FIRST, 0.01, torch.Generator().manual_seed(seed))
        chosen = targets != IGNORE
        assert chosen[0].sum() >= 1 and chosen[1].tolist() == [False, True, False, False]
        assert not chosen[2].any()  # only special pieces: nothing to predict


def test_dev_masks_are_fixed_per_example_and_training_masks_change():
    seqs = [list(range(FIRST, FIRST + 30 + i)) for i in range(6)]
    dev = MaskedTextData(seqs, MASK, VOCAB, FIRST, 0.3, fixed_seed=3)
    a = dev.collate([0, 1, 2])
    b = dev.collate([2, 5, 1])
    assert torch.equal(a["targets"][1], b["targets"][2][:a["targets"].shape[1]])  # example 1 alike in any batch
    assert torch.equal(a["tokens"][2][:32], b["tokens"][0][:32])
    train = MaskedTextData(seqs, MASK, VOCAB, FIRST, 0.3)
    c, d = train.collate([0, 1]), train.collate([0, 1])
    assert not torch.equal(c["targets"], d["targets"])
    assert train.lengths == [len(s) for s in seqs]
