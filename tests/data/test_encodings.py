"""``encoding: auto``: UTF-8, Windows-1252, Latin-1, UTF-16 and another code page told apart,
and the advice a decoding error gives."""
import gzip

import pytest

from attnkit.data import read_table
from attnkit.data.encodings import Detected, detect_encoding, resolve_encoding, western
from attnkit.errors import ConfigError, DataError

TEXT = "text,label\n\u201cCaf\u00e9\u201d \u2013 cr\u00e8me br\u00fbl\u00e9e \u20ac5,pos\nna\u00efve r\u00e9sum\u00e9,neg\n"


def write(tmp_path, name, text, encoding):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


@pytest.mark.parametrize("encoding, expected", [("utf-8", "utf-8"), ("utf-16", "utf-16"), ("utf-8-sig", "utf-8-sig"),
                                                ("cp1252", "cp1252")])
def test_detects_the_encoding_and_reads_the_same_text(tmp_path, encoding, expected):
    p = write(tmp_path, f"{encoding}.csv", TEXT, encoding)
    assert detect_encoding(p).encoding == expected
    table = read_table(p, "text", "label", encoding="auto")
    assert table.texts == ["\u201cCaf\u00e9\u201d \u2013 cr\u00e8me br\u00fbl\u00e9e \u20ac5", "na\u00efve r\u00e9sum\u00e9"]


def test_latin1_letters_read_as_cp1252_give_the_same_text(tmp_path):
    # no byte in 0x80-0x9F: Latin-1 and Windows-1252 decode alike, so cp1252 (the superset) is right
    p = write(tmp_path, "l1.csv", "text,label\nna\u00efve r\u00e9sum\u00e9 \u00e0 la fran\u00e7aise,pos\n", "latin-1")
    found = detect_encoding(p)
    assert found.encoding == "cp1252" and "same letters" in found.reason
    assert read_table(p, "text", "label", encoding="auto").texts == ["na\u00efve r\u00e9sum\u00e9 \u00e0 la fran\u00e7aise"]


def test_the_western_rule():
    assert western("caf\u00e9 \u201cok\u201d".encode("cp1252")) == Detected(
        "cp1252", "not UTF-8; bytes 0x80-0x9F are Windows-1252 punctuation")
    assert western(b"caf\xe9 \x81 ok").encoding == "latin-1"  # 0x81 is undefined in Windows-1252


def test_a_cyrillic_code_page_is_not_taken_for_western(tmp_path):
    text = "text,label\n" + "Привет, как дела? Это тестовая строка для проверки кодировки файла.,a\n" * 5
    p = write(tmp_path, "ru.csv", text, "cp1251")
    assert detect_encoding(p).encoding == "cp1251"


def test_gzip_and_resolve(tmp_path):
    p = tmp_path / "x.csv.gz"
    with gzip.open(p, "wb") as f:
        f.write(TEXT.encode("cp1252"))
    assert resolve_encoding(p, "auto") == "cp1252"
    assert resolve_encoding(p, "utf-8") == "utf-8"  # a named encoding is never second-guessed


def test_a_wrong_named_encoding_gives_the_advice_with_the_option_names(tmp_path):
    p = write(tmp_path, "w.csv", TEXT, "cp1252")
    with pytest.raises(DataError, match=r"w.csv:2: cannot decode byte 0x93 \(column 1\) as utf-8; set the encoding to "
                                        r"auto \(data.encoding in a config, --encoding on the command line\).*cp1252"):
        read_table(p, "text", "label", encoding="utf-8")


def test_unknown_encoding_is_a_config_error(tmp_path):
    p = write(tmp_path, "u.csv", TEXT, "utf-8")
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        read_table(p, "text", "label", encoding="klingon")


def test_bytes_that_are_not_utf8_far_into_a_file_are_found(tmp_path):
    p = tmp_path / "late.csv"
    p.write_bytes(b"text,label\n" + b"plain ascii line,pos\n" * 60_000 + "caf\u00e9 \u2013 late,neg\n".encode("cp1252"))
    assert p.stat().st_size > 1 << 20
    assert detect_encoding(p).encoding == "cp1252"
    assert read_table(p, "text", "label", encoding="auto").texts[-1] == "caf\u00e9 \u2013 late"


def test_utf16_without_a_byte_order_mark(tmp_path):
    p = tmp_path / "le.csv"
    p.write_bytes(TEXT.encode("utf-16-le"))
    assert detect_encoding(p).encoding == "utf-16-le"
    assert read_table(p, "text", "label", encoding="auto").labels == ["pos", "neg"]


def test_a_json_file_with_a_utf8_bom(tmp_path):
    p = tmp_path / "d.json"
    p.write_bytes(b"\xef\xbb\xbf" + '{"train": [["caf\u00e9", "a"]]}'.encode())
    assert read_table(str(p) + "#train", "text", "label", encoding="auto").texts == ["caf\u00e9"]


def test_a_wrong_detection_does_not_advise_auto(tmp_path, monkeypatch):
    from attnkit.data import encodings

    p = write(tmp_path, "w.csv", TEXT, "cp1252")
    monkeypatch.setattr(encodings, "detect_encoding", lambda path: Detected("utf-8", "forced"))
    with pytest.raises(DataError, match=r"the detected encoding is wrong for this line: name the file's encoding"):
        read_table(p, "text", "label", encoding="auto")
