"""The customer-service router: the out-of-scope threshold tuned on dev (checked against a
brute-force count written from the definition), the routing table's checks, and
``POST /v1/route`` end to end on a small intent classifier with an out-of-scope class."""
import json
import random

import numpy as np
import pytest

from attnkit.errors import ConfigError
from attnkit.evaluate.out_of_scope import area, at_threshold, curve, pick, tune_out_of_scope
from attnkit.run import train
from attnkit.serve.router import Router, RoutingTable, bind_router, read_table
from tests.fuzz.contract import invoke

from .conftest import make_client, wait_ready


def brute(probs, gold, oos, t):
    """In-scope accuracy and out-of-scope recall at threshold t, one example at a time."""
    ok = n_in = hit = n_out = 0
    for p, g in zip(probs, gold):
        best = max(range(len(p)), key=lambda j: p[j])
        says_oos = best == oos or max(p) < t
        if g == oos:
            n_out += 1
            hit += says_oos
        else:
            n_in += 1
            ok += (not says_oos) and best == g
    return ok / n_in, hit / n_out


@pytest.mark.parametrize("n, c, seed", [(40, 3, 0), (200, 6, 1), (7, 2, 2)])
def test_curve_matches_a_brute_force_count(n, c, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    gold = rng.integers(0, c, n)
    gold[0], gold[1] = 0, 1  # both kinds present; class 0 is out of scope
    rows = curve(probs, gold, 0, "msp")
    assert rows[0, 0] == 0 and np.all(np.diff(rows[:, 0]) > 0)
    assert rows[-1, 2] == 1.0 and rows[-1, 1] == 0.0  # the last threshold rejects everything
    for t, acc, rec in rows:
        assert (acc, rec) == pytest.approx(brute(probs, gold, 0, t))
    # out-of-scope recall only grows with the threshold, in-scope accuracy only falls
    assert np.all(np.diff(rows[:, 2]) >= 0) and np.all(np.diff(rows[:, 1]) <= 0)
    # the picks, from brute-force counts at every distinct confidence (never "hand off everything")
    conf = probs.max(1)
    candidates = [0.0, *sorted(set(conf.tolist()))]
    sums = {t: sum(brute(probs, gold, 0, t)) for t in candidates}
    best = pick(rows, "balanced")
    assert best[1] + best[2] == pytest.approx(max(sums.values())) and best[0] <= conf.max()
    floor = float(np.median(rows[:, 1]))
    chosen = pick(rows, floor)
    feasible = [brute(probs, gold, 0, t) for t in candidates if brute(probs, gold, 0, t)[0] >= floor]
    assert chosen[1] >= floor and chosen[2] == pytest.approx(max(r for _, r in feasible))
    untuned = brute(probs, gold, 0, 0.0)[0]
    dropped = pick(rows, "drop:0.05")  # the default kind: at most 5 points below no threshold
    feasible = [brute(probs, gold, 0, t) for t in candidates if brute(probs, gold, 0, t)[0] >= untuned - 0.05]
    assert dropped[1] >= untuned - 0.05 - 1e-9 and dropped[2] == pytest.approx(max(r for _, r in feasible))
    assert 0 <= area(rows) <= 1
    # a threshold from other data, anywhere between the curve's points
    for t in rng.uniform(0, 1, 25).tolist() + [0.0, float(conf.max()), float(conf.max()) + 1e-7]:
        got = at_threshold(rows, t)
        assert (got["in_scope_accuracy"], got["oos_recall"]) == pytest.approx(brute(probs, gold, 0, t))


def test_pick_refuses_an_accuracy_no_threshold_reaches():
    rows = np.array([[0.0, 0.5, 0.1], [0.5, 0.4, 0.6]])
    with pytest.raises(ConfigError, match="at most 0.5000"):
        pick(rows, 0.9)


def _intent_files(tmp_path):
    """pay_bill / book_flight with key words; oos texts share none of them (mostly)."""
    rng = random.Random(3)
    filler = ["please", "i", "want", "to", "now", "the", "my", "a", "today"]
    keys = {"pay_bill": ["bill", "pay", "invoice"], "book_flight": ["flight", "plane", "book"],
            "oos": ["weather", "song", "joke", "recipe", "movie"]}

    def row():
        label = rng.choice(list(keys))
        ws = [rng.choice(filler) for _ in range(rng.randint(2, 5))] + [rng.choice(keys[label])]
        rng.shuffle(ws)
        return " ".join(ws), label

    paths = {}
    for split, n in (("train", 300), ("dev", 90), ("test", 90)):
        p = tmp_path / f"{split}.tsv"
        p.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in (row() for _ in range(n))), encoding="utf-8")
        paths[split] = p
    return paths


@pytest.fixture(scope="module")
def intent_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("intents")
    f = _intent_files(tmp)
    out = tmp / "run"
    train({"task": "text_classification",
           "data": {"train": str(f["train"]), "dev": str(f["dev"]), "test": str(f["test"]), "out_of_scope": "oos"},
           "model": {"embedding": {"dim": 16}, "encoder": {"type": "lstm", "hidden": 16},
                     "pooler": {"type": "attention"}},
           "train": {"epochs": 4, "batch_size": 16, "report": False, "metric": "in_scope_accuracy",
                     "optimizer": {"name": "adam", "lr": 0.01}}}, out=out, progress=False)
    return out


def test_tune_oos_saves_the_threshold_and_both_curves(intent_run):
    out = tune_out_of_scope(intent_run)
    saved = json.loads((intent_run / "out_of_scope.json").read_text())
    assert saved["threshold"] == out["threshold"] and saved["label"] == "oos"
    assert set(saved["dev_area_by_score"]) == {"msp", "margin", "not_oos"}
    assert saved["score"] == max(saved["dev_area_by_score"], key=saved["dev_area_by_score"].get)
    d = saved["dev"]  # the default criterion: at most 2 points of dev in-scope accuracy for recall
    assert saved["criterion"] == "drop:0.02"
    assert d["in_scope_accuracy"] >= d["untuned"]["in_scope_accuracy"] - 0.02 - 1e-9
    assert d["oos_recall"] >= d["untuned"]["oos_recall"]
    assert "test" in saved and saved["curves"]["test"]
    from attnkit.report import write_report

    html = write_report(intent_run).read_text()
    assert "Out-of-scope threshold" in html and 'alt="out-of-scope curve"' in html
    r = invoke(["tune-oos", str(intent_run), "--min-in-scope-accuracy", "0.5"])
    assert r.code == 0 and "threshold" in r.out and "updated" in r.out
    r = invoke(["tune-oos", str(intent_run), "--score", "energy"])
    assert r.code == 2 and "energy" in r.err
    r = invoke(["tune-oos", str(intent_run), "--balanced"])
    assert r.code == 0 and "criterion balanced" in r.out
    balanced = json.loads((intent_run / "out_of_scope.json").read_text())["dev"]
    assert balanced["in_scope_accuracy"] + balanced["oos_recall"] >= d["in_scope_accuracy"] + d["oos_recall"] - 1e-9
    r = invoke(["tune-oos", str(intent_run), "--balanced", "--min-in-scope-accuracy", "0.5"])
    assert r.kind == "clean_error" and "two criteria" in r.err
    with pytest.raises(ConfigError, match="drop:D needs a number"):
        pick(np.array([[0.0, 0.5, 0.1], [0.5, 0.4, 0.6], [1.0, 0.0, 1.0]]), "drop:x")


def test_tune_oos_refuses_runs_without_an_out_of_scope_label(text_run):
    r = invoke(["tune-oos", str(text_run)])
    assert r.code == 2 and "out-of-scope label" in r.err


def _table(tmp_path, **extra):
    data = {"handoff": "human", "default_route": "general", "routes": {"billing": ["pay_bill"]}, **extra}
    p = tmp_path / "routes.yaml"
    import yaml

    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


def test_route_endpoint_routes_hands_off_and_explains_why(intent_run, tmp_path):
    table = _table(tmp_path, threshold=0.0)
    with make_client(models={"intents": str(intent_run)}, router=str(table)) as c:
        wait_ready(c)
        r = c.post("/v1/route", json={"texts": ["please pay my bill", "book a flight now", "tell me a joke"]})
        assert r.status_code == 200, r.text
        routes = r.json()["routes"]
        assert [x["intent"] for x in routes] == ["pay_bill", "book_flight", "oos"]
        assert routes[0]["route"] == "billing" and not routes[0]["handoff"]
        assert routes[1]["route"] == "general" and routes[1]["reason"] == "default route"
        assert routes[2]["route"] == "human" and routes[2]["handoff"] and routes[2]["reason"] == "out of scope"
        metrics = c.get("/metrics").text
        assert 'attnkit_requests_total{endpoint="/v1/route",model="intents",status="200"} 1.0' in metrics
    with make_client(models={"intents": str(intent_run)}, router=str(_table(tmp_path, threshold=1.0))) as c:
        wait_ready(c)
        x = c.post("/v1/route", json={"texts": ["please pay my bill"]}).json()["routes"][0]
        assert x["handoff"] and x["route"] == "human" and x["reason"].startswith("low confidence")


def test_route_without_a_table_is_404(client):
    r = client.post("/v1/route", json={"texts": ["x"]})
    assert r.status_code == 404 and r.json()["error"]["type"] == "no_router"


def test_threshold_auto_reads_the_tuned_one(intent_run, tmp_path):
    tuned = tune_out_of_scope(intent_run, score="msp")["threshold"]
    labels = ["pay_bill", "book_flight", "oos"]
    router = bind_router(RoutingTable(), intent_run, labels, "oos", "t")
    assert router.threshold == tuned and router.threshold_source == "tuned on dev" and router.score == "msp"
    saved = json.loads((intent_run / "out_of_scope.json").read_text())
    assert (saved["threshold"], saved["score"]) == (router.threshold, router.score)


@pytest.mark.parametrize("score, p, handoff", [
    # not_oos = 1 - p(oos): 0.6 here, under 0.7 although the top label's probability is 0.62
    ("not_oos", {"pay_bill": 0.62, "book_flight": 0.0, "oos": 0.38}, True),
    ("not_oos", {"pay_bill": 0.50, "book_flight": 0.45, "oos": 0.05}, False),
    # margin = 0.62 - 0.38 = 0.24
    ("margin", {"pay_bill": 0.62, "book_flight": 0.0, "oos": 0.38}, True),
    ("msp", {"pay_bill": 0.72, "book_flight": 0.0, "oos": 0.28}, False),
])
def test_the_router_applies_the_score_the_threshold_was_tuned_for(tmp_path, score, p, handoff):
    (tmp_path / "out_of_scope.json").write_text(json.dumps({"threshold": 0.7, "score": score}))
    router = bind_router(RoutingTable(), tmp_path, ["pay_bill", "book_flight", "oos"], "oos", "t")
    assert router.score == score
    out = router.route({"text": "x", "label": max(p, key=p.get), "scores": p})
    assert out["handoff"] is handoff and out["confidence"] == max(p.values())
    if handoff:
        assert out["reason"].startswith(f"low confidence ({score}")


@pytest.mark.parametrize("content", ['{"threshold": NaN}', '{"threshold": 1.5}', '{"threshold": 0.5, "score": "x"}',
                                     '[1]', 'not json'])
def test_a_damaged_tuned_threshold_is_one_error(tmp_path, content):
    (tmp_path / "out_of_scope.json").write_text(content)
    with pytest.raises(ConfigError, match="damaged"):
        bind_router(RoutingTable(), tmp_path, ["a", "oos"], "oos", "t")


@pytest.mark.parametrize("data, match", [
    ({"threshold": 1.5}, "threshold: must be in \\[0, 1\\]"),
    ({"threshold": "sometimes"}, "threshold: 'auto' or a number"),
    ({"routes": {"a": ["x"], "b": ["x"]}}, "routes.b: intent 'x' is already routed to 'a'"),
    ({"rutes": {}}, "unknown key"),
    ({"score": "energy"}, "score"),
    ({"routes": {"a": "pay_bill"}}, "routes.a: expected a list"),
])
def test_bad_tables_are_one_error_naming_the_key(tmp_path, data, match):
    p = tmp_path / "t.yaml"
    import yaml

    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=match):
        read_table(p)


def test_tables_naming_unknown_intents_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="'book_hotel'"):
        bind_router(RoutingTable(routes={"travel": ["book_hotel"]}), tmp_path, ["pay_bill", "oos"], "oos", "t.yaml")
    assert isinstance(bind_router(RoutingTable(threshold=0.3), tmp_path, ["a"], None, "t"), Router)


def test_the_example_routing_table_reads_and_routes_every_clinc150_domain():
    from pathlib import Path

    table = read_table(Path(__file__).resolve().parents[2] / "examples" / "routing" / "intent_routes.yaml")
    intents = [i for queue in table.routes.values() for i in queue]
    assert table.threshold == "auto" and table.handoff == "human_agent"
    assert len(intents) == len(set(intents)) >= 60 and set(table.routes) == {"banking", "cards", "travel_and_auto",
                                                                              "hr_and_work"}
