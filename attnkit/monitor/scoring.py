"""Scoring stream texts with a run: the class probabilities, the sentiment labels' shares and
the model-health features of each text (confidence, length, unknown-word rate, word pieces
per word), in one pass over the encoded batch."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..rundir import LoadedRun
from ..tasks import predict_encoded

POSITIVE = ("positive", "pos", "bullish", "good", "1")
NEGATIVE = ("negative", "neg", "bearish", "bad", "0")
HEALTH = ("confidence", "words", "unknown", "pieces")


@dataclass(frozen=True)
class Polarity:
    """Which of the run's labels are positive and negative (the index is their share difference)."""

    positive: str
    negative: str


def polarity(labels: list[str], positive: str | None = None, negative: str | None = None) -> Polarity:
    """The positive and negative labels: given, or found by name (positive/pos, negative/neg)."""
    def find(given, names, what):
        if given is not None:
            if given not in labels:
                raise ConfigError(f"--{what} {given!r}: not one of the run's labels ({', '.join(labels)})")
            return given
        for name in names:
            for label in labels:
                if label.lower() == name:
                    return label
        raise ConfigError(f"monitor: none of the run's labels ({', '.join(labels)}) is named like a {what} class; "
                          f"say which with --{what} LABEL")
    pos, neg = find(positive, POSITIVE, "positive"), find(negative, NEGATIVE, "negative")
    if pos == neg:
        raise ConfigError(f"monitor: --positive and --negative are both {pos!r}")
    return Polarity(pos, neg)


def unknown_id(run: LoadedRun) -> int | None:
    """The id of the unknown word (word vocabulary) or piece (a backbone's tokenizer)."""
    vocabs = run.featurized.vocabs
    if "vocab.json" in vocabs:
        return vocabs["vocab.json"].unk_id
    tokenizer = vocabs.get("tokenizer")
    return getattr(tokenizer, "unk_token_id", None)


def score_texts(run: LoadedRun, texts: list[str], pol: Polarity, batch_size: int = 64) -> list[dict]:
    """One record per text: ``label``, ``positive``/``negative`` probabilities and the health
    features (``confidence`` = the top probability, ``words``, ``unknown`` = share of unknown
    ids among the model's positions, ``pieces`` = model positions per word)."""
    task, fz = run.task, run.featurized
    if task.target != "labels":
        raise ConfigError(f"monitor: {run.cfg.task} runs have no sentiment classes; monitor a text classifier")
    labels = list(fz.labels)
    ip, ineg = labels.index(pol.positive), labels.index(pol.negative)
    encoded = task.encode_inputs(fz, texts)
    preds = predict_encoded(run.model, task, encoded, batch_size)
    unk = unknown_id(run)
    out = []
    for enc, pred in zip(encoded, preds):
        p = pred.float()
        ids = enc.batch["tokens"][0]
        real = [i for i, u in enumerate(enc.unit_of) if u is not None]
        words = max(1, len(enc.units))
        unknown = float((ids[real] == unk).float().mean()) if unk is not None and real else 0.0
        out.append({"label": labels[int(p.argmax())], "positive": float(p[ip]), "negative": float(p[ineg]),
                    "confidence": float(p.max()), "words": len(enc.units), "unknown": unknown,
                    "pieces": len(real) / words})
    return out

