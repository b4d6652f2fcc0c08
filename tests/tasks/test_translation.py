"""The translation task end to end on generated parallel files: train, translate, evaluate,
report; exact kill-and-resume with token-budget batches; and one clear message for each kind
of bad input (unequal files, an empty line, a sentence over the length limit, a run of
another task given to ``translate``)."""
import json
import random
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from attnkit.cli import app
from attnkit.data import SubwordModel, token_budget_batches
from attnkit.errors import AttnkitError, ConfigError, DataError
from attnkit.run import load_run, train
from attnkit.tasks import get_task, prepare, run_config
from attnkit.train import Trainer

LEXICON = {"ein": "a", "mann": "man", "hund": "dog", "rot": "red", "groß": "big", "läuft": "runs",
           "sieht": "sees", "katze": "cat", "blau": "blue", "klein": "small", "und": "and", "die": "the"}


def make_pairs(tmp_path, n_train=300, seed=0):
    """PREFIX.src / PREFIX.tgt for train/dev/test: the target is the source word by word."""
    rng = random.Random(seed)
    words = list(LEXICON)
    prefixes = {}
    for split, n in (("train", n_train), ("dev", 40), ("test", 40)):
        src = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 7))) for _ in range(n)]
        (tmp_path / f"{split}.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
        (tmp_path / f"{split}.tgt").write_text("".join(" ".join(LEXICON[w] for w in s.split()) + "\n" for s in src),
                                               encoding="utf-8")
        prefixes[split] = str(tmp_path / split)
    return prefixes


def config(prefixes, decoder="transformer", **train):
    enc = ({"type": "transformer", "dim": 32, "layers": 1, "ff_dim": 64, "dropout": 0.0, "attention": {"heads": 2}}
           if decoder == "transformer" else {"type": "gru", "hidden": 24})
    dec = ({"type": "transformer", "layers": 1, "ff_dim": 64, "dropout": 0.0, "attention": {"heads": 2}}
           if decoder == "transformer" else {"type": decoder, "hidden": 32, "dropout": 0.0,
                                             "attention": {"score": "additive", "hidden": 16}})
    return {"task": "translation",
            "data": {**prefixes, "source_lang": "src", "target_lang": "tgt", "subword_vocab": 120},
            "model": {"embedding": {"dim": 32}, "encoder": enc, "decoder": dec, "search": {"beam": 3}},
            "train": {"epochs": 2, "max_tokens": 200, "optimizer": {"name": "adam", "lr": 0.005},
                      "report": False, **train}}


def test_train_translate_evaluate_and_report(tmp_path):
    prefixes = make_pairs(tmp_path)
    result = train(config(prefixes), out=tmp_path / "run", progress=False)
    for key in ("bleu", "bleu_lc", "chrf", "loss"):
        assert key in result.dev and key in result.test
    assert "nrefs:1" in result.test["bleu_signature"] and "case:lc" in result.test["bleu_lc_signature"]
    runner = CliRunner()
    r = runner.invoke(app, ["translate", str(tmp_path / "run"), "ein mann läuft", "--beam", "3", "--nbest", "2",
                            "--json"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output.strip().splitlines()[-1])
    assert rec["text"] == "ein mann läuft" and len(rec["nbest"]) == 2 and rec["translation"] == rec["nbest"][0]["translation"]
    r = runner.invoke(app, ["evaluate", str(tmp_path / "run"), "--data", prefixes["test"]])
    assert r.exit_code == 0, r.output
    assert "bleu" in r.output
    r = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert 'alt="alignment"' in page and "reference" in page


def test_a_word_mapping_is_learned(tmp_path):
    """The GRU + additive attention model learns the word-by-word mapping (a test that fails
    when decoding, attention or training is broken)."""
    prefixes = make_pairs(tmp_path, n_train=600)
    result = train(config(prefixes, decoder="gru", epochs=12), out=tmp_path / "run", progress=False)
    assert result.test["bleu"] > 60, result.test


def test_resume_after_a_pause_is_exact(tmp_path):
    cfg = run_config(config(make_pairs(tmp_path), epochs=2, max_tokens=150))
    cfg.validate()
    task = get_task("translation")
    prepared = prepare(cfg)

    def fresh():
        torch.manual_seed(0)
        return task.build_model(cfg.model, **prepared.sizes)

    def evaluate(m, d):
        return {}

    full = Trainer(fresh(), prepared.train, None, cfg.train, tmp_path / "full", evaluate, progress=False)
    full.fit()
    paused = Trainer(fresh(), prepared.train, None, cfg.train, tmp_path / "paused", evaluate, progress=False,
                     on_step=lambda st: st["step"] == 5)
    paused.fit()
    assert paused.paused and paused.state["step"] == 5
    resumed = Trainer(fresh(), prepared.train, None, cfg.train, tmp_path / "paused", evaluate, progress=False)
    resumed.fit(resume=True)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_token_budget_batches():
    rng = random.Random(0)
    lengths = [rng.randint(1, 30) for _ in range(500)]
    batches = token_budget_batches(lengths, 120, seed=1, epoch=2)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 120
    assert batches == token_budget_batches(lengths, 120, seed=1, epoch=2)
    assert batches != token_budget_batches(lengths, 120, seed=1, epoch=3)
    assert token_budget_batches([200, 3], 100, shuffle=False) == [[0], [1]]  # one longer example: a batch of its own


def test_subword_model_round_trip(tmp_path):
    texts = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "A man rides a bike."] * 20
    sw = SubwordModel.train(texts, vocab_size=80)
    ids = sw.encode("Ein Mann spielt.")
    assert min(ids) > 3 and sw.decode(ids + [sw.eos_id, 7, 8]) == "Ein Mann spielt."
    sw.save(tmp_path / "subwords.json")
    again = SubwordModel.load(tmp_path / "subwords.json")
    assert again.encode("Zwei Hunde") == sw.encode("Zwei Hunde")
    (tmp_path / "bad.json").write_text('{"kind": "vocab"}', encoding="utf-8")
    with pytest.raises(DataError, match="expected a subword model"):
        SubwordModel.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="data.subwords.model"):
        SubwordModel.train(texts, model="wordpiece")


# ---------------------------------------------------------------- bad input
def test_unequal_line_counts_name_both_files(tmp_path):
    prefixes = make_pairs(tmp_path)
    with open(f"{prefixes['train']}.tgt", "a", encoding="utf-8") as f:
        f.write("one more\n")
    with pytest.raises(DataError, match=r"train\.src has 300 lines but .*train\.tgt has 301"):
        train(config(prefixes), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_an_empty_source_line_is_named_or_skipped(tmp_path):
    prefixes = make_pairs(tmp_path)
    path = tmp_path / "train.src"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[6] = "   "
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.src:7: empty sentence"):
        train(config(prefixes), out=tmp_path / "run", progress=False)
    cfg = config(prefixes)
    cfg["data"]["on_error"] = "skip"
    prepared = prepare(run_config(cfg))
    assert len(prepared.train) == 299


def test_a_sentence_over_the_limit_is_an_error_never_cut(tmp_path):
    prefixes = make_pairs(tmp_path)
    path = tmp_path / "dev.src"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = " ".join(["katze"] * 40)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = config(prefixes)
    cfg["model"]["encoder"]["max_len"] = 30
    cfg["model"]["decoder"]["max_len"] = 30
    with pytest.raises(DataError, match=r"dev\.src:3: the source sentence is \d+ subwords, longer than the "
                                        r"model's limit of 30"):
        train(cfg, out=tmp_path / "run", progress=False)


def test_missing_files_and_suffixes_are_named(tmp_path):
    prefixes = make_pairs(tmp_path)
    cfg = config(prefixes)
    cfg["data"]["target_lang"] = "en"
    with pytest.raises(DataError, match=r"data.train: .*train\.en not found \(translation reads PREFIX.src and "
                                        r"PREFIX.en"):
        prepare(run_config(cfg))
    cfg["data"]["target_lang"] = None
    with pytest.raises(ConfigError, match="data.source_lang, data.target_lang"):
        prepare(run_config(cfg))


def test_translate_refuses_a_run_of_another_task(tmp_path):
    rows = "".join(f"{w} film\t{'pos' if w == 'good' else 'neg'}\n" for w in ["good", "bad", "dull"] * 8)
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + rows, encoding="utf-8")
    cfg = {"task": "text_classification", "data": {"train": str(tmp_path / "t.tsv"), "dev": str(tmp_path / "t.tsv")},
           "model": {"embedding": {"dim": 8}, "encoder": {"type": "gru", "hidden": 8}},
           "train": {"epochs": 1, "report": False}}
    train(cfg, out=tmp_path / "cls", progress=False)
    proc = subprocess.run([sys.executable, "-c", "from attnkit.cli import run; run()", "translate",
                           str(tmp_path / "cls"), "hello"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "is a text_classification run, not a translation run" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_loaded_run_translates_like_the_trained_model(tmp_path):
    prefixes = make_pairs(tmp_path)
    train(config(prefixes, epochs=1), out=tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    tied = run.model.out.weight.data_ptr() == run.model.embedding.embed.weight.data_ptr()
    assert tied  # saved once in model.safetensors, tied again on loading
    with pytest.raises(AttnkitError, match="input: .* longer than the model's limit"):
        get_task("translation").encode_inputs(run.featurized, ["katze " * 300])


def test_average_of_the_last_epochs(tmp_path):
    from attnkit.train import average_weights, save_checkpoint

    a, b = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}, {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(4)}
    save_checkpoint(tmp_path / "a.pt", {"model": a})
    save_checkpoint(tmp_path / "b.pt", {"model": b})
    avg = average_weights([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert torch.equal(avg["w"], torch.tensor([2.0, 4.0])) and int(avg["n"]) == 4
    prefixes = make_pairs(tmp_path)
    train(config(prefixes, epochs=3, average_last=2), out=tmp_path / "run", progress=False)
    ck = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ck == ["best.pt", "epoch-2.pt", "epoch-3.pt", "last.pt"]  # only the last two epochs are kept
    saved = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert saved["weights"] in ("average of the last epochs", "best epoch")
