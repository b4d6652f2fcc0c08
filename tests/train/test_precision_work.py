"""``precision: auto``'s second stage: where the machine's bf16 ``Linear`` is fast, the run's own
work (a training step, a prediction batch, a service's warm-up batch) is timed too, and bf16 is
chosen only when that is clearly faster; the probe leaves no trace on the model or the run."""
import sys
from pathlib import Path

import re

import pytest
import torch

from attnkit.config import from_dict
from attnkit.evaluate import evaluate_model
from attnkit.train import TrainConfig, Trainer
from attnkit.train import precision as P

sys.path.insert(0, str(Path(__file__).parent))
from toydata import ToyText, toy_model  # noqa: E402


@pytest.fixture
def probes(tmp_path, monkeypatch):
    """Fake probes: the machine's Linear at ``probes["linear"]``, each work at ``probes["work"]``;
    ``probes["seen"]`` lists what each work probe timed."""
    monkeypatch.setenv("ATTNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(P, "others_busy_between", lambda *a: 0.0)
    state = {"linear": 1.8, "work": 1.0, "seen": []}
    monkeypatch.setattr(P, "probe", lambda: {"fp32_ms": 1.0, "bf16_ms": 1.0, "bf16_speedup": state["linear"]})

    def probe_work(work):
        state["seen"].append(work.what)
        work.step()  # the real step runs: it must leave no trace
        return {"fp32_ms": 1.0, "bf16_ms": 1.0, "bf16_speedup": state["work"]}

    monkeypatch.setattr(P, "probe_work", probe_work)
    return state


def _work(model=None, what="train batch 4"):
    model = model or torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    return P.model_work(model, lambda: model(x), what, loss=lambda out: out.sum())


@pytest.mark.parametrize("linear,work,expected", [(1.8, 1.5, "bf16"), (1.8, 0.96, "fp32"), (1.8, 1.29, "fp32")])
def test_bf16_only_where_the_runs_own_work_is_clearly_faster(probes, linear, work, expected):
    probes.update(linear=linear, work=work)
    choice = P.choose_precision("auto", work=_work())
    assert choice.name == expected
    assert f"bf16 Linear {linear:.2f}x" in choice.why and f"bf16 train batch 4 {work:.2f}x fp32 (probe)" in choice.why
    assert probes["seen"] == ["train batch 4"]


def test_no_work_probe_where_the_machine_says_bf16_cannot_pay(probes):
    probes.update(linear=0.17, work=9.0)
    choice = P.choose_precision("auto", work=_work())
    assert choice.name == "fp32" and probes["seen"] == [] and "train batch" not in choice.why


def test_work_probes_are_cached_per_architecture_and_batch(probes):
    P.choose_precision("auto", work=_work())
    assert "(cached probe)" in P.choose_precision("auto", work=_work()).why  # same shapes, fresh weights
    P.choose_precision("auto", work=_work(torch.nn.Linear(3, 5)))  # another architecture
    P.choose_precision("auto", work=_work(what="train batch 8"))  # another batch
    frozen = torch.nn.Linear(3, 2)
    frozen.weight.requires_grad_(False)
    P.choose_precision("auto", work=_work(frozen))  # the same shapes with a frozen weight: other work
    assert probes["seen"] == ["train batch 4", "train batch 4", "train batch 8", "train batch 4"]


def test_the_batch_size_text_is_its_largest_tensor():
    batch = {"tokens": torch.zeros(32, 47, dtype=torch.long), "lengths": torch.zeros(32), "name": "x"}
    assert P.batch_size_text(batch) == "32x47"
    assert P.batch_size_text({"images": torch.zeros(8, 1, 28, 28), "labels": torch.zeros(8)}) == "8x1x28x28"
    assert P.batch_size_text({"n": 3}) == "?"


@pytest.mark.parametrize("training", [True, False])
def test_the_work_probe_leaves_no_trace(training):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.5))
    model.train()
    model[2].eval()  # a submodule kept in eval on purpose stays so
    model[0].weight.grad = torch.full_like(model[0].weight, 7.0)  # gradients already there stay
    x = torch.randn(6, 3)
    stats = model[1].running_mean.clone()
    rng = torch.get_rng_state()
    loss = (lambda out: out.square().sum()) if training else None
    work = P.model_work(model, lambda: model(x), "batch 6", loss=loss)
    result = P.probe_work(work)
    assert result["fp32_ms"] > 0 and result["bf16_ms"] > 0
    assert [m.training for m in model] == [True, True, False] and model.training
    assert torch.equal(model[1].running_mean, stats)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 7.0))
    assert model[0].bias.grad is None and model[1].weight.grad is None


def _trainer(tmp_path, precision):
    cfg = from_dict(TrainConfig, {"epochs": 1, "batch_size": 16, "seed": 3, "precision": precision,
                                  "optimizer": {"lr": 0.01}}, "train")
    return Trainer(toy_model(), ToyText(64, seed=1), ToyText(16, seed=2), cfg, tmp_path,
                   lambda m, d: evaluate_model(m, d, ["no", "yes"]), progress=False)


def test_training_times_its_own_step_and_then_trains_as_fp32_would(probes, tmp_path):
    probes.update(work=1.0)  # a BiLSTM: bf16 does not pay
    torch.manual_seed(11)
    auto = _trainer(tmp_path / "auto", "auto")
    after_auto = torch.get_rng_state()
    assert auto.precision.name == "fp32" and len(probes["seen"]) == 1
    assert re.fullmatch(r"train batch 16x\d+", probes["seen"][0])  # batch x length: the work's size
    # right after the probe (before fit() reseeds and zeroes anything): nothing left behind
    assert all(p.grad is None for p in auto.model.parameters()) and auto.model.training
    torch.manual_seed(11)
    _trainer(tmp_path / "plain", "fp32")  # the same construction without a probe
    assert torch.equal(after_auto, torch.get_rng_state())
    auto.fit()
    fp32 = _trainer(tmp_path / "fp32", "fp32")
    fp32.fit()
    for a, b in zip(auto.model.parameters(), fp32.model.parameters()):
        assert torch.equal(a, b)  # the probe drew no random numbers and left no gradients
    P.cache_path().unlink()  # measured again: now bf16 pays
    probes.update(work=2.0)
    assert _trainer(tmp_path / "fast", "auto").precision.name == "bf16"


def test_predict_evaluate_and_serve_time_a_batch_of_their_own(probes, text_run, text_files_s):
    from attnkit.evaluate import evaluate_run
    from attnkit.run import predict
    from attnkit.serve.models import load_served
    from attnkit.serve.settings import ServeSettings

    probes.update(work=2.0)
    predict(text_run, ["good", "bad", "fine"], batch_size=2, precision="auto")
    assert probes["seen"] == ["predict batch 2"]
    evaluate_run(text_run, text_files_s["dev"], batch_size=4, precision="auto")
    assert re.fullmatch(r"evaluate batch 4x\d+", probes["seen"][-1])
    served = load_served("m", text_run, ServeSettings(models={"m": text_run}, precision="auto"))
    assert served.precision.name == "bf16" and probes["seen"][-1].startswith("serve batch")
    seen = len(probes["seen"])
    served.predict_texts(["good", "bad"], [1, 1])
    assert len(probes["seen"]) == seen  # chosen once, at load
