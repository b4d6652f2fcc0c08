"""A word the tokenizer maps to no piece (a lone U+FE0F variation selector, common in social-media
text) is read as the unknown token: every word keeps one first piece and its tag, and one warning
per encode call counts such words and names the first (escaped, so it is visible)."""
import logging

import pytest

from attnkit.data import LabelVocab, read_conll
from attnkit.errors import ConfigError, DataError
from attnkit.finetune import WordPieceTaggingData

from .conftest import transformers  # noqa: F401  (skips the module without the pretrained extra)

VS16 = "\ufe0f"  # VARIATION SELECTOR-16: MiniLM's normalizer strips it, leaving no piece


@pytest.fixture(scope="module")
def tok():
    """The MiniLM tokenizer shipped with the pretrained extra (local files, no download)."""
    from attnkit.finetune.backbones import load_tokenizer

    try:
        return load_tokenizer("minilm")
    except ConfigError as e:
        pytest.skip(f"needs the MiniLM package of the pretrained extra: {e}")


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "attnkit" and r.levelno == logging.WARNING]


def test_the_tokenizer_really_gives_no_piece(tok):
    # the premise of the other tests: without the fix, this word has no first piece
    enc = tok([["Great", VS16, "day"]], is_split_into_words=True)
    assert 1 not in enc.word_ids(0)


def test_word_without_piece_reads_as_unk_and_keeps_its_tag(tok, caplog):
    caplog.set_level(logging.WARNING, logger="attnkit")
    data = WordPieceTaggingData.encode(tok, [["Great", VS16, "day"], ["good"]], [[1, 2, 3], [4]],
                                       where=["train.txt:7", "train.txt:11"])
    ids = data.pieces[0]
    assert len(data.first[0]) == 3
    assert [ids[p] for p in data.first[0]] == [tok.convert_tokens_to_ids("great"), tok.unk_token_id,
                                               tok.convert_tokens_to_ids("day")]
    assert ids == [tok.cls_token_id, tok.convert_tokens_to_ids("great"), tok.unk_token_id,
                   tok.convert_tokens_to_ids("day"), tok.sep_token_id]
    b = data.collate([0, 1])
    assert b["word_lengths"].tolist() == [3, 1]
    assert b["tags"][0].tolist() == [1, 2, 3]
    assert b["tokens"].gather(1, b["first"])[0].tolist()[1] == tok.unk_token_id
    msgs = warnings_of(caplog)
    assert msgs == [("1 word(s) in 1 sentence(s) have no word piece with this tokenizer "
                     "(e.g. '\\ufe0f' at train.txt:7, word 2); read as [UNK]")]


def test_one_warning_counts_all_and_names_the_first(tok, caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger="attnkit")
    path = tmp_path / "train.txt"
    path.write_text(f"Nice O\nday O\n\nGreat O\n{VS16} O\nParis B-LOC\n{VS16} O\n\nfine O\n\u200b O\n",
                    encoding="utf-8")
    raw = read_conll(path)
    vocab = LabelVocab(["O", "B-LOC"])
    data = WordPieceTaggingData.from_conll(tok, raw, vocab)
    assert [len(f) for f in data.first] == [2, 4, 2]
    assert data.tags == [[0, 0], [0, 0, 1, 0], [0, 0]]
    for ids, first, unk_words in zip(data.pieces, data.first, [[], [1, 3], [1]]):
        assert [w for w, p in enumerate(first) if ids[p] == tok.unk_token_id] == unk_words
    msgs = warnings_of(caplog)
    assert len(msgs) == 1
    assert msgs[0] == (f"3 word(s) in 2 sentence(s) have no word piece with this tokenizer "
                       f"(e.g. '\\ufe0f' at {path}:5); read as [UNK]")


def test_prediction_without_where_names_the_sentence(tok, caplog):
    caplog.set_level(logging.WARNING, logger="attnkit")
    data = WordPieceTaggingData.encode(tok, [["fine"], ["a", "\u200b"]])
    assert data.pieces[1][data.first[1][1]] == tok.unk_token_id
    assert warnings_of(caplog) == [("1 word(s) in 1 sentence(s) have no word piece with this tokenizer "
                                    "(e.g. '\\u200b' at sentence 1, word 2); read as [UNK]")]


def test_sentences_without_such_words_are_unchanged(tok, caplog):
    caplog.set_level(logging.WARNING, logger="attnkit")
    sentences = [["John", "visited", "unbelievable", "New", "York", "!"], ["paris"]]
    data = WordPieceTaggingData.encode(tok, sentences, [[1, 0, 0, 2, 3, 0], [2]])
    enc = tok(sentences, is_split_into_words=True, truncation=False)
    assert data.pieces == enc["input_ids"]
    for i in range(2):
        word_ids = enc.word_ids(i)
        assert data.first[i] == [word_ids.index(w) for w in range(len(sentences[i]))]
    assert warnings_of(caplog) == []


def test_max_len_counts_the_unknown_token(tok):
    # 4 pieces without the unknown token, 5 with it: the final pieces are what must fit
    with pytest.raises(DataError, match=r"train.txt:3: 3 words make 5 word pieces, more than "
                                        r"model.finetune.max_len = 4"):
        WordPieceTaggingData.encode(tok, [["Great", VS16, "day"]], max_len=4, where=["train.txt:3"])


def test_tokenizer_without_unknown_token_still_fails_clearly(tok):
    class NoUnk:
        unk_token = None

        def __call__(self, *a, **kw):
            return tok(*a, **kw)

    with pytest.raises(DataError, match=r"train.txt:3: 1 word\(s\) produce no word piece with this tokenizer"):
        WordPieceTaggingData.encode(NoUnk(), [["Great", VS16, "day"]], where=["train.txt:3"])
