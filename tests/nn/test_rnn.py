"""Recurrent encoders beyond the 2-layer bidirectional case of test_torch_equivalents:
defaults from a config with only the type, unidirectional width, dropout between layers (as
torch's own), size checks, lengths on the CPU with inputs on the device."""
import warnings

import pytest
import torch
from torch import nn

from attnkit.errors import ConfigError
from attnkit.models.builder import build_block
from attnkit.nn import ENCODERS, GRUEncoder, LSTMEncoder

DT = torch.float64
CELLS = [(LSTMEncoder, nn.LSTM), (GRUEncoder, nn.GRU)]


@pytest.mark.parametrize("name,cell", [("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_rnn_defaults_from_a_config_with_only_the_type(name, cell):
    """``{type: lstm}``: one bidirectional layer of 128 units (width 256) == torch's."""
    enc = build_block(ENCODERS, {"type": name}, "model.encoder", 3).eval()
    assert enc.out_dim == 256
    theirs = cell(3, 128, num_layers=1, bidirectional=True, batch_first=True).eval()
    theirs.load_state_dict(enc.rnn.state_dict())
    x = torch.randn(1, 4, 3)
    torch.testing.assert_close(enc(x, torch.tensor([4])), theirs(x)[0])


@pytest.mark.parametrize("cls,cell", CELLS, ids=["lstm", "gru"])
def test_unidirectional_encoder(cls, cell):
    """``bidirectional: false``: width ``hidden``; each row equals torch's RNN run on it alone."""
    enc = cls(3, hidden=5, layers=2, bidirectional=False).to(DT).eval()
    theirs = cell(3, 5, num_layers=2, batch_first=True, dtype=DT).eval()
    theirs.load_state_dict(enc.rnn.state_dict())
    x = torch.randn(2, 6, 3, dtype=DT)
    out = enc(x, torch.tensor([6, 4]))
    assert enc.out_dim == 5 == out.shape[-1]
    torch.testing.assert_close(out[0], theirs(x[:1])[0][0])
    torch.testing.assert_close(out[1, :4], theirs(x[1:, :4])[0][0])
    assert (out[1, 4:] == 0).all()


@pytest.mark.parametrize("cls,cell", CELLS, ids=["lstm", "gru"])
def test_dropout_between_layers_like_torch(cls, cell):
    """With several layers, ``dropout`` also applies between them exactly as in torch's
    ``LSTM(dropout=p)`` (same random draws); then once more on the output."""
    p = 0.5
    enc = cls(3, hidden=6, layers=2, bidirectional=False, dropout=p).to(DT).train()
    theirs = cell(3, 6, num_layers=2, batch_first=True, dropout=p, dtype=DT).train()
    theirs.load_state_dict(enc.rnn.state_dict())
    x = torch.randn(1, 5, 3, dtype=DT)
    torch.manual_seed(11)
    ours = enc(x, torch.tensor([5]))
    torch.manual_seed(11)
    want = theirs(nn.utils.rnn.pack_padded_sequence(x, torch.tensor([5]), batch_first=True))[0]
    want = nn.utils.rnn.pad_packed_sequence(want, batch_first=True)[0]
    kept = ours != 0
    assert 0.2 < kept.double().mean().item() < 0.8
    torch.testing.assert_close(ours[kept], want[kept] / (1 - p))


@pytest.mark.parametrize("cls", [LSTMEncoder, GRUEncoder])
def test_single_layer_with_dropout_builds_without_torch_warning(cls):
    """One layer + ``dropout``: no inter-layer dropout is asked of torch (which would warn that
    it has no effect)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls(3, hidden=4, layers=1, dropout=0.3)


@pytest.mark.parametrize("key", ["hidden", "layers"])
def test_rnn_rejects_non_positive_sizes(key):
    with pytest.raises(ConfigError, match=rf"^encoder\.{key}: must be > 0, got 0$"):
        LSTMEncoder(3, **{key: 0})


def test_lengths_may_stay_on_the_cpu(device):
    """Inputs on the device and lengths on the CPU (where packing wants them) work; padded
    outputs are zero."""
    enc = GRUEncoder(3, hidden=4).to(device)
    out = enc(torch.randn(2, 5, 3, device=device), torch.tensor([5, 2]))
    assert out.device.type == device.type
    assert (out[1, 2:] == 0).all() and (out[0] != 0).any()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_recurrence_under_bf16_autocast_runs_in_fp32(kind):
    """oneDNN's bf16 LSTM has no kernel on CPUs without bf16 units: under autocast the
    recurrence runs in fp32 (the same numbers as without autocast) and the rest stays bf16."""
    torch.manual_seed(0)
    enc = ENCODERS.get(kind)(in_dim=6, hidden=5, layers=2).eval()
    x, lengths = torch.randn(3, 7, 6), torch.tensor([7, 4, 1])
    with torch.no_grad():
        plain = enc(x, lengths)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = enc(x.bfloat16(), lengths)
    assert auto.dtype == torch.float32
    assert torch.allclose(auto, enc(x.bfloat16().float(), lengths), atol=1e-6)
    assert (auto - plain).abs().max() < 0.05
