"""Word-piece alignment for token classification: the first piece of each word is tagged,
predictions come back per word."""
import pytest
import torch

from attnkit.data.batching import TAG_PAD
from attnkit.errors import DataError
from attnkit.finetune import WordPieceTaggingData, encode_texts

from .conftest import transformers


@pytest.fixture(scope="module")
def tok(tiny_bert):
    return transformers.AutoTokenizer.from_pretrained(str(tiny_bert))


def test_first_piece_of_each_word_carries_its_tag(tok):
    sentences = [["John", "visited", "unbelievable", "New", "York"], ["paris"]]
    tags = [[1, 0, 0, 2, 3], [2]]
    data = WordPieceTaggingData.encode(tok, sentences, tags)
    pieces = tok.convert_ids_to_tokens(data.pieces[0])
    assert pieces == ["[CLS]", "john", "visited", "un", "##believ", "##able", "new", "york", "[SEP]"]
    assert data.first[0] == [1, 2, 3, 6, 7]
    b = data.collate([0, 1])
    assert b["tokens"].shape == (2, 9) and b["lengths"].tolist() == [9, 3]
    assert b["word_lengths"].tolist() == [5, 1]
    assert b["tags"].tolist() == [[1, 0, 0, 2, 3], [2, TAG_PAD, TAG_PAD, TAG_PAD, TAG_PAD]]
    # reading the pieces at `first` recovers each word's first piece
    firsts = b["tokens"].gather(1, b["first"])
    assert tok.convert_ids_to_tokens(firsts[0].tolist()) == ["john", "visited", "un", "new", "york"]


def test_too_long_sentence_names_where_it_is(tok):
    with pytest.raises(DataError, match=r"train.txt:7: 3 words make 7 word pieces, more than model.finetune.max_len = 5"):
        WordPieceTaggingData.encode(tok, [["unbelievable", "film", "film"]], None, max_len=5, where=["train.txt:7"])


def test_texts_are_cut_to_max_len_with_special_tokens(tok):
    ids = encode_texts(tok, ["good film " * 20, "bad"], max_len=8)
    assert len(ids[0]) == 8 and ids[0][0] == tok.cls_token_id and ids[0][-1] == tok.sep_token_id
    assert tok.convert_ids_to_tokens(ids[1]) == ["[CLS]", "bad", "[SEP]"]


def test_tagger_predicts_per_word(tiny_bert, tok):
    from attnkit.config import from_dict
    from attnkit.models import ModelConfig
    from attnkit.tasks import build_model

    torch.manual_seed(0)
    model = build_model("token_classification", from_dict(ModelConfig, {"pretrained": str(tiny_bert)}),
                        num_classes=4).eval()
    data = WordPieceTaggingData.encode(tok, [["unbelievable", "film"], ["paris", "is", "fun"]], [[0, 1], [2, 0, 0]])
    b = data.collate([0, 1])
    out = model(b)
    assert out["logits"].shape == (2, 3, 4)
    pred = model.predict(out, b)
    assert pred.shape == (2, 3) and pred[0, 2] == TAG_PAD
    # the word logits are the head applied to the first piece's hidden state
    h = model.encoder(b["tokens"], b["lengths"])
    torch.testing.assert_close(out["logits"][1, 0], model.head(h[1, 1]))
    torch.testing.assert_close(out["logits"][0, 0], model.head(h[0, 1]))
    torch.testing.assert_close(out["logits"][0, 1], model.head(h[0, 4]))  # un ##believ ##able | film
