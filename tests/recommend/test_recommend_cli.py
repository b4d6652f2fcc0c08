"""The recommendation task through the CLI: train, evaluate, predict, recommend (with reasons
from the attention, rated items left out, a fallback for unknown users), the report, and one
clean error for each bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from attnkit.config import from_dict, load_yaml
from attnkit.data.ratings import read_ratings
from attnkit.tasks import RunConfig, get_task
from tests.fuzz.contract import invoke

from .conftest import run_config


def _rated(movielens, user: str) -> set[str]:
    r = read_ratings(movielens / "base")
    return {i for u, i in zip(r.users, r.items) if u == user}


def test_training_learns_the_structure(rec_run, movielens):
    ev = json.loads((rec_run / "eval.json").read_text())
    test = read_ratings(movielens / "test").values
    mean = np.mean(read_ratings(movielens / "base").values)
    baseline = float(np.sqrt(np.mean((np.asarray(test) - mean) ** 2)))
    assert ev["test"]["rmse"] < 0.9 * baseline, (ev["test"], baseline)
    assert 0 <= ev["test"]["hr@10"] <= 1 and "protocol" in ev["test"] and ev["test"]["n"] == len(test)


def test_predict_a_rating(rec_run):
    out = invoke(["predict", rec_run, "1 5", "--json"])
    assert out.kind == "result", out.err
    rec = json.loads(out.out.splitlines()[-1])
    assert rec["user"] == "1" and rec["item"] == "5" and 1.0 <= rec["rating"] <= 5.0 and rec["history"] > 0


@pytest.mark.parametrize("argv, message", [
    (["predict", "RUN", "1 999"], "item '999' is not in the item catalog (150 items, ids 1 .. 150)"),
    (["predict", "RUN", "1"], 'expected "USER ITEM"'),
    (["recommend", "RUN", "--user", "1", "--top", "0"], "--top"),
    (["export", "RUN", "--out", "RUN-onnx"], "recommendation runs predict on the torch engine"),
])
def test_bad_requests_get_one_clean_line(rec_run, argv, message):
    out = invoke([a.replace("RUN", str(rec_run)) for a in argv])
    assert out.kind == "clean_error" and out.code == 2, (out.out, out.err)
    assert message in out.err.replace("\n", " ")


def test_recommend_leaves_out_rated_items_and_says_why(rec_run, movielens):
    out = invoke(["recommend", rec_run, "--user", "3", "--top", "5", "--json"])
    assert out.kind == "result", out.err
    rec = json.loads(out.out)
    rated = _rated(movielens, "3")
    assert rec["fallback"] is None and rec["rated"] == len(rated) and len(rec["items"]) == 5
    assert not {it["item"] for it in rec["items"]} & rated
    scores = [it["score"] for it in rec["items"]]
    assert scores == sorted(scores, reverse=True)
    for it in rec["items"]:
        assert it["because"]["item"] in rated and 0 < it["because"]["attention"] <= 1
    text = invoke(["recommend", rec_run, "--user", "3", "--top", "3"]).out
    assert "because you rated" in text and len([ln for ln in text.splitlines() if ln.strip()[:2] in ("1.", "2.", "3.")]) == 3


def test_unknown_user_falls_back_to_popular_items(rec_run, movielens):
    out = invoke(["recommend", rec_run, "--user", "nobody", "--top", "4"])
    assert out.kind == "result", out.err
    assert "'nobody' has no ratings in this run's training data: the most rated items instead" in out.out
    rec = json.loads(invoke(["recommend", rec_run, "--user", "nobody", "--top", "4", "--json"]).out)
    counts = [it["ratings"] for it in rec["items"]]
    r = read_ratings(movielens / "base")
    assert counts == sorted(counts, reverse=True) and counts[0] == max(r.items.count(i) for i in set(r.items))


def test_predict_for_an_unknown_user_says_so(rec_run, caplog):
    out = invoke(["predict", rec_run, "nobody 5", "--json"])
    assert out.kind == "result", out.err
    assert 1.0 <= json.loads(out.out.splitlines()[-1])["rating"] <= 5.0
    assert "user 'nobody' has no ratings in this run's training data" in caplog.text + out.err


def test_recommend_refuses_other_runs(text_run):
    out = invoke(["recommend", text_run, "--user", "1"])
    assert out.kind == "clean_error" and "not a recommendation run" in out.err


def test_evaluate_and_report(rec_run, movielens):
    out = invoke(["evaluate", rec_run, "--data", movielens / "test"])
    assert out.kind == "result" and "rmse" in out.out, out.err
    out = invoke(["report", rec_run, "--examples", "2"])
    assert out.kind == "result", out.err
    page = (rec_run / "report.html").read_text(encoding="utf-8")
    assert 'alt="alignment"' in page or "alt=alignment" in page  # the attention over a user's history
    assert "predicted <b>" in page and "cold_rmse" in page


def test_leave_last_out_holds_out_each_users_latest(movielens, tmp_path):
    cfg = from_dict(RunConfig, load_yaml_text(run_config(movielens, holdout="last").replace(
        f", test: {movielens / 'test'}", ""), tmp_path))
    train, dev, test = get_task("recommendation").read_splits(cfg)
    latest = {}
    for u, t in zip(train.users + dev.users + test.users, train.times + dev.times + test.times):
        latest[u] = max(latest.get(u, t), t)
    assert len(test) == len(set(test.users)) == len(latest)
    assert all(t == latest[u] for u, t in zip(test.users, test.times))
    assert len(dev) == len(set(dev.users)) and train.training and not test.training


def load_yaml_text(text: str, tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    return load_yaml(p)
