"""``precision: auto | fp32 | bf16``: the choice, its reason, the per-CPU cache, and bf16
autocast through the models' blocks within a plain bf16 computation's own error."""
import json

import pytest
import torch

from attnkit.config import from_dict
from attnkit.errors import ConfigError
from attnkit.train import precision as P
from attnkit.train.config import TrainConfig


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(P, "others_busy_between", lambda *a: 0.0)  # a quiet machine, whatever runs beside
    return tmp_path / "cache" / "precision.json"


def test_a_probe_taken_while_other_processes_are_busy_is_used_but_not_cached(cache, monkeypatch):
    calls = fake_probe(monkeypatch, 0.5)
    monkeypatch.setattr(P, "others_busy_between", lambda *a: 1.0)
    choice = P.choose_precision("auto")
    assert choice.name == "fp32" and "other processes kept 1 cores busy: not cached" in choice.why
    assert not cache.exists()
    monkeypatch.setattr(P, "others_busy_between", lambda *a: 0.0)
    assert "(probe," in P.choose_precision("auto").why and cache.exists() and len(calls) == 2


def test_other_processes_cpu_time_is_what_counts():
    from attnkit.attention.backends.threads import others_busy_between

    # 3 s of all CPUs busy over 2 s, 1 s of it ours: the others kept 1 core busy
    assert others_busy_between((10.0, 4.0), (13.0, 5.0), 2.0) == pytest.approx(1.0)
    assert others_busy_between(None, (13.0, 5.0), 2.0) == 0.0
    assert others_busy_between((10.0, 4.0), (10.5, 4.5), 1.0) == 0.0


def fake_probe(monkeypatch, speedup):
    calls = []

    def probe():
        calls.append(1)
        return {"fp32_ms": 1.0, "bf16_ms": 1.0 / speedup, "bf16_speedup": speedup}

    monkeypatch.setattr(P, "probe", probe)
    return calls


def test_fp32_and_bf16_are_taken_as_asked(cache):
    assert P.choose_precision("fp32").name == "fp32" and P.choose_precision("fp32").dtype is None
    bf16 = P.choose_precision("bf16")
    assert bf16.name == "bf16" and bf16.dtype == torch.bfloat16
    with bf16.autocast():
        assert torch.nn.Linear(4, 3)(torch.randn(2, 4)).dtype == torch.bfloat16
    assert not cache.exists()  # no probe for an explicit choice


def test_unknown_precision_names_where(cache):
    with pytest.raises(ConfigError, match=r"--precision: 'fp16' is not a precision; known: auto, fp32, bf16"):
        P.choose_precision("fp16", "--precision")


@pytest.mark.parametrize("speedup,expected", [(5.9, "bf16"), (1.31, "bf16"), (1.2, "fp32"), (0.15, "fp32")])
def test_auto_picks_bf16_only_where_clearly_faster_and_says_why(cache, monkeypatch, speedup, expected):
    fake_probe(monkeypatch, speedup)
    choice = P.choose_precision("auto")
    assert choice.name == expected
    assert f"{speedup:.2f}x fp32" in choice.why and P.cpu_name() in choice.why and "auto" in str(choice)


def test_auto_probes_once_per_cpu_torch_and_thread_count(cache, monkeypatch):
    calls = fake_probe(monkeypatch, 0.2)
    assert "(probe," in P.choose_precision("auto").why
    assert "(cached probe," in P.choose_precision("auto").why
    assert len(calls) == 1
    saved = json.loads(cache.read_text())
    assert any(P.cpu_name() in k and f"{torch.get_num_threads()} threads" in k for k in saved)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        P.choose_precision("auto")
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 2


def test_a_damaged_or_unwritable_cache_still_answers(cache, monkeypatch, tmp_path):
    calls = fake_probe(monkeypatch, 0.2)
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert P.choose_precision("auto").name == "fp32" and len(calls) == 1
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("ATTNKIT_CACHE", str(blocker / "sub"))  # a directory that cannot be made
    assert P.choose_precision("auto").name == "fp32" and len(calls) == 2


def test_the_real_probe_measures_both(cache):
    result = P.probe()
    assert result["fp32_ms"] > 0 and result["bf16_ms"] > 0
    assert result["bf16_speedup"] == pytest.approx(result["fp32_ms"] / result["bf16_ms"], rel=1e-2)


def test_train_config_precision_is_checked_and_bf16_is_its_older_name():
    assert from_dict(TrainConfig, {}).effective_precision == "fp32"
    assert from_dict(TrainConfig, {"precision": "auto"}).effective_precision == "auto"
    assert from_dict(TrainConfig, {"bf16": True}).effective_precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        from_dict(TrainConfig, {"precision": "fp16"})
    with pytest.raises(ConfigError, match=r"^train\.bf16: true contradicts train\.precision: auto"):
        from_dict(TrainConfig, {"bf16": True, "precision": "auto"}, "train")


def _logits(model, batch, dtype=None, autocast=False):
    with torch.no_grad():
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(batch)["logits"].double()
        return model.to(dtype)(batch)["logits"].double()


@pytest.mark.parametrize("name", ["text_run", "transformer_run", "tagger_run"])
def test_bf16_autocast_through_the_blocks_within_plain_bf16s_own_error(name, request):
    """The model under bf16 autocast against the same model in float64; the bound is the
    error of the model run wholly in bf16 (weights and activations), a plain bf16 computation."""
    import copy

    from attnkit.rundir import load_run
    from attnkit.deploy.graph import sample_batch

    run = load_run(request.getfixturevalue(name))
    worst_auto, worst_plain = 0.0, 0.0
    for examples, size in ((4, 9), (2, 23)):
        batch = sample_batch(run, examples, size)
        exact = _logits(copy.deepcopy(run.model), batch, torch.float64)
        auto = _logits(run.model, batch, autocast=True)
        plain = _logits(copy.deepcopy(run.model), batch, torch.bfloat16)
        worst_auto = max(worst_auto, (auto - exact).abs().max().item())
        worst_plain = max(worst_plain, (plain - exact).abs().max().item())
    assert worst_plain > 0  # bf16 does round: otherwise the bound means nothing
    assert worst_auto <= 2 * worst_plain + 1e-3, (worst_auto, worst_plain)
