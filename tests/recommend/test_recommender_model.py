"""The recommender's attention checked against a float64 computation written from the
formula; the candidate never sees its own rating; ranking metrics and negative sampling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnkit.data.ratings import KnownRatings, Ratings
from attnkit.models import ModelConfig
from attnkit.models.recommender import AttentiveRecommender
from attnkit.tasks.recommendation import history_batch, ranking_metrics, sample_unrated


def _model(seed: int = 0, dim: int = 8, score: str = "scaled_dot") -> AttentiveRecommender:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(embedding={"dim": dim, "dropout": 0.0, "id_dropout": 0.0}, pooler={"score": score})
    words = rng.integers(0, 9, size=(13, 12))
    words[0] = 0
    m = AttentiveRecommender(cfg, n_items=12, n_users=3, n_words=9, n_genres=4, item_words=words,
                             item_genres=rng.integers(0, 2, size=(13, 4)), item_years=rng.integers(1930, 2000, size=13))
    return m.eval()


def _known() -> KnownRatings:
    return KnownRatings(["a", "b", "c"], [[3, 5, 7, 2, 9], [4, 1], [6]], [[5, 3, 1, 4, 2], [2, 5], [4]],
                        [[1, 2, 3, 4, 5], [1, 2], [1]])


def _batch(cand) -> dict:
    b = history_batch(_known(), [1, 2, 3], 256, 1.0)
    b.update(users=torch.tensor([1, 2, 3]), candidates=torch.tensor(cand))
    return b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_attention_weights_match_a_float64_reference(seed):
    m = _model(seed)
    cand = [[7, 1, 11], [4, 2, 1], [6, 6, 8]]  # item 7 is in user 1's history, 4 and 1 in user 2's, 6 is all of user 3's
    b = _batch(cand)
    out = m(b, need_weights=True)
    table = m.items().double().detach()
    rec = m.recency.weight.double().detach()
    for u in range(3):
        n = int(b["history_lengths"][u])
        hist = b["history"][u, :n]
        keys = table[hist] + rec[b["recency"][u, :n]]
        for c in range(3):
            q = table[cand[u][c]]
            s = keys @ q / math.sqrt(8)
            visible = hist != cand[u][c]
            want = torch.zeros(b["history"].shape[1], dtype=torch.float64)
            if visible.any():
                e = torch.where(visible, torch.exp(s - s[visible].max()), torch.zeros_like(s))
                want[:n] = e / e.sum()
            got = out["attention"][u, c].double()
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert out["rating"].shape == (3, 3) and out["rank"].shape == (3, 3)
    assert torch.isfinite(out["rating"]).all()  # user 3's only rating is the candidate: nothing visible


def test_the_candidates_own_rating_is_never_read():
    m = _model()
    b = _batch([[7, 11], [4, 9], [6, 8]])
    before = m(b)["rating"]
    b["history_ratings"] = b["history_ratings"].clone()
    b["history_ratings"][0, 2] = 1 if int(b["history_ratings"][0, 2]) != 1 else 9  # user 1's rating of item 7
    after = m(b)["rating"]
    assert after[0, 0] == before[0, 0]  # candidate 7 cannot see its own rating
    assert after[0, 1] != before[0, 1]  # candidate 11 can
    torch.testing.assert_close(after[1:], before[1:])


def test_loss_has_gradients_everywhere_it_should():
    m = _model().train()
    b = _batch([[7, 1], [4, 2], [6, 8]])
    b["ratings"] = torch.tensor([4.0, 2.0, 5.0])
    loss = m.loss(m(b), b)
    loss.backward()
    for name in ("item_id.weight", "word.weight", "genre.weight", "year.weight", "user.weight",
                 "rank_bias.weight", "value.weight"):
        grads = [p.grad for n, p in m.named_parameters() if n.startswith(name)]
        assert grads and all(g is None or torch.isfinite(g).all() for g in grads)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_any_attention_score_works():
    for score in ("dot", "additive", "cosine"):
        out = _model(score=score)(_batch([[7, 1], [4, 2], [6, 8]]), need_weights=True)
        w = out["attention"]
        assert torch.isfinite(out["rating"]).all()
        torch.testing.assert_close(w[0].sum(-1), torch.ones(2))


def test_history_batch_keeps_the_latest_and_buckets_recency():
    b = history_batch(_known(), [1, 0], 3, 1.0)
    assert b["history"][0].tolist() == [7, 2, 9] and b["history_lengths"].tolist() == [3, 0]
    assert b["history_ratings"][0].tolist() == [1, 7, 3]  # half-star levels from 1: 1 -> 1, 4 -> 7, 2 -> 3
    assert b["recency"][0].tolist() == [2, 2, 1]  # 2 back, 1 back, latest: floor(log2(k + 1)) + 1


def test_ranking_metrics_by_hand():
    got = ranking_metrics([0, 9, 10, 3])
    assert got["hr@10"] == pytest.approx(0.75)
    assert got["ndcg@10"] == pytest.approx((1 + 1 / math.log2(11) + 1 / math.log2(5)) / 4)


@pytest.mark.parametrize("n_items", [12, 5000])  # few free items (drawn from the list) and many (redrawn)
def test_sampled_negatives_are_unrated_and_distinct(n_items):
    rated = _known().rated_sets()
    rng = np.random.default_rng(0)
    for _ in range(20):
        neg = sample_unrated(rng, n_items, rated[1] | {4}, 5)
        assert len(set(neg.tolist())) == 5 and not set(neg.tolist()) & {0, 2, 3, 4, 5, 7, 9}
        assert neg.min() >= 1 and neg.max() <= n_items
    with pytest.raises(Exception, match="cannot sample 8 unrated"):
        sample_unrated(rng, 12, rated[1] | {4}, 8)
    assert Ratings  # the raw type the task reads (imported for the public surface)
