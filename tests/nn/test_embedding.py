"""Token embeddings and the word-vector reader: lookup, the padding row, defaults, pretrained
rows, size checks; the text format (word2vec/GloVe: one space between fields, UTF-8)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attnkit

from attnkit.errors import ConfigError
from attnkit.nn import TokenEmbedding, read_vectors


def test_read_vectors_keeps_reading_after_words_not_in_the_vocabulary(tmp_path):
    """Lines of unknown words are skipped, not the end of the file."""
    vec = tmp_path / "vec.txt"
    vec.write_text("the 0 0\nzebra 9 9\ngood 1 2\nbad -1 -2\n", encoding="utf-8")
    table, found = read_vectors(vec, {"<pad>": 0, "good": 1, "bad": 2}, 2)
    assert found == 2
    assert table[1].tolist() == [1.0, 2.0] and table[2].tolist() == [-1.0, -2.0]
    assert torch.isnan(table[0]).all()


def test_read_vectors_splits_on_single_spaces_only(tmp_path):
    """Fields are separated by " " only: a word containing another whitespace character (a
    non-breaking space, as in GloVe's large vocabularies) stays one word."""
    vec = tmp_path / "vec.txt"
    vec.write_text("new\u00a0york 1 2\ncafé 3 4\n", encoding="utf-8")
    table, found = read_vectors(vec, {"new\u00a0york": 0, "café": 1}, 2)
    assert found == 2 and table.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_read_vectors_tolerates_undecodable_bytes(tmp_path):
    """A line that is not valid UTF-8 does not stop the read (its bytes are replaced)."""
    vec = tmp_path / "vec.txt"
    vec.write_bytes(b"caf\xe9 5 6\ngood 1 2\n")
    table, found = read_vectors(vec, {"good": 0, "caf\ufffd": 1}, 2)
    assert found == 2 and table.tolist() == [[1.0, 2.0], [5.0, 6.0]]


def test_read_vectors_reads_utf8_whatever_the_locale(tmp_path):
    """The file is decoded as UTF-8 even where the platform's locale encoding is not UTF-8
    (simulated with an ASCII C locale in a subprocess): a non-ASCII word is still found."""
    vec = tmp_path / "vec.txt"
    vec.write_text("caf\u00e9 1 2\n", encoding="utf-8")
    code = ("import locale, sys; from attnkit.nn import read_vectors; "
            "_, n = read_vectors(sys.argv[1], {'caf\\u00e9': 0}, 2); "
            "print(locale.getpreferredencoding(False), n)")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": os.pathsep.join([str(Path(attnkit.__file__).resolve().parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code, str(vec)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    encoding, found = run.stdout.split()
    if "utf" in encoding.lower().replace("-", ""):
        pytest.skip(f"no non-UTF-8 locale here ({encoding})")
    assert found == "1"


def test_embedding_defaults_lookup_trainable_without_dropout():
    """Defaults: trainable, no dropout (train mode returns the table rows), zero padding row;
    ``out_dim`` is the vector width."""
    emb = TokenEmbedding(6, 4).train()
    assert emb.out_dim == 4
    tokens = torch.tensor([[1, 5, 0], [3, 3, 2]])
    out = emb(tokens)
    torch.testing.assert_close(out, emb.embed.weight[tokens])
    assert (out[0, 2] == 0).all() and (out[0, :2] != 0).all()
    assert emb.embed.weight.requires_grad


def test_padding_row_is_zero_and_gets_no_gradient():
    """Row ``pad_id`` (here 2) is zero and stays so: it receives no gradient."""
    emb = TokenEmbedding(6, 4, pad_id=2)
    assert (emb.embed.weight[2] == 0).all()
    tokens = torch.tensor([[2, 1, 2], [4, 2, 5]])
    (emb(tokens) * torch.randn(2, 3, 4)).sum().backward()
    grad = emb.embed.weight.grad
    assert (grad[2] == 0).all()
    assert all((grad[i] != 0).any() for i in (1, 4, 5))


def test_pretrained_rows_replace_only_words_with_a_vector():
    """Words whose row is NaN (no vector in the file) keep their random initialisation."""
    pretrained = torch.full((4, 3), float("nan"))
    pretrained[1] = torch.tensor([1.0, 2.0, 3.0])
    torch.manual_seed(7)
    plain = TokenEmbedding(4, 3)
    torch.manual_seed(7)
    emb = TokenEmbedding(4, 3, pretrained=pretrained)
    w = emb.embed.weight.detach()
    assert torch.isfinite(w).all()
    assert w[1].tolist() == [1.0, 2.0, 3.0]
    torch.testing.assert_close(w[[0, 2, 3]], plain.embed.weight.detach()[[0, 2, 3]])


@pytest.mark.parametrize("key,kwargs", [("vocab_size", {"vocab_size": 0, "dim": 4}),
                                         ("dim", {"vocab_size": 5, "dim": 0})])
def test_embedding_rejects_non_positive_sizes(key, kwargs):
    with pytest.raises(ConfigError, match=rf"^embedding\.{key}: must be > 0, got 0$"):
        TokenEmbedding(**kwargs)


def test_word_dropout_reads_some_words_as_unknown_while_training_only():
    torch.manual_seed(0)
    emb = TokenEmbedding(50, 4, word_dropout=0.25, unk_id=1)
    tokens = torch.randint(2, 50, (64, 40))
    tokens[:, 30:] = 0  # padding
    seen = {}
    emb.embed.register_forward_hook(lambda m, args, out: seen.update(ids=args[0]))
    emb.train()
    emb(tokens)
    dropped = seen["ids"] != tokens
    assert (seen["ids"][dropped] == 1).all()  # replaced by the unknown word, nothing else
    assert not dropped[:, 30:].any()  # padding is never replaced
    assert 0.2 < dropped[:, :30].float().mean().item() < 0.3  # the rate asked for
    emb.eval()
    emb(tokens)
    assert torch.equal(seen["ids"], tokens)
    with pytest.raises(ConfigError, match=r"embedding.word_dropout: must be in \[0, 1\), got 1.0"):
        TokenEmbedding(50, 4, word_dropout=1.0)


def test_written_vectors_read_back_and_bad_words_are_refused(tmp_path):
    from attnkit.errors import DataError
    from attnkit.nn.embedding import write_vectors

    vecs = torch.tensor([[0.5, -1.25, 3.0], [0.1234567, 2.0, -0.0625]])
    path = tmp_path / "v.txt"
    write_vectors(path, ["café", "naïve"], vecs)
    assert path.read_bytes().decode("utf-8").splitlines()[0] == "café 0.5 -1.25 3"
    got, found = read_vectors(path, {"naïve": 0, "café": 1, "absent": 2}, 3)
    assert found == 2 and got[2].isnan().all()
    torch.testing.assert_close(got[:2], vecs[[1, 0]], rtol=5e-5, atol=0)  # 5 significant digits
    with pytest.raises(ValueError, match="2 words but 1 vectors"):
        write_vectors(tmp_path / "w.txt", ["a", "b"], vecs[:1])
    with pytest.raises(DataError, match="cannot be empty or hold a space: 'a b'"):
        write_vectors(tmp_path / "w.txt", ["ok", "a b"], vecs)
    assert not (tmp_path / "w.txt").exists()


def test_file_words_are_matched_as_written_unless_the_vocabulary_is_lower_cased(tmp_path):
    from attnkit.nn.embedding import vector_words

    path = tmp_path / "v.txt"
    path.write_text("Good 1 2\ngood 3 4\nBAD 5 6\n", encoding="utf-8")
    assert vector_words(path) == ["Good", "good", "BAD"]
    got, found = read_vectors(path, {"Good": 0, "bad": 1}, 2)  # case-sensitive: "BAD" is not "bad"
    assert found == 1 and got[0].tolist() == [1.0, 2.0] and got[1].isnan().all()
    got, found = read_vectors(path, {"good": 0, "bad": 1}, 2, lowercase=True)  # the first spelling wins
    assert found == 2 and got.tolist() == [[1.0, 2.0], [5.0, 6.0]]
