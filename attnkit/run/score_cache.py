"""The teacher's scores, kept between distillation runs: scoring a transfer set of half a
million texts with a MiniLM teacher takes tens of minutes on two cores, and a user trying
student after student scores the same texts with the same teacher each time.

An entry is the teacher's class probabilities (its own label order) for a list of texts,
under ``scores/`` of attnkit's cache (``~/.cache/attnkit``; ``ATTNKIT_CACHE`` moves it),
named by a digest of everything the scores depend on: the teacher run's files that decide
its predictions (weights, backbone, tokenizer, config, labels, engine and its graph; not its
metrics, checkpoints or report) and, for a run that saved only what it trained, the files
of its local ``model.pretrained``; the versions of attnkit, PyTorch and the libraries that
encode or run it; the engine, the precision and the texts in order. Entries are never
pruned (a transfer set of 830,000 texts and 2 classes takes 6 MiB): delete ``scores/`` at
will. An entry that cannot be read or does not fit is ignored (and scored again); one that
cannot be written is said and skipped: the cache never stops a run. Image teachers are not
cached (no texts to name the entry by)."""
from __future__ import annotations

import hashlib
import importlib.metadata
import logging
from pathlib import Path

import torch

from .. import __version__
from ..errors import WriteError
from ..files import TMP_SUFFIX, atomic_write, cache_root
from ..run_files import CHECKPOINTS, EVAL, EVAL_OF, EVENTS, METRICS, REPORT

log = logging.getLogger("attnkit")

IGNORED = {CHECKPOINTS, EVENTS, METRICS, REPORT, EVAL}  # what training and evaluation leave beside the model
LIBRARIES = ("transformers", "tokenizers", "peft", "onnxruntime", "safetensors")  # encode, build or run a teacher


def run_digest(run_dir: str | Path) -> str:
    """A digest of the files of ``run_dir`` that decide its predictions (names and bytes)."""
    root = Path(run_dir)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.parts[0] in IGNORED or rel.name.startswith(EVAL_OF) or rel.name.endswith(TMP_SUFFIX):
            continue
        h.update(str(rel.as_posix()).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def versions() -> str:
    """attnkit's, PyTorch's and :data:`LIBRARIES`' versions (those installed)."""
    found = [f"attnkit {__version__}", f"torch {torch.__version__}"]
    for name in LIBRARIES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def teacher_digest(run) -> str:
    """:func:`run_digest` of a loaded run, and of its local ``model.pretrained`` where the run
    saved only what it trained (the rest is read from there)."""
    parts = [run_digest(run.path)]
    pretrained = getattr(run.cfg.model, "pretrained", None)
    if run.meta.get("weights") == "trained" and pretrained and Path(pretrained).is_dir():
        parts.append(run_digest(pretrained))
    return "+".join(parts)


def texts_digest(texts: list[str]) -> str:
    """A digest of ``texts`` in order (each kept apart from the next)."""
    h = hashlib.sha256(f"{len(texts)}\0".encode())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def key_of(digest: str, engine: str, precision: str, of_texts: str) -> str:
    """The cache key of the texts of :func:`texts_digest` ``of_texts`` scored by the teacher of
    ``digest`` (:func:`teacher_digest`) on ``engine`` in ``precision``, with the installed
    :func:`versions`."""
    return hashlib.sha256(f"{digest}\0{versions()}\0{engine}\0{precision}\0{of_texts}".encode()).hexdigest()[:32]


def score_key(digest: str, engine: str, precision: str, texts: list[str]) -> str:
    """:func:`key_of` the ``texts`` themselves."""
    return key_of(digest, engine, precision, texts_digest(texts))


def cache_file(key: str) -> Path:
    """Where the entry ``key`` is kept."""
    return cache_root() / "scores" / f"{key}.safetensors"


def load_scores(key: str, rows: int, columns: int) -> torch.Tensor | None:
    """The kept ``[rows, columns]`` probabilities of ``key``, or None (none kept, unreadable, or
    another shape)."""
    path = cache_file(key)
    try:
        if not path.is_file():
            return None
        from safetensors.torch import load

        probs = load(path.read_bytes())["probs"]
    except Exception as e:  # unreadable or damaged: scored again, never trusted
        log.warning(f"teacher score cache: {path} could not be read ({type(e).__name__}); scoring again")
        return None
    if tuple(probs.shape) != (rows, columns) or probs.dtype != torch.float32:
        log.warning(f"teacher score cache: {path} holds {probs.dtype} {tuple(probs.shape)}, not float32 "
                    f"({rows}, {columns}); scoring again")
        return None
    return probs


def save_scores(key: str, probs: torch.Tensor) -> None:
    """Keep ``probs`` under ``key`` (atomically); a failure is said and changes nothing else."""
    from safetensors.torch import save

    try:
        atomic_write(cache_file(key), lambda f: f.write(save({"probs": probs.float().contiguous()})))
    except WriteError as e:
        log.warning(f"teacher score cache: not kept ({e})")
