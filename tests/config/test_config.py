"""Config loading: key-path errors, overrides, YAML errors with file and line."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from attnkit.config import (
    apply_overrides,
    checked,
    from_dict,
    load_yaml,
    positive,
    save_yaml,
    to_dict,
)
from attnkit.errors import ConfigError


@dataclass
class Encoder:
    type: Literal["lstm", "gru"] = "lstm"
    hidden: int = checked(128, positive)
    dropout: float = 0.0


@dataclass
class Model:
    encoder: Encoder = field(default_factory=Encoder)
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    name: str | None = None


@dataclass
class Root:
    model: Model = field(default_factory=Model)
    epochs: int = checked(3, positive)


def test_defaults_and_nested_values():
    cfg = from_dict(Root, {"model": {"encoder": {"hidden": 7, "dropout": 1}}, "epochs": 2})
    assert cfg.model.encoder.hidden == 7 and cfg.model.encoder.dropout == 1.0 and cfg.epochs == 2
    assert to_dict(cfg)["model"]["sizes"] == [1, 2]


@pytest.mark.parametrize("data,message", [
    ({"model": {"encoder": {"hidden": -3}}}, "model.encoder.hidden: must be > 0, got -3"),
    ({"model": {"encoder": {"hidden": "big"}}}, "model.encoder.hidden: expected an integer, got 'big'"),
    ({"model": {"encoder": {"type": "rnn"}}}, "model.encoder.type: must be one of 'lstm', 'gru'; got 'rnn'"),
    ({"model": {"encoder": {"hiden": 3}}}, "model.encoder: unknown key(s) 'hiden' (did you mean 'hidden'?); known: type, hidden, dropout"),
    ({"model": {"sizes": [1, "x"]}}, "model.sizes[1]: expected an integer, got 'x'"),
    ({"model": 3}, "model: expected a mapping, got 3"),
    ({"epochs": True}, "epochs: expected an integer, got True"),
])
def test_errors_name_the_key_path(data, message):
    with pytest.raises(ConfigError) as e:
        from_dict(Root, data)
    assert str(e.value) == message


def test_overrides_parse_yaml_values_and_create_paths():
    data = apply_overrides({"model": {"encoder": {"hidden": 3}}},
                           ["model.encoder.hidden=64", "epochs=5", "model.name=x", "model.sizes=[3, 4]"])
    cfg = from_dict(Root, data)
    assert (cfg.model.encoder.hidden, cfg.epochs, cfg.model.name, cfg.model.sizes) == (64, 5, "x", [3, 4])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        apply_overrides({}, ["epochs"])
    with pytest.raises(ConfigError, match="epochs is not a mapping"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_yaml_errors_name_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  encoder: {hidden: 3\nepochs: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: YAML syntax error"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="the config is empty"):
        load_yaml(tmp_path / "empty.yaml")


def test_save_and_reload_round_trip(tmp_path):
    cfg = from_dict(Root, {"epochs": 4})
    save_yaml(to_dict(cfg), tmp_path / "c.yaml")
    assert from_dict(Root, load_yaml(tmp_path / "c.yaml")) == cfg


@pytest.mark.parametrize("text,expected", [("1e-3", 0.001), ("2E+2", 200.0), (".5", 0.5), ("3", 3.0)])
def test_numbers_in_scientific_notation_are_numbers(tmp_path, text, expected):
    """PyYAML reads ``1e-3`` as a string (YAML 1.1); hand-written configs use it everywhere."""
    from attnkit.config import apply_overrides, load_yaml
    from attnkit.train import TrainConfig

    path = tmp_path / "c.yaml"
    path.write_text(f"optimizer: {{lr: {text}}}\n", encoding="utf-8")
    assert from_dict(TrainConfig, load_yaml(path)).optimizer.lr == expected
    assert from_dict(TrainConfig, apply_overrides({}, [f"optimizer.lr={text}"])).optimizer.lr == expected


@pytest.mark.parametrize("value,message", [
    ("1e-3", "epochs: expected an integer, got '1e-3'"),
    ("2.5", "epochs: expected an integer, got 2.5"),
    ("fast", "epochs: expected an integer, got 'fast'"),
])
def test_integers_stay_integers(value, message):
    from attnkit.config import apply_overrides
    from attnkit.train import TrainConfig

    with pytest.raises(ConfigError) as e:
        from_dict(TrainConfig, apply_overrides({}, [f"epochs={value}"]))
    assert str(e.value) == message


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(value):
    from attnkit.config import apply_overrides
    from attnkit.train import TrainConfig

    with pytest.raises(ConfigError, match="optimizer.lr: expected a finite number"):
        from_dict(TrainConfig, apply_overrides({}, [f"optimizer.lr={value}"]))
