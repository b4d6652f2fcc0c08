"""Recommendation: who rated what -> a predicted rating for a user and an item, and a ranking.

Data: ratings files (``data.train``, optional ``dev``/``test``: MovieLens ``u1.base`` /
``u1.test``, ``ratings.dat`` or a CSV with user, item, rating and timestamp columns) and
an item catalog (``data.items``, default ``u.item`` beside train). Without a dev/test file,
``data.holdout`` holds out random ratings or each user's last ones (leave-last-out).
Featurizer: the catalog (title words, genres, year) and every user's known ratings in time
order (train and dev: dev ratings are history the model reads, never targets it trains on),
both saved with the run. Model: :class:`~attnkit.models.recommender.AttentiveRecommender`
(attention over the user's history with the candidate as the query). Metrics: RMSE and MAE
of the ratings, RMSE on cold items (5 or fewer training ratings), and HR@10 / NDCG@10 of each
held-out item ranked among 100 items the user never rated (sampled, seeded).

A raw input is ``"USER ITEM"`` (ids as in the files): ``attnkit predict RUN "42 50"``."""
from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np
import torch
from rich.markup import escape

from ..data.ratings import Catalog, KnownRatings, Ratings, read_catalog, read_ratings
from ..errors import ConfigError, DataError
from ..models.recommender import RATING_LEVELS, RECENCY_BUCKETS, AttentiveRecommender, recommender_options
from .base import Encoded, Featurized, Task
from .splits import SPLITS, data_path, holdout

log = logging.getLogger("attnkit")
ITEMS, KNOWN = "items.json", "known_ratings.json"
NEGATIVES = 100  # sampled unrated items each held-out item is ranked among
TOP_K = 10
COLD = 5  # an item with at most this many training ratings is cold
METRICS = ("rmse", "mae", "hr@10", "ndcg@10", "cold_rmse")
PROTOCOL = ("HR@{k}/NDCG@{k}: each held-out rating's item ranked among {n} items the user never rated (sampled "
            "uniformly, seeded); cold items: <= {cold} training ratings")


def catalog_path(c) -> Path:
    """``data.items``, or ``u.item`` beside ``data.train``; missing: one error naming the key."""
    if c.items is not None:
        p = Path(c.items).expanduser()
        if not p.is_file():
            raise DataError(f"data.items: {p} not found")
        return p
    p = Path(c.train).expanduser().with_name("u.item")
    if not p.is_file():
        raise ConfigError(f"data.items: not given and no u.item beside data.train ({p}); give the item catalog "
                          f"(MovieLens u.item, movies.dat or movies.csv)")
    return p


def last_per_user(r: Ratings) -> tuple[list[int], list[int]]:
    """``(kept, held)``: each user's latest rating is held out when the user keeps at least two
    other ratings."""
    per: dict[str, list[int]] = {}
    for i, u in enumerate(r.users):
        per.setdefault(u, []).append(i)
    held = set()
    for rows in per.values():
        if len(rows) > 2:
            held.add(max(rows, key=lambda i: (r.times[i], r.lines[i])))
    return [i for i in range(len(r)) if i not in held], sorted(held)


class RatingData:
    """Held-out or training ratings as batches: the candidate (the rated item first, then
    sampled unrated items), the user's history, the rating."""

    def __init__(self, fz: Featurized, raw: Ratings, train: bool):
        cat, known = fz.vocabs[ITEMS], fz.vocabs[KNOWN]
        self.known = known
        _, history, _, head = recommender_options(fz.cfg.model)
        self.max_history = history.max_history
        self.negatives = head.negatives if train else NEGATIVES
        self.low = float(fz.sizes["min_rating"])
        self.n_items = int(fz.sizes["n_items"])
        self.seed = int(fz.cfg.train.seed)
        self.users = np.array([known.user(u) for u in raw.users], dtype=np.int64)
        self.items = np.array([cat.item(it, f"{raw.path}:{line}") for it, line in zip(raw.items, raw.lines)],
                              dtype=np.int64)
        self.values = np.array(raw.values, dtype=np.float32)
        self.rated = known.rated_sets()
        self.fixed = None if train else self._fixed_negatives(raw)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def lengths(self) -> list[int]:
        """History length of each example (batches group similar lengths)."""
        return [min(len(self.known.items[u - 1]), self.max_history) if u else 0 for u in self.users.tolist()]

    def _fixed_negatives(self, raw: Ratings) -> np.ndarray:
        """Up to ``NEGATIVES`` items per held-out rating that its user rated neither in train nor
        in this split (seeded); fewer, the same number for all, when a user left fewer unrated."""
        also: dict[int, set[int]] = {}
        for u, it in zip(self.users.tolist(), self.items.tolist()):
            also.setdefault(u, set()).add(it)
        free = {u: self.n_items - len(self.rated[u] | held) for u, held in also.items()}
        k = min([NEGATIVES, *free.values()])
        if k < NEGATIVES:
            log.warning(f"{raw.path}: a user left only {k} items unrated: held-out items are ranked among {k} "
                        f"sampled items, not {NEGATIVES}")
        rng = np.random.default_rng(self.seed)
        out = np.zeros((len(self), k), dtype=np.int64)
        for row, u in enumerate(self.users.tolist()):
            out[row] = sample_unrated(rng, self.n_items, self.rated[u] | also.get(u, set()), k)
        return out

    def collate(self, indices) -> dict:
        """A batch: ``users``, ``candidates [B, 1 + negatives]``, the history and the ratings."""
        idx = np.asarray(indices)
        users = self.users[idx]
        if self.fixed is not None:
            neg = self.fixed[idx]
        else:
            rng = np.random.default_rng([self.seed, *idx[:8].tolist(), len(idx)])
            neg = np.stack([sample_unrated(rng, self.n_items, self.rated[u], self.negatives) for u in users.tolist()])
        cand = np.concatenate([self.items[idx][:, None], neg], 1)
        batch = history_batch(self.known, users.tolist(), self.max_history, self.low)
        batch.update(users=torch.from_numpy(users), candidates=torch.from_numpy(cand),
                     ratings=torch.from_numpy(self.values[idx]))
        return batch


def sample_unrated(rng, n_items: int, excluded: set[int], k: int) -> np.ndarray:
    """``k`` distinct items of ``1..n_items`` not in ``excluded``: drawn uniformly and redrawn
    when taken (memory stays per user, whatever the catalog's size); from the list of the
    free ones when few are left."""
    free = n_items - len(excluded)
    if free < k:
        raise DataError(f"a user rated all but {free} items: cannot sample {k} unrated ones")
    if free < 4 * k:
        pool = np.setdiff1d(np.arange(1, n_items + 1), np.fromiter(excluded, dtype=np.int64))
        return rng.choice(pool, size=k, replace=False)
    out: list[int] = []
    taken = set(excluded)
    while len(out) < k:
        for i in rng.integers(1, n_items + 1, size=2 * (k - len(out))).tolist():
            if i not in taken and len(out) < k:
                taken.add(i)
                out.append(i)
    return np.asarray(out, dtype=np.int64)


def history_batch(known: KnownRatings, users: list[int], max_history: int, low: float) -> dict:
    """The users' latest ``max_history`` ratings, padded: ``history`` (items), ``history_ratings``
    (half-star levels), ``recency`` (log2 buckets from the latest), ``history_lengths``."""
    rows = [known.history(u) for u in users]
    rows = [(items[-max_history:], values[-max_history:]) for items, values in rows]
    width = max([len(r[0]) for r in rows] + [1])
    b = len(users)
    hist = np.zeros((b, width), dtype=np.int64)
    levels = np.zeros((b, width), dtype=np.int64)
    recency = np.zeros((b, width), dtype=np.int64)
    lengths = np.zeros(b, dtype=np.int64)
    for i, (items, values) in enumerate(rows):
        n = len(items)
        lengths[i] = n
        if not n:
            continue
        hist[i, :n] = items
        levels[i, :n] = np.clip(np.rint((np.asarray(values) - low) * 2), 0, RATING_LEVELS - 1) + 1
        back = np.arange(n)[::-1]
        recency[i, :n] = np.minimum(np.floor(np.log2(back + 1)).astype(np.int64) + 1, RECENCY_BUCKETS)
    return {"history": torch.from_numpy(hist), "history_ratings": torch.from_numpy(levels),
            "recency": torch.from_numpy(recency), "history_lengths": torch.from_numpy(lengths)}


def user_batch(fz: Featurized, user: int, candidates: torch.Tensor) -> tuple[dict, list[int], list[float]]:
    """One user's batch (``candidates [1, C]`` against the history the model reads) and that
    history's items and ratings, oldest first."""
    max_history = recommender_options(fz.cfg.model)[1].max_history
    batch = history_batch(fz.vocabs[KNOWN], [user], max_history, float(fz.sizes["min_rating"]))
    batch.update(users=torch.tensor([user]), candidates=candidates)
    items, values = fz.vocabs[KNOWN].history(user)
    return batch, items[-max_history:], values[-max_history:]


def attention_forward(model, batch: dict) -> dict:
    """The model's outputs with attention weights, in eval mode without gradients (restored after)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(batch, need_weights=True)
    finally:
        model.train(was)


def ranking_metrics(positions: list[int]) -> dict:
    """HR@10 and NDCG@10 from each held-out item's 0-based position among its candidates."""
    pos = np.asarray(positions, dtype=np.float64)
    hit = pos < TOP_K
    return {"hr@10": float(hit.mean()), "ndcg@10": float(np.where(hit, 1.0 / np.log2(pos + 2), 0.0).mean())}


class Recommendation(Task):
    """Ratings -> predicted ratings and ranked items."""

    target = "ratings"
    inputs = "text"
    default_metric = "rmse"
    categorical = False
    data_format = "ratings"
    lower_is_better = ("rmse", "mae", "cold_rmse")
    export_refusal = ("the history attention hides each candidate's own item with a mask built from item ids at run "
                      "time; recommendation runs predict on the torch engine")
    vocab_types = {ITEMS: Catalog, KNOWN: KnownRatings}

    def read_splits(self, cfg):
        """Ratings for train/dev/test; dev (and test with ``test_fraction``) held out as ``data.holdout`` says."""
        c = cfg.data
        if c.builtin is not None:
            raise ConfigError("data.builtin: no embedded ratings data set; give data.train: a ratings file "
                              "(MovieLens u1.base, ratings.dat or a CSV)")
        train, dev, test = (None if data_path(getattr(c, k), k) is None else self.read_file(cfg, getattr(c, k))
                            for k in SPLITS)
        if test is None and (c.holdout == "last" or c.test_fraction):
            keep, held = (last_per_user(train) if c.holdout == "last"
                          else holdout(len(train), c.test_fraction, cfg.train.seed + 1))
            train, test = _keep_skips(train, keep), train.subset(held)
        if dev is None:
            keep, held = (last_per_user(train) if c.holdout == "last"
                          else holdout(len(train), c.dev_fraction, cfg.train.seed))
            train, dev = _keep_skips(train, keep), train.subset(held)
        train.training = True  # encoded with negatives sampled afresh each batch
        train.also_known = dev  # dev ratings are history (each user's known ratings), never targets
        return train, dev, test

    def read_file(self, cfg, path):
        """One ratings file."""
        return read_ratings(path, on_error=cfg.data.on_error, encoding=cfg.data.encoding)

    def fit(self, cfg, train) -> Featurized:
        """The catalog and the training ratings (each user's history)."""
        cat = read_catalog(catalog_path(cfg.data), encoding=cfg.data.encoding, on_error=cfg.data.on_error)
        known = KnownRatings.build(train + train.also_known if train.also_known is not None else train, cat,
                                   counted=train)
        values = np.asarray(train.values, dtype=np.float64)
        sizes = {"n_items": len(cat), "n_users": len(known), "n_words": len(cat.words),
                 "n_genres": max(len(cat.genre_names), 1), "mean_rating": round(float(values.mean()), 6),
                 "min_rating": float(values.min()), "max_rating": float(values.max())}
        return Featurized(cfg, {ITEMS: cat, KNOWN: known}, [], sizes)

    def encode(self, fz: Featurized, raw):
        """Ratings as batches (training: sampled negatives each batch; held out: 100 fixed ones)."""
        return RatingData(fz, raw, train=raw.training)

    def examples(self, raw):
        """``"USER ITEM"`` inputs and their ratings."""
        if raw is None:
            return [], []
        return [f"{u} {i}" for u, i in zip(raw.users, raw.items)], list(raw.values)

    def encode_inputs(self, fz: Featurized, inputs) -> list[Encoded]:
        """``"USER ITEM"`` strings as one-example batches; the display units are the user's rated items."""
        cat, known = fz.vocabs[ITEMS], fz.vocabs[KNOWN]
        out = []
        for raw in inputs:
            parts = str(raw).replace("\t", " ").split()
            if len(parts) != 2:
                raise DataError(f"input {raw!r}: expected \"USER ITEM\" (two ids, e.g. \"42 50\")")
            user, item = known.user(parts[0]), cat.item(parts[1], f"input {raw!r}")
            if not user:
                log.warning(f"input {raw!r}: user {parts[0]!r} has no ratings in this run's training data: the rating "
                            f"comes from the item alone")
            batch, items, values = user_batch(fz, user, torch.tensor([[item]]))
            units = [f"{cat.title(i)}: {v:g}" for i, v in zip(items, values)]
            out.append(Encoded(batch, units, list(range(len(units))), units))
        return out

    def sample_inputs(self, fz, count, size):
        """Not exported (see ``export_refusal``)."""
        raise ConfigError(self.export_refusal)

    def initial_weights(self, fz: Featurized) -> dict:
        """The catalog's per-item features (title words, genres, year): buffers of the model."""
        return fz.vocabs[ITEMS].features()

    def build_model(self, model_cfg, **sizes):
        """The attentive recommender."""
        return AttentiveRecommender(model_cfg, **sizes)

    def decode(self, model, out, batch):
        """Per example ``(rating, position of the rated item among the candidates or None,
        item, number of other candidates)``; gold ratings when the batch has them."""
        rating = model.predict(out, batch).tolist()
        rank = out["rank"]
        others = rank.shape[1] - 1
        pos = (rank[:, 1:] > rank[:, :1]).sum(1).tolist() if others else [None] * len(rating)
        items = batch["candidates"][:, 0].tolist()
        preds = [(r, p, i, others) for r, p, i in zip(rating, pos, items)]
        return preds, (batch["ratings"].tolist() if "ratings" in batch else None)

    def metric_names(self, cfg) -> list[str]:
        """RMSE, MAE, HR@10, NDCG@10, cold-item RMSE."""
        return ["loss", *METRICS]

    def score(self, preds, gold, fz: Featurized) -> dict:
        """Rating errors, ranking hits and the cold items' RMSE (with the protocol stated)."""
        p = np.asarray([x[0] for x in preds], dtype=np.float64)
        g = np.asarray(gold, dtype=np.float64)
        err = p - g
        out = {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))), "n": len(g)}
        positions = [x[1] for x in preds]
        if positions and all(q is not None for q in positions):
            out.update(ranking_metrics(positions))
        counts = fz.vocabs[KNOWN].train_counts(int(fz.sizes["n_items"]))
        cold = counts[np.asarray([x[2] for x in preds], dtype=np.int64)] <= COLD
        if cold.any():
            out["cold_rmse"] = float(np.sqrt(np.mean(err[cold] ** 2)))
        out["n_cold"] = int(cold.sum())
        out["protocol"] = PROTOCOL.format(k=TOP_K, n=min(x[3] for x in preds) if preds else NEGATIVES, cold=COLD)
        return out

    def prediction(self, fz, enc, pred, raw, top_k: int = 3) -> dict:
        """``{"input", "user", "item", "title", "rating"}``."""
        user, item = str(raw).split()
        cat = fz.vocabs[ITEMS]
        return {"input": raw, "user": user, "item": item, "title": cat.title(cat.item(item)),
                "rating": round(float(pred[0]), 3), "history": len(enc.units)}

    def render_prediction(self, record: dict) -> str:
        """``rating  user U · title``."""
        return (f"[bold]{record['rating']:.2f}[/]\tuser {escape(str(record['user']))} · {escape(record['title'])} "
                f"(item {escape(str(record['item']))})")

    def is_correct(self, pred, gold, fz) -> bool:
        """Within half a star."""
        return abs(float(pred[0]) - float(gold)) < 0.5

    def alignment(self, model, enc, pred, fz):
        """The candidate's attention over the user's history: the 15 most attended ratings."""
        w = attention_forward(model, enc.batch)["attention"]
        if w is None or not enc.units:
            return None
        w = w[0, 0].float().numpy()
        top = np.argsort(-w)[:15]
        cat = fz.vocabs[ITEMS]
        return w[top][None, :], [cat.title(int(enc.batch["candidates"][0, 0]))], [enc.units[i] for i in top]

    def recommend(self, model, fz: Featurized, user_id: str, top: int = 10) -> dict:
        """See :func:`recommend`."""
        return recommend(model, fz, user_id, top)

    def example_html(self, enc, pred, gold, fz) -> str:
        """The item, the true and the predicted rating."""
        cat = fz.vocabs[ITEMS]
        title = cat.title(int(pred[2]))
        return (f"<p><b>{html.escape(title)}</b>: rated <b>{float(gold):g}</b>, predicted <b>{float(pred[0]):.2f}</b> "
                f"<span class=muted>(from {len(enc.units)} rated items; the attention over the most attended ones)</span></p>")


def _keep_skips(r: Ratings, keep: list[int]) -> Ratings:
    out = r.subset(keep)
    out.skipped, out.skip_reasons = r.skipped, r.skip_reasons
    return out



def recommend(model, fz: Featurized, user_id: str, top: int = 10) -> dict:
    """The ``top`` items for ``user_id`` that the user has not rated, ranked by the model's
    ranking score, each with its predicted rating and the rated item it attended to most
    ("because you rated *Star Wars* 5"). A user without training ratings gets the most rated
    items instead, and the record says so (``fallback``)."""
    cat, known = fz.vocabs[ITEMS], fz.vocabs[KNOWN]
    n_items = len(cat)
    counts = known.train_counts(n_items)
    user = known.user(user_id)
    record = {"user": str(user_id), "rated": 0, "fallback": None, "items": []}
    if not user:
        record["fallback"] = (f"user {user_id!r} has no ratings in this run's training data: the most rated items "
                              f"instead")
        order = np.argsort(-counts[1:], kind="stable")[:top] + 1
        record["items"] = [{"item": cat.ids[i - 1], "title": cat.title(int(i)), "ratings": int(counts[i])} for i in order]
        return record
    rated = known.history(user)[0]
    record["rated"] = len(rated)
    unrated = np.setdiff1d(np.arange(1, n_items + 1), np.asarray(rated))
    batch, shown_items, shown_values = user_batch(fz, user, torch.from_numpy(unrated)[None])
    out = attention_forward(model, batch)
    rank, rating = out["rank"][0], out["rating"][0].clamp(model.low, model.high)
    for j in torch.argsort(rank, descending=True)[:top].tolist():
        i = int(unrated[j])
        entry = {"item": cat.ids[i - 1], "title": cat.title(i), "score": round(float(rank[j]), 4),
                 "rating": round(float(rating[j]), 2), "ratings": int(counts[i])}
        if out["attention"] is not None and shown_items:
            w = out["attention"][0, j, :len(shown_items)]
            k = int(w.argmax())
            entry["because"] = {"item": cat.ids[shown_items[k] - 1], "title": cat.title(shown_items[k]),
                                "rating": shown_values[k], "attention": round(float(w[k]), 4)}
        record["items"].append(entry)
    return record
