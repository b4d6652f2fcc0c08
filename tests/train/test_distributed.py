"""Data-parallel training (``attnkit train --nproc 2``: torchrun, gloo, one thread per rank):
2 ranks x batch B take the steps of 1 process x batch 2B, rank 0 alone writes the run, and a
killed run resumes to exactly the uninterrupted result."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from attnkit.train.distributed import World, shard

CMD = [sys.executable, "-m", "attnkit", "train"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _config(tmp_path, dropout: float = 0.0, **train) -> str:
    cfg = {"task": "text_classification", "data": {"builtin": "toy_sentiment"},
           "model": {"embedding": {"dim": 8, "dropout": dropout}, "encoder": {"type": "gru", "hidden": 8}},
           "train": {"epochs": 1, "batch_size": 8, "seed": 3, "report": False, **train}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


def _train(*args) -> subprocess.CompletedProcess:
    out = subprocess.run([*CMD, *map(str, args)], capture_output=True, text=True, env=ENV, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_shares_cover_the_global_batch():
    batch = list(range(11))
    shares = [shard(batch, World(r, 3)) for r in range(3)]
    assert sum(shares, []) == batch and [len(s) for s in shares] == [3, 4, 4]
    assert shard([5], World(0, 2)) == [] and shard([5], World(1, 2)) == [5]  # fewer examples than ranks: the trainer gives this rank weight 0


def test_two_ranks_take_the_steps_of_one_process_with_twice_the_batch(tmp_path):
    cfg = _config(tmp_path)
    two = _train(cfg, "--out", tmp_path / "two", "--nproc", "2")
    _train(cfg, "--out", tmp_path / "one", "--set", "train.batch_size=16")
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:  # 125 steps; only the order of float sums differs
        torch.testing.assert_close(a[k], b[k], atol=2e-4, rtol=1e-3)
    assert "2 ranks x batch 8" in two.stderr + two.stdout
    assert (two.stdout + two.stderr).count("run directory:") == 1  # rank 0 alone speaks
    epochs = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r.get("kind") == "epoch"] == [1]  # rank 0 alone writes


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs process groups (POSIX)")
def test_a_killed_two_rank_run_resumes_exactly(tmp_path):
    cfg = _config(tmp_path, dropout=0.2, epochs=2, checkpoint_every=20)
    _train(cfg, "--out", tmp_path / "full", "--nproc", "2")
    proc = subprocess.Popen([*CMD, cfg, "--out", str(tmp_path / "killed"), "--nproc", "2"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # somewhere inside the run
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "eval.json").exists(), "the run ended before it was killed"
    _train(cfg, "--out", tmp_path / "killed", "--nproc", "2", "--resume")
    a = json.loads((tmp_path / "full" / "eval.json").read_text())
    b = json.loads((tmp_path / "killed" / "eval.json").read_text())
    assert a["dev"] == b["dev"]
    wa, wb = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "killed" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bad_launches_say_so_once_before_any_rank_starts(tmp_path):
    cfg = _config(tmp_path)
    bad = subprocess.run([*CMD, cfg, "--out", str(tmp_path / "r"), "--nproc", "2", "--set", "train.epochs=-1"],
                         capture_output=True, text=True, env=ENV, check=False, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "train.epochs" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "r").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep", encoding="utf-8")
    busy = subprocess.run([*CMD, cfg, "--out", str(tmp_path / "busy"), "--nproc", "2"], capture_output=True,
                          text=True, env=ENV, check=False, timeout=120)
    assert busy.returncode == 2 and busy.stderr.count("error:") == 1 and "Traceback" not in busy.stderr
    assert (tmp_path / "busy" / "x").read_text() == "keep"


def test_a_run_resumes_only_on_as_many_ranks(tmp_path):
    cfg = _config(tmp_path)
    _train(cfg, "--out", tmp_path / "one", "--set", "train.batch_size=16")
    again = subprocess.run([*CMD, cfg, "--out", str(tmp_path / "one"), "--set", "train.batch_size=16", "--resume",
                            "--nproc", "2"], capture_output=True, text=True, env=ENV, check=False, timeout=300)
    assert again.returncode == 2 and "trained on 1 rank(s) and can resume only on as many" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr
