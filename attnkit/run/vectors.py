"""Word vectors from a trained backbone run (``attnkit vectors``), for a student built from
blocks: every word of the student's training split, and of unlabelled corpora, read alone by the
run's encoder; its vector is the mean of its word pieces' last-layer states, scaled so the
whole table has standard deviation 1. A student that starts from them (``model.embedding.vectors``)
starts from what the teacher knows about each word; with ``model.embedding.extend_vocab`` it also
knows the corpus words its training split lacks (Tang et al. 2019 start their distilled BiLSTM
from word2vec for the same reason; these need no download)."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from ..data import Vocab, get_tokenizer
from ..data._common import numbered_lines
from ..errors import ConfigError, DataError
from ..nn import write_vectors
from ..rundir import load_run
from ..tasks import get_task, stack_batches
from .training import resolve_config

log = logging.getLogger("attnkit")
BATCH = 256  # words per forward pass


def student_words(cfg) -> list[str]:
    """The words of the student's training split, in its vocabulary's order (what
    ``attnkit train`` would build, without ``model.embedding.vectors`` or ``extend_vocab``)."""
    emb = {k: v for k, v in cfg.model.embedding.items() if k not in ("vectors", "extend_vocab")}
    cfg = replace(cfg, model=replace(cfg.model, embedding=emb))
    task = get_task(cfg.task)
    fz = task.fit(cfg, task.read_splits(cfg)[0])
    vocab = fz.vocabs.get("vocab.json")
    if vocab is None:
        raise ConfigError(f"--student: this {cfg.task} model reads " +
                          ("a backbone's word pieces" if fz.pieces else "no words") +
                          "; word vectors are for a model from blocks with a word vocabulary")
    return vocab.itos[vocab.num_specials:]


def corpus_words(paths, tokenizer: str = "words", lowercase: bool = False, min_count: int = 2,
                 encoding: str = "auto") -> list[str]:
    """Words of plain-text files (``.gz`` read as gzip; ``encoding`` as ``data.encoding``),
    seen ``min_count`` times or more in all, most frequent first (then alphabetical)."""
    split = get_tokenizer(tokenizer)

    def lines():
        for path in map(Path, paths):
            if not path.is_file():
                raise DataError(f"{path}: corpus file not found")
            for _, line in numbered_lines(path, encoding):
                yield split(line)
    vocab = Vocab.build(lines(), lowercase=lowercase, min_freq=min_count)
    return vocab.itos[vocab.num_specials:]


def word_states(run, words: list[str]) -> torch.Tensor:
    """``[len(words), hidden]``: each word alone through the backbone run's encoder, the mean
    of its word pieces' last-layer states (special tokens left out)."""
    if not run.featurized.pieces or not hasattr(run.model, "encoder"):
        raise ConfigError(f"{run.path}: word vectors come from a run on a pretrained backbone (model.pretrained); "
                          f"this {run.cfg.task} run reads words")
    model = run.model.eval()
    out, t0, said = [], time.perf_counter(), time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(words), BATCH):
            encoded = run.task.encode_inputs(run.featurized, words[start:start + BATCH])
            batch = stack_batches([e.batch for e in encoded])
            h = model.encoder(batch["tokens"], batch["lengths"]).float()
            own = torch.zeros(h.shape[:2])
            for i, e in enumerate(encoded):
                own[i, [p for p, unit in enumerate(e.unit_of) if unit is not None]] = 1.0
            out.append((h * own.unsqueeze(-1)).sum(1) / own.sum(1, keepdim=True).clamp(min=1))
            if time.perf_counter() - said > 30:
                said, done = time.perf_counter(), min(start + BATCH, len(words))
                log.info(f"word vectors: {done:,} of {len(words):,} words ({done / (said - t0):.0f} words/s)")
    return torch.cat(out) if out else torch.zeros(0, run.model.encoder.out_dim)


def teacher_vectors(teacher: str | Path, student, out: str | Path, corpus=(), tokenizer: str | None = None,
                    lowercase: bool = False, min_count: int = 2, overrides=()) -> dict:
    """Write the word vectors of backbone run ``teacher`` for student config ``student``'s
    training words and the words of ``corpus`` files (split by ``tokenizer``, default the
    student's ``data.tokenizer``; lower-cased with ``lowercase`` or when the student lower-cases
    its words); returns what was written."""
    cfg = resolve_config(student, overrides)
    if min_count < 1:
        raise ConfigError(f"--min-count: must be >= 1, got {min_count}")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out: {out} is a folder; give the vector file to write")
    run = load_run(teacher)
    own = student_words(cfg)
    lowercase = lowercase or cfg.data.lowercase  # the student looks words up lower-cased: write them so
    extra = corpus_words(corpus, tokenizer or cfg.data.tokenizer, lowercase, min_count, cfg.data.encoding) \
        if corpus else []
    known = set(own)
    words = own + [w for w in extra if w not in known]
    if not words:
        raise DataError(f"{student}: the training split gives no words (and the corpus none seen {min_count} times)")
    t0 = time.perf_counter()
    log.info(f"word vectors: {len(words):,} words ({len(own):,} of the training split) through {teacher}")
    table = word_states(run, words)
    table = table / table.std().clamp(min=1e-12)
    write_vectors(out, words, table)
    return {"words": len(words), "training_words": len(own), "corpus_words": len(words) - len(own),
            "dim": int(table.shape[1]), "seconds": round(time.perf_counter() - t0, 1), "out": str(out)}
