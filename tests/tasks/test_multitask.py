"""``task: multitask``: sampling schedules, one shared encoder with a head per task, per-task
metrics, and a complete single-task run per task after training."""
import json
from collections import Counter

import pytest
import torch

from attnkit.data.multitask_data import MultiTaskData, schedule
from attnkit.errors import AttnkitError, ConfigError
from attnkit.run import train
from tests.fuzz.contract import invoke
from tests.run.conftest import make_conll_files, make_text_files


class Part:
    def __init__(self, n, length=3):
        self.n, self.length = n, length

    def __len__(self):
        return self.n

    @property
    def lengths(self):
        return [self.length] * self.n

    def collate(self, idx):
        return {"x": torch.tensor(idx)}


def test_schedules_share_the_steps_as_documented():
    g = torch.Generator().manual_seed(0)
    per_task = [[[i] for i in range(30)], [[100 + i] for i in range(10)]]
    prop = schedule(per_task, "proportional", 1.0, g)
    assert sorted(b[0] for b in prop) == sorted(b[0] for t in per_task for b in t)  # every batch once
    rr = schedule(per_task, "round_robin", 1.0, g)
    assert len(rr) == 60 and [b[0] >= 100 for b in rr[:4]] == [False, True, False, True]
    assert Counter(b[0] for b in rr if b[0] >= 100) == Counter({100 + i: 3 for i in range(10)})  # cycled 3 times
    warm = schedule(per_task, "temperature", 1000.0, torch.Generator().manual_seed(1))
    small = sum(b[0] >= 100 for b in warm) / len(warm)
    assert len(warm) == 40 and 0.35 < small < 0.65  # a high temperature: about equal shares
    with pytest.raises(ConfigError, match="multitask.sampling"):
        schedule(per_task, "fancy", 1.0, g)


def test_batches_never_mix_tasks_and_collate_splits_by_task():
    data = MultiTaskData({"a": Part(20), "b": Part(7)}, "proportional")
    batches = data.epoch_batches(0, 4, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(27))
    assert all(len({i >= 20 for i in b}) == 1 for b in batches)
    assert data.epoch_batches(0, 4, 0) == batches and data.epoch_batches(1, 4, 0) != batches
    mixed = data.collate([18, 19, 20, 21])
    assert [(n, b["x"].tolist()) for n, b in mixed["parts"]] == [("a", [18, 19]), ("b", [0, 1])]


def multitask_config(tmp_path, **extra):
    (tmp_path / "text").mkdir(exist_ok=True)
    text = make_text_files(tmp_path / "text")
    conll = make_conll_files(tmp_path)
    return {"task": "multitask",
            "data": {"lowercase": False},
            "multitask": {"sampling": "proportional", "tasks": {
                "sentiment": {"task": "text_classification",
                              "data": {"train": str(text["train"]), "dev": str(text["dev"]), "test": str(text["test"]),
                                       "text_column": "sentence"},
                              "pooler": {"type": "attention"}},
                "ner": {"task": "token_classification", "data": {"train": str(conll["train"]), "dev": str(conll["dev"])}}},
                **extra},
            "model": {"embedding": {"dim": 16}, "encoder": {"type": "lstm", "hidden": 16}},
            "train": {"epochs": 4, "batch_size": 16, "optimizer": {"name": "adam", "lr": 0.01}}}


@pytest.fixture(scope="module")
def mt_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mt")
    out = folder / "run"
    result = train(multitask_config(folder), out=out, progress=False)
    return out, result


def test_one_encoder_learns_both_tasks_and_each_gets_a_run(mt_run):
    out, result = mt_run
    assert result.dev["sentiment/accuracy"] > 0.9 and result.dev["ner/f1"] > 0.8
    assert result.dev["mean_score"] == pytest.approx((result.dev["sentiment/accuracy"] + result.dev["ner/f1"]) / 2)
    assert result.test is not None and "sentiment/accuracy" in result.test
    from safetensors.torch import load_file

    a = load_file(str(out / "tasks" / "sentiment" / "model.safetensors"))
    b = load_file(str(out / "tasks" / "ner" / "model.safetensors"))
    shared = [k for k in a if k.startswith(("embedding.", "encoder."))]
    assert shared and all(torch.equal(a[k], b[k]) for k in shared)  # one encoder
    assert json.loads((out / "tasks" / "ner" / "eval.json").read_text())["dev"]["f1"] == pytest.approx(
        result.dev["ner/f1"])
    r = invoke(["predict", out / "tasks" / "sentiment", "the film was good", "--json"])
    assert r.code == 0 and json.loads(r.out.splitlines()[0])["label"] == "pos", r.err
    r = invoke(["predict", out / "tasks" / "ner", "mr Smith went to Paris", "--json"])
    assert r.code == 0 and json.loads(r.out.splitlines()[0])["tags"][1] == "B-PER", r.out + r.err
    r = invoke(["explain", out / "tasks" / "sentiment", "the film was good"])
    assert r.code == 0, r.err
    assert (out / "tasks" / "sentiment" / "report.html").is_file()
    r = invoke(["predict", out, "the film"])
    assert r.kind == "clean_error" and "RUN/tasks/NAME" in r.err


class Killed(Exception):
    pass


def test_resume_gives_the_uninterrupted_run(tmp_path):
    cfg = multitask_config(tmp_path, sampling="round_robin")
    cfg["train"].update(epochs=2, report=False)
    whole = train(cfg, out=tmp_path / "a", progress=False).dev

    def kill_after_first(epoch, dev):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(cfg, out=tmp_path / "b", progress=False, on_epoch=kill_after_first)
    resumed = train(cfg, out=tmp_path / "b", progress=False, resume=True).dev
    assert resumed == whole


@pytest.mark.parametrize("change,message", [
    (lambda c: c.pop("multitask"), "multitask: required"),
    (lambda c: c["multitask"]["tasks"].pop("ner"), "two or more tasks"),
    (lambda c: c["multitask"]["tasks"]["ner"].update(task="translation"), "cannot share a text encoder"),
    (lambda c: c["multitask"]["tasks"]["ner"].update(colour="red"), "unknown key\\(s\\) colour"),
    (lambda c: c["multitask"]["tasks"]["ner"]["data"].update(train="nowhere.txt"),
     "multitask.tasks.ner: data.train: nowhere.txt not found"),
    (lambda c: c["data"].update(train="x.tsv"), "data.train: a multi-task run reads each task's data"),
    (lambda c: c["train"].update(metric="sentiment/oops"), "train.metric"),
    (lambda c: c["multitask"]["tasks"].update({"..": c["multitask"]["tasks"].pop("ner")}), "letters, digits"),
    (lambda c: c["model"].update(chars={"char_dim": 8}), "model.chars: not in a multi-task run"),
    (lambda c: c["multitask"]["tasks"]["ner"].update(task="masked_lm"), "cannot share a text encoder"),
])
def test_config_errors_name_the_task_and_key(tmp_path, change, message):
    cfg = multitask_config(tmp_path)
    change(cfg)
    with pytest.raises(AttnkitError, match=message):
        train(cfg, out=tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()
