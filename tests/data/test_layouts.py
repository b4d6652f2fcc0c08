"""Labels in file and folder names: one file per class (``x.pos``, ``x.neg``), one folder per
class (``train/pos/1.txt``)."""
import pytest

from attnkit.data import read_table
from attnkit.data.layouts import is_glob, label_of_file, layout_of, read_folder_per_label, read_label_per_file
from attnkit.errors import ConfigError, DataError


@pytest.mark.parametrize("name, label", [("rt-polarity.pos", "pos"), ("pos.txt", "pos"), ("neg", "neg"),
                                         ("train.neg.txt", "neg"), ("a.pos.gz", "pos"), ("spam.txt.gz", "spam")])
def test_label_of_file(name, label):
    assert label_of_file(name) == label


def test_one_file_per_class_by_glob(tmp_path):
    (tmp_path / "rt.pos").write_text("a great film\n\nloved it\n", encoding="utf-8")
    (tmp_path / "rt.neg").write_bytes("a dull film \u2013 awful\n".encode("cp1252"))
    data = read_label_per_file(str(tmp_path / "rt.*"))
    assert sorted(zip(data.texts, data.labels)) == [("a dull film \u2013 awful", "neg"), ("a great film", "pos"),
                                                    ("loved it", "pos")]
    assert data.lines == [1, 1, 3]  # each text's line in its own file (neg first: files are sorted)
    assert layout_of(str(tmp_path / "rt.*")) == "files" and layout_of(tmp_path) == "folders"
    assert layout_of(tmp_path / "rt.pos") is None


def test_one_file_alone_takes_its_label_from_its_name(tmp_path):
    (tmp_path / "x.pos").write_text("good\nfine\n", encoding="utf-8")
    assert read_label_per_file(tmp_path / "x.pos").labels == ["pos", "pos"]


def test_files_errors_name_the_pattern(tmp_path):
    with pytest.raises(DataError, match=r"no file matches this pattern"):
        read_label_per_file(str(tmp_path / "nothing.*"))
    (tmp_path / "a.pos").write_text("x\n")
    (tmp_path / "b.pos").write_text("y\n")
    with pytest.raises(DataError, match=r"all give the label 'pos'; one file per class"):
        read_label_per_file(str(tmp_path / "*.pos"))


def test_one_folder_per_class(tmp_path):
    for label, texts in (("pos", ["great\nfilm", "loved it"]), ("neg", ["dull", ""])):
        (tmp_path / label).mkdir()
        for i, t in enumerate(texts):
            (tmp_path / label / f"{i}.txt").write_text(t, encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README").write_text("not a class")
    with pytest.raises(DataError, match=r"neg/1.txt: empty file"):
        read_folder_per_label(tmp_path)
    data = read_folder_per_label(tmp_path, on_error="skip")
    assert list(zip(data.texts, data.labels)) == [("dull", "neg"), ("great\nfilm", "pos"), ("loved it", "pos")]
    assert data.skipped == 1


def test_a_folder_without_class_folders_says_what_it_found(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(DataError, match=r"no class folders inside .* found: a.txt"):
        read_folder_per_label(tmp_path)


def test_an_unknown_suffix_names_the_options_users_have(tmp_path):
    (tmp_path / "x.pos").write_text("good\n")
    with pytest.raises(ConfigError, match=r"suffix 'pos'; set it \(data.format in a config, --format on the command "
                                          r"line\) to one of .*, or to files for one file per class"):
        read_table(tmp_path / "x.pos", "text", "label")


def test_json_pairs_take_any_column_names(tmp_path):
    # [text, label] pairs have no names: the configured columns (here a CSV's names) take their places
    p = tmp_path / "d.json"
    p.write_text('{"train": [["refund my card", "billing"]], "oos": [["hi", "oos"]]}', encoding="utf-8")
    t = read_table(str(p) + "#train", "utterance", "category")
    assert (t.texts, t.labels) == (["refund my card"], ["billing"])
    assert read_table(str(p) + "#train", "utterance", None).labels is None


def test_brackets_are_names_not_patterns(tmp_path):
    (tmp_path / "x[1]").mkdir()
    (tmp_path / "x[1]" / "a.pos").write_text("good\n", encoding="utf-8")
    (tmp_path / "x[1]" / "a.neg").write_text("bad\n", encoding="utf-8")
    assert read_label_per_file(str(tmp_path / "x[1]" / "a.*")).labels == ["neg", "pos"]
    assert not is_glob(str(tmp_path / "train[1x].tsv"))  # a missing file with brackets: not found, not a glob
    assert not is_glob(str(tmp_path / "dat[a].json#train"))
    assert is_glob(str(tmp_path / "a.*"))


def test_images_in_a_text_folder_point_to_the_image_task(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "1.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(DataError, match=r"1.png: an image in a text data set; .* task: image_classification"):
        read_folder_per_label(tmp_path)


def test_evaluating_a_glob_names_its_result_file_safely(tmp_path):
    from attnkit.run_files import RunFiles

    assert RunFiles(tmp_path).eval_of("data/rt.*").name == "eval-rt._.json"
