"""The three things a user does with a run: train it, evaluate it on a file, predict with it."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import data as D
from ..config import apply_overrides, load_yaml, save_yaml, to_dict
from ..evaluate import evaluate_model
from ..models import build_model, count_parameters
from ..train import Trainer, load_checkpoint
from .config import RunConfig, run_config
from .prepare import prepare
from .rundir import RunError, load_run, save_weights, write_json, write_meta


@dataclass
class TrainResult:
    """Where the run is and how it scored."""

    run_dir: Path
    dev: dict
    test: dict | None


def resolve_config(config: str | Path | dict | RunConfig, overrides=()) -> RunConfig:
    """A validated RunConfig from a YAML path, a mapping or a RunConfig, with ``--set`` overrides."""
    if isinstance(config, RunConfig):
        config = to_dict(config)
    raw = load_yaml(config) if isinstance(config, (str, Path)) else dict(config)
    return run_config(apply_overrides(raw, list(overrides)))


def default_run_dir(config) -> Path:
    """``runs/<config file stem or name>``."""
    stem = Path(config).stem if isinstance(config, (str, Path)) else "run"
    return Path("runs") / stem


def train(config, out: str | Path | None = None, overrides=(), resume: bool = False,
          progress: bool | None = None) -> TrainResult:
    """Train a run end to end: config -> data -> model -> Trainer -> run directory."""
    cfg = resolve_config(config, overrides)
    run_dir = Path(out) if out is not None else default_run_dir(config)
    last = run_dir / "checkpoints" / "last.pt"
    if resume and not last.exists():
        raise RunError(f"{run_dir}: nothing to resume (no checkpoints/last.pt)")
    if not resume and last.exists():
        raise RunError(f"{run_dir}: already holds a run; pass --resume to continue it or --out NEW_DIR")
    if resume:  # the saved config wins, so a resumed run is the run that was started
        if overrides:
            raise RunError(f"--set cannot change a run being resumed ({run_dir}); start a new run with --out")
        cfg = resolve_config(run_dir / "config.yaml")
    prepared = prepare(cfg)  # its splits and shuffles use their own seeded generators
    extra = {}
    vectors = cfg.model.embedding.get("vectors")
    if vectors and "vocab.json" in prepared.vocabs:
        from ..nn import read_vectors

        vocab = prepared.vocabs["vocab.json"]
        dim = int(cfg.model.embedding.get("dim", 128))
        extra["pretrained_vectors"], found = read_vectors(vectors, vocab.stoi, dim)
        print(f"model.embedding.vectors: {found:,} of {len(vocab):,} words found in {vectors}", file=sys.stderr)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.task, cfg.model, **prepared.sizes, **extra)  # before writing anything: bad configs leave no run
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(to_dict(cfg), run_dir / "config.yaml")
    write_meta(run_dir, cfg, prepared, model)
    trainable, n_params = count_parameters(model)
    share = f" ({trainable:,} trainable, {100 * trainable / n_params:.2f}%)" if trainable < n_params else ""
    print(f"{cfg.task}: {len(prepared.train)} train / {len(prepared.dev)} dev examples; model "
          f"{n_params:,} parameters{share}; run directory {run_dir}", file=sys.stderr)

    def evaluate(m, d):
        return evaluate_model(m, d, prepared.label_names, cfg.train.eval_batch_size, cfg.data.out_of_scope)
    trainer = Trainer(model, prepared.train, prepared.dev, cfg.train, run_dir, evaluate, progress=progress)
    trainer.fit(resume=resume)
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt")
    trainer.load_model_state(best["model"])
    save_weights(model, run_dir / "model.safetensors")
    dev = evaluate(model, prepared.dev)
    test = evaluate(model, prepared.test) if prepared.test is not None and _has_targets(prepared.test) else None
    write_json(run_dir / "eval.json", {"dev": dev, "test": test, "best_epoch": best.get("epoch")})
    if cfg.train.report:
        write_report_safely(run_dir)
    return TrainResult(run_dir, dev, test)


def write_report_safely(run_dir: Path) -> Path | None:
    """``RUN/report.html``; a failure is reported and never costs the finished run."""
    from ..evaluate.run_report import write_report

    try:
        return write_report(run_dir)
    except Exception as e:  # noqa: BLE001  (the run is saved; the report can be rewritten with `attnkit report`)
        print(f"report.html not written ({type(e).__name__}: {e}); the run is complete; retry with "
              f"`attnkit report {run_dir}`", file=sys.stderr)
        return None


def _has_targets(data) -> bool:
    return getattr(data, "labels", None) is not None or getattr(data, "tags", None) is not None


def load_data_file(run, path: str | Path):
    """Encode a data file with a run's vocabularies (same format options as training)."""
    c, task = run.cfg.data, run.cfg.task
    labels = run.vocabs["labels.json"]
    tokenizer = run.vocabs.get("tokenizer")  # a fine-tuned run: word pieces
    max_len = run.cfg.model.finetune.max_len
    if task == "text_classification":
        table = D.read_table(path, c.text_column, c.label_column, fmt=c.format, on_error=c.on_error,
                             encoding=c.encoding)
        if tokenizer is not None:
            from ..finetune.data import text_data_from_table

            return text_data_from_table(tokenizer, table, labels, max_len)
        return D.TextClassificationData.from_table(table, run.vocabs["vocab.json"], labels, tokenizer=c.tokenizer,
                                                   max_len=c.max_len)
    if task == "token_classification":
        conll = D.read_conll(path, token_column=c.token_column, tag_column=c.tag_column, scheme=c.scheme,
                             on_error=c.on_error, encoding=c.encoding)
        if tokenizer is not None:
            from ..finetune.data import WordPieceTaggingData

            return WordPieceTaggingData.from_conll(tokenizer, conll, labels, max_len)
        return D.TokenTaggingData.from_conll(conll, run.vocabs["vocab.json"], labels, run.vocabs.get("chars.json"),
                                             max_word_len=c.max_word_len)
    images, targets = D.read_mnist(path, "test")
    return D.ImageData(images, targets, mean=run.meta["stats"]["mean"], std=run.meta["stats"]["std"])


def evaluate(run_dir: str | Path, data_file: str | Path, batch_size: int = 256) -> dict:
    """Metrics of a trained run on a labelled file; also written to ``RUN/eval-<file>.json``."""
    run = load_run(run_dir)
    data = load_data_file(run, data_file)
    metrics = evaluate_model(run.model, data, run.meta["labels"], batch_size, run.cfg.data.out_of_scope)
    write_json(Path(run_dir) / f"eval-{Path(data_file).name}.json", metrics)
    return metrics


@torch.no_grad()
def predict(run_dir: str | Path, texts: list[str], top_k: int = 3) -> list[dict]:
    """Predictions for raw texts: ``{"text", "label", "scores": {label: prob}}`` for
    classifiers, ``{"text", "tokens", "tags"}`` for taggers."""
    run = load_run(run_dir)
    labels = run.meta["labels"]
    tokenize = D.get_tokenizer(run.cfg.data.tokenizer)
    out = []
    for text in texts:
        words = tokenize(text)
        batch = encode_text(run, text, words)
        if run.cfg.task == "token_classification":
            pred = run.model.predict(run.model(batch), batch)[0].tolist()
            out.append({"text": text, "tokens": words, "tags": [labels[i] for i in pred[:len(words)]]})
        elif run.cfg.task == "text_classification":
            probs = torch.softmax(run.model(batch)["logits"][0], -1)
            top = probs.topk(min(top_k, len(labels)))
            out.append({"text": text, "label": labels[int(probs.argmax())],
                        "scores": {labels[i]: round(float(p), 4) for p, i in zip(top.values, top.indices)}})
        else:
            raise RunError(f"{run_dir}: predict takes text; for {run.cfg.task} use `attnkit evaluate`")
    return out


def merge_run(run_dir: str | Path, out: str | Path) -> Path:
    """Write ``out``: the run ``run_dir`` with its LoRA/IA3 weights folded into the backbone
    (config ``finetune.method: full``, every weight saved), loadable without PEFT."""
    import shutil

    from ..finetune import merge_lora

    run_dir, out = Path(run_dir), Path(out)
    if out.exists():
        raise RunError(f"--out {out}: already exists")
    run = load_run(run_dir)
    if not merge_lora(run.model):
        raise RunError(f"{run_dir}: nothing to merge (method {run.cfg.model.finetune.method!r}; merging applies to "
                       f"lora and ia3 runs)")
    run.model.requires_grad_(True)  # every weight is now part of the deployed model
    cfg = to_dict(run.cfg)
    cfg["model"]["finetune"]["method"] = "full"
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run_dir, tmp, ignore=shutil.ignore_patterns("checkpoints", "events", "model.safetensors"))
    save_yaml(cfg, tmp / "config.yaml")
    meta = {**run.meta, "weights": "all", "merged_from": str(run_dir)}
    trainable, total = count_parameters(run.model)
    meta["parameters"] = {"trainable": trainable, "total": total}
    write_json(tmp / "meta.json", meta)
    save_weights(run.model, tmp / "model.safetensors", everything=True)
    tmp.rename(out)
    return out


def encode_text(run, text: str, words: list[str]) -> dict:
    """A one-example batch of raw text for a run: word ids, or word pieces for a fine-tuned run
    (a tagger's pieces aligned to ``words``)."""
    tokenizer = run.vocabs.get("tokenizer")
    if tokenizer is None:
        vocab = run.vocabs["vocab.json"]
        ids = vocab.encode(words)[:run.cfg.data.max_len] or [vocab.unk_id]
        batch = {"tokens": torch.tensor([ids]), "lengths": torch.tensor([len(ids)])}
        if run.cfg.task == "token_classification" and "chars.json" in run.vocabs:
            chars = run.vocabs["chars.json"].encode_words(words or ["."], run.cfg.data.max_word_len)
            batch["chars"] = D.TokenTaggingData([ids], chars=[chars[:len(ids)]]).collate([0])["chars"]
        return batch
    from ..finetune.data import WordPieceTaggingData, encode_texts

    max_len = run.cfg.model.finetune.max_len
    if run.cfg.task == "token_classification":
        return WordPieceTaggingData.encode(tokenizer, [words or ["."]], None, max_len).collate([0])
    ids = encode_texts(tokenizer, [text], max_len)[0]
    return {"tokens": torch.tensor([ids]), "lengths": torch.tensor([len(ids)])}


__all__ = ["TrainResult", "encode_text", "evaluate", "load_data_file", "merge_run", "predict", "resolve_config", "train"]
