"""Table (TSV/CSV/JSONL) and parallel-text readers on good data and on each kind of bad data."""
import gzip
import json

import pytest

from attnkit.data import infer_format, read_parallel, read_table
from attnkit.errors import ConfigError, DataError


def write(path, text, encoding="utf-8"):
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode(encoding)))
    else:
        path.write_bytes(text.encode(encoding))
    return path


def raises_at(path, line, match, fn, *args, **kwargs):
    """fn(...) raises a DataError naming ``path:line`` and matching ``match``."""
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    assert f"{path}:{line}:" in str(info.value)
    return info.value


# -- good data -------------------------------------------------------------------------------

def test_tsv_keeps_quotes_and_strips_text(tmp_path):
    p = write(tmp_path / "a.tsv", 'sentence\tlabel\nit \'s a "charming" film \t1\n'
                                  'bleak " and dull \t0\n')
    t = read_table(p, "sentence", "label")
    assert t.texts == ['it \'s a "charming" film', 'bleak " and dull']
    assert t.labels == ["1", "0"]
    assert t.lines == [2, 3]
    assert t.skipped == 0 and len(t) == 2 and t.path == str(p)


def test_columns_chosen_by_name_in_any_order(tmp_path):
    p = write(tmp_path / "a.tsv", "id\tlabel\ttext\n7\tpos\tgood\n8\tneg\tbad\n")
    t = read_table(p, "text", "label")
    assert t.texts == ["good", "bad"] and t.labels == ["pos", "neg"]


def test_csv_with_quoted_comma_and_multiline_field(tmp_path):
    p = write(tmp_path / "a.csv", 'text,label\n"good, really",pos\n"two\nlines",neg\nok,pos\n')
    t = read_table(p, "text", "label")
    assert t.texts == ["good, really", "two\nlines", "ok"]
    assert t.lines == [2, 3, 5]


def test_jsonl_and_gz_and_integer_labels(tmp_path):
    rows = [{"text": "good", "label": 1}, {"text": "bad", "label": 0, "extra": None}]
    p = write(tmp_path / "a.jsonl.gz", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    t = read_table(p, "text", "label")
    assert t.texts == ["good", "bad"] and t.labels == ["1", "0"] and t.lines == [1, 2]


def test_tsv_gz_crlf_and_bom(tmp_path):
    p = write(tmp_path / "a.tsv.gz", "\ufefftext\tlabel\r\nnice\tpos\r\n")
    t = read_table(p, "text", "label")
    assert t.texts == ["nice"] and t.labels == ["pos"]


def test_no_label_column_and_explicit_format(tmp_path):
    p = write(tmp_path / "test.txt", "index\tsentence\n0\thello there\n")
    t = read_table(p, "sentence", None, fmt="tsv")
    assert t.texts == ["hello there"] and t.labels is None


def test_latin1_encoding(tmp_path):
    p = write(tmp_path / "a.tsv", "text\tlabel\nMisérables\tx\n", encoding="latin-1")
    assert read_table(p, "text", "label", encoding="latin-1").texts == ["Misérables"]
    raises_at(p, 2, "latin-1", read_table, p, "text", "label")


def test_infer_format():
    assert infer_format("x/train.TSV") == "tsv"
    assert infer_format("a.csv.gz") == "csv"
    assert infer_format("a.jsonl") == "jsonl"
    with pytest.raises(ConfigError, match=r"data.format in a config, --format on the command line"):
        infer_format("a.txt")


# -- bad data --------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        read_table(tmp_path / "nope.tsv", "text", "label")
    assert "nope.tsv" in str(info.value)


def test_missing_column_lists_columns(tmp_path):
    p = write(tmp_path / "a.tsv", "sentence\tlabel\nx\t1\n")
    err = raises_at(p, 1, "column 'text' not found", read_table, p, "text", "label")
    assert "sentence, label" in str(err)
    # a missing header column is not a bad line: skip mode raises too
    raises_at(p, 1, "not found", read_table, p, "text", "label", on_error="skip")


def test_single_column_header_hints_at_format(tmp_path):
    p = write(tmp_path / "a.tsv", "text,label\nx,1\n")
    raises_at(p, 1, r"columns: text,label \(a single column: wrong format", read_table, p,
              "text", "label")
    with pytest.raises(ConfigError, match="unknown encoding"):
        read_table(p, "text", "label", encoding="utf-9")


def test_wrong_number_of_fields(tmp_path):
    p = write(tmp_path / "a.tsv", "text\tlabel\ngood\t1\nbad\twith\ttabs\t0\n")
    raises_at(p, 3, "expected 2 tab-separated fields.*found 4", read_table, p, "text", "label")


def test_bad_json_and_non_object_and_missing_key(tmp_path):
    p = write(tmp_path / "a.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": \n')
    raises_at(p, 2, "bad JSON", read_table, p, "text", "label")
    p = write(tmp_path / "b.jsonl", '{"text": "a", "label": 1}\n["b", 1]\n')
    raises_at(p, 2, "expected a JSON object, found list", read_table, p, "text", "label")
    p = write(tmp_path / "c.jsonl", '{"text": "a", "label": 1}\n{"txt": "b", "label": 1}\n')
    raises_at(p, 2, "key 'text' not found; keys: txt, label", read_table, p, "text", "label")
    p = write(tmp_path / "d.jsonl", '{"text": "a", "label": null}\n')
    raises_at(p, 1, "label must be a string", read_table, p, "text", "label")


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_file(tmp_path, content):
    p = write(tmp_path / "a.tsv", content)
    with pytest.raises(DataError, match="empty") as info:
        read_table(p, "text", "label")
    assert str(p) in str(info.value)


def test_header_only_file(tmp_path):
    p = write(tmp_path / "a.csv", "text,label\n")
    with pytest.raises(DataError, match="no rows"):
        read_table(p, "text", "label")


def test_empty_text_and_empty_label(tmp_path):
    p = write(tmp_path / "a.tsv", "text\tlabel\ngood\t1\n  \t0\n")
    raises_at(p, 3, "empty text", read_table, p, "text", "label")
    p = write(tmp_path / "b.tsv", "text\tlabel\ngood\t\n")
    raises_at(p, 2, "empty label", read_table, p, "text", "label")


def test_skip_mode_counts_and_reasons(tmp_path):
    lines = ["text\tlabel", "ok one\t1", "\t0", "too\tmany\tfields", "ok two\t0", "x\t"]
    lines += [f"\t{i}" for i in range(10)] + ["ok three\t1"]
    p = write(tmp_path / "a.tsv", "\n".join(lines) + "\n")
    t = read_table(p, "text", "label", on_error="skip")
    assert t.texts == ["ok one", "ok two", "ok three"]
    assert t.lines == [2, 5, 17]
    assert t.skipped == 13
    assert len(t.skip_reasons) == 5
    assert t.skip_reasons[0] == f"{p}:3: empty text"
    assert t.skip_reasons[1].startswith(f"{p}:4: expected 2")


def test_skip_mode_with_nothing_left(tmp_path):
    p = write(tmp_path / "a.jsonl", "{bad\n[1]\n")
    with pytest.raises(DataError, match="no usable rows; 2 skipped"):
        read_table(p, "text", "label", on_error="skip")


def test_bad_on_error_and_bad_fmt(tmp_path):
    p = write(tmp_path / "a.tsv", "text\tlabel\nx\t1\n")
    with pytest.raises(ConfigError, match="on_error"):
        read_table(p, "text", "label", on_error="ignore")
    with pytest.raises(ConfigError, match="csv, json, jsonl, tsv"):
        read_table(p, "text", "label", fmt="xlsx")


# -- parallel text ---------------------------------------------------------------------------

def test_parallel_keeps_tabs(tmp_path):
    src = write(tmp_path / "a.en", "A dog .\nTwo\tcats .\n")
    tgt = write(tmp_path / "a.de", "Ein Hund .\nZwei Katzen .\n")
    d = read_parallel(src, tgt)
    assert d.sources == ["A dog .", "Two\tcats ."]
    assert d.targets == ["Ein Hund .", "Zwei Katzen ."]
    assert d.lines == [1, 2] and len(d) == 2


def test_parallel_mismatched_counts_names_both_files(tmp_path):
    src = write(tmp_path / "a.en", "one\ntwo\nthree\n")
    tgt = write(tmp_path / "a.de", "eins\nzwei\n")
    with pytest.raises(DataError) as info:
        read_parallel(src, tgt)
    msg = str(info.value)
    assert str(src) in msg and str(tgt) in msg and "3" in msg and "2" in msg


def test_parallel_empty_line_names_its_file(tmp_path):
    src = write(tmp_path / "a.en", "one\ntwo\nthree\n")
    tgt = write(tmp_path / "a.de", "eins\n \ndrei\n")
    raises_at(tgt, 2, "empty sentence", read_parallel, src, tgt)
    d = read_parallel(src, tgt, on_error="skip")
    assert d.sources == ["one", "three"] and d.lines == [1, 3] and d.skipped == 1


def test_json_splits_of_pairs_selected_and_joined(tmp_path):
    p = write(tmp_path / "d.json", json.dumps({"train": [["hi", "greet"], ["bye", "leave"]], "oos_train": [["x", "oos"]],
                                               "val": [["hey", "greet"]]}))
    t = read_table(f"{p}#train+oos_train", "text", "label")
    assert t.texts == ["hi", "bye", "x"] and t.labels == ["greet", "leave", "oos"] and t.lines == [1, 2, 3]
    assert read_table(p, "text", "label").texts == ["x", "hi", "bye", "hey"]  # every split, sorted by name
    bad = write(tmp_path / "b.json", json.dumps({"train": [["only text"]]}))
    with pytest.raises(DataError, match=r"b.json:1: train: expected \[text, label\] or an object"):
        read_table(f"{bad}#train", "text", "label")
    tsv = write(tmp_path / "c.tsv", "text\tlabel\nx\t1\n")
    with pytest.raises(ConfigError, match="selects splits of a .json file only"):
        read_table(f"{tsv}#train", "text", "label")
