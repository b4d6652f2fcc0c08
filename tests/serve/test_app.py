"""The HTTP service through its API: predictions equal the library's, errors are one JSON
body naming the field, the API key guards everything but health, readiness waits for the
models, metrics count what happened, and a model can be swapped while clients keep sending."""
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import attnkit.serve.models as served_models
from attnkit.run import load_run, predict

from .conftest import make_client, wait_ready

TEXTS = ["a great and moving film", "dull , flat and far too long", "fine", "the acting was superb but the plot was thin"]


def test_predictions_equal_the_library_in_order(client, text_run):
    r = client.post("/v1/models/sentiment/predict", json={"texts": TEXTS, "top_k": 2})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    want = predict(load_run(text_run), TEXTS, top_k=2)
    assert [g["text"] for g in got] == TEXTS
    assert [g["label"] for g in got] == [w["label"] for w in want]
    for g, w in zip(got, want):
        assert list(g["scores"]) == list(w["scores"]) and len(g["scores"]) == 2
        assert g["scores"] == pytest.approx(w["scores"], abs=1e-5)


def test_concurrent_clients_each_get_their_own_answers(client, text_run):
    want = {w["text"]: w["label"] for w in predict(load_run(text_run), TEXTS)}

    def one(i):
        texts = [TEXTS[(i + j) % len(TEXTS)] for j in range(1 + i % 3)]
        r = client.post("/v1/models/sentiment/predict", json={"texts": texts, "top_k": 1 + i % 2})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert [p["text"] for p in preds] == texts
        assert all(p["label"] == want[p["text"]] and len(p["scores"]) == 1 + i % 2 for p in preds)

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(one, range(40)))
    metrics = client.get("/metrics").text
    assert 'attnkit_requests_total{endpoint="/v1/models/{name}/predict",model="sentiment",status="200"} 40.0' in metrics
    assert "attnkit_batch_size_count" in metrics and "attnkit_queue_depth" in metrics


@pytest.mark.parametrize("body, status, field", [
    ({"texts": ["x"] * 9}, 413, "texts"),
    ({"texts": ["ok", "y" * 201]}, 422, "texts[1]"),
    ({"texts": []}, 422, "texts"),
    ({"texts": "not a list"}, 422, "texts"),
    ({"texts": ["ok", 3]}, 422, "texts[1]"),
    ({"texts": ["ok"], "top_k": 0}, 422, "top_k"),
    ({"texts": ["ok"], "colour": "red"}, 422, "colour"),
    ({}, 422, "texts"),
])
def test_bad_requests_get_one_json_error_naming_the_field(client, body, status, field):
    r = client.post("/v1/models/sentiment/predict", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and err["message"]


def test_unknown_model_body_too_large_and_not_json(client):
    for i in range(3):
        r = client.post(f"/v1/models/nope{i}/predict", json={"texts": ["x"]})
        assert r.status_code == 404 and "sentiment" in r.json()["error"]["message"]
    metrics = client.get("/metrics").text
    assert 'model="unknown",status="404"} 3.0' in metrics and "nope" not in metrics  # no label per made-up name

    def chunks():  # no Content-Length: the cap applies while the body streams in
        for _ in range(10):
            yield b" " * 1000
    r = client.post("/v1/models/sentiment/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == {"type": "body_too_large", "field": "body",
                                                          "message": "request body: more than 4096 bytes"}
    r = client.post("/v1/models/sentiment/predict", content=json.dumps({"texts": ["x" * 100] * 60}),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "body_too_large"
    r = client.post("/v1/models/sentiment/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"]


def test_explain_gives_one_score_per_word(client):
    r = client.post("/v1/models/sentiment/explain", json={"texts": TEXTS[:2]})
    assert r.status_code == 200, r.text
    for x, text in zip(r.json()["explanations"], TEXTS[:2]):
        assert x["tokens"] == text.split() and len(x["scores"]) == len(x["tokens"])
        assert x["method"] == "attention" and 0 <= x["probability"] <= 1
    r = client.post("/v1/models/sentiment/explain", json={"texts": ["x"], "target": "no-such-label"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "target"


def test_models_health_and_openapi(client, text_run):
    models = client.get("/v1/models").json()
    assert models["default"] == "sentiment"
    assert models["models"][0]["run"] == str(text_run) and models["models"][0]["labels"]
    assert client.get("/health/live").json()["status"] == "live"
    schema = client.get("/openapi.json").json()
    assert {"/v1/models/{name}/predict", "/v1/route", "/health/ready"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    assert "<textarea" in client.get("/").text


def test_api_key_guards_everything_but_health(text_run):
    with make_client(models={"m": str(text_run)}, api_key="s3cret-key") as c:
        wait_ready(c)
        assert c.get("/health/live").status_code == 200
        assert c.get("/health/ready").status_code == 200
        for method, path, body in (("get", "/v1/models", None), ("post", "/v1/models/m/predict", {"texts": ["x"]}),
                                   ("get", "/metrics", None), ("post", "/v1/models/m/explain", {"texts": ["x"]}),
                                   ("put", "/v1/models/m", {"run": str(text_run)})):
            r = c.request(method, path, json=body)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            r = c.request(method, path, json=body, headers={"Authorization": "Bearer wrong-key!"})
            assert r.status_code == 401
        r = c.post("/v1/models/m/predict", json={"texts": ["x"]}, headers={"Authorization": "Bearer s3cret-key"})
        assert r.status_code == 200


def test_ready_only_after_models_are_loaded_and_warmed(text_run, monkeypatch):
    gate, real = threading.Event(), served_models.load_served

    def slow_load(*args, **kw):
        gate.wait(10)
        return real(*args, **kw)

    monkeypatch.setattr(served_models, "load_served", slow_load)
    with make_client(models={"m": str(text_run)}) as c:
        r = c.get("/health/ready")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert c.get("/health/live").status_code == 200
        r = c.post("/v1/models/m/predict", json={"texts": ["x"]})
        assert r.status_code == 503 and r.headers["retry-after"]
        gate.set()
        wait_ready(c)
        assert c.post("/v1/models/m/predict", json={"texts": ["x"]}).status_code == 200


def test_a_run_that_cannot_load_makes_ready_fail_with_the_reason(tmp_path):
    with make_client(models={"m": str(tmp_path / "missing")}) as c:
        for _ in range(200):
            r = c.get("/health/ready")
            if r.json()["status"] != "loading":
                break
        assert r.status_code == 503 and r.json()["status"] == "failed" and "missing" in r.json()["detail"]


def test_swap_needs_an_api_key(client, text_run):
    r = client.put("/v1/models/sentiment", json={"run": str(text_run)})
    assert r.status_code == 403 and "--api-key" in r.json()["error"]["message"]


def test_swap_while_clients_send_fails_no_request(text_run, transformer_run):
    key = {"Authorization": "Bearer swap-key-123"}
    with make_client(models={"m": str(text_run)}, max_wait_ms=2, api_key="swap-key-123") as c:
        wait_ready(c)
        stop, codes = threading.Event(), []

        def hammer():
            while not stop.is_set():
                codes.append(c.post("/v1/models/m/predict", json={"texts": TEXTS}, headers=key).status_code)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        r = c.put("/v1/models/m", json={"run": str(transformer_run)}, headers=key)
        assert r.status_code == 200, r.text
        assert c.get("/v1/models", headers=key).json()["models"][0]["run"] == str(transformer_run)
        after = len(codes)
        r = c.put("/v1/models/m", json={"run": str(text_run)}, headers=key)
        assert r.status_code == 200
        stop.set()
        for t in threads:
            t.join()
        assert codes and set(codes) == {200}, f"failed requests across the swap: {sorted(set(codes))}"
        assert len(codes) > after > 0  # requests were answered between and after the swaps
        assert 'attnkit_model_swaps_total{model="m"} 2.0' in c.get("/metrics", headers=key).text
        r = c.put("/v1/models/m", json={"run": "/no/such/run"}, headers=key)
        assert r.status_code == 422 and r.json()["error"]["field"] == "run"
        assert c.get("/v1/models", headers=key).json()["models"][0]["run"] == str(text_run)  # the old run serves


def test_tagger_runs_serve_tags(tagger_run):
    with make_client(models={"ner": str(tagger_run)}) as c:
        wait_ready(c)
        r = c.post("/v1/models/ner/predict", json={"texts": ["John lives in Paris"]})
        assert r.status_code == 200, r.text
        p = r.json()["predictions"][0]
        assert p["tokens"] == ["John", "lives", "in", "Paris"] and len(p["tags"]) == 4


def test_a_full_queue_answers_503_with_retry_after(text_run, monkeypatch):
    gate = threading.Event()
    with make_client(models={"m": str(text_run)}, max_queue=2, max_texts=2, max_batch_size=1, max_wait_ms=0) as c:
        wait_ready(c)
        served = c.app.state.pool.models["m"]
        real = served.predict_texts

        in_model = threading.Event()

        def blocked(*a, **kw):
            in_model.set()
            gate.wait(10)
            return real(*a, **kw)

        monkeypatch.setattr(served, "predict_texts", blocked)
        post = lambda: c.post("/v1/models/m/predict", json={"texts": ["x"]})  # noqa: E731
        with ThreadPoolExecutor(4) as ex:
            # One request in the model first, then two queued behind it: sent together, the
            # third could arrive before the worker took the first and be the one refused.
            pending = [ex.submit(post)]
            assert in_model.wait(10), "the first request never reached the model"
            pending += [ex.submit(post) for _ in range(2)]
            for _ in range(1000):
                if len(served.batcher.queue) == 2:
                    break
                threading.Event().wait(0.01)
            assert len(served.batcher.queue) == 2
            r = post()
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["type"] == "overloaded"
            gate.set()
            assert [p.result().status_code for p in pending] == [200, 200, 200]


def test_an_unexpected_failure_is_a_json_500_and_the_others_in_its_batch_are_answered(text_run, monkeypatch):
    with make_client(models={"m": str(text_run)}, max_wait_ms=300, max_batch_size=8) as c:
        wait_ready(c)
        served = c.app.state.pool.models["m"]
        real = served.predict_texts

        def fussy(texts, ks):
            if "poison" in texts:
                raise RuntimeError("cannot encode this one")
            return real(texts, ks)

        monkeypatch.setattr(served, "predict_texts", fussy)
        with ThreadPoolExecutor(3) as ex:  # all three land in one micro-batch (300 ms wait)
            answers = list(ex.map(lambda t: c.post("/v1/models/m/predict", json={"texts": [t]}),
                                  ["fine", "poison", "good"]))
        assert [a.status_code for a in answers] == [200, 500, 200]
        assert answers[1].json()["error"]["type"] == "internal"
        assert answers[0].json()["predictions"][0]["text"] == "fine"


def test_an_exported_run_predicts_on_onnxruntime_and_explains_in_pytorch(text_run, tmp_path):
    pytest.importorskip("onnxruntime", reason="the deploy extra is not installed")
    pytest.importorskip("onnx", reason="the deploy extra is not installed")
    from attnkit.deploy import export_run

    onnx_run = export_run(text_run, tmp_path / "onnx")
    with make_client(models={"m": str(onnx_run)}) as c:
        wait_ready(c)
        assert c.get("/v1/models").json()["models"][0]["engine"] == "onnxruntime"
        got = c.post("/v1/models/m/predict", json={"texts": TEXTS}).json()["predictions"]
        want = predict(load_run(text_run), TEXTS)
        assert [g["label"] for g in got] == [w["label"] for w in want]
        for method in ("attention", "saliency"):
            r = c.post("/v1/models/m/explain", json={"texts": TEXTS[:1], "method": method})
            assert r.status_code == 200, r.text
            assert len(r.json()["explanations"][0]["scores"]) == len(TEXTS[0].split())


def test_a_request_unanswered_in_time_gets_504_and_leaves_the_queue(text_run, monkeypatch):
    gate = threading.Event()
    with make_client(models={"m": str(text_run)}, timeout_s=0.3, max_batch_size=1, max_wait_ms=0) as c:
        wait_ready(c)
        served = c.app.state.pool.models["m"]
        real, seen = served.predict_texts, []

        def blocked(texts, ks):
            seen.append(list(texts))
            gate.wait(10)
            return real(texts, ks)

        monkeypatch.setattr(served, "predict_texts", blocked)
        with ThreadPoolExecutor(2) as ex:
            first = ex.submit(c.post, "/v1/models/m/predict", json={"texts": ["first"]})
            for _ in range(200):
                if seen:
                    break
                threading.Event().wait(0.01)
            second = c.post("/v1/models/m/predict", json={"texts": ["second"]})  # queued behind the blocked one
            assert second.status_code == 504 and second.json()["error"]["type"] == "timeout"
            gate.set()
            assert first.result().status_code == 504
        c.post("/v1/models/m/predict", json={"texts": ["third"]})
        assert ["second"] not in seen  # dropped from the queue, never run
