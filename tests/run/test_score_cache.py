"""The teacher's scores are kept between distillation runs: a second run with the same teacher
and texts reads them instead of scoring again; a changed teacher, engine, precision or text
scores again; a damaged entry is scored again; an unwritable cache is said and skipped. And
the teacher scores in the precision asked for (bf16 within bf16's error of fp32)."""
import logging
import shutil

import pytest
import torch

import attnkit.run.distill as D
from attnkit.run import resolve_config
from attnkit.run.score_cache import cache_file, load_scores, run_digest, save_scores, score_key
from attnkit.tasks import get_task
from tests.run.test_distill import student_config


def _teacher(text_run, text_files_s, **distill):
    cfg = resolve_config(student_config(text_files_s, teacher=str(text_run), **distill))
    return cfg, D.open_teacher(cfg, get_task(cfg.task))


def test_a_second_scoring_reads_the_cache(text_run, text_files_s, monkeypatch, caplog):
    cfg, teacher = _teacher(text_run, text_files_s)
    first = D.teacher_log_probs(teacher, cfg, ["neg", "pos"], 300)
    texts = teacher.task.read_splits(cfg)[0].texts
    key = score_key(text_run, "torch", "fp32", texts)
    assert cache_file(key).is_file()

    def no_scoring(*a, **k):
        raise AssertionError("scored again")
    monkeypatch.setattr(D, "predict_data", no_scoring)
    with caplog.at_level(logging.INFO, logger="attnkit"):
        again = D.teacher_log_probs(teacher, cfg, ["pos", "neg"], 300)  # the other column order too
    assert torch.equal(again, first.flip(1))
    assert "read from the cache" in caplog.text


def test_the_key_follows_what_the_scores_depend_on(text_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(text_run, copy)
    texts = ["a good film", "a bad one"]
    base = score_key(copy, "torch", "fp32", texts)
    assert base == score_key(text_run, "torch", "fp32", texts)  # the files, not the place
    # what does not change predictions leaves the key alone
    (copy / "metrics.jsonl").write_text("{}\n")
    (copy / "eval-other.tsv.json").write_text("{}")
    assert score_key(copy, "torch", "fp32", texts) == base
    assert score_key(copy, "onnxruntime", "fp32", texts) != base
    assert score_key(copy, "torch", "bf16", texts) != base
    assert score_key(copy, "torch", "fp32", texts[::-1]) != base
    assert score_key(copy, "torch", "fp32", ["a good film a", "bad one"]) != base  # texts are kept apart
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert score_key(copy, "torch", "fp32", texts) != base
    before = run_digest(copy)
    (copy / "labels.json").write_text('["pos", "neg"]')  # another label order: other columns
    assert run_digest(copy) != before


def test_a_damaged_or_misfit_entry_is_scored_again(caplog):
    probs = torch.rand(5, 3)
    save_scores("k" * 32, probs)
    assert torch.equal(load_scores("k" * 32, 5, 3), probs)
    with caplog.at_level(logging.WARNING, logger="attnkit"):
        assert load_scores("k" * 32, 6, 3) is None
        cache_file("k" * 32).write_bytes(b"not a safetensors file")
        assert load_scores("k" * 32, 5, 3) is None
    assert "holds (5, 3), not (6, 3)" in caplog.text and "could not be read" in caplog.text
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
