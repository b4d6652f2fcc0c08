"""Reading ratings and item catalogs: the MovieLens formats and a CSV of one's own, every bad
line named by file and line; what a run keeps of them."""
from __future__ import annotations

import pytest

from attnkit.data.ratings import Catalog, KnownRatings, read_catalog, read_ratings, title_words
from attnkit.errors import DataError


def test_movielens_100k_files(movielens):
    r = read_ratings(movielens / "base")
    cat = read_catalog(movielens / "u.item")
    assert len(r) == 1440 and set(r.values) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(cat) == 150 and cat.genre_names[1] == "Action"
    assert "Café" in cat.titles[3]  # u.item is Latin-1
    assert all(len(g) == 1 for g in cat.genres) and cat.years[0] == 1950
    f = cat.features()
    assert f["item_words"].shape == (151, 12) and f["item_genres"].sum() == 150 and f["item_years"][1] == 1950
    assert f["item_words"][0].sum() == 0  # row 0 is padding


def test_csv_with_a_header_and_ml1m_format(tmp_path):
    p = tmp_path / "ratings.csv"
    p.write_text("userId,movieId,rating,timestamp\n7,10,4.5,100\n7,11,3,90\n8,10,1,50\n", encoding="utf-8")
    r = read_ratings(p)
    assert r.users == ["7", "7", "8"] and r.values == [4.5, 3.0, 1.0] and r.times == [100, 90, 50]
    m = tmp_path / "movies.csv"
    m.write_text('movieId,title,genres\n10,"Usual Suspects, The (1995)",Crime|Thriller\n11,Heat (1995),Action\n',
                 encoding="utf-8")
    cat = read_catalog(m)
    assert cat.titles[0] == "Usual Suspects, The (1995)" and cat.genres[0] == ["Crime", "Thriller"]
    assert cat.years == [1995, 1995] and cat.genre_names == ["Action", "Crime", "Thriller"]
    dat = tmp_path / "ratings.dat"
    dat.write_text("1::10::5::978300760\n", encoding="utf-8")
    assert read_ratings(dat).items == ["10"]
    known = KnownRatings.build(r, cat, counted=r.subset([0]))
    assert known.history(known.user("7")) == ([2, 1], [3.0, 4.5])  # oldest first
    assert known.train_counts(2).tolist() == [0, 1, 0] and known.item_counts(2).tolist() == [0, 2, 1]
    assert KnownRatings(known.users, known.items, known.values, known.times).train_counts(2).tolist() == [0, 2, 1]
    assert known.user("nobody") == 0 and known.history(0) == ([], [])


def test_title_words():
    assert title_words("Usual Suspects, The (1995)") == ["usual", "suspects", "the"]
    assert title_words("Misérables, Les (1995)") == ["misérables", "les"]


@pytest.mark.parametrize("line, problem", [
    ("1\t2\n", r"got 2 field\(s\)"),
    ("1\t2\tfive\t880000000\n", "must be numbers"),
    ("1\t2\tnan\t880000000\n", "finite"),
])
def test_bad_rating_lines_are_named(tmp_path, line, problem):
    p = tmp_path / "u.data"
    p.write_text("1\t1\t5\t880000000\n" + line, encoding="ascii")
    with pytest.raises(DataError, match=rf"u\.data:2: .*{problem}"):
        read_ratings(p)
    skipped = read_ratings(p, on_error="skip")
    assert len(skipped) == 1 and skipped.skipped == 1


def test_bad_catalogs(tmp_path):
    p = tmp_path / "u.item"
    p.write_text("1|A (1990)|||x|0|1\n1|B (1991)|||x|1|0\n", encoding="ascii")
    with pytest.raises(DataError, match=r"u\.item:2: item id '1' appears again \(first at line 1\)"):
        read_catalog(p)
    p.write_text("1|A (1990)|||x|0|1\n2|B (1991)|||x|1\n", encoding="ascii")
    with pytest.raises(DataError, match=r"u\.item:2: expected 2 genre flags"):
        read_catalog(p)
    (tmp_path / "items.csv").write_text("id,name\n1,x\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"items\.csv:1: expected MovieLens u.item"):
        read_catalog(tmp_path / "items.csv")


def test_movies_dat_and_a_csv_with_many_genres(tmp_path):
    dat = tmp_path / "movies.dat"
    dat.write_text("1::Toy Story (1995)::Animation|Children's|Comedy\n2::Heat (1995)::Action\n", encoding="latin-1")
    cat = read_catalog(dat)
    assert cat.years == [1995, 1995] and cat.genres[0] == ["Animation", "Children's", "Comedy"]
    csv_ = tmp_path / "movies.csv"  # six genres: five '|' on a line that is still CSV
    csv_.write_text("movieId,title,genres\n7,Rubber (2010),Action|Adventure|Comedy|Crime|Drama|Film-Noir\n"
                    "8,Up (2009),Animation\n", encoding="utf-8")
    cat = read_catalog(csv_)
    assert cat.ids == ["7", "8"] and len(cat.genres[0]) == 6 and "Film-Noir" in cat.genre_names
    r = tmp_path / "r.csv"
    r.write_text("userId,movieId,rating,timestamp\n1,7,4,1e400\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"r\.csv:2: rating and timestamp must be numbers"):
        read_ratings(r)


def test_a_rating_of_an_item_not_in_the_catalog_names_its_line(movielens, tmp_path):
    p = tmp_path / "r.tsv"
    p.write_text("1\t1\t5\t1\n1\t999\t4\t2\n", encoding="ascii")
    cat = read_catalog(movielens / "u.item")
    with pytest.raises(DataError, match=r"r\.tsv:2: item '999' is not in the item catalog \(150 items, ids 1 \.\. 150\)"):
        KnownRatings.build(read_ratings(p), cat)


def test_saved_and_loaded(movielens, tmp_path):
    cat = read_catalog(movielens / "u.item")
    known = KnownRatings.build(read_ratings(movielens / "base"), cat)
    cat.save(tmp_path / "items.json")
    known.save(tmp_path / "known.json")
    cat2, known2 = Catalog.load(tmp_path / "items.json"), KnownRatings.load(tmp_path / "known.json")
    assert cat2.titles == cat.titles and cat2.words == cat.words and (cat2.features()["item_words"] == cat.features()["item_words"]).all()
    assert known2.items == known.items and known2.values == known.values and known2.counts == known.counts
    with pytest.raises(DataError, match="expected a catalog file"):
        Catalog.load(tmp_path / "known.json")
