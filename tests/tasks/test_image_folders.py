"""Images in one folder per class: the reader (shapes, labels, grey vs RGB, sizes, damaged
files, bad layouts) and the image task on such folders (train, evaluate, MNIST unchanged)."""
import json

import numpy as np
import pytest
from PIL import Image

from attnkit.data.images import read_image_folder
from attnkit.errors import ConfigError, DataError
from attnkit.evaluate import evaluate_run
from attnkit.run import load_run, predict, train
from attnkit.tasks import get_task, run_config
from attnkit.tasks.image_classification import match_channels
from tests.run.conftest import make_mnist_folder

CLASSES = ("fox", "cat", "dog")  # made in this order: the reader sorts them


def pattern(k: int, rng, size: int = 8) -> np.ndarray:
    """Class k: a bright band of rows 3k..3k+2 (wrapping at the bottom) on a dark, noisy square."""
    a = rng.integers(0, 50, (size, size))
    a[[(3 * k + i) % size for i in range(3)]] += 190
    return a.astype(np.uint8)


def make_class_folders(root, n=6, size=8, classes=CLASSES, seed=0):
    """``root/<class>/<i>.png``: ``n`` grey ``size`` x ``size`` images per class; the class id
    is the band's place in sorted order."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True)
        k = sorted(CLASSES).index(name)
        for i in range(n):
            Image.fromarray(pattern(k, rng, size), "L").save(root / name / f"{i:03d}.png")
    return root


def test_grey_classes_sorted_with_labels_paths_and_pixels(tmp_path):
    root = make_class_folders(tmp_path / "train", n=3)
    (root / "cat" / "sub").mkdir()
    Image.new("L", (8, 8), 7).save(root / "cat" / "sub" / "deep.PNG")  # nested, upper-case suffix: read
    (root / ".hidden").mkdir()
    Image.new("L", (8, 8)).save(root / ".hidden" / "x.png")  # a hidden folder is no class
    Image.new("L", (8, 8)).save(root / "loose.png")  # a file directly in the folder is ignored
    (root / "dog" / "notes.txt").write_text("not an image")
    Image.new("L", (8, 8)).save(root / "dog" / "._001.png")  # macOS resource fork: hidden, ignored
    d = read_image_folder(root)
    assert d.names == ["cat", "dog", "fox"]
    assert d.images.shape == (10, 8, 8) and d.images.dtype == np.uint8
    assert d.labels.dtype == np.int64 and d.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert d.paths[3].endswith("cat/sub/deep.PNG") and (d.images[3] == 7).all()
    assert d.paths[4].endswith("dog/000.png")
    np.testing.assert_array_equal(d.images[4], np.asarray(Image.open(root / "dog" / "000.png")))
    assert d.skipped == 0 and d.skip_reasons == [] and len(d) == 10


def test_numeric_class_names_sort_as_numbers(tmp_path):
    for name in ("10", "9", "2"):
        (tmp_path / name).mkdir()
        Image.new("L", (4, 4), int(name)).save(tmp_path / name / "a.png")
    d = read_image_folder(tmp_path)
    assert d.names == ["2", "9", "10"] and d.images[:, 0, 0].tolist() == [2, 9, 10]


def test_one_colour_image_makes_the_whole_set_rgb(tmp_path):
    root = make_class_folders(tmp_path / "train", n=2)
    Image.new("RGB", (8, 8), (200, 10, 30)).save(root / "dog" / "red.png")
    d = read_image_folder(root)
    assert d.images.shape == (7, 3, 8, 8)
    red = d.paths.index(str(root / "dog" / "red.png"))
    assert d.images[red, :, 0, 0].tolist() == [200, 10, 30]
    grey = d.images[0]
    assert (grey[0] == grey[1]).all() and (grey[1] == grey[2]).all()
    np.testing.assert_array_equal(grey[0], np.asarray(Image.open(d.paths[0])))


def test_grey_palette_and_16_bit_images_stay_grey(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("L", (4, 4), 90).convert("P").save(tmp_path / "a" / "palette.gif")
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "a" / "sixteen.png")
    d = read_image_folder(tmp_path)
    assert d.images.shape == (2, 4, 4)
    assert d.images[0, 0, 0] == 90 and d.images[1, 0, 0] == 255  # 16 bits scaled, not clipped


def test_different_sizes_name_the_file_both_sizes_and_the_fix(tmp_path):
    root = make_class_folders(tmp_path / "train", n=2)
    Image.new("L", (10, 6)).save(root / "dog" / "wide.png")
    with pytest.raises(DataError, match=r"dog/wide.png: image is 10x6 but \S+cat/000.png is 8x8 \(width x height\); "
                                        r"set data.image_size: N"):
        read_image_folder(root)


def test_size_resizes_every_image(tmp_path):
    root = make_class_folders(tmp_path / "train", n=2)
    Image.new("L", (10, 6), 200).save(root / "dog" / "wide.png")
    d = read_image_folder(root, size=5)
    assert d.images.shape == (7, 5, 5)
    assert (d.images[d.paths.index(str(root / "dog" / "wide.png"))] == 200).all()
    with pytest.raises(ConfigError, match="size must be a positive integer"):
        read_image_folder(root, size=0)


def test_damaged_image_raises_or_is_skipped(tmp_path):
    root = make_class_folders(tmp_path / "train", n=2)
    (root / "cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"cat/bad.png: not a readable image"):
        read_image_folder(root)
    d = read_image_folder(root, on_error="skip")
    assert len(d) == 6 and d.skipped == 1 and "bad.png" in d.skip_reasons[0]
    assert not any(p.endswith("bad.png") for p in d.paths)
    with pytest.raises(ConfigError, match="on_error must be one of raise, skip"):
        read_image_folder(root, on_error="ignore")


def test_no_class_folders_or_no_images_is_an_error(tmp_path):
    flat, nothing, root = tmp_path / "flat", tmp_path / "nothing", tmp_path / "root"
    for folder in (flat, nothing, root / "cat"):
        folder.mkdir(parents=True)
    Image.new("L", (4, 4)).save(flat / "a.png")
    (flat / "b.txt").write_text("x")
    with pytest.raises(DataError, match=r"flat: no class folders, found 2 files \(a.png, b.txt\); put the images of "
                                        r"each class in a sub-folder"):
        read_image_folder(flat)
    with pytest.raises(DataError, match="nothing: no class folders, found nothing"):
        read_image_folder(nothing)
    (root / "cat" / "x.txt").write_text("x")
    with pytest.raises(DataError, match=r"root: no image files in the class folders cat \(looked for .png"):
        read_image_folder(root)
    (root / "cat" / "bad.jpg").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"root: no usable images; 1 skipped, first: \S+bad.jpg: not a readable"):
        read_image_folder(root, on_error="skip")
    with pytest.raises(DataError, match="nope: folder not found"):
        read_image_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="a.png: not a folder"):
        read_image_folder(flat / "a.png")


def config(train_folder, **data):
    return {"task": "image_classification", "data": {"train": str(train_folder), **data},
            "model": {"encoder": {"type": "image_cnn", "channels": [8, 16]}, "pooler": {"type": "attention"}},
            "train": {"epochs": 4, "batch_size": 8, "optimizer": {"lr": 0.01}, "report": False}}


def test_train_on_class_folders_then_evaluate_folders(tmp_path):
    train_folder = make_class_folders(tmp_path / "train", n=20)
    test_folder = make_class_folders(tmp_path / "test", n=6, seed=1)
    result = train(config(train_folder, dev_fraction=0.2), out=tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    assert run.featurized.labels == ["cat", "dog", "fox"]
    assert json.loads((tmp_path / "run" / "labels.json").read_text())["itos"] == ["cat", "dog", "fox"]
    assert run.meta["sizes"] == {"num_classes": 3, "in_channels": 1}
    assert result.dev["accuracy"] >= 0.9 and result.test is None
    assert evaluate_run(tmp_path / "run", test_folder)["accuracy"] >= 0.9
    # a folder of only some classes maps its names onto the run's: fox stays class 2, not 0
    only_fox = make_class_folders(tmp_path / "fox_only", n=6, classes=("fox",), seed=2)
    assert evaluate_run(tmp_path / "run", only_fox)["accuracy"] >= 0.9
    # colour images scored by a grey run are converted to grey
    colour = tmp_path / "colour"
    for path in sorted(test_folder.rglob("*.png")):
        (colour / path.parent.name).mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("RGB").save(colour / path.parent.name / path.name)
    assert evaluate_run(tmp_path / "run", colour)["accuracy"] >= 0.9
    unknown = make_class_folders(tmp_path / "birds", n=1, classes=("cat",))
    (unknown / "cat").rename(unknown / "bird")
    with pytest.raises(DataError, match=r"birds/bird: label 'bird' not seen in training data; known: 'cat', 'dog'"):
        evaluate_run(tmp_path / "run", unknown)


def test_colour_folders_train_an_rgb_model_resized_by_image_size(tmp_path):
    rng = np.random.default_rng(0)
    for k, name in enumerate(("blue", "green", "red")):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(12):
            a = rng.integers(0, 40, (9, 7, 3)).astype(np.uint8)
            a[..., 2 - k] += 180
            Image.fromarray(a, "RGB").save(tmp_path / "train" / name / f"{i}.png")
    result = train(config(tmp_path / "train", image_size=8), out=tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    assert run.featurized.labels == ["blue", "green", "red"] and run.meta["sizes"]["in_channels"] == 3
    assert result.dev["accuracy"] >= 0.9
    assert evaluate_run(tmp_path / "run", tmp_path / "train")["accuracy"] >= 0.9  # read with the run's image_size
    red = np.asarray(Image.open(tmp_path / "train" / "red" / "0.png").resize((8, 8))).transpose(2, 0, 1)
    assert [p["label"] for p in predict(tmp_path / "run", red)] == ["red"]  # one [3, H, W] image


def test_dev_and_test_folders_and_their_errors(tmp_path):
    train_folder = make_class_folders(tmp_path / "train", n=4)
    dev = make_class_folders(tmp_path / "dev", n=2, classes=("dog", "cat"), seed=1)
    test = make_class_folders(tmp_path / "test", n=2, seed=2)
    cfg = run_config(config(train_folder, dev=str(dev), test=str(test)))
    task = get_task("image_classification")
    tr, dv, ts = task.read_splits(cfg)
    assert (len(tr.images), len(dv.images), len(ts.images)) == (12, 4, 6)
    assert task.examples(dv)[1] == ["cat", "cat", "dog", "dog"]
    fz = task.fit(cfg, tr)
    assert task.encode(fz, dv).labels.tolist() == [0, 0, 1, 1]

    (dev / "cat").rename(dev / "bird")
    with pytest.raises(DataError, match=r"data.dev: class folder\(s\) bird of \S+dev are not classes of the training "
                                        r"data \S+train \(classes: cat, dog, fox\)"):
        train(config(train_folder, dev=str(dev)), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    big = make_class_folders(tmp_path / "big", n=1, size=10)
    with pytest.raises(DataError, match=r"data.test: images in \S+big are 10x10 but the training images in \S+train "
                                        r"are 8x8; set data.image_size: N"):
        task.read_splits(run_config(config(train_folder, test=str(big))))
    sized = task.read_splits(run_config(config(train_folder, test=str(big), image_size=6)))
    assert sized[0].images.shape[1:] == (6, 6) and sized[2].images.shape[1:] == (6, 6)
    (train_folder / "empty").mkdir()
    with pytest.raises(DataError, match=r"data.train: class folder\(s\) empty of \S+ hold no readable images"):
        task.read_splits(cfg)


def test_explicit_format_and_layout_errors(tmp_path):
    task = get_task("image_classification")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (4, 4)).save(flat / "a.png")
    with pytest.raises(DataError, match="has neither class sub-folders nor IDX files; give one sub-folder of images"):
        task.read_splits(run_config(config(flat)))
    with pytest.raises(DataError, match="no class folders, found 1 files"):
        task.read_splits(run_config(config(flat, format="folders")))
    with pytest.raises(ConfigError, match="image classification reads one sub-folder of images per class .* or an "
                                          "MNIST-style folder of IDX files"):
        task.read_splits(run_config(config(flat, format="tsv")))


def test_mnist_folders_read_as_before(tmp_path):
    folder = make_mnist_folder(tmp_path)
    task = get_task("image_classification")
    cfg = run_config(config(folder))  # no format: IDX files, not class folders
    tr, dv, ts = task.read_splits(cfg)
    assert tr.names is None and tr.images.shape[1:] == (12, 12) and len(tr.images) + len(dv.images) == 240
    assert len(ts.images) == 60
    fz = task.fit(cfg, tr)
    assert fz.labels == ["0", "1", "2", "3"] and fz.sizes["in_channels"] == 1
    assert task.examples(ts)[1][:3] == [str(int(x)) for x in ts.labels[:3]]
    assert task.encode(fz, task.read_file(cfg, folder)).labels.tolist() == ts.labels.tolist()


def test_match_channels():
    rgb = np.zeros((2, 3, 4, 4), np.uint8)
    rgb[:, 0] = 255
    assert match_channels(rgb, 1, "x").shape == (2, 4, 4) and match_channels(rgb, 1, "x")[0, 0, 0] == 76
    grey = np.full((2, 4, 4), 9, np.uint8)
    assert match_channels(grey, 3, "x").shape == (2, 3, 4, 4) and match_channels(grey, 1, "x") is grey
    with pytest.raises(DataError, match="x: images have 2 channels but the model reads 3"):
        match_channels(np.zeros((1, 2, 4, 4), np.uint8), 3, "x")
