"""What ``predict`` and ``explain`` do with ordinary problems in their inputs, through the CLI
as a user runs it: one line each, never a traceback, and nothing dropped without a word."""
import json

from tests.fuzz.contract import check_cli


def test_predict_input_that_is_not_utf8_is_detected_or_names_the_line(text_run, tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes("a good film\n".encode() + "caf\xe9 dull\n".encode("latin-1"))
    o = check_cli("predict non-utf8", ["predict", text_run, "--input", path, "--json"])
    assert o.code == 0 and [json.loads(line)["text"] for line in o.out.splitlines()] == ["a good film", "caf\xe9 dull"]
    assert "in.txt: read as cp1252" in o.err
    o = check_cli("predict non-utf8", ["predict", text_run, "--input", path, "--encoding", "utf-8"])
    assert o.code == 2 and "in.txt:2: cannot decode byte 0xe9 (column 4) as utf-8" in o.err


def test_predict_blank_lines_are_counted_not_dropped_silently(text_run, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("a good film\n\n   \nthe film was dull\n", encoding="utf-8")
    o = check_cli("predict blank lines", ["predict", text_run, "--input", path, "--json"])
    assert o.code == 0 and len(o.out.strip().split("\n")) == 2
    assert "skipped 2 blank line(s) (line 2, 3)" in o.err


def test_long_and_empty_texts_are_said(text_run):
    o = check_cli("predict long and empty", ["predict", text_run, "--json", "--", "good " * 12000, ""])
    assert o.code == 0 and len(o.out.strip().split("\n")) == 2
    assert "1 of 2 input(s) are longer than the limit (10,000 words (data.max_len is not set))" in o.err
    assert "1 input(s) are empty (input 2)" in o.err


def test_ig_on_a_long_text_refuses_at_once(text_run):
    o = check_cli("explain ig long", ["explain", text_run, "good " * 400, "--method", "ig"])
    assert o.code == 2 and "ig explains at most 256" in o.err and "--method saliency" in o.err


def test_text_given_to_an_image_run(image_run):
    for cmd in (["predict", image_run, "a digit"], ["explain", image_run, "a digit"]):
        o = check_cli("text to an image run", cmd)
        assert o.code == 2 and "an image run takes images" in o.err


def test_predict_json_keeps_every_input_in_order(text_run):
    texts = ["the film was good", "é ü 中文", "  spaced  "]
    o = check_cli("predict order", ["predict", text_run, "--json", "--", *texts])
    assert [json.loads(line)["text"] for line in o.out.strip().split("\n")] == texts
