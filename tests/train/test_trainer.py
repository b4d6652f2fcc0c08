"""The training loop: learning, early stopping, NaN guard, logs, exact resume after a kill."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from toydata import ToyText, toy_model

from attnkit.config import from_dict
from attnkit.evaluate import evaluate_model
from attnkit.train import TrainConfig, Trainer, TrainingDiverged, load_checkpoint

HERE = Path(__file__).parent


def make_trainer(tmp_path, **train):
    cfg = from_dict(TrainConfig, {"epochs": 4, "batch_size": 16, "optimizer": {"lr": 0.01}, **train}, "train")
    return Trainer(toy_model(), ToyText(300, seed=1), ToyText(80, seed=2), cfg, tmp_path,
                   lambda m, d: evaluate_model(m, d, ["no", "yes"]), progress=False)


def test_trainer_learns_and_logs(tmp_path):
    trainer = make_trainer(tmp_path)
    best = trainer.fit()
    assert best["accuracy"] >= 0.9
    losses = [h["train"]["loss"] for h in trainer.state["history"]]
    assert losses[-1] < losses[0]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3, 4]
    assert list((tmp_path / "events").iterdir()), "TensorBoard event files"
    best_ck = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best_ck["dev"]["accuracy"] == best["accuracy"]


def test_max_steps_accumulation_and_early_stopping(tmp_path):
    trainer = make_trainer(tmp_path / "a", max_steps=5, accumulate=2)
    trainer.fit()
    assert trainer.state["step"] == 5 and len(trainer.state["history"]) == 1
    stopper = make_trainer(tmp_path / "b", epochs=20, patience=1, metric="loss",
                           optimizer={"lr": 1e-9})  # nothing improves: stops after 2 epochs
    stopper.fit()
    assert len(stopper.state["history"]) == 2


def test_nan_loss_stops_with_clear_message_and_keeps_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, epochs=2)
    trainer.fit()
    before = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    trainer.cfg.epochs = 3
    with torch.no_grad():
        trainer.model.head.net[-1].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"epoch 3, step \d+: loss is nan; training stopped; the last good"):
        trainer.fit()
    after = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert after["trainer"]["step"] == before["trainer"]["step"]
    assert all(torch.isfinite(v).all() for v in after["model"].values() if v.is_floating_point())


def test_bad_metric_name(tmp_path):
    with pytest.raises(Exception, match="train.metric: 'f1' is not computed"):
        make_trainer(tmp_path, metric="f1", epochs=1).fit()


def run_toy(run_dir, *args):
    proc = subprocess.run([sys.executable, str(HERE / "toy_train.py"), str(run_dir), *args],
                          capture_output=True, text=True, check=False, timeout=300)
    return proc


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    full = run_toy(tmp_path / "full")
    assert full.returncode == 0, full.stderr
    killed = run_toy(tmp_path / "resumed", "--kill-after", "4")  # mid-epoch 2 (13 steps per epoch)
    assert killed.returncode == -9, killed.stderr
    ck = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert ck["trainer"]["step"] == 15 and ck["trainer"]["batch"] == 2  # steps 5, 10, epoch end 13, 15
    resumed = run_toy(tmp_path / "resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = json.loads(full.stdout.splitlines()[-1]), json.loads(resumed.stdout.splitlines()[-1])
    assert a == b
    assert not list((tmp_path / "resumed" / "checkpoints").glob(".*tmp"))


def test_resume_tolerates_a_metrics_line_cut_short_by_a_kill(tmp_path):
    trainer = make_trainer(tmp_path, epochs=1)
    trainer.fit()
    with (tmp_path / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"kind": "train", "ste')  # the process died mid-write
    again = make_trainer(tmp_path, epochs=2)
    again.fit(resume=True)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines) and len(again.state["history"]) == 2


def test_progress_bar_mode_runs_and_reports(tmp_path, capsys):
    cfg = from_dict(TrainConfig, {"epochs": 1, "batch_size": 32}, "train")
    Trainer(toy_model(), ToyText(64, seed=1), ToyText(16, seed=2), cfg, tmp_path,
            lambda m, d: evaluate_model(m, d, ["no", "yes"]), progress=True).fit()
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss" in err


def test_pause_and_resume_continue_the_same_run(tmp_path):
    """on_step can pause training (checkpointed); fit(resume=True) goes on to the same end."""
    torch.manual_seed(0)
    a = make_trainer(tmp_path / "a", epochs=2)
    a.fit()
    seen = []
    torch.manual_seed(0)
    b = make_trainer(tmp_path / "b", epochs=2)
    b.on_step = lambda st: (seen.append(st["step"]), st["step"] in (3, 11))[1]
    b.fit()
    assert b.paused and b.state["step"] == 3
    b.fit(resume=True)
    assert b.paused and b.state["step"] == 11
    b.fit(resume=True)
    assert not b.paused and seen == list(range(1, a.state["step"] + 1))
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
