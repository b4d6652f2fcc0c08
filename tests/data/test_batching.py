"""pad_batch, length-bucketed batches and the data sets' collate."""
import numpy as np
import pytest
import torch

from attnkit.data import (
    CharVocab,
    ConllData,
    ImageData,
    LabelVocab,
    TableData,
    TextClassificationData,
    TokenTaggingData,
    Vocab,
    length_bucketed_batches,
    pad_batch,
)
from attnkit.errors import ConfigError, DataError, ShapeError


def test_pad_batch():
    ids, lengths = pad_batch([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert lengths.tolist() == [3, 1, 0]
    assert ids.dtype == lengths.dtype == torch.long
    ids, _ = pad_batch([torch.tensor([1, 2]), torch.tensor([3])], pad_id=-100)
    assert ids.tolist() == [[1, 2], [3, -100]]
    assert pad_batch([[], []])[0].shape == (2, 1)
    with pytest.raises(ShapeError):
        pad_batch([])


def random_lengths(n=1000, seed=0):
    return torch.randint(1, 100, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_bucketed_batches_cover_every_index_once():
    lengths = random_lengths(1003)
    batches = length_bucketed_batches(lengths, 16, bucket_factor=10)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(1003))
    assert all(1 <= len(b) <= 16 for b in batches)
    assert sum(len(b) < 16 for b in batches) <= 1 + 1003 // 160  # one short batch per pool


def test_bucketed_batches_deterministic_per_seed_and_epoch():
    lengths = random_lengths()
    a = length_bucketed_batches(lengths, 8, seed=3, epoch=1)
    assert a == length_bucketed_batches(lengths, 8, seed=3, epoch=1)
    assert a != length_bucketed_batches(lengths, 8, seed=3, epoch=2)
    assert a != length_bucketed_batches(lengths, 8, seed=4, epoch=1)


def test_bucketed_batches_group_similar_lengths():
    lengths = random_lengths()
    batches = length_bucketed_batches(lengths, 10, bucket_factor=20)
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 0.2 * (max(lengths) - min(lengths))
    # the batch order is shuffled, not sorted by length
    maxima = [max(lengths[i] for i in b) for b in batches]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def test_batches_without_shuffle_and_tensor_lengths():
    assert length_bucketed_batches(torch.tensor([3, 1, 2, 5, 4]), 2, shuffle=False) == [
        [0, 1], [2, 3], [4]]
    assert length_bucketed_batches([], 4) == []
    with pytest.raises(ConfigError, match="batch_size"):
        length_bucketed_batches([1, 2], 0)


def test_text_classification_data():
    table = TableData("t.tsv", ["a b c", "b", "c a"], ["pos", "neg", "pos"], [2, 3, 4])
    vocab = Vocab.build(t.split() for t in table.texts)
    labels = LabelVocab.build(table.labels)
    ds = TextClassificationData.from_table(table, vocab, labels, max_len=2)
    assert len(ds) == 3 and ds.lengths == [2, 1, 2]
    assert ds[1] == {"tokens": vocab.encode(["b"]), "label": 0}
    batch = ds.collate([1, 0])
    assert batch["tokens"].shape == (2, 2) and batch["tokens"][0, 1] == 0
    assert batch["lengths"].tolist() == [1, 2] and batch["labels"].tolist() == [0, 1]
    unlabelled = TextClassificationData.from_table(table, vocab)
    assert set(unlabelled.collate([0])) == {"tokens", "lengths"}


def test_text_classification_unseen_label_names_file_and_line():
    train = TableData("train.tsv", ["a"], ["pos"], [2])
    dev = TableData("dev.tsv", ["a", "b"], ["pos", "meh"], [2, 3])
    vocab, labels = Vocab.build([["a"]]), LabelVocab.build(train.labels)
    with pytest.raises(DataError, match="dev.tsv:3: label 'meh' not seen"):
        TextClassificationData.from_table(dev, vocab, labels)
    with pytest.raises(DataError, match="2 examples but 1 labels"):
        TextClassificationData([[1], [2]], [0])


def test_token_tagging_data_with_chars():
    conll = ConllData("a.txt", [["EU", "rejects"], ["Peter", "B.", "Smith"]],
                      [["B-ORG", "O"], ["B-PER", "I-PER", "I-PER"]], [3, 7])
    vocab = Vocab.build(conll.sentences)
    chars = CharVocab.build(conll.sentences)
    tags = LabelVocab.build(t for s in conll.tags for t in s)
    ds = TokenTaggingData.from_conll(conll, vocab, tags, chars, max_word_len=5)
    batch = ds.collate([0, 1])
    assert batch["tokens"].shape == (2, 3) and batch["lengths"].tolist() == [2, 3]
    assert batch["tags"][0].tolist() == [tags.encode("B-ORG"), tags.encode("O"), -100]
    assert batch["chars"].shape == (2, 3, 5)  # "rejects" cut to 5 characters
    assert batch["chars"][0, 2].tolist() == [0] * 5  # padded word
    assert chars.decode(batch["chars"][1, 1, :2].tolist()) == "B."
    assert batch["chars"][1, 1, 2:].tolist() == [0, 0, 0]
    assert set(TokenTaggingData.from_conll(conll, vocab).collate([1])) == {"tokens", "lengths"}


def test_token_tagging_errors():
    conll = ConllData("a.txt", [["x", "y"]], [["O", "B-BAD"]], [5])
    tags = LabelVocab.build(["O"])
    with pytest.raises(DataError, match="a.txt:6: label 'B-BAD' not seen"):
        TokenTaggingData.from_conll(conll, Vocab.build(conll.sentences), tags)
    with pytest.raises(DataError, match="sentence 0: 2 tokens but 1 tags"):
        TokenTaggingData([[2, 3]], [[0]])


def test_image_data():
    images = np.array([[[0, 255]], [[51, 102]], [[255, 255]]], dtype=np.uint8)  # [3, 1, 2]
    mean, std = ImageData.stats(images)
    x = images / 255.0
    assert mean == pytest.approx(x.mean()) and std == pytest.approx(x.std())
    ds = ImageData(images, np.array([1, 0, 1], np.uint8), mean=0.5, std=0.25)
    batch = ds.collate([1, 0])
    assert batch["images"].shape == (2, 1, 1, 2) and batch["images"].dtype == torch.float32
    assert batch["images"][1, 0, 0].tolist() == pytest.approx([-2.0, 2.0])
    assert batch["labels"].tolist() == [0, 1] and batch["labels"].dtype == torch.long
    assert ds[2]["image"].shape == (1, 1, 2) and ds[2]["label"] == 1 and len(ds) == 3
    rgb = ImageData(torch.zeros(4, 3, 2, 2, dtype=torch.uint8))
    assert rgb.collate([0, 1])["images"].shape == (2, 3, 2, 2)
    with pytest.raises(ShapeError):
        ImageData(np.zeros((2, 3), np.uint8))
    with pytest.raises(ConfigError):
        ImageData(images, std=0)


def test_dataloader_over_indices():
    ds = TextClassificationData([[1, 2], [3], [4, 5, 6]], [0, 1, 0])
    batches = length_bucketed_batches(ds.lengths, 2, seed=1)
    loader = torch.utils.data.DataLoader(range(len(ds)), batch_sampler=batches,
                                         collate_fn=ds.collate)
    seen = [batch["labels"].shape[0] for batch in loader]
    assert sorted(seen) == [1, 2]
