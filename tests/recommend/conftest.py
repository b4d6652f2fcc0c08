"""A small MovieLens-shaped data set made up for the tests (``u.item``, ``u.genre``, ratings
files), with ratings drawn from a known structure (users like some genres), and one
recommendation run trained on it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

GENRES = ["unknown", "Action", "Comedy", "Drama", "Romance"]
WORDS = ["star", "night", "love", "war", "city", "dream", "blue", "last", "king", "river", "ghost", "summer"]


def write_movielens(folder: Path, users: int = 60, items: int = 150, per_user: int = 30, seed: int = 0) -> Path:
    """``u.item``, ``u.genre``, ``u.data`` and a ``base``/``test`` split in ``folder``; a user's
    rating is 2 + 2 x (likes the item's first genre) + noise, rounded to 1..5."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n", encoding="ascii")
    genre_of = rng.integers(1, len(GENRES), size=items)
    lines = []
    for i in range(items):
        flags = ["0"] * len(GENRES)
        flags[genre_of[i]] = "1"
        title = " ".join(rng.choice(WORDS, size=2, replace=False)).title() + (" Café" if i == 3 else "")
        lines.append(f"{i + 1}|{title} ({1950 + i % 50})|01-Jan-{1950 + i % 50}||http://x|" + "|".join(flags))
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    likes = rng.integers(1, len(GENRES), size=users)
    rows = []
    for u in range(users):
        for j, i in enumerate(rng.choice(items, size=per_user, replace=False)):
            r = 2 + 2 * (genre_of[i] == likes[u]) + rng.normal(0, 0.4)
            rows.append((u + 1, i + 1, int(np.clip(np.rint(r), 1, 5)), 880000000 + 1000 * j + u))
    order = rng.permutation(len(rows))
    cut = int(0.8 * len(rows))
    for name, idx in (("u.data", order), ("base", order[:cut]), ("test", order[cut:])):
        (folder / name).write_text("".join("\t".join(map(str, rows[k])) + "\n" for k in idx), encoding="ascii")
    return folder


def run_config(folder: Path, epochs: int = 12, **extra) -> str:
    """A small recommendation config on ``write_movielens``'s files (YAML text)."""
    data = {"train": str(folder / "base"), "test": str(folder / "test"), **extra}
    items = ", ".join(f"{k}: {v}" for k, v in data.items())
    return (f"task: recommendation\ndata: {{{items}}}\n"
            "model: {embedding: {dim: 16, dropout: 0.0, id_dropout: 0.1}, pooler: {score: scaled_dot}}\n"
            f"train: {{epochs: {epochs}, batch_size: 64, optimizer: {{name: adam, lr: 0.01}}, seed: 0}}\n")


@pytest.fixture(scope="session")
def movielens(tmp_path_factory) -> Path:
    """The made-up MovieLens folder."""
    return write_movielens(tmp_path_factory.mktemp("ml"))


@pytest.fixture(scope="session")
def rec_run(movielens, tmp_path_factory) -> Path:
    """A recommendation run trained on it (12 epochs, seconds)."""
    from attnkit.run import train

    cfg = tmp_path_factory.mktemp("rec") / "rec.yaml"
    cfg.write_text(run_config(movielens), encoding="utf-8")
    out = cfg.parent / "run"
    train(str(cfg), out=out, progress=False)
    return out
