"""Reading a stream: timestamps, formats, bad lines named by file and line, growing files."""
import json
from datetime import datetime, timezone

import pytest

from attnkit.errors import DataError
from attnkit.monitor.stream import Columns, parse_time, read_from, stream_format


@pytest.mark.parametrize("value, expected", [
    ("2026-11-30", datetime(2026, 11, 30, tzinfo=timezone.utc)),
    ("2026-11-30T09:15:00Z", datetime(2026, 11, 30, 9, 15, tzinfo=timezone.utc)),
    ("2026-11-30 09:15:00+01:00", datetime(2026, 11, 30, 8, 15, tzinfo=timezone.utc)),
    ("1764494100", datetime(2025, 11, 30, 9, 15, tzinfo=timezone.utc)),
    (1764494100.5, datetime(2025, 11, 30, 9, 15, 0, 500000, tzinfo=timezone.utc)),
    (1764494100500, datetime(2025, 11, 30, 9, 15, 0, 500000, tzinfo=timezone.utc)),  # milliseconds
    ("1764494100500", datetime(2025, 11, 30, 9, 15, 0, 500000, tzinfo=timezone.utc)),
])
def test_parse_time_reads_iso_and_epoch_seconds(value, expected):
    assert parse_time(value) == pytest.approx(expected.timestamp())


@pytest.mark.parametrize("value, says", [("", "empty"), ("yesterday", "neither ISO 8601"), (None, "no timestamp"),
                                         ("2026-13-01", "neither ISO 8601"), ("nan", "not a time between"),
                                         (float("nan"), "not a time between"), ("inf", "not a time between"),
                                         (-5, "not a time between"), (1e16, "not a time between")])
def test_parse_time_says_what_is_wrong(value, says):
    with pytest.raises(ValueError, match=says):
        parse_time(value)


def test_bad_lines_are_skipped_with_their_line_number(tmp_path):
    p = tmp_path / "s.jsonl"
    lines = [json.dumps({"timestamp": "2026-01-01", "text": "fine", "entity": "A"}),
             json.dumps({"text": "no time"}),
             json.dumps({"timestamp": "soon", "text": "bad time"}),
             "{broken",
             json.dumps(["a", "list"]),
             json.dumps({"timestamp": "2026-01-02", "text": "  "}),
             "",
             json.dumps({"timestamp": 1767312000, "text": "epoch, no entity"})]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    chunk = read_from(p, 0, 0, Columns())
    assert [r.line for r in chunk.records] == [1, 8]
    assert chunk.records[0].entity == "A" and chunk.records[1].entity == ""
    reasons = dict(chunk.skipped)
    assert sorted(reasons) == [2, 3, 4, 5, 6]
    assert "no timestamp" in reasons[2] and "'soon'" in reasons[3] and "not JSON" in reasons[4]
    assert "not a JSON object" in reasons[5] and "no text" in reasons[6]
    assert chunk.offset == p.stat().st_size and chunk.lines == 8


def test_a_growing_file_is_read_from_where_it_stopped_and_a_partial_line_waits(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("when,text,company\n2026-01-01,one,A\n2026-01-02,two", encoding="utf-8")
    cols = Columns(time="when", entity="company")
    first = read_from(p, 0, 0, cols)
    assert [r.text for r in first.records] == ["one"]  # "two" has no newline yet
    with open(p, "a", encoding="utf-8") as f:
        f.write(",B\n2026-01-03,\"three, with a comma\",C\n")
    second = read_from(p, first.offset, first.lines, cols)
    assert [(r.line, r.text, r.entity) for r in second.records] == [(3, "two", "B"), (4, "three, with a comma", "C")]


def test_csv_rows_with_the_wrong_number_of_fields_and_undecodable_bytes_are_skipped(tmp_path):
    p = tmp_path / "s.tsv"
    p.write_bytes(b"timestamp\ttext\n2026-01-01\tok\n2026-01-01\ttoo\tmany\n2026-01-01\tcaf\xe9\n")
    chunk = read_from(p, 0, 0, Columns())
    assert [r.text for r in chunk.records] == ["ok"]
    reasons = dict(chunk.skipped)
    assert "3 fields where the header has 2" in reasons[3] and "not utf-8" in reasons[4]


def test_a_csv_without_the_named_columns_is_one_clear_error(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("date,body\n2026-01-01,x\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"s.csv:1: no column --time-column 'timestamp' or --text-column 'text'.*"
                                        r"columns: date, body"):
        read_from(p, 0, 0, Columns())


def test_unknown_stream_format_is_named(tmp_path):
    with pytest.raises(DataError, match="a stream is .csv, .tsv or .jsonl"):
        stream_format(tmp_path / "s.xlsx")


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    p = tmp_path / "s.csv"
    p.write_bytes("timestamp,text\n2026-01-01,ok\n".encode("utf-8-sig"))
    assert [r.text for r in read_from(p, 0, 0, Columns()).records] == ["ok"]
