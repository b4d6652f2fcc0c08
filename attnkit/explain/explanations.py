"""``explain(run_or_model, inputs, method=...)``: what a model attended to, or which inputs
drove its decision, as plain arrays.

Methods (``METHODS``): ``attention`` (pooling weights carried back through the rollout of
the self-attention layers under them; a pretrained backbone's own attentions), ``saliency``
(gradient x input) and ``ig`` (integrated gradients), both through Captum. Text scores come
per word: word pieces are summed into the words they came from (the piece-level scores are
kept too). Image scores come per pixel."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AttnkitError
from ..nn.poolers import FirstPooler
from ..rundir import LoadedRun, load_run
from ..tasks import Encoded
from .attention_maps import record_attention, rollout, token_relevance
from .attribution import ATTRIBUTIONS

METHODS = ("attention", "saliency", "ig")
# longest input explained, per method: integrated gradients run `steps` forward and backward
# passes over it (measured: 500 words, 50 steps, the demo's BiLSTM: 8-16 s on 2 cores)
MAX_POSITIONS = {"attention": 2048, "saliency": 2048, "ig": 256}


class ExplainError(AttnkitError, ValueError):
    """An explanation cannot be computed for this model or input."""


@dataclass
class Explanation:
    """One example's explanation.

    ``tokens``/``scores``: the words and one score each (``scores [H, W]`` for an image, no
    tokens). ``label``/``probability``: the model's prediction; ``target``: the class (or tag)
    explained. ``pieces``/``piece_scores``: per model position (word pieces, special tokens
    included). ``attention`` (method ``attention``): ``pooling [heads, T]``, ``layers
    [L, heads, T, T]`` (self-attention, first layer first), ``rollout [T, T]``, ``grid``
    (image pooling weights on the feature map)."""

    method: str
    tokens: list[str]
    scores: np.ndarray
    label: str
    probability: float
    target: str
    pieces: list[str] = field(default_factory=list)
    piece_scores: np.ndarray | None = None
    attention: dict = field(default_factory=dict)
    word: int | None = None  # taggers: the word whose tag is explained
    image: np.ndarray | None = None  # images: the input pixels [H, W] (or [C, H, W])

    def to_dict(self) -> dict:
        """JSON-ready: arrays as nested lists."""
        def plain(v):
            return v.tolist() if isinstance(v, np.ndarray) else v
        out = {k: plain(getattr(self, k)) for k in ("method", "tokens", "scores", "label", "probability", "target",
                                                    "pieces", "piece_scores", "word")}
        out["attention"] = {k: plain(v) for k, v in self.attention.items()}
        return out


# ---------------------------------------------------------------------- encoding inputs
def _encode_batch_dict(batch: dict) -> list[Encoded]:
    """A bare model's batch dict, split into one-example batches (ids shown as tokens)."""
    if "images" in batch:
        return [Encoded({"images": batch["images"][i:i + 1]}, [], [], [], image=batch["images"][i].numpy())
                for i in range(batch["images"].shape[0])]
    if "tokens" not in batch or "lengths" not in batch:
        raise ExplainError("explain: a model's inputs must be a batch dict with tokens and lengths (or images)")
    out = []
    for i in range(batch["tokens"].shape[0]):
        n = int(batch["lengths"][i])
        one = {"tokens": batch["tokens"][i:i + 1, :n], "lengths": batch["lengths"][i:i + 1]}
        names = [str(t) for t in one["tokens"][0].tolist()]
        out.append(Encoded(one, names, list(range(n)), names))
    return out


# ---------------------------------------------------------------------- scores per position
def attention_maps(model, batch: dict) -> dict:
    """Every attention the model computes on ``batch``: ``pooling`` (``[B, heads, T]`` or
    None), ``layers`` (self-attention per layer, ``[B, heads, T, T]`` each; a pretrained
    backbone's own first), ``cross`` (cross-attention weights)."""
    with torch.no_grad(), record_attention(model) as records:
        model(batch)
    return _collect_maps(model, batch, records)


def _collect_maps(model, batch: dict, records) -> dict:
    """:func:`attention_maps` from the records of a forward pass already made."""
    pooling = next((r.weights for r in records if r.kind == "pooling"), None)
    layers = [r.weights for r in records if r.kind == "self"]
    encoder = getattr(model, "encoder", None)
    if hasattr(encoder, "attentions") and "tokens" in batch:
        layers = encoder.attentions(batch["tokens"], batch["lengths"]) + layers
    return {"pooling": pooling, "layers": layers, "cross": [r.weights for r in records if r.kind == "cross"]}


def _reads_first_position(model) -> bool:
    return bool(getattr(model, "first_only", False)) or isinstance(getattr(model, "pooler", None), FirstPooler)


def _attention_scores(model, enc: Encoded, position: int | None, maps: dict) -> tuple[torch.Tensor, dict]:
    pooling, layers = maps["pooling"], maps["layers"]
    if pooling is None and not layers:
        raise ExplainError(f"{type(model).__name__} computes no attention weights (its encoder/pooler has no attention "
                           f"layer); use method saliency or ig")
    rolled = rollout(layers) if layers else None
    if position is not None and layers:  # a tagger: the rollout row of the explained word
        scores = rolled[:, position]
    elif position is not None:
        raise ExplainError("a tagger without self-attention has no attention over its input; use saliency or ig")
    else:
        try:
            scores = token_relevance(pooling, layers, _reads_first_position(model), rolled)
        except ValueError as e:
            raise ExplainError(f"attention: {e}; use method saliency or ig") from None
    info = {}
    if pooling is not None:
        info["pooling"] = pooling[0].float().numpy()
    if layers:
        # a pruned backbone has fewer heads in some layers: those cells are NaN (drawn empty)
        most = max(a.shape[1] for a in layers)
        stack = torch.full((len(layers), most, *layers[0].shape[-2:]), float("nan"))
        for i, a in enumerate(layers):
            stack[i, :a.shape[1]] = a[0].float()
        info["layers"] = stack.numpy()
        info["rollout"] = rolled[0].float().numpy()
    if "images" in enc.batch:
        grid = getattr(getattr(model, "encoder", None), "grid", None)
        if grid is None:
            raise ExplainError("attention over an image needs an encoder that reports its feature-map grid")
        info["grid"] = scores.reshape(1, *grid)[0].float().numpy()
        scores = F.interpolate(scores.reshape(1, 1, *grid).float(), size=enc.batch["images"].shape[-2:],
                               mode="nearest").reshape(1, *enc.batch["images"].shape[-2:])
    return scores[0].float(), info


def _to_units(enc: Encoded, pos_scores: np.ndarray) -> np.ndarray:
    out = np.zeros(len(enc.units), dtype=np.float32)
    for p, u in enumerate(enc.unit_of):
        if u is not None and p < len(pos_scores):
            out[u] += pos_scores[p]
    return out


def _default_word(pred: list[int], label_names: list[str]) -> int:
    """A tagger's word to explain by default: the first one tagged as an entity (else 0)."""
    return next((i for i, t in enumerate(pred) if label_names[t] not in ("O", "o")), 0)


def explain_encoded(model, enc: Encoded, method: str, label_names: list[str], target=None, word: int | None = None,
                    steps: int = 50, black: float = 0.0) -> Explanation:
    """Explain one encoded input (see :func:`explain`)."""
    if method not in METHODS:
        raise ExplainError(f"method: unknown {method!r}; known: {', '.join(METHODS)}")
    tokens = enc.batch.get("tokens")
    if tokens is not None and tokens.shape[-1] > MAX_POSITIONS[method]:
        raise ExplainError(f"input of {tokens.shape[-1]:,} positions: {method} explains at most "
                           f"{MAX_POSITIONS[method]} (its cost grows with the length); explain a shorter passage"
                           + (", or use --method saliency" if method == "ig" else ""))
    was_training = model.training
    model.eval()
    try:
        return _explain_encoded(model, enc, method, label_names, target, word, steps, black)
    finally:
        model.train(was_training)


def _explain_encoded(model, enc: Encoded, method: str, label_names: list[str], target, word, steps, black):
    batch = enc.batch
    # one forward gives the prediction and, for method attention, the attention records
    with torch.no_grad(), (record_attention(model) if method == "attention" else nullcontext([])) as records:
        out = model(batch)
    if "logits" not in out:
        raise ExplainError("this run writes text (a translation): its explanation is the source-target alignment; "
                           "`attnkit explain RUN TEXT` shows it")
    logits = out["logits"].float()
    position = None
    if logits.dim() == 3:  # a tagger: one word's tag is explained
        pred = model.predict(out, batch)[0].tolist()
        n_words = len(enc.units)
        word = _default_word(pred[:n_words], label_names) if word is None else word
        if not 0 <= word < n_words:
            raise ExplainError(f"word: {word} is out of range (the text has {n_words} words)")
        logits = logits[:, word]
        position = int(batch["first"][0, word]) if "first" in batch else word
    probs = torch.softmax(logits[0], -1)
    tgt = _target_index(target, label_names, int(probs.argmax()))
    info = {}
    if method == "attention":
        pos, info = _attention_scores(model, enc, position, _collect_maps(model, batch, records))
    else:
        kwargs = {"steps": steps} if method == "ig" else {}
        pos = ATTRIBUTIONS.get(method)(model, batch, torch.tensor([tgt]), word=word, black=black, **kwargs)[0]
    pos = pos.detach().float().numpy()
    if enc.image is not None:
        return Explanation(method, [], pos, label_names[int(probs.argmax())], float(probs.max()),
                           label_names[tgt], attention=info, image=enc.image)
    return Explanation(method, list(enc.units), _to_units(enc, pos), label_names[int(probs.argmax())],
                       float(probs.max()), label_names[tgt], list(enc.pieces), pos, info, word)


def _target_index(target, label_names: list[str], default: int) -> int:
    if target is None:
        return default
    if isinstance(target, str):
        if target not in label_names:
            raise ExplainError(f"target: unknown label {target!r}; known: {', '.join(label_names[:20])}"
                               f"{' ...' if len(label_names) > 20 else ''}")
        return label_names.index(target)
    if not 0 <= int(target) < len(label_names):
        raise ExplainError(f"target: class index {target} out of range (0..{len(label_names) - 1})")
    return int(target)


def encode_inputs(run: LoadedRun, inputs) -> list[Encoded]:
    """Raw inputs (texts, or images ``[N, H, W]`` of raw pixel values) as a run reads them."""
    try:
        return run.task.encode_inputs(run.featurized, inputs)
    except AttnkitError as e:
        raise ExplainError(str(e)) from None


def explain(run_or_model, inputs, method: str = "attention", *, target=None, word: int | None = None,
            steps: int = 50, label_names: list[str] | None = None) -> list[Explanation]:
    """Explanations of ``inputs``, one :class:`Explanation` each.

    ``run_or_model``: a run directory (or :class:`attnkit.rundir.LoadedRun`), with texts
    (or raw images) as ``inputs``; or a model with a batch dict. ``method``: ``attention``,
    ``saliency`` or ``ig``. ``target``: the class to explain (name or index; default the
    prediction). ``word``: for taggers, the word whose tag is explained (default the first
    word predicted as an entity). ``steps``: integrated-gradients steps."""
    if method not in METHODS:
        raise ExplainError(f"method: unknown {method!r}; known: {', '.join(METHODS)}")
    if isinstance(run_or_model, (str, Path)):
        run_or_model = load_run(run_or_model)
    if isinstance(run_or_model, torch.nn.Module):
        model = run_or_model
        if not isinstance(inputs, dict):
            raise ExplainError("explain(model, inputs): inputs must be a batch dict; pass a run directory to explain "
                               "raw text")
        encoded = _encode_batch_dict(inputs)
        names = label_names or [str(i) for i in range(_num_classes(model, encoded[0].batch))]
        black = 0.0
    else:
        run = run_or_model
        if run.task.explain_refusal:
            raise ExplainError(f"{run.cfg.task}: {run.task.explain_refusal}")
        model, names, encoded = run.model, run.meta["labels"], encode_inputs(run, inputs)
        black = black_level(run)
    return [explain_encoded(model, e, method, names, target, word, steps, black) for e in encoded]


def alignments(run, inputs) -> list[dict] | None:
    """For runs that write text (translation): per input, the translation and its alignment
    ``{"text", "translation", "written", "source", "matrix" [written, source]}``; None for
    runs of other tasks."""
    if isinstance(run, (str, Path)):
        run = load_run(run)
    if not run.task.writes_text:
        return None
    out = []
    for text, enc in zip(inputs, encode_inputs(run, inputs)):
        pred = run.task.decode(run.model, {}, {**enc.batch, "need_weights": True})[0][0]  # one search, weights kept
        matrix, written, source = run.task.alignment(run.model, enc, pred, run.featurized)
        translation = run.task.prediction(run.featurized, enc, pred, text)["translation"]
        out.append({"text": text, "translation": translation, "written": written, "source": source,
                    "matrix": matrix})
    return out


def black_level(run) -> float:
    """The value of a black pixel after the run's normalisation (0.0 for text runs)."""
    stats = run.meta.get("stats") or {}
    return (0.0 - stats.get("mean", 0.0)) / stats.get("std", 1.0) if stats else 0.0


def _num_classes(model, batch: dict) -> int:
    with torch.no_grad():
        return int(model(batch)["logits"].shape[-1])
