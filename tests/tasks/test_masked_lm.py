"""Task ``masked_lm`` end to end, and ``model.init_from``: a classifier and a tagger that start
from the pretrained embedding and encoder, read text with its tokenizer, and refuse an encoder
that does not fit."""
import json
import random

import pytest
import torch
import yaml

from attnkit.errors import ConfigError
from attnkit.run import train
from tests.fuzz.contract import invoke
from tests.run.conftest import make_conll_files

POS, NEG = "good great fine lovely superb".split(), "bad awful poor boring dull".split()
NOUNS = "film movie story plot acting cast".split()


def write_corpus(folder, n=400, seed=0):
    """A table with a text column and an SST-style one with a sentence column (labels ignored)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        word = rng.choice(POS if label else NEG)
        rows.append((f"the {rng.choice(NOUNS)} was {word} and the {rng.choice(NOUNS)} was {word} too", label))
    (folder / "corpus.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    (folder / "sent.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows[: n // 2]),
                                     encoding="utf-8")
    return folder / "corpus.tsv", folder / "sent.tsv"


def mlm_config(folder, **train_options):
    corpus, sent = write_corpus(folder)
    return {"task": "masked_lm",
            "data": {"train": str(corpus), "corpus": [{"path": str(sent), "text_column": "sentence"}],
                     "subword_vocab": 120, "sequence_len": 32, "dev_fraction": 0.1},
            "model": {"embedding": {"dim": 24}, "encoder": {"type": "transformer", "dim": 24, "layers": 1,
                                                            "attention": {"heads": 2}, "max_len": 64}},
            "train": {"epochs": 6, "batch_size": 32, "optimizer": {"name": "adamw", "lr": 0.003}, **train_options}}


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlm")
    out = folder / "run"
    train(mlm_config(folder), out=out, progress=False)
    return out


def test_pretraining_learns_from_context_and_says_what_it_scored(mlm_run):
    ev = json.loads((mlm_run / "eval.json").read_text())["dev"]
    # the corpus repeats its sentiment word: context beats guessing by frequency, which beats guessing blindly
    assert ev["mlm_loss"] < ev["unigram_loss"] < ev["uniform_loss"]
    assert ev["perplexity"] == pytest.approx(torch.tensor(ev["mlm_loss"]).exp().item(), rel=1e-4)
    assert 0 < ev["masked_accuracy"] <= 1 and ev["predicted_pieces"] > 0
    assert "warning" not in json.loads((mlm_run / "eval.json").read_text())
    assert (mlm_run / "tokenizer" / "tokenizer.json").is_file() and (mlm_run / "report.html").is_file()


def test_training_masks_anew_and_dev_keeps_its_masks(tmp_path):
    from attnkit.run.training import resolve_config
    from attnkit.tasks import get_task, prepare

    cfg = resolve_config(mlm_config(tmp_path))
    prepared = prepare(cfg)
    assert prepared.train.fixed_seed is None and prepared.dev.fixed_seed == cfg.train.seed
    assert cfg.model.encoder["type"] == "transformer"  # written into the config: init_from builds the same
    task = get_task("masked_lm")
    empty = task.score([{"ids": torch.zeros(0, 5, dtype=torch.long)}],
                       [{"ids": torch.zeros(0, dtype=torch.long), "logprob": torch.zeros(0)}], prepared.featurized)
    assert empty["predicted_pieces"] == 0 and empty["mlm_loss"] != empty["mlm_loss"]  # NaN: never the best epoch


def test_a_model_that_learns_nothing_is_caught_and_said(tmp_path, caplog):
    out = tmp_path / "run"
    cfg = mlm_config(tmp_path, epochs=1, report=False)
    cfg["train"]["optimizer"]["lr"] = 1e-9
    train(cfg, out=out, progress=False)
    warning = json.loads((out / "eval.json").read_text())["warning"]
    assert "log(vocabulary)" in warning and "learnt nothing" in warning
    assert any("log(vocabulary)" in r.message for r in caplog.records)


def test_predict_fills_masks_and_other_commands_refuse_clearly(mlm_run, tmp_path):
    r = invoke(["predict", mlm_run, "the film was <mask> and the plot was good too", "--json"])
    assert r.code == 0, r.err
    rec = json.loads(r.out.strip().splitlines()[0])
    assert len(rec["masks"]) == 1 and len(rec["masks"][0]) == 3 and "<mask>" not in rec["filled"]
    # after "the film was" the corpus always has a sentiment word: the model reads that from the context
    assert all(m["piece"].lstrip("▁") in POS + NEG for m in rec["masks"][0]), rec
    r = invoke(["predict", mlm_run, "the movie was awful and the cast was awful too", "--json"])
    rec = json.loads(r.out.strip().splitlines()[0])
    assert r.code == 0 and rec["original"] and len(rec["original"]) == len(rec["masks"])
    texts = ["the plot was <mask>", "the movie was awful and the cast was awful too", "a <mask> <mask> film",
             "the story"]
    alone = [json.loads(invoke(["predict", mlm_run, t, "--json"]).out.splitlines()[0]) for t in texts]
    r = invoke(["predict", mlm_run, *texts, "--json"])  # one batch: different lengths, typed and drawn masks
    together = [json.loads(line) for line in r.out.strip().splitlines()]
    assert r.code == 0 and len(together) == 4 and [len(x["masks"]) for x in together] == [1, len(alone[1]["masks"]), 2,
                                                                                          len(alone[3]["masks"])]
    for a, b in zip(alone, together):
        assert a["filled"] == b["filled"] and [m[0]["piece"] for m in a["masks"]] == [m[0]["piece"] for m in b["masks"]]
    for argv in (["explain", mlm_run, "the film"], ["export", mlm_run, "--out", tmp_path / "x"]):
        r = invoke(argv)
        assert r.kind == "clean_error" and "init_from" in r.err, r.err


def test_classifier_starts_from_the_pretrained_encoder(mlm_run, tmp_path):
    from safetensors.torch import load_file

    from attnkit.rundir import load_run
    from attnkit.run.init_from import load_pretrained_blocks
    from attnkit.run.training import resolve_config
    from attnkit.tasks import get_task, prepare

    _, sent = write_corpus(tmp_path, seed=1)
    raw = {"task": "text_classification", "data": {"train": str(sent), "text_column": "sentence"},
           "model": {"init_from": str(mlm_run), "encoder": {"dropout": 0.0}, "finetune": {"max_len": 32},
                     "pooler": {"type": "attention"}},
           "train": {"epochs": 5, "batch_size": 16, "report": False, "optimizer": {"name": "adam", "lr": 0.01}}}
    cfg = resolve_config(raw)
    assert cfg.model.encoder["dim"] == 24 and cfg.model.encoder["dropout"] == 0.0  # the run's blocks, my dropout
    fz = prepare(cfg).featurized
    assert fz.pieces and fz.sizes["vocab_size"] == len(fz.vocabs["tokenizer"])
    model = get_task(cfg.task).build_model(cfg.model, **fz.sizes)
    load_pretrained_blocks(model, str(mlm_run))
    saved = load_file(str(mlm_run / "model.safetensors"))
    for name, value in model.state_dict().items():
        if name.startswith(("embedding.", "encoder.")):
            assert torch.equal(value, saved[name]), name
    barely = {**raw, "train": {**raw["train"], "epochs": 1, "max_steps": 1, "optimizer": {"name": "adam", "lr": 1e-12}}}
    trained = load_run(train(barely, out=tmp_path / "one-step", progress=False).run_dir).model.state_dict()
    for name, value in trained.items():  # what train() started from: the pretrained blocks
        if name.startswith(("embedding.", "encoder.")):
            assert torch.allclose(value, saved[name], atol=1e-6), name
    out = tmp_path / "cls"
    result = train(raw, out=out, progress=False)
    assert result.dev["accuracy"] > 0.9
    run = load_run(out)
    assert "tokenizer" in run.vocabs
    r = invoke(["predict", out, "the plot was superb and the cast was superb too", "--json"])
    assert r.code == 0 and json.loads(r.out.splitlines()[0])["label"] == "1", r.err + r.out
    r = invoke(["explain", out, "the plot was superb", "--method", "saliency"])
    assert r.code == 0, r.err


def test_tagger_starts_from_the_pretrained_encoder(mlm_run, tmp_path):
    f = make_conll_files(tmp_path)
    raw = {"task": "token_classification", "data": {"train": str(f["train"]), "dev": str(f["dev"])},
           "model": {"init_from": str(mlm_run), "finetune": {"max_len": 48}},
           "train": {"epochs": 8, "batch_size": 16, "report": False, "optimizer": {"name": "adam", "lr": 0.01}}}
    out = tmp_path / "tagger"
    result = train(raw, out=out, progress=False)
    assert result.dev["f1"] > 0.8
    r = invoke(["predict", out, "mr Smith went to Paris", "--json"])
    rec = json.loads(r.out.splitlines()[0])
    assert r.code == 0 and len(rec["tags"]) == 5, r.out + r.err


def test_multitask_on_the_pretrained_encoder(mlm_run, tmp_path):
    corpus, sent = write_corpus(tmp_path, seed=2)
    cfg = {"task": "multitask",
           "multitask": {"tasks": {
               "a": {"task": "text_classification", "data": {"train": str(corpus)}},
               "b": {"task": "text_classification", "data": {"train": str(sent), "text_column": "sentence"}}}},
           "model": {"init_from": str(mlm_run), "pooler": {"type": "mean"}},
           "train": {"epochs": 4, "batch_size": 16, "report": False, "optimizer": {"name": "adam", "lr": 0.01}}}
    result = train(cfg, out=tmp_path / "mt", progress=False)
    assert result.dev["a/accuracy"] > 0.9 and result.dev["b/accuracy"] > 0.9
    r = invoke(["predict", tmp_path / "mt" / "tasks" / "b", "the cast was superb and the plot was superb too", "--json"])
    assert r.code == 0 and json.loads(r.out.splitlines()[0])["label"] == "1", r.err


def test_init_from_errors_name_the_key(mlm_run, text_run, tmp_path):
    from attnkit.run.training import resolve_config

    _, sent = write_corpus(tmp_path)
    base = {"task": "text_classification", "data": {"train": str(sent), "text_column": "sentence"}}
    cases = [({"init_from": str(mlm_run), "encoder": {"dim": 32}}, "model.encoder: does not fit"),
             ({"init_from": str(text_run)}, "is a text_classification run without its own tokenizer"),
             ({"init_from": str(tmp_path / "nowhere")}, "model.init_from: .*no such run directory"),
             ({"init_from": str(mlm_run), "finetune": {"max_len": 500}}, "model.finetune.max_len: 500"),
             ({"init_from": str(mlm_run), "pretrained": "minilm"}, "cannot be combined with model.pretrained")]
    for model, message in cases:
        with pytest.raises(ConfigError, match=message):
            cfg = {**base, "model": model}
            if "dim" in model.get("encoder", {}):  # sizes are checked when the weights load
                train(cfg, out=tmp_path / "never", progress=False)
            else:
                resolve_config(cfg)
    assert not (tmp_path / "never").exists()


def test_corpus_entries_are_checked(tmp_path):
    cfg = mlm_config(tmp_path)
    for corpus, err in (([{"file": "x"}], "data.corpus\\[0\\]: expected a file path"),
                        ([str(tmp_path / "missing.tsv")], "data.corpus\\[0\\]: .*not found")):
        cfg["data"]["corpus"] = corpus
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
        r = invoke(["train", tmp_path / "c.yaml", "--out", tmp_path / "r"])
        assert r.kind == "clean_error" and r.code != 0
        import re

        assert re.search(err, r.err), r.err
