"""Run directories with a file missing, truncated or overwritten with garbage, and with
random inputs: ``predict``, ``evaluate``, ``explain`` and ``report`` give a result or one line
naming the damaged file; nothing in the run directory is overwritten by a failure."""
from __future__ import annotations

import shutil

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from .contract import check_cli, invoke

FILES = ["config.yaml", "meta.json", "vocab.json", "labels.json", "model.safetensors", "eval.json", "metrics.jsonl",
         "checkpoints/best.pt", "checkpoints/last.pt"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzzrun")
    rows = [("good film", "pos"), ("a good plot", "pos"), ("dull film", "neg"), ("bad plot", "neg")] * 8
    (tmp / "data.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    cfg = {"data": {"train": str(tmp / "data.tsv"), "dev": str(tmp / "data.tsv")},
           "model": {"embedding": {"dim": 4}, "encoder": {"type": "gru", "hidden": 4}},
           "train": {"epochs": 1, "batch_size": 8, "report": False}}
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert invoke(["train", tmp / "c.yaml", "--out", tmp / "run"]).code == 0
    return tmp / "run"


DAMAGE = st.sampled_from(["delete", "truncate", "garbage", "empty"])


def damage(path, how: str, garbage: bytes) -> None:
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])
    elif how == "garbage":
        path.write_bytes(garbage)
    else:
        path.write_bytes(b"")


@given(name=st.sampled_from(FILES), how=DAMAGE, garbage=st.binary(min_size=1, max_size=40),
       command=st.sampled_from(["predict", "evaluate", "explain", "report"]))
def test_a_damaged_run_gives_one_line(run_dir, tmp_path_factory, name, how, garbage, command):
    tmp = tmp_path_factory.mktemp("damaged")
    run = tmp / "run"
    shutil.copytree(run_dir, run)
    damage(run / name, how, garbage)
    data = run_dir.parent / "data.tsv"
    argv = {"predict": ["predict", run, "a good film"], "evaluate": ["evaluate", run, "--data", data],
            "explain": ["explain", run, "a good film", "--method", "saliency"], "report": ["report", run]}[command]
    keep = None if command in ("evaluate", "report") else run  # those two write their own output file
    check_cli(f"{command} on a damaged run", argv, keep=keep)


@given(texts=st.lists(st.text(max_size=300), min_size=1, max_size=4),
       method=st.sampled_from(["attention", "saliency", "ig"]))
def test_any_text_is_predicted_and_explained(run_dir, texts, method):
    texts = [t.replace("\x00", "") for t in texts]
    if any(t.startswith("-") for t in texts):
        texts = [t.lstrip("-") for t in texts]  # an argument starting with - is an option to the shell, too
    o = check_cli("predict any text", ["predict", run_dir, "--json", "--", *texts])
    assert o.code == 0 and len(o.out.rstrip("\n").split("\n")) == len(texts)  # (str.splitlines also splits at U+0085)
    check_cli(f"explain {method} any text", ["explain", run_dir, "--method", method, "--steps", "4", "--", *texts])


@given(content=st.binary(max_size=200))
def test_any_predict_input_file(run_dir, tmp_path_factory, content):
    tmp = tmp_path_factory.mktemp("input")
    (tmp / "in.txt").write_bytes(content)
    check_cli("predict --input bytes", ["predict", run_dir, "--input", tmp / "in.txt"])
