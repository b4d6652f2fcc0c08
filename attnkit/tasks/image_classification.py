"""Image classification: an MNIST-style folder of IDX files -> one class per image.

Data: ``data.train: FOLDER`` (``format: mnist``) with the train and t10k IDX files; dev is
held out of train (``data.dev_fraction``, seeded), test is t10k. Pixels are normalised with
the training split's mean and std (saved in ``meta.json``). Model: image CNN -> pooler over
the feature map's positions -> head. Metrics: as text classification."""
from __future__ import annotations

import html

import numpy as np

from .. import data as D
from ..errors import ConfigError, DataError
from ..models import ImageClassifier
from .base import Encoded, Featurized, Task
from .single_label import SingleLabel, top_scores
from .splits import data_path, holdout


class ImageClassification(SingleLabel, Task):
    """One class per image."""

    inputs = "image"

    def read_splits(self, cfg):
        """``(images, labels)`` pairs: train and dev from the train files, test from t10k."""
        c = cfg.data
        if c.builtin is not None or c.format not in (None, "mnist"):
            raise ConfigError("data: image classification reads an MNIST-style folder: data.train: FOLDER, "
                              "format: mnist")
        folder = data_path(c.train, "train")
        images, labels = D.read_mnist(folder, "train")
        tr, dv = holdout(len(images), c.dev_fraction, cfg.train.seed)
        test = None
        try:
            test = D.read_mnist(data_path(c.test, "test") or folder, "test")
        except DataError:
            if c.test is not None:
                raise
        return (images[tr], labels[tr]), (images[dv], labels[dv]), test

    def read_file(self, cfg, path):
        """The t10k (test) files of an MNIST-style folder."""
        return D.read_mnist(path, "test")

    def fit(self, cfg, train) -> Featurized:
        """Class names, channels and the pixel mean/std of the training split."""
        images, labels = train
        mean, std = D.ImageData.stats(images)
        names = [str(i) for i in range(int(labels.max()) + 1)]
        in_channels = 1 if images.ndim == 3 else images.shape[1]
        return Featurized(cfg, {"labels.json": D.LabelVocab(names)}, names,
                          {"num_classes": len(names), "in_channels": in_channels}, {"mean": mean, "std": std})

    def encode(self, fz: Featurized, raw):
        """Normalised images and their labels."""
        images, labels = raw
        return D.ImageData(images, labels, mean=fz.stats["mean"], std=fz.stats["std"])

    def examples(self, raw):
        """Raw images and their class names."""
        if raw is None:
            return [], []
        images, labels = raw
        return [images[i] for i in range(len(images))], [str(int(x)) for x in labels]

    def encode_inputs(self, fz: Featurized, inputs) -> list[Encoded]:
        """Images ``[N, H, W]`` (or one ``[H, W]``) of raw pixel values."""
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
            raise DataError("inputs: an image run takes images (arrays [N, H, W] of pixel values) through the "
                            "Python API, not text; `attnkit evaluate RUN --data FOLDER` scores an MNIST-style "
                            "folder and `attnkit report RUN` shows explained dev images")
        images = np.asarray(inputs)
        if images.ndim == 2:
            images = images[None]
        out = []
        for image in images:
            data = D.ImageData(image[None], None, mean=fz.stats["mean"], std=fz.stats["std"])
            out.append(Encoded(data.collate([0]), [], [], [], image=image))
        return out

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
