"""Data files of every supported format with bad and edge-case content: wrong column counts,
blank and huge lines, bytes that are not UTF-8, a BOM, CRLF, quotes, unseen labels, truncated
JSON. ``attnkit train`` trains or stops with one line naming the file and line."""
from __future__ import annotations

import json

import yaml
from hypothesis import given
from hypothesis import strategies as st

from .contract import check_cli

GOOD = [("a good film", "pos"), ("a dull film", "neg"), ("good fun", "pos"), ("so dull", "neg")]
FRAGMENTS = st.sampled_from([
    b"", b"   ", b"only one field", b"a\tb\tc", b"\xff\xfe broken bytes\tpos", b"caf\xe9 latin-1\tneg",
    b"x" * 5000 + b"\tpos", b"\"quoted\ttab\"\tpos", b"unseen label row\tmeh", b"\ttext missing", b"text only\t",
    b"\xef\xbb\xbfbom row\tpos", b"crlf row\tneg\r", b"\x00nul\tpos",
])


def table_bytes(fmt: str, rows: list[tuple[str, str]], extra: list[bytes]) -> bytes:
    sep = {"tsv": "\t", "csv": ","}.get(fmt)
    if sep is not None:
        body = [f"text{sep}label".encode()] + [f"{t}{sep}{y}".encode() for t, y in rows]
        return b"\n".join(body + [e.replace(b"\t", sep.encode()) for e in extra]) + b"\n"
    if fmt == "jsonl":
        body = [json.dumps({"text": t, "label": y}).encode() for t, y in rows]
        return b"\n".join(body + [b'{"text": ' + e[:20] for e in extra]) + b"\n"
    data = {"train": [[t, y] for t, y in rows]}  # json: an object of splits
    text = json.dumps(data).encode()
    return text[: len(text) - len(extra)] if extra else text  # truncated JSON when extras are drawn


@given(fmt=st.sampled_from(["tsv", "csv", "jsonl", "json"]), extra=st.lists(FRAGMENTS, max_size=3),
       dev_extra=st.lists(FRAGMENTS, max_size=2), on_error=st.sampled_from(["raise", "skip"]),
       encoding=st.sampled_from(["auto", "utf-8", "latin-1", "cp1252", "utf-16", "no-such-codec"]))
def test_any_table_trains_or_names_file_and_line(tmp_path_factory, fmt, extra, dev_extra, on_error, encoding):
    tmp = tmp_path_factory.mktemp("table")
    suffix = {"json": "json#train"}.get(fmt, fmt)
    (tmp / f"train.{fmt}").write_bytes(table_bytes(fmt, GOOD * 3, extra))
    (tmp / f"dev.{fmt}").write_bytes(table_bytes(fmt, GOOD, dev_extra))
    cfg = {"data": {"train": str(tmp / f"train.{suffix}"), "dev": str(tmp / f"dev.{suffix}"), "on_error": on_error,
                    "encoding": encoding},
           "model": {"embedding": {"dim": 4}, "encoder": {"type": "gru", "hidden": 4}},
           "train": {"epochs": 1, "batch_size": 8, "report": False}}
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    check_cli(f"inspect-data {fmt}", ["inspect-data", tmp / "c.yaml"])
    check_cli(f"train {fmt} data", ["train", tmp / "c.yaml", "--out", tmp / "run"], out_dir=tmp / "run")


CONLL = st.sampled_from([b"EU B-ORG", b"rejects O", b"", b"-DOCSTART- O", b"only", b"a b c d e", b"word I-PER",
                         b"w\xff B-LOC", b"x" * 3000 + b" O", b"German B-MISC", b"\tO", b"weird NOT-A-TAG"])


@given(lines=st.lists(CONLL, min_size=1, max_size=12), scheme=st.sampled_from(["bio", "iob1", "none", "bad"]),
       tag_column=st.sampled_from([-1, 1, 5]))
def test_any_conll_file_trains_or_names_file_and_line(tmp_path_factory, lines, scheme, tag_column):
    tmp = tmp_path_factory.mktemp("conll")
    (tmp / "train.txt").write_bytes(b"\n".join([b"Paris B-LOC", b"is O", b"", *lines]) + b"\n")
    cfg = {"task": "token_classification",
           "data": {"train": str(tmp / "train.txt"), "dev": str(tmp / "train.txt"), "scheme": scheme,
                    "tag_column": tag_column},
           "model": {"embedding": {"dim": 4}, "encoder": {"type": "gru", "hidden": 4}},
           "train": {"epochs": 1, "batch_size": 8, "report": False}}
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    check_cli("train conll data", ["train", tmp / "c.yaml", "--out", tmp / "run"], out_dir=tmp / "run")


RATINGS = st.sampled_from([b"1\t1\t5\t880000000", b"2\t3\t4\t880000001", b"1\t2\t2", b"", b"x\ty\tz\tw", b"1\t2",
                           b"3\t99\t5\t1", b"4\t1\tnan\t2", b"1,2,3,4", b"userId,movieId,rating,timestamp",
                           b"5::2::3::7", b"\xff\xfe\t1\t1\t1", b"6\t2\t4.5\t1e9", b"7\t3\t-1\t5"])
ITEMS = st.sampled_from([b"3|Caf\xe9 (1992)|||x|1|1", b"6|F Film (1996)|||x|1|0",
                         b"3|Dup (1993)|||x|0|1", b"4|Short|x", b"", b"movieId,title,genres", b"5,E (1994),Drama"])


@given(lines=st.lists(RATINGS, min_size=1, max_size=10), items=st.lists(ITEMS, min_size=1, max_size=5),
       on_error=st.sampled_from(["raise", "skip"]))
def test_any_ratings_file_trains_or_names_file_and_line(tmp_path_factory, lines, items, on_error):
    tmp = tmp_path_factory.mktemp("ratings")
    (tmp / "u.data").write_bytes(b"\n".join([b"1\t1\t5\t10", b"2\t2\t3\t11", b"1\t2\t4\t12", *lines]) + b"\n")
    (tmp / "u.item").write_bytes(b"\n".join([b"1|A Film (1990)|||x|0|1", b"2|B Film (1991)|||x|1|0", *items]) + b"\n")
    cfg = {"task": "recommendation",
           "data": {"train": str(tmp / "u.data"), "dev": str(tmp / "u.data"), "on_error": on_error},
           "model": {"embedding": {"dim": 4}},
           "train": {"epochs": 1, "batch_size": 8, "report": False}}
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    check_cli("train ratings data", ["train", tmp / "c.yaml", "--out", tmp / "run"], out_dir=tmp / "run")
