"""Ratings and item catalogs for recommendation: reading them, and what a run keeps of them.

Ratings files: MovieLens 100K's ``u.data`` / ``u1.base`` (``user TAB item TAB rating TAB
timestamp``, no header), MovieLens 1M's ``ratings.dat`` (``::``-separated) or a CSV/TSV with
a header naming the columns (``userId,movieId,rating,timestamp`` as in the newer MovieLens
sets, or ``user,item,rating[,timestamp]``). Item catalogs: ``u.item`` (``|``-separated, 19
genre flags named by ``u.genre`` beside it; Latin-1), ``movies.dat`` (``id::title::A|B``) or
``movies.csv`` (``movieId,title,genres``). Every bad line is named by file and line.

:class:`Catalog` (the items: title words, genres, year) and :class:`KnownRatings` (each
user's ratings in time order: the history the model attends over) are saved with a run."""
from __future__ import annotations

import csv
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import write_json
from ._common import Problems, existing_file, numbered_lines
from .vocab import read_kind_json

USER_COLUMNS = ("user", "user_id", "userid")
ITEM_COLUMNS = ("item", "item_id", "itemid", "movie", "movie_id", "movieid")
RATING_COLUMNS = ("rating", "score", "stars")
TIME_COLUMNS = ("timestamp", "time", "ts")
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
MAX_TITLE_WORDS = 12


@dataclass
class Ratings:
    """Ratings as read: raw user and item ids (strings), rating values, times, file lines."""

    path: Path
    users: list[str]
    items: list[str]
    values: list[float]
    times: list[int]
    lines: list[int]
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)
    training: bool = False  # the training split (its examples get sampled negatives afresh)
    also_known: Ratings | None = None  # ratings seen as history, never trained on (the dev split of a training split)

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, idx) -> Ratings:
        """The ratings at positions ``idx``, in that order."""
        return Ratings(self.path, [self.users[i] for i in idx], [self.items[i] for i in idx],
                       [self.values[i] for i in idx], [self.times[i] for i in idx], [self.lines[i] for i in idx])

    def __add__(self, other: Ratings) -> Ratings:
        return Ratings(self.path, self.users + other.users, self.items + other.items, self.values + other.values,
                       self.times + other.times, self.lines + other.lines, self.skipped + other.skipped,
                       self.skip_reasons + other.skip_reasons)


def _split_line(text: str) -> list[str]:
    if "::" in text:
        return text.split("::")
    if "\t" in text:
        return text.split("\t")
    return next(csv.reader([text]))


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    low = [h.strip().lower() for h in header]
    return next((low.index(n) for n in names if n in low), None)


def read_ratings(path: str | os.PathLike, on_error: str = "raise", encoding: str = "auto") -> Ratings:
    """Ratings from a MovieLens file or a table with a header (see the module docstring)."""
    path = existing_file(path)
    problems = Problems(path, on_error)
    cols = None  # (user, item, rating, time or None) column positions
    out = Ratings(path, [], [], [], [], [])
    for number, raw in numbered_lines(path, encoding):
        text = raw.strip()
        if not text:
            continue
        parts = _split_line(text)
        if cols is None:
            header = [_column(parts, n) for n in (USER_COLUMNS, ITEM_COLUMNS, RATING_COLUMNS, TIME_COLUMNS)]
            if all(c is not None for c in header[:3]):
                cols = tuple(header)
                continue
            cols = (0, 1, 2, 3 if len(parts) > 3 else None)
        if len(parts) <= max(c for c in cols if c is not None):
            problems.bad(number, f"expected user, item, rating and timestamp columns, got {len(parts)} field(s): "
                                 f"{text[:60]!r}")
            continue
        user, item = parts[cols[0]].strip(), parts[cols[1]].strip()
        try:
            value = float(parts[cols[2]])
            when = int(float(parts[cols[3]])) if cols[3] is not None else number
        except (ValueError, OverflowError):
            problems.bad(number, f"rating and timestamp must be numbers, got {parts[cols[2]]!r}"
                                 + (f" and {parts[cols[3]]!r}" if cols[3] is not None else ""))
            continue
        if not user or not item or not np.isfinite(value):
            problems.bad(number, "empty user or item id, or a rating that is not a finite number")
            continue
        out.users.append(user)
        out.items.append(item)
        out.values.append(value)
        out.times.append(when)
        out.lines.append(number)
    if not out.users:
        raise problems.nothing_left("ratings")
    out.skipped, out.skip_reasons = problems.skipped, problems.reasons
    return out


def title_words(title: str) -> list[str]:
    """Lower-cased words of a title without its year (``"Usual Suspects, The (1995)"`` ->
    ``["usual", "suspects", "the"]``)."""
    return _WORD.findall(_YEAR.sub("", title).lower())[:MAX_TITLE_WORDS]


class Catalog:
    """The items: ids (strings; index 0 is padding, items are 1..N), titles, genres, years, and
    the vocabulary of title words (0 = padding, 1 = unknown)."""

    kind = "catalog"

    def __init__(self, ids: list[str], titles: list[str], genres: list[list[str]], years: list[int | None],
                 genre_names: list[str], words: list[str] | None = None):
        self.ids, self.titles, self.genres, self.years, self.genre_names = ids, titles, genres, years, genre_names
        self.index = {item: i + 1 for i, item in enumerate(ids)}
        if words is None:
            seen: dict[str, None] = {}
            for t in titles:
                seen.update(dict.fromkeys(title_words(t)))
            words = ["<pad>", "<unk>", *sorted(seen)]
        self.words = words
        self.word_index = {w: i for i, w in enumerate(words)}

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, item_id: str, where: str = "item") -> int:
        """The index (1..N) of ``item_id``; an id not in the catalog is a DataError naming it."""
        try:
            return self.index[str(item_id)]
        except KeyError:
            span = f"ids {self.ids[0]} .. {self.ids[-1]}" if self.ids else "no items"
            raise DataError(f"{where}: item {item_id!r} is not in the item catalog ({len(self)} items, {span})") from None

    def title(self, index: int) -> str:
        """The title of item ``index`` (1..N)."""
        return self.titles[index - 1]

    def features(self) -> dict[str, np.ndarray]:
        """Per item (row 0 = padding): title word ids ``[N+1, MAX_TITLE_WORDS]``, genre flags
        ``[N+1, G]``, year ``[N+1]`` (0 when unknown)."""
        n = len(self) + 1
        words = np.zeros((n, MAX_TITLE_WORDS), dtype=np.int64)
        genres = np.zeros((n, max(len(self.genre_names), 1)), dtype=np.float32)
        years = np.zeros(n, dtype=np.int64)
        col = {g: j for j, g in enumerate(self.genre_names)}
        for i in range(len(self)):
            ids = [self.word_index.get(w, 1) for w in title_words(self.titles[i])]
            words[i + 1, :len(ids)] = ids
            for g in self.genres[i]:
                if g in col:
                    genres[i + 1, col[g]] = 1.0
            years[i + 1] = self.years[i] or 0
        return {"item_words": words, "item_genres": genres, "item_years": years}

    def save(self, path: str | os.PathLike) -> None:
        """Write the catalog as JSON (atomically)."""
        write_json(path, {"kind": self.kind, "ids": self.ids, "titles": self.titles, "genres": self.genres,
                          "years": self.years, "genre_names": self.genre_names, "words": self.words}, indent=None)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Catalog:
        """Read a catalog written by :meth:`save`."""
        obj = read_kind_json(path, cls.kind, "file")
        try:
            return cls(obj["ids"], obj["titles"], obj["genres"], obj["years"], obj["genre_names"], obj["words"])
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}: not a valid item catalog ({e})") from None


def _year(title: str, date: str = "") -> int | None:
    m = _YEAR.search(title) or re.search(r"(\d{4})\s*$", date.strip())
    return int(m.group(1)) if m else None


def _catalog_format(text: str) -> str | None:
    """The catalog format its first line shows: ``dat`` (``::``), ``csv`` (a header naming a
    title) or ``uitem`` (MovieLens 100K, ``|``-separated); None: none of them."""
    if "::" in text:
        return "dat"
    if _column(next(csv.reader([text])), ("title",)) is not None:
        return "csv"
    return "uitem" if text.count("|") >= 5 else None


def read_catalog(path: str | os.PathLike, encoding: str = "auto", on_error: str = "raise") -> Catalog:
    """An item catalog: MovieLens ``u.item`` (genre names from ``u.genre`` beside it),
    ``movies.dat`` or a ``movies.csv`` with ``movieId,title,genres`` (see the module docstring).
    The first line decides the format; each line after it is read in that format."""
    path = existing_file(path)
    problems = Problems(path, on_error)
    ids, titles, genres, years = [], [], [], []
    first_line: dict[str, int] = {}
    genre_names: list[str] = []
    fmt = header = None
    for number, raw in numbered_lines(path, encoding):
        text = raw.rstrip("\r\n")
        if not text.strip():
            continue
        if fmt is None:
            fmt = _catalog_format(text)
            if fmt is None:
                raise DataError(f"{path}:{number}: expected MovieLens u.item (|-separated), movies.dat (::) or a CSV "
                                f"with a header movieId,title,genres")
            if fmt == "csv":
                cells = next(csv.reader([text]))
                header = (_column(cells, ("movieid", "id", *ITEM_COLUMNS)), _column(cells, ("title",)),
                          _column(cells, ("genres", "genre")))
                if header[0] is None:
                    raise DataError(f"{path}:{number}: the header names a title but no item id column "
                                    f"(movieId, item or id)")
                continue
        if fmt == "dat":
            parts = text.split("::")
            if len(parts) < 3:
                problems.bad(number, f"expected id::title::genres, got {text[:60]!r}")
                continue
            item, title, tags = parts[0], parts[1], [g for g in parts[2].split("|") if g]
            year = _year(title)
        elif fmt == "uitem":  # MovieLens 100K: id|title|date|video date|url|flags...
            parts = text.split("|")
            flags = parts[5:]
            if not genre_names:
                genre_names = _genre_names(path, len(flags), encoding)
            if len(flags) != len(genre_names) or any(f.strip() not in ("0", "1") for f in flags):
                problems.bad(number, f"expected {len(genre_names)} genre flags (0/1) after 5 fields, got {flags[:3]}...")
                continue
            item, title = parts[0], parts[1]
            tags = [g for g, f in zip(genre_names, flags) if f.strip() == "1"]
            year = _year(title, parts[2])
        else:
            parts = next(csv.reader([text]))
            if len(parts) <= max(c for c in header if c is not None):
                problems.bad(number, f"expected {len([c for c in header if c is not None])} columns, got {len(parts)}")
                continue
            item, title = parts[header[0]], parts[header[1]]
            tags = ([g for g in parts[header[2]].split("|") if g and g != "(no genres listed)"]
                    if header[2] is not None else [])
            year = _year(title)
        item = item.strip()
        if not item:
            problems.bad(number, "empty item id")
            continue
        if item in first_line:
            raise DataError(f"{path}:{number}: item id {item!r} appears again (first at line {first_line[item]})")
        first_line[item] = number
        ids.append(item)
        titles.append(title.strip())
        genres.append(tags)
        years.append(year)
    if not ids:
        raise problems.nothing_left("items")
    if not genre_names:
        genre_names = sorted({g for gs in genres for g in gs})
    return Catalog(ids, titles, genres, years, genre_names)


def _genre_names(items_path: Path, count: int, encoding: str) -> list[str]:
    """The names of the genre flags: ``u.genre`` beside ``u.item`` (``name|index``), else ``genre0..``."""
    p = items_path.with_name("u.genre")
    if p.is_file():
        names = [line.split("|")[0] for _, line in numbered_lines(p, encoding) if line.strip()]
        if len(names) == count:
            return names
    return [f"genre{i}" for i in range(count)]


class KnownRatings:
    """Each user's ratings in time order (the history the model attends over) and how often
    each item was rated: what a run knows about its users."""

    kind = "known_ratings"

    def __init__(self, users: list[str], items: list[list[int]], values: list[list[float]], times: list[list[int]],
                 counts: dict[int, int] | None = None):
        self.users, self.items, self.values, self.times = users, items, values, times
        self.index = {u: i + 1 for i, u in enumerate(users)}  # 0: a user the run never saw
        self.counts = counts  # training ratings per item index (None: every known rating counts)

    @classmethod
    def build(cls, ratings: Ratings, catalog: Catalog, counted: Ratings | None = None) -> KnownRatings:
        """From ratings (item ids looked up in ``catalog``), each user's sorted by time;
        ``counted``: the ratings that count as training ratings per item (default: all)."""
        per: dict[str, list[tuple[int, int, float]]] = {}
        for u, it, v, t, line in zip(ratings.users, ratings.items, ratings.values, ratings.times, ratings.lines):
            per.setdefault(u, []).append((t, catalog.item(it, f"{ratings.path}:{line}"), v))
        users = sorted(per, key=_natural)
        rows = [sorted(per[u], key=lambda r: r[0]) for u in users]
        counts = None
        if counted is not None:
            counts = {}
            for it in counted.items:
                i = catalog.item(it)
                counts[i] = counts.get(i, 0) + 1
        return cls(users, [[r[1] for r in rs] for rs in rows], [[r[2] for r in rs] for rs in rows],
                   [[r[0] for r in rs] for rs in rows], counts)

    def __len__(self) -> int:
        return len(self.users)

    def user(self, user_id: str) -> int:
        """The user's index (1..U), or 0 for a user without known ratings."""
        return self.index.get(str(user_id), 0)

    def history(self, user: int) -> tuple[list[int], list[float]]:
        """Item indices and ratings of user ``user`` (an index; 0: none), oldest first."""
        return (self.items[user - 1], self.values[user - 1]) if user else ([], [])

    def item_counts(self, n_items: int) -> np.ndarray:
        """How many known ratings each item index (0..n_items) has."""
        counts = np.zeros(n_items + 1, dtype=np.int64)
        for row in self.items:
            np.add.at(counts, row, 1)
        return counts

    def train_counts(self, n_items: int) -> np.ndarray:
        """How many *training* ratings each item index (0..n_items) has (dev ratings are known
        but not counted: "cold" means few training ratings)."""
        if self.counts is None:
            return self.item_counts(n_items)
        out = np.zeros(n_items + 1, dtype=np.int64)
        for i, c in self.counts.items():
            out[int(i)] = c
        return out

    def rated_sets(self) -> list[set[int]]:
        """Per user index (0: unknown, empty) the set of rated item indices (built once: every
        split's batches sample unrated items from it)."""
        return self._rated

    @functools.cached_property
    def _rated(self) -> list[set[int]]:
        return [set()] + [set(row) for row in self.items]

    def save(self, path: str | os.PathLike) -> None:
        """Write the ratings as JSON (atomically)."""
        write_json(path, {"kind": self.kind, "users": self.users, "items": self.items, "values": self.values,
                          "times": self.times,
                          "counts": None if self.counts is None else {str(k): v for k, v in self.counts.items()}},
                   indent=None)

    @classmethod
    def load(cls, path: str | os.PathLike) -> KnownRatings:
        """Read ratings written by :meth:`save`."""
        obj = read_kind_json(path, cls.kind, "file")
        try:
            counts = obj.get("counts")
            return cls(obj["users"], obj["items"], obj["values"], obj["times"],
                       None if counts is None else {int(k): int(v) for k, v in counts.items()})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{path}: not a valid ratings file ({e})") from None


def _natural(s: str):
    return (0, int(s), "") if s.isdigit() else (1, 0, s)
