"""A recommender that attends over what a user rated, with the candidate item as the query.

An item is its id embedding plus what it *is*: the mean of its title words' embeddings, its
genres and its year (so an item with few ratings still has a meaning; the id part is
dropped at random in training so the model learns to lean on the content). A user is the
sequence of items they rated, each with its rating and how recent it is. For each
candidate item the model attends over that history with any :mod:`attnkit.attention` score
(``model.pooler.score``) and predicts

* the rating: ``mean + b_user + b_item + <p_user + W ctx, item> + w . ctx``, and
* a ranking score (did the user pick this item?), trained with BPR against sampled items.

The candidate's own rating is never visible to it: a mask built from item ids
(``~segment(candidates, history)``) hides history entries of the same item, so a model
trained on known ratings cannot copy them."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import Attention
from ..attention.dropout import Dropout
from ..attention.masks import segment
from ..config import checked, from_dict, positive, unit_interval
from ..errors import ConfigError
from .classifiers import TaskModel

RATING_LEVELS = 11  # ratings are embedded by half-star steps from the scale's low end
RECENCY_BUCKETS = 12  # log2 of the position counted from the most recent rating


@dataclass
class ItemConfig:
    """``model.embedding`` of a recommender."""

    dim: int = checked(64, positive, doc="size of item, user and history vectors")
    dropout: float = checked(0.2, unit_interval, doc="dropout on item vectors")
    id_dropout: float = checked(0.2, unit_interval, doc="share of item-id embeddings zeroed in training (the "
                                                        "content features must carry the item)")
    content: bool = checked(True, doc="use title words, genres and year (false: ids only)")


@dataclass
class HistoryConfig:
    """``model.encoder`` of a recommender: the history it attends over."""

    max_history: int = checked(256, positive, doc="most recent ratings per user the model reads")
    recency: bool = checked(True, doc="add an embedding of how recent each rating is")


@dataclass
class RankingConfig:
    """``model.head`` of a recommender."""

    ranking_weight: float = checked(1.0, doc="weight of the BPR ranking loss next to the rating MSE (0: none)")
    negatives: int = checked(1, positive, doc="sampled unrated items per rating in training")


def recommender_options(cfg) -> tuple[ItemConfig, HistoryConfig, dict, RankingConfig]:
    """The recommender's four sections, checked, with key paths in errors."""
    items = from_dict(ItemConfig, dict(cfg.embedding or {}), "model.embedding")
    history = from_dict(HistoryConfig, {k: v for k, v in (cfg.encoder or {}).items() if k != "type"}, "model.encoder")
    attn = {k: v for k, v in (cfg.pooler or {}).items() if k != "type"}
    head = from_dict(RankingConfig, dict(cfg.head or {}), "model.head")
    return items, history, attn, head


class AttentiveRecommender(TaskModel):
    """``candidates [B, C]`` + ``history [B, H]`` (item indices, ratings, recency) + ``users
    [B]`` -> ``rating [B, C]`` and ``rank [B, C]`` (and the attention ``[B, C, H]``)."""

    target = "ratings"

    def __init__(self, cfg, n_items: int, n_users: int, n_words: int, n_genres: int, mean_rating: float = 3.5,
                 min_rating: float = 1.0, max_rating: float = 5.0, title_len: int = 12, item_words=None,
                 item_genres=None, item_years=None, **_):
        super().__init__()
        icfg, hcfg, attn, head = recommender_options(cfg)
        d = icfg.dim
        self.icfg, self.hcfg, self.head_cfg = icfg, hcfg, head
        self.mean, self.low, self.high = float(mean_rating), float(min_rating), float(max_rating)
        self.item_id = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.word = nn.EmbeddingBag(n_words, d, mode="sum", padding_idx=0)
        self.genre = nn.Linear(n_genres, d, bias=False)
        self.year = nn.Embedding(32, d)  # 5-year buckets from 1900 (0: unknown)
        self.item_norm = nn.LayerNorm(d)
        self.item_drop = Dropout(icfg.dropout)
        self.rating_emb = nn.Embedding(RATING_LEVELS + 1, d, padding_idx=0)
        self.recency = nn.Embedding(RECENCY_BUCKETS + 1, d) if hcfg.recency else None
        self.value = nn.Linear(2 * d, d)
        score = attn.pop("score", "scaled_dot")
        try:
            self.attention = Attention(d, d, score=score, **attn)
        except TypeError as e:
            raise ConfigError(f"model.pooler: {e}") from None
        self.user = nn.Embedding(n_users + 1, d, padding_idx=0)
        self.user_bias = nn.Embedding(n_users + 1, 1, padding_idx=0)
        self.item_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.content_bias = nn.Linear(d, 1)
        self.ctx_proj = nn.Linear(d, d, bias=False)
        self.ctx_rating = nn.Linear(d, 1, bias=False)
        self.rank_user = nn.Embedding(n_users + 1, d, padding_idx=0)
        self.rank_ctx = nn.Linear(d, d, bias=False)
        self.rank_bias = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.rank_content = nn.Linear(d, 1)
        for emb in (self.item_id, self.user, self.rank_user):
            nn.init.normal_(emb.weight, std=0.01)
        for b in (self.user_bias, self.item_bias, self.rank_bias):
            nn.init.zeros_(b.weight)
        n = n_items + 1
        self.register_buffer("item_words", _table(item_words, (n, title_len), torch.long))
        self.register_buffer("item_genres", _table(item_genres, (n, n_genres), torch.float32))
        self.register_buffer("item_years", _table(item_years, (n,), torch.long))

    def embedding_layer(self):
        """Not a token model: attributions over the history are not defined here (attention is)."""
        return None

    def items(self) -> torch.Tensor:
        """Every item's vector ``[N+1, D]`` (row 0: padding)."""
        vec = self.item_id.weight
        if self.training and self.icfg.id_dropout:
            keep = torch.rand(vec.shape[0], 1, device=vec.device) >= self.icfg.id_dropout
            vec = vec * keep
        if self.icfg.content:
            words = self.item_words
            count = (words > 0).sum(1, keepdim=True).clamp(min=1)
            years = self.item_years
            bucket = torch.where(years > 0, ((years - 1900).clamp(min=0, max=154) // 5) + 1, 0).clamp(max=31)
            vec = vec + self.word(words) / count + self.genre(self.item_genres) + self.year(bucket)
        vec = self.item_drop(self.item_norm(vec))
        return vec * (torch.arange(vec.shape[0], device=vec.device) > 0)[:, None]

    def forward(self, batch: dict, need_weights: bool = False) -> dict:
        """``rating``, ``rank`` ``[B, C]`` and ``attention`` ``[B, C, H]`` (with ``need_weights``)."""
        table = self.items()
        cand, hist, users = batch["candidates"], batch["history"], batch["users"]
        q = table[cand]  # [B, C, D]
        h = table[hist]
        keys = h + self.recency(batch["recency"]) if self.recency is not None else h
        values = self.value(torch.cat([h, self.rating_emb(batch["history_ratings"])], -1))
        hide_same = ~segment(cand, hist)  # a candidate never sees its own rating
        ctx, w = self.attention(q, keys, values, lengths=batch["history_lengths"], mask=hide_same,
                                need_weights=need_weights)
        content = q
        p = self.user(users)[:, None]  # [B, 1, D]
        rating = (self.mean + self.user_bias(users) + self.item_bias(cand)[..., 0] + self.content_bias(content)[..., 0]
                  + ((p + self.ctx_proj(ctx)) * q).sum(-1) + self.ctx_rating(ctx)[..., 0])
        rank = (self.rank_bias(cand)[..., 0] + self.rank_content(content)[..., 0]
                + ((self.rank_user(users)[:, None] + self.rank_ctx(ctx)) * q).sum(-1))
        return {"rating": rating, "rank": rank, "attention": w}

    def loss(self, out: dict, batch: dict) -> torch.Tensor:
        """MSE of the first candidate's rating, plus BPR of it against the other candidates."""
        loss = F.mse_loss(out["rating"][:, 0], batch["ratings"])
        if self.head_cfg.ranking_weight and out["rank"].shape[1] > 1:
            rank = out["rank"]
            loss = loss + self.head_cfg.ranking_weight * F.softplus(rank[:, 1:] - rank[:, :1]).mean()
        return loss

    def predict(self, out: dict, batch: dict | None = None) -> torch.Tensor:
        """The first candidate's rating, clipped to the scale."""
        return out["rating"][:, 0].clamp(self.low, self.high)


def _table(value, shape: tuple, dtype) -> torch.Tensor:
    if value is None:
        return torch.zeros(shape, dtype=dtype)
    t = torch.as_tensor(value, dtype=dtype)
    if tuple(t.shape) != tuple(shape):
        raise ConfigError(f"item features: expected shape {list(shape)}, got {list(t.shape)}")
    return t
