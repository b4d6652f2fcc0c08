"""The distillation transfer set: each rule alone does what it says, drafts are new and
unique, and the same seed gives the same texts."""
from attnkit.data.augment import transfer_texts

TEXTS = ["a gripping and funny film", "dull", "the plot was thin but the cast was good", "a b c d e f g h"]


def test_masking_alone_masks_every_word_at_probability_one():
    out = transfer_texts(TEXTS[:1], 3, mask_token="<M>", p_mask=1.0, p_swap=0.0, p_ngram=0.0)
    assert out == ["<M> <M> <M> <M> <M>"]  # one draft: the other two are the same text


def test_swapping_alone_draws_words_of_the_training_texts():
    words = {w for t in TEXTS for w in t.split()}
    out = transfer_texts(TEXTS, 5, seed=3, p_mask=0.0, p_swap=1.0, p_ngram=0.0)
    assert out
    for text in out:
        assert set(text.split()) <= words
    # every word swapped: a draft keeps its source's length (all differ here), not its words
    by_length = {len(t.split()): t.split() for t in TEXTS}
    same = total = 0
    for text in out:
        src = by_length[len(text.split())]
        same += sum(a == b for a, b in zip(text.split(), src))
        total += len(src)
    assert same / total < 0.3


def test_ngrams_alone_are_contiguous_pieces_of_at_most_max_n_words():
    src = TEXTS[3].split()
    out = transfer_texts(TEXTS[3:], 20, seed=1, p_mask=0.0, p_swap=0.0, p_ngram=1.0, max_n=3)
    assert len(out) > 3
    for text in out:
        piece = text.split()
        assert 1 <= len(piece) <= 3
        starts = [i for i in range(len(src)) if src[i:i + len(piece)] == piece]
        assert starts, text


def test_drafts_are_new_unique_and_reproducible():
    a = transfer_texts(TEXTS, 8, seed=7)
    assert a == transfer_texts(TEXTS, 8, seed=7)
    assert a != transfer_texts(TEXTS, 8, seed=8)
    assert len(a) == len(set(a)) and not set(a) & set(TEXTS)
    assert len(a) <= 8 * len(TEXTS)
    # with the default rates most words survive: drafts stay close to their sources
    kept = sum(w in set(" ".join(TEXTS).split()) for t in a for w in t.split()) / sum(len(t.split()) for t in a)
    assert kept > 0.75
    assert transfer_texts(TEXTS, 0) == [] and transfer_texts(["", "  "], 3) == []
