"""Optimisers and schedules."""
import math

import pytest
import torch

from attnkit.config import from_dict
from attnkit.errors import ConfigError
from attnkit.train import OptimizerConfig, ScheduleConfig, build_optimizer
from attnkit.train.optim import lr_multiplier, param_groups


def test_schedules_follow_their_formulas():
    lin = ScheduleConfig(name="linear", warmup=10)
    assert lr_multiplier(0, 110, lin) == pytest.approx(0.1)
    assert lr_multiplier(9, 110, lin) == pytest.approx(1.0)
    assert lr_multiplier(60, 110, lin) == pytest.approx(0.5)
    cos = ScheduleConfig(name="cosine", warmup=0.0, min_lr_ratio=0.1)
    assert lr_multiplier(50, 100, cos) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_multiplier(100, 100, cos) == pytest.approx(0.1)
    frac = ScheduleConfig(name="constant", warmup=0.5)
    assert lr_multiplier(24, 100, frac) == pytest.approx(0.5) and lr_multiplier(50, 100, frac) == 1.0


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW)])
def test_optimizers_and_no_decay_groups(name, cls):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, from_dict(OptimizerConfig, {"name": name, "weight_decay": 0.01}, "train.optimizer"))
    assert isinstance(opt, cls)
    groups = param_groups(model, 0.01)
    assert [len(g["params"]) for g in groups] == [1, 3]  # only the Linear weight decays


@pytest.mark.parametrize("cfg,message", [
    ({"name": "adagrad"}, "train.optimizer.name: unknown optimizer 'adagrad'; known: adam, adamw, sgd"),
    ({"name": "adam", "nesterov": True}, "train.optimizer.nesterov: needs name: sgd and momentum > 0"),
    ({"lr": 0}, "train.optimizer.lr: must be > 0, got 0.0"),
])
def test_bad_optimizer_config(cfg, message):
    with pytest.raises(ConfigError) as e:
        from_dict(OptimizerConfig, cfg, "train.optimizer")
    assert str(e.value) == message
