"""Data checked against its config before training: ``attnkit inspect-data``, ``train --dry-run``
and the pre-flight check of ``train`` (nothing written until it passes)."""
import json
import random

import pytest
import yaml
from typer.testing import CliRunner

from attnkit.cli import app
from attnkit.errors import DataError
from attnkit.run import train
from attnkit.run.training import resolve_config
from attnkit.tasks import inspect_data

runner = CliRunner()


@pytest.fixture
def tickets(tmp_path):
    """A CSV with columns text,category, three classes, no out-of-scope class."""
    rng = random.Random(0)
    words = {"billing": ["refund", "charge", "invoice"], "shipping": ["parcel", "delivery", "track"],
             "account": ["password", "login", "email"]}
    lines = ["text,category"]
    for i in range(240):
        c = rng.choice(sorted(words))
        lines.append(f"my {rng.choice(words[c])} please {i % 5},{c}")
    p = tmp_path / "tickets.csv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def intent_config(path, **data):
    """The intent recipe re-pointed at a new CSV, as a user first tries it."""
    return {"task": "text_classification",
            "data": {"train": str(path), "text_column": "text", "label_column": "category", "out_of_scope": "oos",
                     **data},
            "model": {"embedding": {"dim": 8}, "encoder": {"type": "gru", "hidden": 8}},
            "train": {"epochs": 1, "metric": "in_scope_accuracy", "report": False}}


def test_out_of_scope_missing_from_the_labels_stops_before_anything_is_written(tmp_path, tickets):
    with pytest.raises(DataError, match=r"^the data does not fit the config, nothing was written: data.out_of_scope: "
                                        r"'oos' is not a label of the "
                                        r"training data \(labels: 'account', 'billing', 'shipping'\); set "
                                        r"data.out_of_scope=null .*train.metric, now 'in_scope_accuracy'"):
        train(intent_config(tickets), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    fixed = intent_config(tickets, out_of_scope=None)
    fixed["train"]["metric"] = "accuracy"
    assert train(fixed, out=tmp_path / "run", progress=False).dev["n"] == 24


def test_the_report_lists_what_it_found(tickets):
    report = inspect_data(resolve_config(intent_config(tickets, out_of_scope=None), ["train.metric=accuracy"]))
    assert report.ok, report.problems
    text = "\n".join(report.lines())
    assert "format csv, encoding utf-8 (valid UTF-8)" in text
    assert "columns: text, category" in text
    assert "216 examples" in text and "dev: held out of train (0.1, seeded)" in text
    assert "labels (3): " in text and "words per text: min 4, median 4" in text
    assert text.endswith("ok: training can start")


def test_unseen_labels_one_label_only_skips_and_cut_texts(tmp_path, tickets):
    dev = tmp_path / "dev.csv"
    dev.write_text("text,category\nmy refund,billing\nhello,greeting\nbye,greeting\nhm,other\n", encoding="utf-8")
    report = inspect_data(resolve_config(intent_config(tickets, out_of_scope=None, dev=str(dev), max_len=3),
                                         ["train.metric=accuracy"]))
    assert report.problems == [f"dev: label(s) never seen in train: 'greeting' (2), 'other' (1); first at {dev}:3"]
    assert any("texts are longer than data.max_len = 3 words and will be cut" in w for w in report.warnings)
    one = tmp_path / "one.csv"
    one.write_text("text,category\na,x\nb,x\n,x\nc,x\nd,x\ne,x\nf,x\ng,x\nh,x\ni,x\nj,x\n", encoding="utf-8")
    report = inspect_data(resolve_config(intent_config(one, out_of_scope=None, on_error="skip"),
                                         ["train.metric=accuracy"]))
    assert "train has one label only ('x'): a classifier needs two or more; is data.label_column ('category') " \
           "the label?" in report.problems
    assert any(w.startswith("data.train: skipped 1 bad entries of") and "empty text" in w for w in report.warnings)


def test_a_read_error_is_reported_not_raised(tmp_path, tickets):
    report = inspect_data(resolve_config(intent_config(tickets, out_of_scope=None, label_column="intent"),
                                         ["train.metric=accuracy"]))
    assert not report.ok and "column 'intent' not found; columns: text, category" in report.problems[0]


def test_cli_inspect_data_on_a_file_a_glob_and_a_config(tmp_path, tickets):
    res = runner.invoke(app, ["inspect-data", str(tickets), "--label-column", "category"])
    assert res.exit_code == 0, res.output
    assert "columns: text, category" in res.output and "ok: training can start" in res.output
    (tmp_path / "rt.pos").write_text("good film\nfine\nnice\n" * 5, encoding="utf-8")
    (tmp_path / "rt.neg").write_bytes("bad \u2013 film\nawful\n".encode("cp1252") * 5)
    res = runner.invoke(app, ["inspect-data", str(tmp_path / "rt.*")])
    assert res.exit_code == 0, res.output
    assert "format files" in res.output and "files: rt.neg, rt.pos" in res.output
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(intent_config(tickets)), encoding="utf-8")
    res = runner.invoke(app, ["inspect-data", str(cfg)])
    assert "problem: data.out_of_scope: 'oos'" in res.output and "1 problem(s): training would stop" in res.output
    assert isinstance(res.exception, DataError) and "\n" not in str(res.exception)
    res = runner.invoke(app, ["train", str(cfg), "--dry-run", "--out", str(tmp_path / "run"),
                              "--set", "data.out_of_scope=null", "--set", "train.metric=accuracy"])
    assert res.exit_code == 0 and "ok: training can start" in res.output
    assert not (tmp_path / "run").exists()


def test_a_label_per_file_corpus_trains_evaluates_and_predicts(tmp_path):
    rng = random.Random(1)
    for label, word in (("pos", "good"), ("neg", "bad")):
        lines = [" ".join(rng.sample(["the", "film", "was", "a", "plot"], 3) + [word]) for _ in range(60)]
        (tmp_path / f"rt.{label}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = {"task": "text_classification", "data": {"train": str(tmp_path / "rt.*")},
           "model": {"embedding": {"dim": 8}, "encoder": {"type": "gru", "hidden": 8}},
           "train": {"epochs": 4, "batch_size": 8, "optimizer": {"lr": 0.02}, "report": False}}
    result = train(cfg, out=tmp_path / "run", progress=False)
    assert result.dev["accuracy"] >= 0.9
    res = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "rt.neg")])
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output
    (tmp_path / "new.csv").write_bytes("review;stars\n\u201cgood\u201d film;5\n".encode("cp1252"))
    res = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "new.csv"),
                              "--format", "csv", "--text-column", "review", "--label-column", "stars"])
    assert "column 'review' not found; columns: review;stars" in str(res.exception)
    (tmp_path / "texts.txt").write_bytes("a \u201cgood\u201d film\n\nthe plot was bad\n".encode("cp1252"))
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--input", str(tmp_path / "texts.txt"), "--json"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert [(r["text"], r["label"]) for r in records] == [("a \u201cgood\u201d film", "pos"), ("the plot was bad", "neg")]
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--input", str(tmp_path / "texts.txt"),
                              "--encoding", "utf-8"])
    assert "texts.txt:1: cannot decode byte 0x93 (column 3) as utf-8" in str(res.exception)
    (tmp_path / "table.csv").write_text("id,review\n1,good film\n2,bad plot\n", encoding="utf-8")
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), "--input", str(tmp_path / "table.csv"),
                              "--text-column", "review", "--json"])
    assert [json.loads(line)["text"] for line in res.output.splitlines() if line.startswith("{")] == \
        ["good film", "bad plot"]


def test_a_bad_line_stops_and_says_what_skip_would_skip(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("text,label\ngood film,pos\nbad,film,neg\nfine,pos\n,neg\nawful,neg\n", encoding="utf-8")
    report = inspect_data(resolve_config({"data": {"train": str(p)}}))
    assert report.problems == [f"{p}:3: expected 2 comma-separated fields like the header, found 3"]
    assert report.warnings == [(f"train: with data.on_error=skip, 2 bad entries would be skipped; first: {p}:3: "
                                f"expected 2 comma-separated fields like the header, found 3; {p}:5: empty text")]
