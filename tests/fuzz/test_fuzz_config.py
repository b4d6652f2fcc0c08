"""Configs and ``--set`` values: wrong types, typos, unknown and duplicate keys, extreme and
non-finite numbers, numbers as text. ``attnkit train`` either trains or stops with one line
naming the key path, before writing anything."""
from __future__ import annotations

import copy
import itertools

import yaml
from hypothesis import assume, given
from hypothesis import strategies as st

from .contract import check_cli

BASE = {"task": "text_classification", "data": {"builtin": "toy_sentiment"},
        "model": {"embedding": {"dim": 4}, "encoder": {"type": "gru", "hidden": 4}},
        "train": {"epochs": 1, "max_steps": 2, "batch_size": 64, "report": False}}
KEYS = ["task", "data.builtin", "data.tokenizer", "data.max_len", "data.dev_fraction", "data.format",
        "model.embedding.dim", "model.embedding.dropout", "model.encoder.type", "model.encoder.hidden",
        "model.pooler.type", "model.pooler.score", "model.pooler.hiden", "model.head.dropout", "train.epochs",
        "train.batch_size", "train.optimizer.lr", "train.optimizer.name", "train.schedule.name", "train.metric",
        "train.grad_clip", "train.seed", "train.patience", "trian.epochs", "model.encodr", "extra",
        "model.init_from", "multitask", "multitask.tasks", "multitask.sampling", "data.corpus", "data.sequence_len",
        "data.mask_fraction"]
SIZES = {"model.embedding.dim", "model.encoder.hidden", "data.max_len", "train.batch_size"}
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.sampled_from([0, 1, -1, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["1e-3", "1e400", "-0", "nan", ".inf", "3"]),
    st.text(max_size=12), st.sampled_from(["lstm", "gru", "transformer", "attention", "mean", "adam", "f1",
                                           "accuracy", "whitespace", "token_classification", "mnist", "conll",
                                           "masked_lm", "multitask", "mean_score"]),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.sampled_from(["type", "x", "hidden"]),
                                                               st.integers(-2, 8), max_size=2))


def set_path(cfg: dict, path: str, value) -> None:
    node = cfg
    *parents, last = path.split(".")
    for k in parents:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[last] = value


@given(changes=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3))
def test_any_config_trains_or_names_the_key(tmp_path_factory, changes):
    tmp = tmp_path_factory.mktemp("cfg")
    for path, value in changes:  # a valid but huge model only trains slowly: not what this looks for
        assume(not (path in SIZES and isinstance(value, int) and 64 < value < 10**9))
    cfg = copy.deepcopy(BASE)
    for path, value in changes:
        set_path(cfg, path, value)
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    check_cli("train config file", ["train", path, "--out", tmp / "run"], out_dir=tmp / "run")


@given(sets=st.lists(st.tuples(st.sampled_from(KEYS), st.one_of(
    st.text(alphabet="0123456789.eE+-x[]{},: ab", max_size=8), st.sampled_from(["1e-3", "", "[1,", "{a: b}", "~"]))),
    min_size=1, max_size=3))
def test_any_set_value_trains_or_names_the_key(tmp_path_factory, sets):
    tmp = tmp_path_factory.mktemp("set")
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(BASE), encoding="utf-8")
    args = list(itertools.chain.from_iterable(("--set", f"{k}={v}") for k, v in sets))
    check_cli("train --set", ["train", path, "--out", tmp / "run", *args], out_dir=tmp / "run")


@given(text=st.text(max_size=60))
def test_any_yaml_text_is_read_or_refused_with_its_line(tmp_path_factory, text):
    tmp = tmp_path_factory.mktemp("yaml")
    path = tmp / "c.yaml"
    path.write_text(text, encoding="utf-8")
    check_cli("train yaml text", ["train", path, "--out", tmp / "run"], out_dir=tmp / "run")


def test_duplicate_keys_are_read_as_yaml_reads_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE) + "task: summarise\n", encoding="utf-8")
    o = check_cli("train duplicate key", ["train", path, "--out", tmp_path / "run"], out_dir=tmp_path / "run")
    assert o.code == 2 and "unknown task 'summarise'" in o.err
