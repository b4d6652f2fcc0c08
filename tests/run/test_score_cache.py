"""The teacher's scores are kept between distillation runs: a second run with the same teacher
and texts reads them instead of scoring again (the training split and the transfer set); a
changed teacher, library, engine, precision or text scores again; a damaged entry is scored
again; an unwritable cache is said and skipped. And the teacher scores in the precision asked
for (bf16 within bf16's error of fp32); ``auto`` reads an entry of either precision before
timing anything, and is fp32 in a data-parallel run."""
import json
import logging
import shutil
import types

import pytest
import torch

import attnkit.run.distill as D
import attnkit.run.score_cache as C
from attnkit.run import resolve_config
from attnkit.run.score_cache import cache_file, load_scores, run_digest, save_scores, score_key, teacher_digest
from attnkit.tasks import get_task
from tests.run.test_distill import student_config


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test starts with an empty cache: no entry of another test is read."""
    monkeypatch.setenv("ATTNKIT_CACHE", str(tmp_path / "attnkit-cache"))


def no_scoring(*a, **k):
    raise AssertionError("scored again")


def _teacher(text_run, text_files_s, **distill):
    cfg = resolve_config(student_config(text_files_s, teacher=str(text_run), **distill))
    return cfg, D.open_teacher(cfg, get_task(cfg.task))


def test_a_second_scoring_reads_the_cache(text_run, text_files_s, monkeypatch, caplog):
    cfg, teacher = _teacher(text_run, text_files_s)
    first = D.teacher_log_probs(teacher, cfg, ["neg", "pos"], 300)
    texts = teacher.task.read_splits(cfg)[0].texts
    key = score_key(run_digest(text_run), "torch", "fp32", texts)
    assert cache_file(key).is_file()
    monkeypatch.setattr(D, "predict_data", no_scoring)
    with caplog.at_level(logging.INFO, logger="attnkit"):
        again = D.teacher_log_probs(teacher, cfg, ["pos", "neg"], 300)  # the other column order too
    assert torch.equal(again, first.flip(1))
    assert "read from the cache" in caplog.text


def test_the_key_follows_what_the_scores_depend_on(text_run, tmp_path, monkeypatch):
    copy = tmp_path / "run"
    shutil.copytree(text_run, copy)
    texts = ["a good film", "a bad one"]

    def key(run=copy, engine="torch", precision="fp32", of=texts):
        return score_key(run_digest(run), engine, precision, of)
    base = key()
    assert base == key(run=text_run)  # the files, not the place
    # what does not change predictions leaves the key alone
    (copy / "metrics.jsonl").write_text("{}\n")
    (copy / "eval-other.tsv.json").write_text("{}")
    (copy / "report.html").write_text("<p>")
    assert key() == base
    assert key(engine="onnxruntime") != base
    assert key(precision="bf16") != base
    assert key(of=texts[::-1]) != base
    assert key(of=["a good film a", "bad one"]) != base  # texts are kept apart
    installed = C.versions
    monkeypatch.setattr(C, "versions", lambda: "attnkit 9.9, torch 9.9")  # another PyTorch, another answer
    assert key() != base
    monkeypatch.setattr(C, "versions", installed)
    assert key() == base
    labels = copy / "labels.json"
    saved = labels.read_text()
    vocab = json.loads(saved)
    labels.write_text(json.dumps({**vocab, "itos": vocab["itos"][::-1]}))  # the labels in another order: other columns
    assert key() != base
    labels.write_text(saved)
    assert key() == base
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert key() != base


def test_a_run_that_saved_what_it_trained_is_keyed_with_its_local_backbone(tmp_path):
    run_dir, backbone = tmp_path / "run", tmp_path / "backbone"
    run_dir.mkdir(), backbone.mkdir()
    (run_dir / "model.safetensors").write_bytes(b"trained part")
    (backbone / "model.safetensors").write_bytes(b"frozen part")

    def loaded(weights):
        return types.SimpleNamespace(path=run_dir, meta={"weights": weights},
                                     cfg=types.SimpleNamespace(model=types.SimpleNamespace(pretrained=str(backbone))))
    before, everything = teacher_digest(loaded("trained")), teacher_digest(loaded("all"))
    assert everything == run_digest(run_dir)  # a run that saved every weight: its own files only
    (backbone / "model.safetensors").write_bytes(b"another frozen part")
    assert teacher_digest(loaded("trained")) != before and teacher_digest(loaded("all")) == everything


def test_a_damaged_or_misfit_entry_is_scored_again(caplog):
    probs = torch.rand(5, 3)
    save_scores("k" * 32, probs)
    assert torch.equal(load_scores("k" * 32, 5, 3), probs)
    with caplog.at_level(logging.WARNING, logger="attnkit"):
        assert load_scores("k" * 32, 6, 3) is None
        cache_file("k" * 32).write_bytes(b"not a safetensors file")
        assert load_scores("k" * 32, 5, 3) is None
    assert "holds torch.float32 (5, 3), not float32 (6, 3)" in caplog.text and "could not be read" in caplog.text
    assert load_scores("m" * 32, 5, 3) is None  # none kept: quietly None


def test_an_unwritable_cache_is_said_and_skipped(text_run, text_files_s, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("ATTNKIT_CACHE", str(blocker / "sub"))  # a directory that cannot be made
    cfg, teacher = _teacher(text_run, text_files_s)
    with caplog.at_level(logging.WARNING, logger="attnkit"):
        rows = D.teacher_log_probs(teacher, cfg, ["neg", "pos"], 300)
    assert rows.shape == (300, 2) and "teacher score cache: not kept" in caplog.text


def test_the_teacher_scores_in_the_precision_asked_for(text_run, text_files_s, caplog):
    cfg, teacher = _teacher(text_run, text_files_s)
    fp32 = D.teacher_log_probs(teacher, cfg, ["neg", "pos"], 300)
    cfg, teacher = _teacher(text_run, text_files_s, precision="bf16")
    with caplog.at_level(logging.INFO, logger="attnkit"):
        bf16 = D.teacher_log_probs(teacher, cfg, ["neg", "pos"], 300)
    assert "scoring 300 training examples once (precision bf16" in caplog.text
    assert not torch.equal(bf16, fp32)  # really another computation, not the fp32 entry read back
    # within bf16's own error: a plain bf16 computation of the same logits differs from fp32 as much
    p32, p16 = fp32.exp(), bf16.exp()
    assert (p32 - p16).abs().max() < 0.05
    assert ((p32.argmax(1) == p16.argmax(1)).float().mean()) > 0.95


def test_auto_times_the_teachers_own_batch(text_run, text_files_s, monkeypatch):
    import attnkit.train.precision as P

    seen = []

    def measured(refresh=False, work=None):
        seen.append(work.what if work else "linear")
        return {"bf16_speedup": 2.0 if work is None else 1.0}, True
    monkeypatch.setattr(P, "measured_speedup", measured)
    cfg, teacher = _teacher(text_run, text_files_s, precision="auto")
    choice = D._scoring_precision(teacher, cfg, teacher.task.encode(teacher.featurized,
                                                                    teacher.task.read_splits(cfg)[0]))
    assert choice.name == "fp32" and "under 1.3x" in choice.why
    assert seen[0] == "linear" and seen[1].startswith("score batch 256x")


def test_an_unknown_precision_is_one_clear_error(text_files_s, tmp_path):
    from attnkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train.distill.precision: must be one of auto, fp32, bf16, got 'fp16'"):
        resolve_config(student_config(text_files_s, teacher=str(tmp_path), precision="fp16"))


def test_the_transfer_set_is_read_back_too(text_run, text_files_s, monkeypatch):
    from attnkit.tasks import prepare

    cfg, teacher = _teacher(text_run, text_files_s, augment=2)
    task, prepared = get_task(cfg.task), prepare(cfg)
    fz, n = prepared.featurized, len(prepared.train)
    rows = D.teacher_log_probs(teacher, cfg, fz.labels, n)
    data, first = D.with_transfer_set(teacher, cfg, task, fz, prepared.train, rows)
    monkeypatch.setattr(D, "predict_data", no_scoring)
    again = D.with_transfer_set(teacher, cfg, task, fz, prepared.train, D.teacher_log_probs(teacher, cfg, fz.labels, n))
    assert len(again[0]) == len(data) > n and torch.equal(again[1], first)


def test_auto_reads_an_entry_of_either_precision_before_timing(text_run, text_files_s, monkeypatch, caplog):
    import attnkit.train.precision as P

    cfg, teacher = _teacher(text_run, text_files_s, precision="bf16")
    bf16 = D.teacher_log_probs(teacher, cfg, ["neg", "pos"], 300)
    monkeypatch.setattr(D, "predict_data", no_scoring)
    monkeypatch.setattr(P, "measured_speedup", lambda *a, **k: pytest.fail("timed although an entry was kept"))
    cfg, teacher = _teacher(text_run, text_files_s, precision="auto")
    with caplog.at_level(logging.INFO, logger="attnkit"):
        assert torch.equal(D.teacher_log_probs(teacher, cfg, ["neg", "pos"], 300), bf16)
    assert "scored before (bf16)" in caplog.text
    cfg, teacher = _teacher(text_run, text_files_s, precision="fp32")  # fp32 asked: a bf16 entry does not do
    with pytest.raises(AssertionError, match="scored again"):
        D.teacher_log_probs(teacher, cfg, ["neg", "pos"], 300)


def test_auto_is_fp32_in_a_data_parallel_run(text_run, text_files_s, monkeypatch):
    import torch.distributed as dist

    import attnkit.train.precision as P

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(P, "measured_speedup", lambda *a, **k: pytest.fail("ranks must not time apart"))
    cfg, teacher = _teacher(text_run, text_files_s, precision="auto")
    choice = D._scoring_precision(teacher, cfg, teacher.task.encode(teacher.featurized,
                                                                    teacher.task.read_splits(cfg)[0]))
    assert choice.name == "fp32" and "data-parallel" in choice.why
