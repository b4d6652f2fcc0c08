"""Image classification: a folder of class folders, or an MNIST-style folder of IDX files
-> one class per image.

Data: ``data.train: FOLDER`` with one sub-folder of images per class (``train/cat/001.png``;
``format: folders``, or found by itself: sub-folders and no IDX files), resized to
``data.image_size`` when given; ``data.dev``/``data.test`` are folders of the same classes.
Or ``format: mnist``: the train and t10k IDX files, test is t10k. Dev is held out of train
when not given (``data.dev_fraction``, seeded). Pixels are normalised with the training
split's mean and std (saved in ``meta.json``). Model: image CNN -> pooler over the feature
map's positions -> head. Metrics: as text classification."""
from __future__ import annotations

import html
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import data as D
from ..data.images import class_folders, read_image_folder
from ..errors import ConfigError, DataError
from ..models import ImageClassifier
from .base import Encoded, Featurized, Task
from .single_label import SingleLabel, top_scores
from .splits import data_path, holdout, read_split_files

IMAGE_LAYOUTS = "one sub-folder of images per class (data.train: FOLDER, format: folders) or an MNIST-style folder of " \
          "IDX files (format: mnist)"


@dataclass
class ImageSplit:
    """A raw split: uint8 ``images`` ``[N, H, W]`` or ``[N, C, H, W]`` and ``labels``, which index
    ``names`` (a folder's class folders), or are the class ids themselves when ``names`` is
    None (IDX files); ``path`` is where they were read."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str] | None
    path: str

    def subset(self, idx: list[int]) -> ImageSplit:
        """Images ``idx``."""
        return replace(self, images=self.images[idx], labels=self.labels[idx])

    def gold(self) -> list[str]:
        """The class name of each image."""
        if self.names is None:
            return [str(int(x)) for x in self.labels]
        return [self.names[int(x)] for x in self.labels]


def is_idx_file(name: str) -> bool:
    """Whether a file name is an IDX file's (``train-images-idx3-ubyte``, ``.gz`` or not)."""
    return name.lower().removesuffix(".gz").endswith("-ubyte")


def is_class_folders(folder: Path) -> bool:
    """A folder with sub-folders (the classes) and no IDX files."""
    return (folder.is_dir() and not any(is_idx_file(p.name) for p in folder.iterdir())
            and bool(class_folders(folder)))


def read_folder_splits(cfg) -> tuple[ImageSplit, ImageSplit, ImageSplit | None]:
    """Train, dev and test from folders of class folders (test and dev held out of train when
    not given, as for tables: ``data.test_fraction``, ``data.dev_fraction``)."""
    c = cfg.data
    size = getattr(c, "image_size", None)  # the data.image_size key, where the config has it
    train, dev, test = read_split_files(c, lambda c, p: read_image_folder(p, on_error=c.on_error, size=size))
    empty = [n for i, n in enumerate(train.names) if not (train.labels == i).any()]
    if empty:
        raise DataError(f"data.train: class folder(s) {', '.join(empty)} of {train.path} hold no readable images; "
                        f"add images or remove the folder(s)")
    for key, d in (("dev", dev), ("test", test)):
        unknown = [n for n in (d.names if d is not None else []) if n not in train.names]
        if unknown:
            raise DataError(f"data.{key}: class folder(s) {', '.join(unknown)} of {d.path} are not classes of the "
                            f"training data {train.path} (classes: {', '.join(train.names[:10])}"
                            f"{' ...' if len(train.names) > 10 else ''})")
        if d is not None and d.images.shape[-2:] != train.images.shape[-2:]:
            raise DataError(f"data.{key}: images in {d.path} are {_hw(d.images)} but the training images in "
                            f"{train.path} are {_hw(train.images)}; set data.image_size: N to resize every split "
                            f"to N x N")
    train, dev, test = (None if d is None else ImageSplit(d.images, d.labels, d.names, d.path)
                        for d in (train, dev, test))
    if test is None and c.test_fraction > 0:  # as for tables: held out first, a fraction of all of train
        n = len(train.images)
        tr, ts = holdout(n, c.test_fraction, cfg.train.seed + 1)
        train, test = train.subset(tr), train.subset(ts)
        if dev is None:  # dev_fraction stays a fraction of the original folder: 80/10/10
            c = replace(c, dev_fraction=min(c.dev_fraction * n / len(train.images), 0.99))
    if dev is None:
        tr, dv = holdout(len(train.images), c.dev_fraction, cfg.train.seed)
        train, dev = train.subset(tr), train.subset(dv)
    return train, dev, test


def read_mnist_splits(cfg, folder: Path) -> tuple[ImageSplit, ImageSplit, ImageSplit | None]:
    """Train and dev from the train IDX files of ``folder``, test from t10k (or ``data.test``)."""
    c = cfg.data
    images, labels = D.read_mnist(folder, "train")
    tr, dv = holdout(len(images), c.dev_fraction, cfg.train.seed)
    train = ImageSplit(images, labels, None, str(folder))
    test = None
    try:
        test_folder = data_path(c.test, "test") or folder
        test = ImageSplit(*D.read_mnist(test_folder, "test"), None, str(test_folder))
    except DataError:
        if c.test is not None:
            raise
    return train.subset(tr), train.subset(dv), test


def _hw(images: np.ndarray) -> str:
    """``WxH`` of a stack of images."""
    return f"{images.shape[-1]}x{images.shape[-2]}"


def match_channels(images: np.ndarray, channels: int, path: str) -> np.ndarray:
    """``images`` with the model's number of channels: RGB to grey (PIL's weights) or grey to RGB."""
    if images.ndim not in (3, 4):
        return images  # not a stack of images: ImageData says what it expects
    have = 1 if images.ndim == 3 else images.shape[1]
    if have == channels:
        return images
    if have == 3 and channels == 1:
        if images.dtype != np.uint8:
            return np.tensordot(images, np.array([0.299, 0.587, 0.114]), axes=([1], [0])).astype(images.dtype)
        r, g, b = (images[:, k].astype(np.uint32) for k in range(3))
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)
    if have == 1 and channels == 3:
        return np.repeat(images.reshape(len(images), 1, *images.shape[-2:]), 3, axis=1)
    raise DataError(f"{path}: images have {have} channels but the model reads {channels}")


class ImageClassification(SingleLabel, Task):
    """One class per image."""

    inputs = "image"

    def read_splits(self, cfg):
        """:class:`ImageSplit` train, dev and test, from folders of class folders or IDX files."""
        c = cfg.data
        if c.builtin is not None or c.format not in (None, "mnist", "folders"):
            raise ConfigError(f"data: image classification reads {IMAGE_LAYOUTS}")
        folder = data_path(c.train, "train")
        if c.format == "folders" or (c.format is None and is_class_folders(folder)):
            return read_folder_splits(cfg)
        if c.format is None and not folder.is_dir():
            raise DataError(f"data.train: {folder} is not a folder; image classification reads {IMAGE_LAYOUTS}")
        if c.format is None and not any(is_idx_file(p.name) for p in folder.iterdir()):
            raise DataError(f"data.train: {folder} has neither class sub-folders nor IDX files; give {IMAGE_LAYOUTS}")
        return read_mnist_splits(cfg, folder)

    def read_file(self, cfg, path):
        """A folder of class folders, or the t10k (test) files of an MNIST-style folder (whichever
        ``path`` is, whatever the run was trained on)."""
        path = Path(path)
        if cfg.data.format == "folders" or is_class_folders(path):
            d = read_image_folder(path, on_error=cfg.data.on_error, size=getattr(cfg.data, "image_size", None))
            return ImageSplit(d.images, d.labels, d.names, d.path)
        return ImageSplit(*D.read_mnist(path, "test"), None, str(path))

    def fit(self, cfg, train: ImageSplit) -> Featurized:
        """Class names, channels and the pixel mean/std of the training split."""
        mean, std = D.ImageData.stats(train.images)
        names = train.names or [str(i) for i in range(int(train.labels.max()) + 1)]
        in_channels = 1 if train.images.ndim == 3 else train.images.shape[1]
        return Featurized(cfg, {"labels.json": D.LabelVocab(names)}, names,
                          {"num_classes": len(names), "in_channels": in_channels}, {"mean": mean, "std": std})

    def encode(self, fz: Featurized, raw: ImageSplit):
        """Normalised images and their labels (class folders mapped onto the run's classes)."""
        labels = raw.labels
        if raw.names is not None:
            vocab = D.LabelVocab(fz.labels)
            ids = np.array([vocab.encode(n, where=str(Path(raw.path) / n)) for n in raw.names], dtype=np.int64)
            labels = ids[labels]
        images = match_channels(raw.images, fz.sizes.get("in_channels", 1), raw.path)
        return D.ImageData(images, labels, mean=fz.stats["mean"], std=fz.stats["std"])

    def examples(self, raw: ImageSplit | None):
        """Raw images and their class names."""
        if raw is None:
            return [], []
        return [raw.images[i] for i in range(len(raw.images))], raw.gold()

    def encode_inputs(self, fz: Featurized, inputs) -> list[Encoded]:
        """Images ``[N, H, W]`` or ``[N, C, H, W]`` (or one ``[H, W]`` / ``[C, H, W]``) of raw pixel values."""
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
            raise DataError("inputs: an image run takes images (arrays [N, H, W] of pixel values) through the "
                            "Python API, not text; `attnkit evaluate RUN --data FOLDER` scores a folder of class "
                            "folders or an MNIST-style folder and `attnkit report RUN` shows explained dev images")
        images = np.array(inputs)  # a copy: torch warns on read-only arrays (np.asarray of a PIL image)
        channels = fz.sizes.get("in_channels", 1)
        if images.ndim == 2 or (images.ndim == 3 and channels > 1):
            images = images[None]  # one [H, W] or [C, H, W] image
        images = match_channels(images, channels, "inputs")
        out = []
        for image in images:
            data = D.ImageData(image[None], None, mean=fz.stats["mean"], std=fz.stats["std"])
            out.append(Encoded(data.collate([0]), [], [], [], image=image))
        return out

    def sample_inputs(self, fz: Featurized, count: int, size: int) -> list:
        """``count`` made-up images of ``size + 8`` pixels square (random pixel values)."""
        rng = np.random.default_rng(size)
        side = size + 8
        return list(rng.integers(0, 256, (count, fz.sizes.get("in_channels", 1), side, side)).astype(np.float32))

    def build_model(self, model_cfg, **sizes):
        """Image CNN -> pooler -> head."""
        if model_cfg.pretrained is not None:
            raise ConfigError("model.pretrained: image classification has no pretrained backbone here; remove it")
        return ImageClassifier(model_cfg, **sizes)

    def prediction(self, fz, enc, pred, raw, top_k: int = 3) -> dict:
        """``{"label", "scores": {label: probability}}``."""
        return top_scores(fz.labels, pred, top_k)

    def render_prediction(self, record: dict) -> str:
        """``label  (scores)``."""
        return f"[bold]{record['label']}[/]\t(" + ", ".join(f"{k} {v:.3f}" for k, v in record["scores"].items()) + ")"

    def example_html(self, enc, pred, gold, fz) -> str:
        """True and predicted class with its probability."""
        return (f"true <b>{html.escape(str(gold))}</b>, predicted <b>{html.escape(fz.labels[int(pred.argmax())])}</b>"
                f" (p={float(pred.max()):.3f})")
