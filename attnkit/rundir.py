"""The run directory's one owner: writing a run's description, opening a run with one
check that names the missing or damaged file, loading its model, and deciding whether a
directory may receive a new run. The file names are in :mod:`attnkit.run_files`.

Copy a run directory anywhere and ``attnkit predict RUN ...`` works there."""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .config import from_dict, load_yaml, save_yaml, to_dict
from .data import CharVocab, LabelVocab, SubwordModel, Vocab
from .errors import AttnkitError, ConfigError, WriteError, first_line
from .files import atomic_write, write_json
from .finetune.backbones import import_transformers, load_backbone, saved_tokenizer
from .models import count_parameters
from .run_files import CHECKPOINTS, EVENTS, TOKENIZER, RunFiles
from .tasks import Featurized, Prepared, RunConfig, Task, get_task

log = logging.getLogger("attnkit")
VOCAB_TYPES = {"vocab.json": Vocab, "chars.json": CharVocab, "labels.json": LabelVocab, "subwords.json": SubwordModel}


class RunError(AttnkitError):
    """A run directory is missing, incomplete or damaged, or cannot receive a run."""


def saves_everything(model: torch.nn.Module) -> bool:
    """Whether the model's saved weights are all of its state (else only what trained)."""
    trained = getattr(model, "trained_state", None)
    return trained is None or set(trained()) == set(model.state_dict())


def save_weights(model: torch.nn.Module, path: Path, everything: bool = False) -> None:
    """The model's weights as safetensors, atomically: what trained (``trained_state``) or
    the whole state dict."""
    from safetensors.torch import save

    state = model.state_dict() if everything else getattr(model, "trained_state", model.state_dict)()
    tied = tied_names(state)  # a tied weight (a translator's embedding and output) is saved once
    tensors = {k: v.detach().contiguous() for k, v in state.items() if k not in tied}
    atomic_write(path, lambda f: f.write(save(tensors)))


def tied_names(state: dict) -> set[str]:
    """Names of a state dict that share their tensor with an earlier name (tied weights)."""
    seen, out = set(), set()
    for k, v in state.items():
        key = (v.data_ptr(), tuple(v.shape))
        if key in seen and v.numel():
            out.add(k)
        seen.add(key)
    return out


def write_meta(run_dir: Path, cfg: RunConfig, prepared: Prepared, model: torch.nn.Module) -> None:
    """meta.json, the vocabularies (and a backbone's tokenizer and config)."""
    files = RunFiles(run_dir)
    for name, vocab in prepared.vocabs.items():
        if name == TOKENIZER:
            vocab.save_pretrained(str(files.tokenizer))
        else:
            vocab.save(run_dir / name)
    trainable, total = count_parameters(model)
    meta = {"attnkit": __version__, "torch": torch.__version__, "task": cfg.task, "sizes": prepared.sizes,
            "labels": prepared.label_names, "stats": prepared.stats,
            "vocabs": sorted(n for n in prepared.vocabs if n != TOKENIZER),
            "parameters": {"trainable": trainable, "total": total},
            "weights": "all" if saves_everything(model) else "trained"}
    encoder = getattr(model, "encoder", None)
    if cfg.model.pretrained is not None and hasattr(encoder, "base"):
        encoder.base.config.save_pretrained(str(files.backbone))
    write_json(files.meta, meta)


def check_same_vocabs(run_dir: Path, prepared: Prepared) -> None:
    """On resume: the vocabularies built again from the data must be those the run started
    with (its checkpoint's embedding rows are their ids); a changed training file or
    ``model.embedding.vectors`` is one RunError, before anything is written."""
    for name, vocab in prepared.vocabs.items():
        cls, path = VOCAB_TYPES.get(name), run_dir / name
        if cls is None or not path.is_file() or type(vocab).__eq__ is object.__eq__:
            continue
        try:
            saved = cls.load(path)
        except AttnkitError as e:
            raise _not_a_run(run_dir, name, f"damaged ({e})") from None
        if saved != vocab:
            raise RunError(f"{path}: the vocabulary built now ({len(vocab):,} entries) is not the one the run "
                           f"started with ({len(saved):,}); the training data or model.embedding.vectors changed "
                           f"since. Resume with the same files, or start a new run")


def write_run_start(run_dir: Path, cfg: RunConfig, prepared: Prepared, model: torch.nn.Module) -> None:
    """What a run needs before its first epoch: the resolved config, meta.json, vocabularies."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(to_dict(cfg), RunFiles(run_dir).config)
    write_meta(run_dir, cfg, prepared, model)


@dataclass
class LoadedRun:
    """A trained run, ready to predict."""

    path: Path
    cfg: RunConfig
    meta: dict
    vocabs: dict
    model: torch.nn.Module

    @property
    def task(self) -> Task:
        """The run's task."""
        return get_task(self.cfg.task)

    @property
    def featurized(self) -> Featurized:
        """The run's featurizer, as saved."""
        return Featurized(self.cfg, self.vocabs, list(self.meta["labels"]), dict(self.meta["sizes"]),
                          self.meta.get("stats") or {})

    @property
    def files(self) -> RunFiles:
        """Paths of the run's files."""
        return RunFiles(self.path)


def _not_a_run(run_dir: Path, name: str, why: str) -> RunError:
    return RunError(f"{run_dir / name}: {why}; {run_dir} is not a usable run directory (retrain it, or copy the "
                    f"whole directory again)")


def read_meta(run_dir: Path) -> dict:
    """meta.json, checked: valid JSON with the keys a run needs."""
    path = RunFiles(run_dir).meta
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _not_a_run(run_dir, path.name, f"damaged (not JSON: {e})") from None
    missing = [k for k in ("task", "sizes", "labels") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise _not_a_run(run_dir, path.name, f"damaged (no {', '.join(missing)})")
    return meta


def _vocab_files(meta: dict) -> list[str]:
    """The vocabulary files a run saved (runs before meta.json listed them: from the sizes)."""
    if "vocabs" in meta:
        return list(meta["vocabs"])
    sizes = meta.get("sizes", {})
    return ["labels.json"] + (["vocab.json"] if "vocab_size" in sizes else []) \
        + (["chars.json"] if sizes.get("char_vocab_size") else [])


def open_run(run_dir: str | Path) -> tuple[RunConfig, dict, dict]:
    """``(config, meta, vocabularies)`` of a run directory, every file checked; a leftover
    temporary file of a killed write is removed."""
    run_dir = Path(run_dir)
    files = RunFiles(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory")
    for gone in files.clean_leftovers():
        log.info(f"{gone}: removed a temporary file left by an interrupted write")
    for path in (files.config, files.meta, files.weights):
        if not path.is_file():
            hint = " (is training finished? `attnkit train ... --resume` continues it)" if path == files.weights else ""
            raise RunError(f"{run_dir}: not a complete run directory: {path.name} is missing{hint}")
    try:
        cfg = from_dict(RunConfig, load_yaml(files.config))
    except ConfigError as e:
        raise RunError(f"{files.config}: {e}") from None
    meta = read_meta(run_dir)
    vocabs = {}
    types = dict(VOCAB_TYPES)
    if any(name not in types for name in _vocab_files(meta)):  # a task's own files (a recommender's catalog)
        types.update(get_task(cfg.task).vocab_types)
    for name in _vocab_files(meta):
        if not (run_dir / name).is_file():
            raise _not_a_run(run_dir, name, "missing (written by training, needed to encode inputs)")
        cls = types.get(name)
        if cls is not None:
            try:
                vocabs[name] = cls.load(run_dir / name)
            except AttnkitError as e:
                raise _not_a_run(run_dir, name, f"damaged ({e})") from None
    return cfg, meta, vocabs


def load_run(run_dir: str | Path) -> LoadedRun:
    """Open a run directory, rebuild its model through its task and load the best weights."""
    run_dir = Path(run_dir)
    cfg, meta, vocabs = open_run(run_dir)
    extra = {}
    if cfg.model.pretrained is not None:
        vocabs["tokenizer"], extra["backbone"] = _run_backbone(run_dir, cfg, meta)
    elif RunFiles(run_dir).tokenizer.is_dir():  # a model from blocks on its own (or its init_from run's) word pieces
        vocabs["tokenizer"] = saved_tokenizer(RunFiles(run_dir).tokenizer)
    model = get_task(cfg.task).build_model(cfg.model, **meta["sizes"], **extra)
    if meta.get("pruned"):  # `attnkit prune` removed heads and neurons: the same shapes before loading
        from .finetune.pruning import apply_pruned_shapes

        try:
            apply_pruned_shapes(model, meta["pruned"])
        except (ValueError, KeyError, TypeError) as e:
            raise _not_a_run(run_dir, RunFiles(run_dir).meta.name, f"damaged pruning record ({e})") from None
    from safetensors.torch import load_file

    where = RunFiles(run_dir).weights
    try:
        state = load_file(str(where))
    except Exception as e:  # noqa: BLE001  (safetensors raises its own error types for damaged files)
        raise RunError(f"{where}: cannot be read ({e})") from None
    if meta.get("weights") == "trained":  # the frozen rest came from model.pretrained
        try:
            model.load_trained_state(state, where=str(where))
        except ValueError as e:
            raise RunError(str(e)) from None
    else:
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shapes differ: config.yaml or the weights were changed since training
            first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e)[:200])
            raise RunError(f"{where}: weights do not match the model that {RunFiles(run_dir).config.name} "
                           f"describes ({first}); was config.yaml edited or damaged?") from None
        tied = tied_names(model.state_dict())
        missing = [k for k in missing if k not in tied]
        if missing or unexpected:
            raise RunError(f"{where}: weights do not match the config's model "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return LoadedRun(run_dir, cfg, meta, vocabs, model)


def _run_backbone(run_dir: Path, cfg: RunConfig, meta: dict):
    """A fine-tuned run's tokenizer (saved with it) and backbone: built from the saved config
    when the run saved every weight, else loaded from ``model.pretrained``."""
    transformers = import_transformers()
    files = RunFiles(run_dir)
    if not files.tokenizer.is_dir() or not files.backbone.is_dir():
        raise RunError(f"{run_dir}: a fine-tuned run needs tokenizer/ and backbone/ (written by attnkit train)")
    tokenizer = saved_tokenizer(files.tokenizer)
    if meta.get("weights") == "trained":
        return tokenizer, load_backbone(cfg.model.pretrained)[0]
    config = transformers.AutoConfig.from_pretrained(str(files.backbone), local_files_only=True)
    return tokenizer, transformers.AutoModel.from_config(config)


def check_new_run_dir(run_dir: Path, resume: bool) -> None:
    """May ``run_dir`` receive this run? A new run needs an empty or absent directory; a
    resumed one a run of the same config with ``checkpoints/last.pt``. Nothing is overwritten."""
    files = RunFiles(run_dir)
    last = files.last_checkpoint
    if resume:
        if not last.exists():
            raise RunError(f"{run_dir}: nothing to resume (no checkpoints/last.pt)")
        return
    if last.exists() and files.config.is_file():
        raise RunError(f"{run_dir}: already holds a run; pass --resume to continue it or --out NEW_DIR")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {run_dir}: is a file, not a directory")
    if run_dir.is_dir():
        held = sorted(p.name for p in run_dir.iterdir())
        if held:
            shown = ", ".join(held[:5]) + (" ..." if len(held) > 5 else "")
            raise RunError(f"--out {run_dir}: not empty (holds {shown}); a new run needs an empty or new directory, "
                           f"so nothing there is overwritten")


def check_same_config(run_dir: Path, cfg: RunConfig) -> RunConfig:
    """The saved config of a run being resumed; a different config given now is an error."""
    saved = from_dict(RunConfig, load_yaml(RunFiles(run_dir).config))
    a, b = to_dict(saved), to_dict(cfg)
    if a["data"].get("encoding") == "utf-8" and b["data"].get("encoding") == "auto":
        # runs saved before `auto` became the default read their files as UTF-8, and `auto`
        # reads a file that is valid UTF-8 as UTF-8: the same data, so not a different config
        b["data"]["encoding"] = "utf-8"
    diff = _first_difference(a, b)
    if diff is not None:
        raise RunError(f"{run_dir}: was started with a different config ({diff}); resume it with its own config "
                       f"(attnkit train {RunFiles(run_dir).config} --out {run_dir} --resume) or start a new run")
    return saved


def _first_difference(a, b, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
            if d is not None:
                return d
        return None
    return None if a == b else f"{path}: {a!r} there, {b!r} here"


def read_eval(run_dir: Path) -> dict:
    """eval.json (``{}`` when absent or damaged: it can be recomputed)."""
    path = RunFiles(run_dir).eval
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning(f"{path}: damaged; ignored")
        return {}


def check_new_out(out: Path) -> None:
    """A derived run's ``--out`` must be new (checked before any slow step, and again on writing)."""
    if Path(out).exists():
        raise RunError(f"--out {out}: already exists; give a new directory")


@contextlib.contextmanager
def derived_run(run_dir: Path, out: Path, skip: tuple[str, ...] = ()):
    """A new run directory ``out`` made from ``run_dir`` (merged, exported, compressed): yields
    a temporary copy (without checkpoints, TensorBoard events and ``skip``) to change; it
    becomes ``out`` only when the block ends without an error, so a failure leaves nothing
    half-written. ``out`` must not exist (checked again just before the rename); the copy
    is a fresh hidden directory beside it (``.OUT.XXXX.tmp``), never one the user has; a disk
    that cannot take it is one :class:`WriteError`."""
    run_dir, out = Path(run_dir), Path(out)
    check_new_out(out)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
        shutil.copytree(run_dir, tmp, ignore=shutil.ignore_patterns(CHECKPOINTS, EVENTS, *skip), dirs_exist_ok=True)
        yield tmp
        check_new_out(out)
        tmp.rename(out)
    except OSError as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, AttnkitError):
            raise
        raise WriteError(f"--out {out}: could not be written ({first_line(e)}); {run_dir} is unchanged") from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
