"""CoNLL reader and tag schemes (BIO check, IOB1 -> BIO conversion)."""
import pytest

from attnkit.data import TAG_SCHEMES, iob1_to_bio, read_conll
from attnkit.data.conll import TagError, check_bio
from attnkit.errors import ConfigError, DataError, UnknownNameError

GOOD = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER


BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O"""  # no final newline, like the real files


def write(tmp_path, text, name="a.txt"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_reads_sentences_tags_and_start_lines(tmp_path):
    d = read_conll(write(tmp_path, GOOD))
    assert d.sentences == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"],
                           ["BRUSSELS", "1996-08-22"]]
    assert d.tags == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"], ["B-LOC", "O"]]
    assert d.lines == [3, 8, 12]
    assert len(d) == 3 and d.skipped == 0


def test_other_columns_and_no_scheme(tmp_path):
    d = read_conll(write(tmp_path, GOOD), tag_column=1, scheme="none")
    assert d.tags[0] == ["NNP", "VBZ", "JJ", "NN"]
    d = read_conll(write(tmp_path, GOOD), tag_column=2)
    assert d.tags[1] == ["B-NP", "I-NP"]


def test_tab_separated_and_docstart_without_blank(tmp_path):
    d = read_conll(write(tmp_path, "a\tO\nb\tB-X\n-DOCSTART-\tO\nc\tO\n"))
    assert d.sentences == [["a", "b"], ["c"]] and d.lines == [1, 4]


@pytest.mark.parametrize("iob1, bio", [
    (["I-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),          # entity at sentence start
    (["O", "I-ORG", "I-ORG"], ["O", "B-ORG", "I-ORG"]),          # entity after O
    (["I-PER", "I-LOC"], ["B-PER", "B-LOC"]),                     # type change
    (["I-PER", "B-PER", "I-PER"], ["B-PER", "B-PER", "I-PER"]),  # adjacent same-type entities
    (["B-MISC", "I-MISC"], ["B-MISC", "I-MISC"]),                 # already BIO: unchanged
    (["O", "O"], ["O", "O"]),
    ([], []),
])
def test_iob1_to_bio(iob1, bio):
    assert iob1_to_bio(iob1) == bio
    assert check_bio(bio) == bio  # the result is valid BIO


def test_iob1_scheme_in_reader(tmp_path):
    d = read_conll(write(tmp_path, "EU I-ORG\nrejects O\nGerman I-MISC\nPeter I-PER\n"),
                   scheme="iob1")
    assert d.tags == [["B-ORG", "O", "B-MISC", "B-PER"]]


@pytest.mark.parametrize("tags, index, match", [
    (["O", "I-PER"], 1, "follows 'O'.*scheme='iob1'"),
    (["I-PER"], 0, "starts the sentence"),
    (["B-PER", "I-LOC"], 1, "follows 'B-PER'"),
    (["B-PER", "X-PER"], 1, "not O, B-TYPE or I-TYPE"),
    (["B-"], 0, "not O, B-TYPE or I-TYPE"),
])
def test_bad_bio(tags, index, match):
    with pytest.raises(TagError, match=match) as info:
        check_bio(tags)
    assert info.value.index == index


def test_bad_tag_names_file_and_line(tmp_path):
    p = write(tmp_path, "a O\n\nb O\nc I-PER\n")
    with pytest.raises(DataError, match="follows 'O'") as info:
        read_conll(p)
    assert f"{p}:4:" in str(info.value)


def test_inconsistent_columns_and_missing_column(tmp_path):
    p = write(tmp_path, "a NN O\nb NN O\n\nc O\n")
    with pytest.raises(DataError, match="2 columns, but line 1 has 3") as info:
        read_conll(p)
    assert f"{p}:4:" in str(info.value)
    p = write(tmp_path, "a O\n", name="b.txt")
    with pytest.raises(DataError, match="no tag column 3") as info:
        read_conll(p, tag_column=3)
    assert f"{p}:1:" in str(info.value)


def test_skip_mode_drops_whole_sentences(tmp_path):
    p = write(tmp_path, "a O\nb O\n\nc NN O\nd O\n\ne I-PER\n\nf B-PER\n")
    d = read_conll(p, on_error="skip")
    assert d.sentences == [["a", "b"], ["f"]]
    assert d.lines == [1, 9]
    assert d.skipped == 2
    assert d.skip_reasons[0].startswith(f"{p}:4:")
    assert d.skip_reasons[1].startswith(f"{p}:7:")


@pytest.mark.parametrize("text", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_empty_file(tmp_path, text):
    p = write(tmp_path, text)
    with pytest.raises(DataError, match="empty|no sentences") as info:
        read_conll(p)
    assert str(p) in str(info.value)


def test_missing_file_and_bad_options(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_conll(tmp_path / "missing.txt")
    p = write(tmp_path, "a O\n")
    with pytest.raises(UnknownNameError, match="bio, iob1, none"):
        read_conll(p, scheme="bioes")
    with pytest.raises(ConfigError, match="on_error"):
        read_conll(p, on_error="warn")
    assert TAG_SCHEMES.names() == ["bio", "iob1", "none"]
