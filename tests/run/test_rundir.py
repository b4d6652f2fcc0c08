"""The run directory's one owner: a damaged or incomplete run is one clear error naming the
file; ``train --out`` never overwrites anything; leftovers of a killed write are cleaned up;
runs written before meta.json listed its vocabularies still load."""
import json
import shutil

import pytest
import yaml

from attnkit.files import atomic_write
from attnkit.run import RunError, load_run, merge_run, predict, train
from attnkit.run_files import RunFiles
from attnkit.rundir import check_new_run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rundir")
    rows = [("good film", "pos"), ("a good plot", "pos"), ("dull film", "neg"), ("bad plot", "neg")] * 10
    for split in ("train", "dev"):
        (tmp / f"{split}.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows),
                                         encoding="utf-8")
    cfg = {"task": "text_classification",
           "data": {"train": str(tmp / "train.tsv"), "dev": str(tmp / "dev.tsv"), "text_column": "sentence"},
           "model": {"embedding": {"dim": 8}, "encoder": {"type": "lstm", "hidden": 8}},
           "train": {"epochs": 1, "batch_size": 16, "report": False}}
    train(cfg, out=tmp / "run", progress=False)
    return tmp / "run", cfg


@pytest.fixture
def run_copy(trained, tmp_path):
    shutil.copytree(trained[0], tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize("damage,message", [
    (lambda r: (r / "vocab.json").unlink(), r"vocab.json: missing \(written by training, needed to encode inputs\)"),
    (lambda r: (r / "meta.json").write_text("{not json", encoding="utf-8"), r"meta.json: damaged \(not JSON"),
    (lambda r: (r / "meta.json").write_text('{"task": "text_classification"}', encoding="utf-8"),
     r"meta.json: damaged \(no sizes, labels\)"),
    (lambda r: (r / "labels.json").write_text("[", encoding="utf-8"), r"labels.json: damaged"),
    (lambda r: (r / "model.safetensors").unlink(), r"model.safetensors is missing \(is training finished"),
    (lambda r: (r / "model.safetensors").write_bytes(b"xx"), r"model.safetensors: cannot be read"),
    (lambda r: (r / "config.yaml").write_text("task: [", encoding="utf-8"), r"config.yaml:.*YAML syntax error"),
    (lambda r: (r / "config.yaml").write_text((r / "config.yaml").read_text().replace("hidden: 8", "hidden: 16")),
     r"model.safetensors: weights do not match the model that config.yaml describes \(size mismatch for "),
])
def test_a_damaged_run_is_one_error_naming_the_file(run_copy, damage, message):
    damage(run_copy)
    with pytest.raises(RunError, match=message):
        load_run(run_copy)


def test_a_leftover_temporary_file_is_removed_on_open(run_copy):
    left = run_copy / ".meta.json.abc123.tmp"
    left.write_text("half a file", encoding="utf-8")
    (run_copy / "checkpoints" / ".last.pt.x1.tmp").write_bytes(b"\\0")
    assert len(RunFiles(run_copy).leftovers()) == 2
    load_run(run_copy)
    assert not left.exists() and RunFiles(run_copy).leftovers() == []


def test_a_run_from_before_meta_listed_its_vocabularies_still_loads(run_copy):
    meta = json.loads((run_copy / "meta.json").read_text())
    del meta["vocabs"]
    (run_copy / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    saved = yaml.safe_load((run_copy / "config.yaml").read_text())
    saved["train"]["metric"] = "accuracy"  # old runs saved the metric explicitly
    (run_copy / "config.yaml").write_text(yaml.safe_dump(saved), encoding="utf-8")
    assert predict(run_copy, ["good film"])[0]["label"] in ("pos", "neg")
    (run_copy / "vocab.json").unlink()
    with pytest.raises(RunError, match="vocab.json: missing"):
        load_run(run_copy)


@pytest.mark.parametrize("content", ["config.yaml", "notes.txt", "merged"])
def test_train_out_refuses_a_non_empty_directory(trained, tmp_path, content):
    run, cfg = trained
    out = tmp_path / "out"
    out.mkdir()
    if content == "merged":  # a deployment run: config.yaml and weights, no checkpoints
        shutil.copytree(run, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoints"))
    else:
        (out / content).write_text("mine", encoding="utf-8")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(RunError, match=r"--out .*: not empty \(holds .*\); a new run needs an empty or new directory"):
        train(cfg, out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written, nothing lost


def test_train_out_on_a_finished_run_points_to_resume(trained):
    run, cfg = trained
    with pytest.raises(RunError, match="already holds a run; pass --resume"):
        train(cfg, out=run, progress=False)


def test_resume_with_a_different_config_is_refused(run_copy, trained):
    _, cfg = trained
    other = json.loads(json.dumps(cfg))
    other["train"]["batch_size"] = 8
    with pytest.raises(RunError, match=r"was started with a different config \(train.batch_size: 16 there, 8 here\)"):
        train(other, out=run_copy, resume=True, progress=False)


def test_an_empty_directory_may_receive_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    check_new_run_dir(tmp_path / "empty", resume=False)  # no error


def test_merge_refuses_an_existing_out(trained, tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(RunError, match="already exists"):
        merge_run(trained[0], tmp_path / "m")


def test_atomic_write_leaves_no_temporary_file_on_success(tmp_path):
    atomic_write(tmp_path / "x.json", lambda f: f.write(b"{}"))
    assert RunFiles(tmp_path).leftovers() == []


def test_resume_accepts_the_set_values_the_run_started_with(run_copy, trained):
    _, cfg = trained
    """The run was started with epochs 1: giving that again on resume is the same config."""
    result = train(cfg, out=run_copy, overrides=["train.epochs=1"], resume=True, progress=False)
    assert 0.0 <= result.dev["accuracy"] <= 1.0  # it continued (the finished run re-evaluated), not refused


def test_a_run_saved_before_encoding_auto_resumes_with_the_new_default(run_copy, trained):
    """Runs written before ``data.encoding: auto`` became the default saved ``utf-8``; resuming
    them with their original YAML (no encoding key: now ``auto``) is the same config. Another
    named encoding is still a different config."""
    _, cfg = trained
    path = run_copy / "config.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("encoding: auto", "encoding: utf-8"), encoding="utf-8")
    assert "encoding: utf-8" in path.read_text(encoding="utf-8")
    result = train(cfg, out=run_copy, resume=True, progress=False)
    assert 0.0 <= result.dev["accuracy"] <= 1.0
    with pytest.raises(RunError, match=r"data.encoding: 'utf-8' there, 'cp1252' here"):
        train(cfg, out=run_copy, overrides=["data.encoding=cp1252"], resume=True, progress=False)
