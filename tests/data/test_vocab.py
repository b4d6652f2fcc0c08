"""Tokenizers, word/char vocabularies and label vocabularies."""
import json

import pytest

from attnkit.data import (
    PAD,
    TOKENIZERS,
    UNK,
    CharVocab,
    LabelVocab,
    Vocab,
    get_tokenizer,
    tokenize_words,
)
from attnkit.errors import ConfigError, DataError, UnknownNameError

DOCS = [["the", "cat", "sat"], ["the", "dog", "sat"], ["The", "cat"], ["a"]]


def test_tokenizers():
    assert tokenize_words("Don't pay $1,000.50 for the 2nd film... ok!") == [
        "Don't", "pay", "$", "1,000.50", "for", "the", "2nd", "film", ".", ".", ".", "ok", "!"]
    assert tokenize_words("Hello, World", lowercase=True) == ["hello", ",", "world"]
    assert get_tokenizer("whitespace")("it 's  a \"film\" ") == ["it", "'s", "a", '"film"']
    assert TOKENIZERS.names() == ["whitespace", "words"]
    with pytest.raises(UnknownNameError, match="whitespace, words"):
        get_tokenizer("bpe")


def test_order_specials_and_encode():
    v = Vocab.build(DOCS)
    # frequency descending, then alphabetical
    assert v.itos == [PAD, UNK, "cat", "sat", "the", "The", "a", "dog"]
    assert (v.pad_id, v.unk_id) == (0, 1)
    assert v.encode(["the", "zebra", "cat"]) == [4, 1, 2]
    assert v.decode([4, 1, 2]) == ["the", UNK, "cat"]
    assert len(v) == 8 and "dog" in v and "zebra" not in v


def test_lowercase_min_freq_max_size():
    v = Vocab.build(DOCS, lowercase=True)
    assert v.itos[2] == "the" and "The" in v
    assert v.encode(["THE"]) == [2]
    v = Vocab.build(DOCS, min_freq=2)
    assert v.itos == [PAD, UNK, "cat", "sat", "the"]
    v = Vocab.build(DOCS, max_size=4)  # specials count towards the size
    assert v.itos == [PAD, UNK, "cat", "sat"]
    with pytest.raises(ConfigError, match="min_freq"):
        Vocab.build(DOCS, min_freq=0)
    with pytest.raises(ConfigError, match="max_size must be >= 4"):
        Vocab.build(DOCS, max_size=3, specials=["<bos>", "<eos>"])


def test_extra_specials_and_tokens_equal_to_specials():
    v = Vocab.build([["<unk>", "x", "<bos>"]], specials=["<bos>", "<eos>"])
    assert v.itos == [PAD, UNK, "<bos>", "<eos>", "x"]
    assert v.num_specials == 4


def test_decode_out_of_range():
    with pytest.raises(DataError, match="id 99 is outside"):
        Vocab.build(DOCS).decode([99])


def test_save_load(tmp_path):
    v = Vocab.build(DOCS, lowercase=True, specials=["<bos>"])
    path = tmp_path / "sub" / "vocab.json"
    v.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["vocab.json"]  # no temp file left
    w = Vocab.load(path)
    assert w == v and w.lowercase and w.num_specials == 3
    assert w.encode(["CAT", "zzz"]) == v.encode(["cat", "zzz"])


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        Vocab.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        Vocab.load(bad)
    CharVocab.build(DOCS).save(tmp_path / "chars.json")
    with pytest.raises(DataError, match="expected a word vocabulary, found 'char'"):
        Vocab.load(tmp_path / "chars.json")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"kind": "word", "lowercase": False, "num_specials": 2,
                                  "itos": ["a", "b"]}))
    with pytest.raises(DataError, match="not a valid word vocabulary"):
        Vocab.load(broken)


def test_char_vocab(tmp_path):
    cv = CharVocab.build([["ab", "b"], ["ca"]])
    assert cv.itos == [PAD, UNK, "a", "b", "c"]
    assert cv.encode("abz") == [2, 3, 1]
    assert cv.decode([4, 2]) == "ca"
    assert cv.encode_words(["abc", "b"], max_len=2) == [[2, 3], [3]]
    cv.save(tmp_path / "c.json")
    assert CharVocab.load(tmp_path / "c.json") == cv


def test_label_vocab(tmp_path):
    lv = LabelVocab.build(["pos", "neg", "pos", "neutral"])
    assert lv.itos == ["neg", "neutral", "pos"]
    assert lv.encode("pos") == 2 and lv.decode(0) == "neg" and len(lv) == 3
    assert LabelVocab.build(["10", "2", "0", "1"]).itos == ["0", "1", "2", "10"]
    lv.save(tmp_path / "labels.json")
    assert LabelVocab.load(tmp_path / "labels.json") == lv


def test_label_vocab_unseen_label():
    lv = LabelVocab.build(["0", "1"])
    with pytest.raises(DataError) as info:
        lv.encode("2", where="dev.tsv:17")
    assert str(info.value) == ("dev.tsv:17: label '2' not seen in training data; "
                               "known: '0', '1'")
    with pytest.raises(DataError, match="outside 0..1"):
        lv.decode(5)
