"""Progress lines in the log when there is no progress bar (output not a terminal)."""
import logging
import re
from types import SimpleNamespace

import pytest
from toydata import ToyText, toy_model

import attnkit.train.trainer as trainer_module
from attnkit.config import from_dict, load_yaml
from attnkit.evaluate import evaluate_model
from attnkit.tasks import run_config
from attnkit.train import TrainConfig, Trainer
from attnkit.train.trainer import _duration

LINE = re.compile(r"epoch (\d+)/(\d+): batch (\d+)/(\d+) \((\d+)%\), (\d+) samples/s, loss (\d+\.\d{4}), "
                  r"about (.+) left in this epoch")


def make_trainer(tmp_path, progress=False, on_step=None, **train):
    cfg = from_dict(TrainConfig, {"epochs": 1, "batch_size": 16, "optimizer": {"lr": 0.01}, **train}, "train")
    return Trainer(toy_model(), ToyText(300, seed=1), ToyText(40, seed=2), cfg, tmp_path,
                   lambda m, d: evaluate_model(m, d, ["no", "yes"]), progress=progress, on_step=on_step)


@pytest.fixture
def lines(caplog, monkeypatch):
    """The progress lines logged so far, parsed (the attnkit logger does not propagate to the
    root logger, where caplog listens, unless told to)."""
    monkeypatch.setattr(logging.getLogger("attnkit"), "propagate", True)
    caplog.set_level(logging.INFO, logger="attnkit")

    def parsed():
        return [m for r in caplog.records if r.name == "attnkit" and (m := LINE.fullmatch(r.getMessage()))]

    return parsed


@pytest.fixture
def clock(monkeypatch):
    """The trainer's clock advances by exactly one second each time it is read."""
    now = {"t": 100.0}

    def perf_counter():
        now["t"] += 1.0
        return now["t"]

    monkeypatch.setattr(trainer_module, "time", SimpleNamespace(perf_counter=perf_counter))


def test_duration():
    assert _duration(45) == "45 s"
    assert _duration(130) == "2 min 10 s"
    assert _duration(3900) == "1 h 05 min"
    assert _duration(0.2) == "0 s" and _duration(59.6) == "1 min 00 s" and _duration(3599.8) == "1 h 00 min"


def test_progress_lines_without_a_bar(tmp_path, lines):
    trainer = make_trainer(tmp_path, epochs=2, log_every=1e-9)
    n = len(trainer._batches(0))
    trainer.fit()
    found = lines()
    assert len(found) == 2 * n  # every batch, since log_every is tiny
    first = found[0]
    assert first.group(0).startswith(f"epoch 1/2: batch 1/{n} (")
    assert int(first.group(5)) == 100 // n and int(first.group(6)) > 0
    assert [(int(m.group(1)), int(m.group(3)), int(m.group(4))) for m in found] == \
        [(e, b, n) for e in (1, 2) for b in range(1, n + 1)]
    assert found[n - 1].group(5) == "100"
    assert re.fullmatch(r"\d+ s|\d+ min \d\d s|\d+ h \d\d min", first.group(8))


def test_rates_and_time_left_with_a_known_clock(tmp_path, lines, clock):
    trainer = make_trainer(tmp_path, log_every=1.0)
    batches = trainer._batches(0)
    n = len(batches)
    trainer.fit()
    found = lines()[:n]
    for k, m in enumerate(found, start=1):  # k batches in k seconds
        seen = sum(len(b) for b in batches[:k])
        assert m.group(0).startswith(f"epoch 1/1: batch {k}/{n} ({100 * k // n}%), {seen / k:.0f} samples/s, ")
        assert m.group(8) == _duration(n - k)  # one second per batch


def test_lines_are_spaced_by_log_every(tmp_path, lines, clock):
    trainer = make_trainer(tmp_path, log_every=2.5)
    n = len(trainer._batches(0))
    trainer.fit()
    assert [int(m.group(3)) for m in lines()] == list(range(3, n + 1, 3))


def test_a_resumed_epoch_counts_only_its_own_batches(tmp_path, lines, clock):
    trainer = make_trainer(tmp_path, log_every=1.0, on_step=lambda st: st["step"] == 4)
    batches = trainer._batches(0)
    n = len(batches)
    assert trainer.fit() == {} and trainer.state["batch"] == 4  # paused and checkpointed mid-epoch
    before = len(lines())
    trainer.on_step = None
    trainer.fit(resume=True)
    first = lines()[before]
    # one batch in one second: the 4 batches before the pause count neither in samples/s nor in the time left
    assert first.group(0).startswith(f"epoch 1/1: batch 5/{n} ({500 // n}%), {len(batches[4])} samples/s, ")
    assert first.group(8) == _duration(n - 5)


@pytest.mark.parametrize("progress,log_every", [(False, 0), (True, 1e-9)])
def test_no_progress_lines_when_off_or_with_a_bar(tmp_path, lines, progress, log_every):
    trainer = make_trainer(tmp_path, progress=progress, log_every=log_every)
    trainer.fit()
    assert trainer.state["history"] and lines() == []


def test_log_every_in_a_run_config(tmp_path):
    (tmp_path / "run.yaml").write_text("data: {builtin: toy_sentiment}\ntrain: {log_every: 10}\n", encoding="utf-8")
    assert run_config(load_yaml(tmp_path / "run.yaml")).train.log_every == 10.0
    assert run_config({"data": {"builtin": "toy_sentiment"}}).train.log_every == 30.0
    with pytest.raises(Exception, match=r"train.log_every: must be >= 0, got -1"):
        run_config({"train": {"log_every": -1}})
