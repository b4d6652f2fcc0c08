"""Word vectors from a backbone run (``attnkit vectors``) and a student vocabulary extended with
them: each vector is checked against the Hugging Face model's own forward (mean of the word's
pieces, in float64), the file against what a student then reads, and one clear error per misuse."""
import pytest
import torch

from attnkit.data import Vocab
from attnkit.errors import ConfigError, DataError
from attnkit.nn import read_vectors, vector_words, write_vectors
from attnkit.rundir import load_run
from attnkit.run import train
from attnkit.run.vectors import corpus_words, word_states
from tests.fuzz.contract import invoke

POS = ["good film", "great movie , fun", "a great plot", "fun acting and great", "good"]
NEG = ["bad film", "awful movie , boring", "a boring plot", "bad acting and awful", "awful"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vectors-data")
    rows = [f"{t}\t1" for t in POS] * 4 + [f"{t}\t0" for t in NEG] * 4
    (folder / "train.tsv").write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    (folder / "dev.tsv").write_text("text\tlabel\n" + "\n".join(rows[::5]) + "\n")
    # words the training split lacks: "unbelievable" (three pieces), "london", "john"
    (folder / "corpus.txt").write_text("Unbelievable London\nunbelievable john . john\nparis\n")
    return folder


@pytest.fixture(scope="module")
def teacher(tiny_bert, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("vectors-teacher") / "run"
    train({"task": "text_classification",
           "data": {"train": str(data / "train.tsv"), "dev": str(data / "dev.tsv")},
           "model": {"pretrained": str(tiny_bert), "finetune": {"method": "full"}},
           "train": {"epochs": 1, "batch_size": 8, "report": False}}, out=out, progress=False)
    return out


def student(data, **embedding):
    return {"task": "text_classification",
            "data": {"train": str(data / "train.tsv"), "dev": str(data / "dev.tsv")},
            "model": {"embedding": {"dim": 32, **embedding}, "encoder": {"type": "lstm", "hidden": 8}},
            "train": {"epochs": 1, "batch_size": 8, "report": False}}


def test_a_words_vector_is_the_mean_of_its_pieces_last_states(teacher):
    run = load_run(teacher)
    tok = run.vocabs["tokenizer"]
    words = ["unbelievable", "good", "goods", "film"]
    got = word_states(run, words)
    hf = run.model.encoder.base.double().eval()  # the Hugging Face forward, not attnkit's fast path
    for w, vec in zip(words, got):
        ids = torch.tensor([tok(w)["input_ids"]])
        with torch.no_grad():
            h = hf(input_ids=ids).last_hidden_state[0, 1:-1]  # [CLS] ... [SEP]: the word's own pieces
        assert ids.shape[1] - 2 == {"unbelievable": 3, "goods": 2}.get(w, 1)
        torch.testing.assert_close(vec.double(), h.mean(0), atol=1e-5, rtol=1e-4)


def test_the_cli_writes_vectors_the_student_starts_from(teacher, data, tmp_path):
    out = tmp_path / "vectors.txt"
    config = tmp_path / "student.yaml"
    import yaml

    config.write_text(yaml.safe_dump(student(data)))
    got = invoke(["vectors", "--teacher", teacher, "--student", config, "--corpus", data / "corpus.txt",
                  "--lowercase", "--min-count", "2", "--out", out])
    assert got.code == 0, got.out + got.err
    assert "model.embedding.dim=32" in got.out
    words = vector_words(out)
    plain = train(student(data), out=tmp_path / "plain", progress=False)
    own = load_run(plain.run_dir).vocabs["vocab.json"].itos[2:]
    assert words[:len(own)] == own  # the training words first, in the vocabulary's order
    assert words[len(own):] == ["john", "unbelievable"]  # corpus words seen twice ("london" once)
    table, found = read_vectors(out, {w: i for i, w in enumerate(words)}, 32)
    assert found == len(words) and table.std().item() == pytest.approx(1.0, abs=1e-3)
    # a frozen student with the extended vocabulary reads exactly these vectors
    extended = train(student(data, vectors=str(out), extend_vocab=True, freeze=True), out=tmp_path / "ext",
                     progress=False)
    run = load_run(extended.run_dir)
    vocab = run.vocabs["vocab.json"]
    assert vocab.itos[2:] == words
    emb = run.model.embedding.embed.weight
    torch.testing.assert_close(emb[vocab.stoi["unbelievable"]], table[words.index("unbelievable")],
                               atol=1e-4, rtol=1e-4)


def test_vocab_extended_keeps_ids_and_order():
    v = Vocab.build([["b", "a", "b"]], lowercase=True)
    grown = v.extended(["C", "a", "d", "c", "e"], max_size=6)
    assert grown.itos == ["<pad>", "<unk>", "b", "a", "c", "d"] and grown.lowercase
    assert v.extended([]).itos == v.itos


def test_corpus_words_counts_and_filters(tmp_path):
    import gzip

    p = tmp_path / "c.txt.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write("The cat, the DOG.\nthe dog\n")
    assert corpus_words([p], "words", lowercase=True, min_count=2) == ["the", "dog"]
    assert corpus_words([p], "words", min_count=1) == ["the", ",", ".", "DOG", "The", "cat", "dog"]
    with pytest.raises(DataError, match="corpus file not found"):
        corpus_words([tmp_path / "none.txt"])


def test_write_vectors_refuses_words_with_spaces(tmp_path):
    with pytest.raises(DataError, match="cannot be empty or hold a space"):
        write_vectors(tmp_path / "v.txt", ["new york"], torch.zeros(1, 2))
    write_vectors(tmp_path / "v.txt", ["a", "b"], torch.tensor([[1.0, 2.0], [3.0, 4.5]]))
    table, found = read_vectors(tmp_path / "v.txt", {"b": 0, "a": 1}, 2)
    assert found == 2 and table.tolist() == [[3.0, 4.5], [1.0, 2.0]]


def test_misuse_is_one_clear_error(teacher, tiny_bert, data, text_run, tmp_path):
    with pytest.raises(ConfigError, match="extend_vocab: adds the words of model.embedding.vectors, which is not set"):
        train(student(data, extend_vocab=True), out=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="extend_vocab: expected true or false"):
        train(student(data, vectors=str(tmp_path / "v.txt"), extend_vocab="yes"), out=tmp_path / "b", progress=False)
    import yaml

    config = tmp_path / "student.yaml"
    config.write_text(yaml.safe_dump(student(data)))
    got = invoke(["vectors", "--teacher", text_run, "--student", config, "--out", tmp_path / "v.txt"])
    assert got.code != 0 and got.kind != "traceback"
    assert "come from a run on a pretrained backbone" in got.out + got.err
    pieces = tmp_path / "pieces.yaml"
    pieces.write_text(yaml.safe_dump({**student(data), "model": {"pretrained": str(tiny_bert)}}))
    got = invoke(["vectors", "--teacher", teacher, "--student", pieces, "--out", tmp_path / "v.txt"])
    assert got.code != 0 and got.kind != "traceback"
    assert "word vectors are for a model from blocks" in got.out + got.err
    got = invoke(["vectors", "--teacher", teacher, "--student", config, "--corpus", tmp_path / "none.txt",
                  "--out", tmp_path / "v.txt"])
    assert got.code != 0 and "none.txt: corpus file not found" in got.out + got.err
    assert not (tmp_path / "v.txt").exists()


def test_a_lowercase_student_gets_the_vectors_of_cased_corpus_words(teacher, data, tmp_path):
    from attnkit.run.vectors import teacher_vectors

    (tmp_path / "cased.txt").write_text("John JOHN London\n")
    cfg = student(data)
    cfg["data"]["lowercase"] = True
    out = tmp_path / "v.txt"
    done = teacher_vectors(teacher, cfg, out, corpus=[tmp_path / "cased.txt"], min_count=2)  # no lowercase asked
    assert done["corpus_words"] == 1 and vector_words(out)[-1] == "john"  # counted as one word, twice
    cfg["model"]["embedding"].update(vectors=str(out), extend_vocab=True, freeze=True)
    run = load_run(train(cfg, out=tmp_path / "run", progress=False).run_dir)
    table, _ = read_vectors(out, {"john": 0}, 32)
    row = run.model.embedding.embed.weight[run.vocabs["vocab.json"].stoi["john"]]
    torch.testing.assert_close(row, table[0], atol=1e-4, rtol=1e-4)
    assert read_vectors(out, {"john": 0}, 32, lowercase=True)[1] == 1


def test_resume_refuses_a_changed_vector_file_and_a_run_loads_without_it(teacher, data, tmp_path):
    from attnkit.rundir import RunError

    out = tmp_path / "v.txt"
    write_vectors(out, ["film", "zebra", "yak"], torch.randn(3, 32))
    cfg = student(data, vectors=str(out), extend_vocab=True, freeze=True)
    run_dir = train(cfg, out=tmp_path / "run", progress=False).run_dir
    before = (run_dir / "vocab.json").read_text()
    write_vectors(out, ["film", "yak", "zebra"], torch.randn(3, 32))  # same words, other ids
    with pytest.raises(RunError, match="is not the one the run started with"):
        train(cfg, out=run_dir, resume=True, progress=False)
    assert (run_dir / "vocab.json").read_text() == before
    out.unlink()
    run = load_run(run_dir)
    assert run.vocabs["vocab.json"].itos[-2:] == ["zebra", "yak"]
    encoded = run.task.encode_inputs(run.featurized, ["good film zebra"])
    assert run.model(encoded[0].batch)["logits"].shape == (1, 2)
